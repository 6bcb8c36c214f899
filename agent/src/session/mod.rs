//! One streaming session: the pure lifecycle machine and the actor task that
//! performs its actions.

pub mod actor;
pub mod machine;

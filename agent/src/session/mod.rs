//! One streaming session: the pure lifecycle machine, the pure offer/answer
//! negotiation, and the actor task that performs what they decide.

pub mod actor;
pub mod congestion;
pub mod machine;
pub mod negotiation;

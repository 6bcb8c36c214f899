//! One streaming session: the pure session machine (phases, offer/answer
//! ordering, timer policy; `negotiation` is its offer/answer component) and
//! the actor task that performs what it decides.

pub mod actor;
pub mod congestion;
pub mod machine;
mod negotiation;

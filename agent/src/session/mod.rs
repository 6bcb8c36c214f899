//! One streaming session: the pure session machine (phases, offer/answer
//! ordering, timer policy), its components (`negotiation` for offer/answer,
//! `congestion` for the encoder's bitrate, `relay` for the legacy JPEG
//! relay's frames), and the actor task that performs what it decides.

pub mod actor;
pub mod congestion;
pub mod machine;
mod negotiation;
pub mod relay;

//! Test bed for camera-agent: a contract-exact stand-in control plane, a
//! WebRTC viewer that decodes what the agent sends, and helpers to run the
//! real agent binary and measure it.

pub mod backpressure;
pub mod fleet;
pub mod harness;
pub mod standin;
pub mod viewer;

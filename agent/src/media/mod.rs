//! Media: the per-session GStreamer pipeline and the pure helpers around it.

pub mod control;
pub(crate) mod dtls;
pub mod elements;
mod ice;
pub mod pipeline;
pub mod runtime;
pub mod sdp;
pub mod stats;
pub mod test_encode;
pub mod turn_tls;

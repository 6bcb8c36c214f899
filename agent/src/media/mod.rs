//! Media: the per-session GStreamer pipeline and the pure helpers around it.

pub(crate) mod dtls;
pub mod pipeline;
pub mod sdp;

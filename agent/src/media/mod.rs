//! Media: the per-session GStreamer pipeline and the pure helpers around it.

pub mod dtls;
pub mod pipeline;
pub mod sdp;

//! Media: the per-session GStreamer pipelines (WebRTC in `pipeline`, the
//! legacy JPEG relay in `jpeg`, both owned through `owned`) and the pure
//! helpers around them.

pub mod control;
pub(crate) mod dtls;
pub mod elements;
mod ice;
pub mod jpeg;
pub(crate) mod owned;
pub mod pipeline;
pub mod runtime;
pub mod sdp;
pub mod stats;
pub mod test_encode;
pub mod turn_tls;

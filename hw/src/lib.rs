//! Hardware knowledge for camera-agent, kept free of I/O and of any runtime.
//!
//! The agent asks this crate one question per session: "given what the
//! configuration wants and which GStreamer elements exist, which elements,
//! caps and properties make the capture -> encode -> payload chain?" The
//! answer is a [`PipelinePlan`]: plain data that can be printed, compared in
//! unit tests and turned into a pipeline by the media code. Keeping it plain
//! data means every encoder quirk is tested here without GStreamer.

pub mod board;
pub mod camera;
pub mod encoder;
pub mod jpeg;
pub mod plan;

pub use board::{Board, BoardFamily};
pub use camera::{Camera, CameraApi, CameraMode, PixelKind};
pub use encoder::{EncoderChoice, EncoderInput, EncoderKind, EncoderSettings};
pub use jpeg::{JpegEncoder, JpegInput, JpegPlan, MIN_JPEG_QUALITY};
pub use plan::{
    CaptureSpec, ElementPlan, PipelinePlan, PlanError, PlanInput, SourceKind, Step, adapt_caps,
};

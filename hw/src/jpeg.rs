//! The legacy relay's chain: capture -> (rate limit) -> JPEG, ending where
//! the agent's frame sink takes over. Plain data like [`crate::PipelinePlan`].
//!
//! Per board: a camera that already delivers MJPEG at the configured size
//! has its JPEG passed through (no decode, no encode); a Raspberry Pi up to
//! the 4 uses its hardware JPEG encoder (`v4l2jpegenc`, the bcm2835 codec)
//! when GStreamer has it; everything else encodes with `jpegenc`. The rate
//! limit sits before any conversion or encoding, so a camera capturing at
//! 30 fps costs the encoder only the frames actually sent.

use std::fmt;

use serde::Serialize;

use crate::board::BoardFamily;
use crate::camera::{Camera, PixelKind};
use crate::plan::source::{ModePreference, plan_source};
use crate::plan::{CaptureSpec, ElementPlan, PlanError, SourceKind, Step};

/// Lowest JPEG quality the relay goes down to for an oversized frame.
pub const MIN_JPEG_QUALITY: u8 = 30;

/// Who makes the JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JpegEncoder {
    /// The camera's own MJPEG, passed through: its quality is the camera's.
    #[serde(rename = "camera")]
    Camera,
    /// The Raspberry Pi's hardware JPEG encoder.
    #[serde(rename = "v4l2jpegenc")]
    V4l2JpegEnc,
    /// libjpeg in software.
    #[serde(rename = "jpegenc")]
    JpegEnc,
}

impl JpegEncoder {
    /// The element that encodes, if the agent encodes at all.
    pub fn factory(self) -> Option<&'static str> {
        match self {
            JpegEncoder::Camera => None,
            JpegEncoder::V4l2JpegEnc => Some("v4l2jpegenc"),
            JpegEncoder::JpegEnc => Some("jpegenc"),
        }
    }

    /// The property that sets the quality of the next frames and its value,
    /// or `None` when the quality is not the agent's to set (passthrough).
    /// The V4L2 encoder takes it as the standard
    /// `V4L2_CID_JPEG_COMPRESSION_QUALITY` control.
    pub fn quality(self, quality: u8) -> Option<(&'static str, String)> {
        match self {
            JpegEncoder::Camera => None,
            JpegEncoder::V4l2JpegEnc => Some((
                "extra-controls",
                format!("controls,compression_quality={quality}"),
            )),
            JpegEncoder::JpegEnc => Some(("quality", quality.to_string())),
        }
    }
}

/// Everything a JPEG plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct JpegInput<'a> {
    pub source: &'a SourceKind,
    /// What the camera captures; the relay keeps its size.
    pub capture: CaptureSpec,
    /// Frames per second sent (`streaming.legacy_fps`).
    pub framerate: u32,
    /// Quality of the first frames (`streaming.legacy_quality`).
    pub quality: u8,
    pub board: BoardFamily,
    pub cameras: &'a [Camera],
}

/// The chain up to (not including) the agent's frame sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JpegPlan {
    pub encoder: JpegEncoder,
    pub steps: Vec<Step>,
    /// One line per decision, for `probe` and the logs.
    pub reasons: Vec<String>,
}

impl JpegPlan {
    pub fn build(
        input: JpegInput<'_>,
        available: impl Fn(&str) -> bool,
    ) -> Result<Self, PlanError> {
        let source = plan_source(
            input.source,
            input.cameras,
            input.capture,
            ModePreference::Jpeg,
        )?;
        let mut steps = source.steps;
        let mut reasons = source.reasons;
        let camera_jpeg = source.pixels == Some(PixelKind::Mjpeg);
        // Latency over completeness: never queue stale frames.
        steps.push(Step::Element(
            ElementPlan::new("queue")
                .with("max-size-buffers", "1")
                .with("max-size-bytes", "0")
                .with("max-size-time", "0")
                .with("leaky", "downstream"),
        ));
        steps.push(Step::Element(
            ElementPlan::new("videorate").with("drop-only", "true"),
        ));
        let media = if camera_jpeg {
            "image/jpeg"
        } else {
            "video/x-raw"
        };
        steps.push(Step::Caps(format!(
            "{media},framerate=(fraction){}/1",
            input.framerate
        )));
        let encoder = if camera_jpeg {
            JpegEncoder::Camera
        } else if input.board == BoardFamily::RaspberryPi && available("v4l2jpegenc") {
            JpegEncoder::V4l2JpegEnc
        } else {
            JpegEncoder::JpegEnc
        };
        if let Some(factory) = encoder.factory() {
            if !available(factory) {
                return Err(PlanError::EncoderUnavailable {
                    wanted: factory.into(),
                    available: Vec::new(),
                });
            }
            steps.push(Step::Element(ElementPlan::new("videoconvert")));
            steps.push(Step::Caps("video/x-raw,format=(string)I420".into()));
            let mut element = ElementPlan::new(factory);
            if let Some((property, value)) = encoder.quality(input.quality) {
                element = element.with(property, value);
            }
            steps.push(Step::Element(element));
        }
        reasons.push(match encoder {
            JpegEncoder::Camera => "jpeg: the camera's own MJPEG, passed through".to_string(),
            JpegEncoder::V4l2JpegEnc => "jpeg: v4l2jpegenc (hardware)".to_string(),
            JpegEncoder::JpegEnc => "jpeg: jpegenc (software)".to_string(),
        });
        reasons.push(format!("jpeg: {} fps", input.framerate));
        Ok(Self {
            encoder,
            steps,
            reasons,
        })
    }

    /// Every factory the plan needs, for availability checks and preloading.
    pub fn factories(&self) -> impl Iterator<Item = &str> {
        crate::plan::step_factories(&self.steps)
    }
}

impl fmt::Display for JpegPlan {
    /// The chain in `gst-launch-1.0` syntax, for logs and bug reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::plan::write_steps(f, &self.steps)?;
        f.write_str(" ! appsink")
    }
}

#[cfg(test)]
mod tests;

//! Planning the session pipeline for this device: the board, the cameras a
//! source needs probed, and the plan `hw` decides from them. The daemon
//! plans at start-up; `doctor` and `probe` show the same plan.

use std::fmt;

use crate::config::{CameraSettings, EncoderConfig, Settings, StreamingMode, StreamingSettings};
use crate::media::runtime::factory_exists;

/// A session's pipeline in the configured streaming mode.
#[derive(Debug, Clone)]
pub enum MediaPlan {
    /// Capture -> H.264 -> webrtcbin.
    WebRtc(hw::PipelinePlan),
    /// Capture -> JPEG -> the relay's frame sink.
    LegacyJpeg(hw::JpegPlan),
}

impl MediaPlan {
    /// Every factory the plan needs, for availability checks and preloading.
    pub fn factories(&self) -> Vec<&str> {
        match self {
            MediaPlan::WebRtc(plan) => plan.factories().collect(),
            MediaPlan::LegacyJpeg(plan) => plan.factories().chain(["appsink"]).collect(),
        }
    }

    /// One line per decision, for `probe`, `doctor` and the logs.
    pub fn reasons(&self) -> &[String] {
        match self {
            MediaPlan::WebRtc(plan) => &plan.reasons,
            MediaPlan::LegacyJpeg(plan) => &plan.reasons,
        }
    }
}

impl fmt::Display for MediaPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaPlan::WebRtc(plan) => plan.fmt(f),
            MediaPlan::LegacyJpeg(plan) => plan.fmt(f),
        }
    }
}

/// Probes the board and (unless the test pattern is configured) the
/// cameras, and plans the session pipeline of the configured streaming
/// mode. GStreamer must be initialised.
pub fn plan_for(settings: &Settings) -> Result<MediaPlan, hw::PlanError> {
    let board = crate::probe::board().family;
    let cameras = cameras_for(&settings.camera.source);
    match settings.streaming.mode {
        StreamingMode::WebRtc => {
            plan(&settings.camera, settings.encoder, board, &cameras).map(MediaPlan::WebRtc)
        }
        StreamingMode::LegacyJpeg => {
            jpeg_plan(&settings.camera, settings.streaming, board, &cameras)
                .map(MediaPlan::LegacyJpeg)
        }
    }
}

/// Plans the legacy relay's JPEG chain for `camera` on `board`.
pub fn jpeg_plan(
    camera: &CameraSettings,
    streaming: StreamingSettings,
    board: hw::BoardFamily,
    cameras: &[hw::Camera],
) -> Result<hw::JpegPlan, hw::PlanError> {
    hw::JpegPlan::build(
        hw::JpegInput {
            source: &camera.source,
            capture: camera.capture,
            framerate: streaming.legacy_fps,
            quality: streaming.legacy_quality,
            board,
            cameras,
        },
        factory_exists,
    )
}

/// The cameras a plan for `source` needs: none for the test pattern (no
/// device is probed), else what the probe finds. GStreamer must be
/// initialised.
pub fn cameras_for(source: &hw::SourceKind) -> Vec<hw::Camera> {
    match source {
        hw::SourceKind::Test => Vec::new(),
        _ => crate::probe::cameras(),
    }
}

/// Plans the session pipeline for `camera` and `encoder` on `board`, with
/// the cameras a probe found.
pub fn plan(
    camera: &CameraSettings,
    encoder: EncoderConfig,
    board: hw::BoardFamily,
    cameras: &[hw::Camera],
) -> Result<hw::PipelinePlan, hw::PlanError> {
    hw::PipelinePlan::build(
        hw::PlanInput {
            source: &camera.source,
            capture: camera.capture,
            encoder: encoder.choice,
            settings: encoder.settings,
            board,
            cameras,
        },
        factory_exists,
    )
}

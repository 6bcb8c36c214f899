//! Planning the session pipeline for this device: the board, the cameras a
//! source needs probed, and the plan `hw` decides from them. The daemon
//! plans at start-up; `doctor` and `probe` show the same plan.

use crate::config::{CameraSettings, EncoderConfig, Settings};
use crate::media::runtime::factory_exists;

/// Probes the board and (unless the test pattern is configured) the
/// cameras, and plans the session pipeline. GStreamer must be initialised.
pub fn plan_for(settings: &Settings) -> Result<hw::PipelinePlan, hw::PlanError> {
    plan(
        &settings.camera,
        settings.encoder,
        crate::probe::board().family,
        &cameras_for(&settings.camera.source),
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

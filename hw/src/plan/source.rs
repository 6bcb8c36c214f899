//! The capture end of every chain: which camera serves the configured
//! source, which of its modes, and the source element with its caps. The
//! H.264 plan and the JPEG plan share it; they differ only in which mode
//! they prefer.

use super::{CaptureSpec, ElementPlan, PlanError, SourceKind, Step};
use crate::camera::{Camera, CameraApi, CameraMode, PixelKind};

/// Which of a camera's modes a chain wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModePreference {
    /// Raw before MJPEG before H.264: the encoder gets full control.
    Encode,
    /// The camera's own H.264 (`encoder.kind = "passthrough"`).
    H264,
    /// The camera's own JPEG before raw: nothing to encode at all. H.264
    /// modes are not used (decoding H.264 to re-encode JPEG helps no one).
    Jpeg,
}

/// The source element(s) and what they deliver.
#[derive(Debug, Clone)]
pub(crate) struct SourcePlan {
    pub steps: Vec<Step>,
    /// The camera mode chosen; `None` for the test pattern or a camera the
    /// probe did not describe (raw frames are asked for then).
    pub pixels: Option<PixelKind>,
    pub reasons: Vec<String>,
}

fn raw_caps(capture: CaptureSpec) -> String {
    format!(
        "video/x-raw,width=(int){},height=(int){},framerate=(fraction){}/1",
        capture.width, capture.height, capture.framerate
    )
}

fn mode_caps(pixels: &PixelKind, capture: CaptureSpec) -> String {
    let size = format!(
        "width=(int){},height=(int){},framerate=(fraction){}/1",
        capture.width, capture.height, capture.framerate
    );
    match pixels {
        PixelKind::Raw(format) => format!("video/x-raw,format=(string){format},{size}"),
        PixelKind::Mjpeg => format!("image/jpeg,{size}"),
        PixelKind::H264 => format!("video/x-h264,{size}"),
        PixelKind::Bayer => format!("video/x-bayer,{size}"),
    }
}

/// The camera the source names, if the probe saw it; `Auto` picks the
/// first usable one (libcamera first: a Pi camera's V4L2 node gives only
/// Bayer).
fn find_camera<'a>(
    source: &SourceKind,
    cameras: &'a [Camera],
) -> Result<Option<&'a Camera>, PlanError> {
    Ok(match source {
        SourceKind::Test => None,
        SourceKind::V4l2 { device } => cameras
            .iter()
            .find(|camera| camera.device.as_deref() == Some(device.as_path())),
        SourceKind::Libcamera { camera: id } => cameras.iter().find(|camera| {
            camera.api == CameraApi::Libcamera
                && id
                    .as_ref()
                    .is_none_or(|id| camera.camera_id.as_ref() == Some(id))
        }),
        SourceKind::Auto => {
            let mut usable: Vec<&Camera> =
                cameras.iter().filter(|camera| camera.usable()).collect();
            usable.sort_by_key(|camera| camera.api != CameraApi::Libcamera);
            Some(usable.first().copied().ok_or_else(|| PlanError::NoCamera {
                found: if cameras.is_empty() {
                    "the probe found none".into()
                } else {
                    format!("{} found, none usable without an ISP", cameras.len())
                },
            })?)
        }
    })
}

fn choose_mode<'a>(
    camera: &'a Camera,
    capture: CaptureSpec,
    preference: ModePreference,
    wanted: &str,
) -> Result<Option<&'a CameraMode>, PlanError> {
    let no_mode = || PlanError::NoMode {
        camera: camera.name.clone(),
        wanted: wanted.into(),
        available: camera.modes_summary(),
    };
    match preference {
        ModePreference::H264 => {
            camera
                .h264_mode(capture)
                .map(Some)
                .ok_or_else(|| PlanError::NoPassthrough {
                    camera: camera.name.clone(),
                    wanted: wanted.into(),
                    available: camera.modes_summary(),
                })
        }
        _ if camera.modes.is_empty() => Ok(None),
        ModePreference::Encode => camera.choose_mode(capture).map(Some).ok_or_else(no_mode),
        ModePreference::Jpeg => camera
            .mjpeg_mode(capture)
            .or_else(|| {
                camera
                    .choose_mode(capture)
                    .filter(|mode| matches!(mode.pixels, PixelKind::Raw(_)))
            })
            .map(Some)
            .ok_or_else(no_mode),
    }
}

/// Plans the source for `capture` with the mode `preference`.
pub(crate) fn plan_source(
    source: &SourceKind,
    cameras: &[Camera],
    capture: CaptureSpec,
    preference: ModePreference,
) -> Result<SourcePlan, PlanError> {
    let wanted = format!("{}x{}@{}", capture.width, capture.height, capture.framerate);
    let camera = find_camera(source, cameras)?;
    let mode = match camera {
        Some(camera) => choose_mode(camera, capture, preference, &wanted)?,
        None => None,
    };
    if preference == ModePreference::H264 && camera.is_none() {
        return Err(PlanError::NoPassthrough {
            camera: "the configured source".into(),
            wanted,
            available: "no probed H.264 mode".into(),
        });
    }
    let raw = raw_caps(capture);
    let mut steps = Vec::new();
    let mut reasons = Vec::new();
    match (source, camera) {
        (SourceKind::Test, _) => {
            steps.push(Step::Element(
                ElementPlan::new("videotestsrc")
                    .with("is-live", "true")
                    .with("pattern", "smpte"),
            ));
            steps.push(Step::Caps(raw));
            reasons.push("source: test pattern".into());
        }
        (SourceKind::V4l2 { device }, None) => {
            steps.push(Step::Element(
                ElementPlan::new("v4l2src").with("device", device.display().to_string()),
            ));
            steps.push(Step::Caps(raw));
            reasons.push(format!(
                "source: {} (not seen by the probe; assuming raw frames)",
                device.display()
            ));
        }
        (SourceKind::Libcamera { camera: id }, None) => {
            let mut element = ElementPlan::new("libcamerasrc");
            if let Some(id) = id {
                element = element.with("camera-name", id.clone());
            }
            steps.push(Step::Element(element));
            steps.push(Step::Caps(raw));
            reasons.push("source: libcamera (camera not seen by the probe)".into());
        }
        // Auto resolved to a camera above or returned NoCamera; kept as an
        // error rather than a panic should that ever change.
        (SourceKind::Auto, None) => {
            return Err(PlanError::NoCamera {
                found: "the probe found none".into(),
            });
        }
        (_, Some(camera)) => {
            let element = match camera.api {
                CameraApi::V4l2 => ElementPlan::new("v4l2src").with(
                    "device",
                    camera
                        .device
                        .as_ref()
                        .map(|path| path.display().to_string())
                        .unwrap_or_default(),
                ),
                CameraApi::Libcamera => match &camera.camera_id {
                    Some(id) => ElementPlan::new("libcamerasrc").with("camera-name", id.clone()),
                    None => ElementPlan::new("libcamerasrc"),
                },
            };
            steps.push(Step::Element(element));
            match mode {
                Some(mode) => {
                    steps.push(Step::Caps(mode_caps(&mode.pixels, capture)));
                    reasons.push(format!(
                        "source: {} ({wanted} as {})",
                        camera.name, mode.pixels
                    ));
                }
                None => {
                    steps.push(Step::Caps(raw));
                    reasons.push(format!(
                        "source: {} (modes unknown; asking for raw {wanted})",
                        camera.name
                    ));
                }
            }
        }
    }
    Ok(SourcePlan {
        steps,
        pixels: mode.map(|mode| mode.pixels.clone()),
        reasons,
    })
}

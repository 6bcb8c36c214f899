//! `[camera]`: which camera and what it captures. Raw keys, defaults,
//! validation and the rows `check-config` shows.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::value::{in_range, quoted};
use hw::{CaptureSpec, SourceKind};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// `auto` (first usable camera), `v4l2`, `libcamera` or `test`.
    pub source: Option<String>,
    /// V4L2 device node; for `libcamera`, libcamera's camera id.
    pub device: Option<PathBuf>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CameraSettings {
    pub source: SourceKind,
    pub capture: CaptureSpec,
}

impl CameraSettings {
    /// Validates the section; an empty one gives the defaults.
    pub fn from_raw(cam: &RawCamera) -> Result<Self, ConfigError> {
        let source = match cam.source.as_deref().unwrap_or("v4l2") {
            "test" => SourceKind::Test,
            "auto" => SourceKind::Auto,
            "v4l2" => SourceKind::V4l2 {
                device: cam.device.clone().unwrap_or_else(|| "/dev/video0".into()),
            },
            // For libcamera, `device` is libcamera's camera id (optional).
            "libcamera" => SourceKind::Libcamera {
                camera: cam.device.as_ref().map(|id| id.display().to_string()),
            },
            other => {
                return Err(ConfigError::Invalid {
                    key: "camera.source",
                    value: format!("{other:?}"),
                    reason: "must be \"auto\", \"v4l2\", \"libcamera\" or \"test\"".into(),
                });
            }
        };
        let width = in_range("camera.width", cam.width.unwrap_or(1280), 16..=7680)?;
        let height = in_range("camera.height", cam.height.unwrap_or(720), 16..=4320)?;
        for (key, value) in [("camera.width", width), ("camera.height", height)] {
            if !value.is_multiple_of(2) {
                return Err(ConfigError::Invalid {
                    key,
                    value: value.to_string(),
                    reason: "must be even (H.264 4:2:0)".into(),
                });
            }
        }
        Ok(Self {
            source,
            capture: CaptureSpec {
                width,
                height,
                framerate: in_range("camera.framerate", cam.framerate.unwrap_or(30), 1..=120)?,
            },
        })
    }

    /// The section's rows for `check-config`, defaults included; `device`
    /// only where the source has one.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let (source, device) = match &self.source {
            SourceKind::Test => ("test", None),
            SourceKind::Auto => ("auto", None),
            SourceKind::V4l2 { device } => ("v4l2", Some(device.display().to_string())),
            SourceKind::Libcamera { camera } => ("libcamera", camera.clone()),
        };
        let mut rows = vec![("camera.source", quoted(source))];
        if let Some(device) = device {
            rows.push(("camera.device", quoted(&device)));
        }
        rows.extend([
            ("camera.width", self.capture.width.to_string()),
            ("camera.height", self.capture.height.to_string()),
            ("camera.framerate", self.capture.framerate.to_string()),
        ]);
        rows
    }
}

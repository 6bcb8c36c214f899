//! Cameras as plain data: what a probe found (V4L2 capture devices and
//! libcamera cameras) and which of a camera's modes serves a capture size.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::plan::CaptureSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraApi {
    V4l2,
    Libcamera,
}

/// What a mode delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "format", rename_all = "lowercase")]
pub enum PixelKind {
    /// Raw frames in a GStreamer format (`YUY2`, `NV12`, ...).
    Raw(String),
    Mjpeg,
    /// The camera encodes H.264 itself.
    H264,
    /// Sensor data that needs an ISP (a Pi camera's V4L2 node): unusable
    /// without libcamera.
    Bayer,
}

impl fmt::Display for PixelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PixelKind::Raw(format) => f.write_str(format),
            PixelKind::Mjpeg => f.write_str("MJPEG"),
            PixelKind::H264 => f.write_str("H.264"),
            PixelKind::Bayer => f.write_str("Bayer"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraMode {
    pub pixels: PixelKind,
    pub width: u32,
    pub height: u32,
    /// Whole frames per second offered at this size.
    pub framerates: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Camera {
    pub api: CameraApi,
    pub name: String,
    /// The V4L2 device node.
    pub device: Option<PathBuf>,
    /// libcamera's camera id (for `libcamerasrc camera-name=`).
    pub camera_id: Option<String>,
    pub driver: Option<String>,
    pub bus: Option<String>,
    pub modes: Vec<CameraMode>,
}

impl Camera {
    /// Whether the agent can stream from it at all.
    pub fn usable(&self) -> bool {
        self.modes
            .iter()
            .any(|mode| mode.pixels != PixelKind::Bayer)
    }

    /// The mode for `capture`: exact size and rate, raw before MJPEG before
    /// H.264 (raw costs no decode and gives the encoder full control).
    pub fn choose_mode(&self, capture: CaptureSpec) -> Option<&CameraMode> {
        let rank = |mode: &CameraMode| match mode.pixels {
            PixelKind::Raw(_) => 0,
            PixelKind::Mjpeg => 1,
            PixelKind::H264 => 2,
            PixelKind::Bayer => 3,
        };
        self.modes
            .iter()
            .filter(|mode| {
                mode.pixels != PixelKind::Bayer
                    && mode.width == capture.width
                    && mode.height == capture.height
                    && (mode.framerates.is_empty() || mode.framerates.contains(&capture.framerate))
            })
            .min_by_key(|mode| rank(mode))
    }

    /// A mode with the camera's own H.264 at `capture`, for passthrough.
    pub fn h264_mode(&self, capture: CaptureSpec) -> Option<&CameraMode> {
        self.encoded_mode(&PixelKind::H264, capture)
    }

    /// A mode with the camera's own JPEG at `capture` (UVC webcams), which
    /// the legacy relay passes through without decoding.
    pub fn mjpeg_mode(&self, capture: CaptureSpec) -> Option<&CameraMode> {
        self.encoded_mode(&PixelKind::Mjpeg, capture)
    }

    fn encoded_mode(&self, pixels: &PixelKind, capture: CaptureSpec) -> Option<&CameraMode> {
        self.modes.iter().find(|mode| {
            mode.pixels == *pixels
                && mode.width == capture.width
                && mode.height == capture.height
                && (mode.framerates.is_empty() || mode.framerates.contains(&capture.framerate))
        })
    }

    /// `640x480 YUY2 30/15 fps, ...` for error messages and reports.
    pub fn modes_summary(&self) -> String {
        if self.modes.is_empty() {
            return "no modes reported".into();
        }
        self.modes
            .iter()
            .map(|mode| {
                let rates: Vec<String> = mode.framerates.iter().map(u32::to_string).collect();
                format!(
                    "{}x{} {} {} fps",
                    mode.width,
                    mode.height,
                    mode.pixels,
                    if rates.is_empty() {
                        "any".into()
                    } else {
                        rates.join("/")
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn webcam() -> Camera {
        Camera {
            api: CameraApi::V4l2,
            name: "HD Webcam".into(),
            device: Some("/dev/video0".into()),
            camera_id: None,
            driver: Some("uvcvideo".into()),
            bus: Some("usb-0000:00:14.0-1".into()),
            modes: vec![
                CameraMode {
                    pixels: PixelKind::Raw("YUY2".into()),
                    width: 640,
                    height: 480,
                    framerates: vec![30, 15],
                },
                CameraMode {
                    pixels: PixelKind::Raw("YUY2".into()),
                    width: 1280,
                    height: 720,
                    framerates: vec![10],
                },
                CameraMode {
                    pixels: PixelKind::Mjpeg,
                    width: 1280,
                    height: 720,
                    framerates: vec![30],
                },
                CameraMode {
                    pixels: PixelKind::H264,
                    width: 1920,
                    height: 1080,
                    framerates: vec![30],
                },
            ],
        }
    }

    fn spec(width: u32, height: u32, framerate: u32) -> CaptureSpec {
        CaptureSpec {
            width,
            height,
            framerate,
        }
    }

    #[test]
    fn raw_is_preferred_then_mjpeg_where_raw_is_too_slow() {
        let camera = webcam();
        assert_eq!(
            camera.choose_mode(spec(640, 480, 30)).unwrap().pixels,
            PixelKind::Raw("YUY2".into())
        );
        assert_eq!(
            camera.choose_mode(spec(1280, 720, 30)).unwrap().pixels,
            PixelKind::Mjpeg
        );
        assert_eq!(
            camera.choose_mode(spec(1920, 1080, 30)).unwrap().pixels,
            PixelKind::H264
        );
        assert!(camera.choose_mode(spec(800, 600, 30)).is_none());
        assert!(camera.h264_mode(spec(1920, 1080, 30)).is_some());
        assert!(camera.modes_summary().contains("1280x720 MJPEG 30 fps"));
    }

    #[test]
    fn bayer_only_cameras_are_unusable() {
        let sensor = Camera {
            modes: vec![CameraMode {
                pixels: PixelKind::Bayer,
                width: 1920,
                height: 1080,
                framerates: vec![30],
            }],
            ..webcam()
        };
        assert!(!sensor.usable());
        assert!(sensor.choose_mode(spec(1920, 1080, 30)).is_none());
        assert!(webcam().usable());
    }
}

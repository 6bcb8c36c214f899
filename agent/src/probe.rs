//! What hardware this device has: the board (from `/proc`, `/sys`), the
//! cameras (GStreamer's device monitor, which queries V4L2 and libcamera
//! devices and closes them again) and the H.264 encoders installed. The
//! result is `hw`'s plain data, so the plan is decided by tested pure code.

use std::path::Path;

use gst::prelude::*;
use serde::Serialize;

use hw::{Board, Camera, CameraApi, CameraMode, EncoderKind, PixelKind};

use crate::media::elements::MediaError;
use crate::media::runtime::{factory_exists, init_gstreamer};

#[derive(Debug, Clone, Serialize)]
pub struct EncoderPresence {
    pub element: &'static str,
    pub hardware: bool,
    pub available: bool,
}

/// Everything the probe found.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub board: Board,
    pub cameras: Vec<Camera>,
    pub encoders: Vec<EncoderPresence>,
    pub gstreamer: String,
}

/// The board this process runs on.
pub fn board() -> Board {
    hw::board::detect(Path::new("/"))
}

/// Probes this machine.
pub fn probe() -> Result<Probe, MediaError> {
    init_gstreamer()?;
    let (major, minor, micro, _) = gst::version();
    Ok(Probe {
        board: board(),
        cameras: cameras(),
        encoders: EncoderKind::ALL
            .into_iter()
            .map(|kind| EncoderPresence {
                element: kind.factory(),
                hardware: kind.is_hardware(),
                available: factory_exists(kind.factory()),
            })
            .collect(),
        gstreamer: format!("{major}.{minor}.{micro}"),
    })
}

/// Cameras from the device monitor's `Video/Source` devices.
pub fn cameras() -> Vec<Camera> {
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    // start() runs the providers' probes; the devices stay closed after.
    if monitor.start().is_err() {
        return Vec::new();
    }
    let cameras = monitor.devices().iter().filter_map(camera_of).collect();
    monitor.stop();
    cameras
}

fn string_property(properties: &gst::StructureRef, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| properties.get::<String>(*name).ok())
        .filter(|value| !value.is_empty())
}

fn camera_of(device: &gst::Device) -> Option<Camera> {
    let properties = device.properties();
    let properties = properties.as_deref();
    let api = properties
        .and_then(|p| string_property(p, &["device.api"]))
        .unwrap_or_default();
    let api = match api.as_str() {
        "v4l2" => CameraApi::V4l2,
        "libcamera" => CameraApi::Libcamera,
        _ if device.device_class().contains("Source/Video")
            || device.device_class().contains("Video/Source") =>
        {
            // Providers that do not say: libcamera's gives no device.path.
            if properties
                .and_then(|p| string_property(p, &["device.path"]))
                .is_some()
            {
                CameraApi::V4l2
            } else {
                CameraApi::Libcamera
            }
        }
        _ => return None,
    };
    let modes = device
        .caps()
        .map(|caps| modes_of(&caps))
        .unwrap_or_default();
    if modes.is_empty() {
        // Metadata and codec nodes offer no capture formats.
        return None;
    }
    Some(Camera {
        api,
        name: device.display_name().to_string(),
        device: properties
            .and_then(|p| string_property(p, &["device.path", "api.v4l2.path"]))
            .map(Into::into),
        camera_id: properties
            .and_then(|p| string_property(p, &["api.libcamera.id", "libcamera.id"])),
        driver: properties
            .and_then(|p| string_property(p, &["v4l2.device.driver", "api.v4l2.cap.driver"])),
        bus: properties
            .and_then(|p| string_property(p, &["v4l2.device.bus_info", "api.v4l2.cap.bus_info"])),
        modes,
    })
}

/// One mode per (media type, format, size) with whole framerates.
fn modes_of(caps: &gst::CapsRef) -> Vec<CameraMode> {
    let mut modes: Vec<CameraMode> = Vec::new();
    for structure in caps.iter() {
        let (Ok(width), Ok(height)) = (
            structure.get::<i32>("width"),
            structure.get::<i32>("height"),
        ) else {
            continue;
        };
        let kinds: Vec<PixelKind> = match structure.name().as_str() {
            "video/x-raw" => formats(structure).into_iter().map(PixelKind::Raw).collect(),
            "image/jpeg" => vec![PixelKind::Mjpeg],
            "video/x-h264" => vec![PixelKind::H264],
            "video/x-bayer" => vec![PixelKind::Bayer],
            _ => continue,
        };
        let rates = framerates(structure);
        for pixels in kinds {
            let (width, height) = (width.max(0) as u32, height.max(0) as u32);
            match modes
                .iter_mut()
                .find(|mode| mode.pixels == pixels && mode.width == width && mode.height == height)
            {
                Some(mode) => {
                    for rate in &rates {
                        if !mode.framerates.contains(rate) {
                            mode.framerates.push(*rate);
                        }
                    }
                }
                None => modes.push(CameraMode {
                    pixels,
                    width,
                    height,
                    framerates: rates.clone(),
                }),
            }
        }
    }
    modes
}

fn formats(structure: &gst::StructureRef) -> Vec<String> {
    if let Ok(format) = structure.get::<String>("format") {
        return vec![format];
    }
    if let Ok(list) = structure.get::<gst::List>("format") {
        return list
            .iter()
            .filter_map(|value| value.get::<String>().ok())
            .collect();
    }
    // libcamera may leave the format open: it converts in its ISP.
    vec!["NV12".into()]
}

/// Whole frame rates; an empty list means "any" (a range).
fn framerates(structure: &gst::StructureRef) -> Vec<u32> {
    let whole = |fraction: gst::Fraction| -> Option<u32> {
        (fraction.denom() > 0 && fraction.numer() > 0)
            .then(|| (fraction.numer() as f64 / fraction.denom() as f64).round() as u32)
    };
    if let Ok(rate) = structure.get::<gst::Fraction>("framerate") {
        return whole(rate).into_iter().collect();
    }
    if let Ok(list) = structure.get::<gst::List>("framerate") {
        let mut rates: Vec<u32> = list
            .iter()
            .filter_map(|value| value.get::<gst::Fraction>().ok())
            .filter_map(whole)
            .collect();
        rates.sort_unstable_by(|a, b| b.cmp(a));
        rates.dedup();
        return rates;
    }
    Vec::new()
}

impl Probe {
    /// The human-readable report of `camera-agent probe`.
    pub fn report(&self, plan: &Result<hw::PipelinePlan, hw::PlanError>) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "board      {} ({:?})\nGStreamer  {}\n\ncameras\n",
            self.board.model, self.board.family, self.gstreamer
        ));
        if self.cameras.is_empty() {
            out.push_str("  none found\n");
        }
        for camera in &self.cameras {
            out.push_str(&format!(
                "  {} [{:?}] {}{}\n    {}\n",
                camera.name,
                camera.api,
                camera
                    .device
                    .as_ref()
                    .map(|path| path.display().to_string())
                    .or_else(|| camera.camera_id.clone())
                    .unwrap_or_default(),
                if camera.usable() {
                    ""
                } else {
                    " (unusable: Bayer only; use libcamera)"
                },
                camera.modes_summary()
            ));
        }
        out.push_str("\nH.264 encoders\n");
        for encoder in &self.encoders {
            out.push_str(&format!(
                "  {:<14} {:<9} {}\n",
                encoder.element,
                if encoder.hardware {
                    "hardware"
                } else {
                    "software"
                },
                if encoder.available {
                    "available"
                } else {
                    "not installed"
                }
            ));
        }
        out.push_str("\nplan for the configuration\n");
        match plan {
            Ok(plan) => {
                for reason in &plan.reasons {
                    out.push_str(&format!("  {reason}\n"));
                }
                out.push_str(&format!("  {plan}\n"));
            }
            Err(err) => out.push_str(&format!("  no plan: {err}\n")),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_become_modes() {
        gst::init().unwrap();
        let caps: gst::Caps = "video/x-raw, format=(string)YUY2, width=(int)640, height=(int)480, framerate=(fraction){ 30/1, 15/1 }; \
            video/x-raw, format=(string)YUY2, width=(int)640, height=(int)480, framerate=(fraction)10/1; \
            image/jpeg, width=(int)1280, height=(int)720, framerate=(fraction)30/1; \
            video/x-h264, width=(int)1920, height=(int)1080, framerate=(fraction)30000/1001; \
            video/x-bayer, format=(string)rggb, width=(int)1920, height=(int)1080, framerate=(fraction)[ 1/1, 60/1 ]"
            .parse()
            .unwrap();
        let modes = modes_of(&caps);
        assert_eq!(modes.len(), 4, "{modes:?}");
        assert_eq!(modes[0].pixels, PixelKind::Raw("YUY2".into()));
        assert_eq!(modes[0].framerates, [30, 15, 10]);
        assert_eq!(modes[1].pixels, PixelKind::Mjpeg);
        assert_eq!(modes[2].framerates, [30]);
        assert_eq!(modes[3].pixels, PixelKind::Bayer);
        assert!(modes[3].framerates.is_empty());
    }
}

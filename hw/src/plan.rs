//! The pipeline plan: the capture -> convert -> encode -> parse -> payload
//! chain as plain data, ending where `webrtcbin` takes over.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::board::BoardFamily;
use crate::camera::{Camera, PixelKind};
use crate::encoder::{EncoderChoice, EncoderKind, EncoderSettings, choose_encoder};

pub(crate) mod source;

use source::{ModePreference, plan_source};

/// RTP payload type used for H.264 in the offer.
pub const H264_PAYLOAD_TYPE: u8 = 96;

/// The transport-wide congestion control header extension: every packet
/// carries a transport-wide sequence number, and the viewer reports when
/// each arrived, which is what the congestion controller reads.
pub const TWCC_EXTENSION_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The RTP header extension id the offer gives TWCC.
pub const TWCC_EXTENSION_ID: u8 = 1;

/// Where frames come from, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceKind {
    /// A live test pattern; needs no hardware.
    Test,
    /// A V4L2 capture device (USB webcams, HDMI grabbers, legacy Pi stack).
    V4l2 { device: PathBuf },
    /// A libcamera camera (Pi camera modules on Raspberry Pi OS Bookworm);
    /// `camera` is libcamera's id, `None` for the first one.
    Libcamera { camera: Option<String> },
    /// The first usable camera the probe found.
    Auto,
}

/// Size and rate of the captured video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CaptureSpec {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
}

/// One element with its properties, as strings GStreamer parses itself
/// (the same form `gst-launch-1.0` takes), so enums and numbers of every
/// element work without a typed table here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElementPlan {
    pub factory: String,
    pub properties: Vec<(String, String)>,
}

impl ElementPlan {
    pub fn new(factory: &str) -> Self {
        Self {
            factory: factory.into(),
            properties: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A step of the linear chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
// Adjacently tagged: an internally tagged enum cannot carry `Caps`' bare
// string, and `probe --json` serialises every step.
#[serde(tag = "step", content = "value", rename_all = "lowercase")]
pub enum Step {
    Element(ElementPlan),
    /// A capsfilter with these caps.
    Caps(String),
}

/// The whole chain up to (not including) webrtcbin, and why it is so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelinePlan {
    /// `None` when the camera's own H.264 is passed through.
    pub encoder: Option<crate::EncoderKind>,
    pub steps: Vec<Step>,
    /// Index in `steps` of the capsfilter that sets the size and rate the
    /// encoder gets (scaled and rate-limited from the capture): the
    /// congestion controller steps resolution and framerate there. `None`
    /// when nothing is encoded here (the camera's own H.264).
    pub adapt: Option<usize>,
    /// One line per decision, for `probe` and the logs.
    pub reasons: Vec<String>,
}

/// Caps of the adaptation point for a size and rate.
pub fn adapt_caps(width: u32, height: u32, framerate: u32) -> String {
    format!("video/x-raw,width=(int){width},height=(int){height},framerate=(fraction){framerate}/1")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{wanted} is not available in this GStreamer installation (available: {})",
        if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    EncoderUnavailable {
        wanted: String,
        available: Vec<String>,
    },
    #[error("capture size {width}x{height} must be even in both dimensions for H.264 4:2:0")]
    OddSize { width: u32, height: u32 },
    #[error("no usable camera found ({found})")]
    NoCamera { found: String },
    #[error("camera {camera} has no mode {wanted}; it offers: {available}")]
    NoMode {
        camera: String,
        wanted: String,
        available: String,
    },
    #[error(
        "encoder.kind = \"passthrough\" needs a camera that delivers H.264 at {wanted}; {camera} offers: {available}"
    )]
    NoPassthrough {
        camera: String,
        wanted: String,
        available: String,
    },
}

/// Everything a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub source: &'a SourceKind,
    pub capture: CaptureSpec,
    pub encoder: EncoderChoice,
    pub settings: EncoderSettings,
    pub board: BoardFamily,
    /// What the probe found; may be empty (no probe, or no camera).
    pub cameras: &'a [Camera],
}

/// The JPEG decoder for MJPEG cameras: the board's hardware one if present.
fn jpeg_decoder(board: BoardFamily, available: &impl Fn(&str) -> bool) -> &'static str {
    let hardware = match board {
        BoardFamily::RaspberryPi => Some("v4l2jpegdec"),
        BoardFamily::Jetson => Some("nvjpegdec"),
        BoardFamily::Rockchip => Some("mppjpegdec"),
        _ => None,
    };
    hardware.filter(|name| available(name)).unwrap_or("jpegdec")
}

impl PipelinePlan {
    /// Plans the chain for a session.
    pub fn build(
        input: PlanInput<'_>,
        available: impl Fn(&str) -> bool,
    ) -> Result<Self, PlanError> {
        let capture = input.capture;
        if !capture.width.is_multiple_of(2) || !capture.height.is_multiple_of(2) {
            return Err(PlanError::OddSize {
                width: capture.width,
                height: capture.height,
            });
        }
        let preference = if input.encoder == EncoderChoice::Passthrough {
            ModePreference::H264
        } else {
            ModePreference::Encode
        };
        let source = plan_source(input.source, input.cameras, capture, preference)?;
        let mut steps = source.steps;
        let mut reasons = source.reasons;
        if source.pixels == Some(PixelKind::Mjpeg) {
            let decoder = jpeg_decoder(input.board, &available);
            steps.push(Step::Element(ElementPlan::new(decoder)));
            reasons.push(format!("MJPEG decoded by {decoder}"));
        }
        // Drop rather than queue when downstream falls behind: latency
        // matters more than every frame for a live view.
        steps.push(Step::Element(
            ElementPlan::new("queue")
                .with("max-size-buffers", "2")
                .with("max-size-bytes", "0")
                .with("max-size-time", "0")
                .with("leaky", "downstream"),
        ));

        let camera_h264 = source.pixels == Some(PixelKind::H264);
        let mut adapt = None;
        let encoder = if camera_h264 {
            reasons.push("encoder: none, the camera's own H.264 is passed through".into());
            None
        } else {
            let kind = choose_encoder(input.encoder, input.board, &available)?;
            let order: Vec<&str> = EncoderKind::preference(input.board)
                .iter()
                .map(|kind| kind.factory())
                .collect();
            reasons.push(format!(
                "encoder: {} ({}; {:?} board prefers {})",
                kind.factory(),
                if kind.is_hardware() {
                    "hardware"
                } else {
                    "software"
                },
                input.board,
                order.join(" > ")
            ));
            // Under congestion the controller scales down and drops frames
            // here, before the encoder; at the capture's own size and rate
            // both elements pass buffers through untouched.
            steps.push(Step::Element(ElementPlan::new("videoscale")));
            steps.push(Step::Element(
                ElementPlan::new("videorate").with("drop-only", "true"),
            ));
            adapt = Some(steps.len());
            steps.push(Step::Caps(adapt_caps(
                capture.width,
                capture.height,
                capture.framerate,
            )));
            let feed = kind.input();
            steps.push(Step::Element(ElementPlan::new(feed.converter)));
            steps.push(Step::Caps(feed.caps.into()));
            steps.push(Step::Element(kind.element(input.settings)));
            steps.push(Step::Caps(kind.output_caps(capture)));
            Some(kind)
        };
        // config-interval=-1: SPS/PPS in front of every IDR, so a keyframe
        // alone is always decodable.
        steps.push(Step::Element(
            ElementPlan::new("h264parse").with("config-interval", "-1"),
        ));
        steps.push(Step::Element(
            ElementPlan::new("rtph264pay")
                .with("config-interval", "-1")
                .with("aggregate-mode", "zero-latency")
                .with("pt", H264_PAYLOAD_TYPE.to_string())
                .with("mtu", "1200"),
        ));
        // The extmap field makes the payloader add the TWCC extension to
        // every packet and webrtcbin offer it; transport-cc feedback is
        // what browsers then send back.
        steps.push(Step::Caps(format!(
            "application/x-rtp,media=(string)video,encoding-name=(string)H264,\
             payload=(int){H264_PAYLOAD_TYPE},clock-rate=(int)90000,\
             extmap-{TWCC_EXTENSION_ID}=(string){TWCC_EXTENSION_URI},\
             rtcp-fb-transport-cc=(boolean)true"
        )));
        Ok(Self {
            encoder,
            steps,
            adapt,
            reasons,
        })
    }

    /// Every factory the plan needs, for availability checks and preloading.
    pub fn factories(&self) -> impl Iterator<Item = &str> {
        step_factories(&self.steps)
    }
}

/// The element factories of a chain, in order.
pub(crate) fn step_factories(steps: &[Step]) -> impl Iterator<Item = &str> {
    steps.iter().filter_map(|step| match step {
        Step::Element(element) => Some(element.factory.as_str()),
        Step::Caps(_) => None,
    })
}

/// A chain in `gst-launch-1.0` syntax.
pub(crate) fn write_steps(f: &mut fmt::Formatter<'_>, steps: &[Step]) -> fmt::Result {
    let mut first = true;
    for step in steps {
        if !first {
            f.write_str(" ! ")?;
        }
        first = false;
        match step {
            Step::Caps(caps) => f.write_str(caps)?,
            Step::Element(element) => {
                f.write_str(&element.factory)?;
                for (key, value) in &element.properties {
                    if value.contains([' ', ',']) {
                        write!(f, " {key}=\"{value}\"")?;
                    } else {
                        write!(f, " {key}={value}")?;
                    }
                }
            }
        }
    }
    Ok(())
}

impl fmt::Display for PipelinePlan {
    /// The chain in `gst-launch-1.0` syntax, for logs and bug reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_steps(f, &self.steps)?;
        f.write_str(" ! webrtcbin")
    }
}

#[cfg(test)]
mod tests;

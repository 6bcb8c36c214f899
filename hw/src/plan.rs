//! The pipeline plan: the capture -> convert -> encode -> parse -> payload
//! chain as plain data, ending where `webrtcbin` takes over.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::encoder::{EncoderChoice, EncoderSettings, choose_encoder};

/// RTP payload type used for H.264 in the offer.
pub const H264_PAYLOAD_TYPE: u8 = 96;

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceKind {
    /// A live test pattern; needs no hardware.
    Test,
    /// A V4L2 capture device that gives raw frames.
    V4l2 { device: PathBuf },
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
#[serde(tag = "step", rename_all = "lowercase")]
pub enum Step {
    Element(ElementPlan),
    /// A capsfilter with these caps.
    Caps(String),
}

/// The whole chain up to (not including) webrtcbin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelinePlan {
    pub encoder: crate::EncoderKind,
    pub steps: Vec<Step>,
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
}

impl PipelinePlan {
    /// Plans the chain for a session.
    pub fn build(
        source: &SourceKind,
        capture: CaptureSpec,
        encoder: EncoderChoice,
        settings: EncoderSettings,
        available: impl Fn(&str) -> bool,
    ) -> Result<Self, PlanError> {
        if !capture.width.is_multiple_of(2) || !capture.height.is_multiple_of(2) {
            return Err(PlanError::OddSize {
                width: capture.width,
                height: capture.height,
            });
        }
        let encoder = choose_encoder(encoder, available)?;
        let raw_caps = format!(
            "video/x-raw,width=(int){},height=(int){},framerate=(fraction){}/1",
            capture.width, capture.height, capture.framerate
        );
        let source_element = match source {
            SourceKind::Test => ElementPlan::new("videotestsrc")
                .with("is-live", "true")
                .with("pattern", "smpte"),
            SourceKind::V4l2 { device } => {
                ElementPlan::new("v4l2src").with("device", device.display().to_string())
            }
        };
        let steps = vec![
            Step::Element(source_element),
            Step::Caps(raw_caps),
            // Drop rather than queue when the encoder falls behind: latency
            // matters more than every frame for a live view.
            Step::Element(
                ElementPlan::new("queue")
                    .with("max-size-buffers", "2")
                    .with("max-size-bytes", "0")
                    .with("max-size-time", "0")
                    .with("leaky", "downstream"),
            ),
            Step::Element(ElementPlan::new("videoconvert")),
            Step::Caps(format!(
                "video/x-raw,format=(string){}",
                encoder.input_format()
            )),
            Step::Element(encoder.element(settings)),
            Step::Caps(encoder.output_caps()),
            // config-interval=-1: SPS/PPS in front of every IDR, so a
            // keyframe alone is always decodable.
            Step::Element(ElementPlan::new("h264parse").with("config-interval", "-1")),
            Step::Element(
                ElementPlan::new("rtph264pay")
                    .with("config-interval", "-1")
                    .with("aggregate-mode", "zero-latency")
                    .with("pt", H264_PAYLOAD_TYPE.to_string())
                    .with("mtu", "1200"),
            ),
            Step::Caps(format!(
                "application/x-rtp,media=(string)video,encoding-name=(string)H264,\
                 payload=(int){H264_PAYLOAD_TYPE},clock-rate=(int)90000"
            )),
        ];
        Ok(Self { encoder, steps })
    }

    /// Every factory the plan needs, for availability checks and preloading.
    pub fn factories(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|step| match step {
            Step::Element(element) => Some(element.factory.as_str()),
            Step::Caps(_) => None,
        })
    }
}

impl fmt::Display for PipelinePlan {
    /// The chain in `gst-launch-1.0` syntax, for logs and bug reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for step in &self.steps {
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
        f.write_str(" ! webrtcbin")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EncoderKind;

    const CAPTURE: CaptureSpec = CaptureSpec {
        width: 640,
        height: 480,
        framerate: 30,
    };
    const SETTINGS: EncoderSettings = EncoderSettings {
        bitrate_kbps: 2000,
        keyframe_interval: 60,
    };

    fn plan(source: SourceKind, available: &[&str]) -> Result<PipelinePlan, PlanError> {
        PipelinePlan::build(&source, CAPTURE, EncoderChoice::Auto, SETTINGS, |name| {
            available.contains(&name)
        })
    }

    #[test]
    fn test_source_with_x264_is_a_complete_chain() {
        let plan = plan(SourceKind::Test, &["x264enc", "openh264enc"]).unwrap();
        assert_eq!(plan.encoder, EncoderKind::X264Enc);
        let factories: Vec<&str> = plan.factories().collect();
        assert_eq!(
            factories,
            [
                "videotestsrc",
                "queue",
                "videoconvert",
                "x264enc",
                "h264parse",
                "rtph264pay"
            ]
        );
        let text = plan.to_string();
        assert!(text.starts_with("videotestsrc is-live=true"), "{text}");
        assert!(text.contains("width=(int)640,height=(int)480"), "{text}");
        assert!(
            text.contains("profile=(string)constrained-baseline"),
            "{text}"
        );
        assert!(text.ends_with("! webrtcbin"), "{text}");
    }

    #[test]
    fn v4l2_source_names_the_device() {
        let plan = plan(
            SourceKind::V4l2 {
                device: "/dev/video2".into(),
            },
            &["v4l2h264enc", "x264enc"],
        )
        .unwrap();
        assert_eq!(plan.encoder, EncoderKind::V4l2H264Enc);
        match &plan.steps[0] {
            Step::Element(element) => {
                assert_eq!(element.factory, "v4l2src");
                assert_eq!(element.property("device"), Some("/dev/video2"));
            }
            other => panic!("first step is {other:?}"),
        }
        assert!(plan.to_string().contains("level=(string)3.1"));
    }

    #[test]
    fn odd_sizes_are_refused() {
        let err = PipelinePlan::build(
            &SourceKind::Test,
            CaptureSpec {
                width: 641,
                height: 480,
                framerate: 30,
            },
            EncoderChoice::Auto,
            SETTINGS,
            |_| true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("641x480"), "{err}");
    }

    #[test]
    fn no_encoder_fails_the_plan() {
        let err = plan(SourceKind::Test, &[]).unwrap_err();
        assert!(matches!(err, PlanError::EncoderUnavailable { .. }));
    }
}

//! H.264 encoders the agent knows, in order of preference, with the exact
//! settings each one needs to emit browser-safe H.264.
//!
//! Every encoder spells the same intent differently (bitrate in kbit/s or
//! bit/s, keyframe interval as `key-int-max`, `gop-size` or a V4L2 control),
//! so the table lives in one place: [`EncoderKind::element`] says which
//! element and properties realise [`EncoderSettings`]. Keyframes on request
//! (PLI/FIR from the viewer) arrive as upstream `GstForceKeyUnit` events,
//! which all three encoders honour without extra properties.

use serde::Serialize;

use crate::board::BoardFamily;
use crate::plan::{CaptureSpec, ElementPlan};

/// x264's rate buffer, ms of the target bitrate: the most one frame may
/// exceed its share. The default 600 ms lets one keyframe carry 0.6 s of
/// the bitrate, sent as one burst that a narrow uplink's short queue
/// tail-drops; 120 ms (webrtcsink's choice too) keeps a keyframe within a
/// few frames' worth: softer for a moment instead of lost.
const X264_VBV_MS: u32 = 120;

/// What an encoder must be fed: the converter in front of it and the raw
/// caps that converter must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderInput {
    pub converter: &'static str,
    pub caps: &'static str,
}

/// An H.264 encoder element the agent can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// The Raspberry Pi (up to 4) hardware encoder behind the V4L2 M2M API.
    V4l2H264Enc,
    /// NVIDIA Jetson's hardware encoder.
    NvV4l2H264Enc,
    /// Rockchip's MPP hardware encoder.
    MppH264Enc,
    /// Intel/AMD VA-API, the `va` plugin of GStreamer 1.22.
    VaH264Enc,
    /// Intel/AMD VA-API, the older gstreamer-vaapi plugin.
    VaapiH264Enc,
    /// libx264, tuned for zero latency.
    X264Enc,
    /// Cisco's OpenH264, constrained baseline only.
    OpenH264Enc,
}

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EncoderChoice {
    /// The best encoder for this board that exists in this installation.
    Auto,
    /// Exactly this encoder; its absence is an error.
    Only(EncoderKind),
    /// No encoder: send the camera's own H.264.
    Passthrough,
}

/// Rate control and GOP settings that every encoder receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EncoderSettings {
    pub bitrate_kbps: u32,
    /// Frames between forced keyframes.
    pub keyframe_interval: u32,
}

impl EncoderKind {
    pub const ALL: [EncoderKind; 7] = [
        EncoderKind::V4l2H264Enc,
        EncoderKind::NvV4l2H264Enc,
        EncoderKind::MppH264Enc,
        EncoderKind::VaH264Enc,
        EncoderKind::VaapiH264Enc,
        EncoderKind::X264Enc,
        EncoderKind::OpenH264Enc,
    ];

    /// The order `auto` tries on a board: its hardware encoder first, then
    /// the cheapest good software encoder, then the always-licensable one.
    /// The Pi 5 has no encoder block, so `v4l2h264enc` is never tried
    /// there even if a stale plugin registry lists it.
    pub fn preference(board: BoardFamily) -> &'static [EncoderKind] {
        use EncoderKind::*;
        match board {
            BoardFamily::RaspberryPi => &[V4l2H264Enc, X264Enc, OpenH264Enc],
            BoardFamily::RaspberryPi5 => &[X264Enc, OpenH264Enc],
            BoardFamily::Jetson => &[NvV4l2H264Enc, X264Enc, OpenH264Enc],
            BoardFamily::Rockchip => &[MppH264Enc, X264Enc, OpenH264Enc],
            BoardFamily::X86 => &[VaH264Enc, VaapiH264Enc, X264Enc, OpenH264Enc],
            BoardFamily::Unknown => &[V4l2H264Enc, X264Enc, OpenH264Enc],
        }
    }

    /// The GStreamer factory name.
    pub fn factory(self) -> &'static str {
        match self {
            EncoderKind::V4l2H264Enc => "v4l2h264enc",
            EncoderKind::NvV4l2H264Enc => "nvv4l2h264enc",
            EncoderKind::MppH264Enc => "mpph264enc",
            EncoderKind::VaH264Enc => "vah264enc",
            EncoderKind::VaapiH264Enc => "vaapih264enc",
            EncoderKind::X264Enc => "x264enc",
            EncoderKind::OpenH264Enc => "openh264enc",
        }
    }

    /// Parses a factory name as written in the configuration.
    pub fn from_factory(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.factory() == name)
    }

    pub fn is_hardware(self) -> bool {
        !matches!(self, EncoderKind::X264Enc | EncoderKind::OpenH264Enc)
    }

    /// What the encoder must be fed.
    pub fn input(self) -> EncoderInput {
        let (converter, caps) = match self {
            // Jetson's encoder takes frames in NVMM memory from nvvidconv.
            EncoderKind::NvV4l2H264Enc => {
                ("nvvidconv", "video/x-raw(memory:NVMM),format=(string)NV12")
            }
            EncoderKind::MppH264Enc | EncoderKind::VaH264Enc | EncoderKind::VaapiH264Enc => {
                ("videoconvert", "video/x-raw,format=(string)NV12")
            }
            EncoderKind::V4l2H264Enc | EncoderKind::X264Enc | EncoderKind::OpenH264Enc => {
                ("videoconvert", "video/x-raw,format=(string)I420")
            }
        };
        EncoderInput { converter, caps }
    }

    /// The encoder element with its settings for `capture`.
    pub fn element(self, settings: EncoderSettings) -> ElementPlan {
        let bitrate_kbps = settings.bitrate_kbps.to_string();
        let bitrate_bps = (u64::from(settings.bitrate_kbps) * 1000).to_string();
        let gop = settings.keyframe_interval.to_string();
        match self {
            EncoderKind::V4l2H264Enc => ElementPlan::new("v4l2h264enc").with(
                "extra-controls",
                // repeat_sequence_header puts SPS/PPS before every IDR,
                // which late joiners and Safari need; profile 1 is
                // constrained baseline in the V4L2 enum.
                format!(
                    "controls,video_bitrate={bitrate_bps},h264_i_frame_period={gop},\
                     repeat_sequence_header=1,h264_profile=1"
                ),
            ),
            EncoderKind::NvV4l2H264Enc => ElementPlan::new("nvv4l2h264enc")
                .with("bitrate", bitrate_bps)
                .with("iframeinterval", gop.clone())
                .with("idrinterval", gop)
                .with("insert-sps-pps", "true")
                .with("profile", "0")
                .with("control-rate", "1"),
            EncoderKind::MppH264Enc => ElementPlan::new("mpph264enc")
                .with("bps", bitrate_bps)
                .with("gop", gop)
                .with("profile", "66")
                .with("rc-mode", "cbr")
                .with("header-mode", "each-idr"),
            EncoderKind::VaH264Enc => ElementPlan::new("vah264enc")
                .with("bitrate", bitrate_kbps)
                .with("key-int-max", gop)
                .with("b-frames", "0")
                .with("rate-control", "cbr"),
            EncoderKind::VaapiH264Enc => ElementPlan::new("vaapih264enc")
                .with("bitrate", bitrate_kbps)
                .with("keyframe-period", gop)
                .with("max-bframes", "0")
                .with("rate-control", "cbr"),
            EncoderKind::X264Enc => ElementPlan::new("x264enc")
                .with("tune", "zerolatency")
                .with("speed-preset", "ultrafast")
                .with("bitrate", bitrate_kbps)
                .with("vbv-buf-capacity", X264_VBV_MS.to_string())
                .with("key-int-max", gop)
                .with("bframes", "0"),
            EncoderKind::OpenH264Enc => ElementPlan::new("openh264enc")
                .with("bitrate", bitrate_bps)
                .with("gop-size", gop)
                .with("rate-control", "bitrate")
                .with("complexity", "low")
                .with("usage-type", "camera"),
        }
    }

    /// The property that changes the bitrate of a running encoder, and its
    /// value for `kbps`: the congestion controller's lever. Every encoder
    /// here applies it to the next frames without a restart (x264 through
    /// `x264_encoder_reconfig`, the V4L2 encoders through a control set on
    /// the open device).
    pub fn live_bitrate(self, kbps: u32) -> (&'static str, String) {
        let bps = u64::from(kbps) * 1000;
        match self {
            EncoderKind::V4l2H264Enc => ("extra-controls", format!("controls,video_bitrate={bps}")),
            EncoderKind::NvV4l2H264Enc | EncoderKind::OpenH264Enc => ("bitrate", bps.to_string()),
            EncoderKind::MppH264Enc => ("bps", bps.to_string()),
            EncoderKind::VaH264Enc | EncoderKind::VaapiH264Enc | EncoderKind::X264Enc => {
                ("bitrate", kbps.to_string())
            }
        }
    }

    /// Caps forced right after the encoder. Constrained baseline is what
    /// every browser and phone decodes. The Pi encoder needs an explicit
    /// level or it picks one the stream does not keep to; 3.1 covers 720p30,
    /// 4 covers 1080p30. Encoders whose caps do not carry a profile get it
    /// through their properties; h264parse then reads the real SPS, so the
    /// offer's profile-level-id always describes the stream sent.
    pub fn output_caps(self, capture: CaptureSpec) -> String {
        match self {
            EncoderKind::V4l2H264Enc => {
                let level = if u64::from(capture.width) * u64::from(capture.height) <= 1280 * 720 {
                    "3.1"
                } else {
                    "4"
                };
                format!("video/x-h264,profile=(string)constrained-baseline,level=(string){level}")
            }
            EncoderKind::NvV4l2H264Enc | EncoderKind::MppH264Enc => {
                "video/x-h264,stream-format=(string)byte-stream".into()
            }
            EncoderKind::VaH264Enc
            | EncoderKind::VaapiH264Enc
            | EncoderKind::X264Enc
            | EncoderKind::OpenH264Enc => {
                "video/x-h264,profile=(string)constrained-baseline".into()
            }
        }
    }
}

/// Picks the encoder for `choice` on `board` among those `available` says
/// exist. Passthrough is not an encoder and is handled by the plan.
pub fn choose_encoder(
    choice: EncoderChoice,
    board: BoardFamily,
    available: impl Fn(&str) -> bool,
) -> Result<EncoderKind, crate::PlanError> {
    let present: Vec<EncoderKind> = EncoderKind::ALL
        .into_iter()
        .filter(|kind| available(kind.factory()))
        .collect();
    let chosen = match choice {
        EncoderChoice::Auto => EncoderKind::preference(board)
            .iter()
            .copied()
            .find(|kind| present.contains(kind)),
        EncoderChoice::Only(kind) => present.contains(&kind).then_some(kind),
        EncoderChoice::Passthrough => None,
    };
    chosen.ok_or_else(|| crate::PlanError::EncoderUnavailable {
        wanted: match choice {
            EncoderChoice::Auto => "any H.264 encoder for this board".into(),
            EncoderChoice::Only(kind) => kind.factory().into(),
            EncoderChoice::Passthrough => "passthrough".into(),
        },
        available: present
            .iter()
            .map(|kind| kind.factory().to_string())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: EncoderSettings = EncoderSettings {
        bitrate_kbps: 1500,
        keyframe_interval: 60,
    };
    const P720: CaptureSpec = CaptureSpec {
        width: 1280,
        height: 720,
        framerate: 30,
    };
    const P1080: CaptureSpec = CaptureSpec {
        width: 1920,
        height: 1080,
        framerate: 30,
    };

    #[test]
    fn auto_follows_the_board() {
        let all = |_: &str| true;
        let cases = [
            (BoardFamily::RaspberryPi, EncoderKind::V4l2H264Enc),
            (BoardFamily::RaspberryPi5, EncoderKind::X264Enc),
            (BoardFamily::Jetson, EncoderKind::NvV4l2H264Enc),
            (BoardFamily::Rockchip, EncoderKind::MppH264Enc),
            (BoardFamily::X86, EncoderKind::VaH264Enc),
            (BoardFamily::Unknown, EncoderKind::V4l2H264Enc),
        ];
        for (board, expected) in cases {
            assert_eq!(
                choose_encoder(EncoderChoice::Auto, board, all).unwrap(),
                expected,
                "{board:?}"
            );
        }
        // Software fallbacks.
        assert_eq!(
            choose_encoder(EncoderChoice::Auto, BoardFamily::RaspberryPi, |name| name
                != "v4l2h264enc")
            .unwrap(),
            EncoderKind::X264Enc
        );
        assert_eq!(
            choose_encoder(EncoderChoice::Auto, BoardFamily::X86, |name| name
                == "openh264enc")
            .unwrap(),
            EncoderKind::OpenH264Enc
        );
    }

    #[test]
    fn a_pi5_never_picks_the_v4l2_encoder_it_does_not_have() {
        let err = choose_encoder(EncoderChoice::Auto, BoardFamily::RaspberryPi5, |name| {
            name == "v4l2h264enc"
        })
        .unwrap_err();
        assert!(err.to_string().contains("v4l2h264enc"), "{err}");
    }

    #[test]
    fn missing_explicit_encoder_names_what_exists() {
        let err = choose_encoder(
            EncoderChoice::Only(EncoderKind::V4l2H264Enc),
            BoardFamily::RaspberryPi,
            |name| name == "x264enc",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("v4l2h264enc"), "{text}");
        assert!(text.contains("available: x264enc"), "{text}");
    }

    #[test]
    fn no_encoder_at_all_is_an_error() {
        let err = choose_encoder(EncoderChoice::Auto, BoardFamily::X86, |_| false).unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
    }

    #[test]
    fn bitrate_units_follow_each_element() {
        let x264 = EncoderKind::X264Enc.element(SETTINGS);
        assert_eq!(x264.property("bitrate"), Some("1500"));
        assert_eq!(x264.property("key-int-max"), Some("60"));
        assert_eq!(x264.property("vbv-buf-capacity"), Some("120"));
        let openh264 = EncoderKind::OpenH264Enc.element(SETTINGS);
        assert_eq!(openh264.property("bitrate"), Some("1500000"));
        assert_eq!(openh264.property("gop-size"), Some("60"));
        let nv = EncoderKind::NvV4l2H264Enc.element(SETTINGS);
        assert_eq!(nv.property("bitrate"), Some("1500000"));
        assert_eq!(nv.property("insert-sps-pps"), Some("true"));
        let mpp = EncoderKind::MppH264Enc.element(SETTINGS);
        assert_eq!(mpp.property("bps"), Some("1500000"));
        assert_eq!(mpp.property("header-mode"), Some("each-idr"));
        let va = EncoderKind::VaH264Enc.element(SETTINGS);
        assert_eq!(va.property("bitrate"), Some("1500"));
        let pi = EncoderKind::V4l2H264Enc.element(SETTINGS);
        let controls = pi.property("extra-controls").unwrap();
        assert!(controls.contains("video_bitrate=1500000"), "{controls}");
        assert!(controls.contains("h264_i_frame_period=60"), "{controls}");
        assert!(controls.contains("repeat_sequence_header=1"), "{controls}");
    }

    #[test]
    fn live_bitrate_uses_the_same_property_and_unit_as_the_start_setting() {
        for kind in EncoderKind::ALL {
            let (property, value) = kind.live_bitrate(SETTINGS.bitrate_kbps);
            let start = kind.element(SETTINGS);
            match start.property(property) {
                // The Pi's controls carry more than the bitrate at start.
                Some(controls) if property == "extra-controls" => {
                    let bitrate = value.trim_start_matches("controls,");
                    assert!(controls.contains(bitrate), "{kind:?}: {controls} / {value}");
                }
                Some(initial) => assert_eq!(initial, value, "{kind:?}"),
                None => panic!("{kind:?}: {property} is not set at start"),
            }
        }
    }

    #[test]
    fn the_pi_level_follows_the_size() {
        assert!(
            EncoderKind::V4l2H264Enc
                .output_caps(P720)
                .contains("level=(string)3.1")
        );
        assert!(
            EncoderKind::V4l2H264Enc
                .output_caps(P1080)
                .contains("level=(string)4")
        );
    }

    #[test]
    fn every_encoder_has_a_name_an_input_and_caps() {
        for kind in EncoderKind::ALL {
            assert_eq!(EncoderKind::from_factory(kind.factory()), Some(kind));
            assert!(kind.output_caps(P720).starts_with("video/x-h264"));
            assert!(kind.input().caps.contains("video/x-raw"));
        }
        assert_eq!(EncoderKind::from_factory("nvh264enc"), None);
        assert!(EncoderKind::NvV4l2H264Enc.input().caps.contains("NVMM"));
    }
}

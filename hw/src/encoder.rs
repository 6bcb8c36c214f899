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

use crate::plan::ElementPlan;

/// An H.264 encoder element the agent can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// The Raspberry Pi (up to 4) hardware encoder behind the V4L2 M2M API.
    V4l2H264Enc,
    /// libx264, tuned for zero latency.
    X264Enc,
    /// Cisco's OpenH264, constrained baseline only.
    OpenH264Enc,
}

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EncoderChoice {
    /// The best encoder that exists in this GStreamer installation.
    Auto,
    /// Exactly this encoder; its absence is an error.
    Only(EncoderKind),
}

/// Rate control and GOP settings that every encoder receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EncoderSettings {
    pub bitrate_kbps: u32,
    /// Frames between forced keyframes.
    pub keyframe_interval: u32,
}

impl EncoderKind {
    /// Preference order: hardware first, then the cheapest good software
    /// encoder, then the one that is always licensable.
    pub const PREFERENCE: [EncoderKind; 3] = [
        EncoderKind::V4l2H264Enc,
        EncoderKind::X264Enc,
        EncoderKind::OpenH264Enc,
    ];

    /// The GStreamer factory name.
    pub fn factory(self) -> &'static str {
        match self {
            EncoderKind::V4l2H264Enc => "v4l2h264enc",
            EncoderKind::X264Enc => "x264enc",
            EncoderKind::OpenH264Enc => "openh264enc",
        }
    }

    /// Parses a factory name as written in the configuration.
    pub fn from_factory(name: &str) -> Option<Self> {
        Self::PREFERENCE
            .into_iter()
            .find(|kind| kind.factory() == name)
    }

    /// The raw format the encoder takes on its sink pad.
    pub fn input_format(self) -> &'static str {
        "I420"
    }

    /// The encoder element with its settings.
    pub fn element(self, settings: EncoderSettings) -> ElementPlan {
        let bitrate_bps = u64::from(settings.bitrate_kbps) * 1000;
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
            EncoderKind::X264Enc => ElementPlan::new("x264enc")
                .with("tune", "zerolatency")
                .with("speed-preset", "ultrafast")
                .with("bitrate", settings.bitrate_kbps.to_string())
                .with("key-int-max", gop)
                .with("bframes", "0"),
            EncoderKind::OpenH264Enc => ElementPlan::new("openh264enc")
                .with("bitrate", bitrate_bps.to_string())
                .with("gop-size", gop)
                .with("rate-control", "bitrate")
                .with("complexity", "low")
                .with("usage-type", "camera"),
        }
    }

    /// Caps forced right after the encoder. Constrained baseline is what
    /// every browser and phone decodes; the Pi encoder also needs an explicit
    /// level or it picks one the SDP does not announce.
    pub fn output_caps(self) -> String {
        match self {
            EncoderKind::V4l2H264Enc => {
                "video/x-h264,profile=(string)constrained-baseline,level=(string)3.1".into()
            }
            EncoderKind::X264Enc | EncoderKind::OpenH264Enc => {
                "video/x-h264,profile=(string)constrained-baseline".into()
            }
        }
    }
}

/// Picks the encoder for `choice` among those `available` says exist.
pub fn choose_encoder(
    choice: EncoderChoice,
    available: impl Fn(&str) -> bool,
) -> Result<EncoderKind, crate::PlanError> {
    let present: Vec<EncoderKind> = EncoderKind::PREFERENCE
        .into_iter()
        .filter(|kind| available(kind.factory()))
        .collect();
    let chosen = match choice {
        EncoderChoice::Auto => present.first().copied(),
        EncoderChoice::Only(kind) => present.contains(&kind).then_some(kind),
    };
    chosen.ok_or_else(|| crate::PlanError::EncoderUnavailable {
        wanted: match choice {
            EncoderChoice::Auto => "any H.264 encoder".into(),
            EncoderChoice::Only(kind) => kind.factory().into(),
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

    #[test]
    fn auto_prefers_hardware_then_x264() {
        assert_eq!(
            choose_encoder(EncoderChoice::Auto, |_| true).unwrap(),
            EncoderKind::V4l2H264Enc
        );
        assert_eq!(
            choose_encoder(EncoderChoice::Auto, |name| name != "v4l2h264enc").unwrap(),
            EncoderKind::X264Enc
        );
        assert_eq!(
            choose_encoder(EncoderChoice::Auto, |name| name == "openh264enc").unwrap(),
            EncoderKind::OpenH264Enc
        );
    }

    #[test]
    fn missing_explicit_encoder_names_what_exists() {
        let err = choose_encoder(EncoderChoice::Only(EncoderKind::V4l2H264Enc), |name| {
            name == "x264enc"
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("v4l2h264enc"), "{text}");
        assert!(text.contains("x264enc"), "{text}");
    }

    #[test]
    fn no_encoder_at_all_is_an_error() {
        let err = choose_encoder(EncoderChoice::Auto, |_| false).unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
    }

    #[test]
    fn bitrate_units_follow_each_element() {
        let x264 = EncoderKind::X264Enc.element(SETTINGS);
        assert_eq!(x264.property("bitrate"), Some("1500"));
        assert_eq!(x264.property("key-int-max"), Some("60"));
        let openh264 = EncoderKind::OpenH264Enc.element(SETTINGS);
        assert_eq!(openh264.property("bitrate"), Some("1500000"));
        assert_eq!(openh264.property("gop-size"), Some("60"));
        let pi = EncoderKind::V4l2H264Enc.element(SETTINGS);
        let controls = pi.property("extra-controls").unwrap();
        assert!(controls.contains("video_bitrate=1500000"), "{controls}");
        assert!(controls.contains("h264_i_frame_period=60"), "{controls}");
        assert!(controls.contains("repeat_sequence_header=1"), "{controls}");
    }

    #[test]
    fn every_encoder_is_constrained_baseline() {
        for kind in EncoderKind::PREFERENCE {
            assert!(kind.output_caps().contains("constrained-baseline"));
            assert_eq!(EncoderKind::from_factory(kind.factory()), Some(kind));
        }
        assert_eq!(EncoderKind::from_factory("nvh264enc"), None);
    }
}

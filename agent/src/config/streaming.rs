//! `[streaming]`: the product plan's rollout flag and the legacy JPEG
//! relay it rolls back to. Raw keys, defaults, validation and the rows
//! `check-config` shows. The `SIMPLE_STREAMING` environment variable is
//! the same flag; `layers` merges it over the files as `streaming.simple`.

use serde::Deserialize;

use super::ConfigError;
use super::value::in_range;

/// Frames per second the legacy relay sends by default: enough to see a
/// scene, little enough for a socket built for signaling.
const DEFAULT_LEGACY_FPS: u32 = 2;
/// The most the contract's "low rate" is taken to allow.
const MAX_LEGACY_FPS: u32 = 15;
const DEFAULT_LEGACY_QUALITY: u32 = 85;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStreaming {
    /// `true` (default): WebRTC. `false`: the legacy JPEG frame relay.
    pub simple: Option<bool>,
    /// Legacy relay: JPEG frames sent per second.
    pub legacy_fps: Option<u32>,
    /// Legacy relay: the JPEG quality frames start at; lowered for frames
    /// over the contract's 512 KiB.
    pub legacy_quality: Option<u32>,
}

/// How a session carries video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingMode {
    /// WebRTC (`SIMPLE_STREAMING` on): the product's one media transport.
    WebRtc,
    /// The legacy relay (`SIMPLE_STREAMING` off): JPEG frames over the
    /// signaling socket as `stream:frame`.
    LegacyJpeg,
}

impl StreamingMode {
    /// The name in log records, `doctor` and `probe`.
    pub fn name(self) -> &'static str {
        match self {
            StreamingMode::WebRtc => "webrtc",
            StreamingMode::LegacyJpeg => "legacy_jpeg",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamingSettings {
    pub mode: StreamingMode,
    pub legacy_fps: u32,
    pub legacy_quality: u8,
}

impl Default for StreamingSettings {
    fn default() -> Self {
        Self {
            mode: StreamingMode::WebRtc,
            legacy_fps: DEFAULT_LEGACY_FPS,
            legacy_quality: DEFAULT_LEGACY_QUALITY as u8,
        }
    }
}

impl StreamingSettings {
    /// Validates the section; an empty one gives WebRTC.
    pub fn from_raw(raw: &RawStreaming) -> Result<Self, ConfigError> {
        let quality = in_range(
            "streaming.legacy_quality",
            raw.legacy_quality.unwrap_or(DEFAULT_LEGACY_QUALITY),
            u32::from(hw::MIN_JPEG_QUALITY)..=95,
        )?;
        Ok(Self {
            mode: if raw.simple.unwrap_or(true) {
                StreamingMode::WebRtc
            } else {
                StreamingMode::LegacyJpeg
            },
            legacy_fps: in_range(
                "streaming.legacy_fps",
                raw.legacy_fps.unwrap_or(DEFAULT_LEGACY_FPS),
                1..=MAX_LEGACY_FPS,
            )?,
            // In range 30..=95 just above, so it fits a byte.
            legacy_quality: u8::try_from(quality).unwrap_or(hw::MIN_JPEG_QUALITY),
        })
    }

    /// The section's rows for `check-config`, defaults included.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "streaming.simple",
                (self.mode == StreamingMode::WebRtc).to_string(),
            ),
            ("streaming.legacy_fps", self.legacy_fps.to_string()),
            ("streaming.legacy_quality", self.legacy_quality.to_string()),
        ]
    }
}

/// The `SIMPLE_STREAMING` variable as a `streaming.simple` value: `None`
/// when unset or empty (systemd's `Environment=SIMPLE_STREAMING=` clears
/// it), an error naming the variable for anything but a boolean.
pub fn simple_streaming_flag(value: Option<&str>) -> Result<Option<bool>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    match value.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "1" | "true" | "on" | "yes" => Ok(Some(true)),
        "0" | "false" | "off" | "no" => Ok(Some(false)),
        _ => Err(ConfigError::BadFlag {
            value: value.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_takes_booleans_and_names_itself_otherwise() {
        assert_eq!(simple_streaming_flag(None).unwrap(), None);
        assert_eq!(simple_streaming_flag(Some("")).unwrap(), None);
        for on in ["1", "true", "ON", " yes "] {
            assert_eq!(simple_streaming_flag(Some(on)).unwrap(), Some(true), "{on}");
        }
        for off in ["0", "false", "Off", "no"] {
            assert_eq!(
                simple_streaming_flag(Some(off)).unwrap(),
                Some(false),
                "{off}"
            );
        }
        let error = simple_streaming_flag(Some("legacy"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("SIMPLE_STREAMING=legacy"), "{error}");
    }

    #[test]
    fn the_legacy_rate_and_quality_are_bounded() {
        let raw = RawStreaming {
            legacy_fps: Some(16),
            ..RawStreaming::default()
        };
        let error = StreamingSettings::from_raw(&raw).unwrap_err().to_string();
        assert!(error.contains("streaming.legacy_fps"), "{error}");
        let raw = RawStreaming {
            legacy_quality: Some(20),
            ..RawStreaming::default()
        };
        let error = StreamingSettings::from_raw(&raw).unwrap_err().to_string();
        assert!(error.contains("streaming.legacy_quality"), "{error}");
        let defaults = StreamingSettings::from_raw(&RawStreaming::default()).unwrap();
        assert_eq!(defaults, StreamingSettings::default());
    }
}

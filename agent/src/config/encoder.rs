//! `[encoder]`: which H.264 encoder and the congestion controller's
//! bitrate bounds. Raw keys, defaults, validation and the rows
//! `check-config` shows.

use serde::Deserialize;

use super::ConfigError;
use super::value::{in_range, quoted};
use crate::session::congestion::BitrateLimits;
use hw::{EncoderChoice, EncoderKind, EncoderSettings};

/// Keys kept under an old name: (old, new), both dotted. The old one is
/// accepted alone (errors name it) and shown under the new name.
pub const RENAMED: [(&str, &str); 1] = [("encoder.bitrate_kbps", "encoder.max_bitrate_kbps")];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncoder {
    /// `auto`, `passthrough` (the camera's own H.264) or an element name.
    pub kind: Option<String>,
    /// The old name of `max_bitrate_kbps`, still accepted.
    pub bitrate_kbps: Option<u32>,
    /// The congestion controller never goes below this.
    pub min_bitrate_kbps: Option<u32>,
    /// Where each session starts before the viewer's feedback arrives.
    pub start_bitrate_kbps: Option<u32>,
    /// The congestion controller never goes above this.
    pub max_bitrate_kbps: Option<u32>,
    /// Frames between keyframes.
    pub keyframe_interval: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderConfig {
    pub choice: EncoderChoice,
    /// The encoder's settings at start (its bitrate is the start bitrate).
    pub settings: EncoderSettings,
    pub bitrate: BitrateLimits,
}

/// The controller's bounds: `max_bitrate_kbps` (or its old name
/// `bitrate_kbps`, not both), then `min` and `start` within it.
fn bitrate_limits(enc: &RawEncoder) -> Result<BitrateLimits, ConfigError> {
    let [(old_key, _)] = RENAMED;
    let max = match (enc.max_bitrate_kbps, enc.bitrate_kbps) {
        (Some(_), Some(old)) => {
            return Err(ConfigError::Invalid {
                key: old_key,
                value: old.to_string(),
                reason: "is the old name of encoder.max_bitrate_kbps; set only max_bitrate_kbps"
                    .into(),
            });
        }
        (Some(max), None) => in_range("encoder.max_bitrate_kbps", max, 100..=50_000)?,
        (None, Some(old)) => in_range(old_key, old, 100..=50_000)?,
        (None, None) => 2000,
    };
    let min = in_range(
        "encoder.min_bitrate_kbps",
        enc.min_bitrate_kbps.unwrap_or(150.min(max)),
        50..=max,
    )?;
    let start = in_range(
        "encoder.start_bitrate_kbps",
        enc.start_bitrate_kbps.unwrap_or(1000.clamp(min, max)),
        min..=max,
    )?;
    Ok(BitrateLimits {
        min_kbps: min,
        start_kbps: start,
        max_kbps: max,
    })
}

impl EncoderConfig {
    /// Validates the `[encoder]` section; an empty one gives the defaults
    /// (what `probe` plans with when there is no configuration).
    pub fn from_raw(enc: &RawEncoder) -> Result<Self, ConfigError> {
        let choice = match enc.kind.as_deref().unwrap_or("auto") {
            "auto" => EncoderChoice::Auto,
            "passthrough" => EncoderChoice::Passthrough,
            name => EncoderChoice::Only(EncoderKind::from_factory(name).ok_or_else(|| {
                ConfigError::Invalid {
                    key: "encoder.kind",
                    value: format!("{name:?}"),
                    reason: format!(
                        "must be \"auto\", \"passthrough\" or one of {}",
                        EncoderKind::ALL.map(|kind| kind.factory()).join(", ")
                    ),
                }
            })?),
        };
        let bitrate = bitrate_limits(enc)?;
        Ok(EncoderConfig {
            choice,
            settings: EncoderSettings {
                bitrate_kbps: bitrate.start_kbps,
                keyframe_interval: in_range(
                    "encoder.keyframe_interval",
                    enc.keyframe_interval.unwrap_or(60),
                    1..=600,
                )?,
            },
            bitrate,
        })
    }

    /// The section's rows for `check-config`, defaults included; the old
    /// `bitrate_kbps` shows as `max_bitrate_kbps`.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "encoder.kind",
                quoted(match self.choice {
                    EncoderChoice::Auto => "auto",
                    EncoderChoice::Passthrough => "passthrough",
                    EncoderChoice::Only(kind) => kind.factory(),
                }),
            ),
            (
                "encoder.min_bitrate_kbps",
                self.bitrate.min_kbps.to_string(),
            ),
            (
                "encoder.start_bitrate_kbps",
                self.bitrate.start_kbps.to_string(),
            ),
            (
                "encoder.max_bitrate_kbps",
                self.bitrate.max_kbps.to_string(),
            ),
            (
                "encoder.keyframe_interval",
                self.settings.keyframe_interval.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(text: &str) -> Result<EncoderConfig, ConfigError> {
        EncoderConfig::from_raw(&toml::from_str(text).unwrap())
    }

    #[test]
    fn bitrate_bounds_default_within_max_and_accept_the_old_key() {
        let defaults = encoder("").unwrap().bitrate;
        assert_eq!(
            (defaults.min_kbps, defaults.start_kbps, defaults.max_kbps),
            (150, 1000, 2000)
        );
        let old = encoder("bitrate_kbps = 600").unwrap();
        assert_eq!((old.bitrate.start_kbps, old.bitrate.max_kbps), (600, 600));
        assert_eq!(
            old.settings.bitrate_kbps, 600,
            "the encoder starts at start"
        );
        let tight =
            encoder("min_bitrate_kbps = 300\nmax_bitrate_kbps = 800\nstart_bitrate_kbps = 400")
                .unwrap()
                .bitrate;
        assert_eq!(
            (tight.min_kbps, tight.start_kbps, tight.max_kbps),
            (300, 400, 800)
        );
    }

    #[test]
    fn the_old_name_and_the_new_one_together_are_refused() {
        let err = encoder("bitrate_kbps = 900\nmax_bitrate_kbps = 900").unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { key, .. } if key == RENAMED[0].0),
            "{err}"
        );
    }
}

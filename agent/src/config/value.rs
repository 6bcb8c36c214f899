//! Reading and showing the value kinds the sections share: durations,
//! numbers in a range, strings and lists as `check-config` prints them.
//! Errors name the dotted key they were given.

use std::time::Duration;

use super::ConfigError;

/// A human duration (`"500ms"`, `"15s"`, `"2m"`), greater than zero;
/// `default` when the key is unset.
pub(super) fn duration(
    key: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let parsed = humantime::parse_duration(text).map_err(|err| ConfigError::Invalid {
        key,
        value: format!("{text:?}"),
        reason: format!("not a duration like \"15s\" or \"2m\" ({err})"),
    })?;
    if parsed.is_zero() {
        return Err(ConfigError::Invalid {
            key,
            value: format!("{text:?}"),
            reason: "must be greater than zero".into(),
        });
    }
    Ok(parsed)
}

pub(super) fn in_range(
    key: &'static str,
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason: format!("must be between {} and {}", range.start(), range.end()),
        })
    }
}

/// A string as a TOML value.
pub(super) fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A duration as the human string the file would hold.
pub(super) fn shown_duration(value: Duration) -> String {
    quoted(&humantime::format_duration(value).to_string())
}

/// Values already shown, as a TOML array.
pub(super) fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

//! `[session]`: how many viewers and when a session gives up. Raw keys,
//! defaults, validation and the rows `check-config` shows.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::value::{duration, in_range, shown_duration};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// No SDP answer by then ends the session with `answer_timeout`.
    pub answer_timeout: Option<String>,
    /// Concurrent viewers; requests beyond it are refused with `camera_busy`.
    pub max_sessions: Option<u32>,
    /// ICE not connected this long after the answer ends with `ice_failed`.
    pub ice_timeout: Option<String>,
    /// ICE disconnected or failed for this long ends with `ice_failed`.
    pub ice_disconnect_grace: Option<String>,
    /// No RTCP from the viewer for this long while live: the media path
    /// is dead, the session ends with `ice_failed`.
    pub media_timeout: Option<String>,
    /// Optional cap on a session's length (`max_duration`); unset = none.
    pub max_duration: Option<String>,
    /// Signaling down this long ends live sessions (they cannot be ended
    /// or renegotiated without it).
    pub signaling_grace: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    pub answer_timeout: Duration,
    pub max_sessions: usize,
    pub ice_timeout: Duration,
    pub ice_disconnect_grace: Duration,
    pub media_timeout: Duration,
    pub max_duration: Option<Duration>,
    pub signaling_grace: Duration,
}

/// A dead media path must end the session, a Wi-Fi blip must not: at
/// least 3 s, at most a minute.
fn media_timeout(value: Option<&str>) -> Result<Duration, ConfigError> {
    const KEY: &str = "session.media_timeout";
    let timeout = duration(KEY, value, Duration::from_secs(10))?;
    if !(Duration::from_secs(3)..=Duration::from_secs(60)).contains(&timeout) {
        return Err(ConfigError::Invalid {
            key: KEY,
            value: format!("{:?}", value.unwrap_or_default()),
            reason: "must be between 3s and 60s".into(),
        });
    }
    Ok(timeout)
}

impl SessionSettings {
    /// Validates the section; an empty one gives the defaults.
    pub fn from_raw(ses: &RawSession) -> Result<Self, ConfigError> {
        Ok(Self {
            answer_timeout: duration(
                "session.answer_timeout",
                ses.answer_timeout.as_deref(),
                Duration::from_secs(15),
            )?,
            max_sessions: in_range(
                "session.max_sessions",
                ses.max_sessions.unwrap_or(1),
                1..=16,
            )? as usize,
            ice_timeout: duration(
                "session.ice_timeout",
                ses.ice_timeout.as_deref(),
                Duration::from_secs(20),
            )?,
            ice_disconnect_grace: duration(
                "session.ice_disconnect_grace",
                ses.ice_disconnect_grace.as_deref(),
                Duration::from_secs(10),
            )?,
            media_timeout: media_timeout(ses.media_timeout.as_deref())?,
            max_duration: match ses.max_duration.as_deref() {
                None => None,
                Some(text) => Some(duration(
                    "session.max_duration",
                    Some(text),
                    Duration::ZERO,
                )?),
            },
            signaling_grace: duration(
                "session.signaling_grace",
                ses.signaling_grace.as_deref(),
                Duration::from_secs(30),
            )?,
        })
    }

    /// The section's rows for `check-config`, defaults included.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "session.answer_timeout",
                shown_duration(self.answer_timeout),
            ),
            ("session.max_sessions", self.max_sessions.to_string()),
            ("session.ice_timeout", shown_duration(self.ice_timeout)),
            (
                "session.ice_disconnect_grace",
                shown_duration(self.ice_disconnect_grace),
            ),
            ("session.media_timeout", shown_duration(self.media_timeout)),
            (
                "session.max_duration",
                self.max_duration
                    .map(shown_duration)
                    .unwrap_or_else(|| "(none)".into()),
            ),
            (
                "session.signaling_grace",
                shown_duration(self.signaling_grace),
            ),
        ]
    }
}

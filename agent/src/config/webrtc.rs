//! `[webrtc]`: ICE servers and addresses. Raw keys, defaults, validation
//! and the rows `check-config` shows; TURN URLs may carry credentials and
//! are never echoed.

use serde::Deserialize;

use super::ConfigError;
use super::value::{list, quoted};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebrtc {
    /// STUN servers, `stun:host:port`. Only the first is used by webrtcbin.
    pub stun_servers: Option<Vec<String>>,
    /// TURN servers, `turn://user:password@host:port`.
    pub turn_servers: Option<Vec<String>>,
    /// Restrict ICE host candidates to these local addresses.
    pub local_addresses: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebrtcSettings {
    pub stun_servers: Vec<String>,
    pub turn_servers: Vec<String>,
    pub local_addresses: Vec<std::net::IpAddr>,
}

impl WebrtcSettings {
    /// Validates the section; an empty one gives no servers and every
    /// local address.
    pub fn from_raw(rtc: &RawWebrtc) -> Result<Self, ConfigError> {
        let stun_servers = rtc.stun_servers.clone().unwrap_or_default();
        for server in &stun_servers {
            if !(server.starts_with("stun:") || server.starts_with("stun://")) {
                return Err(ConfigError::Invalid {
                    key: "webrtc.stun_servers",
                    value: format!("{server:?}"),
                    reason: "must start with stun:".into(),
                });
            }
        }
        let turn_servers = rtc.turn_servers.clone().unwrap_or_default();
        for server in &turn_servers {
            if !(server.starts_with("turn://") || server.starts_with("turns://")) {
                return Err(ConfigError::Invalid {
                    key: "webrtc.turn_servers",
                    value: "<redacted: may hold credentials>".into(),
                    reason: "must be turn://user:password@host:port or turns://...".into(),
                });
            }
        }
        let mut local_addresses = Vec::new();
        for address in rtc.local_addresses.iter().flatten() {
            local_addresses.push(address.parse().map_err(|_| ConfigError::Invalid {
                key: "webrtc.local_addresses",
                value: format!("{address:?}"),
                reason: "not an IP address".into(),
            })?);
        }
        Ok(Self {
            stun_servers,
            turn_servers,
            local_addresses,
        })
    }

    /// The section's rows for `check-config`, defaults included; each TURN
    /// URL shows as `"<redacted>"`.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "webrtc.stun_servers",
                list(self.stun_servers.iter().map(|url| quoted(url))),
            ),
            (
                "webrtc.turn_servers",
                list(self.turn_servers.iter().map(|_| quoted("<redacted>"))),
            ),
            (
                "webrtc.local_addresses",
                list(
                    self.local_addresses
                        .iter()
                        .map(|address| quoted(&address.to_string())),
                ),
            ),
        ]
    }
}

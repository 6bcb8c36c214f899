//! `[control_plane]`: where the cloud is and how to reach it. Raw keys,
//! defaults, validation and the rows `check-config` shows.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::value::{duration, quoted, shown_duration};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControlPlane {
    /// http(s) base URL of the control plane; the socket URL is derived.
    pub url: Option<String>,
    /// File holding the device's bearer token (mode 0600).
    pub token_file: Option<PathBuf>,
    /// Socket.IO request path, default `/socket.io/`.
    pub socket_path: Option<String>,
    /// Socket.IO namespace, default `/`.
    pub namespace: Option<String>,
    /// Timeout of one REST call, default `10s`.
    pub request_timeout: Option<String>,
    /// Upper bound of the reconnect backoff, default `30s`.
    pub reconnect_max: Option<String>,
    /// Window of an idle camera's first reconnect attempt, default `5s`.
    pub reconnect_spread: Option<String>,
    /// PEM file of extra CA certificates to trust (a private CA).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlPlaneSettings {
    pub url: url::Url,
    /// `None` when the token comes from a systemd credential only.
    pub token_file: Option<PathBuf>,
    pub socket_path: String,
    pub namespace: String,
    pub request_timeout: Duration,
    pub reconnect_max: Duration,
    /// Never more than `reconnect_max`.
    pub reconnect_spread: Duration,
    pub ca_file: Option<PathBuf>,
}

impl ControlPlaneSettings {
    /// Validates the section; `url` is the one required key.
    pub fn from_raw(cp: &RawControlPlane) -> Result<Self, ConfigError> {
        let url_text = cp.url.as_deref().ok_or(ConfigError::Missing {
            key: "control_plane.url",
        })?;
        let url = url::Url::parse(url_text).map_err(|err| ConfigError::Invalid {
            key: "control_plane.url",
            value: format!("{url_text:?}"),
            reason: format!("not a URL ({err})"),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ConfigError::Invalid {
                key: "control_plane.url",
                value: format!("{url_text:?}"),
                reason: "must be an http:// or https:// URL with a host".into(),
            });
        }
        let socket_path = cp
            .socket_path
            .clone()
            .unwrap_or_else(|| "/socket.io/".into());
        if !socket_path.starts_with('/') {
            return Err(ConfigError::Invalid {
                key: "control_plane.socket_path",
                value: format!("{socket_path:?}"),
                reason: "must start with '/'".into(),
            });
        }
        let namespace = cp.namespace.clone().unwrap_or_else(|| "/".into());
        if !namespace.starts_with('/') || namespace.contains(',') {
            return Err(ConfigError::Invalid {
                key: "control_plane.namespace",
                value: format!("{namespace:?}"),
                reason: "must start with '/' and contain no ','".into(),
            });
        }
        let reconnect_max = duration(
            "control_plane.reconnect_max",
            cp.reconnect_max.as_deref(),
            Duration::from_secs(30),
        )?;
        // Default 5 s, or reconnect_max if that is shorter; set explicitly,
        // it must fit under reconnect_max.
        let reconnect_spread = duration(
            "control_plane.reconnect_spread",
            cp.reconnect_spread.as_deref(),
            Duration::from_secs(5).min(reconnect_max),
        )?;
        if reconnect_spread > reconnect_max {
            return Err(ConfigError::Invalid {
                key: "control_plane.reconnect_spread",
                value: format!("{:?}", cp.reconnect_spread.as_deref().unwrap_or_default()),
                reason: "must not exceed control_plane.reconnect_max".into(),
            });
        }
        Ok(Self {
            url,
            token_file: cp.token_file.clone(),
            socket_path,
            namespace,
            request_timeout: duration(
                "control_plane.request_timeout",
                cp.request_timeout.as_deref(),
                Duration::from_secs(10),
            )?,
            reconnect_max,
            reconnect_spread,
            ca_file: cp.ca_file.clone(),
        })
    }

    /// The section's rows for `check-config`, defaults included.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        vec![
            ("control_plane.url", quoted(self.url.as_str())),
            (
                "control_plane.token_file",
                self.token_file
                    .as_ref()
                    .map(|path| quoted(&path.display().to_string()))
                    .unwrap_or_else(|| "(unset: systemd credential)".into()),
            ),
            ("control_plane.socket_path", quoted(&self.socket_path)),
            ("control_plane.namespace", quoted(&self.namespace)),
            (
                "control_plane.request_timeout",
                shown_duration(self.request_timeout),
            ),
            (
                "control_plane.reconnect_max",
                shown_duration(self.reconnect_max),
            ),
            (
                "control_plane.reconnect_spread",
                shown_duration(self.reconnect_spread),
            ),
            (
                "control_plane.ca_file",
                self.ca_file
                    .as_ref()
                    .map(|path| quoted(&path.display().to_string()))
                    .unwrap_or_else(|| "(none: public roots only)".into()),
            ),
        ]
    }
}

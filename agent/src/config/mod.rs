//! Configuration in two stages: [`RawConfig`] is what the TOML file says
//! (every key optional, unknown keys rejected), [`Settings`] is the validated,
//! typed result that everything downstream reads.
//!
//! Keeping the stages apart means a typo is caught by serde with the file's
//! line and column, and a bad value is caught by [`Settings::from_raw`] with
//! the key's dotted name, before anything starts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::session::congestion::BitrateLimits;
use hw::{CaptureSpec, EncoderChoice, EncoderKind, EncoderSettings, SourceKind};

pub mod layers;

use layers::{Layered, Origin};

/// The systemd credential (`LoadCredential=device-token:...`) that holds
/// the token when the agent runs as a service.
pub const CREDENTIAL_NAME: &str = "device-token";

/// The environment variable of the product plan's rollout flag.
pub const SIMPLE_STREAMING_ENV: &str = "SIMPLE_STREAMING";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason} (got {value})")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("config key `{key}` is required")]
    Missing { key: &'static str },
    #[error("{source_name}: {message}")]
    Override {
        source_name: String,
        message: String,
    },
    #[error("{origin}: {error}")]
    Located {
        origin: String,
        error: Box<ConfigError>,
    },
    #[error(
        "no device token: set control_plane.token_file, or run under systemd with \
         LoadCredential={CREDENTIAL_NAME}:<path>"
    )]
    NoToken,
    #[error("cannot read the device token file {path}: {source}")]
    TokenRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "device token file {path} is readable by group or others (mode {mode:o}); \
         run `chmod 600 {path}` so only the agent's user can read it"
    )]
    TokenPermissions { path: PathBuf, mode: u32 },
    #[error("device token file {path} is empty")]
    TokenEmpty { path: PathBuf },
    #[error("device token in {path} is longer than 4 KiB")]
    TokenTooLong { path: PathBuf },
    #[error(
        "{SIMPLE_STREAMING_ENV}={value}: the legacy JPEG frame relay is not supported by this \
         build; unset it or set it to 1 for WebRTC streaming"
    )]
    LegacyUnsupported { value: String },
    #[error("{SIMPLE_STREAMING_ENV}={value} is not a boolean (use 1/0, true/false, on/off)")]
    BadFlag { value: String },
}

/// What the TOML file says, nothing checked beyond types.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub control_plane: RawControlPlane,
    #[serde(default)]
    pub camera: RawCamera,
    #[serde(default)]
    pub encoder: RawEncoder,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub webrtc: RawWebrtc,
}

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// `auto` (first usable camera), `v4l2`, `libcamera` or `test`.
    pub source: Option<String>,
    /// V4L2 device node; for `libcamera`, libcamera's camera id.
    pub device: Option<PathBuf>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<u32>,
}

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

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub control_plane: ControlPlaneSettings,
    pub camera: CameraSettings,
    pub encoder: EncoderConfig,
    pub session: SessionSettings,
    pub webrtc: WebrtcSettings,
}

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
pub struct CameraSettings {
    pub source: SourceKind,
    pub capture: CaptureSpec,
}

#[derive(Debug, Clone, Copy)]
pub struct EncoderConfig {
    pub choice: EncoderChoice,
    /// The encoder's settings at start (its bitrate is the start bitrate).
    pub settings: EncoderSettings,
    pub bitrate: BitrateLimits,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub answer_timeout: Duration,
    pub max_sessions: usize,
    pub ice_timeout: Duration,
    pub ice_disconnect_grace: Duration,
    pub media_timeout: Duration,
    pub max_duration: Option<Duration>,
    pub signaling_grace: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct WebrtcSettings {
    pub stun_servers: Vec<String>,
    pub turn_servers: Vec<String>,
    pub local_addresses: Vec<std::net::IpAddr>,
}

impl RawConfig {
    /// Parses TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

fn duration(
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

fn in_range(
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

/// The controller's bounds: `max_bitrate_kbps` (or its old name
/// `bitrate_kbps`, not both), then `min` and `start` within it.
fn bitrate_limits(enc: &RawEncoder) -> Result<BitrateLimits, ConfigError> {
    let max = match (enc.max_bitrate_kbps, enc.bitrate_kbps) {
        (Some(_), Some(old)) => {
            return Err(ConfigError::Invalid {
                key: "encoder.bitrate_kbps",
                value: old.to_string(),
                reason: "is the old name of encoder.max_bitrate_kbps; set only max_bitrate_kbps"
                    .into(),
            });
        }
        (Some(max), None) => in_range("encoder.max_bitrate_kbps", max, 100..=50_000)?,
        (None, Some(old)) => in_range("encoder.bitrate_kbps", old, 100..=50_000)?,
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
}

impl Settings {
    /// Validates the raw file into settings.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let cp = raw.control_plane;
        let url_text = cp.url.ok_or(ConfigError::Missing {
            key: "control_plane.url",
        })?;
        let url = url::Url::parse(&url_text).map_err(|err| ConfigError::Invalid {
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
        let token_file = cp.token_file;
        let socket_path = cp.socket_path.unwrap_or_else(|| "/socket.io/".into());
        if !socket_path.starts_with('/') {
            return Err(ConfigError::Invalid {
                key: "control_plane.socket_path",
                value: format!("{socket_path:?}"),
                reason: "must start with '/'".into(),
            });
        }
        let namespace = cp.namespace.unwrap_or_else(|| "/".into());
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
                value: format!("{:?}", cp.reconnect_spread.unwrap_or_default()),
                reason: "must not exceed control_plane.reconnect_max".into(),
            });
        }
        let control_plane = ControlPlaneSettings {
            url,
            token_file,
            socket_path,
            namespace,
            request_timeout: duration(
                "control_plane.request_timeout",
                cp.request_timeout.as_deref(),
                Duration::from_secs(10),
            )?,
            reconnect_max,
            reconnect_spread,
            ca_file: cp.ca_file,
        };

        let cam = raw.camera;
        let source = match cam.source.as_deref().unwrap_or("v4l2") {
            "test" => SourceKind::Test,
            "auto" => SourceKind::Auto,
            "v4l2" => SourceKind::V4l2 {
                device: cam.device.unwrap_or_else(|| "/dev/video0".into()),
            },
            // For libcamera, `device` is libcamera's camera id (optional).
            "libcamera" => SourceKind::Libcamera {
                camera: cam.device.map(|id| id.display().to_string()),
            },
            other => {
                return Err(ConfigError::Invalid {
                    key: "camera.source",
                    value: format!("{other:?}"),
                    reason: "must be \"auto\", \"v4l2\", \"libcamera\" or \"test\"".into(),
                });
            }
        };
        let width = in_range("camera.width", cam.width.unwrap_or(1280), 16..=7680)?;
        let height = in_range("camera.height", cam.height.unwrap_or(720), 16..=4320)?;
        for (key, value) in [("camera.width", width), ("camera.height", height)] {
            if !value.is_multiple_of(2) {
                return Err(ConfigError::Invalid {
                    key,
                    value: value.to_string(),
                    reason: "must be even (H.264 4:2:0)".into(),
                });
            }
        }
        let camera = CameraSettings {
            source,
            capture: CaptureSpec {
                width,
                height,
                framerate: in_range("camera.framerate", cam.framerate.unwrap_or(30), 1..=120)?,
            },
        };

        let encoder = EncoderConfig::from_raw(&raw.encoder)?;

        let ses = raw.session;
        let session = SessionSettings {
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
        };

        let rtc = raw.webrtc;
        let stun_servers = rtc.stun_servers.unwrap_or_default();
        for server in &stun_servers {
            if !(server.starts_with("stun:") || server.starts_with("stun://")) {
                return Err(ConfigError::Invalid {
                    key: "webrtc.stun_servers",
                    value: format!("{server:?}"),
                    reason: "must start with stun:".into(),
                });
            }
        }
        let turn_servers = rtc.turn_servers.unwrap_or_default();
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
        for address in rtc.local_addresses.unwrap_or_default() {
            local_addresses.push(address.parse().map_err(|_| ConfigError::Invalid {
                key: "webrtc.local_addresses",
                value: format!("{address:?}"),
                reason: "not an IP address".into(),
            })?);
        }

        Ok(Self {
            control_plane,
            camera,
            encoder,
            session,
            webrtc: WebrtcSettings {
                stun_servers,
                turn_servers,
                local_addresses,
            },
        })
    }

    /// Loads every layer (file, drop-ins, environment, `--set` flags),
    /// checks the rollout flag and validates. Validation errors say where
    /// the offending value was set.
    pub fn load(config: &Path, overrides: &[String]) -> Result<Loaded, ConfigError> {
        check_simple_streaming(std::env::var(SIMPLE_STREAMING_ENV).ok().as_deref())?;
        Self::load_from(config, std::env::vars(), overrides)
    }

    /// [`Settings::load`] with an explicit environment.
    pub fn load_from(
        config: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Loaded, ConfigError> {
        let layered = layers::load(config, env, overrides)?;
        let settings = Self::from_raw(layered.raw()?).map_err(|error| {
            let key = match &error {
                ConfigError::Invalid { key, .. } => Some(*key),
                _ => None,
            };
            match key.map(|key| layered.origin(key)) {
                Some(origin) if origin != Origin::Default => ConfigError::Located {
                    origin: origin.to_string(),
                    error: Box::new(error),
                },
                _ => error,
            }
        })?;
        Ok(Loaded { settings, layered })
    }

    /// Where the device token is read from: the systemd credential when
    /// present, else `control_plane.token_file`.
    pub fn token_path(&self, credentials_dir: Option<&Path>) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = credentials_dir {
            let credential = dir.join(CREDENTIAL_NAME);
            if credential.is_file() {
                return Ok(credential);
            }
        }
        self.control_plane
            .token_file
            .clone()
            .ok_or(ConfigError::NoToken)
    }

    /// Reads the token from [`Settings::token_path`], using the process's
    /// `CREDENTIALS_DIRECTORY`.
    pub fn read_token(&self) -> Result<Secret, ConfigError> {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        read_token(&self.token_path(credentials.as_deref())?)
    }
}

impl Settings {
    /// Every setting as `(section.key, TOML value)`, defaults included, for
    /// `check-config`. TURN URLs may carry credentials and are redacted.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        fn quoted(text: &str) -> String {
            toml::Value::String(text.to_owned()).to_string()
        }
        fn duration(value: Duration) -> String {
            quoted(&humantime::format_duration(value).to_string())
        }
        fn list(items: impl Iterator<Item = String>) -> String {
            format!("[{}]", items.collect::<Vec<_>>().join(", "))
        }
        let cp = &self.control_plane;
        let (source, device) = match &self.camera.source {
            SourceKind::Test => ("test", None),
            SourceKind::Auto => ("auto", None),
            SourceKind::V4l2 { device } => ("v4l2", Some(device.display().to_string())),
            SourceKind::Libcamera { camera } => ("libcamera", camera.clone()),
        };
        let mut entries = vec![
            ("control_plane.url", quoted(cp.url.as_str())),
            (
                "control_plane.token_file",
                cp.token_file
                    .as_ref()
                    .map(|path| quoted(&path.display().to_string()))
                    .unwrap_or_else(|| "(unset: systemd credential)".into()),
            ),
            ("control_plane.socket_path", quoted(&cp.socket_path)),
            ("control_plane.namespace", quoted(&cp.namespace)),
            (
                "control_plane.request_timeout",
                duration(cp.request_timeout),
            ),
            ("control_plane.reconnect_max", duration(cp.reconnect_max)),
            (
                "control_plane.reconnect_spread",
                duration(cp.reconnect_spread),
            ),
            (
                "control_plane.ca_file",
                cp.ca_file
                    .as_ref()
                    .map(|path| quoted(&path.display().to_string()))
                    .unwrap_or_else(|| "(none: public roots only)".into()),
            ),
            ("camera.source", quoted(source)),
        ];
        if let Some(device) = device {
            entries.push(("camera.device", quoted(&device)));
        }
        let capture = self.camera.capture;
        entries.extend([
            ("camera.width", capture.width.to_string()),
            ("camera.height", capture.height.to_string()),
            ("camera.framerate", capture.framerate.to_string()),
            (
                "encoder.kind",
                quoted(match self.encoder.choice {
                    EncoderChoice::Auto => "auto",
                    EncoderChoice::Passthrough => "passthrough",
                    EncoderChoice::Only(kind) => kind.factory(),
                }),
            ),
            (
                "encoder.min_bitrate_kbps",
                self.encoder.bitrate.min_kbps.to_string(),
            ),
            (
                "encoder.start_bitrate_kbps",
                self.encoder.bitrate.start_kbps.to_string(),
            ),
            (
                "encoder.max_bitrate_kbps",
                self.encoder.bitrate.max_kbps.to_string(),
            ),
            (
                "encoder.keyframe_interval",
                self.encoder.settings.keyframe_interval.to_string(),
            ),
            (
                "session.answer_timeout",
                duration(self.session.answer_timeout),
            ),
            (
                "session.max_sessions",
                self.session.max_sessions.to_string(),
            ),
            ("session.ice_timeout", duration(self.session.ice_timeout)),
            (
                "session.ice_disconnect_grace",
                duration(self.session.ice_disconnect_grace),
            ),
            (
                "session.media_timeout",
                duration(self.session.media_timeout),
            ),
            (
                "session.max_duration",
                self.session
                    .max_duration
                    .map(duration)
                    .unwrap_or_else(|| "(none)".into()),
            ),
            (
                "session.signaling_grace",
                duration(self.session.signaling_grace),
            ),
            (
                "webrtc.stun_servers",
                list(self.webrtc.stun_servers.iter().map(|url| quoted(url))),
            ),
            (
                "webrtc.turn_servers",
                list(
                    self.webrtc
                        .turn_servers
                        .iter()
                        .map(|_| quoted("<redacted>")),
                ),
            ),
            (
                "webrtc.local_addresses",
                list(
                    self.webrtc
                        .local_addresses
                        .iter()
                        .map(|address| quoted(&address.to_string())),
                ),
            ),
        ]);
        entries
    }
}

/// Validated settings with the layers they came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub layered: Layered,
}

/// The `SIMPLE_STREAMING` rollout flag: on (the default) selects WebRTC.
/// Off would select the legacy frame relay, which this build does not carry.
pub fn check_simple_streaming(value: Option<&str>) -> Result<(), ConfigError> {
    let Some(value) = value else { return Ok(()) };
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "on" | "yes" => Ok(()),
        "0" | "false" | "off" | "no" => Err(ConfigError::LegacyUnsupported {
            value: value.into(),
        }),
        _ => Err(ConfigError::BadFlag {
            value: value.into(),
        }),
    }
}

/// Reads the device token, refusing files others can read (as ssh does).
pub fn read_token(path: &Path) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|source| ConfigError::TokenRead {
        path: path.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::TokenPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenRead {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::TokenEmpty {
            path: path.to_owned(),
        });
    }
    if token.len() > 4096 {
        return Err(ConfigError::TokenTooLong {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_raw(RawConfig::parse(text, Path::new("agent.toml"))?)
    }

    const MINIMAL: &str = r#"
        [control_plane]
        url = "https://cloud.example.com"
        token_file = "/etc/camera-agent/device-token"
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let s = settings(MINIMAL).unwrap();
        assert_eq!(s.control_plane.socket_path, "/socket.io/");
        assert_eq!(s.control_plane.namespace, "/");
        assert_eq!(
            s.camera.source,
            SourceKind::V4l2 {
                device: "/dev/video0".into()
            }
        );
        assert_eq!(s.camera.capture.width, 1280);
        assert_eq!(s.session.answer_timeout, Duration::from_secs(15));
        assert_eq!(s.session.max_sessions, 1);
        assert_eq!(s.session.ice_timeout, Duration::from_secs(20));
        assert_eq!(s.session.max_duration, None);
        assert_eq!(s.session.signaling_grace, Duration::from_secs(30));
        assert_eq!(s.encoder.choice, EncoderChoice::Auto);
    }

    #[test]
    fn the_issue_example_parses() {
        let s = settings(
            r#"
            [control_plane]
            url = "https://cloud.example.com"
            token_file = "/etc/camera-agent/device-token"
            [camera]
            source = "test"
            device = "/dev/video0"
            width = 640
            height = 480
            framerate = 30
            [session]
            answer_timeout = "2m"
            "#,
        )
        .unwrap();
        assert_eq!(s.camera.source, SourceKind::Test);
        assert_eq!(s.session.answer_timeout, Duration::from_secs(120));
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = settings(&format!("{MINIMAL}\n[camera]\nwidht = 640\n")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("widht"), "{text}");
        assert!(text.contains("line 7"), "{text}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = settings(&format!("{MINIMAL}\n[camrea]\n")).unwrap_err();
        assert!(err.to_string().contains("camrea"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[camera]\nsource = \"usb\"", "camera.source"),
            ("[camera]\nwidth = 641", "camera.width"),
            ("[camera]\nheight = 0", "camera.height"),
            ("[camera]\nframerate = 500", "camera.framerate"),
            (
                "[session]\nanswer_timeout = \"soon\"",
                "session.answer_timeout",
            ),
            (
                "[session]\nanswer_timeout = \"0s\"",
                "session.answer_timeout",
            ),
            ("[encoder]\nkind = \"nvenc\"", "encoder.kind"),
            ("[session]\nice_timeout = \"x\"", "session.ice_timeout"),
            ("[session]\nmax_duration = \"0s\"", "session.max_duration"),
            (
                "[session]\nsignaling_grace = \"-1s\"",
                "session.signaling_grace",
            ),
            ("[session]\nmax_sessions = 0", "session.max_sessions"),
            ("[encoder]\nbitrate_kbps = 1", "encoder.bitrate_kbps"),
            (
                "[encoder]\nbitrate_kbps = 900\nmax_bitrate_kbps = 900",
                "encoder.bitrate_kbps",
            ),
            (
                "[encoder]\nmax_bitrate_kbps = 500\nmin_bitrate_kbps = 600",
                "encoder.min_bitrate_kbps",
            ),
            (
                "[encoder]\nmax_bitrate_kbps = 500\nstart_bitrate_kbps = 800",
                "encoder.start_bitrate_kbps",
            ),
            ("[session]\nmedia_timeout = \"2s\"", "session.media_timeout"),
            ("[session]\nmedia_timeout = \"5m\"", "session.media_timeout"),
            (
                "[webrtc]\nlocal_addresses = [\"eth0\"]",
                "webrtc.local_addresses",
            ),
            (
                "[webrtc]\nstun_servers = [\"example.com\"]",
                "webrtc.stun_servers",
            ),
        ];
        for (extra, key) in cases {
            let err = settings(&format!("{MINIMAL}\n{extra}\n")).unwrap_err();
            assert!(err.to_string().contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn bitrate_bounds_default_within_max_and_accept_the_old_key() {
        let defaults = settings(MINIMAL).unwrap().encoder.bitrate;
        assert_eq!(
            (defaults.min_kbps, defaults.start_kbps, defaults.max_kbps),
            (150, 1000, 2000)
        );
        let old = settings(&format!("{MINIMAL}\n[encoder]\nbitrate_kbps = 600\n"))
            .unwrap()
            .encoder;
        assert_eq!((old.bitrate.start_kbps, old.bitrate.max_kbps), (600, 600));
        assert_eq!(
            old.settings.bitrate_kbps, 600,
            "the encoder starts at start"
        );
        let tight = settings(&format!(
            "{MINIMAL}\n[encoder]\nmin_bitrate_kbps = 300\nmax_bitrate_kbps = 800\nstart_bitrate_kbps = 400\n"
        ))
        .unwrap()
        .encoder
        .bitrate;
        assert_eq!(
            (tight.min_kbps, tight.start_kbps, tight.max_kbps),
            (300, 400, 800)
        );
    }

    #[test]
    fn wrong_type_is_a_parse_error_naming_the_key() {
        let err = settings(&format!("{MINIMAL}\n[camera]\nwidth = \"wide\"\n")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("width"), "{text}");
    }

    #[test]
    fn url_must_be_http() {
        let err = settings("[control_plane]\nurl = \"ftp://x\"\ntoken_file = \"/t\"").unwrap_err();
        assert!(err.to_string().contains("control_plane.url"), "{err}");
        let err = settings("[control_plane]\ntoken_file = \"/t\"").unwrap_err();
        assert!(err.to_string().contains("control_plane.url"), "{err}");
    }

    #[test]
    fn turn_server_errors_do_not_echo_credentials() {
        let err = settings(&format!(
            "{MINIMAL}\n[webrtc]\nturn_servers = [\"user:hunter2@turn.example\"]\n"
        ))
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn simple_streaming_flag() {
        assert!(check_simple_streaming(None).is_ok());
        assert!(check_simple_streaming(Some("1")).is_ok());
        assert!(check_simple_streaming(Some("on")).is_ok());
        let off = check_simple_streaming(Some("0")).unwrap_err();
        assert!(off.to_string().contains("not supported"), "{off}");
        assert!(matches!(
            check_simple_streaming(Some("maybe")),
            Err(ConfigError::BadFlag { .. })
        ));
    }

    #[test]
    fn a_systemd_credential_wins_over_the_token_file() {
        let dir = std::env::temp_dir().join(format!("ca-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = settings(MINIMAL).unwrap();
        assert_eq!(
            s.token_path(Some(&dir)).unwrap(),
            PathBuf::from("/etc/camera-agent/device-token")
        );
        std::fs::write(dir.join(CREDENTIAL_NAME), "t").unwrap();
        assert_eq!(s.token_path(Some(&dir)).unwrap(), dir.join(CREDENTIAL_NAME));
        let without_file = settings("[control_plane]\nurl = \"https://a.example\"\n").unwrap();
        assert!(matches!(
            without_file.token_path(None),
            Err(ConfigError::NoToken)
        ));
        assert!(without_file.token_path(Some(&dir)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn effective_settings_list_every_key_and_redact_turn() {
        let s = settings(&format!(
            "{MINIMAL}\n[webrtc]\nturn_servers = [\"turn://u:hunter2@t.example:3478\"]\n"
        ))
        .unwrap();
        let entries = s.effective();
        assert!(
            entries
                .iter()
                .any(|(key, _)| *key == "session.signaling_grace")
        );
        let turn = entries
            .iter()
            .find(|(key, _)| *key == "webrtc.turn_servers")
            .unwrap();
        assert!(!turn.1.contains("hunter2"), "{}", turn.1);
        assert!(turn.1.contains("<redacted>"));
    }

    #[test]
    fn token_file_rules() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ca-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cret-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_token(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let token = read_token(&path).unwrap();
        assert_eq!(token.expose(), "s3cret-token");
        assert!(!format!("{token:?}").contains("s3cret"));
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            read_token(&path),
            Err(ConfigError::TokenEmpty { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

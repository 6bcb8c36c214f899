//! Configuration in two stages: [`RawConfig`] is what the TOML file says
//! (every key optional, unknown keys rejected), [`Settings`] is the validated,
//! typed result that everything downstream reads.
//!
//! Keeping the stages apart means a typo is caught by serde with the file's
//! line and column, and a bad value is caught by [`Settings::from_raw`] with
//! the key's dotted name, before anything starts.
//!
//! Each `[section]` has its own module (`control_plane`, `camera`,
//! `encoder`, `session`, `webrtc`) holding its raw struct, defaults,
//! validation and `check-config` rows, each key spelled there only. This
//! module assembles the sections and keeps what they share: errors,
//! [`Secret`], the device token, the rollout flag. `schema` lists the keys
//! from serde's own field names (for `layers` and for the `coverage` test,
//! which checks every key is validated, shown and documented).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod camera;
mod control_plane;
#[cfg(test)]
mod coverage;
mod encoder;
pub mod layers;
mod schema;
mod session;
mod streaming;
mod value;
mod webrtc;

pub use camera::{CameraSettings, RawCamera};
pub use control_plane::{ControlPlaneSettings, RawControlPlane};
pub use encoder::{EncoderConfig, RawEncoder};
pub use session::{RawSession, SessionSettings};
pub use streaming::{RawStreaming, StreamingMode, StreamingSettings, simple_streaming_flag};
pub use webrtc::{RawWebrtc, WebrtcSettings};

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
    #[serde(default)]
    pub streaming: RawStreaming,
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

/// Validated settings, one struct per section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub control_plane: ControlPlaneSettings,
    pub camera: CameraSettings,
    pub encoder: EncoderConfig,
    pub session: SessionSettings,
    pub webrtc: WebrtcSettings,
    pub streaming: StreamingSettings,
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

impl Settings {
    /// Validates the raw file into settings.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            control_plane: ControlPlaneSettings::from_raw(&raw.control_plane)?,
            camera: CameraSettings::from_raw(&raw.camera)?,
            encoder: EncoderConfig::from_raw(&raw.encoder)?,
            session: SessionSettings::from_raw(&raw.session)?,
            webrtc: WebrtcSettings::from_raw(&raw.webrtc)?,
            streaming: StreamingSettings::from_raw(&raw.streaming)?,
        })
    }

    /// Loads every layer (file, drop-ins, environment including the
    /// `SIMPLE_STREAMING` rollout flag, `--set` flags) and validates.
    /// Validation errors say where the offending value was set.
    pub fn load(config: &Path, overrides: &[String]) -> Result<Loaded, ConfigError> {
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
        let mut rows = self.control_plane.effective();
        rows.extend(self.camera.effective());
        rows.extend(self.encoder.effective());
        rows.extend(self.session.effective());
        rows.extend(self.webrtc.effective());
        rows.extend(self.streaming.effective());
        rows
    }
}

/// What `probe` plans with when there is no configuration: the first
/// usable camera (`source = "auto"`), every other `[camera]` and
/// `[encoder]` key at its default.
pub fn probe_defaults() -> Result<(CameraSettings, EncoderConfig), ConfigError> {
    let camera = RawCamera {
        source: Some("auto".into()),
        ..RawCamera::default()
    };
    Ok((
        CameraSettings::from_raw(&camera)?,
        EncoderConfig::from_raw(&RawEncoder::default())?,
    ))
}

/// Validated settings with the layers they came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub layered: Layered,
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
    use hw::{EncoderChoice, SourceKind};
    use std::time::Duration;

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
    fn the_environment_flag_wins_over_the_file_and_says_so() {
        let dir = std::env::temp_dir().join(format!("ca-simple-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.toml");
        std::fs::write(&path, format!("{MINIMAL}\n[streaming]\nsimple = true\n")).unwrap();
        let env = |value: &str| vec![(SIMPLE_STREAMING_ENV.to_string(), value.to_string())];
        let loaded = Settings::load_from(&path, env("0"), &[]).unwrap();
        assert_eq!(loaded.settings.streaming.mode, StreamingMode::LegacyJpeg);
        assert_eq!(
            loaded.layered.origin("streaming.simple").to_string(),
            "environment SIMPLE_STREAMING"
        );
        let loaded = Settings::load_from(&path, Vec::new(), &[]).unwrap();
        assert_eq!(loaded.settings.streaming.mode, StreamingMode::WebRtc);
        let error = Settings::load_from(&path, env("maybe"), &[]).unwrap_err();
        assert!(matches!(error, ConfigError::BadFlag { .. }), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
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

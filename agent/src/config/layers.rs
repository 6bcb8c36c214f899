//! Configuration layering: built-in defaults, the main file, its drop-ins
//! (`agent.toml.d/*.toml`, lexical order), environment overrides
//! (`CAMERA_AGENT_<SECTION>_<KEY>`, and `SIMPLE_STREAMING` for
//! `streaming.simple`), then `--set section.key=value` flags.
//! Each later layer replaces single keys of the earlier ones.
//!
//! Every layer is first checked on its own against the schema, so a typo is
//! reported with the file, line and column (or the variable or flag) that
//! holds it. The merged table remembers where each key came from, for
//! `check-config` and for validation errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, RawConfig, SIMPLE_STREAMING_ENV, schema, simple_streaming_flag};

/// Where a setting's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: Option<usize> },
    Env { var: String },
    Flag { arg: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "environment {var}"),
            Origin::Flag { arg } => write!(f, "--set {arg}"),
        }
    }
}

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "CAMERA_AGENT_";

/// The merged configuration and where each `section.key` came from.
#[derive(Debug, Clone, Default)]
pub struct Layered {
    pub table: toml::Table,
    pub origins: BTreeMap<String, Origin>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

impl Layered {
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// The typed raw configuration of the merged table.
    pub fn raw(&self) -> Result<RawConfig, ConfigError> {
        toml::Value::Table(self.table.clone())
            .try_into()
            .map_err(|err: toml::de::Error| ConfigError::Parse {
                path: PathBuf::from("<merged configuration>"),
                message: err.to_string(),
            })
    }

    fn merge(&mut self, layer: toml::Table, mut origin_of: impl FnMut(&str, &str) -> Origin) {
        for (section, value) in layer {
            let toml::Value::Table(keys) = value else {
                // The per-layer schema check already refused this.
                continue;
            };
            let target = self
                .table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(target) = target.as_table_mut() else {
                continue;
            };
            for (key, value) in keys {
                self.origins
                    .insert(format!("{section}.{key}"), origin_of(&section, &key));
                target.insert(key, value);
            }
        }
    }
}

/// The drop-in directory of a config file: `agent.toml` -> `agent.toml.d`.
pub fn drop_in_dir(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_os_string();
    name.push(".d");
    config.with_file_name(name)
}

/// Line of each `section.key` assignment in a file, for origins. Tables and
/// keys are found by a plain scan, which is exact for this schema's
/// two-level layout and merely silent (no line) for exotic forms.
fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    let mut section = String::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line
            .strip_prefix('[')
            .and_then(|rest| rest.split(']').next())
        {
            section = header.trim().to_owned();
        } else if let Some((key, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            lines.insert(format!("{section}.{}", key.trim()), index + 1);
        }
    }
    lines
}

fn parse_file(path: &Path) -> Result<(toml::Table, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    // The typed parse is the schema check, with line and column.
    RawConfig::parse(&text, path)?;
    let table = text
        .parse::<toml::Table>()
        .map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
    Ok((table, text))
}

/// A value given as text (environment or flag): TOML if it parses as a
/// TOML value (`640`, `true`, `["a"]`, `"quoted"`), else a plain string.
fn text_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn single(section: &str, key: &str, value: toml::Value) -> toml::Table {
    let mut keys = toml::Table::new();
    keys.insert(key.to_owned(), value);
    let mut table = toml::Table::new();
    table.insert(section.to_owned(), toml::Value::Table(keys));
    table
}

/// Checks a one-key layer against the schema, naming where it came from.
fn check_single(table: &toml::Table, source: &str) -> Result<(), ConfigError> {
    toml::Value::Table(table.clone())
        .try_into::<RawConfig>()
        .map(drop)
        .map_err(|err| ConfigError::Override {
            source_name: source.to_owned(),
            message: err.to_string(),
        })
}

/// Maps `CAMERA_AGENT_CAMERA_WIDTH` to (`camera`, `width`); the sections
/// are [`RawConfig`]'s own.
fn env_key(var: &str) -> Option<(&'static str, String)> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    schema::section_names().into_iter().find_map(|section| {
        let upper = section.to_ascii_uppercase();
        rest.strip_prefix(upper.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
            .filter(|key| !key.is_empty())
            .map(|key| (section, key.to_ascii_lowercase()))
    })
}

/// Loads every layer. `env` is the process environment (passed in so tests
/// need not touch the real one); `overrides` are `section.key=value` texts.
pub fn load(
    config: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[String],
) -> Result<Layered, ConfigError> {
    let mut layered = Layered::default();
    let mut files = vec![config.to_owned()];
    let dir = drop_in_dir(config);
    if dir.is_dir() {
        let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| ConfigError::Read {
                path: dir.clone(),
                source,
            })?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    for path in &files {
        let (table, text) = parse_file(path)?;
        let lines = key_lines(&text);
        layered.merge(table, |section, key| Origin::File {
            path: path.clone(),
            line: lines.get(&format!("{section}.{key}")).copied(),
        });
    }
    layered.files = files;

    let mut simple_streaming = None;
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(var, value)| {
            if var == SIMPLE_STREAMING_ENV {
                simple_streaming = Some(value.clone());
            }
            var.starts_with(ENV_PREFIX)
        })
        .collect();
    env.sort();
    for (var, value) in env {
        // CAMERA_AGENT_LOG and other non-config variables share the prefix.
        let Some((section, key)) = env_key(&var) else {
            continue;
        };
        let table = single(section, &key, text_value(&value));
        check_single(&table, &format!("environment variable {var}"))?;
        layered.merge(table, |_, _| Origin::Env { var: var.clone() });
    }
    // The product plan's rollout flag is `streaming.simple` under the name
    // operators know; it wins over the files and the prefixed variable.
    if let Some(simple) = simple_streaming_flag(simple_streaming.as_deref())? {
        let table = single("streaming", "simple", toml::Value::Boolean(simple));
        layered.merge(table, |_, _| Origin::Env {
            var: SIMPLE_STREAMING_ENV.into(),
        });
    }

    for arg in overrides {
        let bad = || ConfigError::Override {
            source_name: format!("--set {arg}"),
            message: "expected section.key=value".into(),
        };
        let (path, value) = arg.split_once('=').ok_or_else(bad)?;
        let (section, key) = path.trim().split_once('.').ok_or_else(bad)?;
        let table = single(section, key, text_value(value.trim()));
        check_single(&table, &format!("--set {arg}"))?;
        layered.merge(table, |_, _| Origin::Flag { arg: arg.clone() });
    }
    Ok(layered)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("ca-layers-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const MAIN: &str = "[control_plane]\nurl = \"https://a.example\"\ntoken_file = \"/t\"\n\n[camera]\nwidth = 640\nheight = 480\n";

    #[test]
    fn drop_ins_then_env_then_flags_override_in_order() {
        let dir = Dir::new("order");
        let main = dir.write("agent.toml", MAIN);
        dir.write("agent.toml.d/20-size.toml", "[camera]\nwidth = 800\n");
        dir.write(
            "agent.toml.d/10-size.toml",
            "[camera]\nwidth = 720\nframerate = 15\n",
        );
        dir.write("agent.toml.d/notes.txt", "not toml, ignored");
        let env = vec![
            ("CAMERA_AGENT_CAMERA_HEIGHT".to_string(), "600".to_string()),
            ("CAMERA_AGENT_LOG".to_string(), "debug".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let layered = load(&main, env, &["session.answer_timeout=30s".into()]).unwrap();
        let raw = layered.raw().unwrap();
        assert_eq!(raw.camera.width, Some(800));
        assert_eq!(raw.camera.framerate, Some(15));
        assert_eq!(raw.camera.height, Some(600));
        assert_eq!(raw.session.answer_timeout.as_deref(), Some("30s"));
        assert_eq!(
            layered.origin("camera.width").to_string(),
            format!("{}:2", dir.0.join("agent.toml.d/20-size.toml").display())
        );
        assert_eq!(
            layered.origin("control_plane.url").to_string(),
            format!("{}:2", main.display())
        );
        assert_eq!(
            layered.origin("camera.height").to_string(),
            "environment CAMERA_AGENT_CAMERA_HEIGHT"
        );
        assert_eq!(
            layered.origin("session.answer_timeout").to_string(),
            "--set session.answer_timeout=30s"
        );
        assert_eq!(layered.origin("encoder.kind"), Origin::Default);
        assert_eq!(layered.files.len(), 3);
    }

    #[test]
    fn control_plane_section_maps_despite_its_underscore() {
        assert_eq!(
            env_key("CAMERA_AGENT_CONTROL_PLANE_TOKEN_FILE"),
            Some(("control_plane", "token_file".to_string()))
        );
        assert_eq!(env_key("CAMERA_AGENT_LOG"), None);
        assert_eq!(env_key("CAMERA_AGENT_CAMERA_"), None);
    }

    #[test]
    fn a_typo_in_a_drop_in_names_that_file_and_line() {
        let dir = Dir::new("typo");
        let main = dir.write("agent.toml", MAIN);
        let drop_in = dir.write("agent.toml.d/50-x.toml", "\n[camera]\nwidht = 1\n");
        let err = load(&main, vec![], &[]).unwrap_err().to_string();
        assert!(err.contains(&drop_in.display().to_string()), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("widht"), "{err}");
    }

    #[test]
    fn bad_env_and_flags_name_themselves() {
        let dir = Dir::new("env");
        let main = dir.write("agent.toml", MAIN);
        let err = load(
            &main,
            vec![("CAMERA_AGENT_CAMERA_WIDHT".into(), "1".into())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CAMERA_AGENT_CAMERA_WIDHT"), "{err}");
        let err = load(
            &main,
            vec![("CAMERA_AGENT_CAMERA_WIDTH".into(), "wide".into())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CAMERA_AGENT_CAMERA_WIDTH"), "{err}");
        let err = load(&main, vec![], &["camera.width".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("section.key=value"), "{err}");
        let err = load(&main, vec![], &["nosuch.key=1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nosuch"), "{err}");
    }

    #[test]
    fn text_values_are_typed_when_they_can_be() {
        assert_eq!(text_value("640"), toml::Value::Integer(640));
        assert_eq!(text_value("test"), toml::Value::String("test".into()));
        assert_eq!(
            text_value("\"quoted\""),
            toml::Value::String("quoted".into())
        );
        assert_eq!(text_value("15s"), toml::Value::String("15s".into()));
        assert!(text_value("[\"10.0.0.1\"]").is_array());
    }

    #[test]
    fn key_lines_follow_sections() {
        let lines = key_lines("# c\n[a]\nx = 1\n # y = 2\n[b]\n  y = \"=\"\n");
        assert_eq!(lines.get("a.x"), Some(&3));
        assert_eq!(lines.get("b.y"), Some(&6));
        assert_eq!(lines.get("a.y"), None);
    }
}

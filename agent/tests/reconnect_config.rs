//! `control_plane.reconnect_spread`: its default, its bound, and where it
//! goes. Kept out of `config/` (being split into modules) on purpose; it
//! goes through the public parse and validation only.

use std::path::Path;
use std::time::Duration;

use camera_agent::config::{ConfigError, RawConfig, Settings};

fn settings(control_plane: &str) -> Result<Settings, ConfigError> {
    let text = format!("[control_plane]\nurl = \"https://cloud.example\"\n{control_plane}");
    Settings::from_raw(RawConfig::parse(&text, Path::new("agent.toml"))?)
}

fn spread(control_plane: &str) -> Duration {
    settings(control_plane)
        .unwrap()
        .control_plane
        .reconnect_spread
}

#[test]
fn the_spread_defaults_to_5_s_or_reconnect_max_if_shorter() {
    assert_eq!(spread(""), Duration::from_secs(5));
    assert_eq!(spread("reconnect_max = \"2s\"\n"), Duration::from_secs(2));
    assert_eq!(
        spread("reconnect_spread = \"20s\"\nreconnect_max = \"1m\"\n"),
        Duration::from_secs(20)
    );
}

#[test]
fn a_spread_longer_than_reconnect_max_or_zero_is_refused_by_name() {
    for bad in [
        "reconnect_spread = \"40s\"\n",
        "reconnect_spread = \"3s\"\nreconnect_max = \"2s\"\n",
        "reconnect_spread = \"0s\"\n",
        "reconnect_spread = \"soon\"\n",
    ] {
        match settings(bad) {
            Err(ConfigError::Invalid { key, .. }) => {
                assert_eq!(key, "control_plane.reconnect_spread", "{bad}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn the_effective_configuration_shows_the_spread() {
    let settings = settings("reconnect_spread = \"7s\"\n").unwrap();
    let entries = settings.effective();
    let (_, value) = entries
        .iter()
        .find(|(key, _)| *key == "control_plane.reconnect_spread")
        .unwrap();
    assert_eq!(value, "\"7s\"");
}

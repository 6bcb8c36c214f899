//! Every key the raw structs accept is read, shown and documented. The keys
//! come from serde's own field lists ([`schema::sections`]), so a key added
//! to a raw struct is checked here without being listed again:
//!
//! - **validated**: some value of it, set alone on a minimal file, changes
//!   the validated [`Settings`]; every value it refuses is refused with an
//!   error naming that key;
//! - **shown**: `effective()` has a row for it (an old name: for its new
//!   name) whose text changes with each value that changed the settings
//!   (TURN redaction has its own test in `config::tests`);
//! - **documented**: `docs/configuration.md` has a row for it in its
//!   section's table (an old name: mentioned in its new name's row), and
//!   documents no key that does not exist.
//!
//! Values are tried from one pool of samples of every type; the ones of the
//! wrong type for a key are skipped by serde's type check.

use super::encoder::RENAMED;
use super::schema::{self, Section};
use super::{ConfigError, RawConfig, Settings};

/// The one required key, set in every trial.
const BASE: (&str, &str, &str) = ("control_plane", "url", "https://cloud.example.com");

/// Sample values: of each TOML type a key may have, a few valid for the
/// keys we have and a few that are not.
fn samples() -> Vec<toml::Value> {
    let turn = "turn://user:password@turn.example:3478";
    let strings = [
        "auto",
        "test",
        "libcamera",
        "passthrough",
        "x264enc",
        "no such value",
        "0s",
        "7s",
        "2m",
        "https://other.example",
        "ftp://other.example",
        "/other",
        "/other,path",
        "other",
        "stun:stun.example:3478",
        turn,
        "10.0.0.1",
    ];
    let mut values: Vec<toml::Value> = [1, 3, 50, 200, 300, 480, 600, 640, 5000, 100_000]
        .into_iter()
        .map(toml::Value::Integer)
        .collect();
    values.extend([true, false].map(toml::Value::Boolean));
    values.extend(
        strings
            .iter()
            .map(|text| toml::Value::String(text.to_string())),
    );
    values.extend(
        strings
            .iter()
            .map(|text| toml::Value::Array(vec![toml::Value::String(text.to_string())])),
    );
    values
}

/// The minimal file, with `section.key = value` added or replaced.
fn file(set: Option<(&str, &str, &toml::Value)>) -> toml::Table {
    let mut table = toml::Table::new();
    let (section, key, url) = BASE;
    let mut control_plane = toml::Table::new();
    control_plane.insert(key.into(), toml::Value::String(url.into()));
    table.insert(section.into(), toml::Value::Table(control_plane));
    if let Some((section, key, value)) = set {
        let entry = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(keys) = entry {
            keys.insert(key.into(), value.clone());
        }
    }
    table
}

enum Outcome {
    /// serde refused the value's type.
    WrongType,
    Refused(ConfigError),
    Valid(Box<Settings>),
}

fn validate(table: toml::Table) -> Outcome {
    match toml::Value::Table(table).try_into::<RawConfig>() {
        Err(_) => Outcome::WrongType,
        Ok(raw) => match Settings::from_raw(raw) {
            Ok(settings) => Outcome::Valid(Box::new(settings)),
            Err(err) => Outcome::Refused(err),
        },
    }
}

fn baseline() -> Settings {
    match validate(file(None)) {
        Outcome::Valid(settings) => *settings,
        _ => panic!("the minimal file must be valid"),
    }
}

/// Every key as `(section.key, section, key)`.
fn keys() -> Vec<(String, &'static str, &'static str)> {
    let sections = schema::walk::<RawConfig>().unwrap_or_else(|(found, err)| {
        panic!("the raw structs cannot be walked after {found:?}: {err} (keys must be optional)")
    });
    sections
        .into_iter()
        .flat_map(|Section { name, keys }| {
            keys.iter()
                .map(move |key| (format!("{name}.{key}"), name, *key))
        })
        .collect()
}

/// The row that shows `dotted`: its own, or its new name's.
fn shown_as(dotted: &str) -> &str {
    RENAMED
        .iter()
        .find(|(old, _)| *old == dotted)
        .map_or(dotted, |(_, new)| new)
}

fn row(settings: &Settings, name: &str) -> Option<String> {
    settings
        .effective()
        .into_iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// One key's trials: each value that was accepted and changed the
/// settings, with those settings, and the problems found.
fn trials(dotted: &str, section: &str, key: &str) -> (Vec<(toml::Value, Settings)>, Vec<String>) {
    let base = baseline();
    let mut changed = Vec::new();
    let mut problems = Vec::new();
    let mut typed = 0;
    for value in samples() {
        match validate(file(Some((section, key, &value)))) {
            Outcome::WrongType => continue,
            Outcome::Refused(ConfigError::Invalid { key: named, .. }) if named == dotted => {}
            Outcome::Refused(err) => problems.push(format!(
                "{dotted} = {value}: refused without naming it: {err}"
            )),
            Outcome::Valid(settings) if *settings != base => changed.push((value, *settings)),
            Outcome::Valid(_) => {}
        }
        typed += 1;
    }
    if typed == 0 {
        problems.push(format!(
            "{dotted}: no sample value has its type; add one to samples()"
        ));
    } else if changed.is_empty() {
        problems.push(format!(
            "{dotted}: no value changes the validated settings; is it read in from_raw? \
             (or add a valid sample for it to samples())"
        ));
    }
    (changed, problems)
}

fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_key_is_validated() {
    let mut problems = Vec::new();
    for (dotted, section, key) in keys() {
        problems.extend(trials(&dotted, section, key).1);
    }
    assert_none(problems);
}

#[test]
fn every_key_has_an_effective_row_showing_its_value() {
    let base = baseline();
    let mut problems = Vec::new();
    for (dotted, section, key) in keys() {
        let name = shown_as(&dotted).to_owned();
        let (changed, _) = trials(&dotted, section, key);
        let before = row(&base, &name);
        if before.is_none() && changed.iter().all(|(_, s)| row(s, &name).is_none()) {
            problems.push(format!("{dotted}: effective() has no row {name}"));
            continue;
        }
        for (value, settings) in &changed {
            if row(settings, &name) == before {
                problems.push(format!(
                    "{dotted} = {value} changes the settings but row {name} still shows {before:?}"
                ));
            }
        }
    }
    for (row_key, _) in base.effective() {
        if !keys().iter().any(|(name, _, _)| name == row_key) {
            problems.push(format!("effective() row {row_key} is not a key"));
        }
    }
    assert_none(problems);
}

/// The keys of each `## \`[section]\`` table: `(section, keys of the row,
/// the row)`, one entry per row.
fn documented() -> Vec<(String, Vec<String>, String)> {
    let text = include_str!("../../../docs/configuration.md");
    let mut rows = Vec::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading
                .trim()
                .strip_prefix("`[")
                .and_then(|rest| rest.strip_suffix("]`"))
                .map(str::to_owned);
        } else if let (Some(section), Some(rest)) = (&section, line.strip_prefix("| `")) {
            let first_cell = rest.split('|').next().unwrap_or_default();
            let keys = format!("`{first_cell}")
                .split(',')
                .map(|name| name.trim().trim_matches('`').to_owned())
                .collect();
            rows.push((section.clone(), keys, line.to_owned()));
        }
    }
    rows
}

#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let rows = documented();
    let keys = keys();
    let mut problems = Vec::new();
    for (dotted, section, key) in &keys {
        let own_row = rows
            .iter()
            .any(|(s, names, _)| s == section && names.iter().any(|name| name == key));
        let mentioned_by_new_name = shown_as(dotted) != dotted && {
            let new_key = shown_as(dotted).split_once('.').map_or("", |(_, key)| key);
            rows.iter().any(|(s, names, line)| {
                s == section
                    && names.iter().any(|name| name == new_key)
                    && line.contains(&format!("`{key}`"))
            })
        };
        if !own_row && !mentioned_by_new_name {
            problems.push(format!(
                "{dotted}: no row `| \\`{key}\\` | ...` under `## \\`[{section}]\\`` in \
                 docs/configuration.md"
            ));
        }
    }
    for (section, names, _) in &rows {
        for name in names {
            if !keys.iter().any(|(_, s, key)| s == section && key == name) {
                problems.push(format!(
                    "docs/configuration.md documents {section}.{name}, which is not a key"
                ));
            }
        }
    }
    assert!(
        rows.len() >= 10,
        "the docs' tables were not found: {rows:?}"
    );
    assert_none(problems);
}

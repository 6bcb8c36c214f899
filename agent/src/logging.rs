//! Log output. Under systemd (`JOURNAL_STREAM` set) records go to the
//! journal natively, with every field as a journal field (`session_id` ->
//! `SESSION_ID`, so `journalctl -u camera-agent SESSION_ID=s-1` works) and
//! levels as priorities. Elsewhere: human-readable text, or one JSON object
//! per line with `--log-format json`. The device token is never a field.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
    Journald,
}

impl LogFormat {
    /// The journal when systemd connected stderr to it, else text.
    pub fn detect() -> Self {
        if std::env::var_os("JOURNAL_STREAM").is_some() {
            LogFormat::Journald
        } else {
            LogFormat::Text
        }
    }
}

fn filter() -> EnvFilter {
    std::env::var("CAMERA_AGENT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Installs the global subscriber. `CAMERA_AGENT_LOG` (or `RUST_LOG`) takes
/// the usual filter syntax; the default is `info`.
pub fn init(format: LogFormat) {
    let stderr = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let installed = match format {
        LogFormat::Text => stderr.with_target(false).try_init().is_ok(),
        LogFormat::Json => stderr.json().flatten_event(true).try_init().is_ok(),
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(journal) => tracing_subscriber::registry()
                .with(filter())
                .with(
                    journal
                        .with_syslog_identifier("camera-agent".into())
                        // SESSION_ID, not F_SESSION_ID: the fields journalctl users type.
                        .with_field_prefix(None),
                )
                .try_init()
                .is_ok(),
            // No journal socket after all: fall back to stderr, which
            // systemd also forwards to the journal.
            Err(_) => stderr.with_target(false).try_init().is_ok(),
        },
    };
    if !installed {
        tracing::debug!("a log subscriber was already installed");
    }
}

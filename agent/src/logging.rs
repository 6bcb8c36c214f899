//! Log output: human-readable text or one JSON object per line on stderr.
//!
//! Lifecycle lines carry `session_id` and `elapsed_ms` as fields, so both
//! formats can be filtered per session. The device token is never a field.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `CAMERA_AGENT_LOG` (or `RUST_LOG`) takes
/// the usual filter syntax; the default is `info`.
pub fn init(format: LogFormat) {
    let filter = std::env::var("CAMERA_AGENT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

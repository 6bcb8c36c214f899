//! camera-agent: a headless daemon that streams a camera to one viewer over
//! WebRTC when the cloud control plane asks for it (or, rolled back with
//! `SIMPLE_STREAMING=0`, as JPEG frames over the signaling socket).
//!
//! The binary is thin; this library holds the logic. Protocol and session
//! lifecycle are pure code (`control_plane::socketio::codec`,
//! `control_plane::events`, `session::machine`); the tasks around them
//! (`control_plane::socketio::connection`, `supervisor`, `session::actor`)
//! own their state and talk through bounded channels.

//!
//! The public API has two users, and only they decide what is `pub`:
//! - the binary (`main.rs`): `app`, `config`, `doctor`, `errors`,
//!   `logging`, `memory`, `planning`, `probe`, `snapshot`, and
//!   `media::pipeline::runtime_version`;
//! - the test bed (`tests/` and `agent/tests/`), which drives the real
//!   clients against its stand-in server: `config::Secret`,
//!   `control_plane::{rest, tls, socketio::connection}` and
//!   `media::sdp::mids`; and its fleet simulation, which runs the agent's
//!   own `control_plane::reconnect` policy and, as the baseline it
//!   replaced, `control_plane::socketio::backoff`.
//!
//! Everything else (the session, the supervisor, systemd notification,
//! DTLS) is `pub(crate)`.

pub mod app;
pub mod config;
pub mod control_plane;
pub mod doctor;
pub mod errors;
pub mod logging;
pub mod media;
pub mod memory;
pub mod planning;
pub mod probe;
pub(crate) mod session;
pub mod snapshot;
pub(crate) mod supervisor;
pub(crate) mod systemd;

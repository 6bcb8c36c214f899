//! camera-agent: a headless daemon that streams a camera to one viewer over
//! WebRTC when the cloud control plane asks for it.
//!
//! The binary is thin; this library holds the logic. Protocol and session
//! lifecycle are pure code (`control_plane::socketio::codec`,
//! `control_plane::events`, `session::machine`); the tasks around them
//! (`control_plane::socketio::connection`, `supervisor`, `session::actor`)
//! own their state and talk through bounded channels.

pub mod app;
pub mod config;
pub mod control_plane;
pub mod doctor;
pub mod errors;
pub mod logging;
pub mod media;
pub mod memory;
pub mod probe;
pub mod session;
pub mod supervisor;
pub mod systemd;

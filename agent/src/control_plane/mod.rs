//! The control plane as the agent sees it: REST calls, the Socket.IO
//! signaling connection, and the typed events that cross it.

pub use protocol::events;
pub mod reconnect;
pub mod rest;
pub mod socketio;
pub mod tls;

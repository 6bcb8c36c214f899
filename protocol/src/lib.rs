//! The control plane's wire protocol as pure code: data in, data out, no
//! sockets, no runtime (contract `control-plane-v1`, section 3 and 4).
//!
//! - [`codec`]: Engine.IO v4 and Socket.IO v5 text packets.
//! - [`events`]: the typed events that ride on them, and the safety gate
//!   that validates every inbound one.
//!
//! It is a crate of its own so the fuzz targets (and anything else that
//! only needs the protocol) build it in seconds, without GStreamer or
//! tokio, and so nothing here can reach for I/O by accident.

pub mod codec;
pub mod events;

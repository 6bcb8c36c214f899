//! Socket.IO v5 over Engine.IO v4 on a websocket: the pure codec (from the
//! `protocol` crate), a backoff policy, and the connection task.

pub mod backoff;
pub use protocol::codec;
pub mod connection;

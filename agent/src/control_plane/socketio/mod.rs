//! Socket.IO v5 over Engine.IO v4 on a websocket: a pure codec, a backoff
//! policy, and the connection task.

pub mod backoff;
pub mod codec;
pub mod connection;

//! The signaling connection: one task owns the websocket for the agent's
//! whole life, reconnecting forever with backoff.
//!
//! Others talk to it through a [`SignalingHandle`] (a bounded channel) and
//! hear from it through [`SignalingEvent`]s. When to try again is decided
//! by the pure policy in [`crate::control_plane::reconnect`]; this task
//! only tells it what happened (lost while idle or live, failed, refused
//! with the server's `Retry-After`) and waits as told. Emits made while disconnected
//! are dropped with a warning: every signal belongs to a live negotiation,
//! and replaying a stale one after a reconnect would only confuse the peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::AUTH_RETRY_MAX;
use super::codec::{
    EnginePacket, OpenInfo, SocketPacket, decode_engine, decode_socket, encode_engine,
    encode_socket,
};
use crate::config::Secret;
use crate::control_plane::reconnect::{Outcome, Reconnect, ReconnectPolicy, parse_retry_after};

/// How the connection reaches the server.
#[derive(Debug, Clone)]
pub struct SocketSettings {
    /// `ws://` or `wss://` URL with path and Engine.IO query.
    pub url: url::Url,
    pub namespace: String,
    pub token: Secret,
    pub connect_timeout: Duration,
    pub reconnect_max: Duration,
    /// Window of the first attempt after an idle connection was lost.
    pub reconnect_spread: Duration,
    /// Backoff cap after the server refused the token.
    pub auth_reconnect_max: Duration,
    /// Trust for `wss://` (public roots plus `control_plane.ca_file`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl SocketSettings {
    /// The socket of the configured control plane, with the shipped
    /// reconnect policy (5 minute cap after a refused token).
    pub fn for_control_plane(
        control_plane: &crate::config::ControlPlaneSettings,
        token: Secret,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Self, String> {
        Ok(Self {
            url: Self::socket_url(&control_plane.url, &control_plane.socket_path)?,
            namespace: control_plane.namespace.clone(),
            token,
            connect_timeout: control_plane.request_timeout,
            reconnect_max: control_plane.reconnect_max,
            reconnect_spread: control_plane.reconnect_spread,
            auth_reconnect_max: AUTH_RETRY_MAX,
            tls: Some(tls),
        })
    }

    /// The reconnect policy these settings describe.
    pub fn reconnect_policy(&self) -> ReconnectPolicy {
        ReconnectPolicy {
            spread: self.reconnect_spread,
            max: self.reconnect_max,
            auth_max: self.auth_reconnect_max,
        }
    }

    /// Derives the websocket URL from the control plane's http(s) base.
    pub fn socket_url(base: &url::Url, socket_path: &str) -> Result<url::Url, String> {
        let mut url = base.clone();
        let scheme = match base.scheme() {
            "http" => "ws",
            "https" => "wss",
            other => return Err(format!("unsupported scheme {other}")),
        };
        url.set_scheme(scheme)
            .map_err(|()| format!("cannot use scheme {scheme} with {base}"))?;
        url.set_path(socket_path);
        url.set_query(Some("EIO=4&transport=websocket"));
        url.set_fragment(None);
        Ok(url)
    }
}

/// What the connection tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalingEvent {
    /// The namespace is connected; `reconnect` is false only the first time.
    Connected { reconnect: bool },
    /// The connection is gone; a reconnect follows.
    Disconnected { reason: String },
    /// The server refused the token (CONNECT_ERROR or HTTP 401/403).
    AuthRejected,
    /// An event from the server, arguments as sent.
    Event { name: String, args: Vec<Value> },
}

#[derive(Debug)]
struct Outbound {
    name: String,
    payload: Value,
    want_ack: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the signaling connection task has stopped")]
    Closed,
}

/// Why a frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameRefused {
    /// A frame is still waiting for the socket (slow link, or offline).
    #[error("the socket is still busy with the previous frame")]
    Busy,
    #[error("the signaling connection task has stopped")]
    Closed,
}

/// The sending side of the signaling connection.
#[derive(Debug, Clone)]
pub struct SignalingHandle {
    tx: mpsc::Sender<Outbound>,
    /// Legacy relay frames: a lane of one slot, so a frame the socket
    /// cannot take at once is dropped by the sender instead of queued
    /// behind others (a live picture, not a backlog).
    frames: mpsc::Sender<Outbound>,
    /// The connected server's `maxPayload` (0 while not connected).
    max_payload: Arc<AtomicU64>,
}

impl SignalingHandle {
    /// Queues an event; with `want_ack` the server's ack is awaited by the
    /// connection task and a negative one is logged.
    pub async fn emit(&self, name: &str, payload: Value, want_ack: bool) -> Result<(), SendError> {
        self.tx
            .send(Outbound {
                name: name.to_owned(),
                payload,
                want_ack,
            })
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Hands an event to the frame lane without waiting; refused when the
    /// previous frame has not gone out yet.
    pub fn try_emit_frame(&self, name: &str, payload: Value) -> Result<(), FrameRefused> {
        self.frames
            .try_send(Outbound {
                name: name.to_owned(),
                payload,
                want_ack: false,
            })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => FrameRefused::Busy,
                mpsc::error::TrySendError::Closed(_) => FrameRefused::Closed,
            })
    }

    /// The largest event packet the connected server accepts (its open
    /// packet's `maxPayload`, less the namespace prefix), from `42[` on;
    /// `None` while not connected.
    pub fn max_payload(&self) -> Option<u64> {
        match self.max_payload.load(Ordering::Relaxed) {
            0 => None,
            bytes => Some(bytes),
        }
    }
}

/// Starts the connection task of a device that never has live sessions
/// (a viewer, `doctor`): every loss is an idle one.
pub fn spawn(
    settings: SocketSettings,
    events: mpsc::Sender<SignalingEvent>,
    cancel: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> SignalingHandle {
    spawn_watching(settings, watch::channel(0).1, events, cancel, tracker)
}

/// Starts the connection task; `live_sessions` is the camera's count of
/// live sessions, read when the socket is lost: a camera with a viewer
/// retries at once, an idle one within `reconnect_spread`.
pub fn spawn_watching(
    settings: SocketSettings,
    live_sessions: watch::Receiver<usize>,
    events: mpsc::Sender<SignalingEvent>,
    cancel: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> SignalingHandle {
    let (tx, rx) = mpsc::channel(64);
    let (frames_tx, frames_rx) = mpsc::channel(1);
    let max_payload = Arc::new(AtomicU64::new(0));
    let lanes = Lanes {
        outbound: rx,
        frames: frames_rx,
        max_payload: max_payload.clone(),
    };
    tracker.spawn(run(settings, live_sessions, events, lanes, cancel));
    SignalingHandle {
        tx,
        frames: frames_tx,
        max_payload,
    }
}

/// The connection task's side of [`SignalingHandle`].
struct Lanes {
    outbound: mpsc::Receiver<Outbound>,
    frames: mpsc::Receiver<Outbound>,
    max_payload: Arc<AtomicU64>,
}

impl Lanes {
    /// A frame that waited through a reconnect is stale: drop it.
    fn drop_stale_frame(&mut self) {
        if self.frames.try_recv().is_ok() {
            debug!(
                dropped = "stale_frame",
                "frame from before the connection dropped"
            );
        }
    }
}

#[derive(Debug)]
enum End {
    Cancelled,
    AuthRejected,
    /// The upgrade was answered 503 or 429: back-pressure.
    Refused {
        status: u16,
        retry_after: Option<Duration>,
    },
    Lost {
        reason: String,
        was_connected: bool,
    },
}

async fn run(
    settings: SocketSettings,
    live_sessions: watch::Receiver<usize>,
    events: mpsc::Sender<SignalingEvent>,
    mut lanes: Lanes,
    cancel: CancellationToken,
) {
    let mut policy = Reconnect::new(settings.reconnect_policy());
    let origin = Instant::now();
    let mut ever_connected = false;
    let mut auth_refusals: u32 = 0;
    loop {
        let end = connect_once(&settings, &events, &mut lanes, &cancel, ever_connected).await;
        lanes.max_payload.store(0, Ordering::Relaxed);
        let now = origin.elapsed();
        let delay = match end {
            End::Cancelled => return,
            End::AuthRejected => {
                auth_refusals = auth_refusals.saturating_add(1);
                let delay = policy.next(now, Outcome::AuthRejected, rand::random::<f64>());
                warn!(
                    attempt = auth_refusals,
                    refused = "device_token",
                    retry_in_ms = delay.as_millis() as u64,
                    "control plane refused the device token on the signaling socket; \
                     check control_plane.token_file"
                );
                let _ = events.send(SignalingEvent::AuthRejected).await;
                delay
            }
            End::Refused {
                status,
                retry_after,
            } => {
                let delay = policy.next(now, Outcome::Refused { retry_after }, rand::random());
                warn!(
                    status,
                    outcome = "refused",
                    retry_after_ms = retry_after.map(|after| after.as_millis() as u64),
                    retry_in_ms = delay.as_millis() as u64,
                    "control plane refused the socket: busy"
                );
                delay
            }
            End::Lost {
                reason,
                was_connected,
            } => {
                let live = *live_sessions.borrow();
                let outcome = if was_connected {
                    ever_connected = true;
                    auth_refusals = 0;
                    let _ = events
                        .send(SignalingEvent::Disconnected {
                            reason: reason.clone(),
                        })
                        .await;
                    Outcome::Lost { live: live > 0 }
                } else {
                    Outcome::Failed
                };
                let delay = policy.next(now, outcome, rand::random::<f64>());
                let outcome = match outcome {
                    Outcome::Lost { live: true } => "lost_live",
                    Outcome::Lost { live: false } => "lost_idle",
                    _ => "failed",
                };
                warn!(%reason, outcome, live_sessions = live, retry_in_ms = delay.as_millis() as u64,
                    "signaling connection lost");
                delay
            }
        };
        // Wait out the backoff, refusing emits meanwhile. The policy's
        // windows are anchored at `now`, not at the end of the sends above.
        let wake = origin + now + delay;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = sleep_until(wake) => break,
                message = lanes.outbound.recv() => match message {
                    Some(message) => warn!(event = %message.name, dropped = "offline", "signaling offline; event dropped"),
                    None => return,
                },
                // Frames are dropped quietly: the relay counts them.
                frame = lanes.frames.recv() => if frame.is_none() { return },
            }
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_once(
    settings: &SocketSettings,
    events: &mpsc::Sender<SignalingEvent>,
    lanes: &mut Lanes,
    cancel: &CancellationToken,
    reconnect: bool,
) -> End {
    let lost = |reason: String| End::Lost {
        reason,
        was_connected: false,
    };
    let mut request = match settings.url.as_str().into_client_request() {
        Ok(request) => request,
        Err(err) => return lost(format!("bad socket URL: {err}")),
    };
    let header = match http::HeaderValue::from_str(&format!("Bearer {}", settings.token.expose())) {
        Ok(header) => header,
        // The token is never echoed: only say that it is unusable.
        Err(_) => return lost("device token contains characters not allowed in a header".into()),
    };
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, header);
    let mut config = tungstenite::protocol::WebSocketConfig::default();
    config.max_message_size = Some(16 << 20);
    config.max_frame_size = Some(16 << 20);
    let connector = settings
        .tls
        .clone()
        .map(tokio_tungstenite::Connector::Rustls);
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    let (mut ws, _) = tokio::select! {
        _ = cancel.cancelled() => return End::Cancelled,
        result = timeout(settings.connect_timeout, connect) => match result {
            Err(_) => return lost("connect timed out".into()),
            Ok(Err(tungstenite::Error::Http(response)))
                if matches!(response.status().as_u16(), 401 | 403) => return End::AuthRejected,
            Ok(Err(tungstenite::Error::Http(response)))
                if matches!(response.status().as_u16(), 429 | 503) => {
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()));
                return End::Refused { status: response.status().as_u16(), retry_after };
            }
            Ok(Err(err)) => return lost(format!("connect failed: {err}")),
            Ok(Ok(pair)) => pair,
        },
    };

    // Engine.IO open, then the namespace CONNECT with the auth payload.
    let open = match handshake_step(&mut ws, settings.connect_timeout, cancel).await {
        Ok(Some(EnginePacket::Open(open))) => open,
        Ok(Some(other)) => return lost(format!("expected an open packet, got {other:?}")),
        Ok(None) => return End::Cancelled,
        Err(reason) => return lost(reason),
    };
    let connect = SocketPacket::Connect {
        nsp: settings.namespace.clone(),
        data: Some(json!({ "token": settings.token.expose() })),
    };
    if let Err(err) = send_socket(&mut ws, &connect).await {
        return lost(err);
    }
    let deadline = Instant::now() + settings.connect_timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match handshake_step(&mut ws, remaining, cancel).await {
            Ok(None) => return End::Cancelled,
            Err(reason) => return lost(reason),
            Ok(Some(EnginePacket::Ping)) => {
                if let Err(err) = send_engine(&mut ws, &EnginePacket::Pong).await {
                    return lost(err);
                }
            }
            Ok(Some(EnginePacket::Message(body))) => match decode_socket(&body) {
                Ok(SocketPacket::Connect { nsp, .. }) if nsp == settings.namespace => break,
                Ok(SocketPacket::ConnectError { .. }) => return End::AuthRejected,
                Ok(other) => debug!(?other, "ignoring packet before namespace connect"),
                Err(err) => {
                    warn!(%err, dropped = "malformed", "malformed packet during connect; dropped")
                }
            },
            Ok(Some(EnginePacket::Close)) => return End::AuthRejected,
            Ok(Some(_)) => {}
        }
    }
    info!(
        reconnect,
        ping_interval_ms = open.ping_interval.as_millis() as u64,
        "signaling connected"
    );
    if events
        .send(SignalingEvent::Connected { reconnect })
        .await
        .is_err()
    {
        return End::Cancelled;
    }
    lanes.drop_stale_frame();
    // A namespace other than "/" prefixes every event packet ("/nsp,").
    let namespace_prefix = match settings.namespace.as_str() {
        "/" => 0,
        namespace => namespace.len() as u64 + 1,
    };
    lanes.max_payload.store(
        open.max_payload.saturating_sub(namespace_prefix),
        Ordering::Relaxed,
    );
    let reason = serve(&mut ws, &open, settings, events, lanes, cancel).await;
    match reason {
        None => {
            // Graceful close: leave the namespace, then close the socket;
            // bounded, as a stalled uplink would hold either write forever.
            let leave = SocketPacket::Disconnect {
                nsp: settings.namespace.clone(),
            };
            let _ = timeout(Duration::from_secs(1), async {
                let _ = send_socket(&mut ws, &leave).await;
                let _ = ws.close(None).await;
            })
            .await;
            End::Cancelled
        }
        Some(reason) => End::Lost {
            reason,
            was_connected: true,
        },
    }
}

/// Reads one Engine.IO packet during the handshake. `Ok(None)` = cancelled.
async fn handshake_step(
    ws: &mut Socket,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<Option<EnginePacket>, String> {
    let next = tokio::select! {
        _ = cancel.cancelled() => return Ok(None),
        next = timeout(limit, ws.next()) => next.map_err(|_| "handshake timed out".to_string())?,
    };
    match next {
        Some(Ok(Message::Text(text))) => decode_engine(&text)
            .map(Some)
            .map_err(|err| format!("bad handshake packet: {err}")),
        Some(Ok(Message::Close(_))) | None => Err("server closed during handshake".into()),
        Some(Ok(_)) => Ok(Some(EnginePacket::Noop)),
        Some(Err(err)) => Err(format!("read failed: {err}")),
    }
}

async fn send_engine(ws: &mut Socket, packet: &EnginePacket) -> Result<(), String> {
    ws.send(Message::text(encode_engine(packet)))
        .await
        .map_err(|err| format!("write failed: {err}"))
}

async fn send_socket(ws: &mut Socket, packet: &SocketPacket) -> Result<(), String> {
    send_engine(ws, &EnginePacket::Message(encode_socket(packet))).await
}

/// A write that gives way to cancellation and to the heartbeat deadline: a
/// stalled uplink (full socket buffers) must not hold the task past
/// either. `Ok` = sent; `Err(None)` = cancelled; `Err(Some(reason))` = lost.
async fn send_bounded(
    ws: &mut Socket,
    packet: &SocketPacket,
    cancel: &CancellationToken,
    dead_at: Instant,
) -> Result<(), Option<String>> {
    tokio::select! {
        _ = cancel.cancelled() => Err(None),
        _ = sleep_until(dead_at) => Err(Some("a write stalled past the heartbeat".into())),
        sent = send_socket(ws, packet) => sent.map_err(Some),
    }
}

/// Runs a connected socket. `None` = cancelled; `Some(reason)` = lost.
async fn serve(
    ws: &mut Socket,
    open: &OpenInfo,
    settings: &SocketSettings,
    events: &mpsc::Sender<SignalingEvent>,
    lanes: &mut Lanes,
    cancel: &CancellationToken,
) -> Option<String> {
    let heartbeat = open.ping_interval + open.ping_timeout;
    let mut dead_at = Instant::now() + heartbeat;
    let mut next_ack_id: u64 = 0;
    let mut pending_acks: HashMap<u64, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = sleep_until(dead_at) => {
                return Some(format!("no ping from the server for {} ms", heartbeat.as_millis()));
            }
            frame = lanes.frames.recv() => {
                let frame = frame?;
                let packet = SocketPacket::Event {
                    nsp: settings.namespace.clone(),
                    id: None,
                    name: frame.name,
                    args: vec![frame.payload],
                };
                if let Err(end) = send_bounded(ws, &packet, cancel, dead_at).await {
                    return end;
                }
            }
            message = lanes.outbound.recv() => {
                let message = message?;
                let id = message.want_ack.then(|| {
                    next_ack_id = next_ack_id.wrapping_add(1);
                    pending_acks.insert(next_ack_id, message.name.clone());
                    next_ack_id
                });
                let packet = SocketPacket::Event {
                    nsp: settings.namespace.clone(),
                    id,
                    name: message.name,
                    args: vec![message.payload],
                };
                if let Err(end) = send_bounded(ws, &packet, cancel, dead_at).await {
                    return end;
                }
            }
            frame = ws.next() => {
                let text = match frame {
                    None => return Some("server closed the connection".into()),
                    Some(Err(err)) => return Some(format!("read failed: {err}")),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) => return Some("server closed the connection".into()),
                    Some(Ok(Message::Binary(_))) => {
                        warn!(dropped = "binary", "binary frame on the signaling socket; dropped");
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                if text.len() as u64 > open.max_payload {
                    warn!(len = text.len(), max_payload = open.max_payload, dropped = "oversized",
                        "oversized frame; dropped");
                    continue;
                }
                match decode_engine(&text) {
                    Ok(EnginePacket::Ping) => {
                        dead_at = Instant::now() + heartbeat;
                        if let Err(err) = send_engine(ws, &EnginePacket::Pong).await {
                            return Some(err);
                        }
                    }
                    Ok(EnginePacket::Close) => return Some("server sent close".into()),
                    Ok(EnginePacket::Message(body)) => match decode_socket(&body) {
                        Ok(SocketPacket::Event { nsp, name, args, .. }) if nsp == settings.namespace => {
                            if events.send(SignalingEvent::Event { name, args }).await.is_err() {
                                return None;
                            }
                        }
                        Ok(SocketPacket::Ack { id, args, .. }) => {
                            let event = pending_acks.remove(&id);
                            let ok = args.first().and_then(|ack| ack.get("ok")).and_then(Value::as_bool);
                            if ok != Some(true) {
                                let error = args.first().and_then(|ack| ack.get("error")).cloned();
                                warn!(event = ?event, ?error, "server did not accept an emitted event");
                            }
                        }
                        Ok(SocketPacket::Disconnect { nsp }) if nsp == settings.namespace => {
                            return Some("server disconnected the namespace".into());
                        }
                        Ok(other) => warn!(?other, dropped = "unexpected", "unexpected Socket.IO packet; dropped"),
                        Err(err) => warn!(%err, dropped = "malformed", "malformed Socket.IO packet; dropped"),
                    },
                    Ok(EnginePacket::Noop | EnginePacket::Pong) => {}
                    Ok(other) => warn!(?other, dropped = "unexpected", "unexpected Engine.IO packet; dropped"),
                    Err(err) => warn!(%err, dropped = "malformed", "malformed Engine.IO packet; dropped"),
                }
            }
        }
        // Bound the memory of acks the server never answers.
        if pending_acks.len() > 1024 {
            pending_acks.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_url_follows_the_base_scheme() {
        let base = url::Url::parse("https://cloud.example.com/").unwrap();
        assert_eq!(
            SocketSettings::socket_url(&base, "/socket.io/")
                .unwrap()
                .as_str(),
            "wss://cloud.example.com/socket.io/?EIO=4&transport=websocket"
        );
        let base = url::Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            SocketSettings::socket_url(&base, "/rt/").unwrap().as_str(),
            "ws://127.0.0.1:8080/rt/?EIO=4&transport=websocket"
        );
    }
}

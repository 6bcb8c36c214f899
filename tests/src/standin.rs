//! A stand-in control plane that follows `control-plane-v1.md` to the letter:
//! REST routes on axum and a real Socket.IO server (socketioxide, an
//! implementation independent of the agent's client), on 127.0.0.1:0 or any
//! address the test picks.
//!
//! It is strict where the contract is strict: bearer tokens on every call
//! and on the socket (header and auth payload), role and party checks,
//! forward-only session states, signals relayed only while `streaming` and
//! only between the two parties, with `from` added. Tests read what happened
//! through [`StandIn::session`] and [`StandIn::wait_for`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod frames;
mod rest;
mod socket;

pub use frames::{FrameDrop, FrameRecord, LEGACY_MAX_PAYLOAD, MAX_JPEG_BYTES};

use rest::{ApiError, Unauthorized, bearer, error, humantime_now, json_body, session_view};
use socket::install_socket_handlers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Camera,
    Client,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Camera => "camera",
            Role::Client => "client",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub role: Role,
    pub token: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Requested,
    Streaming,
    Ended,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Requested => "requested",
            SessionState::Streaming => "streaming",
            SessionState::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub camera_id: String,
    pub client_id: String,
    pub state: SessionState,
    pub end_reason: Option<String>,
    pub ended_by: Option<String>,
    /// When the session ended, by the stand-in's clock.
    pub ended_at: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct StandInConfig {
    pub devices: Vec<Device>,
    /// (client id, camera id) pairs that may stream.
    pub links: Vec<(String, String)>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// ICE servers put into `stream:requested`.
    pub ice_servers: Vec<Value>,
    /// The contract's "the server also ends a session when a party's socket
    /// has been gone for a while": this long.
    pub party_gone_grace: Duration,
    /// The contract's legacy mode (section 5): `stream:frame` relayed,
    /// `webrtc:signal` dropped. Off: the reverse.
    pub legacy: bool,
    /// The Engine.IO `maxPayload` to announce instead of the mode's
    /// default (a server with a smaller limit than the contract's frames).
    pub max_payload: Option<u64>,
}

impl StandInConfig {
    /// Legacy mode (`SIMPLE_STREAMING` off): JPEG frames over the socket
    /// instead of WebRTC.
    pub fn legacy(mut self) -> Self {
        self.legacy = true;
        self
    }

    /// Adds another client linked to every camera.
    pub fn with_client(mut self, id: &str, token: &str) -> Self {
        let cameras: Vec<String> = self
            .devices
            .iter()
            .filter(|device| device.role == Role::Camera)
            .map(|device| device.id.clone())
            .collect();
        for camera in cameras {
            self.links.push((id.into(), camera));
        }
        self.devices.push(Device {
            id: id.into(),
            role: Role::Client,
            token: token.into(),
            name: "Another viewer".into(),
        });
        self
    }

    /// One camera and one linked client.
    pub fn pair(camera: (&str, &str), client: (&str, &str)) -> Self {
        Self {
            devices: vec![
                Device {
                    id: camera.0.into(),
                    role: Role::Camera,
                    token: camera.1.into(),
                    name: "Test camera".into(),
                },
                Device {
                    id: client.0.into(),
                    role: Role::Client,
                    token: client.1.into(),
                    name: "Test viewer".into(),
                },
            ],
            links: vec![(client.0.into(), camera.0.into())],
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            ice_servers: Vec::new(),
            party_gone_grace: Duration::from_secs(10),
            legacy: false,
            max_payload: None,
        }
    }
}

#[derive(Default)]
struct World {
    sessions: HashMap<String, Session>,
    next_session: u64,
    /// socket id -> device id
    sockets: HashMap<String, String>,
    /// Signals relayed and dropped, for assertions.
    relayed: u64,
    dropped: u64,
    socket_auth_failures: u64,
    rest_auth_failures: u64,
    /// Legacy mode: each session's frames, and every dropped frame by reason.
    frames: HashMap<String, frames::SessionFrames>,
    frame_drops: BTreeMap<FrameDrop, u64>,
}

struct Shared {
    config: StandInConfig,
    world: Mutex<World>,
    changed: Notify,
    io: SocketIo,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        // A poisoned lock only means a handler panicked; the data is still
        // the best record of what happened.
        self.world
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn device_by_token(&self, token: &str) -> Option<Device> {
        self.config
            .devices
            .iter()
            .find(|device| device.token == token)
            .cloned()
    }

    fn online(&self, device_id: &str) -> bool {
        self.world().sockets.values().any(|id| id == device_id)
    }
}

/// A running stand-in.
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// A duplicate of every accepted connection, to cut them all at stop as
    /// a crashing server would (upgraded websockets outlive axum's shutdown).
    connections: Arc<Mutex<Vec<std::net::TcpStream>>>,
    /// Answers 503/429 + `Retry-After` when a test says so.
    gate: Arc<crate::backpressure::Gate>,
}

impl StandIn {
    /// Starts serving on `bind` (use port 0 for any free port).
    pub async fn start(bind: SocketAddr, config: StandInConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        Self::serve(listener, config)
    }

    /// Serves on an existing listener (to restart on the same port).
    pub fn serve(
        listener: tokio::net::TcpListener,
        config: StandInConfig,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let mut builder = SocketIo::builder()
            .ping_interval(config.ping_interval)
            .ping_timeout(config.ping_timeout);
        if let Some(max_payload) = config.max_payload {
            builder = builder.max_payload(max_payload);
        } else if config.legacy {
            builder = builder.max_payload(LEGACY_MAX_PAYLOAD);
        }
        let (layer, io) = builder.build_layer();
        let shared = Arc::new(Shared {
            config,
            world: Mutex::new(World::default()),
            changed: Notify::new(),
            io: io.clone(),
        });
        install_socket_handlers(&io, shared.clone());
        let app = axum::Router::new()
            .route("/api/v1/devices/me", get(me))
            .route("/api/v1/streams", post(create_stream))
            .route("/api/v1/streams/{id}/accept", post(accept_stream))
            .route("/api/v1/streams/{id}/end", post(end_stream))
            .route("/api/v1/streams/{id}", get(get_stream))
            .merge(crate::viewer_page::routes())
            .fallback(|| async {
                error(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
            })
            .with_state(shared.clone())
            .layer(layer);
        // Outermost, so it can refuse the upgrade before Socket.IO sees it.
        let gate = Arc::new(crate::backpressure::Gate::default());
        let app = app.layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            crate::backpressure::gate,
        ));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let connections: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let tracked = connections.clone();
        let listener =
            axum::serve::ListenerExt::tap_io(listener, move |tcp: &mut tokio::net::TcpStream| {
                use std::os::fd::AsFd;
                // As production Socket.IO servers do (Node's http server
                // since v18, aiohttp): without it, Nagle's algorithm holds
                // the relayed answer behind an unacknowledged ack for up to
                // a delayed-ACK period (~40 ms), a wait that is the
                // stand-in's, not the agent's.
                let _ = tcp.set_nodelay(true);
                if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
                    tracked
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .push(std::net::TcpStream::from(fd));
                }
            });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            cancel,
            server: Mutex::new(Some(server)),
            connections,
            gate,
        })
    }

    /// The back-pressure switch and its record of arrivals.
    pub fn gate(&self) -> &crate::backpressure::Gate {
        &self.gate
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn session(&self, id: &str) -> Option<Session> {
        self.shared.world().sessions.get(id).cloned()
    }

    pub fn sessions(&self) -> Vec<Session> {
        self.shared.world().sessions.values().cloned().collect()
    }

    pub fn online(&self, device_id: &str) -> bool {
        self.shared.online(device_id)
    }

    /// (relayed, dropped) signal counts.
    pub fn signal_counts(&self) -> (u64, u64) {
        let world = self.shared.world();
        (world.relayed, world.dropped)
    }

    /// (socket, REST) authentication failures seen.
    pub fn auth_failures(&self) -> (u64, u64) {
        let world = self.shared.world();
        (world.socket_auth_failures, world.rest_auth_failures)
    }

    /// Emits a raw event to a device, bypassing every check: for tests that
    /// play a hostile or buggy server.
    pub async fn emit_raw(&self, device_id: &str, event: &str, payload: &Value) {
        let _ = self
            .shared
            .io
            .to(device_id.to_string())
            .emit(event, payload)
            .await;
    }

    /// Drops a device's socket server-side.
    pub fn disconnect(&self, device_id: &str) {
        for socket in self.shared.io.to(device_id.to_string()).sockets() {
            let _ = socket.disconnect();
        }
    }

    /// Waits until `check` holds, re-checking on every change; false on timeout.
    pub async fn wait_for(&self, timeout: Duration, check: impl Fn(&StandIn) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if check(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(self);
            }
        }
    }

    /// Stops serving and closes every socket. Idempotent.
    pub async fn stop(&self) {
        let server = self
            .server
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        let Some(server) = server else { return };
        self.cancel.cancel();
        let connections = std::mem::take(
            &mut *self
                .connections
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        for connection in connections {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
        self.shared.io.clone().close().await;
        let _ = server.await;
    }
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Device, ApiError> {
    match bearer(headers).and_then(|token| shared.device_by_token(token)) {
        Some(device) => Ok(device),
        None => {
            shared.world().rest_auth_failures += 1;
            shared.changed.notify_waiters();
            Err(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing, unknown or revoked token",
            ))
        }
    }
}

type Reply = Result<Response, ApiError>;

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Reply {
    let device = authenticate(&shared, &headers)?;
    Ok(
        Json(json!({"id": device.id, "role": device.role.as_str(), "name": device.name}))
            .into_response(),
    )
}

async fn create_stream(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Reply {
    let device = authenticate(&shared, &headers)?;
    let body = json_body(&body)?;
    let Some(camera_id) = body
        .get("cameraId")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "cameraId is required",
        ));
    };
    if device.role != Role::Client {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only clients request streams",
        ));
    }
    let linked = shared
        .config
        .links
        .iter()
        .any(|(client, camera)| *client == device.id && *camera == camera_id);
    if !linked {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "camera not linked to this client",
        ));
    }
    if !shared.online(&camera_id) {
        return Err(error(
            StatusCode::CONFLICT,
            "camera_offline",
            "camera has no live socket",
        ));
    }
    let session = {
        let mut world = shared.world();
        world.next_session += 1;
        let session = Session {
            id: format!("s-{}", world.next_session),
            camera_id: camera_id.clone(),
            client_id: device.id.clone(),
            state: SessionState::Requested,
            end_reason: None,
            ended_by: None,
            ended_at: None,
        };
        world.sessions.insert(session.id.clone(), session.clone());
        session
    };
    shared.changed.notify_waiters();
    let mut event = json!({
        "sessionId": session.id,
        "cameraId": session.camera_id,
        "clientId": session.client_id,
        "requestedAt": humantime_now(),
    });
    if !shared.config.ice_servers.is_empty() {
        event["iceServers"] = Value::Array(shared.config.ice_servers.clone());
    }
    let _ = shared
        .io
        .to(camera_id)
        .emit("stream:requested", &event)
        .await;
    Ok((StatusCode::CREATED, Json(session_view(&session))).into_response())
}

async fn accept_stream(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Reply {
    let device = authenticate(&shared, &headers)?;
    json_body(&body)?;
    let session = {
        let mut world = shared.world();
        let Some(session) = world.sessions.get_mut(&id) else {
            return Err(error(StatusCode::NOT_FOUND, "not_found", "unknown session"));
        };
        if device.role != Role::Camera || session.camera_id != device.id {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "not this session's camera",
            ));
        }
        if session.state != SessionState::Requested {
            return Err(ApiError {
                state: Some(session.state.as_str()),
                ..error(
                    StatusCode::CONFLICT,
                    "invalid_state",
                    "session is not requested",
                )
            });
        }
        session.state = SessionState::Streaming;
        session.clone()
    };
    shared.changed.notify_waiters();
    let started = json!({"sessionId": session.id, "cameraId": session.camera_id, "clientId": session.client_id});
    let _ = shared
        .io
        .to(vec![session.camera_id.clone(), session.client_id.clone()])
        .emit("stream:started", &started)
        .await;
    Ok(Json(json!({"sessionId": session.id, "state": "streaming"})).into_response())
}

async fn end_stream(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Reply {
    let device = authenticate(&shared, &headers)?;
    let body = json_body(&body)?;
    let reason = match body.get("reason") {
        None => "ended".to_string(),
        Some(Value::String(reason)) if !reason.is_empty() && reason.len() <= 64 => reason.clone(),
        Some(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "reason must be a short string",
            ));
        }
    };
    end_session(&shared, &id, &device.id, &reason).await
}

async fn end_session(shared: &Shared, id: &str, by: &str, reason: &str) -> Reply {
    let session = {
        let mut world = shared.world();
        let Some(session) = world.sessions.get_mut(id) else {
            return Err(error(StatusCode::NOT_FOUND, "not_found", "unknown session"));
        };
        if session.camera_id != by && session.client_id != by {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "not a party of this session",
            ));
        }
        if session.state == SessionState::Ended {
            return Ok(Json(json!({"sessionId": id, "state": "ended"})).into_response());
        }
        session.state = SessionState::Ended;
        session.end_reason = Some(reason.to_string());
        session.ended_by = Some(by.to_string());
        session.ended_at = Some(SystemTime::now());
        session.clone()
    };
    shared.changed.notify_waiters();
    let ended = json!({"sessionId": session.id, "reason": reason, "endedBy": by});
    let _ = shared
        .io
        .to(vec![session.camera_id.clone(), session.client_id.clone()])
        .emit("stream:ended", &ended)
        .await;
    Ok(Json(json!({"sessionId": id, "state": "ended"})).into_response())
}

/// Ends the device's open sessions if it has not come back within the grace.
async fn end_when_gone(shared: Arc<Shared>, device: String) {
    tokio::time::sleep(shared.config.party_gone_grace).await;
    if shared.online(&device) {
        return;
    }
    let open: Vec<String> = shared
        .world()
        .sessions
        .values()
        .filter(|session| {
            session.state != SessionState::Ended
                && (session.camera_id == device || session.client_id == device)
        })
        .map(|session| session.id.clone())
        .collect();
    for id in open {
        let _ = end_session(&shared, &id, &device, "peer_gone").await;
    }
}

async fn get_stream(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let device = authenticate(&shared, &headers)?;
    let world = shared.world();
    match world.sessions.get(&id) {
        None => Err(error(StatusCode::NOT_FOUND, "not_found", "unknown session")),
        Some(session) if session.camera_id != device.id && session.client_id != device.id => {
            Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "not a party of this session",
            ))
        }
        Some(session) => Ok(Json(session_view(session)).into_response()),
    }
}

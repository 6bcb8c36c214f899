//! A bare device of the contract: one Socket.IO connection (the agent's own
//! client, against the stand-in's socketioxide server) and REST calls with
//! its bearer token, with no behaviour of its own. Tests use it to play a
//! camera that sends exactly what they say, and the legacy viewer is built
//! on it.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use camera_agent::config::Secret;
use camera_agent::control_plane::socketio::connection::{
    self, SignalingEvent, SignalingHandle, SocketSettings,
};

/// A test device's connected socket: the agent's own client with a
/// viewer's settings (one person, not a fleet: fast, unspread retries).
pub struct SocketParts {
    pub signaling: SignalingHandle,
    pub events: mpsc::Receiver<SignalingEvent>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

/// Connects a socket to the stand-in at `base` with `token` and waits (10 s
/// at most) until the namespace is connected.
pub async fn connect_socket(base: &str, token: &str) -> anyhow::Result<SocketParts> {
    let base_url = url::Url::parse(base)?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (events_tx, mut events) = mpsc::channel(256);
    let signaling = connection::spawn(
        SocketSettings {
            url: SocketSettings::socket_url(&base_url, "/socket.io/")
                .map_err(|err| anyhow!(err))?,
            namespace: "/".into(),
            token: Secret::new(token.into()),
            connect_timeout: Duration::from_secs(5),
            reconnect_max: Duration::from_secs(2),
            reconnect_spread: Duration::from_millis(500),
            auth_reconnect_max: Duration::from_secs(5),
            tls: None,
        },
        events_tx,
        cancel.clone(),
        &tracker,
    );
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            match event {
                SignalingEvent::Connected { .. } => return Ok(()),
                SignalingEvent::AuthRejected => bail!("token refused"),
                _ => {}
            }
        }
        bail!("signaling task ended")
    })
    .await
    .context("socket did not connect in 10 s")?;
    connected?;
    Ok(SocketParts {
        signaling,
        events,
        cancel,
        tracker,
    })
}

/// One connected device: a socket and a token.
pub struct RawDevice {
    base: String,
    token: String,
    http: reqwest::Client,
    signaling: SignalingHandle,
    events: mpsc::Receiver<SignalingEvent>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl RawDevice {
    /// Connects the socket with `token` and waits (10 s at most) until the
    /// namespace is connected.
    pub async fn connect(base: &str, token: &str) -> anyhow::Result<Self> {
        let SocketParts {
            signaling,
            events,
            cancel,
            tracker,
        } = connect_socket(base, token).await?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.into(),
            http: reqwest::Client::new(),
            signaling,
            events,
            cancel,
            tracker,
        })
    }

    /// Emits an event; with `want_ack` it carries an ack id (the answer is
    /// only logged by the client: assert on the stand-in's record).
    pub async fn emit(&self, name: &str, payload: Value, want_ack: bool) -> anyhow::Result<()> {
        self.signaling.emit(name, payload, want_ack).await?;
        Ok(())
    }

    /// The next server event as (name, first argument), or `None` once
    /// `deadline` passes. Connection changes are skipped.
    pub async fn next_event(
        &mut self,
        deadline: Instant,
    ) -> anyhow::Result<Option<(String, Value)>> {
        loop {
            let Ok(event) = tokio::time::timeout_at(deadline, self.events.recv()).await else {
                return Ok(None);
            };
            match event.ok_or_else(|| anyhow!("signaling closed"))? {
                SignalingEvent::Event { name, args } => {
                    let payload = args.into_iter().next().unwrap_or(Value::Null);
                    return Ok(Some((name, payload)));
                }
                SignalingEvent::AuthRejected => bail!("token refused"),
                SignalingEvent::Connected { .. } | SignalingEvent::Disconnected { .. } => {}
            }
        }
    }

    /// Waits for `name` (for `session_id`, if given); other events are
    /// skipped.
    pub async fn wait_event(
        &mut self,
        name: &str,
        session_id: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let Some((got, payload)) = self.next_event(deadline).await? else {
                bail!("no {name} within {limit:?}");
            };
            if got == name && session_id.is_none_or(|id| payload["sessionId"].as_str() == Some(id))
            {
                return Ok(payload);
            }
        }
    }

    /// `POST {base}{path}` with the device's token; (status, JSON body).
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Closes the socket and waits for its task.
    pub async fn close(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

//! The supervisor owns the set of live sessions. It is the safety gate's
//! enforcer: every server event is validated here, checked against the
//! camera's identity and the known sessions, and only then routed to a
//! session actor. It also enforces capacity and re-checks sessions after a
//! signaling reconnect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::control_plane::events::{Inbound, StreamRequested, parse_inbound};
use crate::control_plane::rest::RestError;
use crate::control_plane::socketio::connection::SignalingEvent;
use crate::session::actor::{self, SessionCommand, SessionContext};
use crate::session::machine::{CameraReason, EndCause, ServerEnd};
use crate::systemd::Notifier;

struct Entry {
    client_id: String,
    commands: mpsc::Sender<SessionCommand>,
}

struct Finished {
    session_id: String,
    cause: EndCause,
    started: Instant,
}

pub struct Supervisor {
    ctx: Arc<SessionContext>,
    camera_id: String,
    max_sessions: usize,
    sessions: HashMap<String, Entry>,
    tracker: TaskTracker,
    finished_tx: mpsc::Sender<Finished>,
    finished_rx: mpsc::Receiver<Finished>,
    /// How long shutdown waits for sessions to end over REST and tear down.
    shutdown_grace: Duration,
    signaling_grace: Duration,
    /// When signaling sessions must be given up if it is still down.
    signaling_deadline: Option<Instant>,
    notifier: Arc<Notifier>,
    connected: bool,
    /// The live-session count, for the signaling task's reconnect policy.
    live_sessions: watch::Sender<usize>,
}

impl Supervisor {
    pub fn new(
        ctx: Arc<SessionContext>,
        camera_id: String,
        max_sessions: usize,
        signaling_grace: Duration,
        tracker: TaskTracker,
        notifier: Arc<Notifier>,
        live_sessions: watch::Sender<usize>,
    ) -> Self {
        let (finished_tx, finished_rx) = mpsc::channel(16);
        Self {
            ctx,
            camera_id,
            max_sessions,
            sessions: HashMap::new(),
            tracker,
            finished_tx,
            finished_rx,
            shutdown_grace: Duration::from_secs(4),
            signaling_grace,
            signaling_deadline: None,
            notifier,
            connected: false,
            live_sessions,
        }
    }

    /// The `systemctl status` line: connection state and who is watching;
    /// and the live-session count for the signaling task. Called on every
    /// change of either.
    fn publish_status(&self) {
        self.live_sessions.send_replace(self.sessions.len());
        let connection = if self.connected {
            "connected"
        } else {
            "reconnecting"
        };
        let status = if self.sessions.is_empty() {
            format!("{connection}; idle")
        } else {
            let viewers: Vec<String> = self
                .sessions
                .iter()
                .map(|(id, entry)| format!("{} (session {id})", entry.client_id))
                .collect();
            format!("{connection}; streaming to {}", viewers.join(", "))
        };
        self.notifier.status(&status);
    }

    /// Runs until `shutdown` fires, then ends every live session.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SignalingEvent>,
        shutdown: CancellationToken,
    ) {
        // The watchdog is fed from this loop, so a stuck supervisor is
        // restarted by systemd rather than kept alive by a free timer.
        let mut watchdog = tokio::time::interval(self.notifier.watchdog_period());
        loop {
            let deadline = self.signaling_deadline;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = watchdog.tick() => self.notifier.watchdog(),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.signaling_deadline = None;
                    warn!(live_sessions = self.sessions.len(), grace_ms = self.signaling_grace.as_millis() as u64,
                        "signaling still down after its grace; ending live sessions");
                    for entry in self.sessions.values() {
                        let _ = entry.commands.try_send(SessionCommand::SignalingLost);
                    }
                }
                event = events.recv() => match event {
                    Some(event) => self.on_signaling(event),
                    None => break,
                },
                Some(finished) = self.finished_rx.recv() => self.on_finished(finished),
            }
        }
        self.shutdown().await;
    }

    fn on_finished(&mut self, finished: Finished) {
        self.sessions.remove(&finished.session_id);
        self.publish_status();
        crate::memory::trim();
        info!(
            session_id = %finished.session_id,
            cause = %finished.cause,
            elapsed_ms = finished.started.elapsed().as_millis() as u64,
            live_sessions = self.sessions.len(),
            "teardown done"
        );
    }

    async fn shutdown(&mut self) {
        self.notifier.stopping();
        if self.sessions.is_empty() {
            return;
        }
        info!(
            live_sessions = self.sessions.len(),
            "shutting down: ending live sessions"
        );
        for entry in self.sessions.values() {
            let _ = entry.commands.try_send(SessionCommand::Shutdown);
        }
        let deadline = Instant::now() + self.shutdown_grace;
        while !self.sessions.is_empty() {
            match tokio::time::timeout_at(deadline, self.finished_rx.recv()).await {
                Ok(Some(finished)) => self.on_finished(finished),
                Ok(None) => break,
                Err(_) => {
                    warn!(
                        live_sessions = self.sessions.len(),
                        "sessions still ending at the shutdown deadline"
                    );
                    break;
                }
            }
        }
    }

    fn on_signaling(&mut self, event: SignalingEvent) {
        match event {
            SignalingEvent::Connected { reconnect } => {
                self.connected = true;
                self.publish_status();
                self.signaling_deadline = None;
                if reconnect {
                    self.recheck_sessions();
                }
            }
            SignalingEvent::Disconnected { reason } => {
                self.connected = false;
                self.publish_status();
                if !self.sessions.is_empty() {
                    self.signaling_deadline = Some(Instant::now() + self.signaling_grace);
                }
                info!(%reason, live_sessions = self.sessions.len(),
                    "signaling lost; live media keeps flowing peer to peer");
            }
            SignalingEvent::AuthRejected => {
                self.notifier
                    .status("device token refused on the signaling socket; retrying");
            }
            SignalingEvent::Event { name, args } => match parse_inbound(&name, args) {
                Ok(inbound) => self.route(inbound),
                Err(err) => warn!(error = %err, dropped = "invalid", "invalid event dropped"),
            },
        }
    }

    fn route(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::StreamRequested(request) => self.on_requested(request),
            Inbound::StreamStarted(started) => {
                if started.camera_id != self.camera_id
                    || !self.sessions.contains_key(&started.session_id)
                {
                    warn!(session_id = %started.session_id, dropped = "not_ours",
                        "stream:started for a session that is not ours; dropped");
                } else {
                    debug!(session_id = %started.session_id, "stream started");
                }
            }
            Inbound::StreamEnded(ended) => match self.sessions.get(&ended.session_id) {
                Some(entry) => {
                    let _ = entry.commands.try_send(SessionCommand::ServerEnded(
                        ServerEnd::StreamEnded(ended.reason),
                    ));
                }
                None => {
                    warn!(session_id = %ended.session_id, dropped = "unknown_session",
                        "stream:ended for an unknown session; dropped")
                }
            },
            Inbound::Signal(signal) => match self.sessions.get(&signal.session_id) {
                Some(entry) if entry.client_id == signal.from => {
                    if entry
                        .commands
                        .try_send(SessionCommand::Signal(signal.body))
                        .is_err()
                    {
                        warn!(session_id = %signal.session_id, dropped = "session_busy",
                            "session busy; signal dropped");
                    }
                }
                Some(_) => warn!(session_id = %signal.session_id, from = %signal.from,
                    dropped = "not_the_client",
                    "signal from a device that is not the session's client; dropped"),
                None => {
                    warn!(session_id = %signal.session_id, dropped = "unknown_session",
                        "signal for an unknown session; dropped")
                }
            },
        }
    }

    fn on_requested(&mut self, request: StreamRequested) {
        let started = Instant::now();
        if request.camera_id != self.camera_id {
            warn!(session_id = %request.session_id, camera_id = %request.camera_id,
                dropped = "other_camera", "stream:requested for another camera; dropped");
            return;
        }
        if self.sessions.contains_key(&request.session_id) {
            info!(session_id = %request.session_id, dropped = "duplicate",
                "duplicate stream:requested; already handling it");
            return;
        }
        info!(session_id = %request.session_id, client_id = %request.client_id, "requested");
        if self.sessions.len() >= self.max_sessions {
            warn!(session_id = %request.session_id, live_sessions = self.sessions.len(),
                "at capacity; refusing with camera_busy");
            let ctx = self.ctx.clone();
            let session_id = request.session_id;
            self.tracker.spawn(async move {
                ctx.end_over_rest(&session_id, CameraReason::CameraBusy)
                    .await;
            });
            return;
        }
        let (commands, receiver) = mpsc::channel(64);
        self.sessions.insert(
            request.session_id.clone(),
            Entry {
                client_id: request.client_id.clone(),
                commands,
            },
        );
        self.publish_status();
        let ctx = self.ctx.clone();
        let finished = self.finished_tx.clone();
        let session_id = request.session_id.clone();
        let tracker = self.tracker.clone();
        self.tracker.spawn(async move {
            let actor = actor::run(ctx.clone(), request, receiver, started);
            let cause = match run_reporting(&tracker, actor).await {
                Some(cause) => cause,
                None => {
                    // The viewer would otherwise wait on a session nobody serves.
                    let reason = CameraReason::CameraError;
                    ctx.end_over_rest(&session_id, reason).await;
                    EndCause::Camera(reason)
                }
            };
            let _ = finished
                .send(Finished {
                    session_id,
                    cause,
                    started,
                })
                .await;
        });
    }

    /// After a reconnect, sessions the server no longer streams are ended.
    fn recheck_sessions(&self) {
        for (session_id, entry) in &self.sessions {
            let rest = self.ctx.rest.clone();
            let session_id = session_id.clone();
            let commands = entry.commands.clone();
            self.tracker.spawn(async move {
                match rest.session(&session_id).await {
                    Ok(info) if info.state == "streaming" || info.state == "requested" => {
                        debug!(%session_id, state = %info.state, "session survived the reconnect");
                    }
                    Ok(info) => {
                        info!(%session_id, state = %info.state, "session ended while signaling was down");
                        let end = ServerEnd::NoLongerLive { state: info.state };
                        let _ = commands.send(SessionCommand::ServerEnded(end)).await;
                    }
                    Err(RestError::NotFound { .. }) => {
                        info!(%session_id, "session unknown to the server after the reconnect");
                        let end = ServerEnd::NotFound;
                        let _ = commands.send(SessionCommand::ServerEnded(end)).await;
                    }
                    Err(err) => {
                        warn!(%session_id, error = %err, "cannot recheck session after reconnect");
                    }
                }
            });
        }
    }
}

/// Runs a session actor as a task of its own and says how it ended, or
/// `None` if it panicked (a bug). Either way the caller hears of the end:
/// an entry left in the session table would make the camera refuse every
/// later viewer with `camera_busy`. The actor's pipeline is dropped, and so
/// set to NULL, while the panic unwinds.
async fn run_reporting<F>(tracker: &TaskTracker, actor: F) -> Option<EndCause>
where
    F: Future<Output = EndCause> + Send + 'static,
{
    match tracker.spawn(actor).await {
        Ok(cause) => Some(cause),
        Err(err) => {
            error!(error = %err, "session task failed; ending the session with camera_error");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_session_is_still_reported_as_ended() {
        let tracker = TaskTracker::new();
        let normal = run_reporting(&tracker, async {
            EndCause::Server(ServerEnd::StreamEnded("hangup".into()))
        })
        .await;
        assert_eq!(
            normal,
            Some(EndCause::Server(ServerEnd::StreamEnded("hangup".into())))
        );
        let panicked = run_reporting(&tracker, async {
            if std::hint::black_box(true) {
                panic!("bug in a session actor");
            }
            EndCause::AcceptRefused
        })
        .await;
        assert_eq!(panicked, None);
        tracker.close();
        tracker.wait().await;
    }
}

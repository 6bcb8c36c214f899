//! The session actor: one task per session, the only owner of its pipeline.
//!
//! It runs one `select!` loop over commands from the supervisor (signals,
//! server end, shutdown), media events from GStreamer callbacks, and the
//! answer timer. Decisions are the [`Machine`]'s; this file performs them.
//! Whatever ends the loop, the pipeline is stopped before the task returns
//! (and again by `Drop` should the task be aborted).

use std::sync::Arc;
use std::time::Duration;

use gst_webrtc::WebRTCICEConnectionState;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, error, info, warn};

use super::machine::{Action, CameraReason, EndCause, Input, Machine, Phase};
use super::negotiation::{Negotiation, Step};
use crate::control_plane::events::{SignalBody, StreamRequested, signal_payload};
use crate::control_plane::rest::{RestClient, RestError};
use crate::control_plane::socketio::connection::SignalingHandle;
use crate::media::pipeline::{MediaConfig, MediaEvent, MediaSession};
use crate::media::sdp;

/// What the supervisor tells a session.
#[derive(Debug)]
pub enum SessionCommand {
    Signal(SignalBody),
    ServerEnded(String),
    /// Signaling has been down longer than its grace.
    SignalingLost,
    Shutdown,
}

/// Shared, read-only context every session uses.
#[derive(Debug)]
pub struct SessionContext {
    pub rest: RestClient,
    pub signaling: SignalingHandle,
    pub plan: hw::PipelinePlan,
    pub media: MediaConfig,
    pub stun_servers: Vec<String>,
    pub turn_servers: Vec<String>,
    pub answer_timeout: Duration,
    pub ice_timeout: Duration,
    pub ice_disconnect_grace: Duration,
    pub max_duration: Option<Duration>,
    /// Bound on the REST `end` call during teardown.
    pub end_timeout: Duration,
}

struct Session {
    ctx: Arc<SessionContext>,
    id: String,
    client_id: String,
    ice_servers: Vec<crate::control_plane::events::IceServer>,
    started: Instant,
    machine: Machine,
    media: Option<MediaSession>,
    media_tx: mpsc::Sender<MediaEvent>,
    negotiation: Negotiation,
    timers: Timers,
}

/// The session's deadlines; the earliest one is awaited.
#[derive(Debug, Default)]
struct Timers {
    answer: Option<Instant>,
    ice_connect: Option<Instant>,
    ice_disconnected: Option<Instant>,
    max_duration: Option<Instant>,
}

impl Timers {
    fn next(&self) -> Option<(Instant, Input)> {
        [
            (self.answer, Input::AnswerTimeout),
            (self.ice_connect, Input::IceTimeout),
            (self.ice_disconnected, Input::IceFailed),
            (self.max_duration, Input::MaxDuration),
        ]
        .into_iter()
        .filter_map(|(deadline, input)| deadline.map(|deadline| (deadline, input)))
        .min_by_key(|(deadline, _)| *deadline)
    }

    fn clear(&mut self, input: &Input) {
        match input {
            Input::AnswerTimeout => self.answer = None,
            Input::IceTimeout => self.ice_connect = None,
            Input::IceFailed => self.ice_disconnected = None,
            Input::MaxDuration => self.max_duration = None,
            _ => {}
        }
    }
}

impl SessionContext {
    /// Tells the server the camera ends `session_id`, bounded by
    /// `end_timeout`; a failure is logged, teardown goes on regardless.
    pub async fn end_over_rest(&self, session_id: &str, reason: CameraReason) {
        let call = self.rest.end(session_id, reason.code());
        match tokio::time::timeout(self.end_timeout, call).await {
            Ok(Ok(_)) => info!(%session_id, reason = reason.code(), "end sent"),
            Ok(Err(err)) => warn!(%session_id, reason = reason.code(), error = %err,
                "ending the session over REST failed; tearing down anyway"),
            Err(_) => warn!(%session_id, reason = reason.code(),
                "ending the session over REST timed out; tearing down anyway"),
        }
    }
}

/// Runs a session to its end and returns why it ended.
pub async fn run(
    ctx: Arc<SessionContext>,
    request: StreamRequested,
    mut commands: mpsc::Receiver<SessionCommand>,
    started: Instant,
) -> EndCause {
    let (media_tx, mut media_rx) = mpsc::channel(256);
    let mut session = Session {
        ctx,
        id: request.session_id,
        client_id: request.client_id,
        ice_servers: request.ice_servers,
        started,
        machine: Machine::new(),
        media: None,
        media_tx,
        negotiation: Negotiation::new(),
        timers: Timers::default(),
    };
    let accepted = session.ctx.rest.accept(&session.id).await;
    match accepted {
        Ok(_) => {
            info!(session_id = %session.id, client_id = %session.client_id,
                elapsed_ms = session.elapsed_ms(), "accepted");
            session.apply(Input::Accepted).await;
        }
        Err(err) => {
            let server_knows = matches!(err, RestError::Transport(_) | RestError::Server { .. });
            warn!(session_id = %session.id, error = %err, elapsed_ms = session.elapsed_ms(),
                "accept failed");
            session.apply(Input::AcceptFailed { server_knows }).await;
        }
    }
    loop {
        if let Phase::Ended(cause) = session.machine.phase() {
            return cause.clone();
        }
        let next_timer = session.timers.next();
        let wake = next_timer.as_ref().map(|(deadline, _)| *deadline);
        tokio::select! {
            command = commands.recv() => match command {
                Some(SessionCommand::Signal(body)) => session.on_signal(body).await,
                Some(SessionCommand::ServerEnded(reason)) => {
                    info!(session_id = %session.id, %reason, elapsed_ms = session.elapsed_ms(), "hangup");
                    session.apply(Input::ServerEnded(reason)).await;
                }
                Some(SessionCommand::SignalingLost) => {
                    warn!(session_id = %session.id, elapsed_ms = session.elapsed_ms(),
                        "signaling down past its grace");
                    session.apply(Input::SignalingLost).await;
                }
                // A closed command channel means the supervisor is gone.
                Some(SessionCommand::Shutdown) | None => session.apply(Input::Shutdown).await,
            },
            event = media_rx.recv() => {
                if let Some(event) = event {
                    session.on_media(event).await;
                }
            }
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                if let Some((_, input)) = next_timer {
                    session.timers.clear(&input);
                    warn!(session_id = %session.id, timer = ?input, elapsed_ms = session.elapsed_ms(),
                        "session timer fired");
                    session.apply(input).await;
                }
            }
        }
    }
}

impl Session {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Feeds an input to the machine and performs the resulting actions,
    /// including the inputs those actions produce.
    async fn apply(&mut self, input: Input) {
        let mut queue = vec![input];
        while let Some(input) = queue.pop() {
            let actions = match self.machine.handle(input) {
                Ok(actions) => actions,
                Err(err) => {
                    debug!(session_id = %self.id, %err, "input ignored");
                    continue;
                }
            };
            for action in actions {
                if let Some(next) = self.perform(action).await {
                    queue.push(next);
                }
            }
        }
    }

    async fn perform(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::StartMedia => {
                let name = format!("session-{}", self.id);
                let mut media = self.ctx.media.clone();
                media.ice = sdp::ice_urls(
                    &self.ice_servers,
                    &self.ctx.stun_servers,
                    &self.ctx.turn_servers,
                );
                match MediaSession::start(&name, &self.ctx.plan, &media, self.media_tx.clone()) {
                    Ok(session) => {
                        self.media = Some(session);
                        let now = Instant::now();
                        self.timers.answer = Some(now + self.ctx.answer_timeout);
                        self.timers.max_duration = self.ctx.max_duration.map(|max| now + max);
                        info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "pipeline playing");
                        None
                    }
                    Err(err) => {
                        error!(session_id = %self.id, error = %err, "pipeline failed to start");
                        Some(Input::MediaError)
                    }
                }
            }
            Action::EndOverRest(reason) => {
                self.ctx.end_over_rest(&self.id, reason).await;
                None
            }
            Action::Teardown => {
                if let Some(mut media) = self.media.take() {
                    media.stop();
                }
                self.timers = Timers::default();
                let cause = match self.machine.phase() {
                    Phase::Ending(cause) => cause.to_string(),
                    _ => String::new(),
                };
                info!(session_id = %self.id, cause = %cause, elapsed_ms = self.elapsed_ms(), "ended");
                Some(Input::TeardownDone)
            }
        }
    }

    async fn send_signal(&self, body: &SignalBody) {
        let payload = signal_payload(&self.id, body);
        if let Err(err) = self
            .ctx
            .signaling
            .emit("webrtc:signal", payload, true)
            .await
        {
            warn!(session_id = %self.id, error = %err, "signal not sent");
        }
    }

    async fn on_signal(&mut self, body: SignalBody) {
        match self.negotiation.remote_signal(body) {
            Ok(steps) => self.perform_steps(steps).await,
            Err(why) => warn!(session_id = %self.id, phase = self.machine.phase().name(),
                "viewer signal dropped: {why}"),
        }
    }

    /// Performs what the negotiation asks for. Without a pipeline (the
    /// session is ending) there is nothing to give webrtcbin.
    async fn perform_steps(&mut self, steps: impl IntoIterator<Item = Step>) {
        for step in steps {
            match step {
                Step::Send(body) => self.send_signal(&body).await,
                Step::CreateOffer => {
                    if let Some(media) = &self.media {
                        media.create_offer(self.media_tx.clone());
                    }
                }
                Step::ApplyAnswer(sdp) => {
                    let Some(media) = &self.media else { continue };
                    if let Err(err) = media.set_remote_answer(&sdp, self.media_tx.clone()) {
                        warn!(session_id = %self.id, error = %err, "unusable answer; dropped");
                        self.negotiation.answer_rejected();
                    }
                }
                Step::AddRemote { mline, candidate } => {
                    if let Some(media) = &self.media {
                        media.add_remote_candidate(mline, candidate.as_deref());
                    }
                }
            }
        }
    }

    async fn on_media(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::NegotiationNeeded => {
                debug!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "negotiation needed");
                let steps = self.negotiation.negotiation_needed();
                self.perform_steps(steps).await;
            }
            MediaEvent::OfferCreated(Ok(offer)) => {
                debug!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "offer created");
                let Some(media) = &self.media else { return };
                media.set_local_description(&offer);
                let text = match offer.sdp().as_text() {
                    Ok(text) => text,
                    Err(err) => {
                        error!(session_id = %self.id, error = %err, "offer SDP not serialisable");
                        self.apply(Input::MediaError).await;
                        return;
                    }
                };
                let text = sdp::with_fingerprint(&text, self.ctx.media.identity.fingerprint());
                let steps = self.negotiation.offer_ready(text);
                self.perform_steps(steps).await;
                info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "offer sent");
                self.apply(Input::OfferSent).await;
            }
            MediaEvent::OfferCreated(Err(err)) => {
                error!(session_id = %self.id, error = %err, "offer creation failed");
                self.apply(Input::MediaError).await;
            }
            MediaEvent::LocalCandidate { mline, candidate } => {
                let steps = self.negotiation.local_candidate(mline, candidate);
                self.perform_steps(steps).await;
            }
            MediaEvent::GatheringComplete => {
                debug!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "candidates complete");
                let steps = self.negotiation.gathering_complete();
                self.perform_steps(steps).await;
            }
            MediaEvent::RemoteDescriptionSet(Ok(())) => {
                self.timers.answer = None;
                self.timers.ice_connect = Some(Instant::now() + self.ctx.ice_timeout);
                info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "answer applied");
                if let Some(media) = &self.media {
                    media.watch_dtls(self.media_tx.clone());
                }
                self.apply(Input::AnswerApplied).await;
                let (steps, dropped) = self.negotiation.answer_applied();
                for why in dropped {
                    warn!(session_id = %self.id, "held viewer candidate dropped: {why}");
                }
                self.perform_steps(steps).await;
            }
            MediaEvent::RemoteDescriptionSet(Err(err)) => {
                self.negotiation.answer_rejected();
                warn!(session_id = %self.id, error = %err, "answer rejected by webrtcbin; dropped");
            }
            MediaEvent::IceState(state) => {
                info!(session_id = %self.id, state = ?state, elapsed_ms = self.elapsed_ms(), "ice state");
                match state {
                    WebRTCICEConnectionState::Connected | WebRTCICEConnectionState::Completed => {
                        self.timers.ice_connect = None;
                        self.timers.ice_disconnected = None;
                        self.apply(Input::IceConnected).await;
                    }
                    // Wi-Fi blips recover; only a lasting loss ends the session.
                    WebRTCICEConnectionState::Disconnected | WebRTCICEConnectionState::Failed => {
                        self.timers
                            .ice_disconnected
                            .get_or_insert(Instant::now() + self.ctx.ice_disconnect_grace);
                    }
                    _ => {}
                }
            }
            MediaEvent::DtlsConnected => {
                info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "dtls connected");
                if let Some(media) = &self.media {
                    media.request_keyframe();
                }
            }
            MediaEvent::FirstMedia => {
                info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "first media");
            }
            // Read by the congestion controller once it is wired in.
            MediaEvent::Stats(stats) => {
                debug!(session_id = %self.id, ?stats, "link stats");
            }
            MediaEvent::Error(message) => {
                error!(session_id = %self.id, error = %message, "pipeline error");
                self.apply(Input::MediaError).await;
            }
        }
    }
}

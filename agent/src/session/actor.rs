//! The session actor: one task per session, the only owner of its pipeline.
//!
//! It runs one `select!` loop over commands from the supervisor (signals,
//! server end, shutdown), media events from GStreamer callbacks, and the
//! earliest armed timer. Each of them becomes an [`Input`] to the session
//! [`Machine`], and the actor performs the [`Action`]s it returns: the
//! decisions (what to send when, which timer runs, how the session ends)
//! are all the machine's. Whatever ends the loop, the pipeline is stopped
//! before the task returns (and again by `Drop` should the task be aborted).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use gst_webrtc::WebRTCICEConnectionState;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, error, info, warn};

use super::congestion::Control;
use super::machine::{
    Action, CameraReason, EndCause, IceState, Input, Machine, Phase, Rejected, ServerEnd,
    SessionPolicy, Timer,
};
use crate::control_plane::events::{IceServer, SignalBody, StreamRequested, signal_payload};
use crate::control_plane::rest::{RestClient, RestError};
use crate::control_plane::socketio::connection::{FrameRefused, SignalingHandle};
use crate::media::jpeg::{JpegCapture, JpegFrame};
use crate::media::pipeline::{MediaConfig, MediaEvent, MediaSession};
use crate::media::sdp;
use crate::media::turn_tls::TlsTunnels;
use crate::planning::MediaPlan;
use crate::session::relay::MAX_FRAME_BYTES;

/// What the supervisor tells a session.
#[derive(Debug)]
pub enum SessionCommand {
    Signal(SignalBody),
    ServerEnded(ServerEnd),
    /// Signaling has been down longer than its grace.
    SignalingLost,
    Shutdown,
}

/// Shared, read-only context every session uses.
#[derive(Debug)]
pub struct SessionContext {
    pub rest: RestClient,
    pub signaling: SignalingHandle,
    pub plan: MediaPlan,
    pub media: MediaConfig,
    pub stun_servers: Vec<String>,
    pub turn_servers: Vec<String>,
    /// TLS to `turns:` servers, with the control plane's trust (see
    /// `media::turn_tls`).
    pub turn_tls: Arc<rustls::ClientConfig>,
    pub policy: SessionPolicy,
    /// Bound on the REST `end` call during teardown.
    pub end_timeout: Duration,
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

/// The deadlines of the armed timers. Mechanism only: which timer runs and
/// for how long is the machine's decision.
#[derive(Debug, Default)]
struct Deadlines(BTreeMap<Timer, Instant>);

impl Deadlines {
    fn arm(&mut self, timer: Timer, at: Instant) {
        self.0.insert(timer, at);
    }

    fn disarm(&mut self, timer: Timer) {
        self.0.remove(&timer);
    }

    /// The timer due first, if any is armed.
    fn earliest(&self) -> Option<(Timer, Instant)> {
        self.0
            .iter()
            .map(|(timer, deadline)| (*timer, *deadline))
            .min_by_key(|(_, deadline)| *deadline)
    }
}

struct Session {
    ctx: Arc<SessionContext>,
    id: String,
    client_id: String,
    ice_servers: Vec<IceServer>,
    started: Instant,
    machine: Machine,
    media: Option<MediaSession>,
    /// The legacy relay's pipeline (instead of `media`).
    jpeg: Option<JpegCapture>,
    /// The frame the machine is deciding about (legacy relay).
    held_frame: Option<JpegFrame>,
    media_tx: mpsc::Sender<MediaEvent>,
    deadlines: Deadlines,
    /// Local TLS tunnels to the session's `turns:` servers; closed at
    /// teardown (and cancelled on drop, should the task be aborted).
    tunnels: TlsTunnels,
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
        machine: Machine::new(ctx.policy),
        tunnels: TlsTunnels::new(ctx.turn_tls.clone()),
        ctx,
        id: request.session_id,
        client_id: request.client_id,
        ice_servers: request.ice_servers,
        started,
        media: None,
        jpeg: None,
        held_frame: None,
        media_tx,
        deadlines: Deadlines::default(),
    };
    let accepted = match session.ctx.rest.accept(&session.id).await {
        Ok(_) => {
            info!(session_id = %session.id, client_id = %session.client_id,
                elapsed_ms = session.elapsed_ms(), "accepted");
            Input::Accepted
        }
        Err(err) => {
            let server_knows = matches!(err, RestError::Transport(_) | RestError::Server { .. });
            warn!(session_id = %session.id, error = %err, elapsed_ms = session.elapsed_ms(),
                "accept failed");
            Input::AcceptFailed { server_knows }
        }
    };
    session.apply(accepted).await;
    loop {
        if let Phase::Ended(cause) = session.machine.phase() {
            return cause.clone();
        }
        let next_timer = session.deadlines.earliest();
        let wake = next_timer.map(|(_, deadline)| deadline);
        let input = tokio::select! {
            command = commands.recv() => Some(session.on_command(command)),
            event = media_rx.recv() => event.and_then(|event| session.on_media(event)),
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                next_timer.map(|(timer, _)| session.on_timer(timer))
            }
        };
        if let Some(input) = input {
            session.apply(input).await;
        }
    }
}

impl Session {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Feeds an input to the machine and performs the resulting actions in
    /// order, then the inputs those actions produced.
    async fn apply(&mut self, input: Input) {
        let mut pending = VecDeque::from([input]);
        while let Some(input) = pending.pop_front() {
            let actions = match self.machine.handle(input) {
                Ok(actions) => actions,
                Err(Rejected::Signal(why)) => {
                    warn!(session_id = %self.id, phase = self.machine.phase().name(),
                        dropped = why.code(), "viewer signal dropped: {why}");
                    continue;
                }
                Err(Rejected::Transition(err)) => {
                    debug!(session_id = %self.id, %err, "input ignored");
                    continue;
                }
            };
            for action in actions {
                if let Some(next) = self.perform(action).await {
                    pending.push_back(next);
                }
            }
        }
    }

    /// Performs one action; returns the input its outcome makes, if any.
    /// Without a pipeline (it failed to start, or the session is ending)
    /// there is nothing to give webrtcbin.
    async fn perform(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::StartMedia => return self.start_media(),
            Action::CreateOffer => {
                if let Some(media) = &self.media {
                    media.create_offer(self.media_tx.clone());
                }
            }
            Action::SendSignal(body) => {
                self.send_signal(&body).await;
                if matches!(body, SignalBody::Offer { .. }) {
                    info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "offer sent");
                }
            }
            Action::ApplyAnswer(sdp) => {
                let media = self.media.as_ref()?;
                if let Err(err) = media.set_remote_answer(&sdp, self.media_tx.clone()) {
                    warn!(session_id = %self.id, error = %err, "unusable answer; dropped");
                    return Some(Input::AnswerRejected);
                }
            }
            Action::AddRemoteCandidate { mline, candidate } => {
                if let Some(media) = &self.media {
                    media.add_remote_candidate(mline, candidate.as_deref());
                }
            }
            Action::WatchDtls => {
                if let Some(media) = &self.media {
                    media.watch_dtls(self.media_tx.clone());
                }
            }
            Action::RequestKeyframe => {
                if let Some(media) = &self.media {
                    media.request_keyframe();
                }
            }
            Action::ArmTimer(timer, after) => self.deadlines.arm(timer, Instant::now() + after),
            Action::DisarmTimer(timer) => self.deadlines.disarm(timer),
            Action::DropHeldCandidate(why) => {
                warn!(session_id = %self.id, dropped = why.code(),
                    "held viewer candidate dropped: {why}");
            }
            Action::RequestStats => {
                if let Some(media) = &self.media {
                    media.request_stats(self.media_tx.clone());
                }
            }
            Action::Control(control) => self.control(control),
            Action::LogLink(report) => {
                info!(session_id = %self.id, target_kbps = report.target_kbps,
                    sent_kbps = report.sent_kbps, loss_pct = report.loss_pct,
                    fec_pct = report.fec_pct, rtx_pct = report.rtx_pct,
                    rtt_ms = report.rtt_ms, width = report.encode.width,
                    height = report.encode.height, fps = report.encode.framerate,
                    rtcp_received = report.rtcp_received,
                    elapsed_ms = self.elapsed_ms(), "link");
            }
            Action::LogSelectedPair(pair) => {
                info!(session_id = %self.id, local_type = %pair.local.kind,
                    local_protocol = %pair.local.protocol,
                    local_relay_protocol = pair.local.relay_protocol.as_deref(),
                    remote_type = %pair.remote.kind, remote_protocol = %pair.remote.protocol,
                    elapsed_ms = self.elapsed_ms(), "selected pair");
            }
            Action::EmitFrame { seq } => return Some(self.emit_frame(seq)),
            Action::SetJpegQuality(quality) => {
                info!(session_id = %self.id, quality, elapsed_ms = self.elapsed_ms(), "jpeg quality");
                if let Some(jpeg) = &self.jpeg
                    && let Err(err) = jpeg.set_quality(quality)
                {
                    warn!(session_id = %self.id, error = %err, "jpeg quality not applied");
                }
            }
            Action::SkipFrame {
                why,
                bytes,
                quality,
            } => {
                self.held_frame = None;
                warn!(session_id = %self.id, skipped = why.code(), bytes, quality,
                    "frame over the size limit; not sent");
            }
            Action::LogFrames(summary) => {
                info!(session_id = %self.id, frames_sent = summary.sent,
                    frames_dropped_busy = summary.dropped_busy,
                    frames_skipped_oversize = summary.skipped_oversize,
                    jpeg_quality = summary.quality, elapsed_ms = self.elapsed_ms(), "frames");
            }
            Action::EndOverRest(reason) => self.ctx.end_over_rest(&self.id, reason).await,
            Action::Teardown => {
                if let Some(mut media) = self.media.take() {
                    media.stop();
                }
                if let Some(mut jpeg) = self.jpeg.take() {
                    jpeg.stop();
                }
                self.held_frame = None;
                // After the pipeline: libnice's sockets are closed by now.
                self.tunnels.close().await;
                let cause = match self.machine.phase() {
                    Phase::Ending(cause) => cause.to_string(),
                    _ => String::new(),
                };
                info!(session_id = %self.id, cause = %cause, elapsed_ms = self.elapsed_ms(), "ended");
                return Some(Input::TeardownDone);
            }
        }
        None
    }

    /// Applies a congestion-control decision to the running encoder.
    fn control(&self, control: Control) {
        let Some(media) = &self.media else { return };
        let applied = match control {
            Control::SetBitrate { kbps } => {
                debug!(session_id = %self.id, kbps, "encoder bitrate");
                media.set_bitrate(kbps)
            }
            Control::SetEncodeTarget(target) => {
                info!(session_id = %self.id, width = target.width, height = target.height,
                    fps = target.framerate, elapsed_ms = self.elapsed_ms(), "encoder picture");
                media.set_encode_target(target)
            }
            Control::FecPercentage(percentage) => {
                info!(session_id = %self.id, percentage, elapsed_ms = self.elapsed_ms(), "fec");
                media.set_fec_percentage(percentage)
            }
        };
        if let Err(err) = applied {
            warn!(session_id = %self.id, error = %err, "encoder control not applied");
        }
    }

    /// Offers the held frame to the socket's frame lane, without waiting.
    fn emit_frame(&mut self, seq: u64) -> Input {
        let Some(frame) = self.held_frame.take() else {
            return Input::FrameBusy;
        };
        let data = match frame.bytes() {
            Ok(bytes) => base64::engine::general_purpose::STANDARD.encode(&bytes[..]),
            Err(err) => {
                warn!(session_id = %self.id, error = %err, "frame not readable; dropped");
                return Input::FrameBusy;
            }
        };
        let payload = serde_json::json!({
            "sessionId": self.id,
            "seq": seq,
            "mime": "image/jpeg",
            "data": data,
            "capturedAt": humantime::format_rfc3339_millis(frame.captured_at).to_string(),
        });
        match self.ctx.signaling.try_emit_frame("stream:frame", payload) {
            Ok(()) => Input::FrameTaken,
            Err(FrameRefused::Busy) => {
                debug!(session_id = %self.id, seq, dropped = "socket_busy", "frame dropped");
                Input::FrameBusy
            }
            Err(FrameRefused::Closed) => Input::FrameBusy,
        }
    }

    /// The largest JPEG the connected server takes in one `stream:frame`
    /// (its `maxPayload` less base64 and the envelope); `None` offline.
    fn frame_limit(&self) -> Option<usize> {
        // `42["stream:frame",{"sessionId":..,"seq":..,"mime":..,"data":"",
        // "capturedAt":..}]` without the data is 132 bytes at the largest
        // seq, plus the id (twice, should JSON escape all of it).
        let envelope = 160 + 2 * self.id.len() as u64;
        let max_payload = self.ctx.signaling.max_payload()?;
        let room = max_payload.saturating_sub(envelope) / 4 * 3;
        Some(usize::try_from(room).unwrap_or(MAX_FRAME_BYTES))
    }

    fn start_media(&mut self) -> Option<Input> {
        let name = format!("session-{}", self.id);
        let plan = match &self.ctx.plan {
            MediaPlan::WebRtc(plan) => plan,
            MediaPlan::LegacyJpeg(plan) => {
                return match JpegCapture::start(&name, plan, self.media_tx.clone()) {
                    Ok(capture) => {
                        self.jpeg = Some(capture);
                        info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(),
                            "pipeline playing");
                        Some(Input::MediaStarted)
                    }
                    Err(err) => {
                        error!(session_id = %self.id, error = %err, "pipeline failed to start");
                        Some(Input::MediaError)
                    }
                };
            }
        };
        let mut media = self.ctx.media.clone();
        let urls = sdp::ice_urls(
            &self.ice_servers,
            &self.ctx.stun_servers,
            &self.ctx.turn_servers,
        );
        // libnice gets `turns:` servers as local tunnels it reaches over
        // plain TCP; the tunnels speak TLS to the real servers.
        media.ice = self.tunnels.route(urls, &self.id);
        match MediaSession::start(&name, plan, &media, self.media_tx.clone()) {
            Ok(session) => {
                self.media = Some(session);
                info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "pipeline playing");
                Some(Input::MediaStarted)
            }
            Err(err) => {
                error!(session_id = %self.id, error = %err, "pipeline failed to start");
                Some(Input::MediaError)
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

    /// A command from the supervisor, as an input. A closed command
    /// channel means the supervisor is gone: shut down.
    fn on_command(&self, command: Option<SessionCommand>) -> Input {
        match command {
            Some(SessionCommand::Signal(body)) => Input::Signal(body),
            Some(SessionCommand::ServerEnded(end)) => {
                info!(session_id = %self.id, reason = %end, elapsed_ms = self.elapsed_ms(), "hangup");
                Input::ServerEnded(end)
            }
            Some(SessionCommand::SignalingLost) => {
                warn!(session_id = %self.id, elapsed_ms = self.elapsed_ms(),
                    "signaling down past its grace");
                Input::SignalingLost
            }
            Some(SessionCommand::Shutdown) | None => Input::Shutdown,
        }
    }

    fn on_timer(&mut self, timer: Timer) -> Input {
        self.deadlines.disarm(timer);
        if !timer.is_periodic() {
            warn!(session_id = %self.id, timer = timer.name(), elapsed_ms = self.elapsed_ms(),
                "session timer fired");
        }
        Input::TimerFired(timer)
    }

    /// A media event, logged and turned into an input. The offer is
    /// finished here because it is a GStreamer object: set as the local
    /// description, serialised, its fingerprint corrected.
    fn on_media(&mut self, event: MediaEvent) -> Option<Input> {
        let input = match event {
            MediaEvent::NegotiationNeeded => {
                debug!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "negotiation needed");
                Input::NegotiationNeeded
            }
            MediaEvent::OfferCreated(Ok(offer)) => {
                debug!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "offer created");
                let media = self.media.as_ref()?;
                media.set_local_description(&offer);
                match offer.sdp().as_text() {
                    Ok(text) => Input::OfferCreated {
                        sdp: sdp::with_fingerprint(&text, self.ctx.media.identity.fingerprint()),
                    },
                    Err(err) => {
                        error!(session_id = %self.id, error = %err, "offer SDP not serialisable");
                        Input::MediaError
                    }
                }
            }
            MediaEvent::OfferCreated(Err(err)) => {
                error!(session_id = %self.id, error = %err, "offer creation failed");
                Input::MediaError
            }
            MediaEvent::LocalCandidate { mline, candidate } => {
                Input::LocalCandidate { mline, candidate }
            }
            MediaEvent::GatheringComplete => {
                debug!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "candidates complete");
                Input::GatheringComplete
            }
            MediaEvent::RemoteDescriptionSet(Ok(())) => {
                info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "answer applied");
                Input::AnswerApplied
            }
            MediaEvent::RemoteDescriptionSet(Err(err)) => {
                warn!(session_id = %self.id, error = %err, "answer rejected by webrtcbin; dropped");
                Input::AnswerRejected
            }
            MediaEvent::IceState(state) => {
                info!(session_id = %self.id, state = ?state, elapsed_ms = self.elapsed_ms(), "ice state");
                Input::Ice(ice_state(state)?)
            }
            MediaEvent::DtlsConnected => {
                info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "dtls connected");
                Input::DtlsConnected
            }
            MediaEvent::FirstMedia => {
                info!(session_id = %self.id, elapsed_ms = self.elapsed_ms(), "first media");
                return None;
            }
            MediaEvent::Stats(stats) => {
                tracing::trace!(session_id = %self.id, ?stats, "link stats");
                Input::Stats {
                    at: self.started.elapsed(),
                    stats,
                }
            }
            MediaEvent::Frame(frame) => {
                // Offline, the frame could not go out: dropped before it
                // takes a number.
                let Some(limit) = self.frame_limit() else {
                    return Some(Input::FrameBusy);
                };
                let bytes = frame.len();
                self.held_frame = Some(frame);
                Input::Frame { bytes, limit }
            }
            MediaEvent::Error(message) => {
                error!(session_id = %self.id, error = %message, "pipeline error");
                Input::MediaError
            }
        };
        Some(input)
    }
}

/// webrtcbin's ICE connection state as the machine sees it; `None` for
/// values GStreamer may add later.
fn ice_state(state: WebRTCICEConnectionState) -> Option<IceState> {
    Some(match state {
        WebRTCICEConnectionState::New => IceState::New,
        WebRTCICEConnectionState::Checking => IceState::Checking,
        WebRTCICEConnectionState::Connected | WebRTCICEConnectionState::Completed => {
            IceState::Connected
        }
        WebRTCICEConnectionState::Disconnected => IceState::Disconnected,
        WebRTCICEConnectionState::Failed => IceState::Failed,
        WebRTCICEConnectionState::Closed => IceState::Closed,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_deadline_wins_and_disarmed_ones_are_forgotten() {
        let now = Instant::now();
        let mut deadlines = Deadlines::default();
        assert_eq!(deadlines.earliest(), None);
        deadlines.arm(Timer::MaxDuration, now + Duration::from_secs(60));
        deadlines.arm(Timer::Answer, now + Duration::from_secs(15));
        assert_eq!(
            deadlines.earliest(),
            Some((Timer::Answer, now + Duration::from_secs(15)))
        );
        // Re-arming replaces the deadline.
        deadlines.arm(Timer::Answer, now + Duration::from_secs(90));
        assert_eq!(
            deadlines.earliest().map(|(timer, _)| timer),
            Some(Timer::MaxDuration)
        );
        deadlines.disarm(Timer::MaxDuration);
        deadlines.disarm(Timer::IceGrace);
        assert_eq!(
            deadlines.earliest().map(|(timer, _)| timer),
            Some(Timer::Answer)
        );
    }

    #[test]
    fn connected_and_completed_are_both_connected() {
        use WebRTCICEConnectionState as Gst;
        let mapped = [
            Gst::New,
            Gst::Checking,
            Gst::Connected,
            Gst::Completed,
            Gst::Disconnected,
            Gst::Failed,
            Gst::Closed,
        ]
        .map(ice_state);
        assert_eq!(
            mapped,
            [
                Some(IceState::New),
                Some(IceState::Checking),
                Some(IceState::Connected),
                Some(IceState::Connected),
                Some(IceState::Disconnected),
                Some(IceState::Failed),
                Some(IceState::Closed),
            ]
        );
    }
}

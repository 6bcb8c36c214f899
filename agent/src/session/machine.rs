//! The brain of one streaming session, as pure code: its phases, the
//! offer/answer ordering and the timer policy.
//!
//! ```text
//! Accepting --Accepted--> Negotiating --OfferCreated--> AwaitingAnswer
//!     --AnswerApplied--> Connecting --Ice(Connected)--> Live
//! any active phase --(timer, error, shutdown, server end)--> Ending --TeardownDone--> Ended
//!
//! legacy JPEG relay (`SIMPLE_STREAMING` off):
//! Accepting --Accepted--> Relaying --(the same ends)--> Ending --> Ended
//! ```
//!
//! Everything that happens to a session goes in as an [`Input`] (accept
//! result, media events, viewer signals, a server end, a named [`Timer`]
//! firing) and everything the session must do comes out as [`Action`]s, in
//! order, for the actor to perform. The actor holds no policy: it owns the
//! pipeline, the sockets and the clock, and feeds the outcome of what it
//! performed back in. Timers are armed and disarmed by name here, so every
//! rule about them ("answer timeout only before the answer", "ICE grace
//! only while disconnected") is a unit test of this module.
//!
//! Every transition checks the phase it starts from, so an input that
//! arrives out of order (a late ICE state, a duplicate end) is
//! [`Rejected`] and changes nothing.
//!
//! Extending: a new periodic or deadline rule (a statistics tick feeding a
//! congestion controller, "no RTCP from the viewer for N seconds while
//! live") is a new [`Timer`] variant armed from the transition where it
//! starts to apply, plus an `Input` carrying what was measured and the
//! `Action`s it decides; the actor only learns to perform new actions.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::congestion::{BitrateLimits, Control, Controller, LinkReport};
use super::negotiation::Negotiation;
use super::relay::{FrameRelay, FrameSummary, RelayAction, RelayPolicy, Skip};
use crate::control_plane::events::SignalBody;
use crate::media::sdp;
use crate::media::stats::{LinkStats, SelectedPair};

/// How often a live session reads its link figures and lets the congestion
/// controller decide (the issue's 100-250 ms; TWCC feedback from browsers
/// comes about every 100 ms).
pub const STATS_INTERVAL: Duration = Duration::from_millis(200);

pub use super::negotiation::Dropped;

/// Why the camera ends a session; the codes are the contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraReason {
    CameraShutdown,
    CameraBusy,
    AnswerTimeout,
    IceFailed,
    MediaError,
    MaxDuration,
    CameraError,
}

impl CameraReason {
    pub fn code(self) -> &'static str {
        match self {
            CameraReason::CameraShutdown => "camera_shutdown",
            CameraReason::CameraBusy => "camera_busy",
            CameraReason::AnswerTimeout => "answer_timeout",
            CameraReason::IceFailed => "ice_failed",
            CameraReason::MediaError => "media_error",
            CameraReason::MaxDuration => "max_duration",
            CameraReason::CameraError => "camera_error",
        }
    }
}

/// How the server side ended a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEnd {
    /// `stream:ended`, with the server's reason (e.g. `hangup`).
    StreamEnded(String),
    /// After a signaling reconnect, REST reports the session in this state,
    /// which is no longer a live one (e.g. `ended`).
    NoLongerLive { state: String },
    /// After a signaling reconnect, REST does not know the session (404).
    NotFound,
}

impl fmt::Display for ServerEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerEnd::StreamEnded(reason) => f.write_str(reason),
            ServerEnd::NoLongerLive { state } => f.write_str(state),
            ServerEnd::NotFound => f.write_str("not_found"),
        }
    }
}

/// Who or what ended the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndCause {
    /// The camera ended it; the server must be told.
    Camera(CameraReason),
    /// The server ended it.
    Server(ServerEnd),
    /// Accept was refused (the client hung up, the session vanished): there
    /// is nothing on the server to end.
    AcceptRefused,
}

impl fmt::Display for EndCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndCause::Camera(reason) => f.write_str(reason.code()),
            EndCause::Server(end) => write!(f, "server:{end}"),
            EndCause::AcceptRefused => f.write_str("accept_refused"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Accepting,
    Negotiating,
    AwaitingAnswer,
    Connecting,
    Live,
    /// Legacy relay: JPEG frames go out over the socket.
    Relaying,
    Ending(EndCause),
    Ended(EndCause),
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Accepting => "accepting",
            Phase::Negotiating => "negotiating",
            Phase::AwaitingAnswer => "awaiting_answer",
            Phase::Connecting => "connecting",
            Phase::Live => "live",
            Phase::Relaying => "relaying",
            Phase::Ending(_) => "ending",
            Phase::Ended(_) => "ended",
        }
    }

    fn is_active(&self) -> bool {
        !matches!(self, Phase::Ending(_) | Phase::Ended(_))
    }

    /// Accepted and not ending: the pipeline exists (or is being started).
    fn has_media(&self) -> bool {
        self.is_active() && *self != Phase::Accepting
    }

    /// A WebRTC session with its pipeline: webrtcbin's events apply.
    fn has_webrtc(&self) -> bool {
        self.has_media() && *self != Phase::Relaying
    }
}

/// A named deadline of the session. The machine arms and disarms them with
/// [`Action::ArmTimer`] / [`Action::DisarmTimer`]; the actor keeps the
/// deadlines and reports the earliest one that passes as
/// [`Input::TimerFired`]. Add a variant for a new rule (a statistics tick,
/// a dead media path); the actor needs no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// From pipeline start until the viewer's answer is applied.
    Answer,
    /// From the applied answer until ICE first connects.
    IceConnect,
    /// While ICE is disconnected or failed: how long a blip may last.
    IceGrace,
    /// The whole session, from pipeline start (`session.max_duration`).
    MaxDuration,
    /// While live: the next statistics read for the congestion controller.
    Stats,
    /// While live: no RTCP from the viewer this long means the media path
    /// died (signaling may be fine); re-armed whenever RTCP arrives.
    MediaSilence,
}

impl Timer {
    /// The name in log records.
    pub fn name(self) -> &'static str {
        match self {
            Timer::Answer => "answer",
            Timer::IceConnect => "ice_connect",
            Timer::IceGrace => "ice_grace",
            Timer::MaxDuration => "max_duration",
            Timer::Stats => "stats",
            Timer::MediaSilence => "media_silence",
        }
    }

    /// A timer that fires as routine, not as a verdict.
    pub fn is_periodic(self) -> bool {
        self == Timer::Stats
    }
}

/// The session's time limits (from `[session]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimings {
    /// No answer applied by then (from pipeline start): `answer_timeout`.
    pub answer_timeout: Duration,
    /// ICE not connected by then (from the applied answer): `ice_failed`.
    pub ice_timeout: Duration,
    /// ICE disconnected or failed for this long: `ice_failed`.
    pub ice_disconnect_grace: Duration,
    /// The longest a session may last: `max_duration`.
    pub max_duration: Option<Duration>,
    /// No RTCP from the viewer this long while live: `ice_failed`.
    pub media_timeout: Duration,
}

/// How the session carries video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebRtc,
    /// The legacy relay: no offer, JPEG frames as `stream:frame`.
    LegacyJpeg(RelayPolicy),
}

/// Everything a session's brain is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub timings: SessionTimings,
    /// The congestion controller's bounds.
    pub bitrate: BitrateLimits,
    /// What the camera captures: the top of the picture ladder.
    pub capture: hw::CaptureSpec,
    pub transport: Transport,
}

/// The ICE connection state, as far as the session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    New,
    Checking,
    /// Connected or completed.
    Connected,
    Disconnected,
    Failed,
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// REST accept succeeded.
    Accepted,
    /// Accept failed; `server_knows` says whether the server session may
    /// still exist (a transport error) and must be ended over REST.
    AcceptFailed {
        server_knows: bool,
    },
    /// The pipeline is PLAYING.
    MediaStarted,
    /// webrtcbin asks for negotiation.
    NegotiationNeeded,
    /// The offer is ready to send (fingerprint already corrected).
    OfferCreated {
        sdp: String,
    },
    /// webrtcbin found a local candidate.
    LocalCandidate {
        mline: u32,
        candidate: String,
    },
    /// Local candidate gathering is complete.
    GatheringComplete,
    /// A signal from the viewer.
    Signal(SignalBody),
    /// webrtcbin applied the viewer's answer.
    AnswerApplied,
    /// The viewer's answer was unusable or refused by webrtcbin.
    AnswerRejected,
    Ice(IceState),
    /// DTLS is up: SRTP can flow.
    DtlsConnected,
    /// An armed timer's deadline passed.
    TimerFired(Timer),
    /// Signaling stayed down past its grace.
    SignalingLost,
    MediaError,
    Shutdown,
    ServerEnded(ServerEnd),
    /// The actor finished [`Action::Teardown`].
    TeardownDone,
    /// A statistics report read after [`Action::RequestStats`]; `at` is
    /// the session's clock.
    Stats {
        at: Duration,
        stats: Box<LinkStats>,
    },
    /// Legacy relay: a JPEG of this many bytes is ready (the actor holds
    /// it); `limit` is the most the connected server takes.
    Frame {
        bytes: usize,
        limit: usize,
    },
    /// The socket took the frame of [`Action::EmitFrame`].
    FrameTaken,
    /// The socket could not take it right now; it was dropped.
    FrameBusy,
}

/// What the actor must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Build the pipeline; feed back `MediaStarted` or `MediaError`.
    StartMedia,
    /// Ask webrtcbin for the offer; it comes back as `OfferCreated`.
    CreateOffer,
    /// Send this signal to the viewer.
    SendSignal(SignalBody),
    /// Hand the viewer's answer to webrtcbin; `AnswerApplied` or
    /// `AnswerRejected` follows.
    ApplyAnswer(String),
    /// Hand a remote candidate to webrtcbin; `None` is end-of-candidates.
    AddRemoteCandidate {
        mline: u32,
        candidate: Option<String>,
    },
    /// Report `DtlsConnected` once the DTLS transport is up.
    WatchDtls,
    /// Ask the encoder for a keyframe with SPS/PPS.
    RequestKeyframe,
    /// Fire `TimerFired(timer)` after this long (replacing any deadline).
    ArmTimer(Timer, Duration),
    /// Forget the timer's deadline.
    DisarmTimer(Timer),
    /// A viewer candidate held until the answer could not be used; log why.
    DropHeldCandidate(Dropped),
    /// Read the link statistics; they come back as `Stats`.
    RequestStats,
    /// Apply the congestion controller's decision to the encoder.
    Control(Control),
    /// Log the session's periodic link figures.
    LogLink(LinkReport),
    /// Log the candidate pair carrying the media (new or changed).
    LogSelectedPair(SelectedPair),
    /// Tell the server the camera ends the session.
    EndOverRest(CameraReason),
    /// Offer the held frame to the socket as `stream:frame` with this
    /// `seq`, without waiting; `FrameTaken` or `FrameBusy` follows.
    EmitFrame { seq: u64 },
    /// Encode the next JPEG frames at this quality.
    SetJpegQuality(u8),
    /// The held frame is not sent; warn.
    SkipFrame {
        why: Skip,
        bytes: usize,
        quality: u8,
    },
    /// Log the relay's frame counts (at the end of a legacy session).
    LogFrames(FrameSummary),
    /// Stop the pipeline and free everything the session holds; feed back
    /// `TeardownDone`.
    Teardown,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("input {input:?} is not valid in phase {phase}")]
pub struct InvalidTransition {
    pub phase: &'static str,
    pub input: Input,
}

/// Why an input changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    /// Out of order for the phase: a late or duplicate event.
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    /// A viewer signal that breaks the offer/answer rules.
    #[error("viewer signal dropped: {0}")]
    Signal(Dropped),
}

#[derive(Debug, Clone)]
pub struct Machine {
    phase: Phase,
    timings: SessionTimings,
    negotiation: Negotiation,
    armed: BTreeSet<Timer>,
    /// ICE reported connected and has not been lost since; it may connect
    /// before webrtcbin confirms the answer (an answer carrying candidates).
    ice_connected: bool,
    controller: Controller,
    /// What the encoder must be set to when the session goes live.
    initial_controls: Vec<Control>,
    /// The viewer's RTCP count at the last re-arm of `MediaSilence`.
    rtcp_seen: u64,
    selected_pair: Option<SelectedPair>,
    /// The legacy relay's frame rules; `None` for WebRTC.
    relay: Option<FrameRelay>,
}

impl Machine {
    pub fn new(policy: SessionPolicy) -> Self {
        let (controller, initial_controls) =
            Controller::new(policy.bitrate, policy.capture, Duration::ZERO);
        Self {
            phase: Phase::Accepting,
            timings: policy.timings,
            negotiation: Negotiation::new(),
            armed: BTreeSet::new(),
            ice_connected: false,
            controller,
            initial_controls,
            rtcp_seen: 0,
            selected_pair: None,
            relay: match policy.transport {
                Transport::WebRtc => None,
                Transport::LegacyJpeg(relay) => Some(FrameRelay::new(relay)),
            },
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The timers armed now, in order.
    #[cfg(test)]
    pub fn armed(&self) -> impl Iterator<Item = Timer> + '_ {
        self.armed.iter().copied()
    }

    fn arm(&mut self, timer: Timer, after: Duration, actions: &mut Vec<Action>) {
        self.armed.insert(timer);
        actions.push(Action::ArmTimer(timer, after));
    }

    fn disarm(&mut self, timer: Timer, actions: &mut Vec<Action>) {
        if self.armed.remove(&timer) {
            actions.push(Action::DisarmTimer(timer));
        }
    }

    /// Ends the session: every timer disarmed, the server told when the
    /// camera is the one ending it, then teardown.
    fn end(&mut self, cause: EndCause) -> Vec<Action> {
        let mut actions: Vec<Action> = std::mem::take(&mut self.armed)
            .into_iter()
            .map(Action::DisarmTimer)
            .collect();
        if let EndCause::Camera(reason) = &cause {
            actions.push(Action::EndOverRest(*reason));
        }
        if let Some(relay) = &self.relay {
            actions.push(Action::LogFrames(relay.summary()));
        }
        actions.push(Action::Teardown);
        self.phase = Phase::Ending(cause);
        actions
    }

    /// Media flows: the controller takes over the encoder, and the
    /// viewer's RTCP is watched from now on.
    fn live(&mut self, actions: &mut Vec<Action>) {
        self.disarm(Timer::IceConnect, actions);
        self.phase = Phase::Live;
        actions.extend(self.initial_controls.drain(..).map(Action::Control));
        self.arm(Timer::Stats, STATS_INTERVAL, actions);
        self.arm(Timer::MediaSilence, self.timings.media_timeout, actions);
    }

    /// A statistics report while live: RTCP keeps the path alive, the
    /// controller decides, the periodic figures and a new pair are logged.
    fn on_stats(&mut self, at: Duration, stats: LinkStats) -> Vec<Action> {
        let mut actions = Vec::new();
        if stats.rtcp_received > self.rtcp_seen {
            self.rtcp_seen = stats.rtcp_received;
            self.arm(
                Timer::MediaSilence,
                self.timings.media_timeout,
                &mut actions,
            );
        }
        actions.extend(
            self.controller
                .on_stats(at, &stats)
                .into_iter()
                .map(Action::Control),
        );
        if let Some(report) = self.controller.report(at, &stats) {
            actions.push(Action::LogLink(report));
        }
        if let Some(pair) = stats.selected_pair
            && self.selected_pair.as_ref() != Some(&pair)
        {
            self.selected_pair = Some(pair.clone());
            actions.push(Action::LogSelectedPair(pair));
        }
        actions
    }

    /// Applies one input and returns what to do, in order.
    pub fn handle(&mut self, input: Input) -> Result<Vec<Action>, Rejected> {
        use Phase::*;
        let mut actions = Vec::new();
        match (&self.phase, input) {
            (Accepting, Input::Accepted) => {
                self.phase = if self.relay.is_some() {
                    Relaying
                } else {
                    Negotiating
                };
                actions.push(Action::StartMedia);
            }
            (Relaying, Input::MediaStarted) => {
                if let Some(max) = self.timings.max_duration {
                    self.arm(Timer::MaxDuration, max, &mut actions);
                }
            }
            (Relaying, Input::Frame { bytes, limit }) => {
                let relay = self.relay.as_mut().ok_or(InvalidTransition {
                    phase: "relaying",
                    input: Input::Frame { bytes, limit },
                })?;
                actions.extend(relay.on_frame(bytes, limit).into_iter().map(
                    |action| match action {
                        RelayAction::Emit { seq } => Action::EmitFrame { seq },
                        RelayAction::SetQuality(quality) => Action::SetJpegQuality(quality),
                        RelayAction::Skip {
                            why,
                            bytes,
                            quality,
                        } => Action::SkipFrame {
                            why,
                            bytes,
                            quality,
                        },
                    },
                ));
            }
            (Relaying, Input::FrameTaken) => {
                if let Some(relay) = &mut self.relay {
                    relay.taken();
                }
            }
            (Relaying, Input::FrameBusy) => {
                if let Some(relay) = &mut self.relay {
                    relay.busy();
                }
            }
            // The legacy control plane has no WebRTC: nothing to negotiate.
            (Relaying, Input::Signal(_)) => return Err(Rejected::Signal(Dropped::LegacyMode)),
            (Accepting, Input::AcceptFailed { server_knows: true }) => {
                actions = self.end(EndCause::Camera(CameraReason::CameraError));
            }
            (
                Accepting,
                Input::AcceptFailed {
                    server_knows: false,
                },
            ) => actions = self.end(EndCause::AcceptRefused),
            (Negotiating, Input::MediaStarted) => {
                self.arm(Timer::Answer, self.timings.answer_timeout, &mut actions);
                if let Some(max) = self.timings.max_duration {
                    self.arm(Timer::MaxDuration, max, &mut actions);
                }
            }
            (Negotiating, Input::NegotiationNeeded) => {
                actions.extend(self.negotiation.negotiation_needed());
            }
            (Negotiating, Input::OfferCreated { sdp }) => {
                actions = self.negotiation.offer_ready(sdp);
                self.phase = AwaitingAnswer;
            }
            (phase, Input::LocalCandidate { mline, candidate }) if phase.has_webrtc() => {
                actions.extend(self.negotiation.local_candidate(mline, candidate));
            }
            (phase, Input::GatheringComplete) if phase.has_webrtc() => {
                actions.extend(self.negotiation.gathering_complete());
            }
            (phase, Input::Signal(body)) if phase.has_webrtc() => {
                actions = self
                    .negotiation
                    .remote_signal(body)
                    .map_err(Rejected::Signal)?;
                for action in &actions {
                    if let Action::ApplyAnswer(answer) = action {
                        self.controller
                            .set_fec_negotiated(sdp::accepts_ulpfec(answer));
                    }
                }
            }
            (AwaitingAnswer, Input::AnswerApplied) => {
                self.disarm(Timer::Answer, &mut actions);
                if self.ice_connected {
                    self.live(&mut actions);
                } else {
                    self.arm(Timer::IceConnect, self.timings.ice_timeout, &mut actions);
                    self.phase = Connecting;
                }
                actions.push(Action::WatchDtls);
                let (adds, dropped) = self.negotiation.answer_applied();
                actions.extend(adds);
                actions.extend(dropped.into_iter().map(Action::DropHeldCandidate));
            }
            (AwaitingAnswer, Input::AnswerRejected) => self.negotiation.answer_rejected(),
            (phase, Input::Ice(state)) if phase.has_webrtc() => match state {
                IceState::Connected => {
                    self.ice_connected = true;
                    self.disarm(Timer::IceGrace, &mut actions);
                    if self.phase == Connecting {
                        self.live(&mut actions);
                    }
                }
                // Wi-Fi blips recover; only a lasting loss ends the session,
                // so the grace runs from the first loss, not the latest.
                IceState::Disconnected | IceState::Failed => {
                    self.ice_connected = false;
                    if !self.armed.contains(&Timer::IceGrace) {
                        let grace = self.timings.ice_disconnect_grace;
                        self.arm(Timer::IceGrace, grace, &mut actions);
                    }
                }
                IceState::New | IceState::Checking | IceState::Closed => {}
            },
            (phase, Input::DtlsConnected) if phase.has_webrtc() => {
                // The encoder's first keyframe went out before DTLS was up.
                actions.push(Action::RequestKeyframe);
            }
            (phase, Input::TimerFired(timer))
                if phase.is_active() && self.armed.contains(&timer) =>
            {
                self.armed.remove(&timer);
                actions = self.timer_fired(timer);
            }
            (phase, Input::SignalingLost) if phase.is_active() => {
                actions = self.end(EndCause::Camera(CameraReason::CameraError));
            }
            (phase, Input::MediaError) if phase.has_media() => {
                actions = self.end(EndCause::Camera(CameraReason::MediaError));
            }
            (phase, Input::Shutdown) if phase.is_active() => {
                actions = self.end(EndCause::Camera(CameraReason::CameraShutdown));
            }
            (phase, Input::ServerEnded(end)) if phase.is_active() => {
                actions = self.end(EndCause::Server(end));
            }
            // Ending already: a second cause changes nothing.
            (
                Ending(_),
                Input::ServerEnded(_) | Input::Shutdown | Input::MediaError | Input::SignalingLost,
            ) => {}
            (Ending(cause), Input::TeardownDone) => {
                self.phase = Ended(cause.clone());
            }
            (Live, Input::Stats { at, stats }) => actions = self.on_stats(at, *stats),
            (phase, input) => {
                return Err(InvalidTransition {
                    phase: phase.name(),
                    input,
                }
                .into());
            }
        }
        Ok(actions)
    }

    /// What an armed timer's deadline means in the current (active) phase.
    fn timer_fired(&mut self, timer: Timer) -> Vec<Action> {
        use Phase::*;
        match (timer, &self.phase) {
            (Timer::Answer, Negotiating | AwaitingAnswer) => {
                self.end(EndCause::Camera(CameraReason::AnswerTimeout))
            }
            (Timer::IceConnect, Connecting) => self.end(EndCause::Camera(CameraReason::IceFailed)),
            (Timer::IceGrace, Connecting | Live) => {
                self.end(EndCause::Camera(CameraReason::IceFailed))
            }
            (Timer::MaxDuration, _) => self.end(EndCause::Camera(CameraReason::MaxDuration)),
            (Timer::Stats, Live) => {
                let mut actions = vec![Action::RequestStats];
                self.arm(Timer::Stats, STATS_INTERVAL, &mut actions);
                actions
            }
            (Timer::MediaSilence, Live) => self.end(EndCause::Camera(CameraReason::IceFailed)),
            // A loss before the answer was applied: the ICE timeout after
            // the answer covers it.
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;

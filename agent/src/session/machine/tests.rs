//! The machine's rules, each as a table or a short story of inputs.

use super::*;
use crate::control_plane::events::Candidate;
use crate::session::congestion::BitrateLimits;

const OFFER: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\n";

const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
const ICE_TIMEOUT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(5);
const MAX: Duration = Duration::from_secs(3600);

const MEDIA_TIMEOUT: Duration = Duration::from_secs(10);

const TIMINGS: SessionTimings = SessionTimings {
    answer_timeout: ANSWER_TIMEOUT,
    ice_timeout: ICE_TIMEOUT,
    ice_disconnect_grace: GRACE,
    max_duration: Some(MAX),
    media_timeout: MEDIA_TIMEOUT,
};

const POLICY: SessionPolicy = SessionPolicy {
    timings: TIMINGS,
    bitrate: BitrateLimits {
        min_kbps: 150,
        start_kbps: 1000,
        max_kbps: 2000,
    },
    capture: hw::CaptureSpec {
        width: 640,
        height: 480,
        framerate: 30,
    },
    transport: Transport::WebRtc,
};

fn offer() -> Input {
    Input::OfferCreated { sdp: OFFER.into() }
}

fn answer() -> Input {
    Input::Signal(SignalBody::Answer { sdp: "v=0".into() })
}

fn remote(candidate: &str) -> Input {
    Input::Signal(SignalBody::Candidate(Some(Candidate {
        candidate: candidate.into(),
        sdp_mid: Some("video0".into()),
        sdp_m_line_index: None,
    })))
}

fn fired(timer: Timer) -> Input {
    Input::TimerFired(timer)
}

/// A machine fed `inputs`, each of which must be accepted.
fn after(inputs: impl IntoIterator<Item = Input>) -> Machine {
    let mut machine = Machine::new(POLICY);
    for input in inputs {
        if let Err(err) = machine.handle(input) {
            panic!("{err}");
        }
    }
    machine
}

fn negotiating() -> Machine {
    after([Input::Accepted, Input::MediaStarted])
}

pub(super) fn awaiting_answer() -> Machine {
    after([
        Input::Accepted,
        Input::MediaStarted,
        Input::NegotiationNeeded,
        offer(),
    ])
}

pub(super) fn connecting() -> Machine {
    let mut machine = awaiting_answer();
    machine.handle(answer()).unwrap();
    machine.handle(Input::AnswerApplied).unwrap();
    assert_eq!(machine.phase(), &Phase::Connecting);
    machine
}

pub(super) fn live() -> Machine {
    let mut machine = connecting();
    machine.handle(Input::Ice(IceState::Connected)).unwrap();
    assert_eq!(machine.phase(), &Phase::Live);
    machine
}

fn armed(machine: &Machine) -> Vec<Timer> {
    machine.armed().collect()
}

fn timer_actions(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|action| matches!(action, Action::ArmTimer(..) | Action::DisarmTimer(_)))
        .cloned()
        .collect()
}

pub(super) fn stats_with_rtcp(rtcp_received: u64) -> Input {
    Input::Stats {
        at: Duration::from_secs(1),
        stats: Box::new(LinkStats {
            rtcp_received,
            ..LinkStats::default()
        }),
    }
}

fn ended_by(reason: CameraReason) -> Vec<Action> {
    vec![Action::EndOverRest(reason), Action::Teardown]
}

/// What each input of a whole session does to the timers, and which are
/// armed after it.
#[test]
fn timer_table_over_a_whole_session() {
    use Action::{ArmTimer as Arm, DisarmTimer as Disarm};
    use Timer::*;
    let table: Vec<(Input, Vec<Action>, Vec<Timer>)> = vec![
        (Input::Accepted, vec![], vec![]),
        // The answer timeout and max_duration run from pipeline start.
        (
            Input::MediaStarted,
            vec![Arm(Answer, ANSWER_TIMEOUT), Arm(MaxDuration, MAX)],
            vec![Answer, MaxDuration],
        ),
        (Input::NegotiationNeeded, vec![], vec![Answer, MaxDuration]),
        (offer(), vec![], vec![Answer, MaxDuration]),
        // Received but not yet applied: the answer timeout still runs.
        (answer(), vec![], vec![Answer, MaxDuration]),
        (Input::AnswerRejected, vec![], vec![Answer, MaxDuration]),
        (answer(), vec![], vec![Answer, MaxDuration]),
        // Applied: the answer timeout gives way to the ICE-connect timeout.
        (
            Input::AnswerApplied,
            vec![Disarm(Answer), Arm(IceConnect, ICE_TIMEOUT)],
            vec![IceConnect, MaxDuration],
        ),
        (
            Input::Ice(IceState::Checking),
            vec![],
            vec![IceConnect, MaxDuration],
        ),
        // Live: the statistics tick and the dead-path watch start.
        (
            Input::Ice(IceState::Connected),
            vec![
                Disarm(IceConnect),
                Arm(Stats, STATS_INTERVAL),
                Arm(MediaSilence, MEDIA_TIMEOUT),
            ],
            vec![MaxDuration, Stats, MediaSilence],
        ),
        // The grace runs only while ICE is lost, from the first loss.
        (
            Input::Ice(IceState::Disconnected),
            vec![Arm(IceGrace, GRACE)],
            vec![IceGrace, MaxDuration, Stats, MediaSilence],
        ),
        (
            Input::Ice(IceState::Failed),
            vec![],
            vec![IceGrace, MaxDuration, Stats, MediaSilence],
        ),
        (
            Input::Ice(IceState::Connected),
            vec![Disarm(IceGrace)],
            vec![MaxDuration, Stats, MediaSilence],
        ),
        (
            Input::Ice(IceState::Connected),
            vec![],
            vec![MaxDuration, Stats, MediaSilence],
        ),
        // The tick re-arms itself and asks for statistics.
        (
            fired(Stats),
            vec![Arm(Stats, STATS_INTERVAL)],
            vec![MaxDuration, Stats, MediaSilence],
        ),
        // RTCP from the viewer pushes the dead-path deadline out.
        (
            stats_with_rtcp(3),
            vec![Arm(MediaSilence, MEDIA_TIMEOUT)],
            vec![MaxDuration, Stats, MediaSilence],
        ),
        // No new RTCP since: the deadline stays where it was.
        (
            stats_with_rtcp(3),
            vec![],
            vec![MaxDuration, Stats, MediaSilence],
        ),
        (
            Input::Ice(IceState::Failed),
            vec![Arm(IceGrace, GRACE)],
            vec![IceGrace, MaxDuration, Stats, MediaSilence],
        ),
        // Ending disarms everything.
        (
            Input::Shutdown,
            vec![
                Disarm(IceGrace),
                Disarm(MaxDuration),
                Disarm(Stats),
                Disarm(MediaSilence),
            ],
            vec![],
        ),
        (Input::TeardownDone, vec![], vec![]),
    ];
    let mut machine = Machine::new(POLICY);
    for (row, (input, timer_changes, armed_after)) in table.into_iter().enumerate() {
        let description = format!("row {row}: {input:?}");
        let actions = machine
            .handle(input)
            .unwrap_or_else(|err| panic!("{description}: {err}"));
        assert_eq!(timer_actions(&actions), timer_changes, "{description}");
        assert_eq!(armed(&machine), armed_after, "{description}");
    }
}

/// One row: the phase (by name and set-up), the timer that fires, and the
/// actions it makes (`None`: not armed in that phase, so rejected).
type FiredRow = (&'static str, fn() -> Machine, Timer, Option<Vec<Action>>);

/// What a timer means when it fires, per phase.
#[test]
fn timer_outcomes_by_phase() {
    use CameraReason::*;
    let with_rest = |reason| Some(ended_by(reason));
    let table: Vec<FiredRow> = vec![
        (
            "negotiating",
            negotiating,
            Timer::Answer,
            with_rest(AnswerTimeout),
        ),
        (
            "awaiting answer",
            awaiting_answer,
            Timer::Answer,
            with_rest(AnswerTimeout),
        ),
        ("connecting", connecting, Timer::Answer, None),
        ("live", live, Timer::Answer, None),
        ("awaiting answer", awaiting_answer, Timer::IceConnect, None),
        (
            "connecting",
            connecting,
            Timer::IceConnect,
            with_rest(IceFailed),
        ),
        ("live", live, Timer::IceConnect, None),
        (
            "negotiating",
            negotiating,
            Timer::MaxDuration,
            with_rest(MaxDuration),
        ),
        ("live", live, Timer::MaxDuration, with_rest(MaxDuration)),
        // Not armed until ICE is lost.
        ("live", live, Timer::IceGrace, None),
        // No RTCP for media_timeout while live: the media path is dead.
        ("live", live, Timer::MediaSilence, with_rest(IceFailed)),
        ("connecting", connecting, Timer::MediaSilence, None),
        ("connecting", connecting, Timer::Stats, None),
    ];
    for (phase, setup, timer, outcome) in table {
        let mut machine = setup();
        let result = machine.handle(fired(timer));
        let description = format!("{timer:?} in {phase}: {result:?}");
        match outcome {
            // Ends the session: the remaining timers are disarmed first.
            Some(expected) => {
                let actions = result.expect(&description);
                let (disarms, rest): (Vec<Action>, Vec<Action>) = actions
                    .into_iter()
                    .partition(|action| matches!(action, Action::DisarmTimer(_)));
                assert_eq!(rest, expected, "{description}");
                assert!(!disarms.contains(&Action::DisarmTimer(timer)));
                assert_eq!(armed(&machine), [], "{description}");
                assert!(matches!(machine.phase(), Phase::Ending(_)));
            }
            // Not armed in that phase: rejected, nothing changes.
            None => {
                assert!(
                    matches!(result, Err(Rejected::Transition(_))),
                    "{description}"
                );
                assert_eq!(machine.phase().name(), phase.replace(' ', "_"));
            }
        }
    }
}

#[test]
fn ice_grace_ends_a_connected_session_only() {
    for setup in [connecting, live] {
        let mut machine = setup();
        machine.handle(Input::Ice(IceState::Disconnected)).unwrap();
        let actions = machine.handle(fired(Timer::IceGrace)).unwrap();
        assert_eq!(
            actions.last(),
            Some(&Action::Teardown),
            "{:?}",
            machine.phase()
        );
        assert!(actions.contains(&Action::EndOverRest(CameraReason::IceFailed)));
    }
    // A loss before the answer is applied is covered by the ICE-connect
    // timeout that follows the answer.
    let mut machine = awaiting_answer();
    machine.handle(Input::Ice(IceState::Failed)).unwrap();
    assert_eq!(machine.handle(fired(Timer::IceGrace)).unwrap(), []);
    assert_eq!(machine.phase(), &Phase::AwaitingAnswer);
    assert!(!armed(&machine).contains(&Timer::IceGrace));
}

#[test]
fn without_max_duration_no_timer_is_armed_for_it() {
    let mut machine = Machine::new(SessionPolicy {
        timings: SessionTimings {
            max_duration: None,
            ..TIMINGS
        },
        ..POLICY
    });
    machine.handle(Input::Accepted).unwrap();
    assert_eq!(
        machine.handle(Input::MediaStarted).unwrap(),
        [Action::ArmTimer(Timer::Answer, ANSWER_TIMEOUT)]
    );
}

#[test]
fn nothing_fires_after_ending() {
    for end in [
        Input::Shutdown,
        Input::MediaError,
        Input::SignalingLost,
        Input::ServerEnded(ServerEnd::StreamEnded("hangup".into())),
    ] {
        let mut machine = live();
        machine.handle(Input::Ice(IceState::Disconnected)).unwrap();
        machine.handle(end.clone()).unwrap();
        assert_eq!(armed(&machine), [], "{end:?}");
        for timer in [
            Timer::Answer,
            Timer::IceConnect,
            Timer::IceGrace,
            Timer::MaxDuration,
        ] {
            assert!(machine.handle(fired(timer)).is_err(), "{end:?} {timer:?}");
            // Nor does ICE re-arm anything while ending.
            assert!(machine.handle(Input::Ice(IceState::Failed)).is_err());
            assert_eq!(armed(&machine), []);
        }
        machine.handle(Input::TeardownDone).unwrap();
        assert!(machine.handle(fired(Timer::MaxDuration)).is_err());
    }
}

#[test]
fn happy_path_actions_in_order() {
    let mut machine = Machine::new(POLICY);
    assert_eq!(
        machine.handle(Input::Accepted).unwrap(),
        [Action::StartMedia]
    );
    machine.handle(Input::MediaStarted).unwrap();
    // A candidate before the offer is held; one offer per session.
    let early = Input::LocalCandidate {
        mline: 0,
        candidate: "candidate:1".into(),
    };
    assert_eq!(machine.handle(early).unwrap(), []);
    assert_eq!(
        machine.handle(Input::NegotiationNeeded).unwrap(),
        [Action::CreateOffer]
    );
    assert_eq!(machine.handle(Input::NegotiationNeeded).unwrap(), []);
    assert_eq!(machine.handle(Input::GatheringComplete).unwrap(), []);
    let sent = machine.handle(offer()).unwrap();
    assert_eq!(
        sent,
        [
            Action::SendSignal(SignalBody::Offer { sdp: OFFER.into() }),
            Action::SendSignal(SignalBody::Candidate(Some(Candidate {
                candidate: "candidate:1".into(),
                sdp_mid: Some("video0".into()),
                sdp_m_line_index: Some(0),
            }))),
            Action::SendSignal(SignalBody::Candidate(None)),
        ]
    );
    assert_eq!(machine.phase(), &Phase::AwaitingAnswer);
    // The viewer's candidates wait for the applied answer.
    assert_eq!(machine.handle(remote("candidate:a")).unwrap(), []);
    assert_eq!(
        machine.handle(answer()).unwrap(),
        [Action::ApplyAnswer("v=0".into())]
    );
    assert_eq!(machine.handle(remote("candidate:b")).unwrap(), []);
    let add = |candidate: &str| Action::AddRemoteCandidate {
        mline: 0,
        candidate: Some(candidate.into()),
    };
    assert_eq!(
        machine.handle(Input::AnswerApplied).unwrap(),
        [
            Action::DisarmTimer(Timer::Answer),
            Action::ArmTimer(Timer::IceConnect, ICE_TIMEOUT),
            Action::WatchDtls,
            add("candidate:a"),
            add("candidate:b"),
        ]
    );
    assert_eq!(
        machine.handle(remote("candidate:c")).unwrap(),
        [add("candidate:c")]
    );
    machine.handle(Input::Ice(IceState::Connected)).unwrap();
    assert_eq!(machine.phase(), &Phase::Live);
    assert_eq!(
        machine.handle(Input::DtlsConnected).unwrap(),
        [Action::RequestKeyframe]
    );
    let hangup = ServerEnd::StreamEnded("hangup".into());
    assert_eq!(
        machine.handle(Input::ServerEnded(hangup.clone())).unwrap(),
        [
            Action::DisarmTimer(Timer::MaxDuration),
            Action::DisarmTimer(Timer::Stats),
            Action::DisarmTimer(Timer::MediaSilence),
            Action::Teardown
        ]
    );
    assert_eq!(machine.handle(Input::TeardownDone).unwrap(), []);
    assert_eq!(
        machine.phase(),
        &Phase::Ended(EndCause::Server(hangup.clone()))
    );
    assert_eq!(
        EndCause::Server(hangup).to_string(),
        "server:hangup",
        "the cause in the teardown log"
    );
}

#[test]
fn held_candidates_for_unknown_mlines_are_reported() {
    let mut machine = awaiting_answer();
    machine.handle(answer()).unwrap();
    let unknown = Input::Signal(SignalBody::Candidate(Some(Candidate {
        candidate: "candidate:x".into(),
        sdp_mid: Some("audio9".into()),
        sdp_m_line_index: None,
    })));
    machine.handle(unknown).unwrap();
    let actions = machine.handle(Input::AnswerApplied).unwrap();
    assert_eq!(
        actions.last(),
        Some(&Action::DropHeldCandidate(Dropped::UnknownMline))
    );
}

#[test]
fn viewer_signals_out_of_turn_are_rejected_with_why() {
    let mut machine = negotiating();
    assert_eq!(
        machine.handle(answer()),
        Err(Rejected::Signal(Dropped::AnswerBeforeOffer))
    );
    let mut machine = awaiting_answer();
    machine.handle(answer()).unwrap();
    assert_eq!(
        machine.handle(answer()),
        Err(Rejected::Signal(Dropped::SecondAnswer))
    );
    assert_eq!(
        machine.handle(Input::Signal(SignalBody::Offer { sdp: "v=0".into() })),
        Err(Rejected::Signal(Dropped::OfferFromViewer))
    );
}

#[test]
fn ice_connected_before_the_answer_is_confirmed_goes_live_at_once() {
    let mut machine = awaiting_answer();
    machine.handle(answer()).unwrap();
    machine.handle(Input::Ice(IceState::Connected)).unwrap();
    assert_eq!(machine.phase(), &Phase::AwaitingAnswer);
    let actions = machine.handle(Input::AnswerApplied).unwrap();
    assert_eq!(machine.phase(), &Phase::Live);
    assert_eq!(
        timer_actions(&actions),
        [
            Action::DisarmTimer(Timer::Answer),
            Action::ArmTimer(Timer::Stats, STATS_INTERVAL),
            Action::ArmTimer(Timer::MediaSilence, MEDIA_TIMEOUT),
        ]
    );
    assert_eq!(
        armed(&machine),
        [Timer::MaxDuration, Timer::Stats, Timer::MediaSilence]
    );
}

#[test]
fn camera_side_ends_go_over_rest_first() {
    let cases = [
        (Input::Shutdown, CameraReason::CameraShutdown),
        (Input::MediaError, CameraReason::MediaError),
        (Input::SignalingLost, CameraReason::CameraError),
    ];
    for (input, reason) in cases {
        let mut machine = live();
        assert_eq!(
            machine.handle(input.clone()).unwrap(),
            [
                Action::DisarmTimer(Timer::MaxDuration),
                Action::DisarmTimer(Timer::Stats),
                Action::DisarmTimer(Timer::MediaSilence),
                Action::EndOverRest(reason),
                Action::Teardown
            ]
        );
        // A second time changes nothing.
        assert_eq!(machine.handle(input).unwrap(), []);
    }
}

#[test]
fn a_pipeline_that_fails_to_start_ends_with_media_error() {
    let mut machine = after([Input::Accepted]);
    assert_eq!(
        machine.handle(Input::MediaError).unwrap(),
        ended_by(CameraReason::MediaError)
    );
}

#[test]
fn refused_accept_tears_down_without_rest() {
    let mut machine = Machine::new(POLICY);
    assert_eq!(
        machine
            .handle(Input::AcceptFailed {
                server_knows: false
            })
            .unwrap(),
        [Action::Teardown]
    );
    let mut machine = Machine::new(POLICY);
    assert_eq!(
        machine
            .handle(Input::AcceptFailed { server_knows: true })
            .unwrap(),
        ended_by(CameraReason::CameraError)
    );
}

#[test]
fn out_of_order_inputs_are_rejected_and_change_nothing() {
    let mut machine = Machine::new(POLICY);
    for input in [
        Input::MediaStarted,
        offer(),
        Input::AnswerApplied,
        Input::Ice(IceState::Connected),
        Input::DtlsConnected,
        answer(),
        Input::TeardownDone,
        Input::MediaError,
        fired(Timer::Answer),
    ] {
        assert!(machine.handle(input).is_err());
        assert_eq!(machine.phase(), &Phase::Accepting);
        assert_eq!(armed(&machine), []);
    }
    let mut machine = live();
    for input in [Input::Accepted, offer(), Input::AnswerApplied] {
        assert!(machine.handle(input).is_err());
        assert_eq!(machine.phase(), &Phase::Live);
    }
}

#[test]
fn a_second_end_cause_is_ignored_and_ended_is_final() {
    let mut machine = live();
    machine.handle(Input::Shutdown).unwrap();
    let server_end = || Input::ServerEnded(ServerEnd::NotFound);
    assert_eq!(machine.handle(server_end()).unwrap(), []);
    assert_eq!(machine.handle(Input::MediaError).unwrap(), []);
    machine.handle(Input::TeardownDone).unwrap();
    assert_eq!(
        machine.phase(),
        &Phase::Ended(EndCause::Camera(CameraReason::CameraShutdown))
    );
    for input in [Input::Shutdown, server_end(), Input::TeardownDone] {
        assert!(machine.handle(input).is_err());
    }
}

#[test]
fn server_ends_keep_their_log_names() {
    let causes = [
        ServerEnd::StreamEnded("hangup".into()),
        ServerEnd::NoLongerLive {
            state: "ended".into(),
        },
        ServerEnd::NotFound,
    ]
    .map(|end| EndCause::Server(end).to_string());
    assert_eq!(
        causes,
        ["server:hangup", "server:ended", "server:not_found"]
    );
}

#[test]
fn reason_codes_match_the_contract() {
    let codes: Vec<&str> = [
        CameraReason::CameraShutdown,
        CameraReason::CameraBusy,
        CameraReason::AnswerTimeout,
        CameraReason::IceFailed,
        CameraReason::MediaError,
        CameraReason::MaxDuration,
        CameraReason::CameraError,
    ]
    .map(CameraReason::code)
    .to_vec();
    assert_eq!(
        codes,
        [
            "camera_shutdown",
            "camera_busy",
            "answer_timeout",
            "ice_failed",
            "media_error",
            "max_duration",
            "camera_error"
        ]
    );
}

mod legacy;
mod network;

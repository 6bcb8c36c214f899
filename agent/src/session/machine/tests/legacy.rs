//! The legacy relay's session: the same lifecycle without WebRTC.

use super::*;
use crate::session::relay::{MAX_FRAME_BYTES, RelayPolicy};

const RELAY: RelayPolicy = RelayPolicy {
    quality: 85,
    adjustable: true,
};

fn legacy() -> Machine {
    Machine::new(SessionPolicy {
        transport: Transport::LegacyJpeg(RELAY),
        ..POLICY
    })
}

fn relaying() -> Machine {
    let mut machine = legacy();
    machine.handle(Input::Accepted).unwrap();
    machine.handle(Input::MediaStarted).unwrap();
    machine
}

#[test]
fn accept_starts_the_jpeg_pipeline_and_only_max_duration_is_armed() {
    let mut machine = legacy();
    assert_eq!(
        machine.handle(Input::Accepted).unwrap(),
        [Action::StartMedia]
    );
    assert_eq!(machine.phase(), &Phase::Relaying);
    // No answer, ICE or media-silence timer: there is no WebRTC to wait on.
    assert_eq!(
        machine.handle(Input::MediaStarted).unwrap(),
        [Action::ArmTimer(Timer::MaxDuration, MAX)]
    );
    assert_eq!(armed(&machine), [Timer::MaxDuration]);
}

#[test]
fn frames_are_numbered_from_one_and_busy_ones_use_no_number() {
    let mut machine = relaying();
    let mut seqs = Vec::new();
    for busy in [false, true, false, false] {
        let actions = machine
            .handle(Input::Frame {
                bytes: 30_000,
                limit: MAX_FRAME_BYTES,
            })
            .unwrap();
        let [Action::EmitFrame { seq }] = actions[..] else {
            panic!("{actions:?}");
        };
        seqs.push(seq);
        let outcome = if busy {
            Input::FrameBusy
        } else {
            Input::FrameTaken
        };
        assert_eq!(machine.handle(outcome).unwrap(), []);
    }
    assert_eq!(seqs, [1, 2, 2, 3]);
}

#[test]
fn an_oversized_frame_is_skipped_and_lowers_the_quality() {
    let mut machine = relaying();
    let bytes = MAX_FRAME_BYTES + 10;
    assert_eq!(
        machine
            .handle(Input::Frame {
                bytes,
                limit: MAX_FRAME_BYTES
            })
            .unwrap(),
        [
            Action::SkipFrame {
                why: Skip::Oversize,
                bytes,
                quality: 85
            },
            Action::SetJpegQuality(70)
        ]
    );
}

#[test]
fn the_end_logs_the_frame_counts_before_teardown() {
    let mut machine = relaying();
    machine
        .handle(Input::Frame {
            bytes: 10,
            limit: MAX_FRAME_BYTES,
        })
        .unwrap();
    machine.handle(Input::FrameTaken).unwrap();
    machine
        .handle(Input::Frame {
            bytes: 10,
            limit: MAX_FRAME_BYTES,
        })
        .unwrap();
    machine.handle(Input::FrameBusy).unwrap();
    let actions = machine.handle(Input::Shutdown).unwrap();
    assert_eq!(
        actions,
        [
            Action::DisarmTimer(Timer::MaxDuration),
            Action::EndOverRest(CameraReason::CameraShutdown),
            Action::LogFrames(FrameSummary {
                sent: 1,
                dropped_busy: 1,
                skipped_oversize: 0,
                quality: 85
            }),
            Action::Teardown,
        ]
    );
    assert_eq!(machine.handle(Input::TeardownDone).unwrap(), []);
    assert!(matches!(machine.phase(), Phase::Ended(_)));
}

#[test]
fn every_end_of_a_webrtc_session_ends_a_legacy_one_the_same_way() {
    let ends = [
        (fired(Timer::MaxDuration), Some(CameraReason::MaxDuration)),
        (Input::MediaError, Some(CameraReason::MediaError)),
        (Input::SignalingLost, Some(CameraReason::CameraError)),
        (Input::Shutdown, Some(CameraReason::CameraShutdown)),
        (
            Input::ServerEnded(ServerEnd::StreamEnded("hangup".into())),
            None,
        ),
    ];
    for (input, told) in ends {
        let mut machine = relaying();
        let actions = machine.handle(input.clone()).unwrap();
        let sent = actions.iter().find_map(|action| match action {
            Action::EndOverRest(reason) => Some(*reason),
            _ => None,
        });
        assert_eq!(sent, told, "{input:?}");
        assert_eq!(actions.last(), Some(&Action::Teardown), "{input:?}");
    }
}

#[test]
fn webrtc_inputs_change_nothing_in_a_legacy_session() {
    let mut machine = relaying();
    assert_eq!(
        machine.handle(answer()),
        Err(Rejected::Signal(Dropped::LegacyMode))
    );
    for input in [
        Input::NegotiationNeeded,
        offer(),
        Input::AnswerApplied,
        fired(Timer::Answer),
    ] {
        assert!(machine.handle(input.clone()).is_err(), "{input:?}");
    }
    assert_eq!(machine.phase(), &Phase::Relaying);
    // ...and a WebRTC session takes no frames.
    let mut webrtc = after([Input::Accepted, Input::MediaStarted]);
    assert!(
        webrtc
            .handle(Input::Frame {
                bytes: 10,
                limit: MAX_FRAME_BYTES
            })
            .is_err()
    );
}

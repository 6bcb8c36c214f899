//! The network rules of a live session: the controller takes over the
//! encoder, statistics drive it, and the candidate pair is logged.

use super::*;

#[test]
fn going_live_hands_the_encoder_to_the_controller() {
    let actions = connecting()
        .handle(Input::Ice(IceState::Connected))
        .unwrap();
    // Start bitrate 1000 kbit/s: 90 % to the encoder, the rest headroom.
    assert!(
        actions.contains(&Action::Control(Control::SetBitrate { kbps: 900 })),
        "{actions:?}"
    );
}

#[test]
fn statistics_drive_the_controller_and_log_a_new_pair_once() {
    use crate::media::stats::{CandidateInfo, TwccFigures};
    let mut machine = live();
    let pair = SelectedPair {
        local: CandidateInfo {
            kind: "relay".into(),
            protocol: "udp".into(),
            relay_protocol: Some("tcp".into()),
        },
        remote: CandidateInfo {
            kind: "prflx".into(),
            protocol: "udp".into(),
            relay_protocol: None,
        },
    };
    // A queue on the path: the viewer receives half of what was sent.
    let congested = |at: u64| Input::Stats {
        at: Duration::from_millis(at),
        stats: Box::new(LinkStats {
            twcc: Some(TwccFigures {
                sent_bps: 1_000_000,
                recv_bps: 500_000,
                loss_pct: 0.0,
                delay_gradient_us: 0.0,
            }),
            rtt_ms: Some(20.0),
            rtcp_received: at,
            selected_pair: Some(pair.clone()),
            ..LinkStats::default()
        }),
    };
    let first = machine.handle(congested(200)).unwrap();
    assert!(
        first.contains(&Action::LogSelectedPair(pair.clone())),
        "{first:?}"
    );
    // 85 % of what arrived, 90 % of that to the encoder.
    assert!(
        first.contains(&Action::Control(Control::SetBitrate { kbps: 383 })),
        "{first:?}"
    );
    let second = machine.handle(congested(400)).unwrap();
    assert!(
        !second
            .iter()
            .any(|action| matches!(action, Action::LogSelectedPair(_))),
        "{second:?}"
    );
    // The same RTCP count again: stale figures (no feedback arrived, as
    // in a blackout) neither move the controller nor the dead-path watch.
    let stale = machine.handle(congested(400)).unwrap();
    assert!(
        !stale
            .iter()
            .any(|action| matches!(action, Action::Control(_) | Action::ArmTimer(..))),
        "{stale:?}"
    );
}

#[test]
fn statistics_outside_a_live_session_are_rejected() {
    assert!(connecting().handle(stats_with_rtcp(1)).is_err());
}

#[test]
fn fec_follows_random_loss_only_when_the_answer_accepted_it() {
    use crate::media::stats::TwccFigures;
    let with_fec = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 98\r\n\
        a=rtpmap:97 red/90000\r\na=rtpmap:98 ulpfec/90000\r\n";
    for (answer, wanted) in [(with_fec, true), ("v=0", false)] {
        let mut machine = awaiting_answer();
        let signal = Input::Signal(SignalBody::Answer { sdp: answer.into() });
        machine.handle(signal).unwrap();
        machine.handle(Input::AnswerApplied).unwrap();
        machine.handle(Input::Ice(IceState::Connected)).unwrap();
        // 5 % random loss, no queue, for 5 s.
        let mut fec = Vec::new();
        for tick in 1..=25u64 {
            let lossy = Input::Stats {
                at: Duration::from_millis(200 * tick),
                stats: Box::new(LinkStats {
                    twcc: Some(TwccFigures {
                        sent_bps: 1_000_000,
                        recv_bps: 950_000,
                        loss_pct: 5.0,
                        delay_gradient_us: 0.0,
                    }),
                    rtt_ms: Some(20.0),
                    rtcp_received: tick,
                    ..LinkStats::default()
                }),
            };
            fec.extend(
                machine
                    .handle(lossy)
                    .unwrap()
                    .into_iter()
                    .filter(|action| matches!(action, Action::Control(Control::FecPercentage(_)))),
            );
        }
        assert_eq!(!fec.is_empty(), wanted, "{answer:?}: {fec:?}");
    }
}

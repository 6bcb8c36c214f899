//! End to end: the real `camera-agent` binary, the stand-in control plane
//! and a decoding WebRTC viewer, all inside the test network namespace.

use std::time::Duration;

use testbed::harness::{self, Bed};
use testbed::standin::{SessionState, StandInConfig};
use testbed::viewer::Viewer;

const CAMERA: (&str, &str) = ("cam-e2e", "camera-token-7f3a9c");
const CLIENT: (&str, &str) = ("viewer-1", "client-token-b81d2e");

async fn bed(name: &str, answer_timeout: &str) -> Bed {
    harness::require_test_netns();
    Bed::start(
        name,
        StandInConfig::pair(CAMERA, CLIENT),
        CAMERA,
        |config| {
            config
                .size(640, 480)
                .set("session.answer_timeout", answer_timeout)
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sessions_stream_decodable_video_and_tear_down_completely() {
    let mut bed = bed("three", "15s").await;
    // Idle baseline once the agent has settled after connecting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = harness::proc_counts(bed.agent.pid()).unwrap();
    // Nothing is held at idle: no camera, encoder or GPU device is open.
    let held: Vec<String> = harness::fd_targets(bed.agent.pid())
        .into_iter()
        .filter(|target| {
            target.contains("/dev/video")
                || target.contains("/dev/dri")
                || target.contains("/dev/media")
        })
        .collect();
    assert!(held.is_empty(), "devices open at idle: {held:?}");
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    for round in 1..=3 {
        let report = viewer
            .watch(CAMERA.0, 60, Duration::from_secs(30))
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "round {round}: {err:#}\nagent log:\n{}",
                    bed.agent.output().join("\n")
                )
            });
        assert!(
            report.stats.frames >= 60,
            "round {round}: {:?}",
            report.stats
        );
        assert_eq!((report.stats.width, report.stats.height), (640, 480));
        // Browser safety: the SPS actually sent matches the offer's
        // profile-level-id, is constrained baseline, and every IDR carries
        // SPS/PPS.
        let offered = report
            .stats
            .offered_profile_level_id
            .clone()
            .expect("offer without profile-level-id");
        let sent = report
            .stats
            .sps_profile_level_id
            .clone()
            .expect("no SPS received");
        assert_eq!(offered, sent, "offer says {offered}, stream is {sent}");
        assert!(
            sent.starts_with("42"),
            "profile_idc is not baseline: {sent}"
        );
        let constraints = u8::from_str_radix(&sent[2..4], 16).unwrap();
        assert!(
            constraints & 0x40 != 0,
            "constraint_set1 missing (not constrained baseline): {sent}"
        );
        assert_eq!(report.stats.idr_without_sps, 0);
        let id = report.session_id.clone();
        for step in [
            "requested",
            "accepted",
            "offer sent",
            "answer applied",
            "first media",
        ] {
            bed.agent
                .wait_message(step, Some(&id), Duration::from_secs(5))
                .await
                .unwrap();
        }
        viewer.end(&id).await.unwrap();
        let done = bed
            .agent
            .wait_message("teardown done", Some(&id), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(done["live_sessions"], 0, "{done}");
        let session = bed.standin.session(&id).unwrap();
        assert_eq!(session.state, SessionState::Ended);
        assert_eq!(session.ended_by.as_deref(), Some(CLIENT.0));
        let settle = harness::wait_counts(bed.agent.pid(), idle, Duration::from_secs(10))
            .await
            .unwrap_or_else(|err| panic!("round {round}: {err:#}"));
        eprintln!(
            "round {round}: {:?}, back to idle {:?} after {settle:?}",
            report.stats, idle
        );
    }
    viewer.close().await;
    bed.agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        bed.agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    let output = bed.agent.output().join("\n");
    assert!(!output.contains(CAMERA.1), "token leaked into the log");
    bed.standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_ends_the_session_with_camera_shutdown() {
    let mut bed = bed("sigterm", "15s").await;
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let report = viewer
        .watch(CAMERA.0, 10, Duration::from_secs(30))
        .await
        .unwrap();
    bed.agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        bed.agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    let session = bed.standin.session(&report.session_id).unwrap();
    assert_eq!(session.state, SessionState::Ended);
    assert_eq!(session.end_reason.as_deref(), Some("camera_shutdown"));
    assert_eq!(session.ended_by.as_deref(), Some(CAMERA.0));
    viewer.close().await;
    bed.standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_answers_is_ended_with_answer_timeout() {
    let bed = bed("noanswer", "2s").await;
    // A client that requests and then stays silent.
    let viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let id = viewer.request(CAMERA.0).await.unwrap();
    assert!(
        bed.standin
            .wait_for(Duration::from_secs(10), |s| s
                .session(&id)
                .is_some_and(|session| session.state == SessionState::Ended))
            .await
    );
    let session = bed.standin.session(&id).unwrap();
    assert_eq!(session.end_reason.as_deref(), Some("answer_timeout"));
    assert_eq!(session.ended_by.as_deref(), Some(CAMERA.0));
    bed.agent
        .wait_message("teardown done", Some(&id), Duration::from_secs(5))
        .await
        .unwrap();
    viewer.close().await;
    bed.standin.stop().await;
}

//! End to end in legacy mode (`SIMPLE_STREAMING=0`, contract section 5):
//! the real agent, the stand-in in its legacy mode and a viewer that
//! decodes every `stream:frame` JPEG, inside the test network namespace.
//! The session lifecycle is the WebRTC one; only the media differs.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use testbed::harness::{self, AgentConfig, Bed};
use testbed::legacy_viewer::{LegacyViewer, SessionLog, check_frame_rules};
use testbed::standin::{SessionState, StandInConfig};

const CAMERA: (&str, &str) = ("cam-legacy-e2e", "camera-token-legacy-e2e");
const CLIENT: (&str, &str) = ("viewer-legacy-e2e", "client-token-legacy-e2e");
const CLIENT2: (&str, &str) = ("viewer-legacy-2", "client-token-legacy-2");
const WAIT: Duration = Duration::from_secs(15);
/// How far `capturedAt` may be ahead of receipt: one machine, one clock.
const CLOCK_TOLERANCE: Duration = Duration::from_millis(200);

fn standin() -> StandInConfig {
    StandInConfig::pair(CAMERA, CLIENT)
        .with_client(CLIENT2.0, CLIENT2.1)
        .legacy()
}

/// The agent in legacy mode through the TOML flag, changed by `config`,
/// and a connected viewer.
async fn legacy_bed(
    name: &str,
    standin: StandInConfig,
    config: impl FnOnce(AgentConfig) -> AgentConfig,
) -> (Bed, LegacyViewer) {
    harness::require_test_netns();
    let bed = Bed::start(name, standin, CAMERA, |agent| {
        config(agent.set("streaming.simple", false))
    })
    .await
    .unwrap();
    let viewer = LegacyViewer::connect(&bed.standin.url(), CLIENT.0, CLIENT.1)
        .await
        .unwrap();
    (bed, viewer)
}

/// Frames per second over the frames received, from their capture times.
fn rate(log: &SessionLog) -> f64 {
    let (Some(first), Some(last)) = (log.frames.first(), log.frames.last()) else {
        return 0.0;
    };
    let span = last
        .captured_at
        .duration_since(first.captured_at)
        .unwrap_or_default();
    (log.frames.len() - 1) as f64 / span.as_secs_f64().max(f64::EPSILON)
}

fn sizes(log: &SessionLog) -> (usize, usize, usize) {
    let lengths: Vec<usize> = log.frames.iter().map(|frame| frame.jpeg_len).collect();
    let min = lengths.iter().copied().min().unwrap_or(0);
    let max = lengths.iter().copied().max().unwrap_or(0);
    let mean = lengths.iter().sum::<usize>() / lengths.len().max(1);
    (min, mean, max)
}

/// The agent's `frames` summary record of a session.
async fn frames_record(bed: &Bed, session_id: &str) -> Value {
    bed.agent
        .wait_message("frames", Some(session_id), WAIT)
        .await
        .unwrap()
}

/// A session watched until `count` frames decoded, checked against every
/// rule of the issue, then hung up; returns what the viewer saw.
async fn watch(bed: &Bed, viewer: &mut LegacyViewer, count: usize, size: (u32, u32)) -> SessionLog {
    let id = viewer.request(CAMERA.0).await.unwrap();
    viewer.wait_started(&id, WAIT).await.unwrap();
    let log = viewer
        .frames_until(&id, count, Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\nagent log:\n{}", bed.agent.output().join("\n")));
    log.check(CLOCK_TOLERANCE).unwrap();
    assert_eq!(log.offers(), 0, "an offer in legacy mode");
    assert!(log.signals.is_empty(), "{:?}", log.signals);
    for frame in &log.frames {
        assert_eq!((frame.width, frame.height), size, "frame {}", frame.seq);
    }
    viewer.hang_up(&id).await.unwrap();
    assert_eq!(
        viewer.wait_ended(&id, WAIT).await.unwrap().as_deref(),
        Some("hangup")
    );
    bed.agent
        .wait_message("teardown done", Some(&id), WAIT)
        .await
        .unwrap();
    // The stand-in's record obeys the same rules, and nothing came later
    // than 1 s after the end.
    let relayed = bed.standin.frames(&id);
    check_frame_rules(&relayed, CLOCK_TOLERANCE).unwrap();
    let late = bed.standin.frames_after_end(&id);
    assert!(
        late.iter().all(|after| *after < Duration::from_secs(1)),
        "frames after the end: {late:?}"
    );
    let record = frames_record(bed, &id).await;
    let sent = record["frames_sent"].as_u64().unwrap();
    assert!(
        sent as usize >= relayed.len() && sent as usize <= relayed.len() + 2,
        "agent sent {sent}, the stand-in took {}: {record}",
        relayed.len()
    );
    assert_eq!(record["frames_skipped_oversize"], 0, "{record}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_streaming_0_relays_decodable_jpegs_and_tears_down_to_idle() {
    harness::require_test_netns();
    let mut bed = Bed::start_with_env(
        "legacy-env",
        standin(),
        CAMERA,
        &[("SIMPLE_STREAMING", "0")],
        |config| config.size(640, 480),
    )
    .await
    .unwrap();
    let mode = bed
        .agent
        .wait_message("streaming mode", None, WAIT)
        .await
        .unwrap();
    assert_eq!(mode["streaming_mode"], "legacy_jpeg", "{mode}");
    assert_eq!(
        mode["streaming_mode_origin"], "environment SIMPLE_STREAMING",
        "{mode}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = harness::proc_counts(bed.agent.pid()).unwrap();
    let mut viewer = LegacyViewer::connect(&bed.standin.url(), CLIENT.0, CLIENT.1)
        .await
        .unwrap();
    for round in 1..=2 {
        let started = SystemTime::now();
        let log = watch(&bed, &mut viewer, 6, (640, 480)).await;
        // A new session numbers from 1 again (checked by `check`), at the
        // default 2 fps; figures for the benchmarks, not asserted.
        let (min, mean, max) = sizes(&log);
        let settle = harness::wait_counts(bed.agent.pid(), idle, Duration::from_secs(10))
            .await
            .unwrap_or_else(|err| panic!("round {round}: {err:#}"));
        eprintln!(
            "legacy 640x480 round {round}: {} frames at {:.2} fps, JPEG {min}/{mean}/{max} bytes \
             (min/mean/max), first frame {:?} after the request, back to idle {idle:?} {settle:?} \
             after teardown",
            log.frames.len(),
            rate(&log),
            log.frames[0]
                .received_at
                .duration_since(started)
                .unwrap_or_default(),
        );
    }
    viewer.close().await;
    bed.agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        bed.agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    assert!(!bed.agent.output().join("\n").contains(CAMERA.1));
    bed.standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_toml_flag_streams_720p_at_the_configured_rate_and_sigterm_ends_with_camera_shutdown() {
    let (mut bed, mut viewer) = legacy_bed("legacy-720p", standin(), |config| {
        config.size(1280, 720).set("streaming.legacy_fps", 5)
    })
    .await;
    let log = watch(&bed, &mut viewer, 15, (1280, 720)).await;
    let (min, mean, max) = sizes(&log);
    let fps = rate(&log);
    eprintln!(
        "legacy 1280x720: {} frames at {fps:.2} fps (legacy_fps 5), JPEG {min}/{mean}/{max} bytes",
        log.frames.len()
    );
    assert!((3.0..=6.0).contains(&fps), "{fps} fps for legacy_fps = 5");
    // SIGTERM in the middle of a second session.
    let id = viewer.request(CAMERA.0).await.unwrap();
    viewer.frames_until(&id, 2, WAIT).await.unwrap();
    bed.agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        bed.agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    let session = bed.standin.session(&id).unwrap();
    assert_eq!(session.state, SessionState::Ended);
    assert_eq!(session.end_reason.as_deref(), Some("camera_shutdown"));
    assert_eq!(session.ended_by.as_deref(), Some(CAMERA.0));
    viewer.close().await;
    bed.standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_and_max_duration_hold_in_legacy_mode() {
    let (bed, mut first) = legacy_bed("legacy-limits", standin(), |config| {
        config.size(320, 240).set("session.max_duration", "3s")
    })
    .await;
    let mut second = LegacyViewer::connect(&bed.standin.url(), CLIENT2.0, CLIENT2.1)
        .await
        .unwrap();
    let id = first.request(CAMERA.0).await.unwrap();
    first.frames_until(&id, 1, WAIT).await.unwrap();
    // One viewer at a time (session.max_sessions = 1): the second is refused.
    let busy = second.request(CAMERA.0).await.unwrap();
    assert_eq!(
        second.wait_ended(&busy, WAIT).await.unwrap().as_deref(),
        Some("camera_busy")
    );
    assert!(bed.standin.frames(&busy).is_empty());
    // The first ends at its max_duration, from the camera.
    assert_eq!(
        first.wait_ended(&id, WAIT).await.unwrap().as_deref(),
        Some("max_duration")
    );
    assert_eq!(
        bed.standin.session(&id).unwrap().ended_by.as_deref(),
        Some(CAMERA.0)
    );
    let log = first.log(&id);
    log.check(CLOCK_TOLERANCE).unwrap();
    assert!(
        bed.standin
            .frames_after_end(&id)
            .iter()
            .all(|after| *after < Duration::from_secs(1))
    );
    first.close().await;
    second.close().await;
    bed.standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_too_big_for_the_server_lower_the_jpeg_quality_until_they_fit() {
    // A server whose maxPayload leaves room for about 22 KB of JPEG: the
    // test pattern at 640x480 and quality 85 (about 25 KB) does not fit.
    const MAX_PAYLOAD: u64 = 30_000;
    let mut standin = standin();
    standin.max_payload = Some(MAX_PAYLOAD);
    let (bed, mut viewer) = legacy_bed("legacy-oversize", standin, |config| {
        config.size(640, 480).set("streaming.legacy_fps", 5)
    })
    .await;
    let id = viewer.request(CAMERA.0).await.unwrap();
    let log = viewer
        .frames_until(&id, 5, Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\nagent log:\n{}", bed.agent.output().join("\n")));
    // Numbering has no gap for the skipped frames, and each one decodes.
    log.check(CLOCK_TOLERANCE).unwrap();
    // Every event packet fits the server's maxPayload: base64 of the JPEG
    // plus at most 132 bytes of envelope and the session id.
    let packet = |jpeg_len: usize| 4 * jpeg_len.div_ceil(3) + 132 + id.len();
    assert!(
        log.frames
            .iter()
            .all(|frame| packet(frame.jpeg_len) <= MAX_PAYLOAD as usize),
        "{:?}",
        log.frames
            .iter()
            .map(|frame| frame.jpeg_len)
            .collect::<Vec<_>>()
    );
    let skipped = bed
        .agent
        .wait_record(WAIT, |record| {
            record["session_id"] == id.as_str() && record["skipped"] == "oversize"
        })
        .await
        .unwrap();
    let lowered = bed
        .agent
        .wait_message("jpeg quality", Some(&id), WAIT)
        .await
        .unwrap();
    assert!(
        lowered["quality"].as_u64().unwrap() < 85,
        "{skipped}\n{lowered}"
    );
    viewer.hang_up(&id).await.unwrap();
    let record = frames_record(&bed, &id).await;
    assert!(
        record["frames_skipped_oversize"].as_u64().unwrap() >= 1,
        "{record}"
    );
    eprintln!("oversize: {skipped}\n{lowered}\n{record}");
    viewer.close().await;
    bed.standin.stop().await;
}

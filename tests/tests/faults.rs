//! Fault injection: the field's failures, each against the real agent
//! binary, the stand-in control plane and the decoding viewer, inside the
//! test network namespace.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testbed::harness::{self, AgentConfig, AgentProcess, Bed, Scratch};
use testbed::standin::{SessionState, StandIn, StandInConfig};
use testbed::viewer::Viewer;
use tokio::time::Instant;

const CAMERA: (&str, &str) = ("cam-faults", "camera-token-faults-1");
const CLIENT: (&str, &str) = ("viewer-faults", "client-token-faults-1");
const CLIENT2: (&str, &str) = ("viewer-two", "client-token-faults-2");

fn config() -> StandInConfig {
    StandInConfig::pair(CAMERA, CLIENT).with_client(CLIENT2.0, CLIENT2.1)
}

async fn start_agent(scratch: &Scratch, url: &str, token: &str) -> AgentProcess {
    let token_file = scratch.token_file(token).unwrap();
    let config = AgentConfig::new(url, &token_file).write(scratch).unwrap();
    AgentProcess::spawn(&config).unwrap()
}

/// A bed with the default test configuration changed by `settings`
/// (`section.key`, value).
async fn bed(name: &str, settings: &[(&str, &str)]) -> Bed {
    harness::require_test_netns();
    Bed::start(name, config(), CAMERA, |config| {
        settings
            .iter()
            .fold(config, |config, (key, value)| config.set(key, *value))
    })
    .await
    .unwrap()
}

async fn restart(standin: Arc<StandIn>) -> Arc<StandIn> {
    let addr: SocketAddr = standin.addr();
    standin.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Arc::new(StandIn::start(addr, config()).await.unwrap())
}

fn ended_with(standin: &StandIn, id: &str) -> Option<String> {
    standin
        .session(id)
        .filter(|session| session.state == SessionState::Ended)
        .and_then(|session| session.end_reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_while_idle_then_streams_again() {
    let mut bed = bed("restart-idle", &[]).await;
    let standin = restart(bed.standin.clone()).await;
    bed.standin = standin;
    assert!(
        bed.standin
            .wait_for(Duration::from_secs(20), |s| s.online(CAMERA.0))
            .await,
        "agent did not reconnect; log:\n{}",
        bed.agent.output().join("\n")
    );
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let report = viewer
        .watch(CAMERA.0, 30, Duration::from_secs(30))
        .await
        .unwrap();
    viewer.end(&report.session_id).await.unwrap();
    viewer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_mid_stream_tears_down_the_forgotten_session() {
    let mut bed = bed("restart-live", &[]).await;
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let report = viewer
        .watch(CAMERA.0, 10, Duration::from_secs(30))
        .await
        .unwrap();
    viewer.close().await;
    // The new server has no record of the session: the agent must ask after
    // reconnecting, learn it is gone, and free everything.
    bed.standin = restart(bed.standin.clone()).await;
    let done = bed
        .agent
        .wait_message(
            "teardown done",
            Some(&report.session_id),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(done["live_sessions"], 0, "{done}");
    assert_eq!(done["cause"], "server:not_found", "{done}");
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    viewer
        .watch(CAMERA.0, 10, Duration::from_secs(30))
        .await
        .unwrap();
    viewer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_dropped_mid_stream_keeps_video_flowing() {
    let bed = bed("socket-drop", &[]).await;
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let requested = Instant::now();
    let id = viewer.request(CAMERA.0).await.unwrap();
    let standin = bed.standin.clone();
    let dropper = tokio::spawn(async move {
        // Once media flows, drop the camera's socket server-side.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        standin.disconnect(CAMERA.0);
    });
    // 150 frames take about 5 s: they straddle the drop and the reconnect.
    let stats = viewer
        .play(&id, requested, Some(150), Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\nagent log:\n{}", bed.agent.output().join("\n")));
    dropper.await.unwrap();
    assert!(stats.frames >= 150);
    bed.agent
        .wait_record(Duration::from_secs(10), |record| {
            record["message"] == "signaling connected" && record["reconnect"] == true
        })
        .await
        .unwrap();
    assert_eq!(
        bed.standin.session(&id).unwrap().state,
        SessionState::Streaming
    );
    viewer.end(&id).await.unwrap();
    bed.agent
        .wait_message("teardown done", Some(&id), Duration::from_secs(10))
        .await
        .unwrap();
    viewer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_malformed_events_are_dropped_and_a_valid_session_works() {
    let bed = bed("hostile", &[]).await;
    let s = &bed.standin;
    let huge = "x".repeat(2_000_000);
    let events = [
        ("stream:requested", json!(["not", "an", "object"])),
        ("stream:requested", json!("a string")),
        (
            "stream:requested",
            json!({"sessionId": "s-x", "cameraId": "someone-else", "clientId": "c", "requestedAt": "2026-11-25T10:00:00Z"}),
        ),
        (
            "stream:requested",
            json!({"sessionId": "", "cameraId": CAMERA.0, "clientId": "c", "requestedAt": "2026-11-25T10:00:00Z"}),
        ),
        (
            "stream:requested",
            json!({"sessionId": "s-y", "cameraId": CAMERA.0, "clientId": "c", "requestedAt": "not a time"}),
        ),
        (
            "stream:requested",
            json!({"sessionId": "s-z", "cameraId": CAMERA.0}),
        ),
        (
            "stream:requested",
            json!({"sessionId": "s-big", "cameraId": CAMERA.0, "clientId": huge, "requestedAt": "2026-11-25T10:00:00Z"}),
        ),
        (
            "stream:ended",
            json!({"sessionId": "s-unknown", "reason": "x"}),
        ),
        (
            "webrtc:signal",
            json!({"sessionId": "s-unknown", "type": "answer", "sdp": "v=0\r\n", "from": CLIENT.0}),
        ),
        (
            "webrtc:signal",
            json!({"sessionId": "s-1", "type": "rollback", "from": CLIENT.0}),
        ),
        ("stream:frame", json!({"sessionId": "s-1"})),
        ("totally:unknown", json!({})),
    ];
    for (event, payload) in &events {
        s.emit_raw(CAMERA.0, event, payload).await;
    }
    // Every one is logged as dropped, none started a session.
    let log_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let warnings = bed
            .agent
            .records()
            .iter()
            .filter(|record| record["level"] == "WARN" && record["dropped"].is_string())
            .count();
        if warnings >= events.len() {
            break;
        }
        assert!(
            Instant::now() < log_deadline,
            "only {warnings} of {} hostile events were logged as dropped:\n{}",
            events.len(),
            bed.agent.output().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !bed.agent
            .records()
            .iter()
            .any(|record| record["message"] == "accepted"),
        "a hostile event started a session"
    );

    // A live session ignores signals from strangers and duplicate requests.
    let mut viewer = Viewer::connect(&s.url(), CLIENT.1).await.unwrap();
    let report = viewer
        .watch(CAMERA.0, 10, Duration::from_secs(30))
        .await
        .unwrap();
    let id = report.session_id.clone();
    s.emit_raw(
        CAMERA.0,
        "webrtc:signal",
        &json!({"sessionId": id, "type": "answer", "sdp": "v=0\r\n", "from": "mallory"}),
    )
    .await;
    s.emit_raw(CAMERA.0, "stream:requested", &json!({"sessionId": id, "cameraId": CAMERA.0, "clientId": CLIENT.0, "requestedAt": "2026-11-25T10:00:00Z"}))
        .await;
    for why in ["not_the_client", "duplicate"] {
        bed.agent
            .wait_record(Duration::from_secs(5), |record| {
                record["dropped"] == why && record["session_id"] == id.as_str()
            })
            .await
            .unwrap();
    }
    // Neither restarted nor ended the session.
    let playing = bed
        .agent
        .records()
        .iter()
        .filter(|record| {
            record["message"] == "pipeline playing" && record["session_id"] == id.as_str()
        })
        .count();
    assert_eq!(playing, 1);
    assert_eq!(s.session(&id).unwrap().state, SessionState::Streaming);
    viewer.end(&id).await.unwrap();
    bed.agent
        .wait_message("teardown done", Some(&id), Duration::from_secs(10))
        .await
        .unwrap();
    viewer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_retried_slowly_and_never_printed() {
    harness::require_test_netns();
    let standin = StandIn::start(
        format!("{}:0", harness::TEST_HOST).parse().unwrap(),
        config(),
    )
    .await
    .unwrap();
    let scratch = Scratch::new("wrong-token").unwrap();
    let wrong = "wrong-token-0123456789abcdef";
    let mut agent = start_agent(&scratch, &standin.url(), wrong).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (socket_failures, rest_failures) = standin.auth_failures();
    let attempts = socket_failures + rest_failures;
    assert!(attempts >= 1, "the agent never tried");
    assert!(attempts <= 8, "{attempts} attempts in 20 s is a hot loop");
    agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    let output = agent.output().join("\n");
    assert!(
        agent
            .records()
            .iter()
            .any(|record| record["level"] == "WARN" && record["refused"] == "device_token"),
        "the refused token was not reported:\n{output}"
    );
    assert!(!output.contains(wrong), "the token leaked:\n{output}");
    eprintln!("wrong token: {attempts} attempts in 20 s");
    standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_viewer_gets_camera_busy_while_the_first_keeps_streaming() {
    let bed = bed("busy", &[]).await;
    let mut first = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let requested = Instant::now();
    let first_id = first.request(CAMERA.0).await.unwrap();
    let standin = bed.standin.clone();
    let second = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let second = Viewer::connect(&standin.url(), CLIENT2.1).await.unwrap();
        let id = second.request(CAMERA.0).await.unwrap();
        let ended = standin
            .wait_for(Duration::from_secs(10), |s| ended_with(s, &id).is_some())
            .await;
        second.close().await;
        (id, ended)
    });
    let stats = first
        .play(&first_id, requested, Some(120), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(stats.frames >= 120);
    let (second_id, ended) = second.await.unwrap();
    assert!(ended, "the second request was never refused");
    assert_eq!(
        ended_with(&bed.standin, &second_id).as_deref(),
        Some("camera_busy")
    );
    assert_eq!(
        bed.standin.session(&second_id).unwrap().ended_by.as_deref(),
        Some(CAMERA.0)
    );
    assert_eq!(
        bed.standin.session(&first_id).unwrap().state,
        SessionState::Streaming
    );
    first.end(&first_id).await.unwrap();
    first.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_camera_ends_with_media_error_and_the_agent_stays_up() {
    harness::require_test_netns();
    let standin = StandIn::start(
        format!("{}:0", harness::TEST_HOST).parse().unwrap(),
        config(),
    )
    .await
    .unwrap();
    let scratch = Scratch::new("media-error").unwrap();
    let token = scratch.token_file(CAMERA.1).unwrap();
    let config = AgentConfig::new(&standin.url(), &token)
        .set("camera.source", "v4l2")
        .set("camera.device", "/dev/video-missing-for-test")
        .write(&scratch)
        .unwrap();
    let mut agent = AgentProcess::spawn(&config).unwrap();
    assert!(
        standin
            .wait_for(Duration::from_secs(20), |s| s.online(CAMERA.0))
            .await
    );
    let viewer = Viewer::connect(&standin.url(), CLIENT.1).await.unwrap();
    for _ in 0..2 {
        let id = viewer.request(CAMERA.0).await.unwrap();
        assert!(
            standin
                .wait_for(Duration::from_secs(10), |s| ended_with(s, &id).is_some())
                .await,
            "log:\n{}",
            agent.output().join("\n")
        );
        assert_eq!(ended_with(&standin, &id).as_deref(), Some("media_error"));
        agent
            .wait_message("teardown done", Some(&id), Duration::from_secs(5))
            .await
            .unwrap();
    }
    viewer.close().await;
    agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    drop(scratch);
    standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_starts_with_the_control_plane_down_and_connects_when_it_comes_up() {
    harness::require_test_netns();
    // A free port with nothing behind it yet.
    let addr = std::net::TcpListener::bind(format!("{}:0", harness::TEST_HOST))
        .unwrap()
        .local_addr()
        .unwrap();
    let scratch = Scratch::new("down-at-boot").unwrap();
    let agent = start_agent(&scratch, &format!("http://{addr}"), CAMERA.1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        agent
            .records()
            .iter()
            .any(|record| record["message"] == "login failed; retrying"),
        "{}",
        agent.output().join("\n")
    );
    let standin = StandIn::start(addr, config()).await.unwrap();
    assert!(
        standin
            .wait_for(Duration::from_secs(20), |s| s.online(CAMERA.0))
            .await,
        "{}",
        agent.output().join("\n")
    );
    let mut viewer = Viewer::connect(&standin.url(), CLIENT.1).await.unwrap();
    viewer
        .watch(CAMERA.0, 10, Duration::from_secs(30))
        .await
        .unwrap();
    viewer.close().await;
    standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_signaling_stays_down_past_the_grace_is_ended() {
    let bed = bed("signaling-grace", &[("session.signaling_grace", "2s")]).await;
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let report = viewer
        .watch(CAMERA.0, 10, Duration::from_secs(30))
        .await
        .unwrap();
    viewer.close().await;
    bed.standin.stop().await;
    let done = bed
        .agent
        .wait_message(
            "teardown done",
            Some(&report.session_id),
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    assert_eq!(done["cause"], "camera_error", "{done}");
    assert_eq!(done["live_sessions"], 0, "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_ends_a_live_session() {
    // Long enough for the first frame on a loaded machine, short for a test.
    let bed = bed("max-duration", &[("session.max_duration", "8s")]).await;
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let report = viewer
        .watch(CAMERA.0, 1, Duration::from_secs(8))
        .await
        .unwrap();
    let id = report.session_id;
    assert!(
        bed.standin
            .wait_for(Duration::from_secs(20), |s| ended_with(s, &id).is_some())
            .await
    );
    assert_eq!(
        ended_with(&bed.standin, &id).as_deref(),
        Some("max_duration")
    );
    bed.agent
        .wait_message("teardown done", Some(&id), Duration::from_secs(5))
        .await
        .unwrap();
    viewer.close().await;
}

//! The real browser: Debian's Chromium, headless, runs the viewer page
//! (`tests/viewer/`, served by the stand-in) against the real agent inside
//! the test network namespace. It decodes the test pattern, shows it (read
//! back from a DevTools screenshot), and every way a session can end leaves
//! the agent at its idle fds and threads and the page with nothing open.

use std::time::Duration;

use testbed::browser_viewer::{BrowserViewer, ViewerStats};
use testbed::harness::{self, Bed};
use testbed::pattern;
use testbed::standin::{SessionState, StandInConfig};
use testbed::viewer::offered_profile_level_id;
use testbed::viewer_page::viewer_url;

const CAMERA: (&str, &str) = ("cam-browser", "camera-token-5d2e81");
const CLIENT: (&str, &str) = ("viewer-browser", "client-token-c4f09a");

async fn bed(name: &str) -> Bed {
    harness::require_test_netns();
    Bed::start(
        name,
        StandInConfig::pair(CAMERA, CLIENT),
        CAMERA,
        |config| config.size(640, 480),
    )
    .await
    .unwrap()
}

async fn open(bed: &Bed) -> BrowserViewer {
    let url = viewer_url(&bed.standin.url(), CLIENT.1, CAMERA.0, None, false);
    BrowserViewer::open(&url)
        .await
        .unwrap_or_else(|err| panic!("{err:#}"))
}

/// Watches until 60 frames, failing with everything both sides logged.
async fn watch(bed: &Bed, viewer: &BrowserViewer) -> ViewerStats {
    viewer
        .watch_until(60, Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\nagent log:\n{}", bed.agent.output().join("\n")))
}

async fn ended(bed: &Bed, id: &str) -> testbed::standin::Session {
    let id = id.to_string();
    assert!(
        bed.standin
            .wait_for(Duration::from_secs(15), |s| s
                .session(&id)
                .is_some_and(|session| session.state == SessionState::Ended))
            .await,
        "session {id} did not end: {:?}",
        bed.standin.session(&id)
    );
    bed.standin.session(&id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_test_pattern_and_hangs_up_cleanly() {
    let bed = bed("browser").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = harness::proc_counts(bed.agent.pid()).unwrap();
    let viewer = open(&bed).await;
    assert_eq!(viewer.state().await.unwrap(), "idle");

    let stats = watch(&bed, &viewer).await;
    eprintln!("playing: {stats:?}");
    let id = stats.session_id.clone().unwrap();
    assert_eq!(stats.state, "active");
    assert_eq!(
        (stats.frame_width, stats.frame_height),
        (Some(640), Some(480))
    );
    assert!(stats.frames_decoded >= 60);
    assert!(stats.first_frame_ms.is_some_and(|ms| ms > 0.0), "{stats:?}");
    assert_eq!(
        stats
            .codec_mime_type
            .as_deref()
            .map(str::to_ascii_lowercase),
        Some("video/h264".into())
    );
    assert!(
        stats.local_candidate_type.is_some(),
        "no selected pair: {stats:?}"
    );
    // The page answered the offer as it came: H.264, packetization-mode 1,
    // constrained baseline on both sides (what Safari needs as well). The
    // answer names the level the browser can receive (level asymmetry is
    // allowed), so only the profile must match.
    let (offer, answer) = viewer.sdp().await.unwrap();
    let (offer, answer) = (offer.unwrap(), answer.unwrap());
    assert!(answer.contains("packetization-mode=1"), "{answer}");
    for (side, sdp) in [("offer", &offer), ("answer", &answer)] {
        let id = offered_profile_level_id(sdp).unwrap_or_else(|| panic!("{side}:\n{sdp}"));
        assert!(constrained_baseline(&id), "{side} profile-level-id {id}");
    }
    let fmtp = stats.codec_fmtp.clone().unwrap_or_default();
    assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");
    let states: Vec<String> = viewer
        .events()
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.state)
        .collect();
    assert_eq!(states, ["idle", "connecting", "active"]);

    // What the user sees: the SMPTE bars, not a black or frozen-grey frame.
    let png = viewer.screenshot_video().await.unwrap();
    for row in pattern::smpte_rows(&png).unwrap() {
        assert!(
            row.distinct_saturated() >= 5,
            "row {} of the video shows {} saturated colours: {:?}",
            row.y,
            row.distinct_saturated(),
            row.bands
        );
    }
    if std::env::var("CAMERA_AGENT_SAVE_SCREENSHOT").as_deref() == Ok("1") {
        // The page as a person sees it, for the README.
        let page = viewer
            .page()
            .screenshot_png_clip(page_rect(&viewer).await)
            .await
            .unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/viewer.png");
        std::fs::write(&path, page).unwrap();
        eprintln!("saved {}", path.display());
    }

    let last = viewer.hang_up().await.unwrap();
    assert_eq!(last.state, "ended");
    assert_eq!(last.end_reason.as_deref(), Some("hangup"));
    assert_eq!(last.connection_state.as_deref(), Some("closed"));
    let session = ended(&bed, &id).await;
    assert_eq!(session.ended_by.as_deref(), Some(CLIENT.0));
    assert_eq!(session.end_reason.as_deref(), Some("hangup"));
    let done = bed
        .agent
        .wait_message("teardown done", Some(&id), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done["live_sessions"], 0, "{done}");
    harness::wait_counts(bed.agent.pid(), idle, Duration::from_secs(10))
        .await
        .unwrap();
    // No video element still holds a stream.
    assert_eq!(
        viewer
            .page()
            .eval("document.getElementById('video').srcObject === null")
            .await
            .unwrap(),
        true
    );

    // Watch again on the same page: a second session after a clean end.
    let again = watch(&bed, &viewer).await;
    let second = again.session_id.clone().unwrap();
    assert_ne!(second, id);
    assert_eq!(again.end_reason, None);
    viewer.hang_up().await.unwrap();
    ended(&bed, &second).await;
    back_to_idle_then_stop(bed, viewer, idle).await;
}

/// The agent back at its `idle` fds and threads; then the page, the agent
/// (SIGTERM, exit 0) and the stand-in stop.
async fn back_to_idle_then_stop(mut bed: Bed, viewer: BrowserViewer, idle: harness::ProcCounts) {
    harness::wait_counts(bed.agent.pid(), idle, Duration::from_secs(10))
        .await
        .unwrap();
    viewer.close().await;
    bed.agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        bed.agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    bed.standin.stop().await;
}

/// profile_idc 66 (baseline) with constraint_set1: constrained baseline.
fn constrained_baseline(profile_level_id: &str) -> bool {
    let constraints = u8::from_str_radix(&profile_level_id[2..4], 16).unwrap_or(0);
    profile_level_id.starts_with("42") && constraints & 0x40 != 0
}

/// The page's header and video, as the README shows it.
async fn page_rect(viewer: &BrowserViewer) -> testbed::chromium::Rect {
    let stage = viewer.page().element_rect("#stage").await.unwrap();
    testbed::chromium::Rect {
        x: 0.0,
        y: 0.0,
        width: (stage.x + stage.width + 16.0).max(720.0),
        height: stage.y + stage.height + 16.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_ends_sessions_on_close_on_a_codec_it_lacks_and_on_stream_ended() {
    let mut bed = bed("browser-ends").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = harness::proc_counts(bed.agent.pid()).unwrap();

    // Closing the tab mid-stream ends the session from its unload handler
    // (well before the server's 10 s grace for a vanished socket).
    let viewer = open(&bed).await;
    let stats = watch(&bed, &viewer).await;
    let id = stats.session_id.unwrap();
    viewer.close_page().await.unwrap();
    let session = ended(&bed, &id).await;
    viewer.close().await;
    assert_eq!(session.ended_by.as_deref(), Some(CLIENT.0), "{session:?}");
    assert_eq!(session.end_reason.as_deref(), Some("page_closed"));
    harness::wait_counts(bed.agent.pid(), idle, Duration::from_secs(10))
        .await
        .unwrap();

    // A browser that cannot receive H.264 (Firefox without its OpenH264
    // plugin answers the video m-line with port 0): the page ends the
    // session at once with a reason, instead of waiting for media.
    let viewer = open(&bed).await;
    viewer
        .page()
        .eval(
            "(() => { const create = RTCPeerConnection.prototype.createAnswer; \
             RTCPeerConnection.prototype.createAnswer = async function () { \
             const answer = await create.apply(this, arguments); \
             return {type: answer.type, sdp: answer.sdp.replace(/^m=video \\d+/m, 'm=video 0')}; }; })()",
        )
        .await
        .unwrap();
    viewer.watch().await.unwrap();
    let last = viewer
        .wait_state("ended", Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(last.end_reason.as_deref(), Some("h264_unsupported"));
    let session = ended(&bed, last.session_id.as_deref().unwrap()).await;
    assert_eq!(session.ended_by.as_deref(), Some(CLIENT.0));
    assert_eq!(session.end_reason.as_deref(), Some("h264_unsupported"));
    harness::wait_counts(bed.agent.pid(), idle, Duration::from_secs(10))
        .await
        .unwrap();
    viewer.close().await;

    // stream:ended from the camera (SIGTERM): the page ends with its reason
    // and closes its peer connection.
    let viewer = open(&bed).await;
    let stats = watch(&bed, &viewer).await;
    let id = stats.session_id.unwrap();
    bed.agent.signal(harness::SIGTERM).unwrap();
    let last = viewer
        .wait_state("ended", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(last.session_id.as_deref(), Some(id.as_str()));
    assert_eq!(last.end_reason.as_deref(), Some("camera_shutdown"));
    assert_eq!(last.connection_state.as_deref(), Some("closed"));
    assert_eq!(
        bed.agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    viewer.close().await;
    bed.standin.stop().await;
}

/// A camera rolled back to the legacy relay: the same page shows its JPEG
/// frames (the SMPTE bars, read back from the screen) with no offer, and a
/// hang-up leaves the agent at its idle fds and threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_legacy_relays_jpegs_on_the_same_page() {
    harness::require_test_netns();
    let bed = Bed::start(
        "browser-legacy",
        StandInConfig::pair(CAMERA, CLIENT).legacy(),
        CAMERA,
        |config| {
            config
                .size(640, 480)
                .set("streaming.simple", false)
                .set("streaming.legacy_fps", 5)
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = harness::proc_counts(bed.agent.pid()).unwrap();
    let viewer = open(&bed).await;
    let stats = viewer
        .watch_until(10, Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", viewer.diagnostics()));
    eprintln!("legacy page: {stats:?}");
    assert_eq!(stats.mode.as_deref(), Some("legacy"));
    assert_eq!(stats.state, "active");
    assert_eq!(
        (stats.frame_width, stats.frame_height),
        (Some(640), Some(480))
    );
    assert_eq!(stats.seq_gaps, Some(0));
    assert_eq!(stats.decode_errors, Some(0));
    assert!(stats.first_frame_ms.is_some_and(|ms| ms > 0.0), "{stats:?}");
    assert_eq!(viewer.sdp().await.unwrap(), (None, None));
    let png = viewer.screenshot_element("#frame").await.unwrap();
    for row in pattern::smpte_rows(&png).unwrap() {
        assert!(
            row.distinct_saturated() >= 5,
            "row {} of the picture shows {} saturated colours: {:?}",
            row.y,
            row.distinct_saturated(),
            row.bands
        );
    }
    let id = stats.session_id.clone().unwrap();
    let last = viewer.hang_up().await.unwrap();
    assert_eq!(last.end_reason.as_deref(), Some("hangup"));
    // The picture is gone with the session.
    assert_eq!(
        viewer
            .page()
            .eval("document.getElementById('frame').hidden && !document.getElementById('frame').getAttribute('src')")
            .await
            .unwrap(),
        true
    );
    ended(&bed, &id).await;
    back_to_idle_then_stop(bed, viewer, idle).await;
}

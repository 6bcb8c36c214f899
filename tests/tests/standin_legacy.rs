//! The stand-in's legacy mode (contract section 5) and the legacy viewer,
//! before any agent speaks it: a raw Socket.IO client plays the camera and
//! sends exactly the frames each test names. Everything is on loopback and
//! needs no network namespace; GStreamer only encodes and decodes JPEGs.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};
use testbed::legacy_viewer::{LegacyViewer, check_frame_rules, test_jpeg};
use testbed::raw_device::RawDevice;
use testbed::standin::{Device, MAX_JPEG_BYTES, Role, StandIn, StandInConfig};

const CAMERA: (&str, &str) = ("cam-legacy", "camera-token-legacy-1");
const CAMERA2: (&str, &str) = ("cam-legacy-2", "camera-token-legacy-2");
const CLIENT: (&str, &str) = ("viewer-legacy", "client-token-legacy-1");
const WAIT: Duration = Duration::from_secs(10);

/// Two cameras, both linked to the one client.
fn config(legacy: bool) -> StandInConfig {
    let mut config = StandInConfig::pair(CAMERA, CLIENT);
    config.devices.push(Device {
        id: CAMERA2.0.into(),
        role: Role::Camera,
        token: CAMERA2.1.into(),
        name: "Second camera".into(),
    });
    config.links.push((CLIENT.0.into(), CAMERA2.0.into()));
    if legacy { config.legacy() } else { config }
}

async fn standin(legacy: bool) -> StandIn {
    StandIn::start("127.0.0.1:0".parse().unwrap(), config(legacy))
        .await
        .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn now_millis() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn frame(session_id: &str, seq: u64, jpeg: &[u8]) -> Value {
    json!({
        "sessionId": session_id,
        "seq": seq,
        "mime": "image/jpeg",
        "data": b64(jpeg),
        "capturedAt": now_millis(),
    })
}

/// The client requests `camera`'s stream; with `accept`, the camera
/// accepts it and the client sees it start. The session id.
async fn session(
    camera: &mut RawDevice,
    client: &mut RawDevice,
    camera_id: &str,
    accept: bool,
) -> String {
    let (status, body) = client
        .post("/api/v1/streams", json!({ "cameraId": camera_id }))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["sessionId"].as_str().unwrap().to_owned();
    camera
        .wait_event("stream:requested", Some(&id), WAIT)
        .await
        .unwrap();
    if accept {
        let (status, body) = camera
            .post(&format!("/api/v1/streams/{id}/accept"), json!({}))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        client
            .wait_event("stream:started", Some(&id), WAIT)
            .await
            .unwrap();
    }
    id
}

async fn dropped(standin: &StandIn, reason: &str, count: u64) -> bool {
    standin
        .wait_for(WAIT, |s| s.frame_drops().get(reason) == Some(&count))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_frame_is_relayed_to_the_client_and_recorded() {
    let standin = standin(true).await;
    let mut camera = RawDevice::connect(&standin.url(), CAMERA.1).await.unwrap();
    let mut client = RawDevice::connect(&standin.url(), CLIENT.1).await.unwrap();
    let id = session(&mut camera, &mut client, CAMERA.0, true).await;
    let jpeg = test_jpeg(640, 480, 85).unwrap();
    let sent = frame(&id, 1, &jpeg);
    camera
        .emit("stream:frame", sent.clone(), true)
        .await
        .unwrap();
    let relayed = client
        .wait_event("stream:frame", Some(&id), WAIT)
        .await
        .unwrap();
    assert_eq!(relayed, sent);
    let frames = standin.frames(&id);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].seq, 1);
    assert_eq!(frames[0].jpeg_len, jpeg.len());
    assert_eq!(
        frames[0].captured_at,
        humantime::parse_rfc3339(sent["capturedAt"].as_str().unwrap()).unwrap()
    );
    assert!(
        standin.frame_drops().is_empty(),
        "{:?}",
        standin.frame_drops()
    );
    camera.close().await;
    client.close().await;
    standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_frame_is_dropped_with_its_reason() {
    let standin = standin(true).await;
    let mut camera = RawDevice::connect(&standin.url(), CAMERA.1).await.unwrap();
    let mut camera2 = RawDevice::connect(&standin.url(), CAMERA2.1).await.unwrap();
    let mut client = RawDevice::connect(&standin.url(), CLIENT.1).await.unwrap();
    let requested = session(&mut camera, &mut client, CAMERA.0, false).await;
    let others = session(&mut camera2, &mut client, CAMERA2.0, true).await;
    let ended = session(&mut camera, &mut client, CAMERA.0, true).await;
    let (status, _) = client
        .post(&format!("/api/v1/streams/{ended}/end"), json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // The camera is now free again; this one streams.
    let live = session(&mut camera, &mut client, CAMERA.0, true).await;
    let jpeg = test_jpeg(320, 240, 85).unwrap();
    let mut oversize = vec![0u8; MAX_JPEG_BYTES + 1];
    oversize[..2].copy_from_slice(&[0xff, 0xd8]);
    let mut at_limit = oversize.clone();
    at_limit.pop();

    let with = |key: &str, value: Value| {
        let mut payload = frame(&live, 1, &jpeg);
        payload[key] = value;
        payload
    };
    let cases: Vec<(&RawDevice, Value, &str)> = vec![
        (&camera, frame(&requested, 1, &jpeg), "not_streaming"),
        (&camera, frame(&others, 1, &jpeg), "not_party"),
        (&camera, frame(&ended, 1, &jpeg), "not_streaming"),
        (&camera, frame("s-404", 1, &jpeg), "unknown_session"),
        (&camera, frame(&live, 1, &oversize), "too_large"),
        (&camera, frame(&live, 1, b"\x89PNG\r\n\x1a\n"), "not_jpeg"),
        (&camera, with("data", json!("not base64!")), "bad_base64"),
        (
            &camera,
            with("capturedAt", json!("2026-03-01 10:00")),
            "bad_timestamp",
        ),
        (&camera, with("mime", json!("image/png")), "bad_mime"),
        (&camera, with("seq", json!(0)), "schema"),
        (&camera, json!(["not", "an", "object"]), "schema"),
        (&client, frame(&live, 1, &jpeg), "not_camera"),
    ];
    let mut expected = std::collections::BTreeMap::<String, u64>::new();
    for (device, payload, reason) in cases {
        device.emit("stream:frame", payload, true).await.unwrap();
        let count = expected.entry(reason.to_owned()).or_default();
        *count += 1;
        assert!(
            dropped(&standin, reason, *count).await,
            "expected a {reason} drop, have {:?}",
            standin.frame_drops()
        );
    }
    assert_eq!(standin.frame_drops(), expected);
    for id in [&requested, &others, &ended, &live] {
        assert!(standin.frames(id).is_empty(), "{id}");
    }
    // The late frame is on record, after the end.
    assert_eq!(standin.frames_after_end(&ended).len(), 1);
    // Nothing reached the client: the first frame it gets is the first
    // good one, a 512 KiB JPEG exactly at the limit.
    let good = frame(&live, 1, &at_limit);
    camera
        .emit("stream:frame", good.clone(), true)
        .await
        .unwrap();
    let relayed = client.wait_event("stream:frame", None, WAIT).await.unwrap();
    assert_eq!(relayed, good);
    assert_eq!(standin.frames(&live).len(), 1);
    assert_eq!(standin.frames(&live)[0].jpeg_len, MAX_JPEG_BYTES);
    for device in [camera, camera2, client] {
        device.close().await;
    }
    standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_mode_drops_frames_and_relays_signals() {
    let standin = standin(false).await;
    let mut camera = RawDevice::connect(&standin.url(), CAMERA.1).await.unwrap();
    let mut client = RawDevice::connect(&standin.url(), CLIENT.1).await.unwrap();
    let id = session(&mut camera, &mut client, CAMERA.0, true).await;
    let jpeg = test_jpeg(320, 240, 85).unwrap();
    camera
        .emit("stream:frame", frame(&id, 1, &jpeg), true)
        .await
        .unwrap();
    assert!(dropped(&standin, "not_legacy", 1).await);
    assert!(standin.frames(&id).is_empty());
    let offer = json!({"sessionId": id, "type": "offer", "sdp": "v=0\r\n"});
    camera.emit("webrtc:signal", offer, true).await.unwrap();
    // The signal comes through; the frame before it did not.
    let (name, payload) = client
        .next_event(tokio::time::Instant::now() + WAIT)
        .await
        .unwrap()
        .expect("an event for the client");
    assert_eq!(name, "webrtc:signal", "{payload}");
    assert_eq!(standin.signal_counts(), (1, 0));
    camera.close().await;
    client.close().await;
    standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_mode_drops_signals() {
    let standin = standin(true).await;
    let mut camera = RawDevice::connect(&standin.url(), CAMERA.1).await.unwrap();
    let mut client = RawDevice::connect(&standin.url(), CLIENT.1).await.unwrap();
    let id = session(&mut camera, &mut client, CAMERA.0, true).await;
    let offer = json!({"sessionId": id, "type": "offer", "sdp": "v=0\r\n"});
    camera.emit("webrtc:signal", offer, true).await.unwrap();
    let answer = json!({"sessionId": id, "type": "answer", "sdp": "v=0\r\n"});
    client.emit("webrtc:signal", answer, true).await.unwrap();
    assert!(
        standin
            .wait_for(WAIT, |s| s.signal_counts() == (0, 2))
            .await,
        "{:?}",
        standin.signal_counts()
    );
    // A frame sent after them is the first thing the client gets.
    let jpeg = test_jpeg(320, 240, 85).unwrap();
    camera
        .emit("stream:frame", frame(&id, 1, &jpeg), true)
        .await
        .unwrap();
    let (name, _) = client
        .next_event(tokio::time::Instant::now() + WAIT)
        .await
        .unwrap()
        .expect("an event for the client");
    assert_eq!(name, "stream:frame");
    camera.close().await;
    client.close().await;
    standin.stop().await;
}

/// The camera's side of a legacy session, by hand: accept, then frames.
async fn fake_camera_accepts(camera: &mut RawDevice) -> String {
    let requested = camera
        .wait_event("stream:requested", None, WAIT)
        .await
        .unwrap();
    let id = requested["sessionId"].as_str().unwrap().to_owned();
    let (status, body) = camera
        .post(&format!("/api/v1/streams/{id}/accept"), json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_viewer_decodes_a_fake_cameras_frames_until_the_end() {
    let standin = standin(true).await;
    let mut camera = RawDevice::connect(&standin.url(), CAMERA.1).await.unwrap();
    let mut viewer = LegacyViewer::connect(&standin.url(), CLIENT.0, CLIENT.1)
        .await
        .unwrap();
    let id = viewer.request(CAMERA.0).await.unwrap();
    assert_eq!(fake_camera_accepts(&mut camera).await, id);
    viewer.wait_started(&id, WAIT).await.unwrap();
    let sizes = [(640, 480), (640, 480), (1280, 720), (640, 480), (320, 240)];
    for (seq, (width, height)) in (1..).zip(sizes) {
        let jpeg = test_jpeg(width, height, 85).unwrap();
        camera
            .emit("stream:frame", frame(&id, seq, &jpeg), true)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = viewer.frames_until(&id, 5, WAIT).await.unwrap();
    let decoded: Vec<(u32, u32)> = log.frames.iter().map(|f| (f.width, f.height)).collect();
    assert_eq!(decoded, sizes);
    log.check(Duration::from_millis(250)).unwrap();
    assert_eq!(log.offers(), 0);
    // A frame that passes the server's checks (it starts with SOI) but is
    // no picture: the viewer rejects it, and the log's check fails.
    let mut broken = vec![0xff, 0xd8];
    broken.extend(std::iter::repeat_n(0x55, 2000));
    camera
        .emit("stream:frame", frame(&id, 6, &broken), true)
        .await
        .unwrap();
    let log = viewer.collect(&id, Duration::from_secs(2)).await.unwrap();
    assert_eq!(log.frames.len(), 5);
    assert_eq!(log.rejects.len(), 1, "{:?}", log.rejects);
    assert!(log.check(Duration::from_millis(250)).is_err());
    // The stand-in relayed all six, and its record keeps the rules.
    let record = standin.frames(&id);
    assert_eq!(record.len(), 6);
    check_frame_rules(&record, Duration::from_millis(250)).unwrap();

    viewer.hang_up(&id).await.unwrap();
    assert_eq!(
        viewer.wait_ended(&id, WAIT).await.unwrap().as_deref(),
        Some("hangup")
    );
    // A frame after the end is dropped and on the stand-in's record.
    let jpeg = test_jpeg(320, 240, 85).unwrap();
    camera
        .emit("stream:frame", frame(&id, 7, &jpeg), true)
        .await
        .unwrap();
    assert!(dropped(&standin, "not_streaming", 1).await);
    assert_eq!(standin.frames_after_end(&id).len(), 1);
    let log = viewer
        .collect(&id, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(log.frames_after_end().is_empty());
    viewer.close().await;
    camera.close().await;
    standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_viewer_notices_an_offer() {
    // In WebRTC mode the stand-in relays the offer a legacy viewer must
    // never get; the viewer's log shows it and its check fails.
    let standin = standin(false).await;
    let mut camera = RawDevice::connect(&standin.url(), CAMERA.1).await.unwrap();
    let mut viewer = LegacyViewer::connect(&standin.url(), CLIENT.0, CLIENT.1)
        .await
        .unwrap();
    let id = viewer.request(CAMERA.0).await.unwrap();
    fake_camera_accepts(&mut camera).await;
    viewer.wait_started(&id, WAIT).await.unwrap();
    let offer = json!({"sessionId": id, "type": "offer", "sdp": "v=0\r\n"});
    camera.emit("webrtc:signal", offer, true).await.unwrap();
    let log = viewer.collect(&id, Duration::from_secs(1)).await.unwrap();
    assert_eq!(log.offers(), 1);
    assert!(log.check(Duration::from_millis(250)).is_err());
    viewer.close().await;
    camera.close().await;
    standin.stop().await;
}

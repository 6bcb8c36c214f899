//! Interop with software that shares nothing with the agent: a viewer built
//! on python-socketio and aiortc (`tests/aiortc_viewer.py`). aiortc offers
//! only ECDHE-ECDSA DTLS suites and verifies the SDP fingerprint, so this
//! proves the agent's ECDSA certificate and its corrected fingerprint.

use std::time::Duration;

use testbed::harness::{self, Bed};
use testbed::standin::{SessionState, StandInConfig};

const CAMERA: (&str, &str) = ("cam-interop", "camera-token-51c0de");
const CLIENT: (&str, &str) = ("aiortc-viewer", "client-token-9a9a9a");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_viewer_with_ecdsa_only_dtls_decodes_the_stream() {
    harness::require_test_netns();
    let Bed {
        standin,
        mut agent,
        scratch: _scratch,
    } = Bed::start(
        "interop",
        StandInConfig::pair(CAMERA, CLIENT),
        CAMERA,
        |url, token| harness::agent_config(url, token, 640, 480, "15s", ""),
    )
    .await
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/aiortc_viewer.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .args([
            "--url",
            &standin.url(),
            "--token",
            CLIENT.1,
            "--camera",
            CAMERA.0,
        ])
        .args(["--frames", "30", "--timeout", "30"])
        .output()
        .await
        .expect("python3 must be installed (see tests/requirements.txt)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "aiortc viewer failed (install: pip install -r tests/requirements.txt)\n\
         stdout: {stdout}\nstderr: {stderr}\nagent log:\n{}",
        agent.output().join("\n")
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["frames"].as_u64().unwrap() >= 30, "{report}");
    assert_eq!(report["width"], 640, "{report}");
    assert_eq!(report["height"], 480, "{report}");
    let id = report["session"].as_str().unwrap().to_string();
    agent
        .wait_message("teardown done", Some(&id), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(standin.session(&id).unwrap().state, SessionState::Ended);
    eprintln!("aiortc viewer: {report}");
    agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    standin.stop().await;
}

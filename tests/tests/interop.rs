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
        |config| config.size(640, 480),
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

/// The Python control plane (`tests/python_control_plane.py`) as a child
/// process, followed through the lines it prints.
struct PythonControlPlane {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: Vec<String>,
    url: String,
}

impl PythonControlPlane {
    async fn start(camera: (&str, &str), client: (&str, &str)) -> Self {
        use tokio::io::AsyncBufReadExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python_control_plane.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .args(["--host", harness::TEST_HOST])
            .arg("--camera")
            .arg(format!("{}:{}", camera.0, camera.1))
            .arg("--client")
            .arg(format!("{}:{}", client.0, client.1))
            // Closing stdin stops it, should this test die first.
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 must be installed (see tests/requirements.txt)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut plane = Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            seen: Vec::new(),
            url: String::new(),
        };
        let line = plane.wait_line(|line| line.starts_with("listening ")).await;
        plane.url = line["listening ".len()..].to_string();
        plane
    }

    /// The first line (already seen or still to come) for which `matches`
    /// holds; panics with everything seen after 20 s.
    async fn wait_line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|line| matches(line)) {
            return line.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                other => panic!(
                    "python control plane: no matching line ({other:?}); seen: {:?}",
                    self.seen
                ),
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Nothing of ours but the agent: python-socketio + aiohttp serve the
/// contract, aiortc + python-socketio view. The agent logs in, connects,
/// accepts, offers and streams through a Socket.IO server it was not
/// developed against, and ends cleanly when the viewer hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_control_plane_and_viewer_stream_from_the_agent() {
    harness::require_test_netns();
    const CAMERA: (&str, &str) = ("cam-py", "camera-token-py-3e1f");
    const CLIENT: (&str, &str) = ("viewer-py", "client-token-py-77aa");
    let mut plane = PythonControlPlane::start(CAMERA, CLIENT).await;
    let scratch = harness::Scratch::new("interop-py").unwrap();
    let token = scratch.token_file(CAMERA.1).unwrap();
    let config = harness::AgentConfig::new(&plane.url, &token)
        .size(640, 480)
        .write(&scratch)
        .unwrap();
    let mut agent = harness::AgentProcess::spawn(&config).unwrap();
    plane
        .wait_line(|line| line == format!("online {}", CAMERA.0))
        .await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/aiortc_viewer.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .args([
            "--url", &plane.url, "--token", CLIENT.1, "--camera", CAMERA.0,
        ])
        .args(["--frames", "30", "--timeout", "30"])
        .output()
        .await
        .expect("python3 must be installed (see tests/requirements.txt)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "aiortc viewer failed\nstdout: {stdout}\nstderr: {}\nagent log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        agent.output().join("\n")
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["frames"].as_u64().unwrap() >= 30, "{report}");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(640), Some(480))
    );
    let id = report["session"].as_str().unwrap().to_string();
    // The session went requested -> streaming -> ended, ended by the viewer.
    plane
        .wait_line(|line| line == format!("state {id} streaming -"))
        .await;
    plane
        .wait_line(|line| line == format!("state {id} ended hangup"))
        .await;
    agent
        .wait_message("teardown done", Some(&id), Duration::from_secs(10))
        .await
        .unwrap();
    eprintln!("python control plane + aiortc viewer: {report}");
    agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    let log = agent.output().join("\n");
    assert!(!log.contains(CAMERA.1), "token leaked into the agent's log");
    plane.stop().await;
}

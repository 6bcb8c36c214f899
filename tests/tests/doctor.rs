//! `camera-agent doctor` against the stand-in control plane: a healthy
//! install, a wrong token, an unreachable control plane and a missing camera
//! each give the right pass/fail lines and hints.

use std::process::Output;
use std::time::Duration;

use testbed::harness::{self, AgentConfig, Scratch};
use testbed::standin::{StandIn, StandInConfig};

const CAMERA: (&str, &str) = ("cam-doctor", "camera-token-doctor");
const CLIENT: (&str, &str) = ("viewer-doctor", "client-token-doctor");

/// Runs `doctor` against `url` with `token`, on the test pattern or, given
/// a `v4l2_device`, on that V4L2 camera.
async fn doctor(url: &str, token: &str, v4l2_device: Option<&str>) -> (Output, String) {
    doctor_with_env(url, token, v4l2_device, &[]).await
}

/// [`doctor`] with extra environment variables.
async fn doctor_with_env(
    url: &str,
    token: &str,
    v4l2_device: Option<&str>,
    env: &[(&str, &str)],
) -> (Output, String) {
    let scratch = Scratch::new("doctor").unwrap();
    let token_file = scratch.token_file(token).unwrap();
    let mut config = AgentConfig::new(url, &token_file);
    if let Some(device) = v4l2_device {
        config = config
            .set("camera.source", "v4l2")
            .set("camera.device", device);
    }
    let config = config.write(&scratch).unwrap();
    let output = tokio::process::Command::new(harness::agent_binary().unwrap())
        .args(["doctor", "--config"])
        .arg(&config)
        .env_remove("SIMPLE_STREAMING")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

async fn standin() -> StandIn {
    StandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        StandInConfig::pair(CAMERA, CLIENT),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_healthy_install_passes_every_check() {
    let standin = standin().await;
    let (output, stdout) = doctor(&standin.url(), CAMERA.1, None).await;
    assert!(output.status.success(), "{stdout}");
    for step in [
        "configuration",
        "streaming mode: webrtc (default)",
        "device token",
        "control plane",
        "login",
        "signaling socket",
        "camera",
        "encoder",
        "test capture",
    ] {
        assert!(
            stdout.contains(&format!("[ ok ] {step}")),
            "{step} did not pass:\n{stdout}"
        );
    }
    assert!(stdout.contains("frames encoded"), "{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    standin.stop().await;
}

#[tokio::test]
async fn the_legacy_mode_and_its_jpeg_path_are_named() {
    let standin = standin().await;
    let (output, stdout) = doctor_with_env(
        &standin.url(),
        CAMERA.1,
        None,
        &[("SIMPLE_STREAMING", "off")],
    )
    .await;
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("[ ok ] streaming mode: legacy_jpeg (environment SIMPLE_STREAMING)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[ ok ] legacy JPEG path: source: test pattern; jpeg: jpegenc"),
        "{stdout}"
    );
    standin.stop().await;
}

#[tokio::test]
async fn a_wrong_token_fails_login_with_a_hint_and_is_not_printed() {
    let standin = standin().await;
    let wrong = "not-the-right-token-42";
    let (output, stdout) = doctor(&standin.url(), wrong, None).await;
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("[FAIL] login: the control plane refused the device token"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hint: the token is wrong or revoked"),
        "{stdout}"
    );
    assert!(stdout.contains("[skip] signaling socket"), "{stdout}");
    assert!(!stdout.contains(wrong), "{stdout}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains(wrong));
    standin.stop().await;
}

#[tokio::test]
async fn an_unreachable_control_plane_is_pinpointed() {
    // A port nothing listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (output, stdout) = tokio::time::timeout(
        Duration::from_secs(60),
        doctor(&format!("http://{addr}"), CAMERA.1, None),
    )
    .await
    .unwrap();
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("[FAIL] control plane: cannot connect"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hint: check the network, firewall"),
        "{stdout}"
    );
    // The local checks still run.
    assert!(stdout.contains("[ ok ] encoder"), "{stdout}");
}

#[tokio::test]
async fn a_missing_camera_is_pinpointed() {
    let standin = standin().await;
    let (output, stdout) =
        doctor(&standin.url(), CAMERA.1, Some("/dev/video-doctor-missing")).await;
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("[FAIL] camera: /dev/video-doctor-missing does not exist"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hint: is the camera plugged in?"),
        "{stdout}"
    );
    assert!(stdout.contains("[FAIL] test capture"), "{stdout}");
    standin.stop().await;
}

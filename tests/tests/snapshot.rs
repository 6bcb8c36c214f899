//! `camera-agent snapshot`: one JPEG through the legacy relay's capture
//! path, decoded here for real; a missing camera and an unwritable path
//! get errors that name them. Needs no network.

use std::process::Command;

use testbed::harness::{self, AgentConfig, Scratch};
use testbed::legacy_viewer::JpegDecoder;

fn snapshot(
    scratch: &Scratch,
    config: AgentConfig,
    out: &std::path::Path,
) -> (Option<i32>, String, String) {
    let config = config.write(scratch).unwrap();
    let output = Command::new(harness::agent_binary().unwrap())
        .args(["snapshot", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(out)
        .env_remove("SIMPLE_STREAMING")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn config(scratch: &Scratch) -> AgentConfig {
    // No control plane is contacted: the URL only has to be valid.
    AgentConfig::new("http://127.0.0.1:9", &scratch.token_file("t").unwrap())
}

#[test]
fn the_test_pattern_is_written_as_a_decodable_jpeg_at_the_configured_size() {
    let scratch = Scratch::new("snapshot-ok").unwrap();
    let out = scratch.dir.join("view.jpg");
    std::fs::write(&out, b"an older picture").unwrap();
    let (code, stdout, stderr) = snapshot(&scratch, config(&scratch).size(1280, 720), &out);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("jpegenc"), "{stdout}");
    let jpeg = std::fs::read(&out).unwrap();
    let (width, height) = JpegDecoder::new().unwrap().decode(&jpeg).unwrap();
    assert_eq!((width, height), (1280, 720));
    // Written by rename: no temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(&scratch.dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains("view.jpg"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_missing_camera_is_named_with_a_hint_and_nothing_is_written() {
    let scratch = Scratch::new("snapshot-missing").unwrap();
    let out = scratch.dir.join("view.jpg");
    let config = config(&scratch)
        .set("camera.source", "v4l2")
        .set("camera.device", "/dev/video-not-here");
    let (code, _, stderr) = snapshot(&scratch, config, &out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/dev/video-not-here"), "{stderr}");
    assert!(stderr.contains("camera-agent probe"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn a_device_that_will_not_open_names_the_process_holding_it() {
    let scratch = Scratch::new("snapshot-held").unwrap();
    let device = scratch.write("video0", "").unwrap();
    // Another process holds the "camera" open, as a streaming daemon would.
    let mut holder = Command::new("sleep")
        .arg("30")
        .stdin(std::fs::File::open(&device).unwrap())
        .spawn()
        .unwrap();
    let config = config(&scratch)
        .set("camera.source", "v4l2")
        .set("camera.device", device.display().to_string());
    let (code, _, stderr) = snapshot(&scratch, config, &scratch.dir.join("view.jpg"));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("held by sleep (pid {})", holder.id())),
        "{stderr}"
    );
}

#[test]
fn an_unwritable_destination_is_named() {
    let scratch = Scratch::new("snapshot-unwritable").unwrap();
    let out = scratch.dir.join("no-such-dir").join("view.jpg");
    let (code, _, stderr) = snapshot(&scratch, config(&scratch).size(320, 240), &out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot write {}", out.display())),
        "{stderr}"
    );
}

//! The binary's command line: `check-config` on good and bad files, and the
//! example configurations in `configs/`.

use std::path::Path;
use std::process::Command;

use testbed::harness::{self, Scratch};

fn check_config(path: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(harness::agent_binary().unwrap())
        .args(["check-config", "--config"])
        .arg(path)
        .env_remove("SIMPLE_STREAMING")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let (code, stdout, stderr) = check_config(&path);
            assert_eq!(code, Some(0), "{}: {stdout}{stderr}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} example configs found");
}

#[test]
fn a_typo_exits_78_and_names_the_key_and_line() {
    let scratch = Scratch::new("cli-typo").unwrap();
    let path = scratch
        .write(
            "agent.toml",
            "[control_plane]\nurl = \"https://x.example\"\ntoken_file = \"/t\"\n[camera]\nframrate = 30\n",
        )
        .unwrap();
    let (code, _, stderr) = check_config(&path);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("framrate"), "{stderr}");
    assert!(stderr.contains("line 5"), "{stderr}");
}

#[test]
fn a_bad_value_exits_78_and_names_the_key() {
    let scratch = Scratch::new("cli-value").unwrap();
    let path = scratch
        .write(
            "agent.toml",
            "[control_plane]\nurl = \"https://x.example\"\ntoken_file = \"/t\"\n[session]\nanswer_timeout = \"fast\"\n",
        )
        .unwrap();
    let (code, _, stderr) = check_config(&path);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("session.answer_timeout"), "{stderr}");
}

#[test]
fn run_refuses_a_token_file_others_can_read_without_printing_it() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("cli-token").unwrap();
    let token = scratch.token_file("super-secret-token-value").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = scratch
        .write(
            "agent.toml",
            &harness::agent_config("http://127.0.0.1:9", &token, 640, 480, "15s", ""),
        )
        .unwrap();
    let output = Command::new(harness::agent_binary().unwrap())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("super-secret-token-value"), "{stderr}");
}

#[test]
fn simple_streaming_off_is_refused_clearly() {
    let scratch = Scratch::new("cli-legacy").unwrap();
    let token = scratch.token_file("t").unwrap();
    let config = scratch
        .write(
            "agent.toml",
            &harness::agent_config("http://127.0.0.1:9", &token, 640, 480, "15s", ""),
        )
        .unwrap();
    let output = Command::new(harness::agent_binary().unwrap())
        .args(["run", "--config"])
        .arg(&config)
        .env("SIMPLE_STREAMING", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("legacy"), "{stderr}");
}

#[test]
fn help_never_mentions_a_token_value_and_version_works() {
    let output = Command::new(harness::agent_binary().unwrap())
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("run"), "{help}");
    assert!(help.contains("check-config"), "{help}");
    let output = Command::new(harness::agent_binary().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

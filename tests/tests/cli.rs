//! The binary's command line: `check-config` on good and bad files, and the
//! example configurations in `configs/`.

use std::path::Path;
use std::process::Command;

use testbed::harness::{self, AgentConfig, Scratch};

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

/// The `[control_plane]` every config needs; tests append what they break.
const BASE: &str = "[control_plane]\nurl = \"https://x.example\"\ntoken_file = \"/t\"\n";

/// `check-config` on `text` must exit 78 with every one of `needles` in
/// its message.
fn assert_refused(name: &str, text: &str, needles: &[&str]) {
    let scratch = Scratch::new(name).unwrap();
    let path = scratch.write("agent.toml", text).unwrap();
    let (code, _, stderr) = check_config(&path);
    assert_eq!(code, Some(78), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
}

/// `camera-agent run` on `config` with extra environment; exit code and stderr.
fn run(config: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(harness::agent_binary().unwrap())
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
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
    let text = format!("{BASE}[camera]\nframrate = 30\n");
    assert_refused("cli-typo", &text, &["framrate", "line 5"]);
}

#[test]
fn a_bad_value_exits_78_and_names_the_key() {
    let text = format!("{BASE}[session]\nanswer_timeout = \"fast\"\n");
    assert_refused("cli-value", &text, &["session.answer_timeout"]);
}

#[test]
fn run_refuses_a_token_file_others_can_read_without_printing_it() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("cli-token").unwrap();
    let token = scratch.token_file("super-secret-token-value").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = AgentConfig::new("http://127.0.0.1:9", &token)
        .write(&scratch)
        .unwrap();
    let (code, stderr) = run(&config, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("super-secret-token-value"), "{stderr}");
}

#[test]
fn simple_streaming_selects_the_mode_over_the_file_and_rejects_non_booleans() {
    let scratch = Scratch::new("cli-legacy").unwrap();
    let token = scratch.token_file("t").unwrap();
    let config = AgentConfig::new("http://127.0.0.1:9", &token)
        .write(&scratch)
        .unwrap();
    let (code, stderr) = run(&config, &[("SIMPLE_STREAMING", "legacy")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("SIMPLE_STREAMING=legacy"), "{stderr}");
    let dropin = scratch.dir.join("agent.toml.d");
    std::fs::create_dir_all(&dropin).unwrap();
    std::fs::write(
        dropin.join("50-streaming.toml"),
        "[streaming]\nsimple = true\n",
    )
    .unwrap();
    let effective = |env: Option<&str>| {
        let mut command = Command::new(harness::agent_binary().unwrap());
        command.args(["check-config", "--config"]).arg(&config);
        match env {
            Some(value) => command.env("SIMPLE_STREAMING", value),
            None => command.env_remove("SIMPLE_STREAMING"),
        };
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let row = stdout
            .lines()
            .find(|line| line.starts_with("simple = "))
            .unwrap_or_else(|| panic!("no streaming.simple row in {stdout}"))
            .to_owned();
        let (value, origin) = row.split_once('#').unwrap();
        (value.trim().to_owned(), origin.trim().to_owned())
    };
    assert_eq!(
        effective(Some("0")),
        (
            "simple = false".into(),
            "environment SIMPLE_STREAMING".into()
        )
    );
    let (value, origin) = effective(None);
    assert_eq!(value, "simple = true");
    assert!(origin.ends_with("50-streaming.toml:2"), "{origin}");
}

#[test]
fn help_never_mentions_a_token_value_and_version_works() {
    // A token reachable every way the agent (or a future flag with an
    // `env` default, whose value clap would print) could find it.
    const FILE_TOKEN: &str = "help-test-file-token-5a1e9d";
    const ENV_TOKEN: &str = "help-test-env-token-c07b42";
    let scratch = Scratch::new("cli-help").unwrap();
    let token_file = scratch.token_file(FILE_TOKEN).unwrap();
    std::fs::copy(&token_file, scratch.dir.join("device-token")).unwrap();
    let config = AgentConfig::new("http://127.0.0.1:9", &token_file)
        .write(&scratch)
        .unwrap();
    let config_arg = config.display().to_string();
    let token_file_arg = token_file.display().to_string();
    let help_of = |args: &[&str]| {
        let output = Command::new(harness::agent_binary().unwrap())
            .args(args)
            .current_dir(&scratch.dir)
            .env("CREDENTIALS_DIRECTORY", &scratch.dir)
            .env("CAMERA_AGENT_CONTROL_PLANE_TOKEN_FILE", &token_file)
            .env("CAMERA_AGENT_CONTROL_PLANE_TOKEN", ENV_TOKEN)
            .env("CAMERA_AGENT_TOKEN", ENV_TOKEN)
            .env("DEVICE_TOKEN", ENV_TOKEN)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut helps = vec![help_of(&["--help"])];
    for command in ["run", "check-config", "doctor", "probe", "snapshot"] {
        helps.push(help_of(&[command, "--help"]));
    }
    helps.push(help_of(&[
        "run",
        "--config",
        &config_arg,
        "--set",
        &format!("control_plane.token_file={token_file_arg}"),
        "--help",
    ]));
    assert!(helps[0].contains("run"), "{}", helps[0]);
    assert!(helps[0].contains("check-config"), "{}", helps[0]);
    assert!(helps[0].contains("snapshot"), "{}", helps[0]);
    for help in &helps {
        assert!(!help.contains(ENV_TOKEN), "token value in help:\n{help}");
        assert!(
            !help.contains(FILE_TOKEN),
            "token file content in help:\n{help}"
        );
    }
    let output = Command::new(harness::agent_binary().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_config_shows_layering_order_and_origins() {
    let scratch = Scratch::new("cli-layers").unwrap();
    let main = scratch
        .write(
            "agent.toml",
            &format!("{BASE}[camera]\nwidth = 640\nheight = 480\nframerate = 30\n"),
        )
        .unwrap();
    std::fs::create_dir_all(scratch.dir.join("agent.toml.d")).unwrap();
    scratch
        .write(
            "agent.toml.d/10-a.toml",
            "[camera]\nwidth = 800\nheight = 600\n",
        )
        .unwrap();
    scratch
        .write("agent.toml.d/20-b.toml", "[camera]\nwidth = 1024\n")
        .unwrap();
    let output = Command::new(harness::agent_binary().unwrap())
        .args(["check-config", "--config"])
        .arg(&main)
        .args(["--set", "camera.framerate=15"])
        .env("CAMERA_AGENT_CAMERA_HEIGHT", "576")
        .env(
            "CAMERA_AGENT_WEBRTC_TURN_SERVERS",
            "[\"turn://user:hunter2@turn.example:3478\"]",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let line = |key: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no {key} in\n{stdout}"))
            .to_string()
    };
    assert!(
        line("width").contains("1024") && line("width").contains("20-b.toml:2"),
        "{stdout}"
    );
    assert!(
        line("height").contains("576")
            && line("height").contains("environment CAMERA_AGENT_CAMERA_HEIGHT"),
        "{stdout}"
    );
    assert!(
        line("framerate").contains("15") && line("framerate").contains("--set camera.framerate=15"),
        "{stdout}"
    );
    assert!(line("url").contains("agent.toml:2"), "{stdout}");
    assert!(line("answer_timeout").contains("# default"), "{stdout}");
    assert!(
        !stdout.contains("hunter2"),
        "TURN credentials printed:\n{stdout}"
    );
    assert!(line("turn_servers").contains("<redacted>"), "{stdout}");
}

#[test]
fn a_wrong_type_in_a_drop_in_names_the_file_and_line() {
    let scratch = Scratch::new("cli-dropin").unwrap();
    let main = scratch.write("agent.toml", BASE).unwrap();
    std::fs::create_dir_all(scratch.dir.join("agent.toml.d")).unwrap();
    scratch
        .write(
            "agent.toml.d/50-size.toml",
            "# size\n[camera]\nwidth = \"wide\"\n",
        )
        .unwrap();
    let (code, _, stderr) = check_config(&main);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("50-size.toml"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("width"), "{stderr}");
}

#[test]
fn an_out_of_range_value_from_a_file_names_file_line_and_key() {
    let text = format!("{BASE}[camera]\nframerate = 500\n");
    assert_refused(
        "cli-range",
        &text,
        &["agent.toml:5", "camera.framerate", "500"],
    );
}

#[test]
fn no_camera_at_start_exits_1_so_systemd_retries() {
    let scratch = Scratch::new("cli-nocamera").unwrap();
    let token = scratch.token_file("t").unwrap();
    let config = AgentConfig::new("http://127.0.0.1:9", &token)
        .set("camera.source", "auto")
        .write(&scratch)
        .unwrap();
    let (code, stderr) = run(&config, &[]);
    // This machine has no camera (probe says so); a device that has one
    // would start and try to log in instead.
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no usable camera"), "{stderr}");
}

/// The error chain `main` printed: the `error:` line, then each `caused by:`
/// line, without their prefixes. Fails when a line repeats the one before
/// it (a cause shown twice) or when there is no error at all.
fn printed_chain(stderr: &str) -> Vec<&str> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter_map(|line| {
            line.strip_prefix("error: ")
                .or_else(|| line.strip_prefix("  caused by: "))
        })
        .collect();
    assert!(!lines.is_empty(), "no error printed: {stderr}");
    for pair in lines.windows(2) {
        assert!(
            !pair[0].ends_with(pair[1]),
            "{:?} repeats the line before it in:\n{stderr}",
            pair[1]
        );
    }
    lines
}

#[test]
fn an_error_chain_shows_each_cause_once() {
    const NO_FILE: &str = "No such file or directory";
    let scratch = Scratch::new("cli-chain").unwrap();
    // A missing config file.
    let missing = scratch.dir.join("missing.toml");
    let (code, _, stderr) = check_config(&missing);
    assert_eq!(code, Some(78), "{stderr}");
    let chain = printed_chain(&stderr);
    assert!(chain[0].contains("missing.toml"), "{stderr}");
    assert_eq!(stderr.matches(NO_FILE).count(), 1, "{stderr}");
    // A missing CA file: the key and path, then the OS's reason, once.
    let token = scratch.token_file("t").unwrap();
    let ca_file = scratch.dir.join("missing-ca.pem");
    let config = AgentConfig::new("http://127.0.0.1:9", &token)
        .set("control_plane.ca_file", ca_file.display().to_string())
        .write(&scratch)
        .unwrap();
    let (code, stderr) = run(&config, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    let chain = printed_chain(&stderr);
    assert!(
        chain[0].contains("control_plane.ca_file") && chain[0].contains("missing-ca.pem"),
        "{stderr}"
    );
    assert_eq!(
        chain.last(),
        Some(&format!("{NO_FILE} (os error 2)").as_str())
    );
    assert_eq!(stderr.matches(NO_FILE).count(), 1, "{stderr}");
}

#[test]
fn probe_shows_the_legacy_jpeg_path_and_the_configured_mode() {
    let scratch = Scratch::new("cli-probe-legacy").unwrap();
    let token = scratch.token_file("t").unwrap();
    let config = AgentConfig::new("http://127.0.0.1:9", &token)
        .set("streaming.simple", false)
        .write(&scratch)
        .unwrap();
    let output = Command::new(harness::agent_binary().unwrap())
        .args(["probe", "--json", "--config"])
        .arg(&config)
        .env_remove("SIMPLE_STREAMING")
        .output()
        .unwrap();
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["streaming_mode"], "legacy_jpeg", "{report}");
    let jpeg = &report["legacy_jpeg_plan"]["ok"];
    assert_eq!(jpeg["encoder"], "jpegenc", "{report}");
    let text = report["legacy_jpeg_plan"]["text"].as_str().unwrap();
    assert!(text.starts_with("videotestsrc"), "{text}");
    assert!(text.ends_with("jpegenc quality=85 ! appsink"), "{text}");
}

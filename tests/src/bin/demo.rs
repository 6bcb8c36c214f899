//! The main job on one machine with no hardware: the stand-in control
//! plane, the real agent on the test pattern, and a viewer that requests a
//! stream, reports frames and time to first frame, then hangs up.
//!
//! Run it through `scripts/demo.sh`, which makes the network namespace.
//! With `--browser` (`scripts/demo.sh --browser`) it runs on the host's own
//! network instead and serves the viewer page, for a person to watch in a
//! browser on this machine or the LAN, until Ctrl-C.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use std::collections::HashMap;

use testbed::harness::{self, Bed};
use testbed::standin::{SessionState, StandIn, StandInConfig};
use testbed::viewer::Viewer;
use testbed::viewer_page::viewer_url;

#[derive(Debug, Parser)]
#[command(about = "Stream the test pattern from camera-agent to a viewer, end to end")]
struct Args {
    /// Frames to decode before hanging up.
    #[arg(long, default_value_t = 150)]
    frames: u64,
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 480)]
    height: u32,
    /// Print the agent's log lines as they come.
    #[arg(long)]
    verbose: bool,
    /// Serve the viewer page on the host's addresses and print its URL,
    /// instead of the scripted viewer; stays up until Ctrl-C.
    #[arg(long)]
    browser: bool,
    /// With --browser: the address and port to serve on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    bind: std::net::SocketAddr,
    /// With --browser: the rollback mode, the agent with
    /// `SIMPLE_STREAMING=0` and the control plane relaying its JPEGs.
    #[arg(long, requires = "browser")]
    legacy: bool,
}

const CAMERA: (&str, &str) = ("cam-demo", "demo-camera-token");
const CLIENT: (&str, &str) = ("viewer-demo", "demo-client-token");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.verbose {
        // SAFETY: set before any other thread of ours reads the environment.
        unsafe { std::env::set_var("CAMERA_AGENT_TEST_ECHO", "1") };
    }
    if args.browser {
        return browser(&args).await;
    }
    let Bed {
        standin,
        mut agent,
        scratch: _scratch,
    } = Bed::start(
        "demo",
        StandInConfig::pair(CAMERA, CLIENT),
        CAMERA,
        |config| config.size(args.width, args.height),
    )
    .await
    .context("cannot start the demo (run it through scripts/demo.sh)")?;
    println!("control plane  {}", standin.url());
    println!(
        "agent          pid {} connected as {}",
        agent.pid(),
        CAMERA.0
    );
    let mut viewer = Viewer::connect(&standin.url(), CLIENT.1).await?;
    let report = viewer
        .watch(CAMERA.0, args.frames, Duration::from_secs(60))
        .await?;
    let first = report.stats.first_frame.unwrap_or_default();
    println!(
        "session        {}: {} frames of {}x{} decoded, first frame {:.0} ms after POST /streams",
        report.session_id,
        report.stats.frames,
        report.stats.width,
        report.stats.height,
        first.as_secs_f64() * 1000.0
    );
    viewer.end(&report.session_id).await?;
    let done = agent
        .wait_message(
            "teardown done",
            Some(&report.session_id),
            Duration::from_secs(10),
        )
        .await?;
    println!(
        "teardown       done, live sessions now {}",
        done["live_sessions"]
    );
    viewer.close().await;
    agent.signal(harness::SIGTERM)?;
    let code = agent.wait_exit(Duration::from_secs(5)).await?;
    println!("agent          exited with {code:?}");
    standin.stop().await;
    Ok(())
}

/// The stand-in on the host's own addresses, the agent on the test pattern
/// and the viewer page's URL; sessions are reported as they come and go.
async fn browser(args: &Args) -> anyhow::Result<()> {
    testbed::viewer_page::check_installed()?;
    let mut standin_config = StandInConfig::pair(CAMERA, CLIENT);
    if args.legacy {
        standin_config = standin_config.legacy();
    }
    let standin = StandIn::start(args.bind, standin_config)
        .await
        .with_context(|| format!("cannot serve on {} (try --bind)", args.bind))?;
    let port = standin.addr().port();
    let scratch = harness::Scratch::new("demo-browser")?;
    let token = scratch.token_file(CAMERA.1)?;
    let agent_url = format!("http://127.0.0.1:{port}");
    let config = scratch.write(
        "agent.toml",
        &harness::AgentConfig::new(&agent_url, &token)
            .size(args.width, args.height)
            .to_toml(),
    )?;
    let env: &[(&str, &str)] = if args.legacy {
        &[("SIMPLE_STREAMING", "0")]
    } else {
        &[]
    };
    let mut agent = harness::AgentProcess::spawn_with_env(&config, env)?;
    if !standin
        .wait_for(Duration::from_secs(20), |s| s.online(CAMERA.0))
        .await
    {
        anyhow::bail!(
            "the agent never connected; log:\n{}",
            agent.output().join("\n")
        );
    }
    let host = if args.bind.ip().is_unspecified() {
        first_host_address().unwrap_or_else(|| "127.0.0.1".into())
    } else {
        args.bind.ip().to_string()
    };
    let url = viewer_url(
        &format!("http://{host}:{port}"),
        CLIENT.1,
        CAMERA.0,
        None,
        false,
    );
    println!(
        "agent          pid {} connected as {}",
        agent.pid(),
        CAMERA.0
    );
    println!("open           {url}&autostart=1");
    println!("               (Ctrl-C to stop; the page and its tokens are for this demo only)");
    let mut seen: HashMap<String, SessionState> = HashMap::new();
    loop {
        let changed = {
            let seen = seen.clone();
            standin.wait_for(Duration::from_secs(3600), move |s| {
                s.sessions()
                    .iter()
                    .any(|session| seen.get(&session.id) != Some(&session.state))
            })
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = changed => {}
        }
        let mut sessions = standin.sessions();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        for session in sessions {
            if seen.insert(session.id.clone(), session.state) != Some(session.state) {
                println!(
                    "session        {}: {}{}",
                    session.id,
                    session.state.as_str(),
                    session
                        .end_reason
                        .map(|reason| format!(" ({reason})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    agent.signal(harness::SIGTERM)?;
    let code = agent.wait_exit(Duration::from_secs(5)).await?;
    println!("agent          exited with {code:?}");
    standin.stop().await;
    Ok(())
}

/// The host's first global IPv4 address, as `ip` lists it.
fn first_host_address() -> Option<String> {
    let output = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global", "up"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "inet")?;
            words.next()?.split('/').next().map(str::to_owned)
        })
}

//! The main job on one machine with no hardware: the stand-in control
//! plane, the real agent on the test pattern, and a viewer that requests a
//! stream, reports frames and time to first frame, then hangs up.
//!
//! Run it through `scripts/demo.sh`, which makes the network namespace.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use testbed::harness::{self, Bed};
use testbed::standin::StandInConfig;
use testbed::viewer::Viewer;

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

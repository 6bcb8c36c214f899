//! The benchmark behind `docs/benchmarks.md`: time to first frame, teardown
//! time, RSS and CPU of the agent on the test pattern, with figures printed
//! as a Markdown table. Not a test: it asserts nothing, it measures.
//!
//! Run it through `scripts/bench.sh` (release build, network namespace).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::time::Instant;

use testbed::browser_viewer::BrowserViewer;
use testbed::harness::{self, AgentProcess, Bed, ProcCounts};
use testbed::measure::{cpu_over, median};
use testbed::standin::{StandIn, StandInConfig};
use testbed::viewer::Viewer;

#[derive(Debug, Parser)]
#[command(about = "Measure camera-agent: first frame, teardown, RSS, CPU")]
struct Args {
    /// Sessions for the first-frame and teardown figures.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Seconds of streaming for the CPU and RSS figures.
    #[arg(long, default_value_t = 10)]
    cpu_seconds: u64,
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 480)]
    height: u32,
    /// Instead of the streaming figures: stop the control plane this many
    /// seconds, count the agent's reconnect attempts, restart it and time
    /// the agent's return.
    #[arg(long)]
    outage: Option<u64>,
    /// Instead of the streaming figures: the viewer page in headless
    /// Chromium, `--sessions` times Watch / Hang up on one page, and the
    /// page's time to first frame.
    #[arg(long)]
    browser: bool,
}

const CAMERA: (&str, &str) = ("cam-bench", "bench-camera-token");
const CLIENT: (&str, &str) = ("viewer-bench", "bench-client-token");

/// The same capture and encode as the agent's plan, alone in gst-launch.
async fn reference_cpu(args: &Args, warmup: Duration, window: Duration) -> anyhow::Result<f64> {
    let caps = format!(
        "video/x-raw,width={},height={},framerate=30/1",
        args.width, args.height
    );
    let launch = format!(
        "videotestsrc is-live=true pattern=smpte ! {caps} ! queue max-size-buffers=2 \
         max-size-bytes=0 max-size-time=0 leaky=downstream ! videoconvert ! video/x-raw,format=I420 ! \
         x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=60 bframes=0 ! \
         video/x-h264,profile=constrained-baseline ! h264parse config-interval=-1 ! \
         rtph264pay config-interval=-1 aggregate-mode=zero-latency pt=96 mtu=1200 ! fakesink"
    );
    let mut child = tokio::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(launch.split_whitespace())
        .kill_on_drop(true)
        .spawn()
        .context("gst-launch-1.0 (gstreamer1.0-tools) is needed for the reference")?;
    let pid = child.id().context("no pid")?;
    let cpu = cpu_over(pid, warmup, window).await;
    child.kill().await.ok();
    cpu
}

/// Connection attempts the agent makes while the control plane is down, and
/// how long after its return the agent is connected again.
async fn outage(
    standin: std::sync::Arc<StandIn>,
    mut agent: AgentProcess,
    length: Duration,
) -> anyhow::Result<()> {
    let addr = standin.addr();
    let lost_before = count_lost(&agent);
    standin.stop().await;
    tokio::time::sleep(length).await;
    let attempts = count_lost(&agent) - lost_before;
    let back = Instant::now();
    let standin = StandIn::start(addr, StandInConfig::pair(CAMERA, CLIENT)).await?;
    if !standin
        .wait_for(Duration::from_secs(60), |s| s.online(CAMERA.0))
        .await
    {
        bail!("agent did not come back");
    }
    let ready = back.elapsed();
    println!("| figure | measured |");
    println!("| --- | --- |");
    println!(
        "| connection attempts during a {} s outage | {attempts} |",
        length.as_secs()
    );
    println!(
        "| control plane back -> agent connected | {:.0} ms |",
        ready.as_secs_f64() * 1000.0
    );
    agent.signal(harness::SIGTERM)?;
    agent.wait_exit(Duration::from_secs(5)).await?;
    standin.stop().await;
    Ok(())
}

/// The agent's lifecycle steps of one session, as `(step, elapsed_ms)`
/// from its log: where the time to first frame goes.
const STEPS: [&str; 7] = [
    "accepted",
    "pipeline playing",
    "offer sent",
    "answer applied",
    "ice connected",
    "dtls connected",
    "first media",
];

fn step_times(agent: &AgentProcess, session_id: &str) -> Vec<Option<f64>> {
    let records = agent.records();
    STEPS
        .iter()
        .map(|step| {
            records
                .iter()
                .find(|record| {
                    record["session_id"] == session_id
                        && match *step {
                            "ice connected" => {
                                // The notify may read the state after it moved on.
                                record["message"] == "ice state"
                                    && (record["state"] == "Connected"
                                        || record["state"] == "Completed")
                            }
                            _ => record["message"] == *step,
                        }
                })
                .and_then(|record| record["elapsed_ms"].as_f64())
        })
        .collect()
}

/// The page in headless Chromium: first frame over `sessions` Watch / Hang
/// up rounds on one page, as its overlay shows it to a person.
async fn browser(
    standin: &StandIn,
    agent: &mut AgentProcess,
    idle: ProcCounts,
    sessions: usize,
) -> anyhow::Result<()> {
    let url = testbed::viewer_page::viewer_url(&standin.url(), CLIENT.1, CAMERA.0, None, false);
    let viewer = BrowserViewer::open(&url).await?;
    let mut first_frames = Vec::new();
    for round in 1..=sessions {
        let stats = viewer.watch_until(30, Duration::from_secs(30)).await?;
        let first = stats.first_frame_ms.context("no first frame")?;
        first_frames.push(first);
        let id = stats.session_id.clone().unwrap_or_default();
        viewer.hang_up().await?;
        agent
            .wait_message("teardown done", Some(&id), Duration::from_secs(10))
            .await?;
        harness::wait_counts(agent.pid(), idle, Duration::from_secs(20)).await?;
        let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
        eprintln!(
            "session {round}: first frame {first:.1} ms ({}), {}x{}, ICE pair {}/{} -> {}/{}",
            text(&stats.first_frame_source),
            stats.frame_width.unwrap_or_default(),
            stats.frame_height.unwrap_or_default(),
            text(&stats.local_candidate_type),
            text(&stats.local_protocol),
            text(&stats.remote_candidate_type),
            text(&stats.remote_protocol),
        );
    }
    viewer.close().await;
    agent.signal(harness::SIGTERM)?;
    agent.wait_exit(Duration::from_secs(5)).await?;
    standin.stop().await;
    let mut sorted = first_frames.clone();
    println!("| figure | measured |");
    println!("| --- | --- |");
    println!(
        "| headless Chromium page: POST /streams -> first frame, median of {sessions} (min / max) | {:.1} ms ({:.1} / {:.1}) |",
        median(&mut sorted),
        sorted.first().copied().unwrap_or_default(),
        sorted.last().copied().unwrap_or_default()
    );
    Ok(())
}

/// Failed connection attempts so far (one warning each).
fn count_lost(agent: &AgentProcess) -> usize {
    agent
        .records()
        .iter()
        .filter(|record| record["message"] == "signaling connection lost")
        .count()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let outage_run = args.outage.is_some();
    let Bed {
        standin,
        mut agent,
        scratch: _scratch,
    } = Bed::start(
        "bench",
        StandInConfig::pair(CAMERA, CLIENT),
        CAMERA,
        |config| {
            let config = config.size(args.width, args.height);
            if outage_run {
                // The outage figures are for the shipped reconnect policy (30 s
                // cap), not the tests' quick one.
                config.unset("control_plane.reconnect_max")
            } else {
                config
            }
        },
    )
    .await
    .context("run through scripts/bench.sh")?;
    let pid = agent.pid();
    if let Some(seconds) = args.outage {
        return outage(standin, agent, Duration::from_secs(seconds)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle: ProcCounts = harness::proc_counts(pid)?;
    if args.browser {
        return browser(&standin, &mut agent, idle, args.sessions).await;
    }
    let rss_idle = harness::rss_kib(pid)?;
    let anon_idle = harness::rss_anon_kib(pid)?;
    let mut viewer = Viewer::connect(&standin.url(), CLIENT.1).await?;

    let mut first_frames = Vec::new();
    let mut teardowns = Vec::new();
    let mut rss_after_first = 0;
    let mut anon_after_first = 0;
    let mut steps: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
    let mut first_session_steps = Vec::new();
    for round in 0..args.sessions {
        let report = viewer.watch(CAMERA.0, 30, Duration::from_secs(30)).await?;
        let first = report.stats.first_frame.context("no first frame")?;
        first_frames.push(first.as_secs_f64() * 1000.0);
        let ended = Instant::now();
        viewer.end(&report.session_id).await?;
        let settle = harness::wait_counts(pid, idle, Duration::from_secs(20)).await?;
        let settle_ms = (ended.elapsed().max(settle)).as_secs_f64() * 1000.0;
        teardowns.push(settle_ms);
        agent
            .wait_message(
                "teardown done",
                Some(&report.session_id),
                Duration::from_secs(5),
            )
            .await?;
        if round == 0 {
            rss_after_first = harness::rss_kib(pid)?;
            anon_after_first = harness::rss_anon_kib(pid)?;
            first_session_steps = step_times(&agent, &report.session_id);
        } else {
            // The first session pays one-off costs; the steps are for the rest.
            for (times, time) in steps.iter_mut().zip(step_times(&agent, &report.session_id)) {
                times.extend(time);
            }
        }
        eprintln!(
            "session {}: first frame {:.1} ms, back to idle fds/threads {:.1} ms after end, \
             RSS {} KiB (anonymous {} KiB)",
            round + 1,
            first.as_secs_f64() * 1000.0,
            settle_ms,
            harness::rss_kib(pid)?,
            harness::rss_anon_kib(pid)?
        );
    }
    let rss_after_all = harness::rss_kib(pid)?;
    let anon_after_all = harness::rss_anon_kib(pid)?;

    // CPU and RSS while streaming: one long session, sampled mid-stream.
    let window = Duration::from_secs(args.cpu_seconds);
    let warmup = Duration::from_secs(2);
    let requested = Instant::now();
    let session_id = viewer.request(CAMERA.0).await?;
    let sampler = tokio::spawn(async move {
        let cpu = cpu_over(pid, warmup, window).await;
        let rss = harness::rss_kib(pid).and_then(|rss| Ok((rss, harness::rss_anon_kib(pid)?)));
        (cpu, rss)
    });
    let stats = viewer
        .play(
            &session_id,
            requested,
            None,
            warmup + window + Duration::from_secs(1),
        )
        .await?;
    let (agent_cpu, rss_streaming) = sampler.await?;
    let (agent_cpu, (rss_streaming, anon_streaming)) = (agent_cpu?, rss_streaming?);
    viewer.end(&session_id).await?;
    agent
        .wait_message("teardown done", Some(&session_id), Duration::from_secs(5))
        .await?;
    // The same comparison under the same load: a second session with the
    // reference running beside it, both measured over one window, so the
    // viewer's decoding and the machine's other load weigh on both.
    let requested = Instant::now();
    let session_id = viewer.request(CAMERA.0).await?;
    let (played, agent_cpu_shared, reference_shared) = tokio::join!(
        viewer.play(
            &session_id,
            requested,
            None,
            warmup + window + Duration::from_secs(1),
        ),
        cpu_over(pid, warmup, window),
        reference_cpu(&args, warmup, window),
    );
    // A session that did not stream makes the window's figures meaningless.
    played.context("the side-by-side session")?;
    let (agent_cpu_shared, reference_shared) = (agent_cpu_shared?, reference_shared?);
    viewer.end(&session_id).await?;
    agent
        .wait_message("teardown done", Some(&session_id), Duration::from_secs(5))
        .await?;
    viewer.close().await;
    let reference = reference_cpu(&args, warmup, window).await?;

    agent.signal(harness::SIGTERM)?;
    agent.wait_exit(Duration::from_secs(5)).await?;
    standin.stop().await;

    let mut sorted_first = first_frames.clone();
    let mut sorted_teardown = teardowns.clone();
    let fps = stats.frames as f64 / (warmup + window).as_secs_f64();
    println!("| figure | measured |");
    println!("| --- | --- |");
    println!(
        "| POST /streams -> first decoded frame, median of {} (min / max) | {:.1} ms ({:.1} / {:.1}) |",
        args.sessions,
        median(&mut sorted_first),
        sorted_first.first().copied().unwrap_or_default(),
        sorted_first.last().copied().unwrap_or_default()
    );
    println!(
        "| end -> fds and threads back to idle, median (max) | {:.1} ms ({:.1} ms) |",
        median(&mut sorted_teardown),
        sorted_teardown.last().copied().unwrap_or_default()
    );
    println!("| idle fds / threads | {} / {} |", idle.fds, idle.threads);
    println!(
        "| RSS idle / streaming | {:.1} / {:.1} MiB |",
        rss_idle as f64 / 1024.0,
        rss_streaming as f64 / 1024.0
    );
    println!(
        "| anonymous RSS idle / streaming | {:.1} / {:.1} MiB |",
        anon_idle as f64 / 1024.0,
        anon_streaming as f64 / 1024.0
    );
    println!(
        "| RSS after session 1 / after session {} | {:.1} / {:.1} MiB |",
        args.sessions,
        rss_after_first as f64 / 1024.0,
        rss_after_all as f64 / 1024.0
    );
    println!(
        "| anonymous RSS after session 1 / after session {} | {:.1} / {:.1} MiB |",
        args.sessions,
        anon_after_first as f64 / 1024.0,
        anon_after_all as f64 / 1024.0
    );
    let cpu_row = |label: &str, agent: f64, reference: f64| {
        println!(
            "| {label} | {agent:.2} s / {reference:.2} s over {} s = {:.2} |",
            window.as_secs(),
            agent / reference
        );
    };
    cpu_row(
        "CPU streaming (agent) / capture+x264 alone afterwards",
        agent_cpu,
        reference,
    );
    cpu_row(
        "CPU, agent streaming beside the reference (same window)",
        agent_cpu_shared,
        reference_shared,
    );
    println!("| frames decoded during the CPU window | {:.1} fps |", fps);
    println!();
    println!(
        "| agent step, ms after stream:requested | session 1 | median of sessions 2..{} |",
        args.sessions
    );
    println!("| --- | --- | --- |");
    for (index, (step, times)) in STEPS.iter().zip(steps.iter_mut()).enumerate() {
        let first = first_session_steps
            .get(index)
            .copied()
            .flatten()
            .map_or("-".to_string(), |ms| format!("{ms:.0}"));
        let rest = if times.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", median(times))
        };
        println!("| {step} | {first} | {rest} |");
    }
    Ok(())
}

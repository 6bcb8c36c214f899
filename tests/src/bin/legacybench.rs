//! The legacy relay's figures for `docs/benchmarks.md`: frame rate, JPEG
//! size, time to first frame, teardown back to idle, RSS and CPU, at each
//! size asked for, measured like the WebRTC ones (`bench`): the release
//! agent on the test pattern, the stand-in in legacy mode, the decoding
//! legacy viewer. Not a test: it asserts nothing, it measures.
//!
//! Run it through `scripts/bench.sh --legacy` (release build, namespace).

use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Parser;

use testbed::harness::{self, Bed};
use testbed::legacy_viewer::LegacyViewer;
use testbed::measure::{cpu_over, median};
use testbed::standin::StandInConfig;

#[derive(Debug, Parser)]
#[command(about = "Measure camera-agent's legacy JPEG relay")]
struct Args {
    /// Sessions per size for first frame and teardown.
    #[arg(long, default_value_t = 5)]
    sessions: usize,
    /// Seconds of one session per size for rate, size, CPU and RSS.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// `streaming.legacy_fps`.
    #[arg(long, default_value_t = 2)]
    fps: u32,
    /// Sizes, `WIDTHxHEIGHT`.
    #[arg(long, value_delimiter = ',', default_value = "640x480,1280x720")]
    sizes: Vec<String>,
}

const CAMERA: (&str, &str) = ("cam-legacy-bench", "legacy-bench-camera-token");
const CLIENT: (&str, &str) = ("viewer-legacy-bench", "legacy-bench-client-token");

fn size(text: &str) -> anyhow::Result<(u32, u32)> {
    let (width, height) = text
        .split_once('x')
        .with_context(|| format!("size {text:?} is not WIDTHxHEIGHT"))?;
    Ok((width.parse()?, height.parse()?))
}

async fn measure(args: &Args, (width, height): (u32, u32)) -> anyhow::Result<()> {
    let bed = Bed::start(
        "legacybench",
        StandInConfig::pair(CAMERA, CLIENT).legacy(),
        CAMERA,
        |config| {
            config
                .size(width, height)
                .set("streaming.simple", false)
                .set("streaming.legacy_fps", args.fps)
        },
    )
    .await
    .context("run through scripts/bench.sh --legacy")?;
    let pid = bed.agent.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = harness::proc_counts(pid)?;
    let rss_idle = harness::rss_kib(pid)?;
    let mut viewer = LegacyViewer::connect(&bed.standin.url(), CLIENT.0, CLIENT.1).await?;
    let mut first_frames = Vec::new();
    let mut teardowns = Vec::new();
    for _ in 0..args.sessions {
        let requested = SystemTime::now();
        let id = viewer.request(CAMERA.0).await?;
        let log = viewer.frames_until(&id, 1, Duration::from_secs(15)).await?;
        let first = log.frames[0].received_at.duration_since(requested)?;
        first_frames.push(first.as_secs_f64() * 1000.0);
        let ended = tokio::time::Instant::now();
        viewer.hang_up(&id).await?;
        let settle = harness::wait_counts(pid, idle, Duration::from_secs(20)).await?;
        teardowns.push(ended.elapsed().max(settle).as_secs_f64() * 1000.0);
        bed.agent
            .wait_message("teardown done", Some(&id), Duration::from_secs(5))
            .await?;
    }
    // One long session: rate and size from the frames, CPU and RSS from
    // the agent over the same window.
    let window = Duration::from_secs(args.seconds);
    let id = viewer.request(CAMERA.0).await?;
    let (log, cpu) = tokio::join!(
        viewer.collect(&id, window + Duration::from_secs(2)),
        cpu_over(pid, Duration::from_secs(2), window)
    );
    let (log, cpu) = (log?, cpu?);
    let rss_streaming = harness::rss_kib(pid)?;
    viewer.hang_up(&id).await?;
    let record = bed
        .agent
        .wait_message("frames", Some(&id), Duration::from_secs(5))
        .await?;
    harness::wait_counts(pid, idle, Duration::from_secs(20)).await?;
    viewer.close().await;
    let span = match (log.frames.first(), log.frames.last()) {
        (Some(first), Some(last)) => last.captured_at.duration_since(first.captured_at)?,
        _ => Duration::ZERO,
    };
    let fps = log.frames.len().saturating_sub(1) as f64 / span.as_secs_f64().max(1e-9);
    let mut lengths: Vec<f64> = log
        .frames
        .iter()
        .map(|frame| frame.jpeg_len as f64)
        .collect();
    let mean = lengths.iter().sum::<f64>() / lengths.len().max(1) as f64;
    let max = lengths.iter().copied().fold(0.0, f64::max);
    let kbit = mean * 8.0 * fps / 1000.0;
    println!("| {width}x{height} @ legacy_fps {} | measured |", args.fps);
    println!("| --- | --- |");
    println!(
        "| frames received over {} s / rate | {} / {fps:.2} fps |",
        window.as_secs() + 2,
        log.frames.len()
    );
    println!(
        "| JPEG size median / mean / max | {:.1} / {:.1} / {:.1} KB ({kbit:.0} kbit/s before base64) |",
        median(&mut lengths) / 1000.0,
        mean / 1000.0,
        max / 1000.0
    );
    println!(
        "| POST /streams -> first frame at the viewer, median of {} (min / max) | {:.1} ms ({:.1} / {:.1}) |",
        args.sessions,
        median(&mut first_frames),
        first_frames.first().copied().unwrap_or_default(),
        first_frames.last().copied().unwrap_or_default()
    );
    println!(
        "| end -> fds and threads back to idle, median (max) | {:.1} ms ({:.1} ms) |",
        median(&mut teardowns),
        teardowns.last().copied().unwrap_or_default()
    );
    println!(
        "| idle fds / threads (after every session) | {} / {} |",
        idle.fds, idle.threads
    );
    println!(
        "| RSS idle / streaming | {:.1} / {:.1} MiB |",
        rss_idle as f64 / 1024.0,
        rss_streaming as f64 / 1024.0
    );
    println!(
        "| agent CPU while streaming | {cpu:.2} s over {} s ({:.1} %) |",
        window.as_secs(),
        cpu / window.as_secs_f64() * 100.0
    );
    println!(
        "| agent's count: sent / dropped busy / skipped oversize | {} / {} / {} |",
        record["frames_sent"], record["frames_dropped_busy"], record["frames_skipped_oversize"]
    );
    println!();
    let mut agent = bed.agent;
    agent.signal(harness::SIGTERM)?;
    agent.wait_exit(Duration::from_secs(5)).await?;
    bed.standin.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for text in &args.sizes {
        measure(&args, size(text)?).await?;
    }
    Ok(())
}

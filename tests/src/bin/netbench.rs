//! The network table of `docs/benchmarks.md`: the agent at 640x480@30 on
//! the test pattern, watched by headless Chromium, on a free link, under
//! random loss, through a 700 kbit/s bottleneck (squeeze and recovery) and
//! through TURN only. Every figure is the viewer's own (`getStats`). Not a
//! test: it asserts nothing, it measures.
//!
//! Run it through `scripts/bench.sh` (release agent, network namespace);
//! `CAMERA_AGENT_BIN` picks another agent binary to compare.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;

use testbed::browser_viewer::BrowserViewer;
use testbed::harness::Bed;
use testbed::link_quality::Window;
use testbed::netem::{RelayOnly, UdpBottleneck, UdpLoss};
use testbed::standin::StandInConfig;
use testbed::turn::{self, TurnServer, TurnTransport};
use testbed::viewer_page::viewer_url;

#[derive(Debug, Parser)]
#[command(about = "Measure camera-agent on bad links, as headless Chromium sees it")]
struct Args {
    /// Seconds each condition is measured.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

const CAMERA: (&str, &str) = ("cam-netbench", "netbench-camera-token");
const CLIENT: (&str, &str) = ("viewer-netbench", "netbench-client-token");
const SECOND: Duration = Duration::from_secs(1);

/// One row of the table.
struct Row {
    condition: String,
    window: Window,
    first_frame_ms: Option<f64>,
    note: String,
}

impl Row {
    fn print(&self) {
        let (rtt, rtt_max) = self.window.rtt_ms();
        let ms = |value: Option<f64>| value.map_or("-".into(), |value| format!("{value:.0}"));
        println!(
            "| {} | {:.1} | {:.2} | {:.2} | {:.0} | {} / {} | {} | {} |",
            self.condition,
            self.window.fps(),
            self.window
                .frozen_seconds()
                .max(self.window.longest_stall()),
            self.window.worst_frozen_in(Duration::from_secs(15)),
            self.window.bitrate_kbps(),
            ms(rtt),
            ms(rtt_max),
            ms(self.first_frame_ms),
            self.note
        );
    }
}

async fn bed(name: &str, ice_servers: Vec<Value>) -> anyhow::Result<Bed> {
    let mut standin = StandInConfig::pair(CAMERA, CLIENT);
    standin.ice_servers = ice_servers;
    Bed::start(name, standin, CAMERA, |config| config.size(640, 480)).await
}

/// Opens the page and watches until the first frames; the first frame's
/// time as the page measured it.
async fn watch(bed: &Bed, ice: Option<&Value>, relay: bool) -> anyhow::Result<BrowserViewer> {
    let url = viewer_url(&bed.standin.url(), CLIENT.1, CAMERA.0, ice, relay);
    let viewer = BrowserViewer::open(&url).await?;
    viewer
        .watch_until(30, Duration::from_secs(30))
        .await
        .with_context(|| format!("agent log:\n{}", bed.agent.output().join("\n")))?;
    Ok(viewer)
}

async fn first_frame(viewer: &BrowserViewer) -> anyhow::Result<Option<f64>> {
    Ok(viewer.stats().await?.first_frame_ms)
}

async fn random_loss(bed: &Bed, percent: f64, span: Duration) -> anyhow::Result<Row> {
    let viewer = watch(bed, None, false).await?;
    let first = first_frame(&viewer).await?;
    let loss = UdpLoss::start(percent)?;
    tokio::time::sleep(2 * SECOND).await;
    let window = Window::sample(&viewer, span, SECOND).await?;
    let measured = loss.counters()?.dropped_percent();
    drop(loss);
    viewer.hang_up().await?;
    viewer.close().await;
    Ok(Row {
        condition: format!("{percent} % loss both ways"),
        note: format!("{measured:.1} % dropped, {} NACKs", window.nacks()),
        window,
        first_frame_ms: first,
    })
}

/// The free link, then the squeeze, then the link widened again.
async fn squeeze(bed: &Bed, span: Duration) -> anyhow::Result<Vec<Row>> {
    let viewer = watch(bed, None, false).await?;
    let first = first_frame(&viewer).await?;
    tokio::time::sleep(10 * SECOND).await;
    let free = Window::sample(&viewer, span, SECOND).await?;
    let link = UdpBottleneck::start(700, 30)?;
    tokio::time::sleep(10 * SECOND).await;
    let squeezed = Window::sample(&viewer, span, SECOND).await?;
    let queue = link.counters()?;
    link.set_rate(100_000)?;
    let widened_at = tokio::time::Instant::now();
    let target = 0.6 * free.bitrate_kbps();
    let mut back_after = None;
    let mut recovery = Window::default();
    while widened_at.elapsed() < Duration::from_secs(20) {
        let part = Window::sample(&viewer, SECOND, SECOND).await?;
        if back_after.is_none() && part.bitrate_kbps() >= target {
            back_after = Some(widened_at.elapsed());
        }
        recovery.samples.extend(part.samples);
    }
    drop(link);
    viewer.hang_up().await?;
    viewer.close().await;
    Ok(vec![
        Row {
            condition: "free link".into(),
            first_frame_ms: first,
            note: format!("size {:?}", free.size()),
            window: free,
        },
        Row {
            condition: "700 kbit/s, 30-packet queue (10-30 s after the squeeze)".into(),
            first_frame_ms: None,
            note: format!(
                "size {:?}; queue dropped {} of {} packets",
                squeezed.size(),
                queue.dropped,
                queue.sent_packets + queue.dropped
            ),
            window: squeezed,
        },
        Row {
            condition: "link widened again (first 20 s)".into(),
            first_frame_ms: None,
            note: match back_after {
                Some(after) => format!(
                    "60 % of the free rate ({target:.0} kbit/s) after {:.1} s",
                    after.as_secs_f64()
                ),
                None => format!("not back to 60 % ({target:.0} kbit/s) within 20 s"),
            },
            window: recovery,
        },
    ])
}

/// Only TURN gets through: the viewer is relay-only, host-to-host UDP is
/// dropped, relay traffic passes.
async fn through_turn(span: Duration) -> anyhow::Result<Row> {
    let server = TurnServer::start().await?;
    let bed = bed("netbench-turn", server.ice_servers_json(TurnTransport::Udp)).await?;
    let user = server.viewer_user();
    let ice = serde_json::json!([{
        "urls": [TurnTransport::Udp.url()],
        "username": user.username,
        "credential": user.credential(),
    }]);
    let filter = RelayOnly::udp(&[turn::TURN_PORT, turn::TURNS_PORT], turn::RELAY_PORTS)?;
    let viewer = watch(&bed, Some(&ice), true).await?;
    let first = first_frame(&viewer).await?;
    let window = Window::sample(&viewer, span, SECOND).await?;
    let stats = viewer.stats().await?;
    drop(filter);
    viewer.hang_up().await?;
    viewer.close().await;
    Ok(Row {
        condition: "TURN/UDP only (viewer relay-only, host UDP dropped)".into(),
        note: format!(
            "viewer's pair {}/{} -> {}/{}",
            stats.local_candidate_type.unwrap_or_default(),
            stats.local_protocol.unwrap_or_default(),
            stats.remote_candidate_type.unwrap_or_default(),
            stats.remote_protocol.unwrap_or_default(),
        ),
        window,
        first_frame_ms: first,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    testbed::harness::require_test_netns();
    let span = Duration::from_secs(args.seconds);
    let agent = testbed::harness::agent_binary()?;
    println!("agent: {}", agent.display());
    println!();
    println!(
        "| condition | fps | frozen s | worst 15 s frozen | kbit/s | RTT median / max ms | first frame ms | note |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let bed = bed("netbench", Vec::new()).await?;
    for row in squeeze(&bed, span).await? {
        row.print();
    }
    for percent in [2.0, 5.0, 10.0] {
        random_loss(&bed, percent, span).await?.print();
    }
    drop(bed);
    through_turn(span).await?.print();
    Ok(())
}

//! Fleet reconnects (issue 13), two ways:
//!
//! - `fleet sim`: the simulation's table (`testbed::fleet`), old policy
//!   beside new, 100,000 devices; pure code, runs anywhere.
//! - `fleet agents`: real agent processes (50 by default) against the
//!   stand-in, which is stopped for an outage and started again; every
//!   connection attempt is recorded where the server would see it and
//!   compared with the simulation of the same outage. Run it through
//!   `scripts/fleet-check.sh` (release agent, test network namespace).
//!
//! Both print Markdown (`docs/benchmarks.md`, "Fleet reconnects").

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::time::Instant;

use testbed::backpressure::{Refusal, Route};
use testbed::fleet::{self, Fleet, Scenario};
use testbed::harness::{self, AgentConfig, AgentProcess, Scratch};
use testbed::standin::{Device, Role, StandIn, StandInConfig};

#[derive(Debug, Parser)]
#[command(about = "Fleet reconnects: the simulation's table, or real agents through an outage")]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// The simulation's table, old policy beside new.
    Sim {
        #[arg(long, default_value_t = 100_000)]
        devices: usize,
        /// How many of them have a live session at the drop.
        #[arg(long, default_value_t = 0)]
        live: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Real agents (release build, test namespace) through an outage.
    Agents {
        #[arg(long, default_value_t = 50)]
        count: usize,
        /// Seconds the control plane is down.
        #[arg(long, default_value_t = 30)]
        outage: u64,
        /// Then seconds of 503 + `Retry-After` on the upgrade (0: none).
        #[arg(long, default_value_t = 0)]
        busy: u64,
        #[arg(long, default_value_t = 10)]
        retry_after: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().mode {
        None => sim(100_000, 0, 1),
        Some(Mode::Sim {
            devices,
            live,
            seed,
        }) => sim(devices, live, seed),
        Some(Mode::Agents {
            count,
            outage,
            busy,
            retry_after,
        }) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(agents(count, outage, busy, retry_after)),
    }
}

fn sim(devices: usize, live: usize, seed: u64) -> anyhow::Result<()> {
    let fleet = Fleet {
        devices,
        live,
        seed,
    };
    println!(
        "{devices} devices ({live} live), seed {seed}; policies: {:?}\n",
        fleet::shipped()
    );
    print!("{}", fleet::table(fleet, &fleet::shipped()));
    Ok(())
}

fn camera(index: usize) -> (String, String) {
    (
        format!("cam-fleet-{index:03}"),
        format!("fleet-camera-token-{index:03}"),
    )
}

/// Accepts and at once drops every connection until `until`, as a load
/// balancer with no server behind it: the attempts of the outage, as the
/// server side would count them.
async fn outage_listener(addr: SocketAddr, until: Instant) -> anyhow::Result<Vec<Instant>> {
    let listener = TcpListener::bind(addr)
        .await
        .context("cannot take over the control plane's port for the outage")?;
    let mut accepted = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return Ok(accepted),
            connection = listener.accept() => {
                if connection.is_ok() {
                    accepted.push(Instant::now());
                }
            }
        }
    }
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Kolmogorov-Smirnov distance between a sample and a model sample.
fn ks_distance(sample: &[f64], model: &[f64]) -> f64 {
    let n = sample.len() as f64;
    let m = model.len() as f64;
    sample
        .iter()
        .enumerate()
        .map(|(index, &x)| {
            let below = model.partition_point(|&y| y < x) as f64 / m;
            let at = model.partition_point(|&y| y <= x) as f64 / m;
            let before = index as f64 / n;
            let after = (index + 1) as f64 / n;
            (after - at).abs().max((before - below).abs())
        })
        .fold(0.0, f64::max)
}

async fn agents(count: usize, outage: u64, busy: u64, retry_after: u64) -> anyhow::Result<()> {
    harness::require_test_netns();
    let scenario = Scenario {
        name: "real agents",
        outage: Duration::from_secs(outage),
        busy: Duration::from_secs(busy),
        retry_after: (busy > 0).then(|| Duration::from_secs(retry_after)),
    };
    let cameras: Vec<(String, String)> = (0..count).map(camera).collect();
    let config = || {
        let mut config = StandInConfig::pair(
            (&cameras[0].0, &cameras[0].1),
            ("viewer-fleet", "fleet-client-token"),
        );
        for (id, token) in &cameras[1..] {
            config.devices.push(Device {
                id: id.clone(),
                role: Role::Camera,
                token: token.clone(),
                name: "Fleet camera".into(),
            });
        }
        config
    };
    let standin = StandIn::start(format!("{}:0", harness::TEST_HOST).parse()?, config()).await?;
    let addr = standin.addr();
    // The shipped policy: no reconnect_max or reconnect_spread override.
    let mut processes = Vec::new();
    let mut scratches = Vec::new();
    for (id, token) in &cameras {
        let scratch = Scratch::new(&format!("fleet-{id}"))?;
        let token_file = scratch.token_file(token)?;
        let file = AgentConfig::new(&standin.url(), &token_file)
            .unset("control_plane.reconnect_max")
            .write(&scratch)?;
        processes.push(AgentProcess::spawn(&file)?);
        scratches.push(scratch);
    }
    let all_online = |s: &StandIn| cameras.iter().all(|(id, _)| s.online(id));
    let started = Instant::now();
    if !standin.wait_for(Duration::from_secs(180), all_online).await {
        bail!("not every agent connected within 180 s");
    }
    eprintln!(
        "{count} agents connected in {:.1} s; stopping the control plane for {outage} s",
        started.elapsed().as_secs_f64()
    );

    let dropped = Instant::now();
    standin.stop().await;
    drop(standin);
    let back_at = dropped + scenario.outage;
    let during = outage_listener(addr, back_at).await?;
    let standin = StandIn::start(addr, config()).await?;
    if busy > 0 {
        standin.gate().refuse(Refusal::socket_busy(retry_after));
    }
    let returned = Instant::now();
    let open_at = returned + scenario.busy;
    let all_back = tokio::time::timeout(Duration::from_secs(busy + 120), async {
        if busy > 0 {
            tokio::time::sleep_until(open_at).await;
            standin.gate().open();
        }
        standin.wait_for(Duration::from_secs(120), all_online).await
    })
    .await
    .unwrap_or(false);
    let arrivals = standin.gate().arrivals();
    for process in &processes {
        process.signal(harness::SIGTERM)?;
    }
    for mut process in processes {
        let _ = process.wait_exit(Duration::from_secs(10)).await;
    }
    standin.stop().await;
    if !all_back {
        bail!("not every agent was back within {} s", busy + 120);
    }

    let since = |at: Instant| at.saturating_duration_since(dropped).as_secs_f64();
    let mut attempts: Vec<f64> = during.iter().map(|&at| since(at)).collect();
    let socket: Vec<_> = arrivals
        .iter()
        .filter(|arrival| arrival.route == Route::Socket)
        .collect();
    attempts.extend(socket.iter().map(|arrival| since(arrival.at)));
    attempts.sort_by(f64::total_cmp);
    let mut connected: Vec<f64> = socket
        .iter()
        .filter(|arrival| !arrival.refused)
        .map(|arrival| since(arrival.at))
        .collect();
    connected.sort_by(f64::total_cmp);

    let model = fleet::trace(
        Fleet {
            devices: 100_000,
            live: 0,
            seed: 1,
        },
        scenario,
        fleet::shipped()[1],
    );
    let mut model_attempts = model.attempts;
    model_attempts.sort_by(f64::total_cmp);
    let mut model_connected = model.connected;
    model_connected.sort_by(f64::total_cmp);
    let per_device = model_attempts.len() as f64 / model_connected.len() as f64;

    println!(
        "{count} real agents (release build, shipped policy: reconnect_spread 5 s, \
         reconnect_max 30 s), control plane down {outage} s{}; times from the drop. \
         The return was {:.2} s after the drop.\n",
        if busy > 0 {
            format!(", then {busy} s of 503 + Retry-After: {retry_after}")
        } else {
            String::new()
        },
        since(returned)
    );
    println!("| figure | {count} agents | simulation, same policy and outage |");
    println!("| --- | --- | --- |");
    let mut edges: Vec<f64> = vec![0.0, 5.0, 15.0, 35.0, 65.0, 95.0];
    edges.push(f64::INFINITY);
    for pair in edges.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let within = |times: &[f64]| times.iter().filter(|&&t| t >= from && t < to).count();
        let expected = within(&model_attempts) as f64 / model_connected.len() as f64;
        println!(
            "| attempts in [{from}, {to}) s | {} | {:.1} |",
            within(&attempts),
            expected * count as f64
        );
    }
    println!(
        "| attempts per agent | {:.2} | {per_device:.2} |",
        attempts.len() as f64 / count as f64
    );
    for (label, p) in [
        ("10 %", 0.1),
        ("25 %", 0.25),
        ("median", 0.5),
        ("75 %", 0.75),
        ("90 %", 0.9),
        ("last", 1.0),
    ] {
        println!(
            "| back after the drop, {label} | {:.1} s | {:.1} s |",
            quantile(&connected, p),
            quantile(&model_connected, p)
        );
    }
    let critical = |n: usize| 1.36 / (n as f64).sqrt();
    println!(
        "| KS distance of attempt times (5 % critical value) | {:.3} ({:.3}) | |",
        ks_distance(&attempts, &model_attempts),
        critical(attempts.len())
    );
    println!(
        "| KS distance of reconnect times (5 % critical value) | {:.3} ({:.3}) | |",
        ks_distance(&connected, &model_connected),
        critical(connected.len())
    );
    if busy > 0 {
        let refused = socket.iter().filter(|arrival| arrival.refused).count();
        let model_refused = model_attempts
            .iter()
            .filter(|&&t| t >= outage as f64 && t < (outage + busy) as f64)
            .count() as f64
            / model_connected.len() as f64;
        println!(
            "| upgrades refused with 503 | {refused} | {:.1} |",
            model_refused * count as f64
        );
        // Per device: an upgrade sooner than the Retry-After of its refusal.
        let mut early = 0;
        for (index, arrival) in socket.iter().enumerate() {
            if !arrival.refused {
                continue;
            }
            let allowed = arrival.at + Duration::from_secs(retry_after);
            if let Some(next) = socket[index + 1..]
                .iter()
                .find(|later| later.client == arrival.client)
                && next.at < allowed
            {
                early += 1;
            }
        }
        println!("| upgrades sooner than Retry-After allowed | {early} | 0 |");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_distance_of_a_sample_from_its_own_model_is_small() {
        let model: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        assert!(ks_distance(&[0.1, 0.3, 0.5, 0.7, 0.9], &model) <= 0.1 + 1e-9);
        assert!(ks_distance(&[0.9, 0.95, 0.99], &model) > 0.8);
    }
}

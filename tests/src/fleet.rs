//! A fleet of cameras losing the control plane at the same instant, as
//! pure code: no sockets, no clock, the agent's own reconnect policy
//! ([`camera_agent::control_plane::reconnect`]) deciding every delay, and
//! the policy it replaced ([`Backoff`] as the connection task drove it)
//! beside it. Each device is simulated on its own (the server here has no
//! capacity limit, only a schedule: down, then busy, then up), so 100,000
//! devices take well under a second.
//!
//! `tests/tests/fleet_sim.rs` asserts the targets of issue 13 on it; the
//! `fleet` binary prints the table in `docs/benchmarks.md`.

use std::time::Duration;

use camera_agent::control_plane::reconnect::{Outcome, Reconnect, ReconnectPolicy};
use camera_agent::control_plane::socketio::backoff::Backoff;

/// What the control plane does after every device lost its socket at 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    pub name: &'static str,
    /// Down (every attempt fails at once) from 0 for this long.
    pub outage: Duration,
    /// Then, for this long, it answers the upgrade 503 with this
    /// `Retry-After`, if any.
    pub busy: Duration,
    pub retry_after: Option<Duration>,
}

impl Scenario {
    /// The scenarios of issue 13, and the raw herd (server up at once).
    pub fn all() -> [Scenario; 4] {
        let s = Duration::from_secs;
        [
            Scenario {
                name: "drop, 30 s outage",
                outage: s(30),
                busy: Duration::ZERO,
                retry_after: None,
            },
            Scenario {
                name: "drop, 30 s outage, then 20 s of 503 + Retry-After: 10",
                outage: s(30),
                busy: s(20),
                retry_after: Some(s(10)),
            },
            Scenario {
                name: "5 s drop",
                outage: s(5),
                busy: Duration::ZERO,
                retry_after: None,
            },
            Scenario {
                name: "drop, server up at once",
                outage: Duration::ZERO,
                busy: Duration::ZERO,
                retry_after: None,
            },
        ]
    }

    /// When the server answers normally again.
    pub fn up_at(&self) -> Duration {
        self.outage + self.busy
    }

    /// The server's answer to an attempt at `t`.
    fn answer(&self, t: Duration) -> Answer {
        if t < self.outage {
            Answer::Down
        } else if t < self.up_at() {
            Answer::Busy(self.retry_after)
        } else {
            Answer::Up
        }
    }
}

enum Answer {
    Down,
    Busy(Option<Duration>),
    Up,
}

/// Which policy the devices run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Before issue 13: full jitter from 0.5 s up to `max`, measured from
    /// the previous attempt, reset on every loss; a 503 was a failure like
    /// any other and `Retry-After` was not read on the socket.
    Old { max: Duration },
    /// The agent's policy today.
    New(ReconnectPolicy),
}

impl Policy {
    pub fn label(&self) -> &'static str {
        match self {
            Policy::Old { .. } => "old",
            Policy::New(_) => "new",
        }
    }
}

/// One device's policy state.
enum Device {
    Old(Backoff),
    New(Reconnect),
}

impl Device {
    fn new(policy: Policy) -> Self {
        match policy {
            Policy::Old { max } => Device::Old(Backoff::for_failures(max)),
            Policy::New(policy) => Device::New(Reconnect::new(policy)),
        }
    }

    fn next(&mut self, now: Duration, outcome: Outcome, unit: f64) -> Duration {
        match self {
            Device::Old(backoff) => {
                if matches!(outcome, Outcome::Lost { .. }) {
                    backoff.reset();
                }
                backoff.next_delay(unit)
            }
            Device::New(policy) => policy.next(now, outcome, unit),
        }
    }
}

/// The fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fleet {
    pub devices: usize,
    /// How many of them stream to a viewer at the drop.
    pub live: usize,
    pub seed: u64,
}

/// What one run shows. "Attempts per second" is the count in a sliding
/// 1 s window, sampled every 10 ms from the drop until the last device is
/// back; times "after return" are from the end of the outage (the server
/// is back, if busy).
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// The most attempts in any 1 s, and the 99th percentile of the samples.
    pub peak_per_s: u64,
    pub p99_per_s: u64,
    /// The most attempts in any 1 s that reached the server after its
    /// return (refused ones included).
    pub peak_at_server_per_s: u64,
    pub back_99_after_return: Duration,
    pub back_all_after_return: Duration,
    /// The median device's time from the drop to connected.
    pub median_offline: Duration,
    pub attempts_per_device: f64,
    /// Attempts made sooner than the last `Retry-After` allowed.
    pub early: u64,
}

/// Bins of 10 ms.
const BINS_PER_S: usize = 100;

/// Counts in a sliding 1 s window ending at every bin, from the first bin
/// to `last` (seconds since the drop).
fn sliding_second(times: impl Iterator<Item = f64>, last: f64) -> Vec<u64> {
    let bins = (last * BINS_PER_S as f64) as usize + 1;
    let mut counts = vec![0u64; bins];
    for t in times {
        if let Some(count) = counts.get_mut((t * BINS_PER_S as f64) as usize) {
            *count += 1;
        }
    }
    let mut window = 0;
    (0..bins)
        .map(|end| {
            window += counts[end];
            if end >= BINS_PER_S {
                window -= counts[end - BINS_PER_S];
            }
            window
        })
        .collect()
}

/// SplitMix64: a fixed, fast, well-mixed stream of draws per seed, so a
/// run is reproducible.
struct Draws(u64);

impl Draws {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Every attempt of every device, as seconds since the drop, with the
/// time each device was connected again.
pub struct Trace {
    pub attempts: Vec<f64>,
    pub connected: Vec<f64>,
    pub early: u64,
}

/// Runs the fleet through the scenario; every attempt is recorded.
pub fn trace(fleet: Fleet, scenario: Scenario, policy: Policy) -> Trace {
    let mut draws = Draws(fleet.seed);
    let mut attempts = Vec::with_capacity(fleet.devices * 4);
    let mut connected = Vec::with_capacity(fleet.devices);
    let mut early = 0;
    for index in 0..fleet.devices {
        let mut device = Device::new(policy);
        let live = index < fleet.live;
        let mut now = Duration::ZERO;
        let mut not_before = Duration::ZERO;
        let mut outcome = Outcome::Lost { live };
        loop {
            now += device.next(now, outcome, draws.unit());
            attempts.push(now.as_secs_f64());
            if now < not_before {
                early += 1;
            }
            outcome = match scenario.answer(now) {
                Answer::Down => Outcome::Failed,
                Answer::Busy(retry_after) => {
                    if let Some(after) = retry_after {
                        not_before = now + after;
                    }
                    Outcome::Refused { retry_after }
                }
                Answer::Up => break,
            };
        }
        connected.push(now.as_secs_f64());
    }
    Trace {
        attempts,
        connected,
        early,
    }
}

/// Runs the fleet through the scenario and sums it up.
pub fn simulate(fleet: Fleet, scenario: Scenario, policy: Policy) -> Figures {
    let Trace {
        attempts,
        mut connected,
        early,
    } = trace(fleet, scenario, policy);
    connected.sort_by(f64::total_cmp);
    let last = connected.last().copied().unwrap_or(0.0);
    let back = scenario.outage.as_secs_f64();
    let all = sliding_second(attempts.iter().copied(), last);
    let at_server = sliding_second(attempts.iter().copied().filter(|&t| t >= back), last);
    let mut sorted: Vec<f64> = all.iter().map(|&n| n as f64).collect();
    sorted.sort_by(f64::total_cmp);
    let after_return = |t: f64| Duration::from_secs_f64((t - back).max(0.0));
    Figures {
        peak_per_s: all.iter().copied().max().unwrap_or(0),
        p99_per_s: percentile(&sorted, 0.99) as u64,
        peak_at_server_per_s: at_server.iter().copied().max().unwrap_or(0),
        back_99_after_return: after_return(percentile(&connected, 0.99)),
        back_all_after_return: after_return(last),
        median_offline: Duration::from_secs_f64(percentile(&connected, 0.5)),
        attempts_per_device: attempts.len() as f64 / fleet.devices.max(1) as f64,
        early,
    }
}

/// The shipped policy's settings (`reconnect_spread` 5 s, `reconnect_max`
/// 30 s), old and new.
pub fn shipped() -> [Policy; 2] {
    let max = Duration::from_secs(30);
    [
        Policy::Old { max },
        Policy::New(ReconnectPolicy::new(Duration::from_secs(5), max)),
    ]
}

/// The table of `docs/benchmarks.md`.
pub fn table(fleet: Fleet, policies: &[Policy]) -> String {
    let mut out = String::from(
        "| scenario | policy | peak attempts/s | p99 attempts/s | peak at the running server /s \
         | 99 % back after return | all back after return | median device offline \
         | attempts per device | attempts before Retry-After |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for scenario in Scenario::all() {
        for policy in policies {
            let f = simulate(fleet, scenario, *policy);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} | {} |\n",
                scenario.name,
                policy.label(),
                f.peak_per_s,
                f.p99_per_s,
                f.peak_at_server_per_s,
                f.back_99_after_return.as_secs_f64(),
                f.back_all_after_return.as_secs_f64(),
                f.median_offline.as_secs_f64(),
                f.attempts_per_device,
                f.early,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_and_reproducible() {
        let mut draws = Draws(7);
        let units: Vec<f64> = (0..100_000).map(|_| draws.unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = units.iter().sum::<f64>() / units.len() as f64;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        let below_tenth = units.iter().filter(|&&u| u < 0.1).count();
        assert!((9_500..10_500).contains(&below_tenth), "{below_tenth}");
        assert_eq!(Draws(7).unit(), units[0]);
    }

    #[test]
    fn the_sliding_window_counts_each_attempt_for_one_second() {
        let counts = sliding_second([0.0, 0.005, 0.5, 1.2, 3.0].into_iter(), 3.5);
        assert_eq!(counts.len(), 351);
        assert_eq!(counts[0], 2);
        assert_eq!(counts[50], 3);
        assert_eq!(counts[99], 3);
        assert_eq!(counts[100], 1, "the two at 0 left the window");
        assert_eq!(counts[120], 2);
        assert_eq!(counts.iter().max(), Some(&3));
        assert_eq!(counts[300], 1);
        // Each attempt is in 100 windows, the last one only in those that
        // end by 3.5 s.
        assert_eq!(counts.iter().sum::<u64>(), 100 * 4 + 51);
    }

    #[test]
    fn a_small_fleet_is_back_once_the_server_is_up() {
        let fleet = Fleet {
            devices: 100,
            live: 10,
            seed: 3,
        };
        for scenario in Scenario::all() {
            for policy in shipped() {
                let trace = trace(fleet, scenario, policy);
                assert_eq!(trace.connected.len(), 100);
                assert!(
                    trace
                        .connected
                        .iter()
                        .all(|&t| t >= scenario.up_at().as_secs_f64())
                );
            }
        }
    }
}

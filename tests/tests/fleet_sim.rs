//! The targets of issue 13 on the fleet simulation (`testbed::fleet`):
//! 100,000 devices, the agent's own reconnect policy, no sockets and no
//! clock, so these are properties of the policy's code, not timings of a
//! noisy machine. The old policy runs through the same checks and must
//! fail them, so the checks can tell the two apart.

use std::time::Duration;

use testbed::fleet::{self, Figures, Fleet, Policy, Scenario};

const DEVICES: usize = 100_000;

fn fleet() -> Fleet {
    Fleet {
        devices: DEVICES,
        live: 0,
        seed: 13,
    }
}

/// The peak target: at most a fifth of the fleet per second. The spread
/// puts each idle device's first attempt uniformly in 5 s, so the expected
/// count in any second of that window is exactly fleet/5; 100,000
/// independent draws scatter around it with a standard deviation of
/// sqrt(n p (1 - p)) = 126 per second. The bound allows four of those and
/// nothing else: the policy must not add a single attempt on top.
fn peak_bound() -> u64 {
    let n = DEVICES as f64;
    let p = 1.0 / 5.0;
    (n * p + 4.0 * (n * p * (1.0 - p)).sqrt()) as u64
}

/// The targets, as a list of the ones missed.
fn missed(scenario: &Scenario, figures: &Figures) -> Vec<String> {
    let mut missed = Vec::new();
    if figures.peak_per_s > peak_bound() {
        missed.push(format!(
            "peak {} attempts/s > fleet/5 (+ sampling noise, {})",
            figures.peak_per_s,
            peak_bound()
        ));
    }
    if figures.back_all_after_return > Duration::from_secs(60) {
        missed.push(format!(
            "last device back {:?} after the server's return",
            figures.back_all_after_return
        ));
    }
    if figures.early > 0 {
        missed.push(format!(
            "{} attempts sooner than Retry-After allowed ({})",
            figures.early, scenario.name
        ));
    }
    missed
}

fn new_policy() -> Policy {
    fleet::shipped()[1]
}

#[test]
fn the_new_policy_meets_every_target_in_every_scenario() {
    for scenario in Scenario::all() {
        let figures = fleet::simulate(fleet(), scenario, new_policy());
        assert_eq!(
            missed(&scenario, &figures),
            Vec::<String>::new(),
            "{}: {figures:?}",
            scenario.name
        );
        // Every device is back, and at most one attempt per window: the
        // 5 s drop needs two (one in [0, 5) s, one in [5, 15) s).
        assert!(figures.p99_per_s <= figures.peak_per_s);
        if scenario.name == "5 s drop" {
            assert!(
                (1.99..=2.0).contains(&figures.attempts_per_device),
                "{figures:?}"
            );
        }
    }
}

#[test]
fn the_old_policy_fails_the_same_checks() {
    let old = fleet::shipped()[0];
    for scenario in Scenario::all() {
        let figures = fleet::simulate(fleet(), scenario, old);
        let missed = missed(&scenario, &figures);
        assert!(
            missed.iter().any(|miss| miss.starts_with("peak")),
            "{}: {figures:?}",
            scenario.name
        );
        if scenario.retry_after.is_some() {
            assert!(
                missed.iter().any(|miss| miss.contains("Retry-After")),
                "{}: {figures:?}",
                scenario.name
            );
        }
    }
}

#[test]
fn no_attempt_comes_before_retry_after_even_for_live_cameras() {
    let scenario = Scenario::all()[1];
    assert!(scenario.retry_after.is_some());
    let fleet = Fleet {
        devices: 20_000,
        live: 20_000,
        seed: 5,
    };
    let figures = fleet::simulate(fleet, scenario, new_policy());
    assert_eq!(figures.early, 0, "{figures:?}");
}

#[test]
fn live_cameras_come_back_within_half_a_second_of_a_server_that_is_up() {
    let scenario = Scenario::all()[3];
    assert_eq!(scenario.outage, Duration::ZERO);
    let fleet = Fleet {
        devices: 1_000,
        live: 1_000,
        seed: 9,
    };
    let trace = fleet::trace(fleet, scenario, new_policy());
    assert_eq!(trace.attempts.len(), 1_000, "one attempt each");
    assert!(
        trace.connected.iter().all(|&t| (0.125..=0.5).contains(&t)),
        "{:?}",
        trace.connected
    );
}

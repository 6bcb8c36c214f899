//! Reconnects of one real agent (issue 13): an idle camera spreads its
//! first retry, a live one retries at once, and a control plane that
//! answers 503 or 429 with `Retry-After` (seconds or an HTTP date), on the
//! socket upgrade or on REST, sees no attempt before that time. The
//! stand-in's gate (`testbed::backpressure`) refuses and records every
//! arrival; the checks are on that record and on the agent's JSON log
//! fields. Times are only checked from below (never sooner than allowed),
//! which a slow machine cannot break.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use testbed::backpressure::{Arrival, Refusal, Route};
use testbed::harness::{self, AgentConfig, AgentProcess, Bed, Scratch};
use testbed::standin::{StandIn, StandInConfig};
use testbed::viewer::Viewer;
use tokio::time::Instant;

const CAMERA: (&str, &str) = ("cam-backpressure", "camera-token-backpressure");
const CLIENT: (&str, &str) = ("viewer-backpressure", "client-token-backpressure");

async fn bed(name: &str, settings: &[(&str, &str)]) -> Bed {
    harness::require_test_netns();
    Bed::start(
        name,
        StandInConfig::pair(CAMERA, CLIENT),
        CAMERA,
        |config| {
            settings
                .iter()
                .fold(config, |config, (key, value)| config.set(key, *value))
        },
    )
    .await
    .unwrap()
}

/// Socket arrivals after `since`.
fn socket_arrivals(bed: &Bed, since: Instant) -> Vec<Arrival> {
    bed.standin
        .gate()
        .arrivals()
        .into_iter()
        .filter(|arrival| arrival.route == Route::Socket && arrival.at >= since)
        .collect()
}

fn records_with(agent: &AgentProcess, message: &str) -> Vec<Value> {
    agent
        .records()
        .into_iter()
        .filter(|record| record["message"] == message)
        .collect()
}

/// Drops the camera's socket server-side and waits until it is back.
async fn drop_and_wait_back(bed: &Bed, limit: Duration) -> Instant {
    let dropped = Instant::now();
    bed.standin.disconnect(CAMERA.0);
    assert!(
        bed.standin
            .wait_for(Duration::from_secs(5), |s| !s.online(CAMERA.0))
            .await
    );
    assert!(
        bed.standin.wait_for(limit, |s| s.online(CAMERA.0)).await,
        "the agent did not come back; log:\n{}",
        bed.agent.output().join("\n")
    );
    dropped
}

async fn lost_record(agent: &AgentProcess, outcome: &str) -> Value {
    agent
        .wait_record(Duration::from_secs(10), |record| {
            record["message"] == "signaling connection lost" && record["outcome"] == outcome
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_camera_draws_its_first_retry_from_the_spread() {
    let bed = bed(
        "spread-idle",
        &[
            ("control_plane.reconnect_spread", "3s"),
            ("control_plane.reconnect_max", "10s"),
        ],
    )
    .await;
    drop_and_wait_back(&bed, Duration::from_secs(20)).await;
    let lost = lost_record(&bed.agent, "lost_idle").await;
    assert_eq!(lost["live_sessions"], 0, "{lost}");
    let retry = lost["retry_in_ms"].as_u64().unwrap();
    assert!((20..=3000).contains(&retry), "{lost}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_camera_retries_within_half_a_second() {
    let bed = bed(
        "spread-live",
        &[
            ("control_plane.reconnect_spread", "10s"),
            ("control_plane.reconnect_max", "30s"),
        ],
    )
    .await;
    let mut viewer = Viewer::connect(&bed.standin.url(), CLIENT.1).await.unwrap();
    let report = viewer
        .watch(CAMERA.0, 10, Duration::from_secs(30))
        .await
        .unwrap();
    drop_and_wait_back(&bed, Duration::from_secs(20)).await;
    let lost = lost_record(&bed.agent, "lost_live").await;
    assert_eq!(lost["live_sessions"], 1, "{lost}");
    let retry = lost["retry_in_ms"].as_u64().unwrap();
    assert!((125..=500).contains(&retry), "{lost}");
    viewer.end(&report.session_id).await.unwrap();
    bed.agent
        .wait_message(
            "teardown done",
            Some(&report.session_id),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    viewer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_refused_with_retry_after_seconds_is_not_retried_sooner() {
    let bed = bed("retry-after-seconds", &[]).await;
    bed.standin.gate().refuse(Refusal::socket_busy(3).times(2));
    let dropped = drop_and_wait_back(&bed, Duration::from_secs(30)).await;
    let arrivals = socket_arrivals(&bed, dropped);
    let refused: Vec<bool> = arrivals.iter().map(|arrival| arrival.refused).collect();
    assert_eq!(refused, [true, true, false], "{arrivals:?}");
    for pair in arrivals.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_secs(3), "{gap:?} after a refusal");
    }
    let refusals = records_with(&bed.agent, "control plane refused the socket: busy");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for record in refusals {
        assert_eq!(record["status"], 503, "{record}");
        assert_eq!(record["outcome"], "refused", "{record}");
        assert_eq!(record["retry_after_ms"], 3000, "{record}");
        // Plus up to one spread (2 s here: reconnect_max) of jitter.
        let retry = record["retry_in_ms"].as_u64().unwrap();
        assert!((3000..=5000).contains(&retry), "{record}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_refused_until_an_http_date_waits_for_that_date() {
    let bed = bed("retry-after-date", &[]).await;
    // The first attempt comes within the 2 s spread: still 3 s or more
    // before the date (which loses its fraction of a second in the header).
    let date = SystemTime::now() + Duration::from_secs(6);
    bed.standin.gate().refuse(Refusal {
        retry_after: Some(httpdate::fmt_http_date(date)),
        ..Refusal::socket_busy(0).times(1)
    });
    let dropped = drop_and_wait_back(&bed, Duration::from_secs(30)).await;
    let arrivals = socket_arrivals(&bed, dropped);
    assert_eq!(arrivals.len(), 2, "{arrivals:?}");
    assert!(arrivals[0].refused && !arrivals[1].refused);
    // The header has whole seconds: the date it names, truncated.
    let named = httpdate::parse_http_date(&httpdate::fmt_http_date(date)).unwrap();
    assert!(arrivals[1].wall >= named, "came back before the date");
    let refusal = bed
        .agent
        .wait_message(
            "control plane refused the socket: busy",
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let after = refusal["retry_after_ms"].as_u64().unwrap();
    assert!(after >= 1000, "{refusal}");
    assert!(
        refusal["retry_in_ms"].as_u64().unwrap() >= after,
        "{refusal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_without_retry_after_is_a_failed_attempt_and_the_backoff_grows() {
    // Windows [0, 1), [1, 3), [3, 7), [7, 15) s after the loss: three
    // refusals put the fourth attempt at 7 s or later. A policy that took a
    // bare 503 as "retry now" would be back within a second.
    let bed = bed(
        "503-bare",
        &[
            ("control_plane.reconnect_spread", "1s"),
            ("control_plane.reconnect_max", "8s"),
        ],
    )
    .await;
    bed.standin.gate().refuse(Refusal {
        retry_after: None,
        ..Refusal::socket_busy(0).times(3)
    });
    let dropped = drop_and_wait_back(&bed, Duration::from_secs(30)).await;
    let arrivals = socket_arrivals(&bed, dropped);
    let refused: Vec<bool> = arrivals.iter().map(|arrival| arrival.refused).collect();
    assert_eq!(refused, [true, true, true, false], "{arrivals:?}");
    let back = arrivals[3].at - dropped;
    assert!(back >= Duration::from_secs(7), "back after {back:?}");
    let refusals = records_with(&bed.agent, "control plane refused the socket: busy");
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|record| record["retry_after_ms"].is_null())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refused_with_503_then_429_waits_as_told_each_time() {
    harness::require_test_netns();
    let standin = StandIn::start(
        format!("{}:0", harness::TEST_HOST).parse().unwrap(),
        StandInConfig::pair(CAMERA, CLIENT),
    )
    .await
    .unwrap();
    let gate = standin.gate();
    gate.refuse(Refusal {
        route: Route::Rest,
        ..Refusal::socket_busy(2).times(1)
    });
    let scratch = Scratch::new("login-busy").unwrap();
    let token = scratch.token_file(CAMERA.1).unwrap();
    let config = AgentConfig::new(&standin.url(), &token)
        .write(&scratch)
        .unwrap();
    let agent = AgentProcess::spawn(&config).unwrap();
    let rest = |arrivals: &[Arrival]| {
        arrivals
            .iter()
            .filter(|arrival| arrival.route == Route::Rest)
            .count()
    };
    assert!(
        gate.wait_for(Duration::from_secs(20), |a| rest(a) >= 1)
            .await
    );
    // The second login comes 2 to 4 s later: time enough to arm the next
    // refusal, a 429 until a date well after that.
    let date = SystemTime::now() + Duration::from_secs(8);
    gate.refuse(Refusal {
        status: 429,
        retry_after: Some(httpdate::fmt_http_date(date)),
        route: Route::Rest,
        count: Some(1),
    });
    assert!(
        standin
            .wait_for(Duration::from_secs(30), |s| s.online(CAMERA.0))
            .await,
        "{}",
        agent.output().join("\n")
    );
    let logins: Vec<Arrival> = gate
        .arrivals()
        .into_iter()
        .filter(|arrival| arrival.route == Route::Rest)
        .collect();
    let refused: Vec<bool> = logins.iter().map(|arrival| arrival.refused).collect();
    assert_eq!(refused, [true, true, false], "{logins:?}");
    assert!(logins[1].at - logins[0].at >= Duration::from_secs(2));
    let named = httpdate::parse_http_date(&httpdate::fmt_http_date(date)).unwrap();
    assert!(logins[2].wall >= named, "logged in before the date");
    let busy = records_with(&agent, "login refused: control plane busy");
    assert_eq!(busy.len(), 2, "{busy:?}");
    assert_eq!(busy[0]["retry_after_ms"], 2000, "{}", busy[0]);
    assert!(
        busy[1]["retry_after_ms"].as_u64().unwrap() >= 1000,
        "{}",
        busy[1]
    );
    drop(agent);
    standin.stop().await;
}

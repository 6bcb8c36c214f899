//! Churn: many sessions back to back in one agent run. After every session
//! the process must be back to exactly its idle fd and thread count; RSS is
//! sampled and its drift bounded and reported (the tight RSS target is a
//! benchmark figure, docs/benchmarks.md, not a test assertion).
//!
//! `CHURN_SESSIONS` overrides the count (default 200).

use std::time::Duration;

use testbed::harness::{self, Bed};
use testbed::standin::StandInConfig;
use testbed::viewer::Viewer;

const CAMERA: (&str, &str) = ("cam-churn", "camera-token-churn");
const CLIENT: (&str, &str) = ("viewer-churn", "client-token-churn");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_sessions_leave_no_fd_thread_or_unbounded_memory_behind() {
    harness::require_test_netns();
    let sessions: usize = std::env::var("CHURN_SESSIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let Bed {
        standin,
        mut agent,
        scratch: _scratch,
    } = Bed::start(
        "churn",
        StandInConfig::pair(CAMERA, CLIENT),
        CAMERA,
        |config| config,
    )
    .await
    .unwrap();
    let pid = agent.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = harness::proc_counts(pid).unwrap();
    let mut viewer = Viewer::connect(&standin.url(), CLIENT.1).await.unwrap();
    let mut rss_first = 0;
    let mut rss_peak = 0;
    for round in 1..=sessions {
        let report = viewer
            .watch(CAMERA.0, 3, Duration::from_secs(30))
            .await
            .unwrap_or_else(|err| panic!("session {round}: {err:#}"));
        viewer.end(&report.session_id).await.unwrap();
        agent
            .wait_message(
                "teardown done",
                Some(&report.session_id),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        harness::wait_counts(pid, idle, Duration::from_secs(10))
            .await
            .unwrap_or_else(|err| panic!("session {round}: {err:#}"));
        let rss = harness::rss_kib(pid).unwrap();
        if round == 1 {
            rss_first = rss;
        }
        rss_peak = rss_peak.max(rss);
    }
    let rss_last = harness::rss_kib(pid).unwrap();
    let drift_mib = (rss_last as f64 - rss_first as f64) / 1024.0;
    eprintln!(
        "churn: {sessions} sessions; fds/threads back to {idle:?} after every one; \
         RSS after session 1 {:.1} MiB, after session {sessions} {:.1} MiB (drift {drift_mib:+.1} MiB, peak {:.1} MiB)",
        rss_first as f64 / 1024.0,
        rss_last as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );
    assert!(
        drift_mib < 16.0,
        "RSS grew {drift_mib:.1} MiB over {sessions} sessions"
    );
    viewer.close().await;
    agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    standin.stop().await;
}

//! The daemon's runtime gives blocking-pool threads back soon after their
//! work: a session that resolved a `turns:` server's name must not keep a
//! thread for tokio's default 10 s. Its own test binary, so no other test's
//! threads come and go while it counts.

use std::time::{Duration, Instant};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[test]
fn a_name_lookup_leaves_no_thread_behind() {
    let runtime = camera_agent::app::runtime().expect("runtime");
    let before = threads();
    let resolved = runtime
        .block_on(tokio::net::lookup_host("localhost:3478"))
        .expect("localhost resolves")
        .count();
    assert!(resolved > 0);
    let during = threads();
    assert!(
        during > before,
        "the lookup ran on no blocking thread ({before} -> {during}): the test proves nothing"
    );
    // Well under the default keep-alive (10 s), well over ours (0.1 s).
    let deadline = Instant::now() + Duration::from_secs(3);
    while threads() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        threads(),
        before,
        "a blocking-pool thread outlived the lookup by 3 s"
    );
}

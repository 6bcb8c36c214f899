//! Figures the benchmarks share: a process's CPU time over a window, and
//! medians.

use std::time::Duration;

use anyhow::Context;

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// CPU seconds a process spends over `window`, after `warmup`.
pub async fn cpu_over(pid: u32, warmup: Duration, window: Duration) -> anyhow::Result<f64> {
    tokio::time::sleep(warmup).await;
    let start = cpu_ticks(pid)?;
    tokio::time::sleep(window).await;
    let end = cpu_ticks(pid)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { sysconf(2) } as f64; // _SC_CLK_TCK
    Ok((end - start) as f64 / hz)
}

unsafe extern "C" {
    fn sysconf(name: i32) -> i64;
}

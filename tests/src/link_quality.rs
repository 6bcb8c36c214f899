//! Video quality as the viewer sees it, over a span of a session: the
//! browser's own `getStats` figures sampled once a second and reduced to
//! what a person notices (frames per second, time frozen, delay, bitrate).
//!
//! The network suite and the benchmark both judge a link condition from a
//! [`Window`] of samples; nothing here looks at the agent's own figures.

use std::time::Duration;

use tokio::time::Instant;

use crate::browser_viewer::{BrowserViewer, ViewerStats};

/// One `getStats` snapshot and when it was taken.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub stats: ViewerStats,
}

/// Consecutive samples of one span.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub samples: Vec<Sample>,
}

fn percentile(values: &mut [f64], share: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * share).round() as usize;
    Some(values[index])
}

impl Window {
    /// Samples the viewer every `every` for `span`.
    pub async fn sample(
        viewer: &BrowserViewer,
        span: Duration,
        every: Duration,
    ) -> anyhow::Result<Self> {
        let start = Instant::now();
        let mut window = Window::default();
        loop {
            let at = Instant::now();
            window.samples.push(Sample {
                at,
                stats: viewer.stats().await?,
            });
            if at.duration_since(start) >= span {
                return Ok(window);
            }
            tokio::time::sleep_until(at + every).await;
        }
    }

    fn ends(&self) -> Option<(&Sample, &Sample)> {
        Some((self.samples.first()?, self.samples.last()?))
    }

    /// The span the samples cover.
    pub fn span(&self) -> Duration {
        self.ends()
            .map(|(first, last)| last.at.duration_since(first.at))
            .unwrap_or_default()
    }

    /// Frames decoded per second over the whole window.
    pub fn fps(&self) -> f64 {
        let Some((first, last)) = self.ends() else {
            return 0.0;
        };
        let seconds = self.span().as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        last.stats
            .frames_decoded
            .saturating_sub(first.stats.frames_decoded) as f64
            / seconds
    }

    /// Seconds the picture was frozen (Chromium's `totalFreezesDuration`)
    /// within the window. A freeze still running at the end is not counted
    /// by Chromium yet; [`Window::longest_stall`] covers that case.
    pub fn frozen_seconds(&self) -> f64 {
        let Some((first, last)) = self.ends() else {
            return 0.0;
        };
        last.stats.total_freezes_duration.unwrap_or(0.0)
            - first.stats.total_freezes_duration.unwrap_or(0.0)
    }

    /// The most time frozen within any `span` of the window, counting both
    /// Chromium's finished freezes and stalls still running at a sample
    /// (no new frame between samples).
    pub fn worst_frozen_in(&self, span: Duration) -> f64 {
        let mut worst: f64 = 0.0;
        for (start, first) in self.samples.iter().enumerate() {
            let window: Vec<&Sample> = self.samples[start..]
                .iter()
                .take_while(|sample| sample.at.duration_since(first.at) <= span)
                .collect();
            let Some(last) = window.last() else { continue };
            let freezes = last.stats.total_freezes_duration.unwrap_or(0.0)
                - first.stats.total_freezes_duration.unwrap_or(0.0);
            let stalled = longest_run_without_frames(&window);
            worst = worst.max(freezes.max(stalled));
        }
        worst
    }

    /// The longest run of samples with no new decoded frame, in seconds.
    pub fn longest_stall(&self) -> f64 {
        let all: Vec<&Sample> = self.samples.iter().collect();
        longest_run_without_frames(&all)
    }

    /// Median and largest round trip of the selected pair, in ms.
    pub fn rtt_ms(&self) -> (Option<f64>, Option<f64>) {
        let mut values: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|sample| sample.stats.current_round_trip_time)
            .map(|seconds| seconds * 1000.0)
            .collect();
        let max = values.iter().copied().reduce(f64::max);
        (percentile(&mut values, 0.5), max)
    }

    /// Received bitrate over the window, kbit/s.
    pub fn bitrate_kbps(&self) -> f64 {
        let bytes = self.counted(|stats| stats.bytes_received);
        let seconds = self.span().as_secs_f64();
        if seconds <= 0.0 {
            0.0
        } else {
            bytes as f64 * 8.0 / seconds / 1000.0
        }
    }

    /// How much one of Chromium's counters rose within the window.
    fn counted(&self, counter: impl Fn(&ViewerStats) -> Option<u64>) -> u64 {
        self.ends()
            .map(|(first, last)| {
                counter(&last.stats)
                    .unwrap_or(0)
                    .saturating_sub(counter(&first.stats).unwrap_or(0))
            })
            .unwrap_or(0)
    }

    /// NACKs the viewer sent within the window.
    pub fn nacks(&self) -> u64 {
        self.counted(|stats| stats.nack_count)
    }

    /// The last sample's picture size.
    pub fn size(&self) -> Option<(u32, u32)> {
        let last = &self.samples.last()?.stats;
        Some((last.frame_width?, last.frame_height?))
    }

    /// One line of figures for logs and failure messages.
    pub fn summary(&self) -> String {
        let (rtt, rtt_max) = self.rtt_ms();
        format!(
            "{:.1} s: {:.1} fps, frozen {:.2} s (worst 15 s: {:.2} s, longest stall {:.2} s), \
             {:.0} kbit/s, RTT median {} max {} ms, {} NACKs, {} freezes, {} PLIs, \
             {} keyframes, size {:?}",
            self.span().as_secs_f64(),
            self.fps(),
            self.frozen_seconds(),
            self.worst_frozen_in(Duration::from_secs(15)),
            self.longest_stall(),
            self.bitrate_kbps(),
            rtt.map_or("-".into(), |rtt| format!("{rtt:.0}")),
            rtt_max.map_or("-".into(), |rtt| format!("{rtt:.0}")),
            self.nacks(),
            self.counted(|stats| stats.freeze_count),
            self.counted(|stats| stats.pli_count),
            self.counted(|stats| stats.key_frames_decoded),
            self.size(),
        )
    }
}

fn longest_run_without_frames(samples: &[&Sample]) -> f64 {
    let mut longest: f64 = 0.0;
    let mut since: Option<&Sample> = None;
    for pair in samples.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        if after.stats.frames_decoded > before.stats.frames_decoded {
            since = None;
        } else {
            let start = *since.get_or_insert(before);
            longest = longest.max(after.at.duration_since(start.at).as_secs_f64());
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(points: &[(u64, u64, f64)]) -> Window {
        let start = Instant::now();
        Window {
            samples: points
                .iter()
                .map(|&(ms, frames, frozen)| Sample {
                    at: start + Duration::from_millis(ms),
                    stats: ViewerStats {
                        frames_decoded: frames,
                        total_freezes_duration: Some(frozen),
                        bytes_received: Some(frames * 1000),
                        ..ViewerStats::default()
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn fps_and_freezes_over_the_window() {
        let calm = window(&[(0, 0, 0.0), (1000, 30, 0.0), (2000, 60, 0.0)]);
        assert_eq!(calm.fps(), 30.0);
        assert_eq!(calm.worst_frozen_in(Duration::from_secs(15)), 0.0);
        assert_eq!(calm.bitrate_kbps(), 240.0);
        // A freeze Chromium has counted, and a stall it has not yet.
        let frozen = window(&[
            (0, 0, 0.0),
            (1000, 30, 0.8),
            (2000, 30, 0.8),
            (3000, 30, 0.8),
            (4000, 60, 0.8),
        ]);
        assert_eq!(frozen.frozen_seconds(), 0.8);
        // No new frame at 2 s and 3 s: at least 2 s without a frame.
        assert_eq!(frozen.longest_stall(), 2.0);
        assert_eq!(frozen.worst_frozen_in(Duration::from_secs(15)), 2.0);
    }

    #[test]
    fn the_worst_span_is_found_anywhere_in_the_window() {
        let mut points = vec![(0, 0, 0.0)];
        for second in 1..=40u64 {
            let frozen = if second > 30 { 1.5 } else { 0.2 };
            points.push((second * 1000, second * 30, frozen));
        }
        let window = window(&points);
        let worst = window.worst_frozen_in(Duration::from_secs(15));
        assert!((worst - 1.3).abs() < 1e-9, "{worst}");
    }
}

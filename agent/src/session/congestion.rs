//! The congestion controller: link figures in, encoder decisions out.
//!
//! Pure code, in the spirit of Google congestion control and webrtcsink's
//! loss/delay controller, fed every 100-250 ms with what the viewer reported
//! (TWCC feedback, receiver reports):
//!
//! - **Delay signal.** A queue building on the path shows as the viewer
//!   receiving slower than we send (after discounting what was lost), as a
//!   rising delay gradient, or as a round trip well above the best one seen.
//!   Any of them is *overuse*: the target drops to 85 % of what actually
//!   arrives, so the queue drains, at most once per
//!   [`DECREASE_INTERVAL`].
//! - **Loss signal.** Loss without any delay signal is the link's, not
//!   ours (Wi-Fi, a lossy LTE cell): retransmission repairs it, and cutting
//!   the bitrate would only lower the picture. Only heavy loss (smoothed
//!   over about two seconds, above [`HEAVY_LOSS`]) lowers the target
//!   without a delay signal.
//! - **Otherwise** the target grows 8 % a second, slowing to a few kbit/s
//!   per second near the rate where the last overuse happened, and faster
//!   again once well past it.
//!
//! Below what a resolution needs, the encoder gets a smaller picture and
//! then a lower framerate (see [`Ladder`]), and a larger one again when
//! the target has stayed comfortably above it.
//!
//! **Forward error correction.** ULPFEC is negotiated in every session but
//! sends nothing until the link's own loss calls for it: lasting random
//! loss with no delay signal for a while raises the FEC percentage in
//! proportion to the loss (capped), and it drops back to zero when the
//! loss goes away or a queue shows (tail drops are congestion: redundancy
//! would only feed the queue). The encoder's share shrinks by the FEC
//! overhead, so media and repair together stay within the target.
//!
//! **Retransmissions** are measured (`rtprtxsend`'s counter) and shown in
//! the periodic `link` record as a share of the target. They are not
//! taken off the encoder: tried, doing so made the 700 kbit/s squeeze
//! worse on the test bed (4 of 6 runs passed, against 4 of 4 without),
//! as a smaller encoder share shrank the next received-rate figure and
//! deepened the cut after it.

use std::time::Duration;

use crate::media::control::EncodeTarget;
use crate::media::stats::LinkStats;

/// Bitrate bounds from the configuration, kbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitrateLimits {
    pub min_kbps: u32,
    pub start_kbps: u32,
    pub max_kbps: u32,
}

/// The encoder gets this share of the target; the rest is headroom for
/// retransmissions and packet headers.
const ENCODER_SHARE: f64 = 0.9;
/// After overuse the target is this share of what the viewer received.
const BACKOFF: f64 = 0.85;
/// A single decrease keeps at least this share of the target.
const MAX_CUT: f64 = 0.3;
/// The least time between two decreases: one decision must show its effect
/// in the feedback before the next is taken.
pub const DECREASE_INTERVAL: Duration = Duration::from_millis(1000);
/// Multiplicative growth per second while probing.
const GROWTH_PER_SECOND: f64 = 1.08;
/// The longest span one feedback report may grow the target for.
const MAX_GROWTH_SPAN: Duration = Duration::from_secs(2);
/// Additive growth near the last overuse point, kbit/s per second.
const CAREFUL_GROWTH_KBPS: f64 = 40.0;
/// Smoothed loss above which the target drops even without a delay signal.
const HEAVY_LOSS: f64 = 0.15;
/// The viewer received less than this share of what it should have: a
/// queue is growing.
const RECEIVE_RATIO_OVERUSE: f64 = 0.90;
/// Mean delay gradient that says a queue is growing, microseconds.
const GRADIENT_OVERUSE_US: f64 = 1000.0;
/// Round trip above the best one seen by this much: a standing queue.
const STANDING_QUEUE_MS: f64 = 100.0;
/// Smoothing of the loss figure per sample (about two seconds at 200 ms).
const LOSS_SMOOTHING: f64 = 0.1;
/// A bitrate change smaller than this share is not worth an encoder call.
const BITRATE_STEP: f64 = 0.03;
/// Time between two picture changes down, and before one up.
const LAYER_DOWN_INTERVAL: Duration = Duration::from_secs(1);
const LAYER_UP_INTERVAL: Duration = Duration::from_secs(4);
/// Step up only when the target exceeds what the larger picture needs by
/// this factor, so the step does not bounce straight back.
const LAYER_UP_MARGIN: f64 = 1.4;
/// How often the session logs its link figures.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Smoothed loss from which FEC is sent, and below which it stops again.
const FEC_LOSS_ON: f64 = 0.02;
const FEC_LOSS_OFF: f64 = 0.01;
/// The loss must have lasted this long: a burst of tail drops at a squeeze
/// shows as a delay signal well within it.
const FEC_ONSET: Duration = Duration::from_secs(1);
/// No FEC for this long after a delay signal.
const FEC_CONGESTION_HOLD: Duration = Duration::from_secs(10);
/// FEC percentage (FEC packets per 100 media packets) per percent of loss.
const FEC_PER_LOSS: f64 = 4.0;
/// FEC is set in steps of this many percent, up to the cap.
const FEC_STEP_PCT: u32 = 5;
const FEC_MAX_PCT: u32 = 50;
/// The least time between two FEC changes.
const FEC_CHANGE_INTERVAL: Duration = Duration::from_secs(1);
/// Smoothing of the retransmission share per sample (a storm shows within
/// half a second at 200 ms).
const RTX_SMOOTHING: f64 = 0.3;

/// Sizes and rates the encoder can be given, best first, each with the
/// bitrate it needs to look right.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    rungs: Vec<(EncodeTarget, f64)>,
}

/// What x264 at zero latency needs for a clean 640x480 at 30 fps, kbit/s;
/// other sizes scale with the pixel rate to the power 0.75 (larger pictures
/// compress better per pixel).
const VGA30_KBPS: f64 = 700.0;
const VGA30_PIXEL_RATE: f64 = 640.0 * 480.0 * 30.0;

fn needed_kbps(target: EncodeTarget) -> f64 {
    let pixel_rate =
        f64::from(target.width) * f64::from(target.height) * f64::from(target.framerate);
    VGA30_KBPS * (pixel_rate / VGA30_PIXEL_RATE).powf(0.75)
}

/// Halves a dimension, keeping it even (4:2:0 chroma).
fn half(value: u32) -> u32 {
    (value / 4).max(1) * 2
}

impl Ladder {
    /// The capture itself, half its size, then half its framerate, then a
    /// quarter of its size: smaller pictures first, because viewers notice
    /// a low framerate more than a soft picture.
    pub fn for_capture(capture: hw::CaptureSpec) -> Self {
        let full = EncodeTarget {
            width: capture.width,
            height: capture.height,
            framerate: capture.framerate,
        };
        let half_size = EncodeTarget {
            width: half(full.width),
            height: half(full.height),
            ..full
        };
        let half_rate = EncodeTarget {
            framerate: (full.framerate / 2).max(1),
            ..half_size
        };
        let quarter = EncodeTarget {
            width: half(half_size.width),
            height: half(half_size.height),
            ..half_rate
        };
        let mut rungs: Vec<(EncodeTarget, f64)> = Vec::new();
        for rung in [full, half_size, half_rate, quarter] {
            if rungs.last().is_none_or(|(last, _)| *last != rung) {
                rungs.push((rung, needed_kbps(rung)));
            }
        }
        Self { rungs }
    }

    pub fn target(&self, index: usize) -> EncodeTarget {
        self.rungs[index.min(self.rungs.len() - 1)].0
    }

    fn needed(&self, index: usize) -> f64 {
        self.rungs[index.min(self.rungs.len() - 1)].1
    }

    fn len(&self) -> usize {
        self.rungs.len()
    }

    /// The best rung whose needs `kbps` covers; the last one otherwise.
    fn fitting(&self, kbps: f64) -> usize {
        (0..self.len())
            .find(|&index| kbps >= self.needed(index))
            .unwrap_or(self.len() - 1)
    }
}

/// What the controller asks the media to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    SetBitrate {
        kbps: u32,
    },
    SetEncodeTarget(EncodeTarget),
    /// FEC packets per 100 media packets; 0 sends none.
    FecPercentage(u32),
}

/// The figures of the periodic per-session log line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkReport {
    pub target_kbps: u32,
    /// What went out over the last interval, from the byte counter.
    pub sent_kbps: u32,
    pub loss_pct: f64,
    pub fec_pct: u32,
    /// Retransmissions, smoothed, as a percentage of the target.
    pub rtx_pct: f64,
    pub rtt_ms: Option<f64>,
    pub encode: EncodeTarget,
    /// RTCP packets from the viewer so far.
    pub rtcp_received: u64,
}

/// Why the last decision was taken; for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    NoFeedback,
    Overuse,
    HeavyLoss,
    Normal,
}

#[derive(Debug, Clone)]
pub struct Controller {
    limits: BitrateLimits,
    ladder: Ladder,
    rung: usize,
    target_kbps: f64,
    applied_kbps: u32,
    loss: f64,
    min_rtt_ms: Option<f64>,
    /// The last receiver-report round trip taken into account.
    last_rtt_ms: Option<f64>,
    /// The received rate at the last overuse, kbit/s.
    last_overuse_kbps: Option<f64>,
    last_sample: Option<Duration>,
    last_decrease: Option<Duration>,
    last_rung_change: Duration,
    last_report: Option<(Duration, u64)>,
    last_signal: Signal,
    /// The viewer's answer accepted FEC; until then (and without it) none.
    fec_negotiated: bool,
    fec_pct: u32,
    /// Since when the smoothed loss has been above [`FEC_LOSS_ON`].
    loss_since: Option<Duration>,
    last_overuse: Option<Duration>,
    last_fec_change: Option<Duration>,
    /// Retransmissions as a share of the target, smoothed.
    rtx_share: f64,
    /// (when, retransmissions, media bytes, media packets) at the last
    /// sample that had a retransmission counter.
    last_rtx: Option<(Duration, u64, u64, u64)>,
}

impl Controller {
    /// A controller for a session that starts now (`at` is the session's
    /// clock) and the controls that set the encoder to its start.
    pub fn new(
        limits: BitrateLimits,
        capture: hw::CaptureSpec,
        at: Duration,
    ) -> (Self, Vec<Control>) {
        let ladder = Ladder::for_capture(capture);
        let start = f64::from(limits.start_kbps);
        let rung = ladder.fitting(start);
        let controller = Self {
            limits,
            rung,
            target_kbps: start,
            applied_kbps: encoder_kbps(start, 0),
            loss: 0.0,
            min_rtt_ms: None,
            last_rtt_ms: None,
            last_overuse_kbps: None,
            last_sample: None,
            last_decrease: None,
            last_rung_change: at,
            last_report: None,
            last_signal: Signal::NoFeedback,
            fec_negotiated: false,
            fec_pct: 0,
            loss_since: None,
            last_overuse: None,
            last_fec_change: None,
            rtx_share: 0.0,
            last_rtx: None,
            ladder,
        };
        let mut controls = vec![Control::SetBitrate {
            kbps: controller.applied_kbps,
        }];
        if rung != 0 {
            controls.push(Control::SetEncodeTarget(controller.ladder.target(rung)));
        }
        (controller, controls)
    }

    pub fn target_kbps(&self) -> u32 {
        self.target_kbps.round() as u32
    }

    pub fn encode_target(&self) -> EncodeTarget {
        self.ladder.target(self.rung)
    }

    #[cfg(test)]
    pub fn last_signal(&self) -> Signal {
        self.last_signal
    }

    /// Whether the viewer takes FEC (from its answer): a viewer without it
    /// would get nothing from the FEC share, so it stays with the media.
    pub fn set_fec_negotiated(&mut self, negotiated: bool) {
        self.fec_negotiated = negotiated;
    }

    /// Takes one stats sample at `at` and returns what to change.
    pub fn on_stats(&mut self, at: Duration, stats: &LinkStats) -> Vec<Control> {
        let dt = self
            .last_sample
            .map(|last| at.saturating_sub(last).as_secs_f64())
            .unwrap_or(0.0)
            // Feedback after a gap (a blackout, a viewer that reports every
            // few seconds) must not grow the target by the whole gap.
            .min(MAX_GROWTH_SPAN.as_secs_f64());
        self.last_sample = Some(at);
        self.measure_retransmissions(at, stats);
        let signal = self.signal(stats);
        self.last_signal = signal;
        let min = f64::from(self.limits.min_kbps);
        let max = f64::from(self.limits.max_kbps);
        let may_decrease = self
            .last_decrease
            .is_none_or(|last| at.saturating_sub(last) >= DECREASE_INTERVAL);
        match signal {
            Signal::NoFeedback => {}
            Signal::Overuse if may_decrease => {
                let received = stats
                    .twcc
                    .map(|twcc| f64::from(twcc.recv_bps) / 1000.0)
                    .filter(|received| *received > 0.0)
                    .unwrap_or(self.target_kbps);
                // One noisy receive figure must not collapse the rate: at
                // most half of it goes per decrease.
                let backed_off = (received * BACKOFF).max(self.target_kbps * MAX_CUT);
                self.target_kbps = backed_off.min(self.target_kbps).clamp(min, max);
                self.last_overuse_kbps = Some(received);
                self.last_decrease = Some(at);
            }
            Signal::HeavyLoss if may_decrease => {
                self.target_kbps = (self.target_kbps * (1.0 - 0.5 * self.loss)).clamp(min, max);
                self.last_decrease = Some(at);
            }
            Signal::Overuse | Signal::HeavyLoss => {}
            Signal::Normal => {
                let near_last_overuse = self.last_overuse_kbps.is_some_and(|point| {
                    self.target_kbps > point * 0.9 && self.target_kbps < point * 1.2
                });
                self.target_kbps = if near_last_overuse {
                    self.target_kbps + CAREFUL_GROWTH_KBPS * dt
                } else {
                    self.target_kbps * GROWTH_PER_SECOND.powf(dt)
                }
                .clamp(min, max);
            }
        }
        let mut controls = Vec::new();
        if signal != Signal::NoFeedback
            && let Some(fec) = self.next_fec(at, signal)
        {
            self.fec_pct = fec;
            self.last_fec_change = Some(at);
            controls.push(Control::FecPercentage(fec));
        }
        let kbps = encoder_kbps(self.target_kbps, self.fec_pct);
        let change = (f64::from(kbps) - f64::from(self.applied_kbps)).abs();
        if change >= f64::from(self.applied_kbps) * BITRATE_STEP {
            self.applied_kbps = kbps;
            controls.push(Control::SetBitrate { kbps });
        }
        if let Some(rung) = self.next_rung(at) {
            self.rung = rung;
            self.last_rung_change = at;
            controls.push(Control::SetEncodeTarget(self.ladder.target(rung)));
        }
        controls
    }

    /// The retransmission rate since the last sample, as a share of the
    /// target; retransmitted packets are taken at the media's mean size.
    fn measure_retransmissions(&mut self, at: Duration, stats: &LinkStats) {
        let Some(rtx) = stats.rtx_packets_sent else {
            return;
        };
        if let Some((then, last_rtx, last_bytes, last_packets)) = self.last_rtx {
            let dt = at.saturating_sub(then).as_secs_f64();
            if dt > 0.0 {
                let packets = stats.packets_sent.saturating_sub(last_packets);
                let bytes = stats.bytes_sent.saturating_sub(last_bytes);
                let packet_bytes = if packets > 0 {
                    bytes as f64 / packets as f64
                } else {
                    1200.0
                };
                let rtx_kbps =
                    rtx.saturating_sub(last_rtx) as f64 * packet_bytes * 8.0 / dt / 1000.0;
                let share = (rtx_kbps / self.target_kbps.max(1.0)).clamp(0.0, 1.0);
                self.rtx_share += RTX_SMOOTHING * (share - self.rtx_share);
            }
        }
        self.last_rtx = Some((at, rtx, stats.bytes_sent, stats.packets_sent));
    }

    fn signal(&mut self, stats: &LinkStats) -> Signal {
        let loss = match (stats.twcc, stats.fraction_lost) {
            (Some(twcc), _) => Some(twcc.loss_pct / 100.0),
            (None, Some(fraction)) => Some(fraction),
            (None, None) => None,
        };
        let loss = loss.map(|loss| loss.clamp(0.0, 1.0));
        if let Some(loss) = loss {
            self.loss += LOSS_SMOOTHING * (loss - self.loss);
        }
        // A receiver report's round trip stays in webrtcbin's figures until
        // the next report: only a new one is a new measurement.
        let previous_rtt = self.last_rtt_ms;
        let fresh_rtt = stats.rtt_ms.filter(|rtt| Some(*rtt) != previous_rtt);
        if let Some(rtt) = fresh_rtt {
            self.min_rtt_ms = Some(self.min_rtt_ms.map_or(rtt, |min| min.min(rtt)));
            self.last_rtt_ms = Some(rtt);
        }
        if stats.twcc.is_none() && stats.rtt_ms.is_none() && loss.is_none() {
            return Signal::NoFeedback;
        }
        let receiving_short = stats.twcc.is_some_and(|twcc| {
            let expected = f64::from(twcc.sent_bps) * (1.0 - twcc.loss_pct / 100.0);
            expected > 0.0 && f64::from(twcc.recv_bps) < expected * RECEIVE_RATIO_OVERUSE
        });
        let queue_growing = stats
            .twcc
            .is_some_and(|twcc| twcc.delay_gradient_us > GRADIENT_OVERUSE_US);
        // A high round trip that is shrinking is a queue draining after a
        // decrease: no reason to cut again.
        let standing_queue = match (fresh_rtt, self.min_rtt_ms) {
            (Some(rtt), Some(min)) => {
                rtt > min + STANDING_QUEUE_MS && previous_rtt.is_none_or(|last| rtt >= last)
            }
            _ => false,
        };
        // Loss counts as heavy when it is both lasting and current: the
        // burst of tail drops at a squeeze has already been answered by
        // the delay signal.
        let heavy_loss = self.loss > HEAVY_LOSS && loss.is_none_or(|current| current > HEAVY_LOSS);
        if receiving_short || queue_growing || standing_queue {
            Signal::Overuse
        } else if heavy_loss {
            Signal::HeavyLoss
        } else {
            Signal::Normal
        }
    }

    /// The FEC percentage to change to, if it should change.
    fn next_fec(&mut self, at: Duration, signal: Signal) -> Option<u32> {
        if signal == Signal::Overuse {
            self.last_overuse = Some(at);
        }
        let threshold = if self.fec_pct > 0 {
            FEC_LOSS_OFF
        } else {
            FEC_LOSS_ON
        };
        if self.loss < threshold {
            self.loss_since = None;
        } else if self.loss_since.is_none() {
            self.loss_since = Some(at);
        }
        let congested = self
            .last_overuse
            .is_some_and(|last| at.saturating_sub(last) < FEC_CONGESTION_HOLD);
        let lasting = self
            .loss_since
            .is_some_and(|since| at.saturating_sub(since) >= FEC_ONSET);
        let wanted = if congested || !lasting || !self.fec_negotiated {
            0
        } else {
            let exact = self.loss * 100.0 * FEC_PER_LOSS;
            let steps = (exact / f64::from(FEC_STEP_PCT)).round();
            let rounded = (steps as u32 * FEC_STEP_PCT).clamp(FEC_STEP_PCT, FEC_MAX_PCT);
            // Within a step of the current figure: noise, keep it.
            let close = self.fec_pct > 0
                && (exact.min(f64::from(FEC_MAX_PCT)) - f64::from(self.fec_pct)).abs()
                    < f64::from(FEC_STEP_PCT);
            if close { self.fec_pct } else { rounded }
        };
        if wanted == self.fec_pct {
            return None;
        }
        // Off at once (congestion, or the loss is gone); other changes at
        // most once per interval.
        let may_change = wanted == 0
            || self
                .last_fec_change
                .is_none_or(|last| at.saturating_sub(last) >= FEC_CHANGE_INTERVAL);
        may_change.then_some(wanted)
    }

    fn next_rung(&self, at: Duration) -> Option<usize> {
        let since = at.saturating_sub(self.last_rung_change);
        let fitting = self.ladder.fitting(self.target_kbps);
        if fitting > self.rung && since >= LAYER_DOWN_INTERVAL {
            return Some(self.rung + 1);
        }
        let comfortably_above = self.rung > 0
            && self.target_kbps >= self.ladder.needed(self.rung - 1) * LAYER_UP_MARGIN;
        (comfortably_above && since >= LAYER_UP_INTERVAL).then(|| self.rung - 1)
    }

    /// The figures for the periodic log line, once per [`REPORT_INTERVAL`].
    pub fn report(&mut self, at: Duration, stats: &LinkStats) -> Option<LinkReport> {
        let (last_at, last_bytes) = match self.last_report {
            None => {
                self.last_report = Some((at, stats.bytes_sent));
                return None;
            }
            Some(last) => last,
        };
        let span = at.saturating_sub(last_at);
        if span < REPORT_INTERVAL {
            return None;
        }
        self.last_report = Some((at, stats.bytes_sent));
        let bits = stats.bytes_sent.saturating_sub(last_bytes) as f64 * 8.0;
        Some(LinkReport {
            target_kbps: self.target_kbps(),
            sent_kbps: (bits / span.as_secs_f64() / 1000.0).round() as u32,
            loss_pct: self.loss * 100.0,
            fec_pct: self.fec_pct,
            rtx_pct: self.rtx_share * 100.0,
            rtt_ms: stats.rtt_ms,
            encode: self.encode_target(),
            rtcp_received: stats.rtcp_received,
        })
    }
}

/// What the encoder gets of the target when FEC adds `fec_pct` packets per
/// 100 media packets on top of the media.
fn encoder_kbps(target_kbps: f64, fec_pct: u32) -> u32 {
    let fec_overhead = 1.0 + f64::from(fec_pct) / 100.0;
    (target_kbps * ENCODER_SHARE / fec_overhead)
        .round()
        .max(1.0) as u32
}

#[cfg(test)]
#[path = "congestion_tests.rs"]
mod tests;

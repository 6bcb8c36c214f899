//! The controller against a simulated link: a bottleneck of `capacity_kbps`
//! with a tail-drop FIFO of 30 packets (what the test bed's HTB + pfifo
//! builds), random loss on top, and feedback as TWCC would report it every
//! 200 ms. Whatever is lost (at random or at the full queue) is NACKed and
//! retransmitted in the next interval, on top of the media, as the agent's
//! NACK/RTX does.

use super::*;
use crate::media::stats::TwccFigures;

const TICK: Duration = Duration::from_millis(200);
const PACKET_KBIT: f64 = 1200.0 * 8.0 / 1000.0;
const QUEUE_KBIT: f64 = 30.0 * PACKET_KBIT;
const BASE_RTT_MS: f64 = 10.0;

const LIMITS: BitrateLimits = BitrateLimits {
    min_kbps: 150,
    start_kbps: 1000,
    max_kbps: 2000,
};

const VGA: hw::CaptureSpec = hw::CaptureSpec {
    width: 640,
    height: 480,
    framerate: 30,
};

struct Link {
    capacity_kbps: f64,
    random_loss: f64,
    /// Each tick's random loss varies by up to this much either way.
    loss_jitter: f64,
    /// State of the generator behind the jitter (a fixed sequence).
    noise: u64,
    queue_kbit: f64,
}

/// One session on the simulated link.
struct Sim {
    link: Link,
    controller: Controller,
    encoder_kbps: f64,
    encode: EncodeTarget,
    fec_pct: u32,
    /// Every FEC percentage the controller set, in order.
    fec_changes: Vec<u32>,
    at: Duration,
    bytes_sent: u64,
    packets_sent: u64,
    /// Lost in the last interval, resent in the next, kbit.
    rtx_pending_kbit: f64,
    rtx_packets: u64,
    /// Queueing delay after every tick, ms.
    delays: Vec<f64>,
}

impl Sim {
    fn new(capacity_kbps: f64, random_loss: f64) -> Self {
        let (mut controller, controls) = Controller::new(LIMITS, VGA, Duration::ZERO);
        controller.set_fec_negotiated(true);
        let mut sim = Self {
            link: Link {
                capacity_kbps,
                random_loss,
                loss_jitter: 0.0,
                noise: 1,
                queue_kbit: 0.0,
            },
            encode: controller.encode_target(),
            controller,
            encoder_kbps: 0.0,
            fec_pct: 0,
            fec_changes: Vec::new(),
            at: Duration::ZERO,
            bytes_sent: 0,
            packets_sent: 0,
            rtx_pending_kbit: 0.0,
            rtx_packets: 0,
            delays: Vec::new(),
        };
        sim.apply(&controls);
        sim
    }

    fn apply(&mut self, controls: &[Control]) {
        for control in controls {
            match *control {
                Control::SetBitrate { kbps } => self.encoder_kbps = f64::from(kbps),
                Control::SetEncodeTarget(target) => self.encode = target,
                Control::FecPercentage(pct) => {
                    self.fec_pct = pct;
                    self.fec_changes.push(pct);
                }
            }
        }
    }

    /// One feedback interval: what the link did, then what TWCC reports.
    fn tick(&mut self) {
        let dt = TICK.as_secs_f64();
        let link = &mut self.link;
        // FEC packets go out on top of the media, retransmissions on top
        // of both.
        let media = self.encoder_kbps * dt * (1.0 + f64::from(self.fec_pct) / 100.0);
        let resent = std::mem::take(&mut self.rtx_pending_kbit);
        let sent = media + resent;
        link.noise = link
            .noise
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let uniform = (link.noise >> 11) as f64 / (1u64 << 53) as f64;
        let loss = link.random_loss + link.loss_jitter * (2.0 * uniform - 1.0);
        let randomly_lost = sent * loss.clamp(0.0, 1.0);
        let before = link.queue_kbit;
        let mut queue = before + (sent - randomly_lost) - link.capacity_kbps * dt;
        queue = queue.max(0.0);
        let dropped = (queue - QUEUE_KBIT).max(0.0);
        queue = queue.min(QUEUE_KBIT);
        link.queue_kbit = queue;
        let delivered = sent - randomly_lost - dropped - (queue - before);
        self.rtx_pending_kbit = randomly_lost + dropped;
        self.rtx_packets += (resent / PACKET_KBIT).round() as u64;
        self.packets_sent += (media / PACKET_KBIT).round() as u64;
        let packets = (sent / PACKET_KBIT).max(1.0);
        let delay_ms = queue / link.capacity_kbps * 1000.0;
        let growth_us = (queue - before) / link.capacity_kbps * 1e6;
        self.delays.push(delay_ms);
        self.bytes_sent += (media * 1000.0 / 8.0) as u64;
        self.at += TICK;
        let stats = LinkStats {
            twcc: Some(TwccFigures {
                sent_bps: (sent / dt * 1000.0) as u32,
                recv_bps: (delivered / dt * 1000.0).max(0.0) as u32,
                loss_pct: (randomly_lost + dropped) / sent.max(1e-9) * 100.0,
                delay_gradient_us: growth_us / packets,
            }),
            rtt_ms: Some(BASE_RTT_MS + delay_ms),
            bytes_sent: self.bytes_sent,
            packets_sent: self.packets_sent,
            rtx_packets_sent: Some(self.rtx_packets),
            ..LinkStats::default()
        };
        let controls = self.controller.on_stats(self.at, &stats);
        self.apply(&controls);
    }

    fn run(&mut self, span: Duration) {
        let ticks = span.as_millis() / TICK.as_millis();
        for _ in 0..ticks {
            self.tick();
        }
    }

    fn worst_delay_over_last(&self, span: Duration) -> f64 {
        let ticks = (span.as_millis() / TICK.as_millis()) as usize;
        self.delays
            .iter()
            .rev()
            .take(ticks)
            .copied()
            .fold(0.0, f64::max)
    }
}

/// A free link for 15 s, 30 s squeezed to 700 kbit/s, then 20 s free again.
fn squeezed_then_widened() -> Sim {
    let mut sim = Sim::new(100_000.0, 0.0);
    sim.run(Duration::from_secs(15));
    sim.link.capacity_kbps = 700.0;
    sim.run(Duration::from_secs(30));
    sim.link.capacity_kbps = 100_000.0;
    sim.run(Duration::from_secs(20));
    sim
}

/// A viewer without TWCC on a clean link: receiver reports only.
fn calm_receiver_reports() -> LinkStats {
    LinkStats {
        rtt_ms: Some(20.0),
        fraction_lost: Some(0.0),
        ..LinkStats::default()
    }
}

#[test]
fn a_free_link_ramps_from_start_to_max_at_full_size() {
    let mut sim = Sim::new(100_000.0, 0.0);
    assert_eq!(sim.encoder_kbps, 900.0, "encoder starts at 90 % of start");
    sim.run(Duration::from_secs(12));
    assert_eq!(sim.controller.target_kbps(), LIMITS.max_kbps);
    assert_eq!(sim.encode, sim.controller.ladder.target(0));
    assert_eq!((sim.encode.width, sim.encode.framerate), (640, 30));
}

#[test]
fn a_squeeze_to_700_kbits_drains_the_queue_and_keeps_the_framerate() {
    let mut sim = Sim::new(100_000.0, 0.0);
    sim.run(Duration::from_secs(15));
    assert_eq!(sim.controller.target_kbps(), LIMITS.max_kbps);
    sim.link.capacity_kbps = 700.0;
    sim.run(Duration::from_secs(10));
    // Within 10 s of the squeeze: under the link's rate, a smaller picture
    // at full framerate, and no standing queue from then on.
    assert!(
        sim.encoder_kbps <= 700.0,
        "encoder at {} kbit/s",
        sim.encoder_kbps
    );
    assert!(sim.encode.framerate >= 20, "{:?}", sim.encode);
    assert!(sim.encode.width < 640, "{:?}", sim.encode);
    sim.run(Duration::from_secs(20));
    let worst = sim.worst_delay_over_last(Duration::from_secs(20));
    assert!(worst < 150.0, "queueing delay reached {worst:.0} ms");
    assert!(sim.controller.target_kbps() >= 400, "link left unused");
    assert!(sim.encode.framerate >= 20, "{:?}", sim.encode);
}

#[test]
fn after_the_squeeze_the_rate_comes_back_within_20_s() {
    let sim = squeezed_then_widened();
    let target = sim.controller.target_kbps();
    assert!(
        f64::from(target) >= 0.6 * f64::from(LIMITS.max_kbps),
        "target only {target} kbit/s 20 s after the link widened"
    );
    assert_eq!(sim.encode.width, 640, "{:?}", sim.encode);
}

#[test]
fn random_loss_without_a_queue_does_not_lower_the_picture() {
    for loss in [0.02, 0.05, 0.10] {
        let mut sim = Sim::new(100_000.0, loss);
        sim.run(Duration::from_secs(20));
        assert!(
            sim.controller.target_kbps() >= LIMITS.start_kbps,
            "{loss}: target {}",
            sim.controller.target_kbps()
        );
        assert_eq!(sim.encode, sim.controller.ladder.target(0), "{loss}");
    }
}

#[test]
fn heavy_loss_lowers_the_target_even_without_a_queue() {
    let mut sim = Sim::new(100_000.0, 0.30);
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.controller.last_signal(), Signal::HeavyLoss);
    assert!(sim.controller.target_kbps() < LIMITS.start_kbps);
}

#[test]
fn the_target_never_leaves_the_configured_bounds() {
    let mut sim = Sim::new(50.0, 0.0);
    sim.run(Duration::from_secs(30));
    assert_eq!(sim.controller.target_kbps(), LIMITS.min_kbps);
    let mut sim = Sim::new(100_000.0, 0.0);
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.controller.target_kbps(), LIMITS.max_kbps);
}

#[test]
fn without_feedback_the_start_rate_holds() {
    let (mut controller, _) = Controller::new(LIMITS, VGA, Duration::ZERO);
    for tick in 1..50 {
        let controls = controller.on_stats(TICK * tick, &LinkStats::default());
        assert!(controls.is_empty(), "{controls:?}");
    }
    assert_eq!(controller.target_kbps(), LIMITS.start_kbps);
    assert_eq!(controller.last_signal(), Signal::NoFeedback);
}

#[test]
fn receiver_reports_alone_drive_the_controller() {
    // A viewer without TWCC: RTT and fraction lost from receiver reports.
    let (mut controller, _) = Controller::new(LIMITS, VGA, Duration::ZERO);
    let calm = calm_receiver_reports();
    for tick in 1..=25 {
        controller.on_stats(TICK * tick, &calm);
    }
    let grown = controller.target_kbps();
    assert!(grown > LIMITS.start_kbps, "{grown}");
    let queued = LinkStats {
        rtt_ms: Some(400.0),
        ..calm
    };
    controller.on_stats(TICK * 26, &queued);
    assert_eq!(controller.last_signal(), Signal::Overuse);
    assert!(controller.target_kbps() < grown);
}

#[test]
fn the_ladder_halves_size_then_framerate() {
    let ladder = Ladder::for_capture(VGA);
    let rungs: Vec<(u32, u32, u32)> = (0..ladder.len())
        .map(|index| {
            let target = ladder.target(index);
            (target.width, target.height, target.framerate)
        })
        .collect();
    assert_eq!(
        rungs,
        [
            (640, 480, 30),
            (320, 240, 30),
            (320, 240, 15),
            (160, 120, 15)
        ]
    );
    // A 720p camera starting at 1 Mbit/s starts at 640x360.
    let hd = hw::CaptureSpec {
        width: 1280,
        height: 720,
        framerate: 30,
    };
    let (controller, controls) = Controller::new(LIMITS, hd, Duration::ZERO);
    assert_eq!(
        controls,
        [
            Control::SetBitrate { kbps: 900 },
            Control::SetEncodeTarget(EncodeTarget {
                width: 640,
                height: 360,
                framerate: 30
            })
        ]
    );
    assert_eq!(controller.encode_target().width, 640);
}

#[test]
fn a_report_every_five_seconds_with_the_sent_rate() {
    let mut sim = Sim::new(100_000.0, 0.0);
    // At max already, so the encoder's rate is steady over the window.
    sim.run(Duration::from_secs(20));
    let mut reports = Vec::new();
    for _ in 0..60 {
        sim.tick();
        let stats = LinkStats {
            bytes_sent: sim.bytes_sent,
            rtt_ms: Some(10.0),
            ..LinkStats::default()
        };
        if let Some(report) = sim.controller.report(sim.at, &stats) {
            reports.push(report);
        }
    }
    assert_eq!(reports.len(), 2, "{reports:?}");
    let last = reports[1];
    // The encoder's rate over the last five seconds, within rounding.
    assert!(
        (f64::from(last.sent_kbps) - sim.encoder_kbps).abs() < 0.1 * sim.encoder_kbps,
        "{last:?} vs encoder {}",
        sim.encoder_kbps
    );
    assert_eq!(last.encode.width, 640);
}

#[test]
fn feedback_after_a_gap_grows_the_target_by_two_seconds_at_most() {
    let (mut controller, _) = Controller::new(LIMITS, VGA, Duration::ZERO);
    let calm = calm_receiver_reports();
    controller.on_stats(Duration::from_secs(1), &calm);
    let before = f64::from(controller.target_kbps());
    controller.on_stats(Duration::from_secs(11), &calm);
    let after = f64::from(controller.target_kbps());
    assert!(
        after <= before * GROWTH_PER_SECOND.powi(2) + 1.0,
        "{before} -> {after} after a 10 s gap"
    );
}

#[test]
fn a_clean_link_sends_no_fec() {
    let mut sim = Sim::new(100_000.0, 0.0);
    sim.run(Duration::from_secs(30));
    assert!(sim.fec_changes.is_empty(), "{:?}", sim.fec_changes);
}

#[test]
fn random_loss_brings_fec_in_proportion_and_its_end_takes_it_away() {
    for (loss, least, most) in [(0.05, 15, 25), (0.10, 35, 45)] {
        let mut sim = Sim::new(100_000.0, loss);
        sim.run(Duration::from_secs(20));
        let fec = sim.fec_pct;
        assert!((least..=most).contains(&fec), "{loss}: FEC {fec} %");
        // The media makes room for it: media and FEC within the target.
        let total = sim.encoder_kbps * (1.0 + f64::from(fec) / 100.0);
        assert!(
            total <= f64::from(sim.controller.target_kbps()),
            "{loss}: {total} kbit/s over a target of {}",
            sim.controller.target_kbps()
        );
        sim.link.random_loss = 0.0;
        sim.run(Duration::from_secs(30));
        assert_eq!(sim.fec_pct, 0, "{loss}: FEC left on after the loss ended");
        assert_eq!(sim.encoder_kbps, f64::from(encoder_kbps(2000.0, 0)));
    }
}

#[test]
fn a_viewer_without_fec_gets_none_and_the_media_keeps_its_share() {
    let mut sim = Sim::new(100_000.0, 0.10);
    sim.controller.set_fec_negotiated(false);
    sim.run(Duration::from_secs(20));
    assert!(sim.fec_changes.is_empty(), "{:?}", sim.fec_changes);
    let target = f64::from(sim.controller.target_kbps());
    let full_share = f64::from(encoder_kbps(target, 0));
    assert!(
        (sim.encoder_kbps - full_share).abs() <= full_share * BITRATE_STEP,
        "encoder at {} kbit/s of a {target} kbit/s target",
        sim.encoder_kbps
    );
}

#[test]
fn fec_changes_stay_rare_under_noisy_loss() {
    let mut sim = Sim::new(100_000.0, 0.05);
    // Each feedback window's loss anywhere from 2 % to 8 %.
    sim.link.loss_jitter = 0.03;
    sim.run(Duration::from_secs(60));
    assert!(
        sim.fec_changes.len() <= 4,
        "FEC changed {} times: {:?}",
        sim.fec_changes.len(),
        sim.fec_changes
    );
    assert!(sim.fec_pct > 0);
}

#[test]
fn congestion_loss_brings_no_fec() {
    let sim = squeezed_then_widened();
    assert!(sim.fec_changes.is_empty(), "{:?}", sim.fec_changes);
}

#[test]
fn a_queue_under_random_loss_turns_fec_off() {
    let mut sim = Sim::new(100_000.0, 0.05);
    sim.run(Duration::from_secs(20));
    assert!(sim.fec_pct > 0);
    sim.link.capacity_kbps = 700.0;
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.fec_pct, 0, "FEC kept feeding a queue");
}

#[test]
fn tail_drops_reported_before_the_delay_signal_bring_no_fec() {
    // A squeeze whose first feedback shows heavy loss but no delay signal
    // yet; the queue shows a few reports later.
    let (mut controller, _) = Controller::new(LIMITS, VGA, Duration::ZERO);
    controller.set_fec_negotiated(true);
    let report = |loss_pct: f64, delay_gradient_us: f64| LinkStats {
        twcc: Some(TwccFigures {
            sent_bps: 2_000_000,
            recv_bps: (2_000_000.0 * (1.0 - loss_pct / 100.0)) as u32,
            loss_pct,
            delay_gradient_us,
        }),
        rtt_ms: Some(BASE_RTT_MS),
        ..LinkStats::default()
    };
    let mut controls = Vec::new();
    for tick in 1..=25 {
        controls.extend(controller.on_stats(TICK * tick, &report(0.0, 0.0)));
    }
    for tick in 26..=28 {
        controls.extend(controller.on_stats(TICK * tick, &report(40.0, 0.0)));
    }
    for tick in 29..=80 {
        controls.extend(controller.on_stats(TICK * tick, &report(20.0, 5000.0)));
    }
    let fec: Vec<_> = controls
        .iter()
        .filter(|control| matches!(control, Control::FecPercentage(_)))
        .collect();
    assert!(fec.is_empty(), "{fec:?}");
}

#[test]
fn the_link_report_shows_retransmissions_as_a_share_of_the_target() {
    // 10 % random loss: about as much is resent, every loss once.
    let mut sim = Sim::new(100_000.0, 0.10);
    let mut shares = Vec::new();
    for _ in 0..60 {
        sim.tick();
        let stats = LinkStats {
            bytes_sent: sim.bytes_sent,
            ..LinkStats::default()
        };
        if let Some(report) = sim.controller.report(sim.at, &stats) {
            shares.push(report.rtx_pct);
        }
    }
    let last = *shares.last().expect("no report in 12 s");
    assert!((5.0..=15.0).contains(&last), "{shares:?}");
    // A clean link resends nothing.
    let mut clean = Sim::new(100_000.0, 0.0);
    clean.run(Duration::from_secs(10));
    let stats = LinkStats::default();
    clean.controller.report(clean.at, &stats);
    clean.run(Duration::from_secs(6));
    let report = clean.controller.report(clean.at, &stats).unwrap();
    assert!(report.rtx_pct < 0.5, "{report:?}");
}

#[test]
fn a_squeeze_with_retransmissions_keeps_them_and_the_queue_in_check() {
    let mut sim = Sim::new(100_000.0, 0.0);
    sim.run(Duration::from_secs(15));
    sim.link.capacity_kbps = 700.0;
    let rtx_before = sim.rtx_packets;
    let media_before = sim.packets_sent;
    sim.run(Duration::from_secs(30));
    // Over the last 20 s of the squeeze: no standing queue, and repair
    // traffic a small share of what was sent.
    assert!(sim.worst_delay_over_last(Duration::from_secs(20)) < 200.0);
    let rtx = (sim.rtx_packets - rtx_before) as f64;
    let media = (sim.packets_sent - media_before) as f64;
    assert!(
        rtx / media < 0.1,
        "{rtx} retransmissions for {media} packets"
    );
}

//! webrtcbin's `get-stats` report read into plain figures: what the viewer
//! told us about the link (TWCC feedback, RTCP receiver reports, NACK and
//! PLI counts) and which candidate pair carries the media.
//!
//! The report is a structure of structures keyed by ids that change with
//! every session; this module only looks at the `type` of each and the
//! fields GStreamer 1.22 fills (`gstwebrtcstats.c`). Anything missing stays
//! `None`: a viewer without TWCC, or a report taken before the first RTCP.

use std::net::IpAddr;

use gst_webrtc::WebRTCStatsType;

/// Transport-wide congestion control figures over the last feedback window,
/// as the RTP session computes them from the viewer's TWCC reports.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TwccFigures {
    /// What went out (media and retransmissions), bit/s.
    pub sent_bps: u32,
    /// What the viewer says it received over the same packets, bit/s.
    pub recv_bps: u32,
    /// Packets of the window the viewer never saw, percent.
    pub loss_pct: f64,
    /// Mean change of one-way delay between packet groups, microseconds:
    /// positive and large while a queue builds up on the path.
    pub delay_gradient_us: f64,
}

/// One side of the selected candidate pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CandidateInfo {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub kind: String,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// For a relay candidate, how it reaches its TURN server.
    pub relay_protocol: Option<String>,
}

/// The candidate pair ICE selected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SelectedPair {
    pub local: CandidateInfo,
    pub remote: CandidateInfo,
}

/// What one `get-stats` report says about the session's link.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkStats {
    pub twcc: Option<TwccFigures>,
    /// From the viewer's last receiver report.
    pub rtt_ms: Option<f64>,
    /// Fraction of packets lost in the viewer's last receiver report, 0..1.
    pub fraction_lost: Option<f64>,
    pub bytes_sent: u64,
    pub packets_sent: u64,
    pub nacks_received: u32,
    pub plis_received: u32,
    pub firs_received: u32,
    pub selected_pair: Option<SelectedPair>,
    /// RTCP packets received from the viewer so far (a counter the media
    /// session keeps; not part of webrtcbin's report).
    pub rtcp_received: u64,
    /// Retransmitted packets sent so far (`rtprtxsend`'s counter; not part
    /// of webrtcbin's report); `None` without a retransmission sender.
    pub rtx_packets_sent: Option<u64>,
}

fn structures(report: &gst::StructureRef) -> impl Iterator<Item = gst::Structure> + '_ {
    report
        .iter()
        .filter_map(|(_, value)| value.get::<gst::Structure>().ok())
}

fn kind_of(stats: &gst::StructureRef) -> Option<WebRTCStatsType> {
    stats.get::<WebRTCStatsType>("type").ok()
}

/// A candidate of the report; `tls_tunnels` for the local one (see
/// [`relay_leg`]), `None` for the remote one.
fn candidate(
    report: &gst::StructureRef,
    id: &str,
    tls_tunnels: Option<&[IpAddr]>,
) -> Option<CandidateInfo> {
    let stats = report.get::<gst::Structure>(id).ok()?;
    let kind = stats.get::<String>("candidate-type").ok()?;
    let mut relay_protocol = stats.get::<String>("relay-protocol").ok();
    if let Some(tls_tunnels) = tls_tunnels
        && kind == "relay"
        && relay_protocol
            .as_deref()
            .is_none_or(|protocol| protocol == "none")
    {
        let server = stats.get::<String>("url").ok();
        relay_protocol = relay_leg(
            stats.get::<u32>("priority").ok(),
            server.as_deref(),
            tls_tunnels,
        )
        .map(str::to_owned)
        .or(relay_protocol);
    }
    Some(CandidateInfo {
        kind,
        protocol: stats.get::<String>("protocol").unwrap_or_default(),
        relay_protocol,
    })
}

/// How the camera's relay candidate reaches its TURN server: `udp`, `tcp`
/// or `tls`. webrtcbin 1.22 says `none` for every server added with
/// `add-turn-server`, but its figures tell: libnice gives a relay over UDP
/// the type preference 30 and one over TCP 20 (the top byte of the
/// priority), and reports the TURN server's address as the candidate's
/// `url`; a TCP relay whose server is one of the session's local TLS
/// tunnels (`turn_tls`) reaches the real server over TLS.
fn relay_leg(
    priority: Option<u32>,
    server: Option<&str>,
    tls_tunnels: &[IpAddr],
) -> Option<&'static str> {
    match priority? >> 24 {
        30 => Some("udp"),
        20 => {
            let tunnelled = server
                .and_then(|server| server.parse::<IpAddr>().ok())
                .is_some_and(|server| tls_tunnels.contains(&server));
            Some(if tunnelled { "tls" } else { "tcp" })
        }
        _ => None,
    }
}

fn twcc(stats: &gst::StructureRef) -> Option<TwccFigures> {
    let twcc = stats.get::<gst::Structure>("gst-twcc-stats").ok()?;
    Some(TwccFigures {
        sent_bps: twcc.get::<u32>("bitrate-sent").ok()?,
        recv_bps: twcc.get::<u32>("bitrate-recv").ok()?,
        loss_pct: twcc.get::<f64>("packet-loss-pct").unwrap_or(0.0),
        // GStreamer reports it in nanoseconds.
        delay_gradient_us: twcc
            .get::<i64>("avg-delta-of-delta")
            .map(|ns| ns as f64 / 1000.0)
            .unwrap_or(0.0),
    })
}

impl LinkStats {
    /// Reads a `get-stats` reply; `tls_tunnels` are the addresses of the
    /// session's TURN TLS tunnels.
    pub fn from_report(report: &gst::StructureRef, tls_tunnels: &[IpAddr]) -> Self {
        let mut link = LinkStats::default();
        for stats in structures(report) {
            match kind_of(&stats) {
                Some(WebRTCStatsType::OutboundRtp) => {
                    link.bytes_sent += stats.get::<u64>("bytes-sent").unwrap_or(0);
                    link.packets_sent += stats.get::<u64>("packets-sent").unwrap_or(0);
                    link.nacks_received += stats.get::<u32>("nack-count").unwrap_or(0);
                    link.plis_received += stats.get::<u32>("pli-count").unwrap_or(0);
                    link.firs_received += stats.get::<u32>("fir-count").unwrap_or(0);
                }
                Some(WebRTCStatsType::RemoteInboundRtp) => {
                    if let Ok(rtt) = stats.get::<f64>("round-trip-time") {
                        link.rtt_ms = Some(rtt * 1000.0);
                    }
                    link.fraction_lost = stats.get::<f64>("fraction-lost").ok();
                }
                Some(WebRTCStatsType::CandidatePair | WebRTCStatsType::Transport) => {
                    if link.twcc.is_none() {
                        link.twcc = twcc(&stats);
                    }
                    let local = stats.get::<String>("local-candidate-id").ok();
                    let remote = stats.get::<String>("remote-candidate-id").ok();
                    if let (Some(local), Some(remote)) = (local, remote)
                        && let (Some(local), Some(remote)) = (
                            candidate(report, &local, Some(tls_tunnels)),
                            candidate(report, &remote, None),
                        )
                    {
                        link.selected_pair = Some(SelectedPair { local, remote });
                    }
                }
                _ => {}
            }
        }
        link
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> gst::Structure {
        gst::init().unwrap();
        let local = gst::Structure::builder("ice-candidate-local_1")
            .field("type", WebRTCStatsType::LocalCandidate)
            .field("candidate-type", "relay")
            .field("protocol", "udp")
            .field("relay-protocol", "tcp")
            .build();
        let remote = gst::Structure::builder("ice-candidate-remote_1")
            .field("type", WebRTCStatsType::RemoteCandidate)
            .field("candidate-type", "prflx")
            .field("protocol", "udp")
            .build();
        let twcc = gst::Structure::builder("RTPTWCCStats")
            .field("bitrate-sent", 1_000_000u32)
            .field("bitrate-recv", 900_000u32)
            .field("packet-loss-pct", 5.0f64)
            .field("avg-delta-of-delta", 2_000_000i64)
            .build();
        let pair = gst::Structure::builder("ice-candidate-pair_1")
            .field("type", WebRTCStatsType::CandidatePair)
            .field("local-candidate-id", "ice-candidate-local_1")
            .field("remote-candidate-id", "ice-candidate-remote_1")
            .field("gst-twcc-stats", twcc)
            .build();
        let remote_inbound = gst::Structure::builder("rtp-remote-inbound-stream-stats_1")
            .field("type", WebRTCStatsType::RemoteInboundRtp)
            .field("round-trip-time", 0.125f64)
            .field("fraction-lost", 0.25f64)
            .build();
        let outbound = gst::Structure::builder("rtp-outbound-stream-stats_1")
            .field("type", WebRTCStatsType::OutboundRtp)
            .field("bytes-sent", 12_000u64)
            .field("packets-sent", 10u64)
            .field("nack-count", 3u32)
            .field("pli-count", 2u32)
            .field("fir-count", 1u32)
            .build();
        gst::Structure::builder("application/x-webrtc-stats")
            .field("ice-candidate-local_1", local)
            .field("ice-candidate-remote_1", remote)
            .field("ice-candidate-pair_1", pair)
            .field("rtp-remote-inbound-stream-stats_1", remote_inbound)
            .field("rtp-outbound-stream-stats_1", outbound)
            .build()
    }

    #[test]
    fn reads_twcc_rtcp_counters_and_the_selected_pair() {
        let link = LinkStats::from_report(&report(), &[]);
        assert_eq!(
            link.twcc,
            Some(TwccFigures {
                sent_bps: 1_000_000,
                recv_bps: 900_000,
                loss_pct: 5.0,
                delay_gradient_us: 2000.0,
            })
        );
        assert_eq!(link.rtt_ms, Some(125.0));
        assert_eq!(link.fraction_lost, Some(0.25));
        assert_eq!(
            (link.bytes_sent, link.packets_sent, link.nacks_received),
            (12_000, 10, 3)
        );
        assert_eq!((link.plis_received, link.firs_received), (2, 1));
        let pair = link.selected_pair.expect("selected pair");
        assert_eq!(pair.local.kind, "relay");
        assert_eq!(pair.local.relay_protocol.as_deref(), Some("tcp"));
        assert_eq!(pair.remote.kind, "prflx");
    }

    /// A report whose selected local candidate is a relay as webrtcbin
    /// 1.22 reports it: relay-protocol "none", libnice's priority and the
    /// TURN server's address as `url`.
    fn relay_report(priority: u32, server: &str) -> gst::Structure {
        let mut report = report();
        let local = gst::Structure::builder("ice-candidate-local_1")
            .field("type", WebRTCStatsType::LocalCandidate)
            .field("candidate-type", "relay")
            .field("protocol", "udp")
            .field("relay-protocol", "none")
            .field("priority", priority)
            .field("url", server)
            .build();
        report.set("ice-candidate-local_1", local);
        report
    }

    #[test]
    fn the_relay_leg_is_told_from_libnice_figures() {
        let tunnels: [IpAddr; 1] = ["127.0.0.1".parse().unwrap()];
        for (priority, server, leg) in [
            // Type preference 30 (TURN over UDP), 20 (over TCP).
            ((30 << 24) | (65535 << 8) | 255, "10.213.0.1", "udp"),
            ((20 << 24) | (65535 << 8) | 255, "10.213.0.1", "tcp"),
            ((20 << 24) | (65535 << 8) | 255, "127.0.0.1", "tls"),
        ] {
            let link = LinkStats::from_report(&relay_report(priority, server), &tunnels);
            let pair = link.selected_pair.unwrap();
            assert_eq!(pair.local.relay_protocol.as_deref(), Some(leg), "{server}");
            assert_eq!(pair.remote.relay_protocol, None);
        }
        // Without figures to tell by, webrtcbin's word stays.
        let link = LinkStats::from_report(&relay_report(100 << 24, "x"), &tunnels);
        assert_eq!(
            link.selected_pair.unwrap().local.relay_protocol.as_deref(),
            Some("none")
        );
        assert_eq!(relay_leg(None, None, &[]), None);
    }

    #[test]
    fn an_early_report_has_no_feedback() {
        gst::init().unwrap();
        let empty = gst::Structure::new_empty("application/x-webrtc-stats");
        assert_eq!(LinkStats::from_report(&empty, &[]), LinkStats::default());
    }
}

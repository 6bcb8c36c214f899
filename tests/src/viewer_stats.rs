//! What the GStreamer viewer measures beyond frame counts: when each frame
//! was decoded (so a test sees video stop and come back), and the ICE
//! candidate pair its `webrtcbin` selected, read from `get-stats`.

use std::time::Duration;

/// When each frame was decoded, since the stream was requested.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FrameTimeline {
    times: Vec<Duration>,
}

impl std::fmt::Debug for FrameTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FrameTimeline({} frames, longest gap {:?})",
            self.times.len(),
            self.longest_gap()
        )
    }
}

impl FrameTimeline {
    pub fn push(&mut self, at: Duration) {
        self.times.push(at);
    }

    pub fn times(&self) -> &[Duration] {
        &self.times
    }

    /// Frames decoded in `[from, to)`.
    pub fn frames_between(&self, from: Duration, to: Duration) -> usize {
        self.times
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    }

    /// The first frame decoded at or after `at`.
    pub fn first_at_or_after(&self, at: Duration) -> Option<Duration> {
        self.times.iter().copied().find(|t| *t >= at)
    }

    /// Frames per window of `width`, from the request to the last frame.
    pub fn windows(&self, width: Duration) -> Vec<usize> {
        let Some(last) = self.times.last() else {
            return Vec::new();
        };
        let count = (last.as_secs_f64() / width.as_secs_f64()).floor() as usize + 1;
        let mut windows = vec![0; count];
        for time in &self.times {
            let index = (time.as_secs_f64() / width.as_secs_f64()).floor() as usize;
            if let Some(slot) = windows.get_mut(index) {
                *slot += 1;
            }
        }
        windows
    }

    /// The longest time between two decoded frames.
    pub fn longest_gap(&self) -> Duration {
        self.times
            .windows(2)
            .map(|pair| pair[1].saturating_sub(pair[0]))
            .max()
            .unwrap_or_default()
    }
}

/// One end of a candidate pair, as webrtcbin's stats describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub kind: String,
    /// `udp` or `tcp`.
    pub protocol: String,
    pub address: String,
    pub port: u32,
    /// For a local relay candidate: how the TURN server is reached.
    pub relay_protocol: Option<String>,
}

/// The selected (or, failing that, the only) candidate pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidatePair {
    pub local: Candidate,
    pub remote: Candidate,
}

fn candidate(stats: &gst::StructureRef) -> Candidate {
    let text = |name: &str| stats.get::<String>(name).ok();
    Candidate {
        kind: text("candidate-type").unwrap_or_default(),
        protocol: text("protocol").unwrap_or_default(),
        address: text("address").or(text("ip")).unwrap_or_default(),
        port: stats.get::<u32>("port").unwrap_or_default(),
        relay_protocol: text("relay-protocol"),
    }
}

/// The candidate pair in a `get-stats` reply, if webrtcbin reports one
/// (GStreamer 1.22 reports the selected pair's candidates).
pub fn selected_pair(stats: &gst::StructureRef) -> Option<CandidatePair> {
    let entry = |id: &str| {
        stats
            .get::<gst::Structure>(id)
            .ok()
            .map(|entry| candidate(&entry))
    };
    stats.iter().find_map(|(_, value)| {
        let pair = value.get::<gst::Structure>().ok()?;
        let kind = pair.get::<gst_webrtc::WebRTCStatsType>("type").ok()?;
        if kind != gst_webrtc::WebRTCStatsType::CandidatePair {
            return None;
        }
        let local = entry(&pair.get::<String>("local-candidate-id").ok()?)?;
        let remote = entry(&pair.get::<String>("remote-candidate-id").ok()?)?;
        Some(CandidatePair { local, remote })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_per_window_and_gaps_found() {
        let mut timeline = FrameTimeline::default();
        for ms in [100, 130, 160, 1900, 1930, 2500] {
            timeline.push(Duration::from_millis(ms));
        }
        assert_eq!(timeline.windows(Duration::from_secs(1)), [3, 2, 1]);
        assert_eq!(timeline.longest_gap(), Duration::from_millis(1740));
        assert_eq!(
            timeline.frames_between(Duration::from_millis(160), Duration::from_secs(2)),
            3
        );
        assert_eq!(
            timeline.first_at_or_after(Duration::from_millis(200)),
            Some(Duration::from_millis(1900))
        );
        assert!(
            FrameTimeline::default()
                .windows(Duration::from_secs(1))
                .is_empty()
        );
    }

    #[test]
    fn the_pair_is_read_from_stats() {
        gst::init().unwrap();
        let local = gst::Structure::builder("local")
            .field("type", gst_webrtc::WebRTCStatsType::LocalCandidate)
            .field("candidate-type", "relay")
            .field("protocol", "udp")
            .field("address", "10.213.0.1")
            .field("port", 50012u32)
            .field("relay-protocol", "tcp")
            .build();
        let remote = gst::Structure::builder("remote")
            .field("type", gst_webrtc::WebRTCStatsType::RemoteCandidate)
            .field("candidate-type", "prflx")
            .field("protocol", "udp")
            .build();
        let pair = gst::Structure::builder("pair")
            .field("type", gst_webrtc::WebRTCStatsType::CandidatePair)
            .field("local-candidate-id", "l1")
            .field("remote-candidate-id", "r1")
            .build();
        let stats = gst::Structure::builder("application/x-webrtc-stats")
            .field("l1", local)
            .field("r1", remote)
            .field("pair", pair)
            .build();
        let found = selected_pair(&stats).unwrap();
        assert_eq!(found.local.kind, "relay");
        assert_eq!(found.local.port, 50012);
        assert_eq!(found.local.relay_protocol.as_deref(), Some("tcp"));
        assert_eq!(found.remote.kind, "prflx");
        let empty = gst::Structure::new_empty("application/x-webrtc-stats");
        assert_eq!(selected_pair(&empty), None);
    }
}

//! The legacy JPEG relay's decisions, as pure code: which frame gets which
//! `seq`, what happens to a frame over the contract's size limit, and the
//! JPEG quality the next frames are encoded at.
//!
//! Rules (contract section 5 and the rollback issue):
//! - `seq` starts at 1 and rises by exactly 1 per frame the socket took; a
//!   frame it could not take (busy) or one that was skipped uses no number.
//! - A frame over [`MAX_FRAME_BYTES`] (or over what the connected server's
//!   `maxPayload` leaves room for) is never sent. The next frames are
//!   encoded [`QUALITY_STEP`] lower, down to [`hw::MIN_JPEG_QUALITY`]; at
//!   the lowest quality (or when the camera makes the JPEG and its quality
//!   is not ours) the frame is skipped with a warning.
//! - After [`CALM_FRAMES`] frames in a row under half the limit the
//!   quality climbs back by [`QUALITY_STEP`] towards the configured one,
//!   so a scene that was noisy once does not keep a session blurry.

/// The contract's limit on a frame before base64.
pub const MAX_FRAME_BYTES: usize = 512 * 1024;
/// How far one oversized frame lowers the quality, and one calm stretch
/// raises it.
pub const QUALITY_STEP: u8 = 15;
/// Frames under half the limit in a row before the quality climbs back.
pub const CALM_FRAMES: u32 = 10;

/// Where the relay's JPEG quality starts and whether the agent sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPolicy {
    /// `streaming.legacy_quality`.
    pub quality: u8,
    /// `false` when the camera's own MJPEG is passed through.
    pub adjustable: bool,
}

/// Why a frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Over the limit; the next frames are encoded at a lower quality.
    Oversize,
    /// Over the limit at the lowest quality, or from a camera whose
    /// quality cannot be set.
    OversizeAtLowest,
}

impl Skip {
    /// The `skipped` field of the warning record.
    pub fn code(self) -> &'static str {
        match self {
            Skip::Oversize => "oversize",
            Skip::OversizeAtLowest => "oversize_at_lowest_quality",
        }
    }
}

/// What to do with one frame, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    /// Offer the frame to the socket with this `seq`; report back with
    /// [`FrameRelay::taken`] or [`FrameRelay::busy`].
    Emit { seq: u64 },
    /// Encode the next frames at this quality.
    SetQuality(u8),
    /// The frame is not sent; warn.
    Skip {
        why: Skip,
        bytes: usize,
        quality: u8,
    },
}

/// A session's frame counts, logged when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameSummary {
    pub sent: u64,
    /// The socket could not take them at that moment: dropped, not queued.
    pub dropped_busy: u64,
    pub skipped_oversize: u64,
    /// The quality at the end.
    pub quality: u8,
}

#[derive(Debug, Clone)]
pub struct FrameRelay {
    policy: RelayPolicy,
    quality: u8,
    next_seq: u64,
    calm: u32,
    summary: FrameSummary,
}

impl FrameRelay {
    pub fn new(policy: RelayPolicy) -> Self {
        Self {
            policy,
            quality: policy.quality,
            next_seq: 1,
            calm: 0,
            summary: FrameSummary::default(),
        }
    }

    /// A frame of `bytes` came out of the encoder (or the camera);
    /// `limit` is what the connected server takes (its `maxPayload` less
    /// base64 and the event's envelope), capped at [`MAX_FRAME_BYTES`].
    pub fn on_frame(&mut self, bytes: usize, limit: usize) -> Vec<RelayAction> {
        let limit = limit.min(MAX_FRAME_BYTES);
        if bytes > limit {
            self.calm = 0;
            self.summary.skipped_oversize += 1;
            let lower = self
                .quality
                .saturating_sub(QUALITY_STEP)
                .max(hw::MIN_JPEG_QUALITY);
            if !self.policy.adjustable || lower == self.quality {
                return vec![RelayAction::Skip {
                    why: Skip::OversizeAtLowest,
                    bytes,
                    quality: self.quality,
                }];
            }
            let skipped = RelayAction::Skip {
                why: Skip::Oversize,
                bytes,
                quality: self.quality,
            };
            self.quality = lower;
            return vec![skipped, RelayAction::SetQuality(lower)];
        }
        let mut actions = vec![RelayAction::Emit { seq: self.next_seq }];
        if bytes <= limit / 2 && self.quality < self.policy.quality {
            self.calm += 1;
            if self.calm >= CALM_FRAMES {
                self.calm = 0;
                self.quality = (self.quality + QUALITY_STEP).min(self.policy.quality);
                actions.push(RelayAction::SetQuality(self.quality));
            }
        } else {
            self.calm = 0;
        }
        actions
    }

    /// The socket took the frame just emitted: its `seq` is used.
    pub fn taken(&mut self) {
        self.next_seq += 1;
        self.summary.sent += 1;
    }

    /// The socket could not take the frame: dropped, its `seq` reused.
    pub fn busy(&mut self) {
        self.summary.dropped_busy += 1;
    }

    pub fn summary(&self) -> FrameSummary {
        FrameSummary {
            quality: self.quality,
            ..self.summary
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: usize = 40_000;
    const HUGE: usize = MAX_FRAME_BYTES + 1;

    fn relay(quality: u8) -> FrameRelay {
        FrameRelay::new(RelayPolicy {
            quality,
            adjustable: true,
        })
    }

    #[test]
    fn seq_starts_at_one_and_counts_only_frames_the_socket_took() {
        let mut relay = relay(85);
        assert_eq!(
            relay.on_frame(SMALL, MAX_FRAME_BYTES),
            [RelayAction::Emit { seq: 1 }]
        );
        relay.taken();
        assert_eq!(
            relay.on_frame(SMALL, MAX_FRAME_BYTES),
            [RelayAction::Emit { seq: 2 }]
        );
        relay.busy();
        // The dropped frame's number goes to the next one: no gap.
        assert_eq!(
            relay.on_frame(SMALL, MAX_FRAME_BYTES),
            [RelayAction::Emit { seq: 2 }]
        );
        relay.taken();
        assert_eq!(
            relay.on_frame(HUGE, MAX_FRAME_BYTES)[0],
            RelayAction::Skip {
                why: Skip::Oversize,
                bytes: HUGE,
                quality: 85,
            }
        );
        assert_eq!(
            relay.on_frame(SMALL, MAX_FRAME_BYTES),
            [RelayAction::Emit { seq: 3 }]
        );
        relay.taken();
        let summary = relay.summary();
        assert_eq!(
            (summary.sent, summary.dropped_busy, summary.skipped_oversize),
            (3, 1, 1)
        );
    }

    #[test]
    fn exactly_the_limit_is_sent_and_one_byte_more_is_not() {
        let mut relay = relay(85);
        assert_eq!(
            relay.on_frame(MAX_FRAME_BYTES, MAX_FRAME_BYTES),
            [RelayAction::Emit { seq: 1 }]
        );
        assert!(matches!(
            relay.on_frame(MAX_FRAME_BYTES + 1, MAX_FRAME_BYTES)[0],
            RelayAction::Skip { .. }
        ));
    }

    #[test]
    fn oversized_frames_step_the_quality_down_to_the_lowest_then_skip() {
        let mut relay = relay(85);
        let mut qualities = Vec::new();
        let mut at_lowest = 0;
        for _ in 0..8 {
            for action in relay.on_frame(HUGE, MAX_FRAME_BYTES) {
                match action {
                    RelayAction::SetQuality(quality) => qualities.push(quality),
                    RelayAction::Skip {
                        why: Skip::OversizeAtLowest,
                        quality,
                        ..
                    } => {
                        assert_eq!(quality, hw::MIN_JPEG_QUALITY);
                        at_lowest += 1;
                    }
                    RelayAction::Skip { .. } => {}
                    RelayAction::Emit { .. } => panic!("an oversized frame was sent"),
                }
            }
        }
        assert_eq!(qualities, [70, 55, 40, 30]);
        assert_eq!(at_lowest, 4);
        assert_eq!(relay.summary().skipped_oversize, 8);
    }

    #[test]
    fn the_quality_climbs_back_after_a_calm_stretch_but_not_above_the_setting() {
        let mut relay = relay(85);
        relay.on_frame(HUGE, MAX_FRAME_BYTES);
        relay.on_frame(HUGE, MAX_FRAME_BYTES);
        assert_eq!(relay.summary().quality, 55);
        let mut raised = Vec::new();
        for _ in 0..(CALM_FRAMES * 4) {
            for action in relay.on_frame(SMALL, MAX_FRAME_BYTES) {
                if let RelayAction::SetQuality(quality) = action {
                    raised.push(quality);
                }
            }
            relay.taken();
        }
        assert_eq!(raised, [70, 85]);
        // A large (but sendable) frame interrupts the calm stretch.
        let mut relay = relay_after_one_step();
        for _ in 0..(CALM_FRAMES - 1) {
            relay.on_frame(SMALL, MAX_FRAME_BYTES);
        }
        assert_eq!(
            relay.on_frame(MAX_FRAME_BYTES - 1, MAX_FRAME_BYTES),
            [RelayAction::Emit { seq: 1 }]
        );
        assert_eq!(
            relay.on_frame(SMALL, MAX_FRAME_BYTES),
            [RelayAction::Emit { seq: 1 }]
        );
    }

    fn relay_after_one_step() -> FrameRelay {
        let mut relay = relay(85);
        relay.on_frame(HUGE, MAX_FRAME_BYTES);
        relay
    }

    #[test]
    fn a_server_with_a_smaller_max_payload_lowers_the_limit() {
        let mut relay = relay(85);
        assert!(matches!(
            relay.on_frame(SMALL + 1, SMALL)[0],
            RelayAction::Skip { .. }
        ));
        assert_eq!(relay.on_frame(SMALL, SMALL), [RelayAction::Emit { seq: 1 }]);
        // A generous server never raises the contract's limit.
        assert!(matches!(
            relay.on_frame(MAX_FRAME_BYTES + 1, usize::MAX)[0],
            RelayAction::Skip { .. }
        ));
    }

    #[test]
    fn a_camera_made_jpeg_is_never_requalified_only_skipped() {
        let mut relay = FrameRelay::new(RelayPolicy {
            quality: 85,
            adjustable: false,
        });
        assert_eq!(
            relay.on_frame(HUGE, MAX_FRAME_BYTES),
            [RelayAction::Skip {
                why: Skip::OversizeAtLowest,
                bytes: HUGE,
                quality: 85,
            }]
        );
        for _ in 0..(CALM_FRAMES * 2) {
            assert_eq!(relay.on_frame(SMALL, MAX_FRAME_BYTES).len(), 1);
        }
    }
}

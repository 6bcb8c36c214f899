//! The rules for a legacy session's frames, as a pure check over
//! what a viewer received (or what the stand-in recorded): `seq` starts at
//! 1 and rises by exactly 1, `capturedAt` never goes back and is not in the
//! future of its receipt beyond a tolerance, it is written as RFC 3339 UTC
//! with milliseconds, and no JPEG is over 512 KiB.

use std::time::{Duration, SystemTime};

use crate::standin::{FrameRecord, MAX_JPEG_BYTES};

/// What the rules need of a frame.
pub trait FrameFacts {
    fn seq(&self) -> u64;
    fn captured_at(&self) -> SystemTime;
    fn received_at(&self) -> SystemTime;
    fn jpeg_len(&self) -> usize;
    /// `capturedAt` as written, where the record kept it.
    fn captured_at_text(&self) -> Option<&str> {
        None
    }
}

impl FrameFacts for FrameRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn captured_at(&self) -> SystemTime {
        self.captured_at
    }
    fn received_at(&self) -> SystemTime {
        self.received_at
    }
    fn jpeg_len(&self) -> usize {
        self.jpeg_len
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameRuleError {
    #[error("frame #{index} has seq {seq}, expected {expected} (seq starts at 1 and rises by 1)")]
    Seq {
        index: usize,
        seq: u64,
        expected: u64,
    },
    #[error("frame seq {seq}: capturedAt goes back {by:?} from the frame before")]
    CapturedBackwards { seq: u64, by: Duration },
    #[error(
        "frame seq {seq}: capturedAt is {ahead:?} after it was received (tolerance {tolerance:?})"
    )]
    CapturedInFuture {
        seq: u64,
        ahead: Duration,
        tolerance: Duration,
    },
    #[error("frame seq {seq}: capturedAt {text:?} is not RFC 3339 UTC with milliseconds")]
    CapturedAtFormat { seq: u64, text: String },
    #[error("frame seq {seq}: {len} bytes of JPEG, over the {MAX_JPEG_BYTES} allowed")]
    TooLarge { seq: u64, len: usize },
}

/// Checks the rules in order; the first broken one. `tolerance` is how far
/// `capturedAt` may be ahead of the receipt (clocks of camera and viewer).
pub fn check_frame_rules<F: FrameFacts>(
    frames: &[F],
    tolerance: Duration,
) -> Result<(), FrameRuleError> {
    let mut previous: Option<SystemTime> = None;
    for (index, frame) in frames.iter().enumerate() {
        let seq = frame.seq();
        let expected = index as u64 + 1;
        if seq != expected {
            return Err(FrameRuleError::Seq {
                index,
                seq,
                expected,
            });
        }
        if let Some(text) = frame.captured_at_text()
            && !is_utc_millis(text)
        {
            return Err(FrameRuleError::CapturedAtFormat {
                seq,
                text: text.to_owned(),
            });
        }
        let captured = frame.captured_at();
        if let Some(previous) = previous
            && let Ok(by) = previous.duration_since(captured)
            && !by.is_zero()
        {
            return Err(FrameRuleError::CapturedBackwards { seq, by });
        }
        if let Ok(ahead) = captured.duration_since(frame.received_at())
            && ahead > tolerance
        {
            return Err(FrameRuleError::CapturedInFuture {
                seq,
                ahead,
                tolerance,
            });
        }
        if frame.jpeg_len() > MAX_JPEG_BYTES {
            return Err(FrameRuleError::TooLarge {
                seq,
                len: frame.jpeg_len(),
            });
        }
        previous = Some(captured);
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` that parses as RFC 3339.
pub fn is_utc_millis(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 24
        && bytes[19] == b'.'
        && bytes[20..23].iter().all(u8::is_ascii_digit)
        && bytes[23] == b'Z'
        && bytes[10] == b'T'
        && humantime::parse_rfc3339(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Frame {
        seq: u64,
        captured_ms: u64,
        received_ms: u64,
        len: usize,
        text: Option<&'static str>,
    }

    impl FrameFacts for Frame {
        fn seq(&self) -> u64 {
            self.seq
        }
        fn captured_at(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_millis(self.captured_ms)
        }
        fn received_at(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_millis(self.received_ms)
        }
        fn jpeg_len(&self) -> usize {
            self.len
        }
        fn captured_at_text(&self) -> Option<&str> {
            self.text
        }
    }

    fn frame(seq: u64, captured_ms: u64) -> Frame {
        Frame {
            seq,
            captured_ms,
            received_ms: captured_ms + 30,
            len: 20_000,
            text: Some("2026-03-01T10:00:00.500Z"),
        }
    }

    const TOLERANCE: Duration = Duration::from_millis(250);

    #[test]
    fn a_good_run_passes_and_so_does_none() {
        let frames = [
            frame(1, 1000),
            frame(2, 1500),
            frame(3, 1500),
            frame(4, 2000),
        ];
        assert_eq!(check_frame_rules(&frames, TOLERANCE), Ok(()));
        assert_eq!(check_frame_rules::<Frame>(&[], TOLERANCE), Ok(()));
    }

    #[test]
    fn seq_must_start_at_one_and_rise_by_one() {
        let starts_at_two = [frame(2, 1000)];
        assert_eq!(
            check_frame_rules(&starts_at_two, TOLERANCE),
            Err(FrameRuleError::Seq {
                index: 0,
                seq: 2,
                expected: 1
            })
        );
        let gap = [frame(1, 1000), frame(3, 1500)];
        assert!(matches!(
            check_frame_rules(&gap, TOLERANCE),
            Err(FrameRuleError::Seq {
                seq: 3,
                expected: 2,
                ..
            })
        ));
        let repeat = [frame(1, 1000), frame(1, 1500)];
        assert!(matches!(
            check_frame_rules(&repeat, TOLERANCE),
            Err(FrameRuleError::Seq {
                seq: 1,
                expected: 2,
                ..
            })
        ));
    }

    #[test]
    fn captured_at_never_goes_back_nor_runs_ahead() {
        let back = [frame(1, 1000), frame(2, 999)];
        assert_eq!(
            check_frame_rules(&back, TOLERANCE),
            Err(FrameRuleError::CapturedBackwards {
                seq: 2,
                by: Duration::from_millis(1)
            })
        );
        let mut ahead = frame(1, 1000);
        ahead.received_ms = 700;
        assert_eq!(
            check_frame_rules(&[ahead], TOLERANCE),
            Err(FrameRuleError::CapturedInFuture {
                seq: 1,
                ahead: Duration::from_millis(300),
                tolerance: TOLERANCE
            })
        );
        let mut within = frame(1, 1000);
        within.received_ms = 800;
        assert_eq!(check_frame_rules(&[within], TOLERANCE), Ok(()));
    }

    #[test]
    fn size_and_format() {
        let mut big = frame(1, 1000);
        big.len = MAX_JPEG_BYTES + 1;
        assert_eq!(
            check_frame_rules(&[big], TOLERANCE),
            Err(FrameRuleError::TooLarge {
                seq: 1,
                len: MAX_JPEG_BYTES + 1
            })
        );
        let mut exact = frame(1, 1000);
        exact.len = MAX_JPEG_BYTES;
        assert_eq!(check_frame_rules(&[exact], TOLERANCE), Ok(()));
        for text in [
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00.5Z",
            "2026-03-01T10:00:00.500+00:00",
            "2026-03-01 10:00:00.500Z",
            "2026-13-01T10:00:00.500Z",
        ] {
            let mut odd = frame(1, 1000);
            odd.text = Some(text);
            assert!(
                matches!(
                    check_frame_rules(&[odd], TOLERANCE),
                    Err(FrameRuleError::CapturedAtFormat { .. })
                ),
                "{text}"
            );
        }
        assert!(is_utc_millis("2026-03-01T10:00:00.500Z"));
    }
}

//! Exponential backoff with full jitter, each delay measured from the
//! previous attempt.
//!
//! The reconnect policy (`control_plane::reconnect`) uses it for the slow
//! ladder after a refused device token. For everything else it was the
//! policy until issue 13 (`for_failures`, reset on every loss): its first
//! retry within 0.5 s brought a whole fleet back in the same half second
//! after a deploy. It stays, unchanged, as the baseline the fleet
//! simulation (`tests/src/fleet.rs`) compares the new policy against.

use std::time::Duration;

/// First delay after a failed attempt (network down, server error).
pub const RETRY_BASE: Duration = Duration::from_millis(500);
/// First delay after the server refused the device token: slower, since a
/// wrong token does not fix itself quickly and a fleet of them is load.
pub const AUTH_RETRY_BASE: Duration = Duration::from_secs(5);
/// Ceiling of the delays after a refused token.
pub const AUTH_RETRY_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The policy after failed attempts, up to `cap`.
    pub fn for_failures(cap: Duration) -> Self {
        Self::new(RETRY_BASE, cap)
    }

    /// The policy after the server refused the token, up to `cap`.
    pub fn for_refused_token(cap: Duration) -> Self {
        Self::new(AUTH_RETRY_BASE, cap)
    }

    /// The ceiling for the current attempt, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt; `unit` is a uniform draw in [0, 1).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        // Never zero: a zero delay would let a hot loop through.
        ceiling.mul_f64(unit.clamp(0.0, 1.0)).max(self.base / 4)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_until_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay(0.5);
        }
        assert_eq!(
            ceilings,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_above_a_floor() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for unit in [0.0, 0.3, 0.999, 1.0, 7.0, -1.0] {
            let delay = backoff.next_delay(unit);
            assert!(delay <= Duration::from_secs(8), "{delay:?}");
            assert!(delay >= Duration::from_millis(250), "{delay:?}");
        }
    }

    #[test]
    fn reset_starts_over_and_huge_attempts_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            backoff.next_delay(1.0);
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(60));
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
        assert_eq!(backoff.attempts(), 0);
    }
}

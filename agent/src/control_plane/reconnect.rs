//! The reconnect policy as pure decisions: what became of the last attempt
//! goes in, the delay before the next attempt comes out. The signaling
//! connection task and the REST login loop only perform these decisions,
//! and the fleet simulation (`tests/src/fleet.rs`) runs this very code for
//! 100,000 devices (figures in `docs/benchmarks.md`).
//!
//! Why it looks like this:
//! - A camera without a viewer that loses its socket draws its first
//!   attempt uniformly from `control_plane.reconnect_spread` (default 5 s).
//!   When a deploy drops the whole fleet at once, that holds the herd to
//!   fleet/spread attempts per second. A camera with a live session retries
//!   within 0.5 s, as before: a viewer is watching, and such cameras are few.
//! - Later attempts fall in windows that follow one another, each twice as
//!   long as the one before up to `reconnect_max`, and each attempt is drawn
//!   uniformly from its window (full jitter). The windows are laid end to
//!   end from the loss rather than measured from the previous attempt, so a
//!   device makes one attempt per window and the fleet's rate stays below
//!   devices / window length. Jitter measured from the previous attempt
//!   piles second attempts onto first ones: during an outage that peaks at
//!   1.5 times fleet/spread (measured with the same simulation).
//! - A server that answers 503 or 429 with `Retry-After` sees no attempt
//!   before that time has passed; the attempt is drawn from a window of the
//!   first window's length that starts there. Without `Retry-After` such an
//!   answer is an ordinary failure and the windows keep growing.

use std::time::{Duration, SystemTime};

use super::socketio::backoff::{AUTH_RETRY_MAX, Backoff};

/// A live camera's first attempt after losing its socket falls in
/// `[LIVE_FIRST_EARLIEST, LIVE_FIRST_LATEST)`, as it always did.
pub const LIVE_FIRST_EARLIEST: Duration = Duration::from_millis(125);
pub const LIVE_FIRST_LATEST: Duration = Duration::from_millis(500);
/// No attempt follows the previous outcome sooner than this: a zero delay
/// would let a hot loop through.
pub const MIN_GAP: Duration = Duration::from_millis(20);
/// A `Retry-After` longer than this is taken as this: a server that says
/// "in a year" (or a garbled header) must not silence a camera for good.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// The tunable part of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The window of an idle camera's first attempt after a loss.
    pub spread: Duration,
    /// The longest window.
    pub max: Duration,
    /// Ceiling of the backoff after the server refused the device token.
    pub auth_max: Duration,
}

impl ReconnectPolicy {
    /// The shipped policy with these two settings (5 minute cap after a
    /// refused token).
    pub fn new(spread: Duration, max: Duration) -> Self {
        Self {
            spread,
            max,
            auth_max: AUTH_RETRY_MAX,
        }
    }
}

/// What became of the connection or of the last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A connected socket was lost; `live` when a session was live.
    Lost { live: bool },
    /// An attempt failed: unreachable, timed out, a broken handshake, or an
    /// HTTP error that is not back-pressure.
    Failed,
    /// The server answered 503 or 429, with its `Retry-After` if it sent one.
    Refused { retry_after: Option<Duration> },
    /// The server refused the device token.
    AuthRejected,
}

/// The policy's state for one connection (or the login loop).
///
/// Times are durations since an origin the caller picks once (the start
/// of its task, or zero in a simulation); `now` must not go backwards.
#[derive(Debug, Clone)]
pub struct Reconnect {
    policy: ReconnectPolicy,
    /// End of the window the pending attempt was drawn from.
    end: Duration,
    /// Length of the ladder's current window; zero before the first outcome
    /// (and after a refused token, which has a ladder of its own).
    ladder: Duration,
    /// The first window of this run of failures: the jitter after a
    /// `Retry-After`.
    first: Duration,
    auth: Backoff,
}

impl Reconnect {
    pub fn new(policy: ReconnectPolicy) -> Self {
        Self {
            policy,
            end: Duration::ZERO,
            ladder: Duration::ZERO,
            first: policy.spread,
            auth: Backoff::for_refused_token(policy.auth_max),
        }
    }

    pub fn policy(&self) -> ReconnectPolicy {
        self.policy
    }

    /// The delay from `now` to the next attempt after `outcome`; `unit` is
    /// a uniform draw in [0, 1).
    pub fn next(&mut self, now: Duration, outcome: Outcome, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (start, len) = match outcome {
            Outcome::Lost { live: true } => {
                self.auth.reset();
                self.first = LIVE_FIRST_LATEST - LIVE_FIRST_EARLIEST;
                // The ladder goes on as today's did: 0.5, 1, 2, 4 s...
                self.ladder = LIVE_FIRST_LATEST;
                (now + LIVE_FIRST_EARLIEST, self.first)
            }
            Outcome::Lost { live: false } => {
                self.auth.reset();
                self.first = self.policy.spread;
                self.ladder = self.policy.spread;
                (now, self.ladder)
            }
            Outcome::Failed | Outcome::Refused { retry_after: None } => {
                if self.ladder.is_zero() {
                    // Failed before ever connecting (start-up, or after a
                    // refused token): the idle spread.
                    self.first = self.policy.spread;
                    self.ladder = self.policy.spread;
                    (now, self.ladder)
                } else {
                    let cap = self.policy.max.max(self.first);
                    self.ladder = self.ladder.saturating_mul(2).min(cap);
                    (self.end.max(now), self.ladder)
                }
            }
            Outcome::Refused {
                retry_after: Some(retry_after),
            } => {
                if self.ladder.is_zero() {
                    self.first = self.policy.spread;
                    self.ladder = self.policy.spread;
                }
                (now + retry_after.min(RETRY_AFTER_MAX), self.first)
            }
            Outcome::AuthRejected => {
                self.ladder = Duration::ZERO;
                let delay = self.auth.next_delay(unit);
                self.end = now + delay;
                return delay;
            }
        };
        self.end = start + len;
        let at = (start + len.mul_f64(unit)).max(now + MIN_GAP);
        at - now
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 10.2.3),
/// as a delay from `now`. A date in the past is zero; anything else `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // All digits: only an overflow fails, and that is "very long".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy::new(5 * S, 30 * S)
    }

    /// The delays for `units`, all decided at `now` after `outcome`.
    fn delays(outcome: Outcome, units: &[f64]) -> Vec<Duration> {
        units
            .iter()
            .map(|&unit| Reconnect::new(policy()).next(10 * S, outcome, unit))
            .collect()
    }

    const UNITS: [f64; 7] = [0.0, 0.001, 0.25, 0.5, 0.75, 0.999, 1.0];

    #[test]
    fn an_idle_camera_spreads_its_first_attempt_over_the_spread() {
        let got = delays(Outcome::Lost { live: false }, &UNITS);
        assert_eq!(got[0], MIN_GAP, "never at once");
        assert_eq!(got[2], Duration::from_millis(1250));
        assert_eq!(got[3], Duration::from_millis(2500));
        assert_eq!(got[4], Duration::from_millis(3750));
        assert!(got.iter().all(|delay| *delay <= 5 * S), "{got:?}");
    }

    #[test]
    fn a_live_camera_keeps_the_fast_first_retry() {
        let got = delays(Outcome::Lost { live: true }, &UNITS);
        assert_eq!(got[0], Duration::from_millis(125));
        assert_eq!(got[6], Duration::from_millis(500));
        assert!(
            got.iter().all(|delay| *delay >= Duration::from_millis(125)
                && *delay <= Duration::from_millis(500)),
            "{got:?}"
        );
    }

    /// Drives a whole outage: the attempts' times after a loss at 0 when
    /// every attempt fails, with the same draw each time.
    fn attempt_times(live: bool, unit: f64, attempts: usize) -> Vec<f64> {
        let mut policy = Reconnect::new(policy());
        let mut now = policy.next(Duration::ZERO, Outcome::Lost { live }, unit);
        let mut times = vec![now.as_secs_f64()];
        while times.len() < attempts {
            now += policy.next(now, Outcome::Failed, unit);
            times.push(now.as_secs_f64());
        }
        times
    }

    #[test]
    fn failures_draw_from_windows_laid_end_to_end_doubling_to_the_cap() {
        // Windows [0,5) [5,15) [15,35) [35,65) [65,95): the middle of each.
        assert_eq!(attempt_times(false, 0.5, 5), [2.5, 10.0, 25.0, 50.0, 80.0]);
        // The start of each: one attempt per window, never two.
        let starts = attempt_times(false, 0.0, 5);
        assert_eq!(starts[1..], [5.0, 15.0, 35.0, 65.0]);
        // A live camera climbs today's ladder: 0.5, 1, 2, 4... s windows.
        assert_eq!(
            attempt_times(true, 1.0, 8),
            [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 61.5, 91.5]
        );
    }

    #[test]
    fn a_failure_before_any_connection_starts_with_the_spread() {
        let mut policy = Reconnect::new(policy());
        assert_eq!(policy.next(3 * S, Outcome::Failed, 0.5), 2500 * MS);
        assert_eq!(policy.next(5500 * MS, Outcome::Failed, 0.5), 7500 * MS);
    }

    #[test]
    fn retry_after_is_a_floor_with_jitter_on_top() {
        for live in [false, true] {
            for unit in UNITS {
                let mut policy = Reconnect::new(policy());
                policy.next(Duration::ZERO, Outcome::Lost { live }, 0.5);
                let delay = policy.next(
                    2 * S,
                    Outcome::Refused {
                        retry_after: Some(10 * S),
                    },
                    unit,
                );
                let jitter = if live { 375 * MS } else { 5 * S };
                assert!(
                    delay >= 10 * S && delay <= 10 * S + jitter,
                    "live={live} unit={unit}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn a_refusal_without_retry_after_grows_the_backoff() {
        let mut policy = Reconnect::new(policy());
        policy.next(Duration::ZERO, Outcome::Lost { live: false }, 0.0);
        // Window [5, 15) after the first refusal, [15, 35) after the second.
        let refused = Outcome::Refused { retry_after: None };
        assert_eq!(policy.next(S, refused, 0.5), 9 * S);
        assert_eq!(policy.next(10 * S, refused, 0.5), 15 * S);
        assert!(policy.next(10 * S, refused, 0.0) >= 25 * S);
    }

    #[test]
    fn after_a_retry_after_the_ladder_goes_on_from_its_window() {
        let mut policy = Reconnect::new(policy());
        policy.next(Duration::ZERO, Outcome::Lost { live: false }, 0.0);
        let refused = Outcome::Refused {
            retry_after: Some(10 * S),
        };
        // Window [12, 17): the refusal at 2 s plus 10 s, the spread wide.
        assert_eq!(policy.next(2 * S, refused, 0.0), 10 * S);
        // Then the network fails: the next window [17, 27).
        assert_eq!(policy.next(12 * S, Outcome::Failed, 0.0), 5 * S);
    }

    #[test]
    fn a_huge_retry_after_is_capped_and_odd_units_are_tamed() {
        let mut policy = Reconnect::new(policy());
        let refused = Outcome::Refused {
            retry_after: Some(Duration::from_secs(u64::MAX / 4)),
        };
        let delay = policy.next(Duration::ZERO, refused, 0.0);
        assert_eq!(delay, RETRY_AFTER_MAX);
        for unit in [f64::NAN, f64::INFINITY, -3.0, 7.0] {
            let delay = Reconnect::new(policy.policy()).next(S, Outcome::Failed, unit);
            assert!(delay >= MIN_GAP && delay <= 5 * S, "{unit}: {delay:?}");
        }
    }

    #[test]
    fn a_refused_token_has_its_own_slow_ladder_and_a_loss_resets_it() {
        let mut policy = Reconnect::new(policy());
        let first = policy.next(Duration::ZERO, Outcome::AuthRejected, 1.0);
        assert_eq!(first, 5 * S);
        assert_eq!(policy.next(5 * S, Outcome::AuthRejected, 1.0), 10 * S);
        // Connected again and lost: the auth ladder starts over.
        policy.next(20 * S, Outcome::Lost { live: false }, 0.0);
        assert_eq!(policy.next(30 * S, Outcome::AuthRejected, 1.0), 5 * S);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("10", now), Some(10 * S));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        // 1_445_412_480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30 * S)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: at once"
        );
        for bad in ["", "-5", "1.5", "soon", "10 s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}

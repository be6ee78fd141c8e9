//! When to retry a delivery and when to give up on a webhook: pure functions of
//! counts, status codes and a jitter sample the caller draws.

use std::time::Duration;

/// What one attempt's result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: done.
    Delivered,
    /// Network error, timeout, 408, 429 or 5xx: worth trying again.
    Retry,
    /// Any other status: the receiver rejected it; retrying will not help.
    GiveUp,
}

impl Verdict {
    /// Classifies an attempt by its HTTP status (`None`: no response at all).
    pub fn of(status: Option<u16>) -> Self {
        match status {
            None => Self::Retry,
            Some(200..=299) => Self::Delivered,
            Some(408 | 429 | 500..=599) => Self::Retry,
            Some(_) => Self::GiveUp,
        }
    }
}

/// What the delivery worker does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The delivery succeeded.
    Done,
    /// Wait, then attempt again.
    RetryAfter(Duration),
    /// The delivery failed for good; count it against the webhook.
    Failed,
}

/// Exponential backoff with "equal jitter": before retry `n` (1-based) the
/// worker waits between half and all of `min(max_delay, base_delay × 2^(n-1))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts; the waits between them are 1–2, 2–4, 4–8, 8–16 and 16–32 s.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts_made` attempts
    /// (≥ 1) have failed, or `None` when the attempts are used up. `jitter` is a
    /// uniform sample in `[0, 1)`; values outside are clamped.
    pub fn delay(&self, attempts_made: u32, jitter: f64) -> Option<Duration> {
        if attempts_made == 0 || attempts_made >= self.max_attempts {
            return None;
        }
        let doublings = (attempts_made - 1).min(31);
        let full = self
            .base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        let half = full / 2;
        Some(half + half.mul_f64(jitter.clamp(0.0, 1.0)))
    }

    /// Combines [`Verdict::of`] and [`RetryPolicy::delay`].
    pub fn next(&self, attempts_made: u32, status: Option<u16>, jitter: f64) -> Next {
        match Verdict::of(status) {
            Verdict::Delivered => Next::Done,
            Verdict::GiveUp => Next::Failed,
            Verdict::Retry => match self.delay(attempts_made, jitter) {
                Some(wait) => Next::RetryAfter(wait),
                None => Next::Failed,
            },
        }
    }
}

/// A webhook's run of consecutive failed deliveries, after recording one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    pub consecutive_failures: u32,
    /// The webhook should be disabled now.
    pub disable: bool,
}

/// Disables a webhook after `after_failures` deliveries in a row failed (each
/// delivery counting once, after its retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    pub after_failures: u32,
}

impl Default for DisablePolicy {
    fn default() -> Self {
        Self { after_failures: 20 }
    }
}

impl DisablePolicy {
    /// The streak after a delivery that `delivered` or not, given the streak
    /// before it. A success resets the streak.
    pub fn record(&self, failures_before: u32, delivered: bool) -> Streak {
        let consecutive_failures = if delivered {
            0
        } else {
            failures_before.saturating_add(1)
        };
        Streak {
            consecutive_failures,
            disable: self.after_failures > 0 && consecutive_failures >= self.after_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        }
    }

    #[test]
    fn delays_double_and_stay_within_the_jitter_band() {
        let p = policy();
        let lows: Vec<_> = (1..5).map(|n| p.delay(n, 0.0)).collect();
        let highs: Vec<_> = (1..5).map(|n| p.delay(n, 0.999_999)).collect();
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        assert_eq!(
            lows.into_iter().map(ms).collect::<Vec<_>>(),
            [Some(500), Some(1000), Some(2000), Some(2500)]
        );
        assert_eq!(
            highs.into_iter().map(ms).collect::<Vec<_>>(),
            [Some(999), Some(1999), Some(3999), Some(4999)]
        );
    }

    #[test]
    fn no_delay_once_attempts_are_used_up() {
        assert_eq!(policy().delay(5, 0.5), None);
        assert_eq!(policy().delay(0, 0.5), None);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            ..policy()
        };
        assert_eq!(p.delay(1000, 1.0), Some(Duration::from_secs(5)));
    }

    #[test]
    fn server_errors_retry_and_client_errors_give_up() {
        let p = policy();
        assert_eq!(p.next(1, Some(204), 0.0), Next::Done);
        assert_eq!(
            p.next(1, Some(500), 0.0),
            Next::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(
            p.next(1, None, 0.0),
            Next::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(
            p.next(1, Some(429), 0.0),
            Next::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(p.next(1, Some(404), 0.0), Next::Failed);
        assert_eq!(p.next(5, Some(503), 0.0), Next::Failed);
    }

    #[test]
    fn webhook_is_disabled_after_n_consecutive_failures_and_success_resets() {
        let p = DisablePolicy { after_failures: 3 };
        let s1 = p.record(0, false);
        let s2 = p.record(s1.consecutive_failures, false);
        assert!(!s2.disable);
        let reset = p.record(s2.consecutive_failures, true);
        assert_eq!(
            reset,
            Streak {
                consecutive_failures: 0,
                disable: false
            }
        );
        let s3 = p.record(2, false);
        assert_eq!(
            s3,
            Streak {
                consecutive_failures: 3,
                disable: true
            }
        );
    }
}

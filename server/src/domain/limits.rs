//! Time-based limits, as pure rules over an injected "now" (µs): the input rate of
//! an Attach stream (a token bucket) and the idle and absolute lifetimes of a
//! stream. The caller reads its clock and asks; nothing here sleeps.

use std::time::Duration;

use crate::clock::{Micros, micros_of};

/// A token bucket over bytes: holds at most `capacity` bytes, refills at `rate`
/// bytes per second, starts full.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    capacity: u64,
    /// Bytes available, in millionths of a byte (so that refills of a few µs are
    /// not rounded away).
    available_micro: u128,
    last: Micros,
}

impl TokenBucket {
    /// A full bucket of one second's worth at `rate` bytes per second (`rate > 0`).
    pub fn per_second(rate: u64, now: Micros) -> Self {
        TokenBucket {
            rate,
            capacity: rate,
            available_micro: u128::from(rate) * 1_000_000,
            last: now,
        }
    }

    /// The refill rate, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refill(&mut self, now: Micros) {
        let elapsed = u128::try_from(now.saturating_sub(self.last)).unwrap_or(0);
        self.last = self.last.max(now);
        let max = u128::from(self.capacity) * 1_000_000;
        self.available_micro = (self.available_micro + elapsed * u128::from(self.rate)).min(max);
    }

    /// Takes `bytes` if the bucket holds them; otherwise takes nothing and returns
    /// false.
    pub fn try_take(&mut self, bytes: u64, now: Micros) -> bool {
        self.refill(now);
        let want = u128::from(bytes) * 1_000_000;
        if want <= self.available_micro {
            self.available_micro -= want;
            true
        } else {
            false
        }
    }
}

/// Why a stream's time is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No frame either way for the idle limit.
    Idle(Duration),
    /// Open for the absolute limit.
    Lifetime(Duration),
}

/// The idle and absolute deadlines of one stream (zero durations: no limit).
#[derive(Clone, Debug)]
pub struct StreamDeadlines {
    idle: Duration,
    lifetime: Duration,
    opened: Micros,
    last_activity: Micros,
}

impl StreamDeadlines {
    /// Deadlines for a stream opened at `now`.
    pub fn new(idle: Duration, lifetime: Duration, now: Micros) -> Self {
        StreamDeadlines {
            idle,
            lifetime,
            opened: now,
            last_activity: now,
        }
    }

    /// A frame went one way or the other at `now`.
    pub fn touch(&mut self, now: Micros) {
        self.last_activity = self.last_activity.max(now);
    }

    /// Whether the stream's time is up at `now` (the absolute limit first).
    pub fn expired(&self, now: Micros) -> Option<Expiry> {
        if !self.lifetime.is_zero() && now.saturating_sub(self.opened) >= micros_of(self.lifetime) {
            return Some(Expiry::Lifetime(self.lifetime));
        }
        if !self.idle.is_zero() && now.saturating_sub(self.last_activity) >= micros_of(self.idle) {
            return Some(Expiry::Idle(self.idle));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Micros = 1_000_000;

    #[test]
    fn a_bucket_allows_a_burst_then_its_rate() {
        let mut bucket = TokenBucket::per_second(1000, 0);
        assert!(bucket.try_take(600, 0));
        assert!(bucket.try_take(400, 0));
        assert!(!bucket.try_take(1, 0), "empty");
        assert!(!bucket.try_take(500, SECOND / 4), "250 bytes refilled");
        assert!(bucket.try_take(250, SECOND / 4));
        assert!(
            bucket.try_take(1000, 10 * SECOND),
            "refills to capacity only"
        );
        assert!(!bucket.try_take(1, 10 * SECOND));
        assert!(
            !bucket.try_take(1001, 100 * SECOND),
            "never more than capacity"
        );
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut bucket = TokenBucket::per_second(10, 5 * SECOND);
        assert!(bucket.try_take(10, 5 * SECOND));
        assert!(!bucket.try_take(1, 0));
        assert!(bucket.try_take(10, 6 * SECOND));
    }

    #[test]
    fn streams_expire_when_idle_or_old() {
        let idle = Duration::from_secs(10);
        let lifetime = Duration::from_secs(60);
        let mut deadlines = StreamDeadlines::new(idle, lifetime, 0);
        assert_eq!(deadlines.expired(9 * SECOND), None);
        deadlines.touch(9 * SECOND);
        assert_eq!(deadlines.expired(18 * SECOND), None);
        assert_eq!(deadlines.expired(19 * SECOND), Some(Expiry::Idle(idle)));
        for t in (10..60).step_by(5) {
            deadlines.touch(t * SECOND);
        }
        assert_eq!(
            deadlines.expired(60 * SECOND),
            Some(Expiry::Lifetime(lifetime))
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let deadlines = StreamDeadlines::new(Duration::ZERO, Duration::ZERO, 0);
        assert_eq!(deadlines.expired(Micros::MAX), None);
    }
}

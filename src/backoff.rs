//! Exponential backoff with full jitter, for reconnecting to the agent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the supervisor waits between connection attempts.
///
/// The n-th consecutive failure waits a random time between zero and
/// `min(max, initial * multiplier^n)` ("full jitter"), so many clients restarted together
/// do not reconnect in lockstep. Without jitter it waits exactly that cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The cap of the first wait. Default 100 ms.
    pub initial: Duration,
    /// The largest cap. Default 30 s.
    pub max: Duration,
    /// How much the cap grows per failure. Default 2.
    pub multiplier: f64,
    /// Whether to draw the wait uniformly below the cap (full jitter). Default true.
    pub full_jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            full_jitter: true,
        }
    }
}

/// The state of one backoff sequence.
#[derive(Debug)]
pub(crate) struct BackoffState {
    config: Backoff,
    failures: u32,
    rng: u64,
}

impl BackoffState {
    pub(crate) fn new(config: Backoff) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        BackoffState {
            config,
            failures: 0,
            // xorshift must not start at zero.
            rng: (seed ^ (std::process::id() as u64).rotate_left(32)) | 1,
        }
    }

    /// The cap for the current failure count.
    fn cap(&self) -> Duration {
        let factor = self
            .config
            .multiplier
            .max(1.0)
            .powi(self.failures.min(64) as i32);
        let secs = self.config.initial.as_secs_f64() * factor;
        let max = self.config.max.as_secs_f64();
        let capped = if secs.is_finite() { secs.min(max) } else { max };
        Duration::try_from_secs_f64(capped).unwrap_or(self.config.max)
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let cap = self.cap();
        self.failures = self.failures.saturating_add(1);
        if !self.config.full_jitter {
            return cap;
        }
        // xorshift64*: plenty for spreading reconnects.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        Duration::try_from_secs_f64(cap.as_secs_f64() * unit).unwrap_or(cap)
    }

    /// Forgets the failures after a successful connection.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// How many failures in a row this sequence has seen.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_grow_to_the_maximum_and_reset() {
        let mut b = BackoffState::new(Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            multiplier: 2.0,
            full_jitter: false,
        });
        let waits: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 100, 100]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn jitter_stays_below_the_cap_and_varies() {
        let mut b = BackoffState::new(Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            full_jitter: true,
        });
        let waits: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 150, "jitter should spread waits");
        let mean = waits.iter().map(Duration::as_secs_f64).sum::<f64>() / 200.0;
        assert!(
            (0.3..0.7).contains(&mean),
            "mean {mean} should be near half the cap"
        );
    }

    #[test]
    fn a_huge_maximum_does_not_overflow() {
        let config = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::MAX,
            multiplier: 1e6,
            full_jitter: false,
        };
        // Without jitter: the caps grow a million-fold, then stay at the largest
        // duration there is, never wrapping or panicking.
        let mut b = BackoffState::new(config);
        let waits: Vec<Duration> = (0..100).map(|_| b.next_delay()).collect();
        assert_eq!(waits[0], Duration::from_secs(1));
        assert_eq!(waits[1], Duration::from_secs(1_000_000));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits[99], Duration::MAX);
        // With jitter: every wait is drawn below its cap.
        let mut b = BackoffState::new(Backoff {
            full_jitter: true,
            ..config
        });
        for (n, cap) in waits.iter().enumerate() {
            let wait = b.next_delay();
            assert!(wait <= *cap, "wait {n}: {wait:?} over its cap {cap:?}");
        }
    }

    #[test]
    fn huge_failure_counts_saturate() {
        let mut b = BackoffState::new(Backoff {
            multiplier: 10.0,
            full_jitter: false,
            ..Backoff::default()
        });
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
    }
}

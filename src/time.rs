//! Time: deadlines that never overflow (`Instant + Duration` panics past the clock's
//! range, and a caller may well pass `Duration::MAX` to mean "no limit"), and the wall
//! clock in the wire's Unix seconds.

use std::time::{Duration, Instant};

/// `now + timeout`, or a point far enough away to mean "never" when that overflows.
pub(crate) fn after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

/// Seconds since the Unix epoch (negative before it, which no clock here reports).
pub(crate) fn unix_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_mean_a_far_deadline() {
        assert!(after(Duration::MAX) > Instant::now() + Duration::from_secs(3600));
        let soon = after(Duration::from_millis(5));
        assert!(soon <= Instant::now() + Duration::from_millis(5));
    }
}

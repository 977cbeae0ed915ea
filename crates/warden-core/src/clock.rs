//! The wall clock, read in one place. The IO crates read it at their edges
//! (a request arrives, a timer fires, an operator runs a command) and pass
//! the value down; the pure crates take `now` as an argument, so their tests
//! choose the time. `clippy.toml` refuses every other way to read it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch; zero for a clock set before 1970.
pub fn since_epoch() -> Duration {
    #[expect(clippy::disallowed_methods, reason = "the one place that reads the wall clock")]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Unix time in milliseconds (audit records, approvals, kill switches, the monitor).
pub fn now_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Unix time in seconds (token `iat`/`exp`, DPoP proofs, one-time ids).
pub fn now_secs() -> i64 {
    i64::try_from(since_epoch().as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_read_the_same_clock() {
        let (s, ms) = (now_secs(), now_ms());
        // After 2020-01-01 and the two readings within a second of each other.
        assert!(s > 1_577_836_800, "{s}");
        assert!((ms / 1000 - s).abs() <= 1, "{ms} ms vs {s} s");
    }
}

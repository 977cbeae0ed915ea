//! Failed operator authentication, per source: a token bucket that answers
//! 429 once a source has presented too many wrong tokens, and the aggregate
//! that becomes one audit record per source per window (a count, never the
//! presented token). Pure: the caller passes the time and writes the records.
//! Attempts that pass the check together are each charged when they fail,
//! so concurrency shapes a burst but not the long-run rate (one guess per
//! `REFILL_MS`). Each gateway process keeps its own counts.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// Wrong tokens a source may present before it must wait.
const BURST: i64 = 5;
/// One more attempt per this interval once the burst is spent.
const REFILL_MS: i64 = 20_000;
/// Failures below the throttle are reported once per this window.
pub const WINDOW_MS: i64 = 60_000;
/// Sources tracked at once; beyond it, new sources are refused until old
/// ones age out (fail closed rather than grow without bound).
const MAX_SOURCES: usize = 10_000;

/// Where attempts come from: an IPv4 address, or an IPv6 /64 (one host
/// usually holds a whole /64, so single addresses would be free to rotate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => Self(IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())),
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// What one window of failures from a source adds up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: Source,
    /// Wrong or malformed tokens presented.
    pub failures: u32,
    /// Attempts refused unread while the source was throttled.
    pub refused: u32,
    pub since_ms: i64,
    /// Seconds until the next attempt is read, when the source is throttled.
    pub throttled_secs: Option<u64>,
}

impl Report {
    pub fn text(&self, now_ms: i64) -> String {
        let mut t = format!("{} wrong operator token(s) from {} in {} s", self.failures, self.source, (now_ms - self.since_ms).max(0) / 1000);
        if self.refused > 0 {
            t.push_str(&format!(", {} attempt(s) refused unread while throttled", self.refused));
        }
        if let Some(s) = self.throttled_secs {
            t.push_str(&format!("; throttled: further attempts answered 429 for {s} s"));
        }
        t
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// When the bucket is full again (GCRA's theoretical arrival time).
    full_at_ms: i64,
    since_ms: i64,
    failures: u32,
    refused: u32,
}

impl Entry {
    fn wait_ms(&self, now_ms: i64) -> i64 {
        self.full_at_ms - now_ms - (BURST - 1) * REFILL_MS
    }

    fn take(&mut self, source: Source, now_ms: i64, throttled_secs: Option<u64>) -> Option<Report> {
        let r = (self.failures + self.refused > 0).then_some(Report {
            source,
            failures: self.failures,
            refused: self.refused,
            since_ms: self.since_ms,
            throttled_secs,
        });
        (self.failures, self.refused, self.since_ms) = (0, 0, now_ms);
        r
    }
}

#[derive(Debug, Default)]
pub struct Throttle {
    sources: HashMap<Source, Entry>,
}

fn secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000).max(1)
}

impl Throttle {
    /// Before reading a presented token: `Some(retry_after_secs)` if this
    /// source must wait (the attempt is counted, not read).
    pub fn check(&mut self, source: Source, now_ms: i64) -> Option<u64> {
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, e| e.full_at_ms > now_ms || e.failures + e.refused > 0);
            if self.sources.len() >= MAX_SOURCES {
                return Some(secs(REFILL_MS));
            }
        }
        let e = self.sources.get_mut(&source)?;
        let wait = e.wait_ms(now_ms);
        (wait > 0).then(|| {
            e.refused += 1;
            secs(wait)
        })
    }

    /// A wrong token from `source`: the report to audit now, if this failure
    /// throttled the source (which closes its window early), or if it
    /// arrived after the source's previous window had ended.
    pub fn failed(&mut self, source: Source, now_ms: i64) -> Option<Report> {
        let e = self.sources.entry(source).or_insert(Entry { full_at_ms: now_ms, since_ms: now_ms, failures: 0, refused: 0 });
        let stale = (now_ms - e.since_ms >= WINDOW_MS).then(|| e.take(source, now_ms, None)).flatten();
        e.full_at_ms = e.full_at_ms.max(now_ms) + REFILL_MS;
        e.failures += 1;
        let wait = e.wait_ms(now_ms);
        // A report for the old window is due first; this failure starts the next.
        stale.or_else(|| (wait > 0).then(|| e.take(source, now_ms, Some(secs(wait)))).flatten())
    }

    /// Windows that ended with failures or refusals unreported; sources
    /// whose bucket is full again and nothing is owed are forgotten.
    pub fn due(&mut self, now_ms: i64) -> Vec<Report> {
        let mut out = Vec::new();
        for (s, e) in &mut self.sources {
            if now_ms - e.since_ms >= WINDOW_MS {
                let wait = e.wait_ms(now_ms);
                out.extend(e.take(*s, now_ms, (wait > 0).then(|| secs(wait))));
            }
        }
        self.sources.retain(|_, e| e.full_at_ms > now_ms || e.failures + e.refused > 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(ip: &str) -> Source {
        Source::of(ip.parse().unwrap())
    }

    #[test]
    fn a_burst_of_wrong_tokens_is_throttled_and_reported_once() {
        let mut t = Throttle::default();
        let a = src("192.0.2.7");
        for i in 0..BURST - 1 {
            assert_eq!(t.check(a, i), None);
            assert_eq!(t.failed(a, i), None, "below the throttle nothing is reported yet");
        }
        assert_eq!(t.check(a, 10), None);
        let r = t.failed(a, 10).expect("the throttling failure is reported");
        assert_eq!((r.failures, r.refused, r.throttled_secs), (5, 0, Some(20)));
        assert!(r.text(10).contains("5 wrong operator token(s) from 192.0.2.7"), "{}", r.text(10));
        assert_eq!(t.check(a, 11), Some(20), "throttled");
        assert_eq!(t.check(a, 12), Some(20));
        assert_eq!(t.check(src("192.0.2.8"), 12), None, "other sources are not");
        // One more attempt per refill interval.
        assert_eq!(t.check(a, 10 + REFILL_MS), None);
        let again = t.failed(a, 10 + REFILL_MS).expect("throttled again");
        assert_eq!((again.failures, again.refused), (1, 2), "the refused attempts are counted, once");
        assert!(t.due(10 + REFILL_MS).is_empty(), "nothing else owed");
    }

    #[test]
    fn a_few_failures_are_reported_when_their_window_ends() {
        let mut t = Throttle::default();
        let a = src("192.0.2.7");
        assert_eq!(t.failed(a, 0), None);
        assert_eq!(t.failed(a, 1_000), None);
        assert!(t.due(WINDOW_MS - 1).is_empty(), "the window is still open");
        let r = t.due(WINDOW_MS);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].failures, r[0].throttled_secs), (2, None));
        assert!(t.due(WINDOW_MS + 1).is_empty(), "reported once");
        assert!(t.sources.is_empty(), "a quiet, refilled source is forgotten");
    }

    #[test]
    fn a_failure_after_a_window_ended_reports_that_window() {
        let mut t = Throttle::default();
        let a = src("192.0.2.7");
        t.failed(a, 0);
        let r = t.failed(a, WINDOW_MS + 5).expect("the old window's report");
        assert_eq!((r.failures, r.since_ms), (1, 0));
        assert_eq!(t.due(2 * WINDOW_MS + 5)[0].failures, 1, "the new failure is in the next window");
    }

    #[test]
    fn an_ipv6_host_cannot_rotate_addresses_within_its_prefix() {
        let mut t = Throttle::default();
        for i in 0..BURST {
            t.failed(src(&format!("2001:db8:1:2::{i:x}")), 0);
        }
        assert_eq!(t.check(src("2001:db8:1:2:ffff::1"), 1), Some(20));
        assert_eq!(src("::ffff:192.0.2.7"), src("192.0.2.7"), "mapped IPv4 is IPv4");
        assert_eq!(src("2001:db8:1:2::9").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn the_table_is_bounded_and_fails_closed_when_full() {
        let mut t = Throttle::default();
        for i in 0..MAX_SOURCES as u32 {
            t.failed(Source(IpAddr::V4(i.into())), 0);
        }
        assert_eq!(t.check(src("203.0.113.1"), 1), Some(20), "a new source waits while the table is full of recent failures");
        assert_eq!(t.due(WINDOW_MS).len(), MAX_SOURCES, "each reported once");
        assert_eq!(t.check(src("203.0.113.1"), WINDOW_MS), None, "then the table has room again");
    }
}

//! Circuit breaker per upstream tool: after `failures` failed calls making
//! up at least `failure_ratio` of the calls within `window_secs` it opens and
//! refuses calls for `cooldown_secs`; then one probe call is let through and
//! its outcome closes or re-opens it. A probe that never reports (its caller
//! went away mid-call) is abandoned, and the next call probes instead: an
//! abandoned probe must not leave the tool refused for good.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub failures: u32,
    pub failure_ratio: f64,
    pub window_secs: u64,
    pub cooldown_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures: 5, failure_ratio: 0.5, window_secs: 30, cooldown_secs: 30 }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Closed {
        since_ms: i64,
        calls: u32,
        failures: u32,
    },
    Open {
        until_ms: i64,
    },
    /// The probe numbered `probe` is in flight; it was let through at
    /// `since_ms`.
    HalfOpen {
        probe: u64,
        since_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    state: State,
    /// Probes let through so far, to tell an abandoned probe from a later one.
    probes: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self { state: State::Closed { since_ms: 0, calls: 0, failures: 0 }, probes: 0 }
    }
}

/// A call the breaker let through: `Some(n)` when it is probe `n`, which
/// must report its outcome or be abandoned.
pub type Probe = Option<u64>;

impl Breaker {
    /// May a call go through now? `Err` says until when (ms) it is open.
    pub fn allow(&mut self, now_ms: i64) -> Result<Probe, i64> {
        match self.state {
            State::Closed { .. } => Ok(None),
            State::Open { until_ms } if now_ms >= until_ms => {
                self.probes += 1;
                self.state = State::HalfOpen { probe: self.probes, since_ms: now_ms };
                Ok(Some(self.probes))
            }
            State::Open { until_ms } => Err(until_ms),
            // Only the probe goes through until it reports.
            State::HalfOpen { .. } => Err(now_ms),
        }
    }

    /// Probe `probe` ended without an outcome (its call was dropped). The
    /// upstream's health is as unknown as before it, so the breaker is open
    /// with the cool-down already served: the next call is the probe. A
    /// probe that already reported, or was superseded, changes nothing.
    pub fn abandon(&mut self, probe: u64) {
        if let State::HalfOpen { probe: p, since_ms } = self.state
            && p == probe
        {
            self.state = State::Open { until_ms: since_ms };
        }
    }

    /// Report a call's outcome; returns true when this opened the breaker.
    pub fn record(&mut self, cfg: &BreakerConfig, ok: bool, now_ms: i64) -> bool {
        let window_ms = cfg.window_secs as i64 * 1000;
        match &mut self.state {
            State::HalfOpen { .. } | State::Open { .. } => {
                self.state = if ok {
                    State::Closed { since_ms: now_ms, calls: 0, failures: 0 }
                } else {
                    State::Open { until_ms: now_ms + cfg.cooldown_secs as i64 * 1000 }
                };
                !ok
            }
            State::Closed { since_ms, calls, failures } => {
                if now_ms - *since_ms > window_ms {
                    (*since_ms, *calls, *failures) = (now_ms, 0, 0);
                }
                *calls += 1;
                *failures += u32::from(!ok);
                if *failures >= cfg.failures && f64::from(*failures) >= cfg.failure_ratio * f64::from(*calls) {
                    self.state = State::Open { until_ms: now_ms + cfg.cooldown_secs as i64 * 1000 };
                    return true;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_failures_probes_and_closes() {
        let cfg = BreakerConfig { failures: 3, failure_ratio: 0.5, window_secs: 10, cooldown_secs: 5 };
        let mut b = Breaker::default();
        assert!(!b.record(&cfg, true, 0));
        assert!(!b.record(&cfg, false, 1));
        assert!(!b.record(&cfg, false, 2));
        assert!(b.record(&cfg, false, 3), "3 of 4 failed");
        assert_eq!(b.allow(4), Err(5_003));
        assert_eq!(b.allow(5_003), Ok(Some(1)), "probe");
        assert!(b.allow(5_004).is_err(), "one probe at a time");
        assert!(b.record(&cfg, false, 5_010), "failed probe re-opens");
        assert!(b.allow(10_010).is_ok());
        assert!(!b.record(&cfg, true, 10_011));
        assert!(b.allow(10_012).is_ok());
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe_and_close_the_breaker() {
        let cfg = BreakerConfig { failures: 1, failure_ratio: 0.5, window_secs: 10, cooldown_secs: 5 };
        let mut b = Breaker::default();
        assert!(b.record(&cfg, false, 0));
        let probe = b.allow(5_000).unwrap().expect("the first call after the cool-down probes");
        assert!(b.allow(5_001).is_err(), "one probe at a time");
        b.abandon(probe);
        let next = b.allow(5_002).unwrap().expect("the next call probes at once");
        assert_ne!(next, probe);
        b.abandon(probe);
        assert!(b.allow(5_003).is_err(), "abandoning a superseded probe does not free a second one");
        assert!(!b.record(&cfg, true, 5_010));
        assert_eq!(b.allow(5_011), Ok(None), "closed");
        b.abandon(next);
        assert_eq!(b.allow(5_012), Ok(None), "abandoning a probe that reported changes nothing");
    }

    #[test]
    fn failures_spread_out_do_not_open() {
        let cfg = BreakerConfig { failures: 3, failure_ratio: 0.5, window_secs: 10, cooldown_secs: 5 };
        let mut b = Breaker::default();
        for i in 0..10 {
            assert!(!b.record(&cfg, false, i * 20_000));
        }
    }
}

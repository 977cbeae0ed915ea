//! Per-agent behavioural baseline and the anomaly score of one call.
//!
//! The baseline learns the agent's tool mix, tool-to-tool transitions,
//! calls per active minute, error rate and hours of activity. Until it has
//! seen `min_calls` calls over at least `min_secs` (the learning period) the
//! learned parts are not trusted and conservative fixed rules apply instead:
//! a fixed per-minute ceiling and a mild score for the first use of a
//! sensitive, exfiltration-capable or financial tool.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Learning-period settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Learning {
    /// Calls to observe before the baseline is trusted.
    pub min_calls: u64,
    /// Seconds since the first call before the baseline is trusted.
    pub min_secs: i64,
    /// Calls per minute above which a burst scores while learning (and
    /// before a rate has been learned).
    pub cold_calls_per_minute: f64,
}

impl Default for Learning {
    fn default() -> Self {
        Self { min_calls: 200, min_secs: 86_400, cold_calls_per_minute: 60.0 }
    }
}

/// What the baseline needs to know about a call.
#[derive(Debug, Clone, Copy)]
pub struct CallShape<'a> {
    /// `server/tool`.
    pub tool: &'a str,
    pub sensitivity_level: i64,
    /// Exfiltration-capable or financial.
    pub high_impact: bool,
    pub now_ms: i64,
}

/// An anomaly score 0-100 with the signals that raised it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Anomaly {
    pub score: u8,
    pub signals: Vec<&'static str>,
}

/// Active minutes needed before the learned rate replaces the cold ceiling.
const RATE_MINUTES: u64 = 3;
/// Counts are halved past this many calls so the baseline follows change.
const HALVE_AT: f64 = 20_000.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub calls: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Decayed call counts by tool.
    pub tools: BTreeMap<String, f64>,
    /// Decayed counts by `previous tool -> tool`.
    pub transitions: BTreeMap<String, f64>,
    pub last_tool: Option<String>,
    /// Decayed call counts by UTC hour.
    pub hours: Vec<f64>,
    /// Current minute (`now_ms / 60000`) and calls in it so far.
    pub minute: i64,
    pub minute_calls: f64,
    /// Mean and variance of calls per active minute (EWMA).
    pub rate_mean: f64,
    pub rate_var: f64,
    pub rate_minutes: u64,
    /// Error rate, long-run and recent (EWMA of denied or failed calls).
    pub err_long: f64,
    pub err_recent: f64,
}

fn rarity(p: f64, common: f64) -> f64 {
    // 0 at `common` or more, 1 at a tenth of it or less.
    if p <= 0.0 { 1.0 } else { ((common / p).ln() / 10f64.ln()).clamp(0.0, 1.0) }
}

impl Baseline {
    pub fn learning(&self, cfg: &Learning, now_ms: i64) -> bool {
        self.calls < cfg.min_calls || now_ms - self.first_ms < cfg.min_secs * 1000
    }

    fn calls_this_minute(&self, now_ms: i64) -> f64 {
        if now_ms.div_euclid(60_000) == self.minute { self.minute_calls } else { 0.0 }
    }

    /// Calls in the current minute, this one included once observed.
    pub fn minute_rate(&self, now_ms: i64) -> u64 {
        self.calls_this_minute(now_ms) as u64
    }

    /// Score `c` before it is observed.
    pub fn anomaly(&self, c: &CallShape<'_>, cfg: &Learning) -> Anomaly {
        let learning = self.learning(cfg, c.now_ms);
        let mut parts: Vec<(&'static str, f64, f64)> = Vec::with_capacity(5);

        // Volume: calls in this minute against the learned rate, or the
        // fixed ceiling while there is none.
        let count = self.calls_this_minute(c.now_ms) + 1.0;
        let volume = if learning || self.rate_minutes < RATE_MINUTES {
            (count - cfg.cold_calls_per_minute) / cfg.cold_calls_per_minute
        } else {
            let spread = self.rate_var.sqrt().max(0.5 * self.rate_mean).max(2.0);
            (count - (self.rate_mean + 3.0 * spread)) / (2.0 * spread + 5.0)
        };
        parts.push(("volume", 0.9, volume.clamp(0.0, 1.0)));

        // Tools: novelty weighs more for sensitive and high-impact tools.
        let impact_w = (0.5 + 0.1 * c.sensitivity_level as f64 + if c.high_impact { 0.1 } else { 0.0 }).min(0.95);
        let total: f64 = self.tools.values().sum();
        let seen = self.tools.get(c.tool).copied().unwrap_or(0.0);
        if learning {
            let first_risky_use = seen == 0.0 && (c.high_impact || c.sensitivity_level >= 3);
            parts.push(("new_tool", impact_w, if first_risky_use { 0.5 } else { 0.0 }));
        } else {
            parts.push((if seen == 0.0 { "new_tool" } else { "rare_tool" }, impact_w, rarity(seen / total.max(1.0), 0.05)));
            if let Some(prev) = &self.last_tool {
                let out = self.tools.get(prev).copied().unwrap_or(0.0);
                let t = self.transitions.get(&transition(prev, c.tool)).copied().unwrap_or(0.0);
                parts.push(("rare_transition", 0.35, if out > 0.0 { rarity(t / out, 0.05) } else { 0.0 }));
            }
            let hour = (c.now_ms.div_euclid(3_600_000)).rem_euclid(24) as usize;
            let hours_total: f64 = self.hours.iter().sum();
            let in_hour = self.hours.get(hour).copied().unwrap_or(0.0);
            parts.push(("unusual_hour", 0.3, rarity(in_hour / hours_total.max(1.0), 0.01)));
        }

        // Errors: recent denials or failures well above the agent's usual.
        let errors = if learning { (self.err_recent - 0.5) / 0.4 } else { (self.err_recent - self.err_long - 0.25) / 0.5 };
        parts.push(("error_spike", 0.5, errors.clamp(0.0, 1.0)));

        let mut keep = 1.0;
        let mut signals = Vec::new();
        for (name, w, s) in parts {
            if s > 0.0 {
                keep *= 1.0 - w * s;
                if w * s >= 0.2 {
                    signals.push(name);
                }
            }
        }
        Anomaly { score: ((1.0 - keep) * 100.0).round().clamp(0.0, 100.0) as u8, signals }
    }

    /// Learn from a call (whatever its outcome).
    pub fn observe(&mut self, c: &CallShape<'_>) {
        if self.calls == 0 {
            self.first_ms = c.now_ms;
        }
        self.calls += 1;
        self.last_ms = c.now_ms;
        let minute = c.now_ms.div_euclid(60_000);
        if minute != self.minute {
            if self.minute_calls > 0.0 {
                self.learn_rate(self.minute_calls);
            }
            self.minute = minute;
            self.minute_calls = 0.0;
        }
        self.minute_calls += 1.0;
        *self.tools.entry(c.tool.to_string()).or_default() += 1.0;
        if let Some(prev) = self.last_tool.take() {
            *self.transitions.entry(transition(&prev, c.tool)).or_default() += 1.0;
        }
        self.last_tool = Some(c.tool.to_string());
        if self.hours.len() != 24 {
            self.hours = vec![0.0; 24];
        }
        self.hours[(c.now_ms.div_euclid(3_600_000)).rem_euclid(24) as usize] += 1.0;
        if self.tools.values().sum::<f64>() > HALVE_AT {
            for v in self.tools.values_mut().chain(self.transitions.values_mut()).chain(self.hours.iter_mut()) {
                *v /= 2.0;
            }
        }
    }

    fn learn_rate(&mut self, m: f64) {
        const A: f64 = 0.1;
        if self.rate_minutes == 0 {
            self.rate_mean = m;
            self.rate_var = 0.0;
        } else {
            let d = m - self.rate_mean;
            self.rate_mean += A * d;
            self.rate_var = (1.0 - A) * (self.rate_var + A * d * d);
        }
        self.rate_minutes += 1;
    }

    /// Learn a call's outcome: `error` for a denial or a failed call.
    pub fn outcome(&mut self, error: bool) {
        let e = if error { 1.0 } else { 0.0 };
        self.err_long += 0.01 * (e - self.err_long);
        self.err_recent += 0.2 * (e - self.err_recent);
    }
}

fn transition(prev: &str, cur: &str) -> String {
    format!("{prev} -> {cur}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: Learning = Learning { min_calls: 50, min_secs: 0, cold_calls_per_minute: 60.0 };

    fn shape(tool: &str, now_ms: i64) -> CallShape<'_> {
        CallShape { tool, sensitivity_level: 2, high_impact: false, now_ms }
    }

    /// A routine: lookup then read, five pairs a minute, for an hour.
    fn trained() -> (Baseline, i64) {
        let mut b = Baseline::default();
        let mut t = 10 * 3_600_000;
        for _ in 0..300 {
            for tool in ["crm/lookup", "files/read"] {
                b.observe(&shape(tool, t));
                b.outcome(false);
                t += 6_000;
            }
        }
        (b, t)
    }

    #[test]
    fn routine_calls_score_low() {
        let (b, t) = trained();
        assert!(!b.learning(&CFG, t));
        // Within the hour the routine ran in.
        let a = b.anomaly(&shape("crm/lookup", t - 60_000), &CFG);
        assert!(a.score < 10, "{a:?}");
    }

    #[test]
    fn new_tools_transitions_bursts_and_errors_score_high() {
        let (b, t) = trained();
        let new = b.anomaly(&CallShape { tool: "pay/transfer", sensitivity_level: 3, high_impact: true, now_ms: t }, &CFG);
        assert!(new.score >= 85 && new.signals.contains(&"new_tool"), "{new:?}");
        let mut burst = b.clone();
        for _ in 0..40 {
            burst.observe(&shape("crm/lookup", t));
        }
        let a = burst.anomaly(&shape("crm/lookup", t), &CFG);
        assert!(a.score >= 80 && a.signals.contains(&"volume"), "{a:?}");
        let mut errs = b.clone();
        for _ in 0..8 {
            errs.outcome(true);
        }
        let a = errs.anomaly(&shape("crm/lookup", t), &CFG);
        assert!(a.signals.contains(&"error_spike"), "{a:?}");
        // Same tool at 03:00 when the agent only ever worked 10:00-15:00.
        let night = t - t.rem_euclid(86_400_000) + 86_400_000 + 3 * 3_600_000;
        let a = b.anomaly(&shape("crm/lookup", night), &CFG);
        assert!(a.signals.contains(&"unusual_hour"), "{a:?}");
    }

    #[test]
    fn cold_start_is_conservative_but_quiet_for_routine_use() {
        let b = Baseline::default();
        assert!(b.learning(&CFG, 0));
        assert_eq!(b.anomaly(&shape("crm/lookup", 0), &CFG).score, 0);
        let first_payment = b.anomaly(&CallShape { tool: "pay/transfer", sensitivity_level: 3, high_impact: true, now_ms: 0 }, &CFG);
        assert!(first_payment.score > 0 && first_payment.score < 50, "{first_payment:?}");
        let mut burst = Baseline::default();
        for _ in 0..110 {
            burst.observe(&shape("crm/lookup", 1_000));
        }
        assert!(burst.anomaly(&shape("crm/lookup", 1_000), &CFG).score >= 70);
    }

    #[test]
    fn survives_a_json_round_trip() {
        let (b, _) = trained();
        let back: Baseline = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }
}

//! Rate limits and impact caps: calls, records returned, money moved and
//! bytes sent out, per agent, tool and/or task, over a sliding window.
//! A cap is a limit with a long window (`amount` 100,000 per day). An amount
//! that cannot be counted (negative, not finite) is refused by every amount
//! cap that applies, never counted as nothing.

use crate::window::Window;
use crate::{Call, MonitorError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use warden_core::ToolRef;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Tool calls let through.
    Calls,
    /// Records returned by results (items in a result's arrays; see `records_in`).
    Records,
    /// Money moved: the `amount` argument of financial tools.
    Amount,
    /// Bytes of arguments sent to exfiltration-capable tools.
    BytesOut,
}

impl Metric {
    fn unit(self) -> &'static str {
        match self {
            Metric::Calls => "calls",
            Metric::Records => "records",
            Metric::Amount => "amount",
            Metric::BytesOut => "bytes out",
        }
    }
}

/// The dimensions a limit keeps separate counters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Agent,
    Tool,
    Task,
}

/// One limit, as written in `[[monitor.limit]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    pub name: String,
    pub metric: Metric,
    pub max: f64,
    pub window_secs: u64,
    /// Tools it applies to (`SERVER/TOOL`, `SERVER/*`); empty: every tool.
    #[serde(default)]
    pub tools: Vec<ToolRef>,
    /// Agent names it applies to; empty: every agent.
    #[serde(default)]
    pub agents: Vec<String>,
    /// One counter per distinct combination of these; empty: one counter
    /// shared by every call the rule applies to (a global cap).
    #[serde(default = "default_per")]
    pub per: Vec<Dimension>,
}

fn default_per() -> Vec<Dimension> {
    vec![Dimension::Agent]
}

impl LimitRule {
    pub fn validate(&self) -> Result<(), MonitorError> {
        let bad = |why: &str| MonitorError::Config(format!("limit {:?}: {why}", self.name));
        if self.name.is_empty() {
            return Err(MonitorError::Config("every limit needs a name".into()));
        }
        if !(self.max.is_finite() && self.max > 0.0) {
            return Err(bad("max must be a positive number"));
        }
        if !(1..=31 * 86_400).contains(&self.window_secs) {
            return Err(bad("window_secs must be between 1 and 2678400 (31 days)"));
        }
        let mut seen = Vec::new();
        for d in &self.per {
            if seen.contains(d) {
                return Err(bad("a dimension appears twice in per"));
            }
            seen.push(*d);
        }
        Ok(())
    }

    fn applies(&self, c: &Call<'_>) -> bool {
        (self.tools.is_empty() || self.tools.iter().any(|t| t.covers(c.tool))) && (self.agents.is_empty() || self.agents.iter().any(|a| a == c.agent_name))
    }

    fn key(&self, c: &Call<'_>) -> String {
        let mut k = String::new();
        for d in &self.per {
            match d {
                Dimension::Agent => k.push_str(c.agent),
                Dimension::Tool => {
                    k.push_str(&c.tool.server);
                    k.push('/');
                    k.push_str(&c.tool.tool);
                }
                Dimension::Task => k.push_str(c.task),
            }
            k.push('\0');
        }
        k
    }

    fn window_ms(&self) -> i64 {
        self.window_secs as i64 * 1000
    }
}

/// What a call consumes of a metric (records are known only once the
/// result is back, and checked then). An amount is passed on as it came, so
/// `hit` can refuse one that is negative or not a number.
fn consumes(c: &Call<'_>, m: Metric) -> f64 {
    match m {
        Metric::Calls => 1.0,
        Metric::Amount if c.financial => c.amount,
        Metric::BytesOut if c.exfil_capable => c.arg_bytes as f64,
        Metric::Amount | Metric::BytesOut | Metric::Records => 0.0,
    }
}

/// A limit that a call would exceed.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitHit {
    pub rule: String,
    pub metric: Metric,
    pub used: f64,
    pub requested: f64,
    pub max: f64,
    pub window_secs: u64,
}

impl LimitHit {
    /// Refused because the call's share cannot be counted, not because the
    /// budget is used up.
    pub fn uncountable(&self) -> bool {
        !(self.requested.is_finite() && self.requested >= 0.0)
    }
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.uncountable() {
            return write!(
                f,
                "limit {:?} refuses this call: its {} ({}) is negative or not a number, so it cannot be counted against the cap; send a non-negative number",
                self.rule,
                self.metric.unit(),
                self.requested
            );
        }
        write!(
            f,
            "limit {:?} reached: {} of {} {} per {} s used, this call needs {}",
            self.rule,
            self.used.round(),
            self.max,
            self.metric.unit(),
            self.window_secs,
            self.requested.round()
        )
    }
}

/// Counters for every configured rule.
#[derive(Debug, Default)]
pub struct Limits {
    rules: Vec<LimitRule>,
    counters: HashMap<(usize, String), Window>,
    inserts: u64,
}

impl Limits {
    pub fn new(rules: Vec<LimitRule>) -> Self {
        Self { rules, ..Default::default() }
    }

    fn hit(&self, i: usize, key: &str, need: f64, now_ms: i64) -> Option<LimitHit> {
        let r = &self.rules[i];
        if need == 0.0 && r.metric != Metric::Records {
            return None;
        }
        let used = self.counters.get(&(i, key.to_string())).map(|w| w.value(now_ms, r.window_ms())).unwrap_or(0.0);
        // A negative amount would pay back the budget; NaN compares false.
        if !(need.is_finite() && need >= 0.0) {
            return Some(LimitHit { rule: r.name.clone(), metric: r.metric, used, requested: need, max: r.max, window_secs: r.window_secs });
        }
        // Records are checked before the call for an exhausted budget and
        // after it for the result's own size.
        let over = if need == 0.0 { used >= r.max } else { used + need > r.max };
        over.then(|| LimitHit { rule: r.name.clone(), metric: r.metric, used, requested: need, max: r.max, window_secs: r.window_secs })
    }

    /// The first limit the call would exceed, without consuming anything.
    pub fn check(&self, u: &Call<'_>, now_ms: i64) -> Option<LimitHit> {
        self.rules.iter().enumerate().filter(|(_, r)| r.applies(u)).find_map(|(i, r)| self.hit(i, &r.key(u), consumes(u, r.metric), now_ms))
    }

    /// Check and consume in one step (no other call can slip in between).
    pub fn admit(&mut self, u: &Call<'_>, now_ms: i64) -> Result<(), LimitHit> {
        if let Some(h) = self.check(u, now_ms) {
            return Err(h);
        }
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            let x = consumes(u, r.metric);
            if x > 0.0 && r.applies(u) {
                let (key, wms) = (r.key(u), r.window_ms());
                self.counters.entry((i, key)).or_default().add(now_ms, wms, x);
                self.inserts += 1;
            }
        }
        if self.inserts >= 100_000 {
            self.prune(now_ms);
        }
        Ok(())
    }

    /// Account for the records in a result; refused (and not counted) when
    /// they would take a `records` limit over its maximum.
    pub fn take_records(&mut self, u: &Call<'_>, records: f64, now_ms: i64) -> Result<(), LimitHit> {
        let applicable: Vec<(usize, String)> =
            self.rules.iter().enumerate().filter(|(_, r)| r.metric == Metric::Records && r.applies(u)).map(|(i, r)| (i, r.key(u))).collect();
        if records <= 0.0 {
            return Ok(());
        }
        if let Some(h) = applicable.iter().find_map(|(i, k)| self.hit(*i, k, records, now_ms)) {
            return Err(h);
        }
        for (i, k) in applicable {
            let wms = self.rules[i].window_ms();
            self.counters.entry((i, k)).or_default().add(now_ms, wms, records);
        }
        Ok(())
    }

    fn prune(&mut self, now_ms: i64) {
        let rules = &self.rules;
        self.counters.retain(|(i, _), w| !w.is_idle(now_ms, rules[*i].window_ms()));
        self.inserts = 0;
    }
}

/// How many records a tool result carries: the longest array in its
/// `structuredContent` (or the value itself), else the longest JSON array in
/// a text content item, else the number of content items.
pub fn records_in(result: &serde_json::Value) -> u64 {
    use serde_json::Value;
    fn longest(v: &Value, depth: usize) -> Option<u64> {
        match v {
            Value::Array(a) => Some(a.len() as u64),
            Value::Object(o) if depth < 2 => o.values().filter_map(|x| longest(x, depth + 1)).max(),
            _ => None,
        }
    }
    if let Some(n) = result.get("structuredContent").and_then(|s| longest(s, 0)) {
        return n;
    }
    let content = result.get("content").and_then(Value::as_array);
    let from_text = content.into_iter().flatten().filter_map(|c| c.get("text").and_then(Value::as_str)).filter_map(|t| {
        let t = t.trim_start();
        if t.starts_with('[') || t.starts_with('{') { serde_json::from_str::<Value>(t).ok().and_then(|v| longest(&v, 0)) } else { None }
    });
    from_text.max().unwrap_or_else(|| content.map(|c| c.len() as u64).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(metric: Metric, max: f64, per: Vec<Dimension>, tools: &[&str]) -> LimitRule {
        LimitRule { name: "r".into(), metric, max, window_secs: 60, tools: tools.iter().map(|t| t.parse().unwrap()).collect(), agents: vec![], per }
    }

    fn usage<'a>(agent: &'a str, tool: &'a ToolRef, amount: f64) -> Call<'a> {
        Call {
            agent,
            agent_name: agent,
            lineage_root: agent,
            task: "t",
            tool,
            sensitivity_level: 1,
            exfil_capable: false,
            financial: true,
            amount,
            arg_bytes: 0,
            now_ms: 0,
        }
    }

    #[test]
    fn calls_per_agent_are_separate_and_refused_when_full() {
        let mut l = Limits::new(vec![rule(Metric::Calls, 3.0, vec![Dimension::Agent], &[])]);
        let t: ToolRef = "crm/lookup".parse().unwrap();
        for _ in 0..3 {
            l.admit(&usage("a", &t, 0.0), 1_000).unwrap();
        }
        let hit = l.admit(&usage("a", &t, 0.0), 1_000).unwrap_err();
        assert_eq!((hit.used, hit.max), (3.0, 3.0));
        assert!(hit.to_string().contains("3 of 3 calls per 60 s"), "{hit}");
        l.admit(&usage("b", &t, 0.0), 1_000).unwrap();
        // Two windows later the budget is back.
        l.admit(&usage("a", &t, 0.0), 121_000).unwrap();
    }

    #[test]
    fn amount_cap_counts_money_only_on_matching_tools() {
        let mut l = Limits::new(vec![rule(Metric::Amount, 1000.0, vec![], &["pay/*"])]);
        let pay: ToolRef = "pay/transfer".parse().unwrap();
        let crm: ToolRef = "crm/lookup".parse().unwrap();
        l.admit(&usage("a", &pay, 600.0), 0).unwrap();
        l.admit(&usage("a", &crm, 5000.0), 0).unwrap();
        // A global cap: another agent shares it.
        assert!(l.admit(&usage("b", &pay, 500.0), 0).is_err());
        l.admit(&usage("b", &pay, 400.0), 0).unwrap();
    }

    #[test]
    fn a_negative_or_non_numeric_amount_is_refused_not_counted_as_zero() {
        let mut l = Limits::new(vec![rule(Metric::Amount, 1000.0, vec![], &["pay/*"])]);
        let pay: ToolRef = "pay/transfer".parse().unwrap();
        for bad in [-50_000.0, -0.01, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let hit = l.admit(&usage("a", &pay, bad), 0).unwrap_err();
            assert!(hit.uncountable(), "{bad}");
            assert!(hit.to_string().contains("negative or not a number"), "{hit}");
        }
        // Nothing was paid back or consumed: the whole budget is still there.
        l.admit(&usage("a", &pay, 1000.0), 0).unwrap();
        assert!(!l.admit(&usage("a", &pay, 1.0), 0).unwrap_err().uncountable());
    }

    #[test]
    fn records_are_checked_against_the_result() {
        let mut l = Limits::new(vec![rule(Metric::Records, 10.0, vec![Dimension::Agent, Dimension::Task], &[])]);
        let t: ToolRef = "db/query".parse().unwrap();
        let u = usage("a", &t, 0.0);
        l.take_records(&u, 8.0, 0).unwrap();
        assert!(l.take_records(&u, 3.0, 0).is_err(), "refused whole");
        l.take_records(&u, 2.0, 0).unwrap();
        // Budget exhausted: the next call is refused up front.
        assert!(l.check(&u, 0).is_some());
    }

    #[test]
    fn records_in_results() {
        assert_eq!(records_in(&json!({"structuredContent": {"rows": [1, 2, 3]}, "content": []})), 3);
        assert_eq!(records_in(&json!({"content": [{"type": "text", "text": "[{\"a\":1},{\"a\":2}]"}]})), 2);
        assert_eq!(records_in(&json!({"content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "x"}]})), 2);
        assert_eq!(records_in(&json!({})), 0);
    }

    #[test]
    fn bad_rules_are_explained() {
        let mut r = rule(Metric::Calls, 0.0, vec![], &[]);
        assert!(r.validate().unwrap_err().to_string().contains("max"));
        r.max = 1.0;
        r.window_secs = 0;
        assert!(r.validate().unwrap_err().to_string().contains("window_secs"));
    }
}

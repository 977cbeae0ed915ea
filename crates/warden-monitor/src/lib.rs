//! Continuous monitoring for the enforcement point: per-agent behavioural
//! baselines and anomaly scores, the rolling risk score, session taint (the
//! lethal trifecta), rate limits and impact caps, circuit breakers, the
//! kill-switch set, and autonomy promotion criteria. Pure and IO-free: time comes in as arguments, state is
//! in memory and (de)serializable for the store, so everything here is unit
//! tested and benchmarked without a database or a network.
//!
//! Per call the gateway asks [`Monitor::assess`] (before the policy, which
//! sees the risk, anomaly and taint), [`Monitor::admit`] (just before the
//! upstream: limits consumed, breaker consulted) and [`Monitor::finish`]
//! (after: outcome, taint, risk events). A returned containment cause means
//! the gateway must contain the agent before its next call.

mod autonomy;
mod baseline;
mod breaker;
mod kill;
mod limits;
mod risk;
mod strangers;
mod taint;
mod window;

pub use autonomy::{Criterion, History, Promotion, PromotionPolicy, demoted, promotion};
pub use baseline::{Anomaly, Baseline, CallShape, Learning};
pub use breaker::{Breaker, BreakerConfig};
pub use kill::KillSet;
pub use limits::{Dimension, LimitHit, LimitRule, Limits, Metric, records_in};
pub use risk::{Risk, RiskEvent};
pub use strangers::{Claimed, Door, Source, Strangers, StrangersConfig, Throttled};
pub use taint::Taint;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use warden_core::ToolRef;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MonitorError {
    #[error("monitor configuration: {0}")]
    Config(String),
    #[error("stored monitor state for {agent} is unreadable ({why}); it will be relearned")]
    State { agent: String, why: String },
}

/// `[monitor]` in `warden.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Rate limits and impact caps (`[[monitor.limit]]`).
    pub limit: Vec<LimitRule>,
    pub learning: Learning,
    /// Risk halves after this long without new events.
    pub risk_half_life_secs: u64,
    /// Contain an agent (suspend it, revoke its tokens, close its sessions)
    /// when its risk reaches this; 0 turns automatic containment off.
    pub contain_at: u8,
    pub breaker: BreakerConfig,
    /// A session's taint is forgotten after this long without calls.
    pub session_idle_secs: u64,
    /// How often learned state is written to the store.
    pub flush_secs: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            limit: Vec::new(),
            learning: Learning::default(),
            risk_half_life_secs: 600,
            contain_at: 90,
            breaker: BreakerConfig::default(),
            session_idle_secs: 3600,
            flush_secs: 5,
        }
    }
}

impl MonitorConfig {
    pub fn validate(&self) -> Result<(), MonitorError> {
        let mut names = std::collections::HashSet::new();
        for l in &self.limit {
            l.validate()?;
            if !names.insert(&l.name) {
                return Err(MonitorError::Config(format!("limit {:?} is defined twice", l.name)));
            }
        }
        let bad = |m: &str| Err(MonitorError::Config(m.into()));
        if self.contain_at > 100 {
            return bad("contain_at must be 0 (off) to 100");
        }
        if self.risk_half_life_secs == 0 {
            return bad("risk_half_life_secs must be positive");
        }
        let cold = self.learning.cold_calls_per_minute;
        if cold.is_nan() || cold.is_infinite() || cold <= 0.0 {
            return bad("learning.cold_calls_per_minute must be positive");
        }
        if !(self.breaker.failures >= 1 && (0.0..=1.0).contains(&self.breaker.failure_ratio) && self.breaker.window_secs >= 1) {
            return bad("breaker needs failures >= 1, failure_ratio in 0..1 and window_secs >= 1");
        }
        if self.flush_secs == 0 {
            return bad("flush_secs must be at least 1");
        }
        Ok(())
    }

    fn half_life_ms(&self) -> f64 {
        self.risk_half_life_secs as f64 * 1000.0
    }
}

/// What the monitor keeps per agent (persisted as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub baseline: Baseline,
    pub risk: Risk,
}

/// A readable summary of an agent's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSummary {
    pub calls: u64,
    pub learning: bool,
    pub risk: u8,
    pub calls_per_active_minute: f64,
    pub error_rate: f64,
    /// Most used tools with their share of calls.
    pub top_tools: Vec<(String, f64)>,
    pub last_seen_ms: i64,
}

impl AgentState {
    pub fn summary(&self, cfg: &MonitorConfig, now_ms: i64) -> AgentSummary {
        let b = &self.baseline;
        let total: f64 = b.tools.values().sum::<f64>().max(1.0);
        let mut top: Vec<(String, f64)> = b.tools.iter().map(|(t, n)| (t.clone(), (n / total * 1000.0).round() / 1000.0)).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(5);
        AgentSummary {
            calls: b.calls,
            learning: b.learning(&cfg.learning, now_ms),
            risk: self.risk.score(now_ms, cfg.half_life_ms()),
            calls_per_active_minute: (b.rate_mean * 10.0).round() / 10.0,
            error_rate: (b.err_long * 1000.0).round() / 1000.0,
            top_tools: top,
            last_seen_ms: b.last_ms,
        }
    }
}

/// One tool call as the monitor sees it.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// SPIFFE id and name of the calling agent.
    pub agent: &'a str,
    pub agent_name: &'a str,
    /// The root of the agent's delegation chain (the agent itself when it
    /// is not a sub-agent). Taint is held per root: what an agent or any of
    /// its sub-agents has read follows all of them, whatever task label
    /// the agent asked its token for.
    pub lineage_root: &'a str,
    pub task: &'a str,
    pub tool: &'a ToolRef,
    pub sensitivity_level: i64,
    pub exfil_capable: bool,
    pub financial: bool,
    /// `amount` argument (financial tools).
    pub amount: f64,
    /// Size of the arguments in bytes.
    pub arg_bytes: usize,
    pub now_ms: i64,
}

/// Why the monitor refuses a call outright.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Limit(LimitHit),
    /// The tool's circuit breaker is open until this time (ms).
    Breaker {
        tool: String,
        until_ms: i64,
    },
}

impl Refusal {
    /// A policy-like id for the audit record.
    pub fn id(&self) -> String {
        match self {
            Refusal::Limit(h) => format!("limit:{}", h.rule),
            Refusal::Breaker { .. } => "circuit-breaker".into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Limit(h) => h.fmt(f),
            Refusal::Breaker { tool, .. } => {
                write!(f, "circuit breaker for {tool} is open after repeated upstream failures; retry after the cool-down")
            }
        }
    }
}

/// The monitor's view of a call before the policy decides it.
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    pub anomaly: Anomaly,
    /// The agent's risk with this call's anomaly included.
    pub risk: u8,
    pub learning: bool,
    /// The session's taint before this call.
    pub taint: Taint,
    pub calls_this_minute: u64,
    /// A limit already exhausted (checked again, atomically, by `admit`).
    pub refusal: Option<Refusal>,
    /// Set when this call took the agent's risk to the containment
    /// threshold: the call must be refused and the agent contained.
    pub contain: Option<String>,
}

/// How a call ended, for [`Monitor::finish`].
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Refused by policy, a limit, a breaker or a withheld result.
    pub denied: bool,
    pub limit_hit: bool,
    /// Forwarded and the upstream failed (transport or JSON-RPC error).
    pub failed: bool,
    /// The upstream's health, when it was called.
    pub upstream_ok: Option<bool>,
    /// Id of the `@critical` policy that denied the call.
    pub critical: Option<String>,
    pub injection_in_args: bool,
    pub secret_in_args: bool,
    /// An exfiltration-capable tool called from a session tainted both ways.
    pub trifecta: bool,
    /// What the released result taints the session with.
    pub taint: Taint,
}

/// A call [`Monitor::admit`] let through. When it was the tool's breaker
/// probe, dropping it before the outcome was reported (the agent went away
/// mid-call) abandons the probe.
#[must_use = "keep it until the call's outcome is reported"]
#[derive(Debug)]
pub struct Admitted<'a> {
    monitor: &'a Monitor,
    tool: ToolRef,
    probe: breaker::Probe,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(probe) = self.probe
            && let Some(b) = self.monitor.breakers.lock().get_mut(&self.tool)
        {
            b.abandon(probe);
        }
    }
}

/// All monitoring state of one gateway.
#[derive(Debug)]
pub struct Monitor {
    cfg: MonitorConfig,
    agents: Mutex<HashMap<String, (AgentState, bool)>>,
    limits: Mutex<Limits>,
    /// Taint and when it last grew, by lineage root.
    taint: Mutex<HashMap<String, (Taint, i64)>>,
    breakers: Mutex<HashMap<ToolRef, Breaker>>,
    /// Requests for names nothing answers to, per agent: the minute
    /// (`now_ms / 60_000`) and how many in it.
    misses: Mutex<HashMap<String, (i64, u32)>>,
}

/// Requests for names nothing answers to (an unknown tool, a malformed
/// call) an agent may make in a minute before each further one counts as a
/// denial: generic clients and conformance suites make a few, a flood at
/// machine speed is reconnaissance (and audit-log growth).
pub const MISSES_PER_MINUTE: u32 = 120;

/// Taint entries kept before idle ones are dropped.
const MAX_TAINTED: usize = 200_000;

impl Monitor {
    pub fn new(cfg: MonitorConfig) -> Self {
        let limits = Limits::new(cfg.limit.clone());
        Self { cfg, agents: Mutex::default(), limits: Mutex::new(limits), taint: Mutex::default(), breakers: Mutex::default(), misses: Mutex::default() }
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    fn contain_cause(&self, risk: u8, why: &str) -> Option<String> {
        (self.cfg.contain_at > 0 && risk >= self.cfg.contain_at)
            .then(|| format!("risk score {risk} reached the containment threshold {} ({why})", self.cfg.contain_at))
    }

    /// Score the call, learn from it, and report limits already exhausted.
    pub fn assess(&self, c: &Call<'_>) -> Assessment {
        let tool = c.tool.to_string();
        let shape = CallShape { tool: &tool, sensitivity_level: c.sensitivity_level, high_impact: c.exfil_capable || c.financial, now_ms: c.now_ms };
        let hl = self.cfg.half_life_ms();
        let (anomaly, risk, learning, calls_this_minute) = {
            let mut agents = self.agents.lock();
            let (state, dirty) = agents.entry(c.agent.to_string()).or_default();
            let anomaly = state.baseline.anomaly(&shape, &self.cfg.learning);
            let learning = state.baseline.learning(&self.cfg.learning, c.now_ms);
            state.baseline.observe(&shape);
            state.risk.add(RiskEvent::Anomaly(anomaly.score), c.now_ms, hl);
            *dirty = true;
            (anomaly, state.risk.score(c.now_ms, hl), learning, state.baseline.minute_rate(c.now_ms))
        };
        let taint = self.taint_of(c);
        let refusal = self.limits.lock().check(c, c.now_ms).map(Refusal::Limit);
        let why = if anomaly.signals.is_empty() {
            format!("anomaly {}", anomaly.score)
        } else {
            format!("anomaly {}: {}", anomaly.score, anomaly.signals.join(", "))
        };
        let contain = self.contain_cause(risk, &why);
        Assessment { anomaly, risk, learning, taint, calls_this_minute, refusal, contain }
    }

    /// What the call's lineage (the agent, its ancestors and sub-agents) has read.
    fn taint_of(&self, c: &Call<'_>) -> Taint {
        self.taint.lock().get(c.lineage_root).map(|(t, _)| *t).unwrap_or_default()
    }

    /// Just before forwarding: consult the tool's breaker and consume the
    /// call's share of every limit (or refuse it, consuming nothing). An
    /// admitted call must be reported with `finish` (`upstream_ok`), and its
    /// [`Admitted`] kept until then: dropped unreported, a breaker probe is
    /// abandoned so the next call probes.
    pub fn admit(&self, c: &Call<'_>) -> Result<Admitted<'_>, Refusal> {
        let probe = {
            let mut breakers = self.breakers.lock();
            match breakers.get_mut(c.tool) {
                Some(b) => b.allow(c.now_ms).map_err(|until_ms| Refusal::Breaker { tool: c.tool.to_string(), until_ms })?,
                None => None,
            }
        };
        let admitted = Admitted { monitor: self, tool: c.tool.clone(), probe };
        self.limits.lock().admit(c, c.now_ms).map_err(Refusal::Limit)?;
        Ok(admitted)
    }

    /// Count a result's records against `records` limits; refused (the
    /// result must be withheld) when they would exceed one.
    pub fn take_records(&self, c: &Call<'_>, records: u64) -> Result<(), LimitHit> {
        self.limits.lock().take_records(c, records as f64, c.now_ms)
    }

    /// Learn the outcome; returns a containment cause when the agent must
    /// be contained before its next call.
    pub fn finish(&self, c: &Call<'_>, o: &Outcome) -> Option<String> {
        if let Some(ok) = o.upstream_ok {
            let mut breakers = self.breakers.lock();
            breakers.entry(c.tool.clone()).or_default().record(&self.cfg.breaker, ok, c.now_ms);
        }
        if o.taint != Taint::default() {
            let mut taint = self.taint.lock();
            if taint.len() >= MAX_TAINTED {
                let idle = self.cfg.session_idle_secs as i64 * 1000;
                taint.retain(|_, (_, at)| c.now_ms - *at < idle);
            }
            let e = taint.entry(c.lineage_root.to_string()).or_default();
            e.0.merge(o.taint);
            e.1 = c.now_ms;
        }
        let hl = self.cfg.half_life_ms();
        let mut agents = self.agents.lock();
        let (state, dirty) = agents.entry(c.agent.to_string()).or_default();
        *dirty = true;
        state.baseline.outcome(o.denied || o.failed);
        let events = [
            (o.denied && !o.limit_hit, RiskEvent::Denied, "denied by policy"),
            (o.limit_hit, RiskEvent::LimitHit, "rate limit or impact cap hit"),
            (o.injection_in_args, RiskEvent::InjectionInArguments, "prompt injection in arguments"),
            (o.secret_in_args, RiskEvent::SecretInArguments, "credential in arguments"),
            (o.trifecta, RiskEvent::LethalTrifecta, "exfiltration attempt from a session that read untrusted content and sensitive data"),
            (o.critical.is_some(), RiskEvent::Critical, "critical policy violation"),
        ];
        let mut why = Vec::new();
        for (happened, e, what) in events {
            if happened {
                state.risk.add(e, c.now_ms, hl);
                why.push(what);
            }
        }
        if let Some(p) = &o.critical {
            return Some(format!("critical policy violation ({p})"));
        }
        if why.is_empty() {
            return None;
        }
        self.contain_cause(state.risk.score(c.now_ms, hl), &format!("last: {}", why.join(", ")))
    }

    /// A call refused before it could be assessed (malformed, outside the
    /// token's scope, an unknown or unavailable tool): counts as a denial.
    pub fn refused(&self, agent: &str, now_ms: i64) -> Option<String> {
        let hl = self.cfg.half_life_ms();
        let mut agents = self.agents.lock();
        let (state, dirty) = agents.entry(agent.to_string()).or_default();
        *dirty = true;
        state.baseline.outcome(true);
        state.risk.add(RiskEvent::Denied, now_ms, hl);
        self.contain_cause(state.risk.score(now_ms, hl), "last: refused before assessment (malformed, out of scope or unavailable tool)")
    }

    /// A request for a name nothing answers to: free up to
    /// [`MISSES_PER_MINUTE`] a minute, a denial ([`Monitor::refused`]) each
    /// beyond.
    pub fn missed(&self, agent: &str, now_ms: i64) -> Option<String> {
        let minute = now_ms.div_euclid(60_000);
        let over = {
            let mut misses = self.misses.lock();
            let (at, n) = misses.entry(agent.to_string()).or_insert((minute, 0));
            if *at != minute {
                (*at, *n) = (minute, 0);
            }
            *n += 1;
            *n > MISSES_PER_MINUTE
        };
        if over { self.refused(agent, now_ms) } else { None }
    }

    /// What the monitor knows of an agent now.
    pub fn summary(&self, agent: &str, now_ms: i64) -> Option<AgentSummary> {
        self.agents.lock().get(agent).map(|(s, _)| s.summary(&self.cfg, now_ms))
    }

    /// Current risk (0-100) of an agent.
    pub fn risk(&self, agent: &str, now_ms: i64) -> u8 {
        self.agents.lock().get(agent).map(|(s, _)| s.risk.score(now_ms, self.cfg.half_life_ms())).unwrap_or(0)
    }

    /// An operator lifted a containment: the risk starts again from zero
    /// (the baseline is kept).
    pub fn reset_risk(&self, agent: &str) {
        if let Some((s, dirty)) = self.agents.lock().get_mut(agent) {
            s.risk = Risk::default();
            *dirty = true;
        }
    }

    /// Load persisted state (at start-up).
    pub fn restore(&self, agent: &str, json: &str) -> Result<(), MonitorError> {
        let state: AgentState = serde_json::from_str(json).map_err(|e| MonitorError::State { agent: agent.into(), why: e.to_string() })?;
        self.agents.lock().insert(agent.to_string(), (state, false));
        Ok(())
    }

    /// States changed since the last call, as JSON, marked clean.
    pub fn take_dirty(&self) -> Vec<(String, String)> {
        let mut agents = self.agents.lock();
        agents
            .iter_mut()
            .filter(|(_, (_, d))| *d)
            .map(|(a, (s, d))| {
                *d = false;
                (a.clone(), serde_json::to_string(s).expect("monitor state serializes"))
            })
            .collect()
    }

    /// Put states back as dirty after a failed write.
    pub fn mark_dirty(&self, agents: &[String]) {
        let mut map = self.agents.lock();
        for a in agents {
            if let Some((_, d)) = map.get_mut(a) {
                *d = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MonitorConfig {
        MonitorConfig {
            learning: Learning { min_calls: 20, min_secs: 0, cold_calls_per_minute: 60.0 },
            limit: vec![LimitRule {
                name: "calls".into(),
                metric: Metric::Calls,
                max: 100.0,
                window_secs: 60,
                tools: vec![],
                agents: vec![],
                per: vec![Dimension::Agent],
            }],
            ..Default::default()
        }
    }

    fn call<'a>(agent: &'a str, tool: &'a ToolRef, now_ms: i64) -> Call<'a> {
        Call {
            agent,
            agent_name: agent,
            lineage_root: agent,
            task: "t",
            tool,
            sensitivity_level: 2,
            exfil_capable: false,
            financial: false,
            amount: 0.0,
            arg_bytes: 10,
            now_ms,
        }
    }

    #[test]
    fn a_rogue_agent_crosses_the_threshold_and_a_routine_one_does_not() {
        let m = Monitor::new(cfg());
        let (lookup, read): (ToolRef, ToolRef) = ("crm/lookup".parse().unwrap(), "files/read".parse().unwrap());
        let pay: ToolRef = "pay/transfer".parse().unwrap();
        let mut t = 0;
        for i in 0..200 {
            for a in ["good", "rogue"] {
                let c = call(a, if i % 2 == 0 { &lookup } else { &read }, t);
                assert!(m.assess(&c).contain.is_none());
                drop(m.admit(&c).unwrap());
                assert!(m.finish(&c, &Outcome { upstream_ok: Some(true), ..Default::default() }).is_none());
            }
            t += 10_000;
        }
        // Rogue: a burst of unusual payments.
        let mut contained_at = None;
        for i in 0..100 {
            let mut c = call("rogue", &pay, t + i);
            c.financial = true;
            c.sensitivity_level = 3;
            let a = m.assess(&c);
            if a.contain.is_some() {
                contained_at = Some(i);
                break;
            }
            let _ = m.finish(&c, &Outcome { denied: true, ..Default::default() });
        }
        let n = contained_at.expect("contained");
        assert!(n < 10, "contained after {n} calls");
        assert!(m.risk("rogue", t) >= 90);
        assert!(m.risk("good", t) < 20);
        m.reset_risk("rogue");
        assert_eq!(m.risk("rogue", t), 0);
    }

    #[test]
    fn a_few_misses_a_minute_are_free_and_a_flood_is_not() {
        let m = Monitor::new(cfg());
        for i in 0..MISSES_PER_MINUTE {
            assert!(m.missed("client", i64::from(i)).is_none());
        }
        assert_eq!(m.risk("client", 1_000), 0, "ordinary clients miss now and then");
        // A new minute starts afresh.
        for i in 0..MISSES_PER_MINUTE {
            assert!(m.missed("client", 60_000 + i64::from(i)).is_none());
        }
        assert_eq!(m.risk("client", 61_000), 0);
        let mut contained = None;
        for i in 0..200 {
            if let Some(cause) = m.missed("client", 60_500 + i) {
                contained = Some((i, cause));
                break;
            }
        }
        let (n, _) = contained.expect("a flood of misses contains");
        assert!(m.risk("client", 61_000) >= 90, "each miss past the allowance counts, {n} of them contained it");
    }

    #[test]
    fn taint_follows_the_lineage_whatever_the_task_and_critical_contains_at_once() {
        let m = Monitor::new(cfg());
        let tool: ToolRef = "mail/send".parse().unwrap();
        let c = call("a", &tool, 0);
        m.finish(&c, &Outcome { taint: Taint { untrusted: true, sensitive: false }, ..Default::default() });
        m.finish(&c, &Outcome { taint: Taint { untrusted: false, sensitive: true }, ..Default::default() });
        assert!(m.assess(&c).taint.both());
        let other_task = Call { task: "t2", ..c.clone() };
        assert!(m.assess(&other_task).taint.both(), "a new task label does not wash the taint off");
        let sub_agent = Call { agent: "a/sub", agent_name: "sub", ..c.clone() };
        assert!(m.assess(&sub_agent).taint.both(), "a sub-agent inherits what its lineage read");
        let stranger = Call { agent: "b", agent_name: "b", lineage_root: "b", ..c.clone() };
        assert!(!m.assess(&stranger).taint.untrusted);
        let cause = m.finish(&c, &Outcome { denied: true, critical: Some("exfil".into()), ..Default::default() }).unwrap();
        assert!(cause.contains("exfil"), "{cause}");
        // Probing outside the token's scope adds up too.
        let probes = (0..20).find_map(|i| m.refused("prober", i)).expect("repeated refusals contain");
        assert!(probes.contains("refused before assessment"), "{probes}");
    }

    #[test]
    fn limits_refuse_and_breakers_open() {
        let mut cfg = cfg();
        cfg.limit[0].max = 2.0;
        cfg.breaker = BreakerConfig { failures: 2, failure_ratio: 0.5, window_secs: 60, cooldown_secs: 10 };
        let m = Monitor::new(cfg);
        let tool: ToolRef = "crm/lookup".parse().unwrap();
        let c = call("a", &tool, 0);
        drop(m.admit(&c).unwrap());
        drop(m.admit(&c).unwrap());
        assert!(matches!(m.admit(&c), Err(Refusal::Limit(_))));
        assert!(m.assess(&c).refusal.is_some());
        let d = call("b", &tool, 0);
        for _ in 0..2 {
            m.finish(&d, &Outcome { failed: true, upstream_ok: Some(false), ..Default::default() });
        }
        let r = m.admit(&d).unwrap_err();
        assert!(r.to_string().contains("circuit breaker"), "{r}");
    }

    #[test]
    fn state_round_trips_through_json() {
        let m = Monitor::new(cfg());
        let tool: ToolRef = "crm/lookup".parse().unwrap();
        for i in 0..30 {
            m.assess(&call("a", &tool, i * 1000));
        }
        let dirty = m.take_dirty();
        assert_eq!(dirty.len(), 1);
        assert!(m.take_dirty().is_empty());
        let m2 = Monitor::new(cfg());
        m2.restore("a", &dirty[0].1).unwrap();
        let s = m2.agents.lock().get("a").unwrap().0.summary(&cfg(), 30_000);
        assert_eq!((s.calls, s.learning), (30, false));
        assert!(m2.restore("b", "{not json").unwrap_err().to_string().contains("relearned"));
    }

    #[test]
    fn config_errors_are_clear() {
        let c = MonitorConfig { limit: vec![cfg().limit[0].clone(), cfg().limit[0].clone()], ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
        let c = MonitorConfig { contain_at: 101, ..Default::default() };
        assert!(c.validate().is_err());
        MonitorConfig::default().validate().unwrap();
    }
}

//! Unauthenticated traffic: per-source throttling and aggregated evidence,
//! for every door that checks a credential (`/mcp`, the token endpoint, the
//! admin API's operator tokens).
//!
//! A request that fails authentication proves nothing about who sent it, so
//! it must not cost the gateway a durable, signed, fsync'd audit record of
//! its own: strangers would drive disk writes and fill the log with text of
//! their choosing. Failures are tallied per (source, door, reason) and
//! written as one bounded record per key and window; a source that keeps
//! failing is answered 429 before any credential is read, until its bucket
//! refills. Pure: the caller passes the time and writes the records. Each
//! gateway process keeps its own counts.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use warden_core::{AuditEvent, EventKind, untrusted_text};

/// Distinct (source, kind, reason) tallies kept per window; further failures
/// are counted in one overflow tally so a key-spraying flood stays bounded.
const MAX_TALLIES: usize = 1_000;
/// Sources with a bucket; past this, new sources share one bucket (a
/// distributed flood is throttled as one) until full buckets are pruned.
const MAX_SOURCES: usize = 10_000;
/// Longest reason kept in an aggregated record (bytes)…
const MAX_REASON: usize = 200;
/// …and distinct reasons listed in one.
const MAX_REASONS: usize = 8;
/// Operator tokens guard the control plane: a source may present this many
/// wrong ones…
const OPERATOR_BURST: f64 = 5.0;
/// …and then one more every 20 s.
const OPERATOR_PER_SEC: f64 = 0.05;

/// Where requests come from: an IPv4 address, or an IPv6 /64 (one host
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

/// Which credential check a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// `/mcp`: access tokens and DPoP proofs.
    Mcp,
    /// The egress proxy: proxy tokens.
    Egress,
    /// The token and revocation endpoints: client assertions.
    Token,
    /// The admin API: operator tokens, with a stricter budget of their own.
    Operator,
}

impl Door {
    fn event_kind(self) -> EventKind {
        if self == Door::Token { EventKind::TokenDenied } else { EventKind::AuthnFailure }
    }

    fn what(self) -> &'static str {
        match self {
            Door::Mcp => "failed requests",
            Door::Egress => "failed proxy connections",
            Door::Token => "failed token requests",
            Door::Operator => "wrong operator token(s)",
        }
    }

    /// Agents' doors share a budget; operator logins have their own.
    fn budget(self) -> Budget {
        if self == Door::Operator { Budget::Operator } else { Budget::Agents }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Budget {
    Agents,
    Operator,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrangersConfig {
    /// Failed authentications a source may make in a burst…
    pub burst: f64,
    /// …and per second after it; over that its requests are answered 429.
    pub per_sec: f64,
    /// One aggregated audit record per source and reason per this window.
    pub audit_window_secs: u64,
}

impl Default for StrangersConfig {
    fn default() -> Self {
        Self { burst: 20.0, per_sec: 2.0, audit_window_secs: 10 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    /// Tokens at `now_ms`, refilled at `per_sec` up to `burst`.
    fn level(&self, (burst, per_sec): (f64, f64), now_ms: i64) -> f64 {
        let dt = (now_ms - self.at_ms).max(0) as f64 / 1000.0;
        (self.tokens + dt * per_sec).min(burst)
    }
}

/// One aggregated record per window for each of these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// `None`: the overflow tally of many sources.
    source: Option<Source>,
    door: Door,
    /// The agent of a token whose signature verified (a revoked, expired or
    /// misused credential of a known agent): kept apart from strangers.
    agent: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Tally {
    failed: u64,
    throttled: u64,
    first_ms: i64,
    last_ms: i64,
    /// Failures by reason (bounded, escaped), at most [`MAX_REASONS`]…
    reasons: Vec<(String, u64)>,
    /// …and how many had another reason.
    other_reasons: u64,
    /// What an unverified request claimed to be, bounded and escaped.
    claimed: Option<String>,
}

/// Who a failed request said it was.
#[derive(Debug, Clone, Copy)]
pub enum Claimed<'a> {
    Nothing,
    /// Unverified (an assertion whose signature did not check, a forged
    /// token): evidence, never attribution.
    Unverified(&'a str),
    /// A token this gateway issued to that agent, refused for another
    /// reason (revoked, suspended, a bad DPoP proof). Its signature check
    /// is cached, so it costs the source no throttling: a contained agent
    /// must not get the other agents behind the same address refused.
    Verified(&'a str),
}

/// Why a request was answered 429: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_secs: u64,
}

#[derive(Debug, Default)]
pub struct Strangers {
    cfg: StrangersConfig,
    /// `None` source: the bucket new sources share while the table is full.
    buckets: HashMap<(Budget, Option<Source>), Bucket>,
    tallies: HashMap<Key, Tally>,
}

impl Strangers {
    pub fn new(cfg: StrangersConfig) -> Self {
        Self { cfg, ..Default::default() }
    }

    /// The burst and refill rate of a budget.
    fn rates(&self, budget: Budget) -> (f64, f64) {
        match budget {
            Budget::Agents => (self.cfg.burst, self.cfg.per_sec),
            Budget::Operator => (OPERATOR_BURST, OPERATOR_PER_SEC),
        }
    }

    /// The bucket of `source` for `budget`, refilled to `now_ms`.
    fn bucket(&mut self, budget: Budget, source: Source, now_ms: i64) -> &mut Bucket {
        let mut key = (budget, Some(source));
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&key) {
            // Forget the sources whose bucket is full again.
            let (agents, operator) = (self.rates(Budget::Agents), self.rates(Budget::Operator));
            self.buckets.retain(|(b, _), bucket| {
                let rates = if *b == Budget::Operator { operator } else { agents };
                bucket.level(rates, now_ms) < rates.0
            });
            if self.buckets.len() >= MAX_SOURCES {
                key = (budget, None);
            }
        }
        let rates = self.rates(budget);
        let b = self.buckets.entry(key).or_insert(Bucket { tokens: rates.0, at_ms: now_ms });
        *b = Bucket { tokens: b.level(rates, now_ms), at_ms: now_ms };
        b
    }

    /// Before reading the credential of a request from `source`: refused
    /// when the source has used up its failures at this door. Costs a hash
    /// lookup for a source in good standing.
    pub fn admit(&mut self, source: Source, door: Door, now_ms: i64) -> Result<(), Throttled> {
        let budget = door.budget();
        if !self.buckets.contains_key(&(budget, Some(source))) && self.buckets.len() < MAX_SOURCES {
            return Ok(());
        }
        let per_sec = self.rates(budget).1;
        let b = self.bucket(budget, source, now_ms);
        if b.tokens >= 1.0 {
            return Ok(());
        }
        let retry_after_secs = if per_sec > 0.0 { ((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64 } else { 3600 };
        self.tally(source, door, None, now_ms).throttled += 1;
        Err(Throttled { retry_after_secs })
    }

    /// A request from `source` failed authentication at `door` for `reason`.
    pub fn failed(&mut self, source: Source, door: Door, reason: &str, claimed: Claimed<'_>, now_ms: i64) {
        if !matches!(claimed, Claimed::Verified(_)) {
            let b = self.bucket(door.budget(), source, now_ms);
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
        let agent = if let Claimed::Verified(a) = claimed { Some(a) } else { None };
        let t = self.tally(source, door, agent, now_ms);
        t.failed += 1;
        let reason = untrusted_text(reason, MAX_REASON);
        match t.reasons.iter().position(|(r, _)| *r == reason) {
            Some(i) => t.reasons[i].1 += 1,
            None if t.reasons.len() < MAX_REASONS => t.reasons.push((reason, 1)),
            None => t.other_reasons += 1,
        }
        if let (Claimed::Unverified(c), None) = (claimed, &t.claimed) {
            t.claimed = Some(untrusted_text(c, 120));
        }
    }

    fn tally(&mut self, source: Source, door: Door, agent: Option<&str>, now_ms: i64) -> &mut Tally {
        let mut key = Key { source: Some(source), door, agent: agent.map(String::from) };
        if self.tallies.len() >= MAX_TALLIES && !self.tallies.contains_key(&key) {
            key = Key { source: None, door, agent: None };
        }
        let t = self.tallies.entry(key).or_insert_with(|| Tally { first_ms: now_ms, ..Default::default() });
        t.last_ms = now_ms;
        t
    }

    /// The aggregated records of the window that ends now: one per source,
    /// door and verified agent, with counts by reason. Empties the tallies.
    pub fn drain(&mut self) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = self
            .tallies
            .drain()
            .map(|(k, t)| {
                let source = k.source.map(|s| s.to_string()).unwrap_or_else(|| "many sources".into());
                let action = if k.door == Door::Operator { "operator:authenticate".to_string() } else { format!("unauthenticated:{source}") };
                let throttled = if t.throttled > 0 { format!(", and {} more answered 429 unread", t.throttled) } else { String::new() };
                let claimed = t.claimed.map(|c| format!(" (claiming to be \"{c}\", unverified)")).unwrap_or_default();
                let mut reasons: Vec<String> = t.reasons.iter().map(|(r, n)| format!("{n}× {r}")).collect();
                if t.other_reasons > 0 {
                    reasons.push(format!("{}× other reasons", t.other_reasons));
                }
                AuditEvent {
                    kind: Some(k.door.event_kind()),
                    action: Some(action),
                    agent: k.agent,
                    decision: warden_core::Verdict::Deny,
                    reason: Some(format!(
                        "{} {} from {source} over {} ms{throttled}{claimed}: {}",
                        t.failed,
                        k.door.what(),
                        t.last_ms - t.first_ms,
                        if reasons.is_empty() { "all throttled".to_string() } else { reasons.join("; ") }
                    )),
                    remediation: Some("a client that keeps failing: check its credentials and clock, or block the source".into()),
                    ..Default::default()
                }
            })
            .collect();
        out.sort_by(|a, b| a.reason.cmp(&b.reason));
        out
    }

    /// Seconds between two [`Strangers::drain`]s.
    pub fn window_secs(&self) -> u64 {
        self.cfg.audit_window_secs.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    #[test]
    fn a_source_that_keeps_failing_is_throttled_and_others_are_not() {
        let mut s = Strangers::new(StrangersConfig { burst: 3.0, per_sec: 1.0, audit_window_secs: 10 });
        let bad = src("127.0.0.2");
        for _ in 0..3 {
            assert!(s.admit(bad, Door::Mcp, 0).is_ok());
            s.failed(bad, Door::Mcp, "invalid_token: bad signature", Claimed::Nothing, 0);
        }
        assert_eq!(s.admit(bad, Door::Mcp, 0), Err(Throttled { retry_after_secs: 1 }));
        assert_eq!(s.admit(bad, Door::Token, 0), Err(Throttled { retry_after_secs: 1 }), "agents' doors share a budget");
        assert!(s.admit(bad, Door::Operator, 0).is_ok(), "operator logins have their own");
        assert!(s.admit(src("127.0.0.1"), Door::Mcp, 0).is_ok(), "another source is unaffected");
        assert!(s.admit(bad, Door::Mcp, 1_000).is_ok(), "the bucket refills");
        let shared = src("127.0.0.4");
        for _ in 0..100 {
            s.failed(shared, Door::Mcp, "invalid_token: agent is suspended", Claimed::Verified("spiffe://td/agent/x"), 0);
        }
        assert!(s.admit(shared, Door::Mcp, 0).is_ok(), "a known agent's dead token does not throttle its address");
    }

    #[test]
    fn wrong_operator_tokens_are_held_to_five_then_one_per_twenty_seconds() {
        let mut s = Strangers::new(StrangersConfig::default());
        let a = src("192.0.2.7");
        for i in 0..5 {
            assert!(s.admit(a, Door::Operator, i).is_ok());
            s.failed(a, Door::Operator, "unknown operator token", Claimed::Nothing, i);
        }
        assert_eq!(s.admit(a, Door::Operator, 10), Err(Throttled { retry_after_secs: 20 }));
        assert!(s.admit(a, Door::Operator, 20_010).is_ok(), "one more after 20 s");
        let recs = s.drain();
        assert_eq!(recs.len(), 1, "one record for the source's window: {recs:?}");
        let reason = recs[0].reason.as_deref().unwrap();
        assert!(
            reason.starts_with("5 wrong operator token(s) from 192.0.2.7 over 10 ms, and 1 more answered 429 unread: 5× unknown operator token"),
            "{reason}"
        );
        assert_eq!(recs[0].action.as_deref(), Some("operator:authenticate"));
        assert_eq!(recs[0].kind, Some(EventKind::AuthnFailure));
    }

    #[test]
    fn ipv6_sources_are_grouped_by_their_64() {
        assert_eq!(src("2001:db8::1"), src("2001:db8::ffff:1"));
        assert_ne!(src("2001:db8::1"), src("2001:db8:0:1::1"));
        assert_eq!(src("::ffff:192.0.2.7"), src("192.0.2.7"), "a mapped IPv4 address is that address");
        assert_eq!(src("2001:db8::1").to_string(), "2001:db8::/64");
    }

    #[test]
    fn failures_become_one_bounded_record_per_source_and_reason() {
        let mut s = Strangers::new(StrangersConfig::default());
        let long = format!("unknown agent {}\nforged line", "x".repeat(5_000));
        for i in 0..500 {
            s.failed(src("127.0.0.2"), Door::Token, &long, Claimed::Unverified("spiffe://td/agent/x\napproval_decided"), i);
        }
        s.failed(src("127.0.0.3"), Door::Mcp, "missing DPoP proof header", Claimed::Nothing, 7);
        let recs = s.drain();
        assert_eq!(recs.len(), 2);
        let token = recs.iter().find(|r| r.kind == Some(EventKind::TokenDenied)).unwrap();
        let reason = token.reason.as_deref().unwrap();
        assert!(reason.starts_with("500 failed token requests from 127.0.0.2 over 499 ms"), "{reason}");
        assert!(reason.len() < 400 && !reason.contains('\n'), "bounded and escaped: {reason}");
        assert_eq!(token.agent, None, "an unverified claim is no attribution");
        assert!(reason.contains("claiming to be") && reason.contains("unverified"), "{reason}");
        assert!(s.drain().is_empty(), "drained");
    }

    #[test]
    fn spraying_reasons_or_sources_stays_bounded() {
        let mut s = Strangers::new(StrangersConfig { burst: 1e9, per_sec: 0.0, audit_window_secs: 10 });
        for i in 0..(MAX_TALLIES as u32 * 3) {
            let source = Source::of(IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000 + i)));
            s.failed(source, Door::Mcp, &format!("reason {i}"), Claimed::Nothing, 0);
        }
        for i in 0..100 {
            s.failed(src("127.0.0.1"), Door::Mcp, &format!("reason {i}"), Claimed::Nothing, 0);
        }
        let recs = s.drain();
        assert_eq!(recs.len(), MAX_TALLIES + 1, "the overflow tally is the one extra record");
        let many = recs.iter().find(|r| r.reason.as_deref().unwrap().contains("many sources")).unwrap();
        assert!(many.reason.as_deref().unwrap().contains("× other reasons"), "{many:?}");
        assert!(recs.iter().all(|r| r.reason.as_deref().unwrap().len() < 2_500), "bounded");
    }
}

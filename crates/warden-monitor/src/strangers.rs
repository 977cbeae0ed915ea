//! Unauthenticated traffic: per-source throttling and aggregated evidence.
//!
//! A request that fails authentication proves nothing about who sent it, so
//! it must not cost the gateway a durable, signed, fsync'd audit record of
//! its own: strangers would drive disk writes and fill the log with text of
//! their choosing. Failures are tallied per (source, kind, reason) and
//! written as one bounded record per key and window; a source that keeps
//! failing is answered 429 before any signature is checked, until its
//! bucket refills. Pure: the caller passes the time and writes the records.

use std::collections::HashMap;
use std::net::IpAddr;
use warden_core::{AuditEvent, EventKind, untrusted_text};

/// Distinct (source, kind, reason) tallies kept per window; further failures
/// are counted in one overflow tally so a key-spraying flood stays bounded.
const MAX_TALLIES: usize = 1_000;
/// Sources with a bucket; past this, new sources share one bucket (a
/// distributed flood is throttled as one) until full buckets are pruned.
const MAX_SOURCES: usize = 10_000;
/// Longest reason kept in an aggregated record (bytes).
const MAX_REASON: usize = 200;

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
    fn refill(&mut self, cfg: &StrangersConfig, now_ms: i64) {
        let dt = (now_ms - self.at_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + dt * cfg.per_sec).min(cfg.burst);
        self.at_ms = now_ms;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: Option<IpAddr>,
    kind: EventKindKey,
    reason: String,
}

/// `EventKind` is not `Hash`; the two kinds strangers produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EventKindKey {
    Authn,
    Token,
}

#[derive(Debug, Clone, Default)]
struct Tally {
    failed: u64,
    throttled: u64,
    first_ms: i64,
    last_ms: i64,
    /// The agent of a token whose signature verified (a revoked, expired or
    /// misused credential of a known agent).
    agent: Option<String>,
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
    buckets: HashMap<Option<IpAddr>, Bucket>,
    tallies: HashMap<Key, Tally>,
    /// Totals since start, for metrics: failed, throttled.
    pub total_failed: u64,
    pub total_throttled: u64,
}

impl Strangers {
    pub fn new(cfg: StrangersConfig) -> Self {
        Self { cfg, ..Default::default() }
    }

    /// The bucket of `source` (`None`: the shared overflow bucket).
    fn bucket(&mut self, source: IpAddr, now_ms: i64) -> &mut Bucket {
        let full = Bucket { tokens: self.cfg.burst, at_ms: now_ms };
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&Some(source)) {
            let cfg = self.cfg.clone();
            self.buckets.retain(|_, b| {
                b.refill(&cfg, now_ms);
                b.tokens < cfg.burst
            });
        }
        let key = if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&Some(source)) { None } else { Some(source) };
        let cfg = &self.cfg;
        let b = self.buckets.entry(key).or_insert(full);
        b.refill(cfg, now_ms);
        b
    }

    /// Before authenticating a request from `source`: refused when the
    /// source has used up its failures. Costs nothing for a source in good
    /// standing.
    pub fn admit(&mut self, source: IpAddr, token_endpoint: bool, now_ms: i64) -> Result<(), Throttled> {
        if !self.buckets.contains_key(&Some(source)) && self.buckets.len() < MAX_SOURCES {
            return Ok(());
        }
        let per_sec = self.cfg.per_sec;
        let b = self.bucket(source, now_ms);
        if b.tokens >= 1.0 {
            return Ok(());
        }
        let retry_after_secs = if per_sec > 0.0 { ((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64 } else { 3600 };
        self.total_throttled += 1;
        self.tally(source, token_endpoint, "throttled: too many failed authentications from this source", Claimed::Nothing, now_ms).throttled += 1;
        Err(Throttled { retry_after_secs })
    }

    /// A request from `source` failed authentication for `reason`.
    pub fn failed(&mut self, source: IpAddr, token_endpoint: bool, reason: &str, claimed: Claimed<'_>, now_ms: i64) {
        if !matches!(claimed, Claimed::Verified(_)) {
            let b = self.bucket(source, now_ms);
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
        self.total_failed += 1;
        self.tally(source, token_endpoint, reason, claimed, now_ms).failed += 1;
    }

    fn tally(&mut self, source: IpAddr, token_endpoint: bool, reason: &str, claimed: Claimed<'_>, now_ms: i64) -> &mut Tally {
        let kind = if token_endpoint { EventKindKey::Token } else { EventKindKey::Authn };
        let mut key = Key { source: Some(source), kind, reason: untrusted_text(reason, MAX_REASON) };
        if self.tallies.len() >= MAX_TALLIES && !self.tallies.contains_key(&key) {
            key = Key { source: None, kind, reason: "further failures from other sources or for other reasons".into() };
        }
        let t = self.tallies.entry(key).or_insert_with(|| Tally { first_ms: now_ms, ..Default::default() });
        t.last_ms = now_ms;
        match claimed {
            Claimed::Verified(a) if t.agent.is_none() => t.agent = Some(a.to_string()),
            Claimed::Unverified(c) if t.claimed.is_none() => t.claimed = Some(untrusted_text(c, 120)),
            _ => {}
        }
        t
    }

    /// The aggregated records of the window that ends now: one per source,
    /// kind and reason, with counts. Empties the tallies.
    pub fn drain(&mut self) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = self
            .tallies
            .drain()
            .map(|(k, t)| {
                let source = k.source.map(|s| s.to_string()).unwrap_or_else(|| "many sources".into());
                let what = if k.kind == EventKindKey::Token { "token requests" } else { "requests" };
                let throttled = if t.throttled > 0 { format!(", {} answered 429", t.throttled) } else { String::new() };
                let claimed = t.claimed.map(|c| format!(" (claiming to be \"{c}\", unverified)")).unwrap_or_default();
                AuditEvent {
                    kind: Some(if k.kind == EventKindKey::Token { EventKind::TokenDenied } else { EventKind::AuthnFailure }),
                    action: Some(format!("unauthenticated:{source}")),
                    agent: t.agent,
                    decision: "deny".into(),
                    reason: Some(format!(
                        "{} failed {what} from {source} over {} ms{throttled}{claimed}: {}",
                        t.failed + t.throttled,
                        t.last_ms - t.first_ms,
                        k.reason
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_that_keeps_failing_is_throttled_and_others_are_not() {
        let mut s = Strangers::new(StrangersConfig { burst: 3.0, per_sec: 1.0, audit_window_secs: 10 });
        let bad = ip("127.0.0.2");
        for _ in 0..3 {
            assert!(s.admit(bad, false, 0).is_ok());
            s.failed(bad, false, "invalid_token: bad signature", Claimed::Nothing, 0);
        }
        assert_eq!(s.admit(bad, false, 0), Err(Throttled { retry_after_secs: 1 }));
        assert!(s.admit(ip("127.0.0.1"), false, 0).is_ok(), "another source is unaffected");
        assert!(s.admit(bad, false, 1_000).is_ok(), "the bucket refills");
        let shared = ip("127.0.0.4");
        for _ in 0..100 {
            s.failed(shared, false, "invalid_token: agent is suspended", Claimed::Verified("spiffe://td/agent/x"), 0);
        }
        assert!(s.admit(shared, false, 0).is_ok(), "a known agent's dead token does not throttle its address");
    }

    #[test]
    fn failures_become_one_bounded_record_per_source_and_reason() {
        let mut s = Strangers::new(StrangersConfig::default());
        let long = format!("unknown agent {}\nforged line", "x".repeat(5_000));
        for i in 0..500 {
            s.failed(ip("127.0.0.2"), true, &long, Claimed::Unverified("spiffe://td/agent/x\napproval_decided"), i);
        }
        s.failed(ip("127.0.0.3"), false, "missing DPoP proof header", Claimed::Nothing, 7);
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
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000 + i));
            s.failed(source, false, &format!("reason {i}"), Claimed::Nothing, 0);
        }
        let recs = s.drain();
        assert_eq!(recs.len(), MAX_TALLIES + 1, "the overflow tally is the one extra record");
        assert!(recs.iter().any(|r| r.reason.as_deref().unwrap().contains("many sources")));
    }
}

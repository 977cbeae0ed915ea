//! Values split to slip past a per-string scan: a secret or a card cut
//! across two string arguments of one call ([`Inspector::scan_joined`],
//! [`Inspector::scan_arguments`]), or across two calls to tools that can
//! send data out ([`ExfilWindow`], a bounded per-session tail of what went
//! out). Only PII and secrets are looked for across the cut: those are the
//! values an exfiltration splits; injection is scored text by text.
//!
//! Pure: the caller keeps the window (one per session) and says when a call
//! went out.

use crate::{Detector, Finding, Inspector, JsonFinding, JsonScan, TextScan};
use serde_json::Value;

/// Bytes of a session's outgoing text an [`ExfilWindow`] keeps by default:
/// longer than any value the detectors look for.
pub const EXFIL_WINDOW_BYTES: usize = 4096;

impl Inspector {
    /// The PII and secrets that only the concatenation of `parts` shows:
    /// each crosses a cut between two parts. Parts are joined as they are
    /// and also in reverse order (a caller may put the halves in either
    /// order); spans are into the concatenation in the order given, or, for
    /// what the reversed order shows, cover all of it.
    pub fn scan_joined(&self, parts: &[&str]) -> TextScan {
        let mut out = TextScan::default();
        if parts.len() < 2 {
            return out;
        }
        let forward = crossing(self, parts.iter().copied());
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let backward = crossing(self, parts.iter().rev().copied());
        out.findings = forward;
        for f in backward {
            if !out.findings.iter().any(|g| g.detector == f.detector && g.kind == f.kind) {
                out.findings.push(Finding { start: 0, end: total, ..f });
            }
        }
        out
    }

    /// [`Inspector::scan_json`] of a call's arguments, plus what their
    /// strings show only joined (path: the first and last joined string's
    /// pointers, `FIRST+…+LAST`; at most [`MAX_JOINED_FINDINGS`] of them).
    /// This is the argument inspection for a tool call.
    pub fn scan_arguments(&self, args: &Value) -> JsonScan {
        let mut scan = self.scan_json(args);
        let strings = strings(args);
        let parts: Vec<&str> = strings.iter().map(|(_, s)| *s).collect();
        let joined = self.scan_joined(&parts);
        if !joined.findings.is_empty() {
            let (first, last) = (strings.first().map_or("", |(p, _)| p.as_str()), strings.last().map_or("", |(p, _)| p.as_str()));
            let path = format!("{first}+…+{last}");
            scan.merge(joined.findings.into_iter().take(MAX_JOINED_FINDINGS).map(|finding| JsonFinding { path: path.clone(), finding }));
        }
        scan
    }
}

/// Joined findings kept per scan: one is enough for policy to refuse, and
/// a call built to produce many must not cost memory in proportion.
pub const MAX_JOINED_FINDINGS: usize = 16;

/// Findings of the concatenation that cross a cut.
fn crossing<'a>(ins: &Inspector, parts: impl Iterator<Item = &'a str>) -> Vec<Finding> {
    let mut text = String::new();
    let mut spans = Vec::new();
    for p in parts {
        spans.push((text.len(), p));
        text.push_str(p);
    }
    let cuts: Vec<usize> = spans.iter().skip(1).map(|(at, _)| *at).collect();
    let crossing: Vec<Finding> = ins
        .scan_text(&text)
        .findings
        .into_iter()
        .filter(|f| matches!(f.detector, Detector::Pii | Detector::Secret) && f.kind != crate::EXAMPLE)
        // The cuts are in order: the first after the finding's start.
        .filter(|f| cuts.get(cuts.partition_point(|c| *c <= f.start)).is_some_and(|c| *c < f.end))
        .take(MAX_JOINED_FINDINGS)
        .collect();
    if crossing.is_empty() {
        return crossing;
    }
    // A value whole in one part, which the join only extended (an address
    // followed by the next part's first word), is that part's finding, not
    // a split one.
    let alone: Vec<(usize, usize, &str)> =
        spans.iter().flat_map(|(at, p)| ins.scan_text(p).findings.into_iter().map(move |f| (at + f.start, at + f.end, f.kind))).collect();
    crossing.into_iter().filter(|f| !alone.iter().any(|(s, e, k)| *k == f.kind && *s < f.end && f.start < *e)).collect()
}

/// Every string in a JSON value with its pointer, in document order.
fn strings(v: &Value) -> Vec<(String, &str)> {
    fn walk<'a>(v: &'a Value, path: &mut String, out: &mut Vec<(String, &'a str)>) {
        match v {
            Value::String(s) => out.push((path.clone(), s)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut String::new(), &mut out);
    out
}

/// The strings a session recently sent through tools that can send data
/// out (the newest last, [`EXFIL_WINDOW_BYTES`] in all), so that a value
/// split across two such calls is found when the second is made: each new
/// string is joined with each recent one, in both orders (a caller may send
/// either half first, in any argument).
#[derive(Debug, Clone)]
pub struct ExfilWindow {
    recent: std::collections::VecDeque<String>,
    bytes: usize,
    cap: usize,
}

impl Default for ExfilWindow {
    fn default() -> Self {
        Self::new(EXFIL_WINDOW_BYTES)
    }
}

/// Bytes of each side of a join that are scanned: a split value's halves
/// meet at the cut, and no secret or card is longer than this.
const JOIN_REACH: usize = 256;
/// Recent strings each new one is joined with, newest first.
const JOINED_RECENT: usize = 32;
/// Bytes joined and scanned per check at most, and joins at most (a call
/// with very many strings is checked against the newest until either is
/// spent).
const JOIN_BUDGET: usize = 64 << 10;
const MAX_JOIN_SCANS: usize = 512;

/// A character a split value can run through at the cut (a card's groups
/// are separated by spaces).
fn runs_through(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | '/' | '=' | '.' | '@' | ' ')
}

impl ExfilWindow {
    /// A window keeping about the last `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self { recent: Default::default(), bytes: 0, cap }
    }

    /// What the arguments of a new outgoing call show joined with what went
    /// out before: PII and secrets that cross from an earlier string into
    /// one of this call's (path `(earlier calls)+POINTER`).
    pub fn check(&self, ins: &Inspector, args: &Value) -> Vec<JsonFinding> {
        let mut out: Vec<JsonFinding> = Vec::new();
        let (mut budget, mut scans) = (JOIN_BUDGET, 0);
        for (path, new) in strings(args) {
            for old in self.recent.iter().rev().take(JOINED_RECENT) {
                // Only where the cut falls between two characters a value
                // runs through (a key, a card's digits, an address): prose
                // ends and starts elsewhere, and the scans stay few.
                let pairs = [(old.as_str(), new), (new, old.as_str())];
                let joins = pairs.into_iter().filter(|(a, b)| a.chars().next_back().is_some_and(runs_through) && b.chars().next().is_some_and(runs_through));
                let mut found = Vec::new();
                for (a, b) in joins {
                    let (end, start) = (suffix(a, JOIN_REACH), prefix(b, JOIN_REACH));
                    if budget < end.len() + start.len() || scans == MAX_JOIN_SCANS {
                        break;
                    }
                    (budget, scans) = (budget - end.len() - start.len(), scans + 1);
                    found.extend(crossing(ins, [end, start].into_iter()));
                }
                for f in found {
                    if !out.iter().any(|g| g.finding.kind == f.kind && g.path.ends_with(&path)) {
                        out.push(JsonFinding { path: format!("(earlier calls)+{path}"), finding: Finding { start: 0, end: new.len(), ..f } });
                    }
                }
            }
        }
        out
    }

    /// Keep the strings of a call that went out as the newest.
    pub fn record(&mut self, args: &Value) {
        for (_, s) in strings(args) {
            self.bytes += s.len();
            self.recent.push_back(s.to_string());
        }
        while self.bytes > self.cap
            && let Some(old) = self.recent.pop_front()
        {
            self.bytes -= old.len();
        }
    }
}

/// The last (at most) `n` bytes of `s`, on a character boundary.
fn suffix(s: &str, n: usize) -> &str {
    let mut cut = s.len().saturating_sub(n);
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}

/// The first (at most) `n` bytes of `s`, on a character boundary.
fn prefix(s: &str, n: usize) -> &str {
    let mut cut = n.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "ghp_Z3MNQ7RXW4PVBC5DKp4Qx7Rm2Sn5Tb8Vw3Yz";

    #[test]
    fn values_split_across_arguments_are_found() {
        let ins = Inspector::default();
        let (a, b) = KEY.split_at(17);
        for args in [json!({ "a": a, "b": b }), json!({ "a": b, "b": a }), json!({ "x": ["4111 1111", " 1111 1111"] })] {
            let scan = ins.scan_arguments(&args);
            assert!(scan.summary.secret_count + scan.summary.pii_count > 0, "{args}: {scan:?}");
            assert!(scan.findings.iter().any(|f| f.path.contains('+')), "{scan:?}");
        }
        let clean = ins.scan_arguments(&json!({ "to": "bob", "subject": "lunch at noon", "body": "see you there" }));
        assert!(clean.summary.is_empty(), "{clean:?}");
        let whole = ins.scan_arguments(&json!({ "token": KEY }));
        assert_eq!(whole.findings.len(), 1, "a value in one string is not found twice: {whole:?}");
    }

    #[test]
    fn values_split_across_calls_are_found_within_the_window() {
        let ins = Inspector::default();
        let (a, b) = KEY.split_at(20);
        let mut w = ExfilWindow::new(64);
        assert!(w.check(&ins, &json!({ "body": a })).is_empty(), "nothing went out yet");
        w.record(&json!({ "body": a }));
        let found = w.check(&ins, &json!({ "body": b }));
        assert_eq!(found.iter().map(|f| f.finding.kind).collect::<Vec<_>>(), ["github_token"], "{found:?}");
        assert_eq!(found[0].path, "(earlier calls)+/body");
        // Among other strings of the call, and the halves the other way round.
        let mut w = ExfilWindow::new(4096);
        w.record(&json!({ "to": "ops@example.com", "subject": "notes", "body": b }));
        let found = w.check(&ins, &json!({ "subject": "more", "body": a }));
        assert_eq!(found.iter().map(|f| f.finding.kind).collect::<Vec<_>>(), ["github_token"], "{found:?}");
        // A card in groups, split at a space.
        let mut w = ExfilWindow::new(4096);
        w.record(&json!({ "body": "4111 1111" }));
        let found = w.check(&ins, &json!({ "body": " 1111 1111" }));
        assert!(found.iter().any(|f| f.finding.kind == "credit_card"), "{found:?}");
        // Many strings cost no more than the budget.
        let mut w = ExfilWindow::new(4096);
        w.record(&json!((0..64).map(|i| format!("recent value {i}")).collect::<Vec<_>>()));
        let many: Vec<String> = (0..10_000).map(|i| format!("string {i}")).collect();
        assert!(w.check(&ins, &json!(many)).is_empty());
        let mut w = ExfilWindow::new(64);
        w.record(&json!({ "body": a }));
        w.record(&json!({ "body": "x".repeat(100) }));
        assert!(w.check(&ins, &json!({ "body": b })).is_empty(), "the first half left the window");
        assert!(w.bytes <= 64);
    }
}

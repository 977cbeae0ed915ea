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
    /// strings show only joined (path: the joined strings' pointers with
    /// `+`). This is the argument inspection for a tool call.
    pub fn scan_arguments(&self, args: &Value) -> JsonScan {
        let mut scan = self.scan_json(args);
        let strings = strings(args);
        let parts: Vec<&str> = strings.iter().map(|(_, s)| *s).collect();
        let joined = self.scan_joined(&parts);
        if !joined.findings.is_empty() {
            let path = strings.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join("+");
            scan.merge(joined.findings.into_iter().map(|finding| JsonFinding { path: path.clone(), finding }));
        }
        scan
    }
}

/// Findings of the concatenation that cross a cut.
fn crossing<'a>(ins: &Inspector, parts: impl Iterator<Item = &'a str>) -> Vec<Finding> {
    let mut text = String::new();
    let mut cuts = Vec::new();
    for p in parts {
        if !text.is_empty() {
            cuts.push(text.len());
        }
        text.push_str(p);
    }
    let scan = ins.scan_text(&text);
    scan.findings
        .into_iter()
        .filter(|f| matches!(f.detector, Detector::Pii | Detector::Secret) && f.kind != crate::EXAMPLE)
        .filter(|f| cuts.iter().any(|c| f.start < *c && *c < f.end))
        .collect()
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

/// The last bytes a session sent through tools that can send data out, so
/// a value split across two such calls is found when the second is made.
#[derive(Debug, Clone)]
pub struct ExfilWindow {
    tail: String,
    cap: usize,
}

impl Default for ExfilWindow {
    fn default() -> Self {
        Self::new(EXFIL_WINDOW_BYTES)
    }
}

impl ExfilWindow {
    /// A window keeping the last `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self { tail: String::new(), cap }
    }

    /// What the arguments of a new outgoing call show joined after the
    /// window's tail: PII and secrets that start in what went out before
    /// and end in this call (path `(earlier calls)+…`).
    pub fn check(&self, ins: &Inspector, args: &Value) -> Vec<JsonFinding> {
        if self.tail.is_empty() {
            return Vec::new();
        }
        let strings = strings(args);
        let text: String = strings.iter().map(|(_, s)| *s).collect();
        let path = std::iter::once("(earlier calls)").chain(strings.iter().map(|(p, _)| p.as_str())).collect::<Vec<_>>().join("+");
        let n = self.tail.len();
        crossing(ins, [self.tail.as_str(), text.as_str()].into_iter())
            .into_iter()
            .map(|f| JsonFinding { path: path.clone(), finding: Finding { start: f.start.saturating_sub(n), end: f.end - n, ..f } })
            .collect()
    }

    /// Keep the strings of a call that went out as the latest of the tail.
    pub fn record(&mut self, args: &Value) {
        for (_, s) in strings(args) {
            self.tail.push_str(s);
        }
        if self.tail.len() > self.cap {
            let mut cut = self.tail.len() - self.cap;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
        }
    }
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
        w.record(&json!({ "body": "x".repeat(100) }));
        assert!(w.check(&ins, &json!({ "body": b })).is_empty(), "the first half left the window");
        assert!(w.tail.len() <= 64);
    }
}

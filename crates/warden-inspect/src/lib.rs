//! Content inspection for the enforcement point: PII with validators,
//! secrets (provider formats, key blocks, JWTs, connection strings, keyword
//! assignments with entropy), prompt injection (override phrasing, role
//! spoofing, hidden Unicode, encoded payloads, exfiltration links, tool-call
//! smuggling) and tool-definition poisoning; plus redaction inside JSON values.
//!
//! Pure and IO-free. Every scanner is a linear pass over the bytes (one
//! Aho-Corasick automaton for all keywords and prefixes, and hand-written
//! loops for numbers, e-mail addresses and encoded runs) with bounded local
//! look-around, so adversarial input cannot cause super-linear work.

mod anchors;
pub mod eval;
mod injection;
mod joined;
mod json;
mod model;
mod normalize;
mod pii;
mod poison;
mod redact;
mod secrets;
mod text;

pub use joined::{EXFIL_WINDOW_BYTES, ExfilWindow};
pub use json::{JsonFinding, JsonScan};
pub use poison::{DefinitionScan, ToolDefinition};
pub use redact::{Method, Redactor, Rule};
pub use secrets::EXAMPLE;
pub use warden_core::Findings;

use anchors::Anchors;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The detector family a finding belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    Pii,
    Secret,
    Injection,
    Poisoning,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pii => "pii",
            Self::Secret => "secrets",
            Self::Injection => "injection",
            Self::Poisoning => "poisoning",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pii" => Self::Pii,
            "secret" | "secrets" => Self::Secret,
            "injection" => Self::Injection,
            "poisoning" => Self::Poisoning,
            _ => return None,
        })
    }
}

/// One thing found in a text: what, where (byte offsets into the scanned
/// text) and how sure the detector is (0..1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub detector: Detector,
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
}

/// Findings of one text, and the injection score they add up to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TextScan {
    pub findings: Vec<Finding>,
    /// 0..1: the strongest injection signal of each kind, weighed by the
    /// fitted combination (see the `injection` module), or the rules' own
    /// score where the word model is off.
    pub injection_score: f32,
}

impl TextScan {
    pub fn of(&self, d: Detector) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.detector == d)
    }

    /// Whether the text counts as an injection attempt (score ≥ 0.5).
    pub fn is_injection(&self) -> bool {
        self.injection_score >= INJECTION_THRESHOLD
    }
}

/// The score from which a text counts as injection in evaluation and in the
/// `injection_score` threshold suggested to policies (50).
pub const INJECTION_THRESHOLD: f32 = 0.5;

/// What the operator can tune.
#[derive(Debug, Clone)]
pub struct InspectConfig {
    /// Exact values never reported as secrets (documentation examples,
    /// known test keys).
    pub secret_allowlist: HashSet<String>,
    /// How deep encoded payloads (base64, hex, URL-encoding, Unicode tags)
    /// are decoded and rescanned.
    pub max_decode_depth: u8,
    /// Texts longer than this are scanned in windows of this size that
    /// overlap by [`WINDOW_OVERLAP`], so memory stays bounded.
    pub window_bytes: usize,
    /// Whether the injection score is the fitted combination of the rules'
    /// signals and the statistical word model (for data: tool results,
    /// resources, notifications). Off, it is the rules' own score, for
    /// texts in which the word model would find just what they are:
    /// instructions or requests written for a model or a recipient (an MCP
    /// prompt's messages, a server's sampling request, the arguments an
    /// agent writes).
    pub word_model: bool,
}

impl Default for InspectConfig {
    fn default() -> Self {
        Self { secret_allowlist: HashSet::new(), max_decode_depth: 2, window_bytes: 1 << 20, word_model: true }
    }
}

/// Overlap between scan windows: longer than any single pattern the
/// scanners look for, so nothing is missed at a window edge.
pub const WINDOW_OVERLAP: usize = 4096;

/// The scanners, built once (the keyword automaton) and shared.
pub struct Inspector {
    anchors: Arc<Anchors>,
    config: InspectConfig,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inspector({} anchors)", self.anchors.len())
    }
}

impl Default for Inspector {
    fn default() -> Self {
        Self::new(InspectConfig::default())
    }
}

impl Inspector {
    pub fn new(config: InspectConfig) -> Self {
        Self { anchors: Arc::new(Anchors::build()), config }
    }

    /// The same scanners, judging injection by the rules alone (see
    /// [`InspectConfig::word_model`]).
    pub fn rules_only(&self) -> Self {
        Self { anchors: Arc::clone(&self.anchors), config: InspectConfig { word_model: false, ..self.config.clone() } }
    }

    pub fn config(&self) -> &InspectConfig {
        &self.config
    }

    /// Scan one text with every detector. The word model runs only where a
    /// rule signalled injection: it weighs the rules' evidence and never
    /// flags alone (see [`model`]), so a text no rule finds anything in is
    /// not worth its pass.
    pub fn scan_text(&self, text: &str) -> TextScan {
        let mut findings = self.scan_rules(text);
        if self.config.word_model && injection::rules_signalled_in(&findings) {
            findings.extend(self.model_findings(text));
            findings.sort_by_key(|f| (f.start, f.end));
        }
        let injection_score = injection::score(&findings, self.config.word_model);
        TextScan { findings, injection_score }
    }

    /// The rules' findings in `text`, window by window, sorted.
    pub(crate) fn scan_rules(&self, text: &str) -> Vec<Finding> {
        self.windows(text, |window| {
            let mut t = text::Scanner::new(self, window, 0);
            t.run();
            t.finish()
        })
    }

    /// The word model's finding in each window of `text`.
    pub(crate) fn model_findings(&self, text: &str) -> Vec<Finding> {
        self.windows(text, |window| model::model().finding(window).into_iter().collect())
    }

    /// Run `scan` over `text`, in windows of [`InspectConfig::window_bytes`]
    /// that overlap by [`WINDOW_OVERLAP`] when it is longer: each window
    /// owns the findings that start before the next window begins (the last
    /// owns the rest). The findings in text order, each once.
    fn windows(&self, text: &str, scan: impl Fn(&str) -> Vec<Finding>) -> Vec<Finding> {
        let w = self.config.window_bytes.max(2 * WINDOW_OVERLAP);
        if text.len() <= w {
            return scan(text);
        }
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let mut end = (start + w).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let last = end == text.len();
            let mut next = end - WINDOW_OVERLAP;
            while !text.is_char_boundary(next) {
                next -= 1;
            }
            for mut f in scan(&text[start..end]) {
                if last || start + f.start < next {
                    f.start += start;
                    f.end += start;
                    out.push(f);
                }
            }
            if last {
                break;
            }
            start = next;
        }
        out.sort_by_key(|f| (f.start, f.end));
        out.dedup_by(|a, b| a.start == b.start && a.end == b.end && a.kind == b.kind);
        out
    }

    /// The strongest confidence of each kind of rule signal for injection in
    /// `text` (the word model's left out): what the combination is fitted on.
    pub fn rule_signals(&self, text: &str) -> BTreeMap<&'static str, f32> {
        let mut out = BTreeMap::new();
        for f in self.scan_rules(text).into_iter().filter(|f| f.detector == Detector::Injection) {
            let w = out.entry(f.kind).or_insert(0.0f32);
            *w = w.max(f.confidence);
        }
        out
    }

    /// A view of a text (decoded, normalised, reversed) rescanned whole,
    /// `depth` decodings deep.
    pub(crate) fn scan_window(&self, text: &str, depth: u8) -> TextScan {
        let mut t = text::Scanner::new(self, text, depth);
        t.run();
        let mut findings = t.finish();
        if self.config.word_model
            && injection::rules_signalled_in(&findings)
            && let Some(f) = model::model().finding(text)
        {
            let at = findings.partition_point(|g| (g.start, g.end) <= (f.start, f.end));
            findings.insert(at, f);
        }
        let injection_score = injection::score(&findings, self.config.word_model);
        TextScan { findings, injection_score }
    }
}

/// The word model's probability for `text` (its best window), which the
/// injection score weighs with the rules' signals; for the benchmark.
#[doc(hidden)]
pub fn word_model_probability(text: &str) -> f32 {
    model::model().best(text).map_or(0.0, |(_, _, p)| p)
}

/// One input through every entry point, checking the invariants the gateway
/// relies on; shared by the cargo-fuzz target (`fuzz/`) and the property
/// tests so both exercise the same thing.
#[doc(hidden)]
pub mod fuzz {
    use crate::{ExfilWindow, Inspector, Redactor, Rule};

    pub fn exercise(ins: &Inspector, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        // The normalised views are inside every scan; the joins of split
        // values are reached here, with the input cut in two.
        let mut cut = text.len() / 2;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let (a, b) = text.split_at(cut);
        for f in ins.scan_joined(&[a, b]).findings {
            assert!(f.start <= f.end && f.end <= text.len(), "joined span out of bounds: {f:?}");
        }
        let mut window = ExfilWindow::new(256);
        window.record(&serde_json::json!({ "a": a }));
        for f in window.check(ins, &serde_json::json!({ "b": b })) {
            assert!(f.finding.start <= f.finding.end && f.finding.end <= b.len(), "window span out of bounds: {f:?}");
        }
        let scan = ins.scan_text(&text);
        assert!((0.0..=1.0).contains(&scan.injection_score), "score out of range");
        for f in &scan.findings {
            assert!(f.start <= f.end && f.end <= text.len(), "span out of bounds: {f:?}");
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end), "span splits a character: {f:?}");
        }
        let mut v = serde_json::json!({ "text": text.as_ref(), "nested": [text.as_ref()] });
        let before = ins.scan_json(&v);
        assert!((0..=100).contains(&before.summary.injection_score));
        let rules = Rule::parse_list("pii:mask, secrets:hash").expect("static rules");
        Redactor::new([1; 32]).redact_json(ins, &mut v, &rules);
        assert!(serde_json::to_string(&v).is_ok());
        if let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(data) {
            let _ = ins.scan_json(&parsed);
            let _ = ins.scan_tool_definition(&parsed, "fuzz", &[]);
        }
    }
}

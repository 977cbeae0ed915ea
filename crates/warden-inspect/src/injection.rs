//! Prompt-injection signals in tool arguments and results (indirect
//! injection): instruction-override phrasing, role/system spoofing, text
//! addressed to the model, concealment from the user, task hijacking,
//! imperative commands aimed at an exfiltration target, tool-call smuggling
//! and markdown/HTML links that carry data out in their URL. Hidden Unicode
//! and encoded payloads are found by the text scanner and reported here.
//!
//! Each signal has a kind and a weight; a text's score combines the
//! strongest signal of each kind as 1 - Π(1 - w), so one weak cue never
//! flags a text but independent cues add up.

use crate::{Detector, Finding};

/// What a lexicon entry means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Lex {
    /// ignore / disregard / forget …
    Ignore,
    /// previous / above / prior …
    Prior,
    /// instructions / rules / prompt … (matches inside misspellings too)
    Instructions,
    /// A signal on its own: kind and weight.
    Signal(&'static str, f32),
    /// `system:` and friends, only at the start of a line.
    LineRole(f32),
    /// A verb that starts a command.
    Action,
}

/// Whether a lexicon entry needs word boundaries around its match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    Word,
    /// No boundary at all (markup, and `…nstruction` inside misspellings).
    Free,
}

use Bound::*;
use Lex::*;

const ROLE: &str = "role_spoofing";
const ADDRESS: &str = "addressed_to_model";
const CONCEAL: &str = "conceal_from_user";
const HIJACK: &str = "task_hijack";
const SMUGGLE: &str = "tool_smuggling";

pub(crate) static LEXICON: &[(&str, Lex, Bound)] = &[
    ("ignore", Ignore, Word),
    ("disregard", Ignore, Word),
    ("forget", Ignore, Word),
    ("override", Ignore, Word),
    ("bypass", Ignore, Word),
    ("pay no attention to", Ignore, Word),
    ("do not follow", Ignore, Word),
    ("don't follow", Ignore, Word),
    ("stop following", Ignore, Word),
    ("previous", Prior, Word),
    ("prior", Prior, Word),
    ("above", Prior, Word),
    ("earlier", Prior, Word),
    ("preceding", Prior, Word),
    ("original", Prior, Word),
    ("initial", Prior, Word),
    ("foregoing", Prior, Word),
    ("nstruction", Instructions, Free),
    ("directives", Instructions, Word),
    ("guidelines", Instructions, Word),
    ("rules", Instructions, Word),
    ("prompt", Instructions, Word),
    ("prompts", Instructions, Word),
    ("system prompt", Signal(ROLE, 0.5), Word),
    ("<|im_start|>", Signal(ROLE, 0.8), Free),
    ("<|im_end|>", Signal(ROLE, 0.8), Free),
    ("<|system|>", Signal(ROLE, 0.8), Free),
    ("<|assistant|>", Signal(ROLE, 0.8), Free),
    ("<|user|>", Signal(ROLE, 0.7), Free),
    ("<|endoftext|>", Signal(ROLE, 0.8), Free),
    ("[inst]", Signal(ROLE, 0.75), Free),
    ("[/inst]", Signal(ROLE, 0.75), Free),
    ("<<sys>>", Signal(ROLE, 0.8), Free),
    ("system_message", Signal(ROLE, 0.75), Free),
    ("(system)", Signal(ROLE, 0.6), Free),
    ("[system]", Signal(ROLE, 0.6), Free),
    ("<system>", Signal(ROLE, 0.7), Free),
    ("</system>", Signal(ROLE, 0.7), Free),
    ("### system", Signal(ROLE, 0.7), Free),
    ("### instruction", Signal(ROLE, 0.6), Free),
    ("system override", Signal(ROLE, 0.8), Word),
    ("admin override", Signal(ROLE, 0.7), Word),
    ("developer mode", Signal(ROLE, 0.6), Word),
    ("system:", LineRole(0.6), Free),
    ("assistant:", LineRole(0.45), Free),
    ("ai assistant", Signal(ADDRESS, 0.45), Word),
    ("ai agent", Signal(ADDRESS, 0.45), Word),
    ("language model", Signal(ADDRESS, 0.45), Word),
    ("dear assistant", Signal(ADDRESS, 0.5), Word),
    ("dear ai", Signal(ADDRESS, 0.5), Word),
    ("note to the ai", Signal(ADDRESS, 0.55), Word),
    ("attention ai", Signal(ADDRESS, 0.55), Word),
    ("to you, ", Signal(ADDRESS, 0.35), Free),
    ("you are now", Signal(ADDRESS, 0.5), Word),
    ("from now on", Signal(ADDRESS, 0.35), Word),
    ("new instructions", Signal(HIJACK, 0.6), Word),
    ("updated instructions", Signal(HIJACK, 0.6), Word),
    ("following instruction", Signal(HIJACK, 0.4), Word),
    ("act as", Signal(ADDRESS, 0.25), Word),
    ("pretend to be", Signal(ADDRESS, 0.4), Word),
    ("jailbreak", Signal(ROLE, 0.5), Word),
    ("do not tell the user", Signal(CONCEAL, 0.6), Word),
    ("don't tell the user", Signal(CONCEAL, 0.6), Word),
    ("do not inform the user", Signal(CONCEAL, 0.6), Word),
    ("without telling", Signal(CONCEAL, 0.45), Word),
    ("without informing", Signal(CONCEAL, 0.45), Word),
    ("without asking", Signal(CONCEAL, 0.3), Word),
    ("do not mention", Signal(CONCEAL, 0.35), Word),
    ("don't mention", Signal(CONCEAL, 0.35), Word),
    ("do not reveal", Signal(CONCEAL, 0.35), Word),
    ("the user must not", Signal(CONCEAL, 0.5), Word),
    ("keep this secret", Signal(CONCEAL, 0.4), Word),
    ("<information>", Signal(HIJACK, 0.6), Free),
    ("</information>", Signal(HIJACK, 0.6), Free),
    ("<important>", Signal(HIJACK, 0.6), Free),
    ("</important>", Signal(HIJACK, 0.6), Free),
    ("<instructions>", Signal(HIJACK, 0.6), Free),
    ("important!!!", Signal(HIJACK, 0.55), Free),
    ("important message", Signal(HIJACK, 0.45), Word),
    ("before you can solve", Signal(HIJACK, 0.6), Word),
    ("before you solve", Signal(HIJACK, 0.6), Word),
    ("before solving", Signal(HIJACK, 0.5), Word),
    ("after you do that", Signal(HIJACK, 0.5), Word),
    ("the task that i gave you", Signal(HIJACK, 0.6), Word),
    ("the task i gave you", Signal(HIJACK, 0.6), Word),
    ("your task is", Signal(HIJACK, 0.4), Word),
    ("your new task", Signal(HIJACK, 0.6), Word),
    ("please do the following", Signal(HIJACK, 0.4), Word),
    ("do the following first", Signal(HIJACK, 0.5), Word),
    ("instead", Signal("instead", 0.15), Word),
    ("todo:", Signal("todo", 0.35), Free),
    ("tools/call", Signal(SMUGGLE, 0.6), Free),
    ("<tool_call>", Signal(SMUGGLE, 0.7), Free),
    ("<function_call", Signal(SMUGGLE, 0.7), Free),
    ("<function_calls>", Signal(SMUGGLE, 0.7), Free),
    ("\"function_call\"", Signal(SMUGGLE, 0.6), Free),
    ("\"tool_calls\"", Signal(SMUGGLE, 0.6), Free),
    ("<invoke", Signal(SMUGGLE, 0.6), Free),
    ("use the tool", Signal(SMUGGLE, 0.35), Word),
    ("call the tool", Signal(SMUGGLE, 0.45), Word),
    ("invoke the tool", Signal(SMUGGLE, 0.45), Word),
    ("call the function", Signal(SMUGGLE, 0.4), Word),
    ("send", Action, Word),
    ("email", Action, Word),
    ("forward", Action, Word),
    ("transfer", Action, Word),
    ("pay", Action, Word),
    ("delete", Action, Word),
    ("invite", Action, Word),
    ("share", Action, Word),
    ("upload", Action, Word),
    ("post", Action, Word),
    ("create", Action, Word),
    ("modify", Action, Word),
    ("change", Action, Word),
    ("update", Action, Word),
    ("visit", Action, Word),
    ("click", Action, Word),
    ("download", Action, Word),
    ("execute", Action, Word),
    ("run", Action, Word),
    ("make", Action, Word),
    ("get", Action, Word),
    ("say", Action, Word),
    ("tell", Action, Word),
    ("concatenate", Action, Word),
    ("grant", Action, Word),
    ("remove", Action, Word),
];

/// A lexicon match, in text order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub start: usize,
    pub end: usize,
    pub lex: Lex,
}

fn signal(kind: &'static str, start: usize, end: usize, w: f32) -> Finding {
    Finding { detector: Detector::Injection, kind, start, end, confidence: w }
}

/// Bytes within which an ignore-verb and its object must appear.
const OVERRIDE_SPAN: usize = 60;

/// Turn lexicon events into signals.
pub(crate) fn evaluate(b: &[u8], events: &[Event], out: &mut Vec<Finding>) {
    for (i, ev) in events.iter().enumerate() {
        match ev.lex {
            Ignore => {
                let near = events[i + 1..].iter().take_while(|e| e.start < ev.end + OVERRIDE_SPAN);
                let (mut prior, mut instr) = (None, None);
                for e in near {
                    match e.lex {
                        Prior => prior = prior.or(Some(e.end)),
                        // "the system prompt", "new instructions" name instructions too
                        Instructions | Signal(ROLE | HIJACK, _) => instr = instr.or(Some(e.end)),
                        _ => {}
                    }
                }
                match (prior, instr) {
                    (_, Some(e)) => out.push(signal("instruction_override", ev.start, e, if prior.is_some() { 0.9 } else { 0.7 })),
                    (Some(e), None) => out.push(signal("instruction_override", ev.start, e, 0.45)),
                    _ => {}
                }
            }
            Signal(kind, w) => out.push(signal(kind, ev.start, ev.end, w)),
            LineRole(w) => {
                let mut k = ev.start;
                while k > 0 && matches!(b[k - 1], b' ' | b'\t' | b'#' | b'*' | b'>' | b'-') {
                    k -= 1;
                }
                let line_start = k == 0 || b[k - 1] == b'\n' || escaped_newline(b, k);
                if line_start {
                    out.push(signal(ROLE, ev.start, ev.end, w));
                }
            }
            Action if clause_start(b, ev.start) => {
                let w = if has_target(b, ev.end) { 0.35 } else { 0.25 };
                out.push(signal("imperative", ev.start, ev.end, w));
            }
            Action | Prior | Instructions => {}
        }
    }
}

/// The verb opens a sentence, a line, a quoted or labelled command, or
/// follows "please".
fn clause_start(b: &[u8], s: usize) -> bool {
    let mut i = s;
    while i > 0 && matches!(b[i - 1], b' ' | b'\t') {
        i -= 1;
    }
    if i == 0 || escaped_newline(b, i) {
        return true;
    }
    if matches!(b[i - 1], b'.' | b'!' | b'?' | b':' | b'\n' | b'"' | b'\'' | b'(' | b'-' | b'*' | b'>' | b'\r') {
        return true;
    }
    i >= 6 && b[i - 6..i].eq_ignore_ascii_case(b"please")
}

/// `\n` or `\r` written as an escape just before `i`.
fn escaped_newline(b: &[u8], i: usize) -> bool {
    i >= 2 && b[i - 2] == b'\\' && matches!(b[i - 1], b'n' | b'r')
}

/// An exfiltration target in the rest of the sentence: an e-mail address,
/// a URL, or an account number (two capitals and digits).
fn has_target(b: &[u8], from: usize) -> bool {
    let end = (from + 200).min(b.len());
    let s = &b[from..end];
    let stop = s.iter().position(|c| *c == b'\n').unwrap_or(s.len());
    let s = &s[..stop];
    s.contains(&b'@')
        || memchr::memmem::find(s, b"http").is_some()
        || memchr::memmem::find(s, b"www.").is_some()
        || s.windows(4).any(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_uppercase() && w[2].is_ascii_digit() && w[3].is_ascii_digit())
}

/// A markdown link or image, or an HTML `src=`, whose URL carries data
/// (a long query value, a long opaque path segment, or a template).
pub(crate) fn exfil_link(b: &[u8], at: usize, html: bool) -> Option<Finding> {
    let mut u = at + if html { 4 } else { 2 };
    if html && matches!(b.get(u), Some(b'"' | b'\'')) {
        u += 1;
    }
    let rest = &b[u..(u + 2048).min(b.len())];
    if !(rest.starts_with(b"http://") || rest.starts_with(b"https://") || rest.starts_with(b"//")) {
        return None;
    }
    let len = rest.iter().position(|c| matches!(c, b')' | b' ' | b'"' | b'\'' | b'>' | b'\n' | b'<')).unwrap_or(rest.len());
    let url = &rest[..len];
    let templated = url.windows(2).any(|w| w == b"{{" || w == b"${") || memchr::memmem::find(url, b"%7B").is_some();
    let long_value = url.split(|c| matches!(c, b'?' | b'&' | b'=' | b'/')).skip(3).any(|part| part.len() >= 24 && !part.contains(&b'.'));
    if !(templated || long_value) {
        return None;
    }
    let image = html || image_bang(b, at);
    Some(signal("exfil_link", at, u + len, if image { 0.75 } else { 0.45 }))
}

/// The `[` that closes at `](` is preceded by `!` (a markdown image).
fn image_bang(b: &[u8], at: usize) -> bool {
    let lo = at.saturating_sub(300);
    match b[lo..at].iter().rposition(|c| *c == b'[') {
        Some(i) => lo + i > 0 && b[lo + i - 1] == b'!',
        None => false,
    }
}

/// The text's score: the strongest signal of each kind, combined.
pub(crate) fn score(findings: &[Finding]) -> f32 {
    let mut best: Vec<(&str, f32)> = Vec::new();
    for f in findings.iter().filter(|f| f.detector == Detector::Injection) {
        match best.iter_mut().find(|(k, _)| *k == f.kind) {
            Some((_, w)) => *w = w.max(f.confidence),
            None => best.push((f.kind, f.confidence)),
        }
    }
    1.0 - best.iter().fold(1.0, |acc, (_, w)| acc * (1.0 - w.clamp(0.0, 1.0)))
}

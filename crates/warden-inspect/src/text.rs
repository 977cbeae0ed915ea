//! The scan of one text: the keyword automaton pass, then the byte loops
//! (numbers, `@`, `:`), hidden Unicode, and encoded runs that are decoded
//! and scanned again one level deeper.

use crate::anchors::Anchor;
use crate::injection::{self, Bound, Event};
use crate::{Detector, Finding, Inspector, pii, secrets};
use base64::Engine;

/// Letters, digits and `_`: a byte that continues a word.
pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Nothing word-like before `s`, counting an escaped `\n`, `\t` or `\r`
/// (text inside JSON or a program's repr) as the white space it stands for.
pub(crate) fn word_start(b: &[u8], s: usize) -> bool {
    s == 0 || !is_word(b[s - 1]) || (s >= 2 && b[s - 2] == b'\\' && matches!(b[s - 1], b'n' | b't' | b'r'))
}

/// Bits per symbol of the byte distribution.
pub(crate) fn shannon_entropy(v: &[u8]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u16; 256];
    for &c in v {
        counts[c as usize] += 1;
    }
    let n = v.len() as f32;
    counts.iter().filter(|c| **c > 0).map(|&c| f32::from(c) / n).map(|p| -p * p.log2()).sum()
}

const B64: u8 = 1;
const TOKEN: u8 = 2;

/// Byte classes for the run walk: base64 characters (letters, digits,
/// `+ / - _`) and, among them, token characters (all but `+ /`).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            t[c] = B64 | TOKEN;
        } else if b == b'+' || b == b'/' {
            t[c] = B64;
        }
        c += 1;
    }
    t
};

/// Shortest base64 / hex run worth decoding.
const MIN_ENCODED: usize = 24;
/// Decoded bytes looked at per encoded run.
const MAX_DECODED: usize = 16 * 1024;

pub(crate) struct Scanner<'a> {
    ins: &'a Inspector,
    text: &'a str,
    b: &'a [u8],
    depth: u8,
    out: Vec<Finding>,
    events: Vec<Event>,
    /// Spans already claimed by a secret (sorted by start): numbers, e-mail
    /// addresses and encoded runs inside them are not reported again.
    claimed: Vec<(usize, usize)>,
}

impl<'a> Scanner<'a> {
    pub fn new(ins: &'a Inspector, text: &'a str, depth: u8) -> Self {
        Self { ins, text, b: text.as_bytes(), depth, out: Vec::new(), events: Vec::new(), claimed: Vec::new() }
    }

    /// Kept sorted and merged, so each lookup is a binary search however
    /// many secrets a hostile text holds.
    fn claimed(&self, pos: usize) -> bool {
        let i = self.claimed.partition_point(|(s, _)| *s <= pos);
        i > 0 && self.claimed[i - 1].1 > pos
    }

    fn claim(&mut self, start: usize, end: usize) {
        let i = self.claimed.partition_point(|(s, _)| *s <= start);
        self.claimed.insert(i, (start, end));
        // merge with neighbours so the intervals stay disjoint
        let mut k = i.saturating_sub(1);
        while k + 1 < self.claimed.len() {
            let (a, b) = (self.claimed[k], self.claimed[k + 1]);
            if b.0 <= a.1 {
                self.claimed[k].1 = a.1.max(b.1);
                self.claimed.remove(k + 1);
            } else if k + 1 > i {
                break;
            } else {
                k += 1;
            }
        }
    }

    fn push(&mut self, detector: Detector, kind: &'static str, start: usize, end: usize, confidence: f32) {
        let (start, end) = self.snap(start, end);
        self.out.push(Finding { detector, kind, start, end, confidence });
    }

    pub fn run(&mut self) {
        self.keywords();
        self.numbers();
        self.emails();
        self.ipv6();
        if !self.text.is_ascii() {
            self.hidden_unicode();
        }
        self.runs();
        self.assigned_tokens();
        if self.depth < self.ins.config.max_decode_depth {
            self.url_encoded();
        }
        let events = std::mem::take(&mut self.events);
        injection::evaluate(self.b, &events, &mut self.out);
    }

    pub fn finish(mut self) -> Vec<Finding> {
        self.out.sort_by_key(|f| (f.start, f.end));
        self.out
    }

    fn keywords(&mut self) {
        let b = self.b;
        // Key blocks are paired after the pass: each BEGIN with the first END
        // after it, so many BEGINs cost one search, not one each.
        let (mut begins, mut ends) = (Vec::new(), Vec::new());
        for m in self.ins.anchors.ac.find_iter(b) {
            let (s, e) = (m.start(), m.end());
            if self.claimed(s) {
                continue;
            }
            let anchor = self.ins.anchors.anchors[m.pattern().as_usize()];
            match anchor {
                Anchor::Provider(p) => {
                    if let Some(h) = secrets::provider(b, s, p) {
                        self.secret(h);
                    }
                }
                Anchor::PemBegin => begins.push(s),
                Anchor::PemEnd => ends.push(s),
                Anchor::Jwt => {
                    if let Some(h) = secrets::jwt(b, s) {
                        self.secret(h);
                    }
                }
                Anchor::SchemeSeparator => {
                    if let Some(h) = secrets::url_credentials(b, s) {
                        self.secret(h);
                    }
                }
                Anchor::SecretWord(kind) => {
                    if let Some(h) = secrets::assignment(b, s, e, kind) {
                        self.secret(h);
                    }
                }
                Anchor::Pii(kw) => {
                    if let Some(h) = pii::after_keyword(b, e, kw) {
                        self.claim(h.start, h.end);
                        self.push(Detector::Pii, h.kind, h.start, h.end, h.confidence);
                    }
                }
                Anchor::MarkdownUrl | Anchor::HtmlSrc => {
                    if let Some(f) = injection::exfil_link(b, s, matches!(anchor, Anchor::HtmlSrc)) {
                        self.push(f.detector, f.kind, f.start, f.end, f.confidence);
                    }
                }
                Anchor::Lex(lex, bound) => {
                    let left = bound != Bound::Word || word_start(b, s);
                    let right = bound == Bound::Free || e >= b.len() || !is_word(b[e]) || !is_word(b[e - 1]);
                    if left && right {
                        self.events.push(Event { start: s, end: e, lex });
                    }
                }
            }
        }
        self.key_blocks(&begins, &ends);
    }

    fn key_blocks(&mut self, begins: &[usize], ends: &[usize]) {
        for &s in begins {
            let end = ends.get(ends.partition_point(|e| *e <= s)).copied();
            if let Some(h) = secrets::pem(self.b, s, end) {
                self.secret(h);
            }
        }
    }

    /// Widen a byte span to character boundaries: detectors work on bytes
    /// and a length cap can stop one inside a multi-byte character.
    fn snap(&self, mut start: usize, mut end: usize) -> (usize, usize) {
        end = end.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        (start, end)
    }

    fn secret(&mut self, mut h: secrets::Hit) {
        (h.start, h.end) = self.snap(h.start, h.end);
        let v = &self.text[h.start..h.end];
        if self.ins.config.secret_allowlist.contains(v) {
            return;
        }
        self.claim(h.start, h.end);
        self.push(Detector::Secret, h.kind, h.start, h.end, h.confidence);
    }

    fn numbers(&mut self) {
        let b = self.b;
        let n = b.len();
        let mut i = 0;
        while i < n {
            let c = b[i];
            let starts = c.is_ascii_digit() || ((c == b'+' || c == b'(') && i + 1 < n && b[i + 1].is_ascii_digit());
            if !starts {
                i += 1;
                continue;
            }
            if self.claimed(i) {
                i += 1;
                continue;
            }
            if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.' || b[i - 1] == b'-' || b[i - 1] == b'/') {
                // Inside a word or a dotted/dashed token; but two capitals
                // before the first digit may open an IBAN.
                if c.is_ascii_digit()
                    && i >= 2
                    && b[i - 1].is_ascii_uppercase()
                    && let Some(h) = pii::iban_at(b, i)
                {
                    self.push(Detector::Pii, h.kind, h.start, h.end, h.confidence);
                    i = h.end;
                    continue;
                }
                i += 1;
                while i < n && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'-') {
                    i += 1;
                }
                continue;
            }
            let (hit, next) = pii::number_at(b, i);
            match hit {
                Some(h) if h.kind == pii::PHONE_CANDIDATE && pii::phone_context(b, h.start) => {
                    self.push(Detector::Pii, "phone", h.start, h.end, h.confidence);
                }
                Some(h) => self.push(Detector::Pii, h.kind, h.start, h.end, h.confidence),
                None => {}
            }
            i = next.max(i + 1);
        }
    }

    fn emails(&mut self) {
        let b = self.b;
        let mut last_end = 0;
        for at in memchr::memchr_iter(b'@', b) {
            if at < last_end || self.claimed(at) {
                continue;
            }
            if let Some(h) = pii::email_at(b, at) {
                last_end = h.end;
                self.push(Detector::Pii, h.kind, h.start, h.end, h.confidence);
            }
        }
    }

    fn ipv6(&mut self) {
        let b = self.b;
        let mut last_end = 0;
        for c in memchr::memchr_iter(b':', b) {
            if c < last_end || c == 0 || c + 1 >= b.len() {
                continue;
            }
            let (l, r) = (b[c - 1], b[c + 1]);
            if !((l.is_ascii_hexdigit() || l == b':') && (r.is_ascii_hexdigit() || r == b':')) || self.claimed(c) {
                continue;
            }
            let (hit, end) = pii::ipv6_at(b, c);
            last_end = end;
            if let Some(h) = hit {
                self.push(Detector::Pii, h.kind, h.start, h.end, h.confidence);
            }
        }
    }

    /// Zero-width and bidi control characters, and Unicode tag characters
    /// (invisible ASCII); the latter are decoded and scanned.
    fn hidden_unicode(&mut self) {
        let (mut zw, mut bidi, mut first, mut last) = (0usize, 0usize, usize::MAX, 0);
        let mut tags = String::new();
        let (mut tag_start, mut tag_end) = (usize::MAX, 0);
        for (i, ch) in self.text.char_indices() {
            let cp = ch as u32;
            let kind = match cp {
                0x200B | 0x200C | 0x200E | 0x200F | 0x2060..=0x2064 | 0xFEFF | 0x180E => 1,
                0x202A..=0x202E | 0x2066..=0x2069 => 2,
                0xE0000..=0xE007F => 3,
                _ => 0,
            };
            if kind == 0 {
                continue;
            }
            first = first.min(i);
            last = i + ch.len_utf8();
            match kind {
                1 => zw += 1,
                2 => bidi += 1,
                _ => {
                    tag_start = tag_start.min(i);
                    tag_end = i + ch.len_utf8();
                    if let Some(a) = char::from_u32(cp - 0xE0000).filter(|c| c.is_ascii() && !c.is_ascii_control() || *c == '\n') {
                        tags.push(a);
                    }
                }
            }
        }
        if !tags.is_empty() {
            let inner = self.ins.scan_window(&tags, self.depth + 1);
            let w = (0.8f32).max(inner.injection_score);
            self.push(Detector::Injection, "hidden_text", tag_start, tag_end, w);
        }
        if bidi > 0 {
            self.push(Detector::Injection, "hidden_text", first, last, 0.5);
        } else if zw >= 3 {
            self.push(Detector::Injection, "hidden_text", first, last, 0.35);
        }
    }

    /// High-entropy values assigned to a name (`ai21=…`, `"x": "…"`).
    fn assigned_tokens(&mut self) {
        let b = self.b;
        let mut resume = 0;
        for sep in memchr::memchr2_iter(b'=', b':', b) {
            if sep < resume || self.claimed(sep + 1) || self.claimed(sep.saturating_sub(1)) {
                continue;
            }
            if let Some(h) = secrets::high_entropy_assignment(b, sep)
                && !self.claimed(h.start)
            {
                resume = h.end;
                self.secret(h);
            }
        }
    }

    /// One walk over the runs of base64/token characters: prefixed
    /// high-entropy tokens (`pscale_tkn_…`) not claimed by a known format,
    /// then long base64 or hex runs that decode to text, which are scanned
    /// again one level deeper (an injection inside counts for the run).
    fn runs(&mut self) {
        let b = self.b;
        let n = b.len();
        let decode = self.depth < self.ins.config.max_decode_depth;
        let mut i = 0;
        while i < n {
            while i < n && CLASS[b[i] as usize] & B64 == 0 {
                i += 1;
            }
            let s = i;
            let mut slash_or_plus = false;
            while i < n && CLASS[b[i] as usize] & B64 != 0 {
                slash_or_plus |= CLASS[b[i] as usize] & TOKEN == 0;
                i += 1;
            }
            if i - s < MIN_ENCODED.min(32) || self.claimed(s) {
                continue;
            }
            if i - s >= 32
                && !slash_or_plus
                && b[s].is_ascii_alphabetic()
                && (s == 0 || !matches!(b[s - 1], b'.'))
                && !matches!(b.get(i), Some(b'.' | b'='))
                && let Some(conf) = secrets::prefixed_token(&b[s..i])
            {
                self.secret(secrets::Hit { kind: "prefixed_token", start: s, end: i, confidence: conf });
                continue;
            }
            if decode && i - s >= MIN_ENCODED {
                let mut e = i;
                while e < n && e - i < 2 && b[e] == b'=' {
                    e += 1;
                }
                self.encoded_run(s, i, e);
            }
        }
    }

    fn encoded_run(&mut self, s: usize, i: usize, e: usize) {
        let run = &self.b[s..i];
        let decoded = if run.len().is_multiple_of(2) && run.iter().all(u8::is_ascii_hexdigit) {
            hex::decode(&run[..run.len().min(2 * MAX_DECODED)]).ok()
        } else {
            decode_base64(run)
        };
        let Some(decoded) = decoded else { return };
        let Ok(text) = std::str::from_utf8(&decoded) else { return };
        if !mostly_text(text) {
            return;
        }
        let inner = self.ins.scan_window(text, self.depth + 1);
        if inner.injection_score >= crate::INJECTION_THRESHOLD {
            self.push(Detector::Injection, "encoded_payload", s, e, inner.injection_score.min(0.95));
        }
        for f in inner.findings.iter().filter(|f| f.detector == Detector::Secret) {
            self.push(Detector::Secret, f.kind, s, e, f.confidence * 0.9);
        }
    }

    /// Runs of `%XX` escapes (at least 8) decoded and scanned.
    fn url_encoded(&mut self) {
        let b = self.b;
        let mut i = 0;
        while let Some(p) = memchr::memchr(b'%', &b[i..]) {
            let s = i + p;
            let mut e = s;
            let mut escapes = 0;
            while e < b.len() && e - s < 8192 {
                if b[e] == b'%' && e + 2 < b.len() && b[e + 1].is_ascii_hexdigit() && b[e + 2].is_ascii_hexdigit() {
                    escapes += 1;
                    e += 3;
                } else if b[e].is_ascii_alphanumeric() || matches!(b[e], b'+' | b'.' | b'-' | b'_' | b'~') {
                    e += 1;
                } else {
                    break;
                }
            }
            i = e.max(s + 1);
            if escapes < 8 {
                continue;
            }
            let decoded: Vec<u8> = percent_decode(&b[s..e]);
            if let Ok(text) = std::str::from_utf8(&decoded) {
                let inner = self.ins.scan_window(text, self.depth + 1);
                if inner.injection_score >= crate::INJECTION_THRESHOLD {
                    self.push(Detector::Injection, "encoded_payload", s, e, inner.injection_score.min(0.95));
                }
            }
        }
    }
}

fn decode_base64(run: &[u8]) -> Option<Vec<u8>> {
    let run = &run[..run.len().min(MAX_DECODED * 4 / 3) & !3];
    let engines = [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD];
    // Look at the first 32 characters before decoding the rest: most long
    // runs (hashes, ids, images) are not text.
    let head = engines.iter().find_map(|e| e.decode(&run[..32.min(run.len())]).ok())?;
    if !head.iter().all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace()) {
        return None;
    }
    engines.iter().find_map(|e| e.decode(run).ok())
}

fn mostly_text(s: &str) -> bool {
    let total = s.chars().count().max(1);
    let printable = s.chars().filter(|c| !c.is_control() || c.is_whitespace()).count();
    let letters = s.chars().filter(|c| c.is_alphabetic() || *c == ' ').count();
    printable * 100 >= total * 95 && letters * 2 >= total
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%'
            && i + 2 < v.len()
            && let Ok(x) = u8::from_str_radix(std::str::from_utf8(&v[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if v[i] == b'+' { b' ' } else { v[i] });
        i += 1;
    }
    out
}

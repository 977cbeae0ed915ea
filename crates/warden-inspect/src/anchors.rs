//! One Aho-Corasick automaton over every keyword and prefix the scanners
//! start from, so a text is searched once for all of them.

use crate::injection::{self, Bound, Lex};
use crate::pii::{self, Keyword};
use crate::secrets::{self, Provider, WordKind};
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

#[derive(Debug, Clone, Copy)]
pub(crate) enum Anchor {
    Provider(&'static Provider),
    PemBegin,
    PemEnd,
    Jwt,
    SchemeSeparator,
    SecretWord(WordKind),
    Pii(Keyword),
    Lex(Lex, Bound),
    /// `](` of a markdown link or image.
    MarkdownUrl,
    /// `src=` of an HTML element.
    HtmlSrc,
    /// A provider prefix or an injection keyword written back to front.
    Reversed,
}

/// Injection and secret words whose reversal (`snoitcurtsni`) makes the
/// scanner read the text around it back to front.
const REVERSED_CUES: &[&str] = &["ignore", "disregard", "instructions", "previous", "password", "secret", "token", "card", "private key"];

pub(crate) struct Anchors {
    pub ac: AhoCorasick,
    pub anchors: Vec<Anchor>,
}

impl Anchors {
    pub fn build() -> Self {
        let mut pats: Vec<String> = Vec::new();
        let mut anchors = Vec::new();
        let mut add = |p: &str, a: Anchor| {
            // First entry wins for a duplicate pattern (e.g. "email").
            if !pats.iter().any(|x| x.eq_ignore_ascii_case(p)) {
                pats.push(p.to_string());
                anchors.push(a);
            }
        };
        for p in secrets::PROVIDERS {
            add(p.prefix, Anchor::Provider(p));
        }
        add("-----BEGIN", Anchor::PemBegin);
        add("-----END", Anchor::PemEnd);
        add("eyJ", Anchor::Jwt);
        add("://", Anchor::SchemeSeparator);
        for (w, k) in secrets::WORDS {
            add(w, Anchor::SecretWord(*k));
        }
        for (w, k) in pii::KEYWORDS {
            add(w, Anchor::Pii(*k));
        }
        add("](", Anchor::MarkdownUrl);
        add("src=", Anchor::HtmlSrc);
        for (w, lex, bound) in injection::LEXICON {
            add(w, Anchor::Lex(*lex, *bound));
        }
        // Short prefixes reversed (`-ks`) occur in ordinary words.
        let prefixes = secrets::PROVIDERS.iter().map(|p| p.prefix).filter(|p| p.len() >= 4);
        for cue in prefixes.chain(REVERSED_CUES.iter().copied()) {
            add(&cue.chars().rev().collect::<String>(), Anchor::Reversed);
        }
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&pats)
            .expect("static patterns build");
        Self { ac, anchors }
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }
}

//! Redaction inside JSON values: each string is rescanned and the spans of
//! the selected findings are replaced, so the surrounding JSON-RPC message
//! stays valid. Methods: `mask` (`[REDACTED:email]`), `hash` (a keyed
//! HMAC-SHA256 digest, stable per value so records can still be joined) and
//! `token` (format-preserving: digits stay digits, letters stay letters and
//! separators stay, derived from the same keyed digest) and `fingerprint`
//! (`[iban …3000 #1a2b3c4d]`: the last four letters or digits of a long
//! value and a short keyed digest, so a person can tell two values apart
//! without seeing either).

use crate::{Detector, Finding, Inspector};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use warden_core::Obligation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Mask,
    Hash,
    Token,
    Fingerprint,
}

/// A value needs this many letters and digits before its last four are
/// shown: short values (a PIN, a postcode) would be mostly disclosed.
const FINGERPRINT_TAIL_MIN: usize = 12;

/// Which findings to redact and how: a detector (`pii`, `secrets`) or one
/// kind (`email`, `credit_card`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub class: String,
    pub method: Method,
}

impl Rule {
    /// A policy's redaction obligation as a rule (the grammar is checked
    /// when the policy loads: `Obligation::parse_redactions`).
    pub fn from_obligation(o: &Obligation) -> Self {
        let Obligation::Redact { class, method } = o;
        let method = match method.as_str() {
            "hash" => Method::Hash,
            "token" => Method::Token,
            // "mask", and anything unvalidated: the strictest method
            _ => Method::Mask,
        };
        Self { class: class.clone(), method }
    }

    /// Parse `CLASS:METHOD, …` (e.g. `pii:token, secrets:mask`).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, warden_core::CoreError> {
        Ok(Obligation::parse_redactions(s)?.iter().map(Self::from_obligation).collect())
    }

    fn applies(&self, f: &Finding) -> bool {
        match Detector::parse(&self.class) {
            Some(d) => d == f.detector,
            None => f.kind == self.class,
        }
    }
}

/// Replaces findings; holds the key that makes hashes and tokens stable
/// for this deployment and useless for dictionary reversal elsewhere.
#[derive(Clone)]
pub struct Redactor {
    key: [u8; 32],
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(..)")
    }
}

impl Redactor {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn digest(&self, v: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(v.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn replacement(&self, f: &Finding, value: &str, method: Method) -> String {
        match method {
            Method::Mask => format!("[REDACTED:{}]", f.kind),
            Method::Hash => format!("[{}:{}]", f.kind, hex::encode(&self.digest(value)[..8])),
            Method::Fingerprint => {
                let alnum: Vec<char> = value.chars().filter(char::is_ascii_alphanumeric).collect();
                let digest = hex::encode(&self.digest(value)[..4]);
                match alnum.len() {
                    n if n >= FINGERPRINT_TAIL_MIN => format!("[{} …{} #{digest}]", f.kind, alnum[n - 4..].iter().collect::<String>()),
                    _ => format!("[{} #{digest}]", f.kind),
                }
            }
            Method::Token => {
                // A keystream from the digest, extended by re-hashing.
                let mut stream = self.digest(value).to_vec();
                while stream.len() < value.len() {
                    let next = self.digest(&hex::encode(&stream[stream.len() - 32..]));
                    stream.extend_from_slice(&next);
                }
                value
                    .chars()
                    .zip(stream.iter().cycle())
                    .map(|(c, k)| match c {
                        '0'..='9' => char::from(b'0' + k % 10),
                        'a'..='z' => char::from(b'a' + k % 26),
                        'A'..='Z' => char::from(b'A' + k % 26),
                        other => other,
                    })
                    .collect()
            }
        }
    }

    /// Redact the findings in `text` that a rule selects; returns the new
    /// text and how many spans were replaced.
    pub fn redact_text(&self, text: &str, findings: &[Finding], rules: &[Rule]) -> (String, usize) {
        let mut chosen: Vec<(&Finding, Method)> =
            findings.iter().filter_map(|f| rules.iter().find(|r| r.applies(f)).map(|r| (f, r.method))).filter(|(f, _)| f.end <= text.len()).collect();
        chosen.sort_by_key(|(f, _)| (f.start, std::cmp::Reverse(f.end)));
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut n = 0;
        for (f, m) in chosen {
            if f.start < pos || !text.is_char_boundary(f.start) || !text.is_char_boundary(f.end) {
                continue; // overlaps a span already replaced
            }
            out.push_str(&text[pos..f.start]);
            out.push_str(&self.replacement(f, &text[f.start..f.end], m));
            pos = f.end;
            n += 1;
        }
        out.push_str(&text[pos..]);
        (out, n)
    }

    /// Redact every string in `v` in place; returns how many spans changed.
    pub fn redact_json(&self, ins: &Inspector, v: &mut Value, rules: &[Rule]) -> usize {
        if rules.is_empty() {
            return 0;
        }
        self.walk(ins, v, None, rules)
    }

    fn walk(&self, ins: &Inspector, v: &mut Value, key: Option<&str>, rules: &[Rule]) -> usize {
        match v {
            Value::String(s) => {
                let findings = ins.scan_member(key, s);
                let (new, n) = self.redact_text(s, &findings, rules);
                if n > 0 {
                    *s = new;
                }
                n
            }
            Value::Array(items) => items.iter_mut().map(|i| self.walk(ins, i, key, rules)).sum(),
            Value::Object(map) => map.iter_mut().map(|(k, i)| self.walk(ins, i, Some(k.as_str()), rules)).sum(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_from_obligations() {
        assert_eq!(Rule::parse_list("pii:mask, email:token").unwrap()[1], Rule { class: "email".into(), method: Method::Token });
        assert!(Rule::parse_list("pii:erase").is_err());
    }

    #[test]
    fn fingerprints_tell_values_apart_without_disclosing_them() {
        let ins = Inspector::default();
        let r = Redactor::new([7; 32]);
        let rules = [Rule { class: "pii".into(), method: Method::Fingerprint }];
        let print = |v: &str| {
            let mut j = json!({ "to": v });
            r.redact_json(&ins, &mut j, &rules);
            j["to"].as_str().unwrap().to_string()
        };
        let a = print("DE89370400440532013000");
        assert!(a.starts_with("[iban …3000 #") && a.ends_with(']') && !a.contains("0532"), "{a}");
        assert_eq!(a, print("DE89370400440532013000"), "stable per value");
        let b = print("GB82WEST12345698765432");
        assert!(b.starts_with("[iban …5432 #"), "{b}");
        assert_ne!(a[a.find('#').unwrap()..], b[b.find('#').unwrap()..], "different values, different digests");
        let other = Redactor::new([8; 32]);
        let mut j = json!({ "to": "DE89370400440532013000" });
        other.redact_json(&ins, &mut j, &rules);
        assert_ne!(j["to"], a, "keyed: another deployment's digest differs");
        let short = r.replacement(&Finding { detector: Detector::Pii, kind: "pin", start: 0, end: 4, confidence: 1.0 }, "1234", Method::Fingerprint);
        assert!(!short.contains("1234") && short.starts_with("[pin #"), "a short value shows no tail: {short}");
    }

    #[test]
    fn redacts_inside_json_strings_keeping_the_message_valid() {
        let ins = Inspector::default();
        let r = Redactor::new([7; 32]);
        let mut v = json!({"content": [{"type": "text", "text": "{\"email\": \"bob@corp.example\", \"card\": \"4111 1111 1111 1111\", \"note\": \"ok\"}"}]});
        let n = r.redact_json(&ins, &mut v, &Rule::parse_list("email:token, pii:mask").unwrap());
        assert_eq!(n, 2);
        let text = v["content"][0]["text"].as_str().unwrap();
        let inner: Value = serde_json::from_str(text).expect("the embedded JSON text stays JSON");
        assert_eq!(inner["card"], "[REDACTED:credit_card]");
        let tok = inner["email"].as_str().unwrap();
        assert_ne!(tok, "bob@corp.example");
        assert_eq!(tok.len(), "bob@corp.example".len());
        assert_eq!(tok.find('@'), Some(3), "format kept: {tok}");
        assert_eq!(inner["note"], "ok");
        // Stable per key and value; different under another key.
        let mut again = json!("mail bob@corp.example");
        r.redact_json(&ins, &mut again, &Rule::parse_list("email:token").unwrap());
        assert!(again.as_str().unwrap().ends_with(tok));
        let mut other = json!("mail bob@corp.example");
        Redactor::new([8; 32]).redact_json(&ins, &mut other, &Rule::parse_list("email:token").unwrap());
        assert_ne!(other, again);
        let mut h = json!({"password": "hunter2!xyz"});
        r.redact_json(&ins, &mut h, &Rule::parse_list("secrets:hash").unwrap());
        assert!(h["password"].as_str().unwrap().starts_with("[password:"), "{h}");
    }
}

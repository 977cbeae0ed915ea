//! Normalised facts derived from a call's raw arguments (`context.facts`):
//! recipients, file paths, URLs and the amount, read the way the receiving
//! system would read them, so guardrails compare meaning instead of strings
//! (a suffix match on `to` lets `a@evil.test,ops@example.com` through; a
//! prefix match on `path` lets `/public/../secrets/x` through). Whatever
//! cannot be read sets a flag that policies treat as the dangerous case.
//! Pure: a function of the arguments alone.

use serde_json::Value;
use std::collections::BTreeSet;

/// Facts derived from one call's arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgFacts {
    /// Lower-cased `local@domain` of every address in a recipient-like
    /// argument (to, cc, bcc, recipient(s), reply_to, *email*), display names
    /// and comments stripped; an address seen in a display name or comment
    /// counts too, since some mailers would use it.
    pub recipients: BTreeSet<String>,
    /// Their domains: lower-cased, IDNA (ASCII) form, no trailing dot.
    pub recipient_domains: BTreeSet<String>,
    /// A recipient-like argument held something that is not a plain list of
    /// addresses (a bare name, a group, a route, a quoted local part).
    pub recipients_unparsable: bool,
    /// Normalised absolute paths of path-like arguments (path, file, dir,
    /// *path, *file, src, dest, ...): percent-decoded, `\` read as `/`, `.`
    /// and `..` resolved, relative paths anchored at `/`.
    pub paths: BTreeSet<String>,
    /// Every normalised path and each directory above it, lower-cased:
    /// Cedar has no "any element like", so "under /secrets" is
    /// `path_dirs.contains("/secrets")`; lower case because a
    /// case-insensitive filesystem reads `/SECRETS` as `/secrets`.
    pub path_dirs: BTreeSet<String>,
    /// A `..` climbed above the root.
    pub paths_escape_root: bool,
    /// A path-like argument did not decode to text (bad UTF-8, a control
    /// character, encoding nested too deep).
    pub paths_unparsable: bool,
    /// URL-like arguments (url, uri, href, link, endpoint, webhook, ...) as
    /// the `url` crate serialises them.
    pub urls: BTreeSet<String>,
    /// Their hosts: lower-cased, IDNA, no trailing dot; IPs as text.
    pub url_hosts: BTreeSet<String>,
    /// A URL-like argument is not an absolute URL.
    pub urls_unparsable: bool,
    /// The `amount` argument rounded away from zero (so `1000.01` counts as
    /// more than 1000 and `-0.5` as negative).
    pub amount: Option<i64>,
    /// An `amount` argument is there but is not one finite number that fits
    /// (see [`amount_of`]).
    pub amount_invalid: bool,
}

/// Why an `amount` argument cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("the amount is {0}, not a number; send it as a number such as 250 or \"250.00\"")]
    NotANumber(&'static str),
    #[error("the amount {0:?} is not a number; send digits with an optional sign, decimal point and exponent")]
    Unparsable(String),
    #[error("the amount is not a finite number; send a finite amount")]
    NotFinite,
    #[error("the arguments name the amount more than once (keys differing only in case); send one `amount`")]
    Ambiguous,
}

/// The `amount` argument of a call (its `amount` key in any letter case):
/// a JSON number or a numeric string (surrounding whitespace ignored).
/// `None` without one. The policy's `context.facts.amount` and the monitor's
/// impact caps both read it through here, so they cannot disagree.
pub fn amount_of(args: &Value) -> Result<Option<f64>, AmountError> {
    let Some(map) = args.as_object() else { return Ok(None) };
    let mut found = map.iter().filter(|(k, _)| k.eq_ignore_ascii_case("amount")).map(|(_, v)| v);
    let Some(v) = found.next() else { return Ok(None) };
    if found.next().is_some() {
        return Err(AmountError::Ambiguous);
    }
    let x = match v {
        Value::Number(n) => n.as_f64().ok_or(AmountError::NotFinite)?,
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| AmountError::Unparsable(s.chars().take(40).collect()))?,
        Value::Null => return Err(AmountError::NotANumber("null")),
        Value::Bool(_) => return Err(AmountError::NotANumber("a boolean")),
        Value::Array(_) => return Err(AmountError::NotANumber("a list")),
        Value::Object(_) => return Err(AmountError::NotANumber("an object")),
    };
    if x.is_finite() { Ok(Some(x)) } else { Err(AmountError::NotFinite) }
}

/// What kind of value an argument's name says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Recipients,
    Paths,
    Urls,
}

/// Classify an argument name; `None` for anything else. Names are compared
/// lower-cased with separators dropped (`reply_to`, `replyTo`, `Reply-To`).
fn kind_of(key: &str) -> Option<Kind> {
    let k: String = key.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| k.ends_with(s));
    let is = |names: &[&str]| names.contains(&k.as_str());
    if is(&["to", "cc", "bcc", "replyto", "sendto", "mailto", "emailto", "forwardto", "toaddress", "toaddresses"])
        || ends(&["recipient", "recipients", "email", "emails", "emailaddress", "emailaddresses"])
    {
        Some(Kind::Recipients)
    } else if is(&["src", "source", "dest", "destination", "target"])
        || ends(&["path", "paths", "file", "files", "filename", "filenames", "dir", "dirs", "directory", "directories", "folder"])
    {
        Some(Kind::Paths)
    } else if is(&["endpoint", "webhook", "callback", "redirect"]) || ends(&["url", "urls", "uri", "uris", "href", "link", "links"]) {
        Some(Kind::Urls)
    } else {
        None
    }
}

impl ArgFacts {
    /// Derive the facts from a call's arguments.
    pub fn of(args: &Value) -> Self {
        let mut f = ArgFacts::default();
        f.walk(args);
        match amount_of(args) {
            Ok(Some(x)) => {
                let r = if x >= 0.0 { x.ceil() } else { x.floor() };
                // `as` saturates; the range check makes saturation invalid.
                if r >= i64::MIN as f64 && r < i64::MAX as f64 {
                    f.amount = Some(r as i64);
                } else {
                    f.amount_invalid = true;
                }
            }
            Ok(None) => {}
            Err(_) => f.amount_invalid = true,
        }
        f
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match kind_of(k) {
                        Some(kind) => self.take(kind, v),
                        None => self.walk(v),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.walk(i)),
            _ => {}
        }
    }

    /// A value of an argument named like `kind`: strings are parsed, lists
    /// and objects searched (a recipient object's `name` is a display name).
    fn take(&mut self, kind: Kind, v: &Value) {
        match (kind, v) {
            (_, Value::Null) => {}
            (_, Value::Array(items)) => items.iter().for_each(|i| self.take(kind, i)),
            (Kind::Recipients, Value::Object(map)) => {
                let before = self.recipients.len();
                for (k, v) in map {
                    let name: String = k.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
                    if !matches!(name.as_str(), "name" | "displayname" | "fullname") && v.as_str().is_none_or(|s| s.contains('@')) {
                        self.take(kind, v);
                    }
                }
                if self.recipients.len() == before {
                    self.recipients_unparsable = true;
                }
            }
            (_, Value::Object(map)) => map.values().for_each(|v| self.take(kind, v)),
            (Kind::Recipients, Value::String(s)) => self.recipients_from(s),
            (Kind::Paths, Value::String(s)) => self.path(s),
            (Kind::Urls, Value::String(s)) => match url::Url::parse(s.trim()) {
                Ok(u) => {
                    if let Some(h) = u.host_str() {
                        self.url_hosts.insert(h.trim_end_matches('.').to_lowercase());
                    }
                    // A file URL names a path (a resource read, a fetch tool
                    // given file:///etc/passwd): the path guardrails see it.
                    if u.scheme() == "file" {
                        self.path(u.path());
                    }
                    self.urls.insert(u.into());
                }
                Err(_) => self.urls_unparsable = true,
            },
            // A number or flag where a recipient is expected is not an address.
            (Kind::Recipients, _) => self.recipients_unparsable = true,
            (Kind::Paths | Kind::Urls, _) => {}
        }
    }

    fn path(&mut self, s: &str) {
        match normalise_path(s) {
            Ok(p) => {
                self.paths_escape_root |= p.escapes_root;
                let lower = p.path.to_lowercase();
                self.path_dirs.insert("/".into());
                for (i, _) in lower.match_indices('/').skip(1) {
                    self.path_dirs.insert(lower[..i].to_string());
                }
                self.path_dirs.insert(lower);
                self.paths.insert(p.path);
            }
            Err(_) => self.paths_unparsable = true,
        }
    }

    fn recipients_from(&mut self, s: &str) {
        // A list written as JSON text: `["a@x", "b@y"]`.
        if s.trim_start().starts_with('[')
            && let Ok(v @ Value::Array(_)) = serde_json::from_str::<Value>(s)
        {
            return self.take(Kind::Recipients, &v);
        }
        let mut list = AddressList::default();
        list.parse(s);
        self.recipients_unparsable |= list.unparsable;
        for a in list.addresses {
            let domain = a.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
            self.recipient_domains.insert(domain);
            self.recipients.insert(a);
        }
    }
}

/// One comma/semicolon/line-separated mailbox of an address list while it
/// is read: the text outside any construct, `<...>` addresses, and the
/// texts of quoted strings and `(comments)`.
#[derive(Default)]
struct Mailbox {
    outside: String,
    angles: Vec<String>,
    inner: Vec<String>,
}

/// RFC 5322-ish address list reader. Strict where it matters: a mailbox
/// must be addresses separated by whitespace, or a display name with one
/// `<address>`; anything else is unparsable.
#[derive(Default)]
struct AddressList {
    addresses: Vec<String>,
    unparsable: bool,
}

impl AddressList {
    fn parse(&mut self, s: &str) {
        let mut chars = s.chars().peekable();
        let mut m = Mailbox::default();
        while let Some(c) = chars.next() {
            match c {
                '"' => match read_until(&mut chars, '"', None) {
                    Some(t) => {
                        // A quoted local part (`"a,b"@x`): mailers disagree on it.
                        if chars.peek() == Some(&'@') {
                            self.unparsable = true;
                        }
                        m.inner.push(t);
                    }
                    None => {
                        self.unparsable = true;
                        return;
                    }
                },
                '(' => match read_until(&mut chars, ')', Some('(')) {
                    Some(t) => m.inner.push(t),
                    None => {
                        self.unparsable = true;
                        return;
                    }
                },
                '<' => match read_until(&mut chars, '>', None) {
                    Some(t) => m.angles.push(t),
                    None => {
                        self.unparsable = true;
                        return;
                    }
                },
                ',' | ';' | '\n' | '\r' => self.finish(std::mem::take(&mut m)),
                ')' | '>' => self.unparsable = true,
                c => m.outside.push(c),
            }
        }
        self.finish(m);
    }

    fn finish(&mut self, m: Mailbox) {
        let words: Vec<&str> = m.outside.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect();
        if m.angles.is_empty() {
            if words.is_empty() && !m.inner.is_empty() {
                self.unparsable = true;
            }
            for w in words {
                self.strict(w);
            }
        } else {
            for a in &m.angles {
                self.strict(a.trim());
            }
            // An address in the display name may be the one a mailer uses.
            for w in words.into_iter().filter(|w| w.contains('@')) {
                self.strict(w);
            }
        }
        for t in &m.inner {
            for w in t.split(|c: char| c.is_whitespace() || c.is_control() || ",;<>()\"'".contains(c)).filter(|w| w.contains('@')) {
                if let Some(a) = address(w) {
                    self.addresses.push(a);
                }
            }
        }
    }

    fn strict(&mut self, w: &str) {
        match address(w) {
            Some(a) => self.addresses.push(a),
            None => self.unparsable = true,
        }
    }
}

/// Read up to the closing `close` (backslash escapes the next character;
/// `nest` opens a nested level, as comments nest). `None` when unclosed.
fn read_until(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, close: char, nest: Option<char>) -> Option<String> {
    let (mut out, mut depth) = (String::new(), 0u32);
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            c if c == close && depth == 0 => return Some(out),
            c if c == close => {
                depth -= 1;
                out.push(c);
            }
            c if Some(c) == nest => {
                depth += 1;
                out.push(c);
            }
            c => out.push(c),
        }
    }
    None
}

/// `local@domain`, lower-cased with the domain in IDNA form, or `None`
/// unless it is one plain address: exactly one `@`, a local part of atext
/// and dots without the routing characters `%` and `!` (`a%evil@relay`),
/// and a domain name or `[literal]`.
fn address(w: &str) -> Option<String> {
    let (local, domain) = w.split_once('@')?;
    if local.is_empty() || domain.contains('@') {
        return None;
    }
    if !local.chars().all(|c| c.is_alphanumeric() || "#$&'*+-/=?^_`{|}~.".contains(c)) {
        return None;
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain).to_lowercase();
    let domain = if domain.starts_with('[') && domain.ends_with(']') && domain.len() > 2 {
        domain
    } else {
        if domain.is_empty() || domain.contains('%') {
            return None;
        }
        match url::Host::parse(&domain).ok()? {
            url::Host::Domain(d) if !d.is_empty() && d.split('.').all(|l| !l.is_empty()) => d,
            url::Host::Domain(_) => return None,
            ip => ip.to_string(),
        }
    };
    Some(format!("{}@{domain}", local.to_lowercase()))
}

/// A path after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    pub path: String,
    /// A `..` climbed above the root (clamped there).
    pub escapes_root: bool,
}

/// Why a path could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not decode to UTF-8 text; send the path as plain text")]
    NotUtf8,
    #[error("the path holds a control character")]
    Control,
    #[error("the path is percent-encoded more than {MAX_DECODES} times over")]
    TooDeeplyEncoded,
}

/// Percent-decoding rounds before a path counts as unparsable: upstreams
/// that decode twice exist, and decoding to a fixed point is what makes
/// normalisation idempotent.
const MAX_DECODES: usize = 3;

/// Normalise a path the way a permissive upstream might read it:
/// percent-decoded (repeatedly, to a fixed point), `\` as a separator,
/// `file:` URLs read as their path, duplicate slashes collapsed, segments
/// trimmed, `.` and `..` resolved lexically (clamped at the root), anchored
/// at `/`.
pub fn normalise_path(raw: &str) -> Result<NormalPath, PathError> {
    let mut text = raw.to_string();
    let mut decoded = 0;
    loop {
        let next = percent_encoding::percent_decode_str(&text).decode_utf8().map_err(|_| PathError::NotUtf8)?;
        if next == text {
            break;
        }
        decoded += 1;
        if decoded > MAX_DECODES {
            return Err(PathError::TooDeeplyEncoded);
        }
        text = next.into_owned();
    }
    if text.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    let text = text.replace('\\', "/");
    let body = match text.get(..5) {
        Some(scheme) if scheme.eq_ignore_ascii_case("file:") => text[5..].trim_start_matches('/'),
        _ => text.as_str(),
    };
    let mut segments: Vec<&str> = Vec::new();
    let mut escapes_root = false;
    // Segments are trimmed: an upstream that trims `/ ../secrets` reads `..`.
    for seg in body.split('/').map(str::trim) {
        match seg {
            "" | "." => {}
            ".." => escapes_root |= segments.pop().is_none(),
            s => segments.push(s),
        }
    }
    Ok(NormalPath { path: format!("/{}", segments.join("/")), escapes_root })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn domains(to: Value) -> (BTreeSet<String>, bool) {
        let f = ArgFacts::of(&json!({ "to": to }));
        (f.recipient_domains, f.recipients_unparsable)
    }

    #[test]
    fn every_address_in_a_recipient_list_is_found() {
        for to in [
            json!("attacker@evil.test,ops@example.com"),
            json!("attacker@evil.test; ops@example.com"),
            json!("attacker@evil.test ops@example.com"),
            json!(["attacker@evil.test", "ops@example.com"]),
            json!("[\"attacker@evil.test\", \"ops@example.com\"]"),
            json!("Ops <ops@example.com>, Mallory <attacker@evil.test>"),
            json!("ops@example.com\nattacker@evil.test"),
            json!("attacker@evil.test (ops@example.com)"),
            json!("\"ops@example.com\" <attacker@evil.test>"),
            json!([{ "email": "ops@example.com", "name": "Ops" }, { "email": "attacker@evil.test" }]),
        ] {
            let (d, unparsable) = domains(to.clone());
            assert_eq!(d, set(&["evil.test", "example.com"]), "{to}");
            assert!(!unparsable, "{to}");
        }
    }

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(domains(json!("Ops@EXAMPLE.COM")).0, set(&["example.com"]));
        assert_eq!(domains(json!("ops@example.com.")).0, set(&["example.com"]));
        assert_eq!(domains(json!("ops@example.com.evil.test")).0, set(&["example.com.evil.test"]));
        assert_eq!(domains(json!("attacker@evil.test\n")), (set(&["evil.test"]), false));
        assert_eq!(domains(json!("Name <a@evil.test>")), (set(&["evil.test"]), false));
        // Full-width letters map to ASCII under IDNA; look-alikes do not.
        assert_eq!(domains(json!("ops@ｅｘａｍｐｌｅ.com")).0, set(&["example.com"]));
        assert_eq!(domains(json!("ops@exаmple.com")).0, set(&["xn--exmple-4nf.com"]));
        let f = ArgFacts::of(&json!({ "cc": "B@Example.com", "reply_to": "c@x.test", "subject": "not@an.address" }));
        assert_eq!(f.recipients, set(&["b@example.com", "c@x.test"]));
    }

    #[test]
    fn anything_but_a_plain_address_list_is_unparsable() {
        for to in [
            json!("attacker"),
            json!("a@evil.test@example.com"),
            json!("a%evil.test@example.com"),
            json!("\"a,b\"@example.com"),
            json!("ops@example.com\nBcc: attacker@evil.test"),
            json!("Team: ops@example.com;"),
            json!("<ops@example.com"),
            json!("(ops@example.com)"),
            json!("mailto:ops@example.com"),
            json!("ops@exa mple.com"),
            json!("ops@"),
            json!(42),
            json!([{ "name": "Ops" }]),
        ] {
            assert!(domains(to.clone()).1, "{to} should be unparsable");
        }
        assert!(!domains(json!("ops@example.com, ")).1, "a trailing separator is harmless");
    }

    #[test]
    fn paths_are_normalised_and_traversal_flagged() {
        for raw in [
            "/secrets/k",
            "/public/../secrets/k",
            "//secrets/k",
            "/./secrets/k",
            "secrets/k",
            "%2fsecrets%2fk",
            "\\secrets\\k",
            "/x/%2e%2e/secrets/k",
            "file:///secrets/k",
            "%252fsecrets/k",
        ] {
            assert_eq!(normalise_path(raw).unwrap().path, "/secrets/k", "{raw}");
        }
        assert_eq!(normalise_path("/../../etc/passwd").unwrap(), NormalPath { path: "/etc/passwd".into(), escapes_root: true });
        assert!(!normalise_path("/a/../b").unwrap().escapes_root);
        assert_eq!(normalise_path(" /x/ .. /secrets%20/k").unwrap().path, "/secrets/k");
        assert_eq!(normalise_path("/a%00/b"), Err(PathError::Control));
        assert_eq!(normalise_path("/a%ff"), Err(PathError::NotUtf8));
        assert_eq!(normalise_path("%25252525252e"), Err(PathError::TooDeeplyEncoded));
        let f = ArgFacts::of(&json!({ "path": "/Public/../SECRETS/k", "options": { "source_file": "a.txt" } }));
        assert_eq!(f.paths, set(&["/SECRETS/k", "/a.txt"]));
        assert_eq!(f.path_dirs, set(&["/", "/secrets", "/secrets/k", "/a.txt"]));
        assert!(ArgFacts::of(&json!({ "path": "%ff" })).paths_unparsable);
    }

    #[test]
    fn urls_and_their_hosts() {
        let f = ArgFacts::of(&json!({ "url": "HTTPS://Evil.TEST./x", "links": ["http://[::1]:8080/", "http://ｅｘａｍｐｌｅ.com"], "webhook": "/relative" }));
        assert_eq!(f.url_hosts, set(&["evil.test", "[::1]", "example.com"]));
        assert!(f.urls.contains("https://evil.test./x"));
        assert!(f.urls_unparsable);
    }

    #[test]
    fn a_file_url_is_a_path_too() {
        let f = ArgFacts::of(&json!({ "uri": "file:///public/../Secrets/%61pi-keys.txt" }));
        assert!(f.paths.contains("/Secrets/api-keys.txt"), "{:?}", f.paths);
        assert!(f.path_dirs.contains("/secrets"));
        assert!(ArgFacts::of(&json!({ "uri": "https://h.test/secrets/x" })).paths.is_empty(), "only file URLs name local paths");
    }

    #[test]
    fn amounts_from_numbers_and_numeric_strings() {
        assert_eq!(amount_of(&json!({ "amount": 250 })), Ok(Some(250.0)));
        assert_eq!(amount_of(&json!({ "amount": " 50000 " })), Ok(Some(50000.0)));
        assert_eq!(amount_of(&json!({ "Amount": "-5e4" })), Ok(Some(-50000.0)));
        assert_eq!(amount_of(&json!({ "to": "x" })), Ok(None));
        assert_eq!(amount_of(&json!({ "amount": "5,000" })), Err(AmountError::Unparsable("5,000".into())));
        assert_eq!(amount_of(&json!({ "amount": "NaN" })), Err(AmountError::NotFinite));
        assert_eq!(amount_of(&json!({ "amount": "inf" })), Err(AmountError::NotFinite));
        assert_eq!(amount_of(&json!({ "amount": null })), Err(AmountError::NotANumber("null")));
        assert_eq!(amount_of(&json!({ "amount": [1] })), Err(AmountError::NotANumber("a list")));
        assert_eq!(amount_of(&json!({ "amount": 1, "AMOUNT": 2 })), Err(AmountError::Ambiguous));
        let f = |a: Value| {
            let f = ArgFacts::of(&json!({ "amount": a }));
            (f.amount, f.amount_invalid)
        };
        assert_eq!(f(json!(1000.01)), (Some(1001), false));
        assert_eq!(f(json!(-0.5)), (Some(-1), false));
        assert_eq!(f(json!("-50000")), (Some(-50000), false));
        assert_eq!(f(json!(1e300)), (None, true));
        assert_eq!(f(json!("x")), (None, true));
    }

    /// Ways to write `/` and `.` that some upstream decodes.
    fn slash() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["/", "//", "\\", "%2f", "%2F", "%5c", "%252f", "/./", "/%2e/"])
    }

    fn dot() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![".", "%2e", "%2E", "%252e"])
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(raw in "[a-zA-Z0-9./\\\\%_ -]{0,40}") {
            if let Ok(once) = normalise_path(&raw) {
                let twice = normalise_path(&once.path).unwrap();
                prop_assert_eq!(&twice.path, &once.path);
                prop_assert!(!twice.escapes_root);
            }
        }

        #[test]
        fn a_secrets_segment_is_caught_whatever_the_encoding(
            before in prop::collection::vec("[a-z]{1,6}", 0..4),
            extra_ups in 0usize..3,
            s1 in slash(), s2 in slash(), s3 in slash(), d1 in dot(), d2 in dot(),
        ) {
            // PREFIX, then `..` back to the root (and maybe past it), then
            // secrets/KEY; every separator and dot in some encoding.
            let mut raw = String::new();
            for b in &before {
                raw.push_str(s1);
                raw.push_str(b);
            }
            for _ in 0..before.len() + extra_ups {
                raw.push_str(s2);
                raw.push_str(d1);
                raw.push_str(d2);
            }
            raw.push_str(s3);
            raw.push_str("secrets");
            raw.push_str(s1);
            raw.push_str("api-keys.txt");
            let f = ArgFacts::of(&json!({ "path": raw.clone() }));
            prop_assert!(f.path_dirs.contains("/secrets"), "{}: {:?}", raw, f.path_dirs);
            prop_assert_eq!(f.paths_escape_root, extra_ups > 0);
        }
    }
}

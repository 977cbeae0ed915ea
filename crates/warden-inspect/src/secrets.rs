//! Secrets: provider token formats (anchored on their fixed prefix), private
//! key blocks, JWTs, credentials inside connection URLs, and values assigned
//! to secret-looking names (`API_KEY=…`, `"password": "…"`, `Bearer …`)
//! judged by length, character mix and entropy.

use crate::text::{is_word, shannon_entropy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    /// A-Z a-z 0-9
    Alnum,
    /// A-Z 0-9
    UpperAlnum,
    /// A-Z a-z 0-9 _ -
    UrlSafe,
    /// A-Z a-z 0-9 _ - . (dotted tokens)
    Dotted,
    /// 0-9 a-f A-F
    Hex,
    /// A-Z a-z 0-9 / (webhook paths)
    Path,
    /// A-Z a-z 0-9 / _ - (webhook paths with tokens)
    UrlPath,
}

impl Charset {
    fn admits(self, b: u8) -> bool {
        match self {
            Self::Alnum => b.is_ascii_alphanumeric(),
            Self::UpperAlnum => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Self::UrlSafe => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            Self::Dotted => b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.',
            Self::Hex => b.is_ascii_hexdigit(),
            Self::Path => b.is_ascii_alphanumeric() || b == b'/',
            Self::UrlPath => b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'),
        }
    }
}

/// A provider token: fixed prefix (case-sensitive), then `min..=max`
/// characters of `charset`.
#[derive(Debug)]
pub(crate) struct Provider {
    pub prefix: &'static str,
    pub kind: &'static str,
    pub charset: Charset,
    pub min: usize,
    pub max: usize,
}

const fn p(prefix: &'static str, kind: &'static str, charset: Charset, min: usize, max: usize) -> Provider {
    Provider { prefix, kind, charset, min, max }
}

use Charset::*;

/// Prefix-anchored formats, from the providers' documentation.
pub(crate) static PROVIDERS: &[Provider] = &[
    p("AKIA", "aws_access_key_id", UpperAlnum, 16, 16),
    p("ASIA", "aws_access_key_id", UpperAlnum, 16, 16),
    p("ABIA", "aws_access_key_id", UpperAlnum, 16, 16),
    p("ACCA", "aws_access_key_id", UpperAlnum, 16, 16),
    p("ghp_", "github_token", Alnum, 36, 251),
    p("gho_", "github_token", Alnum, 36, 251),
    p("ghu_", "github_token", Alnum, 36, 251),
    p("ghs_", "github_token", Alnum, 36, 251),
    p("ghr_", "github_token", Alnum, 36, 251),
    p("github_pat_", "github_token", UrlSafe, 60, 251),
    p("glpat-", "gitlab_token", UrlSafe, 20, 64),
    p("glptt-", "gitlab_token", UrlSafe, 20, 64),
    p("gldt-", "gitlab_token", UrlSafe, 20, 64),
    p("glrt-", "gitlab_token", UrlSafe, 20, 64),
    p("glsoat-", "gitlab_token", UrlSafe, 20, 64),
    p("glcbt-", "gitlab_token", UrlSafe, 20, 64),
    p("glimt-", "gitlab_token", UrlSafe, 20, 64),
    p("glft-", "gitlab_token", UrlSafe, 20, 64),
    p("GR1348941", "gitlab_token", UrlSafe, 20, 64),
    p("xoxb-", "slack_token", UrlSafe, 20, 255),
    p("xoxp-", "slack_token", UrlSafe, 20, 255),
    p("xoxa-", "slack_token", UrlSafe, 20, 255),
    p("xoxr-", "slack_token", UrlSafe, 20, 255),
    p("xoxs-", "slack_token", UrlSafe, 20, 255),
    p("xoxe-", "slack_token", UrlSafe, 20, 255),
    p("xoxe.xoxp-", "slack_token", UrlSafe, 20, 255),
    p("xapp-", "slack_token", UrlSafe, 20, 255),
    p("hooks.slack.com/services/", "slack_webhook", Path, 20, 120),
    p("discord.com/api/webhooks/", "discord_webhook", UrlPath, 40, 200),
    p("discordapp.com/api/webhooks/", "discord_webhook", UrlPath, 40, 200),
    p("sk_live_", "stripe_key", Alnum, 16, 255),
    p("sk_test_", "stripe_key", Alnum, 16, 255),
    p("rk_live_", "stripe_key", Alnum, 16, 255),
    p("rk_test_", "stripe_key", Alnum, 16, 255),
    p("whsec_", "stripe_key", Alnum, 24, 255),
    p("AIza", "google_api_key", UrlSafe, 35, 35),
    p("ya29.", "google_oauth_token", UrlSafe, 30, 2048),
    p("sk-proj-", "openai_key", UrlSafe, 30, 255),
    p("sk-svcacct-", "openai_key", UrlSafe, 30, 255),
    p("sk-admin-", "openai_key", UrlSafe, 30, 255),
    p("sk-ant-", "anthropic_key", UrlSafe, 30, 255),
    p("sk-", "openai_key", Alnum, 32, 64),
    p("npm_", "npm_token", Alnum, 36, 36),
    p("pypi-AgEIcHlwaS5vcmc", "pypi_token", UrlSafe, 50, 255),
    p("hf_", "huggingface_token", Alnum, 30, 40),
    p("dop_v1_", "digitalocean_token", Hex, 64, 64),
    p("doo_v1_", "digitalocean_token", Hex, 64, 64),
    p("dor_v1_", "digitalocean_token", Hex, 64, 64),
    p("shpat_", "shopify_token", Hex, 32, 32),
    p("shpss_", "shopify_token", Hex, 32, 32),
    p("shpca_", "shopify_token", Hex, 32, 32),
    p("shppa_", "shopify_token", Hex, 32, 32),
    p("SG.", "sendgrid_key", Dotted, 60, 70),
    p("dapi", "databricks_token", Hex, 32, 32),
    p("hvs.", "vault_token", UrlSafe, 24, 255),
    p("hvb.", "vault_token", UrlSafe, 24, 255),
    p("lin_api_", "linear_key", Alnum, 40, 40),
    p("ntn_", "notion_token", Alnum, 40, 50),
    p("PMAK-", "postman_key", UrlSafe, 59, 59),
    p("glc_", "grafana_token", UrlSafe, 32, 255),
    p("glsa_", "grafana_token", UrlSafe, 32, 255),
    p("sntrys_", "sentry_token", Dotted, 50, 255),
    p("pul-", "pulumi_token", Hex, 40, 40),
    p("AGE-SECRET-KEY-1", "age_secret_key", UpperAlnum, 58, 58),
    p("figd_", "figma_token", UrlSafe, 40, 255),
    p("ATATT", "atlassian_token", UrlSafe, 50, 255),
    p("dp.pt.", "doppler_token", Alnum, 40, 255),
    p("dp.st.", "doppler_token", Alnum, 40, 255),
    p("xkeysib-", "brevo_key", UrlSafe, 64, 120),
    p("rubygems_", "rubygems_key", Hex, 48, 48),
    p("FLWSECK-", "flutterwave_key", UrlSafe, 32, 64),
    p("sq0atp-", "square_token", UrlSafe, 22, 64),
    p("sq0csp-", "square_token", UrlSafe, 40, 64),
];

/// What a secret-looking name tells about the value assigned to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WordKind {
    /// Human-chosen passwords: shorter values and any characters.
    Password,
    /// Machine-generated keys and tokens: long, mixed, high entropy.
    Key,
    /// `Bearer <token>`: the value follows after one space.
    Bearer,
    /// `secret`: a generated key or a chosen password; digits and letters.
    Secret,
}

pub(crate) static WORDS: &[(&str, WordKind)] = &[
    ("password", WordKind::Password),
    ("passwd", WordKind::Password),
    ("pwd", WordKind::Password),
    ("passphrase", WordKind::Password),
    ("secret", WordKind::Secret),
    ("token", WordKind::Key),
    ("apikey", WordKind::Key),
    ("key", WordKind::Key),
    ("credential", WordKind::Key),
    ("credentials", WordKind::Key),
    ("auth", WordKind::Key),
    ("signature", WordKind::Key),
    ("bearer", WordKind::Bearer),
];

pub(crate) struct Hit {
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
}

/// A value's end, taking in base64 padding (`==`) but not an `=` that
/// starts another assignment (so `a=b=c=…` is not rescanned per `=`).
fn with_padding(b: &[u8], e: usize) -> usize {
    let p = run_end(b, e, 2, |c| c == b'=');
    if p > e && (p == b.len() || !b[p].is_ascii_alphanumeric()) { p } else { e }
}

fn run_end(b: &[u8], from: usize, max: usize, ok: impl Fn(u8) -> bool) -> usize {
    let limit = (from + max).min(b.len());
    let mut i = from;
    while i < limit && ok(b[i]) {
        i += 1;
    }
    i
}

/// A provider token starting at `start` (where its prefix matched, in any
/// case). A token whose case was changed as a whole (`akiaz3mn…`, `GHP_…`)
/// no longer works as written, but it is the secret once its case is
/// restored: it is reported with a lower confidence.
pub(crate) fn provider(b: &[u8], start: usize, p: &Provider) -> Option<Hit> {
    let exact = b[start..].starts_with(p.prefix.as_bytes());
    let in_url = p.charset == Path || p.charset == UrlPath;
    if start > 0 && is_word(b[start - 1]) && !in_url {
        return None;
    }
    let body = start + p.prefix.len();
    let admits = |c: u8| p.charset.admits(c) || (!exact && (p.charset.admits(c.to_ascii_uppercase()) || p.charset.admits(c.to_ascii_lowercase())));
    let end = run_end(b, body, p.max + 1, admits);
    let n = end - body;
    if n < p.min || n > p.max || (end < b.len() && is_word(b[end]) && p.charset != Dotted) {
        return None;
    }
    let token = &b[body..end];
    // A body of one repeated character or without any digit is a
    // placeholder (`sk_live_xxxxxxxx…`), except for the letter-only formats.
    let distinct = {
        let mut seen = [false; 256];
        token.iter().filter(|&&c| !std::mem::replace(&mut seen[c as usize], true)).count()
    };
    if distinct < 6 || has_placeholder_marker(token) {
        return None;
    }
    let confidence = if exact {
        0.95
    } else {
        // Only the whole token in one case is a case-changed token; a
        // body without digits is a word.
        let token = &b[start..end];
        let one_case = !token.iter().any(u8::is_ascii_uppercase) || !token.iter().any(u8::is_ascii_lowercase);
        if !one_case || !b[body..end].iter().any(u8::is_ascii_digit) {
            return None;
        }
        0.6
    };
    let start = if in_url { url_start(b, start) } else { start };
    Some(Hit { kind: p.kind, start, end, confidence })
}

fn url_start(b: &[u8], at: usize) -> usize {
    let lo = at.saturating_sub(8);
    b[lo..at].windows(3).position(|w| w == b"://").map(|i| (lo + i).saturating_sub(5).max(lo)).map(|s| scheme_start(b, s)).unwrap_or(at)
}

fn scheme_start(b: &[u8], mut s: usize) -> usize {
    while s > 0 && b[s - 1].is_ascii_alphabetic() {
        s -= 1;
    }
    s
}

/// `-----BEGIN … PRIVATE KEY-----` up to its END line (or the end of the
/// base64 body when the block is cut off); `end_marker` is where the first
/// `-----END` after it is, if any.
pub(crate) fn pem(b: &[u8], start: usize, end_marker: Option<usize>) -> Option<Hit> {
    let head_end = start + 10 + memchr::memmem::find(&b[start + 10..(start + 80).min(b.len())], b"-----")?;
    let label = &b[start + 10..head_end];
    if !contains_ci(label, b"PRIVATE KEY") {
        return None;
    }
    let body = head_end + 5;
    let end = match end_marker.filter(|e| *e >= body && *e - body <= 16384) {
        Some(i) => {
            let e = i + 8;
            e + memchr::memmem::find(&b[e..(e + 80).min(b.len())], b"-----").map(|j| j + 5).unwrap_or(0)
        }
        None => run_end(b, body, 16384, |c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'\n' | b'\r' | b'\\' | b' ')),
    };
    // A real key has a base64 body; a label on its own is documentation.
    let base64_chars = b[body..end].iter().filter(|c| c.is_ascii_alphanumeric() || **c == b'+' || **c == b'/').count();
    if base64_chars < 40 {
        return None;
    }
    Some(Hit { kind: "private_key", start, end, confidence: 0.99 })
}

/// A JWT: three base64url segments whose first decodes to a JSON header.
pub(crate) fn jwt(b: &[u8], start: usize) -> Option<Hit> {
    if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_' || b[start - 1] == b'-') {
        return None;
    }
    let seg = |from: usize| run_end(b, from, 8192, |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    let h_end = seg(start);
    if h_end - start < 10 || b.get(h_end) != Some(&b'.') {
        return None;
    }
    let p_end = seg(h_end + 1);
    if p_end - h_end - 1 < 10 || b.get(p_end) != Some(&b'.') {
        return None;
    }
    let s_end = seg(p_end + 1);
    if s_end - p_end - 1 < 16 {
        return None;
    }
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&b[start..h_end]).ok();
    let header: Option<serde_json::Value> = header.and_then(|h| serde_json::from_slice(&h).ok());
    if header.as_ref().is_some_and(|h| h.get("alg").is_some()) {
        return Some(Hit { kind: "jwt", start, end: s_end, confidence: 0.95 });
    }
    // Header and payload both open with `{"` (eyJ): a token, even if it does not decode.
    (b[h_end + 1..].starts_with(b"eyJ") && s_end - p_end > 16).then_some(Hit { kind: "jwt", start, end: s_end, confidence: 0.8 })
}

const URL_SCHEMES: &[&str] = &[
    "postgres",
    "postgresql",
    "mysql",
    "mariadb",
    "mongodb",
    "mongodb+srv",
    "redis",
    "rediss",
    "amqp",
    "amqps",
    "mssql",
    "sqlserver",
    "jdbc:postgresql",
    "jdbc:mysql",
    "ftp",
    "ftps",
    "sftp",
    "smtp",
    "smtps",
    "ldap",
    "ldaps",
    "http",
    "https",
    "clickhouse",
    "cassandra",
    "couchbase",
    "neo4j",
    "nats",
    "kafka",
];

/// `scheme://user:password@host…` at the `://` found at `sep`.
pub(crate) fn url_credentials(b: &[u8], sep: usize) -> Option<Hit> {
    let mut s = sep;
    while s > 0 && sep - s < 24 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'.' | b'-' | b':')) {
        s -= 1;
    }
    let scheme = std::str::from_utf8(&b[s..sep]).ok()?.to_ascii_lowercase();
    let known = URL_SCHEMES.contains(&scheme.as_str());
    if !(known || (scheme.len() >= 2 && scheme.as_bytes()[0].is_ascii_alphabetic())) {
        return None;
    }
    let auth_start = sep + 3;
    let auth_end = run_end(b, auth_start, 512, |c| !matches!(c, b'/' | b'?' | b'#' | b' ' | b'"' | b'\'' | b'\n' | b'\r' | b'\t' | b'<' | b'>' | b'`'));
    let authority = &b[auth_start..auth_end];
    let at = memchr::memrchr(b'@', authority)?;
    let userinfo = &authority[..at];
    let kind = if scheme.starts_with("http") { "url_credentials" } else { "connection_string" };
    let Some(colon) = memchr::memchr(b':', userinfo) else {
        if !known {
            return None;
        }
        // a key as the whole userinfo (Sentry DSN style)
        return (userinfo.len() >= 20 && shannon_entropy(userinfo) >= 3.5 && userinfo.iter().all(u8::is_ascii_alphanumeric)).then_some(Hit {
            kind,
            start: s,
            end: auth_end,
            confidence: 0.8,
        });
    };
    let password = &userinfo[colon + 1..];
    if password.len() < 3 || is_placeholder(password) {
        return None;
    }
    // Other schemes: only a password that looks chosen (letters and digits).
    if !(known || (password.len() >= 6 && password.iter().any(u8::is_ascii_digit) && password.iter().any(u8::is_ascii_alphabetic))) {
        return None;
    }
    // The word in the host (`db.example.com`) is a documentation host, not
    // a documented password; in the password it is.
    let kind = if contains_ci(password, b"example") { EXAMPLE } else { kind };
    Some(Hit { kind, start: s, end: auth_end, confidence: 0.9 })
}

/// A value assigned to a secret-looking name; `kw` is where the name's
/// keyword matched.
pub(crate) fn assignment(b: &[u8], kw_start: usize, kw_end: usize, kind: WordKind) -> Option<Hit> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.');
    let mut i = if kind == WordKind::Bearer { kw_end } else { run_end(b, kw_end, 64, ident) };
    let mut spaced = false;
    // The keyword is a component of the name (`API_KEY`, `apiKey`), or ends
    // it right before the separator (`intelowlkey=`).
    if !(component_boundary(b, kw_start, kw_end) || (i == kw_end && kind != WordKind::Bearer && right_boundary(b, kw_end))) {
        return None;
    }
    let mut name_start = kw_start;
    while name_start > 0 && kw_start - name_start < 64 && ident(b[name_start - 1]) {
        name_start -= 1;
    }
    let name = &b[name_start..i];
    if kind == WordKind::Bearer {
        if b.get(i) != Some(&b' ') {
            return None;
        }
        i += 1;
    } else {
        // closing quote of a JSON/YAML key, spaces, the separator, spaces
        if matches!(b.get(i), Some(b'"' | b'\'' | b'`')) {
            i += 1;
        }
        i = run_end(b, i, 4, |c| c == b' ' || c == b'\t');
        match (b.get(i), b.get(i + 1)) {
            // <token>VALUE</token>
            (Some(b'>'), _) if name_start > 0 && b[name_start - 1] == b'<' => {
                let e = run_end(b, i + 1, 257, |c| c != b'<');
                return xml_value(b, i + 1, e, kind);
            }
            (Some(b':'), Some(b'=')) | (Some(b'='), Some(b'>')) => i += 2,
            (Some(b'=' | b':'), _) => i += 1,
            // `api_key Kp4Qx7…` in prose: only a value that is clearly random (checked below)
            _ if i > kw_end || b.get(i - 1) == Some(&b' ') => spaced = true,
            _ => return None,
        }
        let j = run_end(b, i, 200, |c| matches!(c, b' ' | b'\t' | b'=' | b':' | b'"' | b'\'' | b'`'));
        if j - i > 4 && b[i..j].iter().any(|c| matches!(c, b'=' | b':' | b'"' | b'\'')) {
            // `KEY :  = "  ' value`: separators padded with noise; only a
            // clearly random value counts (checked below, as for prose).
            i = j;
            spaced = true;
        } else {
            i = run_end(b, i, 4, |c| c == b' ' || c == b'\t');
        }
    }
    let (v_start, v_end) = match b.get(i) {
        Some(&q @ (b'"' | b'\'' | b'`')) => {
            let e = run_end(b, i + 1, 257, |c| c != q && c != b'\n');
            if b.get(e) != Some(&q) {
                return None;
            }
            (i + 1, e)
        }
        _ => (i, run_end(b, i, 257, |c| c > b' ' && !matches!(c, b',' | b';' | b'"' | b'\'' | b'`' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b'{' | b'}'))),
    };
    let v = &b[v_start..v_end];
    if v.len() > 256 || is_placeholder(v) || v.contains(&b' ') || names_fixture(name) || value_is_fixture(v) || labelled_digest(b, v_start, v) {
        return None;
    }
    // Unquoted, the value may be code: `password = kwargs.pop("password")`.
    if !matches!(b.get(i), Some(b'"' | b'\'' | b'`')) && code_expression(b, v_end, v) {
        return None;
    }
    let hex32 = v.len() >= 32 && v.iter().all(u8::is_ascii_hexdigit);
    if spaced
        && (!matches!(kind, WordKind::Key | WordKind::Secret)
            || v.len() < 20
            || shannon_entropy(v) < 3.5
            || !v.iter().any(u8::is_ascii_digit)
            || !(hex32 || is_uuid(v) || v.iter().any(u8::is_ascii_uppercase)))
    {
        return None;
    }
    let letters = v.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let digits = v.iter().filter(|c| c.is_ascii_digit()).count();
    let entropy = shannon_entropy(v);
    let confidence = match kind {
        WordKind::Password => {
            if v.len() < 6 || letters + digits < v.len() / 2 || entropy < 2.0 {
                return None;
            }
            if digits > 0 || letters < v.len() { 0.8 } else { 0.5 }
        }
        WordKind::Secret if v.len() >= 8 && v.len() < 16 && digits > 0 && letters > 0 && entropy >= 2.5 && !names_identifier(name) => 0.6,
        WordKind::Key | WordKind::Bearer | WordKind::Secret => {
            let upper = v.iter().any(u8::is_ascii_uppercase);
            let lower = v.iter().any(u8::is_ascii_lowercase);
            // Long enough and mixed: digits and letters, or (from 16) both cases.
            let mixed = (digits > 0 && v.len() >= 12) || (upper && lower && v.len() >= 16) || v.len() >= 32;
            if letters == 0 || !mixed || entropy < 3.0 {
                return None;
            }
            // Paths, URLs and dotted names are not keys; nor is anything under
            // a name for an identifier (`CLIENT_ID`, `key_id`, `token_type`).
            if (v.iter().filter(|c| **c == b'/').count() > 1 && entropy < 4.5) || v.starts_with(b"http") || names_identifier(name) || made_of_words(v) {
                return None;
            }
            if is_uuid(v) {
                return Some(Hit { kind: "generic_secret", start: v_start, end: v_end, confidence: 0.6 });
            }
            if v.iter().filter(|c| **c == b'.').count() > 0 && digits == 0 {
                return None;
            }
            (0.5 + (entropy - 3.0) * 0.2).min(0.9)
        }
    };
    Some(Hit { kind: if kind == WordKind::Password { "password" } else { "generic_secret" }, start: v_start, end: v_end, confidence })
}

/// The text of an XML element named like a secret (`<password>…</password>`).
fn xml_value(b: &[u8], s: usize, e: usize, kind: WordKind) -> Option<Hit> {
    let v = &b[s..e];
    if !b[e..].starts_with(b"</") || v.len() < 8 || v.len() > 256 || v.contains(&b' ') || is_placeholder(v) || shannon_entropy(v) < 3.0 {
        return None;
    }
    if kind != WordKind::Password && !(v.iter().any(u8::is_ascii_digit) && v.iter().any(u8::is_ascii_alphabetic)) {
        return None;
    }
    Some(Hit { kind: if kind == WordKind::Password { "password" } else { "generic_secret" }, start: s, end: e, confidence: 0.7 })
}

/// The keyword is a component of an identifier: `API_KEY`, `apiKey`,
/// `client-secret`, but not `monkey` or `tokenizer`.
fn component_boundary(b: &[u8], s: usize, e: usize) -> bool {
    let left = s == 0 || !b[s - 1].is_ascii_alphabetic() || (b[s - 1].is_ascii_lowercase() && b[s].is_ascii_uppercase());
    let right = e >= b.len() || !b[e].is_ascii_alphabetic() || (b[e - 1].is_ascii_lowercase() && b[e].is_ascii_uppercase());
    left && right
}

/// Name components whose values identify or fingerprint rather than
/// authenticate.
const NOT_SECRET_NAMES: &[&str] = &[
    "id",
    "ids",
    "hash",
    "sha",
    "sha1",
    "sha256",
    "digest",
    "checksum",
    "commit",
    "etag",
    "uuid",
    "guid",
    "version",
    "integrity",
    "nonce",
    "fingerprint",
    "thumbprint",
    "revision",
    "rev",
    "ref",
    "tag",
    "path",
    "url",
    "uri",
    "file",
    "name",
    "image",
    "icon",
    "user",
    "username",
    "email",
    "login",
    "account",
    "cursor",
    "page",
    "next",
    "request",
    "trace",
    "span",
    "session",
    "correlation",
    "md5",
    "object",
    "blob",
    "tree",
    "parent",
    "sum",
];

fn name_components(name: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in name.iter().enumerate() {
        let camel = c.is_ascii_uppercase() && i > 0 && name[i - 1].is_ascii_lowercase();
        if (!c.is_ascii_alphanumeric() || camel) && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if c.is_ascii_alphanumeric() {
            cur.push(c.to_ascii_lowercase() as char);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `NAME = VALUE` where the value is a long random token (the
/// detect-secrets high-entropy idea, limited to assigned values whose name
/// does not say they are an identifier or a digest).
pub(crate) fn high_entropy_assignment(b: &[u8], sep: usize) -> Option<Hit> {
    let mut i = sep + 1;
    if b.get(i) == Some(&b'=') {
        return None; // `==` comparisons
    }
    i = run_end(b, i, 2, |c| c == b' ');
    let quote = matches!(b.get(i), Some(b'"' | b'\'' | b'`'));
    if quote {
        i += 1;
    }
    let v_end = with_padding(b, run_end(b, i, 257, |c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-')));
    let v = &b[i..v_end];
    if v.len() < 20 || v.len() > 256 || (v_end < b.len() && !matches!(b[v_end], b' ' | b'"' | b'\'' | b'`' | b'\n' | b'\r' | b',' | b';' | b'}' | b')')) {
        return None;
    }
    let hex = v.iter().all(u8::is_ascii_hexdigit);
    let (up, lo, dig) =
        v.iter().fold((0, 0, 0), |(u, l, d), c| (u + c.is_ascii_uppercase() as usize, l + c.is_ascii_lowercase() as usize, d + c.is_ascii_digit() as usize));
    let e = shannon_entropy(v);
    let random =
        if hex { v.len() >= 32 && e >= 3.5 && dig > 0 && lo + up > 0 } else { up > 0 && lo > 0 && dig > 0 && e >= if v.len() < 24 { 3.8 } else { 4.0 } };
    if !random || v.iter().filter(|c| **c == b'/').count() > 1 || has_placeholder_marker(v) {
        return None;
    }
    let name = name_before(b, sep);
    if name.len() < 2
        || !name.iter().any(u8::is_ascii_alphabetic)
        || names_no_secret(name)
        || names_fixture(name)
        || value_is_fixture(v)
        || made_of_words(v)
        || labelled_digest(b, i, v)
    {
        return None;
    }
    Some(Hit { kind: "generic_secret", start: i, end: v_end, confidence: 0.5 })
}

/// A hex value of a digest's length with its algorithm or the word for a
/// digest just before it: an SBOM's `{"alg": "SHA-256", "content": "…"}`,
/// a lock file's checksum, `sha1 = …`.
fn labelled_digest(b: &[u8], start: usize, v: &[u8]) -> bool {
    const LABELS: &[&[u8]] = &[b"sha", b"md5", b"blake", b"digest", b"checksum", b"integrity", b"hash", b"\"alg\""];
    matches!(v.len(), 32 | 40 | 56 | 64 | 96 | 128)
        && v.iter().all(u8::is_ascii_hexdigit)
        && LABELS.iter().any(|l| contains_ci(&b[start.saturating_sub(160)..start], l))
}

/// An unquoted value that is code, not a literal: a call
/// (`kwargs.pop(…)`), a dotted path of identifiers (`self.cfg.password`,
/// `hashes.SHA224`), or a snake_case variable (`proxy_auth`).
fn code_expression(b: &[u8], v_end: usize, v: &[u8]) -> bool {
    let ident = |seg: &[u8]| {
        seg.len() <= 32 && seg.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') && seg.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    let call = b.get(v_end) == Some(&b'(') && ident(v.rsplit(|c| *c == b'.').next().unwrap_or(v));
    // A module or object first (`self`, `hashes`): letters only, small.
    let head = v.split(|c| *c == b'.').next().unwrap_or(v);
    let dotted = v.contains(&b'.') && v.split(|c| *c == b'.').all(ident) && head.iter().all(|c| c.is_ascii_lowercase() || *c == b'_');
    let snake = v.contains(&b'_') && v.iter().all(|c| c.is_ascii_lowercase() || *c == b'_');
    call || dotted || snake
}

/// The name before the separator at `sep` (`NAME = `, `"name": `).
fn name_before(b: &[u8], sep: usize) -> &[u8] {
    let mut n_end = sep;
    while n_end > 0 && sep - n_end < 3 && matches!(b[n_end - 1], b' ' | b'"' | b'\'') {
        n_end -= 1;
    }
    let mut n_start = n_end;
    while n_start > 0 && n_end - n_start < 64 && (b[n_start - 1].is_ascii_alphanumeric() || matches!(b[n_start - 1], b'_' | b'-' | b'.')) {
        n_start -= 1;
    }
    &b[n_start..n_end]
}

fn names_no_secret(name: &[u8]) -> bool {
    name_components(name).iter().any(|c| NOT_SECRET_NAMES.contains(&c.as_str()))
}

/// Name components that say the value is a test fixture (`TEST_TOKEN`,
/// `mock_api_key`): a generic value under such a name is not a leak.
/// Provider formats are judged by their shape alone, so a real key kept
/// under a test name is still found.
const FIXTURE_NAMES: &[&str] = &["test", "tests", "testing", "mock", "mocked", "fixture", "fixtures", "fake", "dummy", "stub", "sample"];

fn names_fixture(name: &[u8]) -> bool {
    name_components(name).iter().any(|c| FIXTURE_NAMES.contains(&c.as_str()))
}

/// The value itself says it is a fixture (`key_for_unit_tests`); not by
/// `test` alone, which vendors put in real test-mode keys (`FLWSECK_TEST-…`).
fn value_is_fixture(v: &[u8]) -> bool {
    name_components(v).iter().any(|c| c != "test" && FIXTURE_NAMES.contains(&c.as_str()))
}

/// A token at `start` is the value of a digest or an identifier
/// (`sha256=…` in a wheel's RECORD, `SHA256:…` fingerprints).
pub(crate) fn value_of_no_secret_name(b: &[u8], start: usize) -> bool {
    let mut sep = start;
    while sep > 0 && start - sep < 3 && matches!(b[sep - 1], b' ' | b'"' | b'\'') {
        sep -= 1;
    }
    sep > 0 && matches!(b[sep - 1], b'=' | b':') && names_no_secret(name_before(b, sep - 1))
}

/// A value made of words, as code identifiers are
/// (`handleTransientNetworkErrors5xxRetry`): at least three humps of an
/// optional capital and small letters with a vowel (not only hex letters:
/// `fedcba` is a digit group) hold most of its letters, and at most one
/// group of digits sits inside it. Generated keys switch case and class
/// every character or two; chosen passwords end in their digits
/// (`RedisSentPass123`) and stay passwords.
pub(crate) fn made_of_words(v: &[u8]) -> bool {
    let (mut words, mut in_words, mut letters, mut digit_groups) = (0, 0, 0, 0);
    let mut i = 0;
    while i < v.len() {
        if v[i].is_ascii_digit() {
            digit_groups += 1;
            while i < v.len() && v[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        if !v[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let s = i;
        i += 1;
        while i < v.len() && v[i].is_ascii_lowercase() {
            i += 1;
        }
        let hump = &v[s..i];
        letters += hump.len();
        let vowel = hump.iter().any(|c| b"aeiouyAEIOUY".contains(c));
        let hex_only = hump.iter().all(u8::is_ascii_hexdigit);
        if hump.len() >= 3 && vowel && !hex_only {
            words += 1;
            in_words += hump.len();
        }
    }
    let ends_in_digits = v.last().is_some_and(|c| !c.is_ascii_alphabetic());
    words >= 3 && in_words * 5 >= letters * 4 && digit_groups <= 1 && !ends_in_digits
}

fn right_boundary(b: &[u8], e: usize) -> bool {
    e >= b.len() || !b[e].is_ascii_alphanumeric()
}

/// Names of values that identify rather than authenticate: `CLIENT_ID`,
/// `key-id`, `clientId`, `token_type`, `secret_name`, …
fn names_identifier(name: &[u8]) -> bool {
    const SUFFIXES: &[&[u8]] =
        &[b"_id", b"-id", b".id", b"_type", b"_name", b"_url", b"_uri", b"_path", b"_file", b"_length", b"_count", b"_expiry", b"_expires", b"_at"];
    let lower = name.to_ascii_lowercase();
    SUFFIXES.iter().any(|s| lower.ends_with(s)) || (name.len() > 2 && name.ends_with(b"Id") && name[name.len() - 3].is_ascii_lowercase())
}

/// A token shaped like modern provider formats: a short lowercase prefix,
/// `_` or `-`, then a long random body (`pscale_tkn_…`, `lmsq_…`).
pub(crate) fn prefixed_token(run: &[u8]) -> Option<f32> {
    if run.len() < 32 || run.len() > 256 {
        return None;
    }
    let sep = run.iter().take(16).position(|c| *c == b'_' || *c == b'-')?;
    let prefix = &run[..sep];
    let lower = prefix.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let upper = prefix.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if sep < 2 || !(lower || upper) || !prefix[0].is_ascii_alphabetic() {
        return None;
    }
    if [&b"sha1"[..], b"sha256", b"sha384", b"sha512", b"md5", b"data", b"urn", b"uuid"].contains(&prefix) {
        return None;
    }
    // the body after the last short segment (`pscale_tkn_`)
    let mut body_start = sep + 1;
    while let Some(k) = run[body_start..].iter().take(8).position(|c| *c == b'_' || *c == b'-') {
        let seg = &run[body_start..body_start + k];
        if !(seg.iter().all(|c| c.is_ascii_lowercase()) || seg.iter().all(|c| c.is_ascii_uppercase())) {
            break;
        }
        body_start += k + 1;
    }
    let body = &run[body_start..];
    if made_of_words(body) {
        return None;
    }
    let (up, lo, dig) =
        body.iter().fold((0, 0, 0), |(u, l, d), c| (u + c.is_ascii_uppercase() as usize, l + c.is_ascii_lowercase() as usize, d + c.is_ascii_digit() as usize));
    if body.len() < 28 || body.iter().filter(|c| **c == b'-').count() > 4 {
        return None;
    }
    let e = shannon_entropy(body);
    let hex = body.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    let ok = if hex {
        body.len() >= 32 && dig > 0 && lo > 0 && e >= 3.5
    } else if is_uuid(body) {
        true
    } else if up == 0 || lo == 0 {
        // single-case bodies need more digits and spread
        dig >= 4 && lo + up >= 4 && e >= 3.8
    } else {
        dig > 0 && e >= 4.0
    };
    ok.then_some((0.55 + (e - 4.0) * 0.3).clamp(0.55, 0.85))
}

fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36 && v.iter().enumerate().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Markers of documentation values, matched case-insensitively in one pass.
static MARKERS: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(["xxxxx", "placeholder", "your_", "your-", "redacted"]).expect("static patterns")
});

/// The kind of a value shaped like a credential that its vendor documents
/// as an example (`AKIAIOSFODNN7EXAMPLE`): reported, so a reader sees it,
/// but never counted as a secret (`Findings::secret_count`, policy).
pub const EXAMPLE: &str = "example";

/// Example credentials published in vendors' documentation without the
/// word "example" in them (those with it are examples by that word).
const DOCUMENTED: &[&str] = &[
    // jwt.io's sample token
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    // Stripe's API reference test key
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "sk_test_BQokikJOvBiI2HlWgH4olfQ2",
];

/// The kind to report for a secret-shaped `value` found as `kind`. A URL
/// is judged by its password ([`url_credentials`]), so here only by the
/// documented values.
pub(crate) fn label(value: &[u8], kind: &'static str) -> &'static str {
    let documented = DOCUMENTED.iter().any(|d| d.as_bytes() == value);
    let url = memchr::memmem::find(value, b"://").is_some();
    if documented || (!url && memchr::memmem::find(&value.to_ascii_lowercase(), b"example").is_some()) { EXAMPLE } else { kind }
}

/// Markers that make a whole value a stand-in, not a secret.
static STAND_INS: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(["****", "...", "{{", "${", "process.env", "os.environ", "getenv", "<", "dummy", "sample", "fake"])
        .expect("static patterns")
});

fn has_placeholder_marker(v: &[u8]) -> bool {
    MARKERS.is_match(v)
}

/// Template references, masked values and documentation stand-ins.
pub(crate) fn is_placeholder(v: &[u8]) -> bool {
    const EXACT: &[&str] = &["password", "passwd", "secret", "token", "null", "none", "true", "false", "undefined", "changeme", "pass", "test"];
    if v.len() <= 9 && EXACT.iter().any(|e| v.eq_ignore_ascii_case(e.as_bytes())) {
        return true;
    }
    if matches!(v.first(), Some(b'$' | b'%' | b'<' | b'{' | b'*' | b'@' | b'#')) || v.iter().all(|c| *c == v[0]) {
        return true;
    }
    has_placeholder_marker(v) || STAND_INS.is_match(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(s: &str) -> Option<String> {
        let kw = ["KEY", "key", "password", "token", "secret", "Bearer", "Key"].iter().find_map(|k| s.find(k).map(|i| (i, k.len())))?;
        let kind = WORDS.iter().find(|(w, _)| w.eq_ignore_ascii_case(&s[kw.0..kw.0 + kw.1])).unwrap().1;
        assignment(s.as_bytes(), kw.0, kw.0 + kw.1, kind).map(|h| s[h.start..h.end].to_string())
    }

    #[test]
    fn assignments() {
        assert_eq!(assign("ABUSEIPDB_API_KEY=Kp4Qx7Rm2Sn5Tb8Vw3YzKp4Q").as_deref(), Some("Kp4Qx7Rm2Sn5Tb8Vw3YzKp4Q"));
        assert_eq!(assign("{\"client_secret\": \"d8f7a6s5d4f3g2h1j0k9l8\"}").as_deref(), Some("d8f7a6s5d4f3g2h1j0k9l8"));
        assert_eq!(assign("password = 'hunter2!x'").as_deref(), Some("hunter2!x"));
        assert_eq!(assign("Authorization: Bearer abcDEF123456ghiJKL789").as_deref(), Some("abcDEF123456ghiJKL789"));
        assert_eq!(assign("apiKey: \"q8Jd93kLm2Pz7Xw1Vb4N\"").as_deref(), Some("q8Jd93kLm2Pz7Xw1Vb4N"));
        assert_eq!(assign("123formbuilder api_key Kp4Qx7-Rm2Sn5Tb8Vw3YzKp4Qx").as_deref(), Some("Kp4Qx7-Rm2Sn5Tb8Vw3YzKp4Qx"));
        assert_eq!(assign("<token>EZAKKp4Qx7Rm2Sn5Tb8Vw3Yz</token>").as_deref(), Some("EZAKKp4Qx7Rm2Sn5Tb8Vw3Yz"));
        assert_eq!(assign("{\"secret\":\"Lg1PDmyqw9g786\"}").as_deref(), Some("Lg1PDmyqw9g786"));
        assert_eq!(assign("intelowlkey=3hjArTco0NPvH-0aKSYr").as_deref(), Some("3hjArTco0NPvH-0aKSYr"));
        assert_eq!(assign("SERVER_KEY=\"aec51681-9963-c39a-1dca-dd7658e6395a\"").as_deref(), Some("aec51681-9963-c39a-1dca-dd7658e6395a"));
        for no in [
            "API_KEY=short",
            "API_KEY=${API_KEY}",
            "API_KEY=your_api_key_here_0000",
            "password=password",
            "monkey business=abcdefghij0123456789xyz",
            "KEY=/usr/local/share/keys/default",
            "client_id: 123e4567-e89b-12d3-a456-426614174000",
            "key ordering matters",
            "the api key is rotated daily",
        ] {
            assert_eq!(assign(no), None, "{no}");
        }
    }

    #[test]
    fn providers_and_blocks() {
        let aws = PROVIDERS.iter().find(|p| p.prefix == "AKIA").unwrap();
        assert!(provider(b"id=AKIAZ3MNQ7RXW4PVBC5D;", 3, aws).is_some());
        assert!(provider(b"id=AKIAZ3MNQ7RXW4PVBC5DX", 3, aws).is_none(), "too long");
        assert!(provider(b"xAKIAZ3MNQ7RXW4PVBC5D", 1, aws).is_none(), "inside a word");
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpQIBAAKCAQEA7n2K9xR4vQ1mWcZ8hLbF3jD5sT6yU0pN2aG4eH7iO9kB1lM3\n-----END RSA PRIVATE KEY-----";
        let h = pem(key.as_bytes(), 0, key.find("-----END")).unwrap();
        assert_eq!(h.end, key.len());
        assert!(pem(b"-----BEGIN PRIVATE KEY----- goes here", 0, None).is_none());
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.K3xqLnZWP4UlH9oZcQK7nBmJrEzVfYp2N1RsAtX5Y8w";
        assert_eq!(jwt(t.as_bytes(), 0).unwrap().end, t.len());
        assert!(jwt(&t.as_bytes()[..t.rfind('.').unwrap()], 0).is_none(), "unsigned two-part prefix");
        let u = "DATABASE_URL=postgres://app:w0kVdGwi5GpLapAX@db.internal:5432/app";
        let h = url_credentials(u.as_bytes(), u.find("://").unwrap()).unwrap();
        assert_eq!(&u[h.start..h.end], "postgres://app:w0kVdGwi5GpLapAX@db.internal:5432");
        assert!(prefixed_token(b"pscale_tkn_93iwbHaZKAmZqjeAwhEWgwf3zowdD5bu").is_some());
        assert!(prefixed_token(b"sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUR").is_none());
        assert!(prefixed_token(b"build_artifacts_for_the_release_pipeline_v2").is_none());
        assert!(prefixed_token(b"sub-c-b424e2b7-3480-5c69-2564-52b5fde37b98").is_some());
        assert!(prefixed_token(b"RGAPI-1x7iIVThNxv00OGy7e01fGwtDdH4q1cEvkyVY5luPUZ").is_some());
        let dsn = "dsn: https://9a3b7c2e4d1f6a8b0c5d9e3f7a1b4c2d@o12345.ingest.sentry.io/67890";
        assert!(url_credentials(dsn.as_bytes(), dsn.find("://").unwrap()).is_some());
        let he = |t: &str| high_entropy_assignment(t.as_bytes(), t.find(['=', ':']).unwrap()).map(|h| t[h.start..h.end].to_string());
        assert_eq!(he("ai21=4c9a8f6e3b7d1a2c5e8f0b9d6a3c4e1f").as_deref(), Some("4c9a8f6e3b7d1a2c5e8f0b9d6a3c4e1f"));
        assert_eq!(he("AI21: \"Kp4Qx7Rm2Sn5Tb8Vw3YzKp4Qx7\"").as_deref(), Some("Kp4Qx7Rm2Sn5Tb8Vw3YzKp4Qx7"));
        for no in [
            "ADOBE_CLIENT_ID=7b3e5d8c1a9f4e2b6c8d3a5e9f1b7c4d",
            "commitSha: 4c9a8f6e3b7d1a2c5e8f0b9d6a3c4e1f7b2d9c5a",
            "x == 4c9a8f6e3b7d1a2c5e8f0b9d6a3c4e1f",
            "path=/usr/lib/x86_64-linux-gnu/libssl.so.3",
        ] {
            assert_eq!(he(no), None, "{no}");
        }
        let trino = "TRINO_URL=trino://admin:SecretPass123@trino.example.com:8080";
        assert!(url_credentials(trino.as_bytes(), trino.find("://").unwrap()).is_some());
        assert_eq!(assign("X-API-KEY   :  = \"  JSuKxKWNfd898GujYX9p66-_M1knu3xIP").as_deref(), Some("JSuKxKWNfd898GujYX9p66-_M1knu3xIP"));
        let doc = "postgres://user:${DB_PASSWORD}@db/app";
        assert!(url_credentials(doc.as_bytes(), doc.find("://").unwrap()).is_none());
    }
}

#[cfg(test)]
mod regressions {
    use crate::{Detector, Inspector};
    use serde_json::json;

    fn secrets(t: &str) -> Vec<(&'static str, String)> {
        let scan = Inspector::default().scan_text(t);
        scan.of(Detector::Secret).map(|f| (f.kind, t[f.start..f.end].to_string())).collect()
    }

    #[test]
    fn digests_fingerprints_identifiers_and_fixtures_are_not_secrets() {
        for t in [
            "pkg/core.py,sha256=ba_m1xUuM4SuCqvBXDVyHAw6-tiEp0Aat2fX5FODbHU,2048\npkg/x.py,sha256=Zq-9aKm3LxvB8nPq2RtY7wDf5GhJ4kMnB6vC1xZ0aQs,100",
            "256 SHA256:ab_Ff3kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8 github.com (RSA)",
            "Key fingerprint = 9DC8 5822 9FC7 DD38 854A  E2D8 8D81 803C 0EBF CD88",
            "apiKey: handleTransientNetworkErrors5xxRetry",
            "secret_key = \"test_secret_key_for_unit_tests_1234\"",
            "mock_api_key = \"Zx8vQp2zNcMfWjR4tYu7\"",
            "TEST_TOKEN=0123456789abcdefABCDEF0123456789",
            "md5 9f86d081884c7d659a2feaa0c55ad015 of the upload",
            r#"{"hashes": [{"alg": "SHA-256", "content": "33ca55ee147b1926dbea904f50fe4902494e97bc742205abbbf10c709e43bc3a"}]}"#,
            "password = kwargs.pop(\"password\", None)",
            "password = self.cfg.ssl_options.get",
            "proxy_password = proxy_auth",
            "ECDSA_WITH_SHA224_KEY: hashes.SHA224(),",
        ] {
            assert_eq!(secrets(t), [], "{t}");
        }
        assert_eq!(secrets("apiKey: Kp4Qx7Rm2Sn5Tb8Vw3YzKp4Q").len(), 1, "a generated key still is one");
        assert_eq!(secrets("password = \"proxy_auth\"").len(), 1, "quoted, a value is a literal");
        assert_eq!(secrets("DB_PASSWORD=s3cr3t.Pa55word").len(), 1, "a password with a dot is not code");
        assert_eq!(secrets("api_key = 9f86d081884c7d659a2feaa0c55ad015c0ffee11").len(), 1, "hex without a digest's label is a key");
    }

    #[test]
    fn documented_examples_are_reported_as_examples_and_not_counted() {
        let t = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nstripe sk_test_4eC39HqLyjWDarjtT1zdp7dc";
        let found = secrets(t);
        assert_eq!(found.iter().map(|f| f.0).collect::<Vec<_>>(), [super::EXAMPLE; 3], "{found:?}");
        let s = Inspector::default().scan_json(&json!({ "config": t, "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" }));
        assert!(s.findings.iter().any(|f| f.finding.kind == super::EXAMPLE));
        assert_eq!((s.summary.secret_count, s.summary.secrets.len()), (0, 0), "{:?}", s.summary);
    }

    #[test]
    fn twilio_auth_tokens_next_to_their_account() {
        let t = "sid AC0123456789abcdef0123456789abcdef token 9f86d081884c7d659a2feaa0c55ad015";
        let t = t.replace(" token ", " ");
        assert_eq!(secrets(&t), [("twilio_auth_token", "9f86d081884c7d659a2feaa0c55ad015".to_string())]);
    }
}

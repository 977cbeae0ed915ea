//! Request paths for `path_prefix` rules: decoded once, and refused when any
//! reader (a server, a framework, a WAF) could resolve them to another path
//! than the one checked. A refusal is preferred over a clever rewrite.

use unicode_normalization::UnicodeNormalization;

/// Why a path cannot be matched against a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path has a malformed percent-encoding")]
    BadEscape,
    #[error("the path is not UTF-8 once percent-decoded (overlong or invalid sequences are refused)")]
    NotUtf8,
    #[error("the path is percent-encoded twice")]
    DoubleEncoded,
    #[error("the path encodes a slash or backslash")]
    EncodedSeparator,
    #[error("the path has a backslash")]
    Backslash,
    #[error("the path has ; parameters")]
    Parameters,
    #[error("the path has a control character")]
    Control,
    #[error("the path has a dot segment (or a look-alike of one)")]
    DotSegment,
}

/// The percent-decoded path (`path` without its query), or why it is
/// ambiguous.
pub fn normalize(path: &str) -> Result<String, PathError> {
    let raw = path.as_bytes();
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).ok_or(PathError::BadEscape)?;
                let b = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?;
                // An encoded separator is a different path to a server that
                // decodes before routing and the same path to one that
                // does not.
                if matches!(b, b'/' | b'\\') {
                    return Err(PathError::EncodedSeparator);
                }
                decoded.push(b);
                i += 3;
            }
            b => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    // What is still an escape after one decoding is read as one by a
    // server that decodes twice (`%252e` → `%2e` → `.`).
    let db = decoded.as_bytes();
    if db.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit()) {
        return Err(PathError::DoubleEncoded);
    }
    if decoded.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    // Compatibility forms (full-width dots, solidi, reverse solidi, one-dot
    // leaders, …) fold to ASCII under NFKC, which some stacks apply; the
    // ideographic full stops are dots to IDNA-minded ones.
    let folded: String = decoded.nfkc().map(|c| if matches!(c, '\u{3002}' | '\u{ff61}') { '.' } else { c }).collect();
    if folded.contains('\\') {
        return Err(PathError::Backslash);
    }
    if folded.contains(';') {
        return Err(PathError::Parameters);
    }
    if folded.matches('/').count() != decoded.matches('/').count() {
        return Err(PathError::EncodedSeparator);
    }
    // `...` is `..` to servers that trim trailing dots, `.. ` to ones that
    // trim spaces: any segment of only dots (and blanks) is refused.
    if folded.split('/').any(|seg| {
        let t = seg.trim();
        !t.is_empty() && t.chars().all(|c| c == '.')
    }) {
        return Err(PathError::DotSegment);
    }
    Ok(decoded)
}

/// Is `path` (a request path, its query ignored) under `prefix`, on segment
/// boundaries (`/v1` admits `/v1` and `/v1/x`, not `/v1x`)?
pub fn within(path: &str, prefix: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let Ok(p) = normalize(path) else { return false };
    match p.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_once() {
        assert_eq!(normalize("/v1/a%20b").unwrap(), "/v1/a b");
        assert_eq!(normalize("/v1/caf%C3%A9.json").unwrap(), "/v1/café.json");
        assert_eq!(normalize("/v1/a.b/..c/").unwrap(), "/v1/a.b/..c/");
    }

    #[test]
    fn every_traversal_spelling_is_refused() {
        for sneaky in [
            "/v1/../admin",
            "/v1/./x",
            "/v1/%2e%2e/admin",
            "/v1/%2E%2E/admin",
            "/v1/.%2E/admin",
            "/v1/..%2fadmin",
            "/v1/..%2Fadmin",
            "/v1/..%5cadmin",
            "/v1\\..\\admin",
            "/v1/..;/admin",
            "/v1;jsessionid=1/x",
            "/v1/%c0%ae%c0%ae/admin",
            "/v1/%e0%80%ae%e0%80%ae/admin",
            "/v1/\u{ff0e}\u{ff0e}/admin",
            "/v1/%ef%bc%8e%ef%bc%8e/admin",
            "/v1/%EF%BC%8E./admin",
            "/v1/\u{2024}\u{2024}/admin",
            "/v1/\u{3002}\u{3002}/admin",
            "/v1/..\u{ff0f}admin",
            "/v1/..%ef%bc%8fadmin",
            "/v1/..\u{ff3c}admin",
            "/v1/%252e%252e/admin",
            "/v1/%25252e/admin",
            "/v1/.../admin",
            "/v1/.. /admin",
            "/v1/%00/x",
            "/v1/%zz",
            "/v1/%2",
        ] {
            assert!(normalize(sneaky).is_err(), "{sneaky}");
            assert!(!within(sneaky, "/v1/"), "{sneaky}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(within("/v1/data", "/v1/data"));
        assert!(within("/v1/data/x?y=1", "/v1/data"));
        assert!(!within("/v1/dataset", "/v1/data"));
        assert!(within("/v1/x", "/v1/"));
        assert!(!within("/v1", "/v1/"));
        assert!(within("/v1/%64ata", "/v1/data"), "a decoded path is matched");
        assert!(!within("/V1/data", "/v1/"));
    }
}

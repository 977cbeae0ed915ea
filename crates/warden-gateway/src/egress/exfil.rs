//! What a proxied request can carry out, laid out for inspection and for
//! policy (`context.args`): the decoded path and query, the header values
//! that reach the upstream, the body, and the host name — whose labels under
//! a `*.domain` rule are a DNS exfiltration channel.

use super::head::RequestHead;
use serde_json::{Map, Value, json};

/// The finding kind for a host label that looks like encoded data.
pub const ENCODED_HOST_LABEL: &str = "encoded_host_label";

/// `context.args` for a request: method, host, port, and for plain HTTP the
/// decoded `path` (no query), the decoded `query`, the forwarded `headers`
/// (lower-cased names; repeated ones joined by `, `) and the `body` as text.
pub fn args(head: &RequestHead, path: Option<&str>, body: &[u8]) -> Value {
    let mut a = json!({ "method": head.method, "host": head.host, "port": head.port, "path": path.unwrap_or_default() });
    if let Some(target) = &head.path {
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        a["query"] = Value::String(percent_encoding::percent_decode_str(query).decode_utf8_lossy().into_owned());
        let mut headers = Map::new();
        for (k, v) in &head.headers {
            let k = k.to_ascii_lowercase();
            match headers.get_mut(&k) {
                Some(Value::String(s)) => {
                    s.push_str(", ");
                    s.push_str(v);
                }
                _ => {
                    headers.insert(k, Value::String(v.clone()));
                }
            }
        }
        a["headers"] = Value::Object(headers);
        a["body"] = Value::String(String::from_utf8_lossy(body).into_owned());
    }
    a
}

/// Labels of `host` under a `*.domain` rule that look like encoded data
/// rather than a name: long, and all hex, or letters and digits interleaved
/// as base32/base64 have them, or near-uniform in their characters. The
/// labels are checked one by one and joined (data split over short labels).
pub fn encoded_labels(host: &str, rule_host: &str) -> bool {
    let Some(domain) = rule_host.strip_prefix("*.") else { return false };
    let host = host.trim_end_matches('.');
    let Some(sub) = host.len().checked_sub(domain.len() + 1).map(|n| &host[..n]) else { return false };
    let joined: String = sub.split('.').collect();
    sub.split('.').chain([joined.as_str()]).any(looks_encoded)
}

fn looks_encoded(label: &str) -> bool {
    let b = label.as_bytes();
    if b.len() < 16 {
        return false;
    }
    let hex = b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit);
    // Words carry a digit or two at their ends (`ec2`, `v2`); encodings
    // switch between letters and digits all along.
    let switches = b.windows(2).filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit() && w.iter().all(u8::is_ascii_alphanumeric)).count();
    hex || switches >= 4 || bits_per_char(label) >= 4.0 || b.len() >= 40
}

/// Shannon entropy of the label's characters (case-folded, as DNS is).
fn bits_per_char(label: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in label.bytes() {
        counts[b.to_ascii_lowercase() as usize] += 1;
    }
    let n = label.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / n).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_labels_under_a_wildcard_are_found() {
        for host in [
            "4a7f3c9e1b2d8f6a0c5e.leak.example.com",
            "mfrggzdfmztwq2lknnwg23tpobyxe43u.example.com",
            "aGVsbG8gd29y.bGQgc2VjcmV0.example.com",
            "x9qk2vbz7wmp4rjt.example.com",
        ] {
            assert!(encoded_labels(host, "*.example.com"), "{host}");
        }
        for host in [
            "docs.example.com",
            "eu-west-1.api.example.com",
            "my-staging-environment.example.com",
            "customer-portal-v2.example.com",
            "ip-10-0-0-12-ec2-internal.example.com",
            "international-business-machines.example.com",
        ] {
            assert!(!encoded_labels(host, "*.example.com"), "{host}");
        }
        assert!(!encoded_labels("4a7f3c9e1b2d8f6a0c5e.example.com", "4a7f3c9e1b2d8f6a0c5e.example.com"), "an exact rule names its host");
    }

    #[test]
    fn policy_sees_the_decoded_query_headers_and_body() {
        let head = super::super::head::parse_request_head(b"POST http://x/v1/a?k=%67hp_x HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\r\n").unwrap();
        let a = args(&head, Some("/v1/a"), b"hi");
        assert_eq!(a, json!({ "method": "POST", "host": "x", "port": 80, "path": "/v1/a", "query": "k=ghp_x", "headers": { "x-a": "1, 2" }, "body": "hi" }));
    }
}

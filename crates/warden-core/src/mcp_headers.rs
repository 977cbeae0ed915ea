//! The HTTP headers MCP 2026-07-28 mirrors from a request's body (SEP-2243):
//! `Mcp-Method`, `Mcp-Name`, and `Mcp-Param-{Name}` for the arguments a
//! tool's `inputSchema` annotates with `x-mcp-header`, with the
//! `=?base64?…?=` encoding of values a header cannot carry as they are.
//! Shared by the gateway (which checks them at its front door and sends
//! them upstream) and `warden connect` (which sends them for a host on
//! stdio).

use base64::Engine;
use serde_json::Value;

/// The stateless revision.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The `_meta` key of a request's protocol version in that revision.
pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// The methods whose `Mcp-Name` header mirrors a body field, and the field.
pub fn named_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// A mirrored value as sent: `=?base64?…?=` is standard Base64 (padded,
/// strict) of UTF-8; anything else is itself.
pub fn decoded(header: &str) -> Option<String> {
    match header.strip_prefix("=?base64?").and_then(|h| h.strip_suffix("?=")) {
        Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64).ok().and_then(|b| String::from_utf8(b).ok()),
        None => Some(header.to_string()),
    }
}

/// A value as a header carries it (what [`decoded`] reads back): as is when
/// it is plain visible ASCII, else the `=?base64?…?=` sentinel.
pub fn encoded(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b)) && value.trim() == value && !(value.starts_with("=?base64?") && value.ends_with("?="));
    if plain { value.to_string() } else { format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value)) }
}

/// The headers a request of the stateless revision mirrors from its body
/// (`Mcp-Method`, `Mcp-Name`, and the `Mcp-Param-*` the tool's
/// `inputSchema` annotates), as the gateway sends it upstream.
pub fn mirrored_headers(method: &str, params: &Value, tool_schema: Option<&Value>) -> Vec<(String, String)> {
    let mut out = vec![("mcp-method".to_string(), method.to_string())];
    if let Some(name) = named_field(method).and_then(|f| params.get(f)).and_then(Value::as_str) {
        out.push(("mcp-name".into(), encoded(name)));
    }
    let mut annotated = Vec::new();
    if let Some(schema) = tool_schema {
        mirrored(schema, params.get("arguments").unwrap_or(&Value::Null), &mut annotated);
    }
    for (name, value) in annotated {
        let text = match value {
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        // A name that cannot be a header leaves the header out (the server
        // refuses the call, as it should refuse such a definition).
        if is_token(name) {
            out.push((format!("mcp-param-{name}"), encoded(&text)));
        }
    }
    out
}

/// Walk `schema`'s `properties` (and theirs), collecting each annotated
/// header name with the argument at that path, if any.
pub fn mirrored<'a>(schema: &'a Value, at: &'a Value, out: &mut Vec<(&'a str, Option<&'a Value>)>) {
    static NONE: Value = Value::Null;
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    for (key, property) in properties {
        let value = at.get(key);
        if let Some(name) = property.get("x-mcp-header").and_then(Value::as_str) {
            out.push((name, value));
        }
        mirrored(property, value.unwrap_or(&NONE), out);
    }
}

/// Whether `name` can be part of a header name (RFC 9110 `tchar`s).
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_a_header_cannot_carry_as_they_are_are_encoded() {
        assert_eq!(encoded("us-west1"), "us-west1");
        assert_eq!(encoded("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
        assert_eq!(encoded(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(encoded("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(encoded("=?base64?literal?="), "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "a literal that looks encoded is encoded");
        assert_eq!(decoded("=?base64?SGVsbG8?="), None, "unpadded Base64 is refused");
        assert_eq!(decoded("=?base64?SGVsbG8"), Some("=?base64?SGVsbG8".into()), "no suffix: a literal");
    }

    #[test]
    fn an_annotated_name_that_cannot_be_a_header_is_not_sent() {
        let schema = serde_json::json!({ "properties": { "a": { "x-mcp-header": "Bad Name" }, "b": { "x-mcp-header": "Good" } } });
        let params = serde_json::json!({ "name": "t", "arguments": { "a": "x", "b": true } });
        let h = mirrored_headers("tools/call", &params, Some(&schema));
        assert_eq!(h, [("mcp-method".into(), "tools/call".into()), ("mcp-name".into(), "t".into()), ("mcp-param-Good".into(), "true".into())]);
    }

    proptest! {
        /// What the gateway encodes reads back as it was.
        #[test]
        fn an_encoded_value_reads_back(s in "\\PC{0,64}") {
            prop_assert_eq!(decoded(&encoded(&s)), Some(s));
        }

        /// Decoding untrusted header bytes never panics.
        #[test]
        fn any_header_value_decodes_or_is_refused(s in "[ -~]{0,80}") {
            let _ = decoded(&s);
            let _ = decoded(&format!("=?base64?{s}?="));
        }
    }
}

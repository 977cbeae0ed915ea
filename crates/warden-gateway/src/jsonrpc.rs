//! One JSON-RPC 2.0 message from the bytes an MCP client POSTs to `/mcp`,
//! validated as the endpoint requires before anything else reads it. Pure:
//! bytes in, a typed message or a typed refusal out. The refusal's text is
//! the reason the audit record and the JSON-RPC error carry, and
//! [`EnvelopeError::code`] its JSON-RPC error code.

use serde_json::{Map, Number, Value};

pub use warden_core::jsonrpc_codes as codes;

/// A message id: JSON-RPC 2.0 allows a string, a number or null.
#[derive(Debug, Clone, PartialEq)]
pub enum Id {
    Null,
    Number(Number),
    String(String),
}

impl Id {
    /// The id as it is echoed in the answer.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.clone()),
        }
    }
}

/// A valid message. `params` is `null` when the message has none.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Has a `method` and an `id` member (`"id": null` included): it is answered.
    Request { id: Id, method: String, params: Value },
    /// Has a `method` and no `id` member: it needs no answer.
    Notification { method: String, params: Value },
    /// No (string) `method`, a `result` or an `error`: the client answering a
    /// request of the server's.
    Response { id: Id, result: Option<Value>, error: Option<Value> },
}

/// Why the bytes are not one JSON-RPC 2.0 message.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("parse error: body is not JSON ({0})")]
    NotJson(serde_json::Error),
    #[error("invalid request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)")]
    Batch,
    #[error("invalid request: a JSON-RPC message must be an object")]
    NotObject,
    /// `jsonrpc` is not `"2.0"`, the id is not a string, number or null, or
    /// it has none of `method`, `result` and `error`.
    #[error("invalid request: expected a JSON-RPC 2.0 request, notification or response")]
    NotJsonRpc,
}

impl EnvelopeError {
    /// The JSON-RPC error code of the answer.
    pub fn code(&self) -> i64 {
        match self {
            Self::NotJson(_) => codes::PARSE_ERROR,
            Self::Batch | Self::NotObject | Self::NotJsonRpc => codes::INVALID_REQUEST,
        }
    }
}

/// Parse and validate one message.
pub fn parse(bytes: &[u8]) -> Result<Message, EnvelopeError> {
    let msg: Value = serde_json::from_slice(bytes).map_err(EnvelopeError::NotJson)?;
    let mut obj = match msg {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err(EnvelopeError::Batch),
        _ => return Err(EnvelopeError::NotObject),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(EnvelopeError::NotJsonRpc);
    }
    let has_id = obj.contains_key("id");
    let id = match obj.remove("id") {
        None | Some(Value::Null) => Id::Null,
        Some(Value::Number(n)) => Id::Number(n),
        Some(Value::String(s)) => Id::String(s),
        Some(_) => return Err(EnvelopeError::NotJsonRpc),
    };
    let params = |obj: &mut Map<String, Value>| obj.remove("params").unwrap_or(Value::Null);
    match obj.remove("method") {
        Some(Value::String(method)) if has_id => Ok(Message::Request { id, params: params(&mut obj), method }),
        Some(Value::String(method)) => Ok(Message::Notification { params: params(&mut obj), method }),
        // A `method` that is not a string makes it no request; it may still be a response.
        _ if obj.contains_key("result") || obj.contains_key("error") => Ok(Message::Response { id, result: obj.remove("result"), error: obj.remove("error") }),
        _ => Err(EnvelopeError::NotJsonRpc),
    }
}

/// The invariants the `jsonrpc` fuzz target and the property tests check,
/// against the rule as `/mcp` wrote it inline before this module.
pub mod fuzz {
    use super::*;

    /// Parse `data`; panics if the outcome contradicts the bytes.
    pub fn exercise(data: &[u8]) {
        let outcome = parse(data);
        let obj = match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(obj)) => obj,
            other => {
                let refused = match other {
                    Ok(Value::Array(_)) => matches!(outcome, Err(EnvelopeError::Batch)),
                    Ok(_) => matches!(outcome, Err(EnvelopeError::NotObject)),
                    Err(_) => matches!(outcome, Err(EnvelopeError::NotJson(_))),
                };
                assert!(refused, "{outcome:?}");
                return;
            }
        };
        let method = obj.get("method").and_then(Value::as_str);
        let valid = obj.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
            && matches!(obj.get("id"), None | Some(Value::Null | Value::String(_) | Value::Number(_)))
            && (method.is_some() || obj.contains_key("result") || obj.contains_key("error"));
        let id = obj.get("id").cloned().unwrap_or(Value::Null);
        let params = obj.get("params").cloned().unwrap_or(Value::Null);
        match outcome {
            Err(e) => {
                assert!(!valid && matches!(e, EnvelopeError::NotJsonRpc), "{e}: {obj:?}");
                assert_eq!(e.code(), codes::INVALID_REQUEST);
            }
            Ok(Message::Request { id: i, method: m, params: p }) => {
                assert!(valid && obj.contains_key("id"));
                assert_eq!((i.to_value(), Some(m.as_str()), p), (id, method, params));
            }
            Ok(Message::Notification { method: m, params: p }) => {
                assert!(valid && !obj.contains_key("id"));
                assert_eq!((Some(m.as_str()), p), (method, params));
            }
            Ok(Message::Response { id: i, result, error }) => {
                assert!(valid && method.is_none() && (result.is_some() || error.is_some()));
                assert_eq!((i.to_value(), result.as_ref(), error.as_ref()), (id, obj.get("result"), obj.get("error")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(body: &str) -> (String, i64) {
        let e = parse(body.as_bytes()).unwrap_err();
        (e.to_string(), e.code())
    }

    #[test]
    fn a_request_keeps_its_id_method_and_params() {
        let m = parse(br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"x"}}"#).unwrap();
        assert_eq!(m, Message::Request { id: Id::String("a-1".into()), method: "tools/call".into(), params: json!({ "name": "x" }) });
        let m = parse(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).unwrap();
        assert_eq!(m, Message::Request { id: Id::Number(7.into()), method: "ping".into(), params: Value::Null });
    }

    #[test]
    fn a_null_id_is_a_request_and_a_missing_id_a_notification() {
        let m = parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).unwrap();
        assert!(matches!(m, Message::Request { id: Id::Null, .. }), "{m:?}");
        let m = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m, Message::Notification { method: "notifications/initialized".into(), params: Value::Null });
    }

    #[test]
    fn a_result_or_an_error_without_a_method_is_a_response() {
        let m = parse(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).unwrap();
        assert_eq!(m, Message::Response { id: Id::Number(3.into()), result: Some(json!({})), error: None });
        // A method that is not a string does not make it a request.
        let m = parse(br#"{"jsonrpc":"2.0","id":"s","method":5,"error":{"code":1}}"#).unwrap();
        assert_eq!(m, Message::Response { id: Id::String("s".into()), result: None, error: Some(json!({ "code": 1 })) });
    }

    #[test]
    fn refusals_carry_the_endpoint_s_reasons_and_codes() {
        let (why, code) = refusal("{not json");
        assert!(why.starts_with("parse error: body is not JSON (") && why.ends_with(')'), "{why}");
        assert_eq!(code, -32700);
        let invalid = |r: &str| (r.to_string(), -32600);
        assert_eq!(
            refusal(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            invalid("invalid request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)")
        );
        assert_eq!(refusal(r#""ping""#), invalid("invalid request: a JSON-RPC message must be an object"));
        let not_rpc = invalid("invalid request: expected a JSON-RPC 2.0 request, notification or response");
        for body in [
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"result":1}"#,
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":null}"#,
        ] {
            assert_eq!(refusal(body), not_rpc, "{body}");
        }
    }
}

//! One JSON-RPC 2.0 message from an untrusted body, validated as MCP's
//! streamable HTTP transport receives it. Pure, no IO; fuzzed.

use serde_json::{Map, Value};

/// JSON-RPC error codes used by the gateway beyond the standard ones.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    pub const DENIED: i64 = -32001;
    pub const NEEDS_APPROVAL: i64 = -32002;
    pub const OUT_OF_SCOPE: i64 = -32003;
    pub const UNAUTHENTICATED: i64 = -32004;
}

/// A well-formed message: a request (method and id), a notification
/// (method, no id) or a response (result or error).
#[derive(Debug, Clone, PartialEq)]
pub struct Message(Map<String, Value>);

impl Message {
    /// The method of a request or notification; none for a response.
    pub fn method(&self) -> Option<&str> {
        self.0.get("method").and_then(Value::as_str)
    }

    /// The id (null, a string or a number); none for a notification.
    pub fn id(&self) -> Option<&Value> {
        self.0.get("id")
    }

    pub fn params(&self) -> Option<&Value> {
        self.0.get("params")
    }
}

/// Why a body is not one JSON-RPC 2.0 message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("parse error: body is not JSON ({0})")]
    NotJson(String),
    #[error("invalid request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)")]
    Batch,
    #[error("invalid request: a JSON-RPC message must be an object")]
    NotAnObject,
    #[error("invalid request: expected a JSON-RPC 2.0 request, notification or response")]
    NotJsonRpc,
}

impl EnvelopeError {
    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i64 {
        match self {
            Self::NotJson(_) => codes::PARSE_ERROR,
            _ => codes::INVALID_REQUEST,
        }
    }
}

/// Parse and validate one message.
pub fn parse(body: &[u8]) -> Result<Message, EnvelopeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let obj = match v {
        Value::Object(o) => o,
        Value::Array(_) => return Err(EnvelopeError::Batch),
        _ => return Err(EnvelopeError::NotAnObject),
    };
    let id_ok = matches!(obj.get("id"), None | Some(Value::Null | Value::String(_) | Value::Number(_)));
    let method_ok = match obj.get("method") {
        Some(m) => m.is_string(),
        None => obj.contains_key("result") || obj.contains_key("error"),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || !id_ok || !method_ok {
        return Err(EnvelopeError::NotJsonRpc);
    }
    Ok(Message(obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_notifications_and_responses_parse() {
        let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!((m.method(), m.id()), (Some("tools/list"), Some(&Value::from(1))));
        let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!((n.method(), n.id()), (Some("notifications/initialized"), None));
        let r = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(r.method(), None);
    }

    #[test]
    fn what_is_not_one_message_is_refused_with_its_code() {
        let err = |b: &str| parse(b.as_bytes()).unwrap_err();
        assert_eq!(err("{").code(), codes::PARSE_ERROR);
        assert_eq!(err("[]"), EnvelopeError::Batch);
        assert_eq!(err("3"), EnvelopeError::NotAnObject);
        for bad in [
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        ] {
            assert_eq!(err(bad), EnvelopeError::NotJsonRpc, "{bad}");
            assert_eq!(err(bad).code(), codes::INVALID_REQUEST);
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(m) = parse(&body) {
                prop_assert!(m.method().is_some() || m.id().is_some() || m.0.contains_key("result") || m.0.contains_key("error"));
            }
        }
    }
}

//! The stateless revision of MCP (2026-07-28: SEP-2575, SEP-2243, SEP-2549)
//! at the front door. A request of that revision has no session and no
//! `initialize` before it: it carries its protocol version and its client's
//! capabilities in `_meta`, and mirrors its method, its name and annotated
//! arguments into headers that must agree with the body. This module owns
//! recognising such a request, checking it (`-32602`, `-32020`, `-32022`,
//! each with HTTP 400, before anything is forwarded), the discovery answer
//! and the result envelope (`resultType`, `serverInfo`, caching hints). What
//! the request asks for then runs through the same dispatch, policy and
//! audit as a session's.
//!
//! The header rules are checked here over axum's `HeaderMap` rather than by
//! an SDK: rmcp's server transport does not implement this revision's
//! header validation, and the checks must run before the gateway's own
//! dispatch, which a transport that owns the request would hide.

use crate::upstream::ClientOffers;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use warden_core::jsonrpc_codes as codes;
use warden_core::mcp_headers::{decoded, mirrored, named_field};

/// The stateless revision; the session revisions are
/// [`crate::upstream::PROTOCOL_VERSIONS`].
pub const VERSION: &str = warden_core::mcp_headers::STATELESS_VERSION;

const PROTOCOL_VERSION: &str = warden_core::mcp_headers::PROTOCOL_VERSION_KEY;
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub(super) const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The per-request fields of the revision's `_meta`: what the caller
/// declares about itself, never forwarded upstream (the gateway speaks to
/// each upstream for itself).
pub(super) const REQUEST_FIELDS: [&str; 4] = [PROTOCOL_VERSION, "io.modelcontextprotocol/clientInfo", CLIENT_CAPABILITIES, LOG_LEVEL];

/// Log levels (RFC 5424's names, least severe first).
pub(super) const LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// Every version the front door speaks, newest first.
pub(super) fn supported_versions() -> Vec<&'static str> {
    std::iter::once(VERSION).chain(crate::upstream::PROTOCOL_VERSIONS.iter().copied()).collect()
}

/// What a request of the stateless revision declared about its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Modern {
    /// What the client can be asked for (it declares them per request).
    pub offers: ClientOffers,
    /// The least severe log level the client wants messages of (an index
    /// into [`LEVELS`]); none when it asked for no logs.
    pub log_level: Option<usize>,
    /// How long the result may be taken as fresh, for what the revision
    /// caches.
    pub ttl_ms: Option<u64>,
}

impl Modern {
    /// Whether a log message of `level` goes to this client: only when the
    /// request asked for logs, and at or above the level it asked for.
    pub(crate) fn wants_log(&self, level: &str) -> bool {
        let rank = LEVELS.iter().position(|x| *x == level).unwrap_or(0);
        self.log_level.is_some_and(|min| rank >= min)
    }
}

/// A request refused before it is understood: its HTTP status, JSON-RPC
/// code, message and data.
#[derive(Debug, PartialEq)]
pub(super) struct Rejection {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

fn rejection(code: i64, message: String) -> Rejection {
    Rejection { status: StatusCode::BAD_REQUEST, code, message, data: None }
}

fn mismatch(message: impl Into<String>) -> Rejection {
    rejection(codes::HEADER_MISMATCH, format!("header mismatch: {}", message.into()))
}

pub(super) fn malformed(message: impl Into<String>) -> Rejection {
    rejection(codes::INVALID_PARAMS, message.into())
}

/// Whether a GET or DELETE is of the stateless revision, which has neither
/// (405).
pub(super) fn stateless_header(headers: &HeaderMap) -> bool {
    headers.get("mcp-protocol-version").is_some_and(|v| v == VERSION)
}

/// Whether a request is of the stateless revision: its version header names
/// no session revision (an unknown version is answered as this revision
/// answers it, with the versions the gateway speaks), or it has no header
/// and no session but declares a version in its `_meta`.
pub(super) fn is_modern(headers: &HeaderMap, params: &Value) -> bool {
    match headers.get("mcp-protocol-version") {
        Some(v) => !v.to_str().is_ok_and(|v| crate::upstream::PROTOCOL_VERSIONS.contains(&v)),
        None => !headers.contains_key("mcp-session-id") && params.get("_meta").and_then(|m| m.get(PROTOCOL_VERSION)).is_some(),
    }
}

/// Check a request of the stateless revision: its `_meta`, then its headers
/// against its body. `tool_schema` is the `inputSchema` of the tool a
/// `tools/call` names, for its `x-mcp-header` arguments.
pub(super) fn admit(headers: &HeaderMap, method: &str, params: &Value, tool_schema: Option<&Value>) -> Result<Modern, Rejection> {
    let meta = params
        .get("_meta")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(format!("a request of MCP {VERSION} carries params._meta with {PROTOCOL_VERSION} and {CLIENT_CAPABILITIES}")))?;
    let version = meta.get(PROTOCOL_VERSION).and_then(Value::as_str).ok_or_else(|| malformed(format!("params._meta needs {PROTOCOL_VERSION}")))?;
    let capabilities =
        meta.get(CLIENT_CAPABILITIES).filter(|c| c.is_object()).ok_or_else(|| malformed(format!("params._meta needs {CLIENT_CAPABILITIES}, an object")))?;
    let header = text(headers, "mcp-protocol-version")?.ok_or_else(|| mismatch("the MCP-Protocol-Version header is missing"))?;
    if header != version {
        return Err(mismatch(format!("MCP-Protocol-Version {header:?} is not the body's {PROTOCOL_VERSION} {version:?}")));
    }
    if version != VERSION {
        let mut r = rejection(codes::UNSUPPORTED_PROTOCOL_VERSION, format!("unsupported protocol version {version:?}: use one of the supported"));
        r.data = Some(json!({ "supported": supported_versions(), "requested": version }));
        return Err(r);
    }
    let named = text(headers, "mcp-method")?.ok_or_else(|| mismatch("the Mcp-Method header is missing"))?;
    if named != method {
        return Err(mismatch(format!("Mcp-Method {named:?} is not the body's method {method:?}")));
    }
    if let Some(field) = named_field(method) {
        let header = text(headers, "mcp-name")?.ok_or_else(|| mismatch(format!("{method} needs the Mcp-Name header")))?;
        let header = decoded(header).ok_or_else(|| mismatch("Mcp-Name is not valid =?base64?...?= encoding"))?;
        if params.get(field).and_then(Value::as_str) != Some(header.as_str()) {
            return Err(mismatch(format!("Mcp-Name is not the body's params.{field}")));
        }
    }
    if let Some(schema) = tool_schema {
        check_arguments(headers, schema, params.get("arguments").unwrap_or(&Value::Null))?;
    }
    let log_level = match meta.get(LOG_LEVEL) {
        None => None,
        Some(l) => Some(
            l.as_str()
                .and_then(|l| LEVELS.iter().position(|x| *x == l))
                .ok_or_else(|| malformed(format!("{LOG_LEVEL} must be one of {}", LEVELS.join(", "))))?,
        ),
    };
    Ok(Modern { offers: ClientOffers::of(capabilities), log_level, ttl_ms: cache_ttl(method) })
}

/// The `_meta` the gateway sends upstream with a request of the stateless
/// revision: what may go on of the client's (see `stream::with_meta`), and
/// the gateway's own version, identity and the client capabilities it
/// relays.
pub(crate) fn upstream_meta(params: &mut Value, offers: ClientOffers, log_level: Option<usize>) {
    let Some(p) = params.as_object_mut() else { return };
    let meta = p.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
    let Some(m) = meta.as_object_mut() else { return };
    m.insert(PROTOCOL_VERSION.into(), VERSION.into());
    m.insert("io.modelcontextprotocol/clientInfo".into(), json!({ "name": "warden-gateway", "version": env!("CARGO_PKG_VERSION") }));
    m.insert(CLIENT_CAPABILITIES.into(), offers.capabilities());
    if let Some(l) = log_level {
        m.insert(LOG_LEVEL.into(), LEVELS[l].into());
    }
}

/// What the gateway hands a client as an upstream's `requestState` (MRTR,
/// SEP-2322): the upstream's own state, sealed to the agent, the request it
/// came with (method, name as the client named it, the server that asked)
/// and the input requests the gateway let through, for a short lifetime,
/// so that a client can neither alter it, replay it on another request,
/// answer what was never asked nor pass it to another agent.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RequestState {
    #[serde(rename = "m")]
    pub method: String,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "v")]
    pub server: String,
    /// The keys of the input requests that reached the client: the only
    /// `inputResponses` that go upstream.
    #[serde(rename = "k")]
    pub asked: Vec<String>,
    /// The upstream's state, as it gave it.
    #[serde(rename = "s", skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The approval the call is held for, when it is the gateway that asked
    /// (the retry waits for that one rather than asking again).
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// Unix seconds after which it is refused.
    #[serde(rename = "e")]
    pub expires: i64,
}

impl RequestState {
    /// How long a client may take to gather what an upstream asked for.
    pub(crate) const LIFETIME_SECS: i64 = 600;

    pub(crate) fn seal(&self, key: &[u8; 32], agent: &str) -> String {
        crate::catalog::seal(key, crate::catalog::REQUEST_STATE, agent, self)
    }

    /// The state in `sealed`, if it is this gateway's for `agent`'s
    /// request `method` of `name` at `server`, unaltered and not expired.
    pub(crate) fn open(sealed: &str, key: &[u8; 32], agent: &str, (method, name, server): (&str, &str, Option<&str>), now: i64) -> Result<Self, Rejection> {
        let s: Self = crate::catalog::open(sealed, key, crate::catalog::REQUEST_STATE, agent)
            .ok_or_else(|| malformed("params.requestState is not one the gateway gave this agent, or was altered: retry the request without it"))?;
        if s.method != method || s.name != name || Some(s.server.as_str()) != server {
            return Err(malformed("params.requestState belongs to another request: send it only with the request it came with"));
        }
        if s.expires < now {
            return Err(malformed("params.requestState has expired: retry the request without it"));
        }
        Ok(s)
    }
}

/// The name a request of the stateless revision names (the `Mcp-Name`
/// source), for binding its `requestState`.
pub(crate) fn request_name<'p>(method: &str, params: &'p Value) -> &'p str {
    named_field(method).and_then(|f| params.get(f)).and_then(Value::as_str).unwrap_or_default()
}

/// The requests an upstream may answer `input_required` (SEP-2322).
pub(crate) fn takes_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// How long a listing may be taken as fresh. Listings are per caller
/// (grant, policy, approvals), hence `private`; a client that holds one
/// this long can still call only what is allowed at the time of the call.
const LISTING_TTL_MS: u64 = 60_000;

fn cache_ttl(method: &str) -> Option<u64> {
    match method {
        "server/discover" | "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => Some(LISTING_TTL_MS),
        // What a resource reads as is the upstream's to say; the gateway
        // cannot tell how long it stays true.
        "resources/read" => Some(0),
        _ => None,
    }
}

/// A header as text; one that is not visible ASCII is malformed.
fn text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Rejection> {
    headers.get(name).map(|v| v.to_str().map_err(|_| mismatch(format!("the {name} header is not visible ASCII")))).transpose()
}

/// The arguments a tool's schema mirrors into `Mcp-Param-{Name}` headers
/// (an `x-mcp-header` on a property reached through `properties` only),
/// each checked against its header: present when the argument is, equal to
/// it once decoded (numbers numerically), absent when it is.
fn check_arguments(headers: &HeaderMap, schema: &Value, arguments: &Value) -> Result<(), Rejection> {
    let mut annotated = Vec::new();
    mirrored(schema, arguments, &mut annotated);
    for (name, value) in annotated {
        let header_name = format!("mcp-param-{}", name.to_ascii_lowercase());
        let header = text(headers, &header_name)?;
        match (value.filter(|v| !v.is_null()), header) {
            (None, None) => {}
            (Some(_), None) => return Err(mismatch(format!("the argument Mcp-Param-{name} mirrors is in the body, but its header is missing"))),
            (None, Some(_)) => return Err(mismatch(format!("Mcp-Param-{name} is sent for an argument the body does not have"))),
            (Some(v), Some(h)) => {
                let h = decoded(h).ok_or_else(|| mismatch(format!("Mcp-Param-{name} is not valid =?base64?...?= encoding")))?;
                if !same_value(v, &h) {
                    return Err(mismatch(format!("Mcp-Param-{name} is not the body's value")));
                }
            }
        }
    }
    Ok(())
}

fn same_value(body: &Value, header: &str) -> bool {
    match body {
        Value::String(s) => s == header,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Number(n) => header.parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(h, n)| h == n),
        _ => false,
    }
}

impl Modern {
    /// The envelope of a result of the stateless revision: its
    /// `resultType`, the gateway's identity, and, for what the revision
    /// caches, the hints.
    pub(super) fn envelope(&self, result: &mut Value) {
        let Some(r) = result.as_object_mut() else { return };
        r.entry("resultType").or_insert_with(|| json!("complete"));
        let meta = r.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = meta.as_object_mut() {
            m.insert(SERVER_INFO.into(), json!({ "name": "warden-gateway", "version": env!("CARGO_PKG_VERSION") }));
        }
        if let Some(ttl) = self.ttl_ms.filter(|_| r.get("resultType").and_then(Value::as_str) == Some("complete")) {
            r.insert("ttlMs".into(), ttl.into());
            r.insert("cacheScope".into(), "private".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use warden_core::mcp_headers::mirrored_headers;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn meta() -> Value {
        json!({ PROTOCOL_VERSION: VERSION, CLIENT_CAPABILITIES: { "sampling": {} } })
    }

    fn standard(method: &str) -> HeaderMap {
        headers(&[("mcp-protocol-version", VERSION), ("mcp-method", method)])
    }

    #[test]
    fn a_request_is_of_the_stateless_revision_by_its_header_or_its_meta() {
        let params = json!({ "_meta": meta() });
        assert!(is_modern(&standard("tools/list"), &json!({})));
        assert!(is_modern(&headers(&[("mcp-protocol-version", "1900-01-01")]), &json!({})), "an unknown version is answered as this revision does");
        assert!(!is_modern(&headers(&[("mcp-protocol-version", "2025-11-25")]), &params), "a session revision's header wins");
        assert!(is_modern(&HeaderMap::new(), &params));
        assert!(!is_modern(&headers(&[("mcp-session-id", "abc")]), &params));
        assert!(!is_modern(&HeaderMap::new(), &json!({})));
    }

    #[test]
    fn meta_is_checked_before_headers_and_each_refusal_has_its_code() {
        let code = |h: &HeaderMap, method: &str, params: Value| admit(h, method, &params, None).unwrap_err().code;
        assert_eq!(code(&standard("tools/list"), "tools/list", json!({})), codes::INVALID_PARAMS);
        assert_eq!(code(&standard("tools/list"), "tools/list", json!({ "_meta": { CLIENT_CAPABILITIES: {} } })), codes::INVALID_PARAMS);
        assert_eq!(code(&standard("tools/list"), "tools/list", json!({ "_meta": { PROTOCOL_VERSION: VERSION } })), codes::INVALID_PARAMS);
        let m = json!({ "_meta": meta() });
        assert_eq!(code(&headers(&[("mcp-method", "tools/list")]), "tools/list", m.clone()), codes::HEADER_MISMATCH);
        assert_eq!(code(&headers(&[("mcp-protocol-version", "2025-11-25"), ("mcp-method", "tools/list")]), "tools/list", m.clone()), codes::HEADER_MISMATCH);
        assert_eq!(code(&standard("prompts/list"), "tools/list", m.clone()), codes::HEADER_MISMATCH);
        assert_eq!(code(&standard("TOOLS/LIST"), "tools/list", m.clone()), codes::HEADER_MISMATCH, "values are case-sensitive");
        assert_eq!(code(&headers(&[("mcp-protocol-version", VERSION)]), "tools/list", m), codes::HEADER_MISMATCH);
        let old = json!({ "_meta": { PROTOCOL_VERSION: "1900-01-01", CLIENT_CAPABILITIES: {} } });
        let r = admit(&headers(&[("mcp-protocol-version", "1900-01-01"), ("mcp-method", "x")]), "x", &old, None).unwrap_err();
        assert_eq!((r.status, r.code), (StatusCode::BAD_REQUEST, codes::UNSUPPORTED_PROTOCOL_VERSION));
        assert_eq!(r.data.unwrap()["requested"], "1900-01-01");
    }

    #[test]
    fn the_name_header_must_be_the_body_s_name_or_uri() {
        let call = json!({ "name": "crm__lookup", "_meta": meta() });
        let mut h = standard("tools/call");
        assert_eq!(admit(&h, "tools/call", &call, None).unwrap_err().code, codes::HEADER_MISMATCH, "required");
        h.insert("mcp-name", HeaderValue::from_static("crm__lookup"));
        assert!(admit(&h, "tools/call", &call, None).is_ok());
        h.insert("mcp-name", HeaderValue::from_static("  crm__lookup  "));
        assert!(admit(&h, "tools/call", &call, None).is_err());
        let read = json!({ "uri": "file:///ü.txt", "_meta": meta() });
        let mut h = standard("resources/read");
        h.insert("mcp-name", HeaderValue::from_static("=?base64?ZmlsZTovLy/DvC50eHQ=?="));
        assert!(admit(&h, "resources/read", &read, None).is_ok());
    }

    #[test]
    fn mirrored_arguments_must_match_their_headers() {
        let schema = json!({ "properties": {
            "region": { "type": "string", "x-mcp-header": "Region" },
            "n": { "type": "integer", "x-mcp-header": "N" },
            "opts": { "properties": { "mode": { "x-mcp-header": "Mode" } } },
        } });
        let params = |args: Value| json!({ "name": "t", "arguments": args, "_meta": meta() });
        let with = |extra: &[(&'static str, &str)]| {
            let mut h = standard("tools/call");
            h.insert("mcp-name", HeaderValue::from_static("t"));
            for (k, v) in extra {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let ok = |h: HeaderMap, args: Value| admit(&h, "tools/call", &params(args), Some(&schema)).is_ok();
        assert!(ok(with(&[]), json!({})));
        assert!(ok(with(&[("mcp-param-region", "us-west1")]), json!({ "region": "us-west1" })));
        assert!(ok(with(&[("mcp-param-region", "=?base64?SGVsbG8=?=")]), json!({ "region": "Hello" })));
        assert!(!ok(with(&[("mcp-param-region", "=?base64?SGVsbG8?=")]), json!({ "region": "Hello" })), "unpadded");
        assert!(!ok(with(&[("mcp-param-region", "=?base64?SGVs!!!bG8=?=")]), json!({ "region": "Hello" })));
        assert!(ok(with(&[("mcp-param-region", "SGVsbG8=")]), json!({ "region": "SGVsbG8=" })), "no sentinel: literal");
        assert!(!ok(with(&[]), json!({ "region": "us-west1" })), "omitted but in the body");
        assert!(ok(with(&[]), json!({ "region": null })));
        assert!(ok(with(&[("mcp-param-n", "42.0")]), json!({ "n": 42 })), "numbers compare numerically");
        assert!(!ok(with(&[("mcp-param-n", "43")]), json!({ "n": 42 })));
        assert!(!ok(with(&[]), json!({ "opts": { "mode": "fast" } })), "nested through properties");
        assert!(ok(with(&[("mcp-param-mode", "fast")]), json!({ "opts": { "mode": "fast" } })));
    }

    #[test]
    fn logs_go_only_to_a_request_that_asked_at_its_level() {
        let m = |level: Option<usize>| Modern { offers: ClientOffers::default(), log_level: level, ttl_ms: None };
        assert!(!m(None).wants_log("emergency"));
        assert!(m(Some(3)).wants_log("error"));
        assert!(!m(Some(3)).wants_log("info"));
    }

    #[test]
    fn results_get_their_envelope_and_only_cacheable_ones_hints() {
        let of = |method: &str| Modern { offers: ClientOffers::default(), log_level: None, ttl_ms: cache_ttl(method) };
        let mut r = json!({ "tools": [] });
        of("tools/list").envelope(&mut r);
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["ttlMs"], LISTING_TTL_MS);
        assert_eq!(r["_meta"][SERVER_INFO]["name"], "warden-gateway");
        let mut r = json!({ "content": [], "_meta": { "x": 1 } });
        of("tools/call").envelope(&mut r);
        assert_eq!(r["_meta"]["x"], 1, "the upstream's own _meta stays");
        assert!(r.get("ttlMs").is_none());
        let mut r = json!({ "resultType": "input_required", "requestState": "s" });
        of("resources/read").envelope(&mut r);
        assert!(r.get("ttlMs").is_none(), "interim results are not cacheable");
    }

    #[test]
    fn the_gateway_mirrors_what_it_checks() {
        let schema = json!({ "properties": { "region": { "type": "string", "x-mcp-header": "Region" }, "n": { "x-mcp-header": "N" } } });
        let params = json!({ "name": "sql", "arguments": { "region": "Zürich", "n": 3 }, "_meta": meta() });
        let mut h = HeaderMap::new();
        for (k, v) in mirrored_headers("tools/call", &params, Some(&schema)) {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(&v).unwrap());
        }
        h.insert("mcp-protocol-version", HeaderValue::from_static(VERSION));
        assert!(h.get("mcp-param-region").unwrap().to_str().unwrap().starts_with("=?base64?"));
        assert!(admit(&h, "tools/call", &params, Some(&schema)).is_ok(), "what it sends passes its own check");
    }

    #[test]
    fn a_request_state_is_taken_back_only_unaltered_by_its_agent_for_its_request() {
        let key = [7u8; 32];
        let s = RequestState {
            method: "tools/call".into(),
            name: "t".into(),
            server: "crm".into(),
            asked: vec!["q".into()],
            upstream: Some("up".into()),
            approval: None,
            expires: 100,
        };
        let sealed = s.seal(&key, "a");
        let call = ("tools/call", "t", Some("crm"));
        assert_eq!(RequestState::open(&sealed, &key, "a", call, 50), Ok(s));
        assert!(RequestState::open(&sealed, &key, "b", call, 50).is_err(), "another agent");
        assert!(RequestState::open(&sealed, &key, "a", ("tools/call", "u", Some("crm")), 50).is_err(), "another tool");
        assert!(RequestState::open(&sealed, &key, "a", ("prompts/get", "t", Some("crm")), 50).is_err(), "another method");
        assert!(RequestState::open(&sealed, &key, "a", ("tools/call", "t", Some("hr")), 50).is_err(), "the name now another server's");
        assert!(RequestState::open(&sealed, &key, "a", ("tools/call", "t", None), 50).is_err(), "a name that resolves to nothing");
        let r = RequestState::open(&sealed, &key, "a", call, 101).unwrap_err();
        assert_eq!((r.code, r.status), (codes::INVALID_PARAMS, StatusCode::BAD_REQUEST), "expired");
        let mut tampered = sealed.clone().into_bytes();
        tampered[2] ^= 1;
        assert!(RequestState::open(std::str::from_utf8(&tampered).unwrap(), &key, "a", call, 50).is_err());
        let cursor = crate::catalog::Cursor { server: "crm".into(), upstream: None }.encode(&key, "a");
        assert!(RequestState::open(&cursor, &key, "a", call, 50).is_err(), "a listing cursor is not a request state");
    }
}

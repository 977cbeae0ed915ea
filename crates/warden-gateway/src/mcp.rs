//! The MCP streamable-HTTP endpoint (`POST/GET/DELETE /mcp`). Responses are
//! single JSON bodies; the gateway opens no server-initiated streams.

use crate::authn::Authenticated;
use crate::state::{Gateway, Session, now_secs};
use crate::upstream::UpstreamError;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use warden_core::{AuditEvent, Decision, EventKind, Obligation, Tool, ToolRef, ToolStatus, canonical_json, sha256_hex};
use warden_inspect::Rule;
use warden_policy::{AgentFacts, CallFacts, Findings, PolicyBundle, RequestFacts, ToolFacts};

const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
const MAX_SESSIONS: usize = 100_000;
/// Sessions idle this long are dropped when the table gets large.
const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

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

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new().route("/mcp", post(handle_post).get(handle_get).delete(handle_delete)).with_state(gw)
}

fn correlation_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("OS random source available");
    hex::encode(b)
}

fn rpc_error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut e = json!({ "code": code, "message": message });
    if let Some(d) = data {
        e["data"] = d;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": e })
}

fn respond(status: StatusCode, body: Value, corr: &str) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    r.headers_mut().insert("x-warden-correlation-id", HeaderValue::from_str(corr).expect("hex"));
    r
}

/// Add a `WWW-Authenticate` challenge, unless the answer became another
/// error (the audit write failed) on the way.
fn with_challenge(mut resp: Response, status: StatusCode, challenge: &str) -> Response {
    if resp.status() == status {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(challenge).unwrap_or(HeaderValue::from_static("DPoP")));
    }
    resp
}

/// Per-request context carried into the audit record.
struct Call<'a> {
    gw: &'a Gateway,
    corr: String,
    start: Instant,
    now: i64,
}

impl Call<'_> {
    fn event(&self, kind: EventKind, auth: Option<&Authenticated>) -> AuditEvent {
        let mut ev = AuditEvent { kind: Some(kind), correlation_id: Some(self.corr.clone()), ..Default::default() };
        if let Some(a) = auth {
            ev.agent = Some(a.claims.agent().to_string());
            ev.subject = Some(a.claims.sub.clone());
            ev.task = Some(a.claims.task.clone());
            ev.token_id = Some(a.claims.jti.clone());
            let chain = a.claims.delegation();
            if chain.len() > 1 {
                ev.delegation = chain.iter().map(|s| s.to_string()).collect();
            }
        }
        ev
    }

    /// Audit, then answer; if the audit write fails, the answer is an error.
    async fn finish(&self, mut ev: AuditEvent, status: StatusCode, body: Value, id: &Value) -> Response {
        ev.latency_us = Some(self.start.elapsed().as_micros() as u64);
        match self.gw.audit.record(ev).await {
            Ok(_) => respond(status, body, &self.corr),
            Err(e) => respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(id, codes::INTERNAL, &e.to_string(), None), &self.corr),
        }
    }
}

async fn handle_post(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let call = Call { gw: &gw, corr: correlation_id(), start: Instant::now(), now: now_secs() };
    let null = Value::Null;
    let auth = match gw.authenticate(&headers, "POST", call.now) {
        Ok(a) => a,
        Err(f) => {
            let mut ev = call.event(EventKind::AuthnFailure, None);
            ev.agent = f.agent.clone();
            ev.token_id = f.token_id.clone();
            ev.decision = "deny".into();
            ev.reason = Some(f.description.clone());
            ev.remediation = Some("obtain a fresh DPoP-bound token from the token endpoint and sign a new proof for each request".into());
            let msg = format!("unauthorized: {}", f.description);
            let resp = call.finish(ev, f.status, rpc_error(&null, codes::UNAUTHENTICATED, &msg, None), &null).await;
            return with_challenge(resp, f.status, &f.challenge(&gw.config.resource_metadata, None));
        }
    };
    // An authenticated request refused before it is understood.
    let invalid = |ev_reason: String, code: i64, status: StatusCode| {
        let mut ev = call.event(EventKind::McpRequest, Some(&auth));
        ev.decision = "deny".into();
        ev.reason = Some(ev_reason.clone());
        (ev, status, rpc_error(&Value::Null, code, &ev_reason, None))
    };
    let bytes = match axum::body::to_bytes(body, gw.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            let reason = format!("request body too large: the limit is {} bytes", gw.config.max_body_bytes);
            let (ev, st, body) = invalid(reason, codes::INVALID_REQUEST, StatusCode::PAYLOAD_TOO_LARGE);
            return call.finish(ev, st, body, &null).await;
        }
    };
    let msg: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let (ev, st, body) = invalid(format!("parse error: body is not JSON ({e})"), codes::PARSE_ERROR, StatusCode::BAD_REQUEST);
            return call.finish(ev, st, body, &null).await;
        }
    };
    let Some(obj) = msg.as_object() else {
        let what = if msg.is_array() { "JSON-RPC batches are not supported (removed in MCP 2025-06-18)" } else { "a JSON-RPC message must be an object" };
        let (ev, st, body) = invalid(format!("invalid request: {what}"), codes::INVALID_REQUEST, StatusCode::BAD_REQUEST);
        return call.finish(ev, st, body, &null).await;
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let method = obj.get("method").and_then(Value::as_str);
    let id_ok = matches!(id, Value::Null | Value::String(_) | Value::Number(_));
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || !id_ok || (method.is_none() && !obj.contains_key("result") && !obj.contains_key("error")) {
        let (ev, st, body) =
            invalid("invalid request: expected a JSON-RPC 2.0 request, notification or response".into(), codes::INVALID_REQUEST, StatusCode::BAD_REQUEST);
        return call.finish(ev, st, body, &null).await;
    }
    let Some(method) = method else {
        // A response to a server request; the gateway sends none, so ignore it.
        return respond(StatusCode::ACCEPTED, Value::Null, &call.corr);
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);

    if method == "initialize" {
        return initialize(&call, &auth, &id, &params).await;
    }
    match session_for(&gw, &headers, &auth) {
        Ok(()) => {}
        Err((status, message)) => return respond(status, rpc_error(&id, codes::INVALID_REQUEST, message, None), &call.corr),
    };
    if let Some(v) = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok())
        && !SUPPORTED_VERSIONS.contains(&v)
    {
        return respond(StatusCode::BAD_REQUEST, rpc_error(&id, codes::INVALID_REQUEST, &format!("unsupported MCP-Protocol-Version {v}"), None), &call.corr);
    }
    if obj.get("id").is_none() {
        // Notifications need no answer.
        return respond(StatusCode::ACCEPTED, Value::Null, &call.corr);
    }
    match method {
        "ping" => respond(StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": {} }), &call.corr),
        "tools/list" => list_tools(&call, &auth, &id).await,
        "tools/call" => call_tool(&call, &auth, &id, &params).await,
        other => respond(
            StatusCode::OK,
            rpc_error(&id, codes::METHOD_NOT_FOUND, &format!("method {other} is not available through the Warden gateway"), None),
            &call.corr,
        ),
    }
}

fn session_for(gw: &Gateway, headers: &HeaderMap, auth: &Authenticated) -> Result<(), (StatusCode, &'static str)> {
    let sid =
        headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).ok_or((StatusCode::BAD_REQUEST, "missing Mcp-Session-Id header: send initialize first"))?;
    let mut sessions = gw.sessions.lock().expect("sessions lock");
    match sessions.get_mut(sid) {
        // A session belongs to the agent that opened it; another agent's
        // token cannot ride on it.
        Some(s) if s.agent == auth.claims.agent() => {
            s.last_seen = Instant::now();
            Ok(())
        }
        _ => Err((StatusCode::NOT_FOUND, "unknown or expired session: initialize a new one")),
    }
}

async fn initialize(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value) -> Response {
    let requested = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(SUPPORTED_VERSIONS[1]);
    let version = if SUPPORTED_VERSIONS.contains(&requested) { requested } else { SUPPORTED_VERSIONS[0] };
    let sid = format!("{}{}", correlation_id(), correlation_id());
    {
        let mut sessions = call.gw.sessions.lock().expect("sessions lock");
        if sessions.len() >= MAX_SESSIONS / 10 {
            sessions.retain(|_, s| s.last_seen.elapsed() < SESSION_IDLE);
        }
        if sessions.len() >= MAX_SESSIONS {
            return respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(id, codes::INTERNAL, "too many open sessions; retry later", None), &call.corr);
        }
        sessions.insert(sid.clone(), Session { agent: auth.claims.agent().to_string(), last_seen: Instant::now() });
    }
    let mut ev = call.event(EventKind::McpRequest, Some(auth));
    ev.action = Some("initialize".into());
    ev.decision = "allow".into();
    let result = json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "warden-gateway", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Tools are named SERVER__TOOL. Every call is checked against policy and audited.",
    });
    let mut resp = call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": result }), id).await;
    resp.headers_mut().insert("mcp-session-id", HeaderValue::from_str(&sid).expect("hex"));
    resp
}

async fn handle_get() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST, DELETE")], "this gateway does not open server-initiated streams").into_response()
}

async fn handle_delete(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let auth = match gw.authenticate(&headers, "DELETE", now_secs()) {
        Ok(a) => a,
        Err(f) => {
            let challenge = f.challenge(&gw.config.resource_metadata, None);
            return (f.status, [(header::WWW_AUTHENTICATE, challenge)], f.description).into_response();
        }
    };
    let Some(sid) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, "missing Mcp-Session-Id").into_response();
    };
    let mut sessions = gw.sessions.lock().expect("sessions lock");
    match sessions.get(sid) {
        Some(s) if s.agent == auth.claims.agent() => {
            sessions.remove(sid);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// How a decision is asked: for a call (with the arguments' findings), for
/// its result (with the result's findings), or for a listing.
enum Ask<'a> {
    Listing,
    Call(&'a Findings),
    Result(&'a Findings),
}

/// Finding kinds for the audit record (never values).
fn finding_labels(prefix: &str, s: &Findings) -> Vec<String> {
    let mut out: Vec<String> = s.pii.iter().map(|k| format!("{prefix}.pii.{k}")).collect();
    out.extend(s.secrets.iter().map(|k| format!("{prefix}.secrets.{k}")));
    out.extend(s.injection_signals.iter().map(|k| format!("{prefix}.injection.{k}")));
    if s.injection_score > 0 {
        out.push(format!("{prefix}.injection_score.{}", s.injection_score));
    }
    out
}

/// Apply a decision's `@redact` obligations to a value (arguments or a
/// result), when its scan found something they could apply to; returns how
/// many spans were replaced.
fn redact(gw: &Gateway, v: &mut Value, obligations: &[Obligation], found: &Findings) -> u32 {
    if obligations.is_empty() || found.pii_count + found.secret_count == 0 {
        return 0;
    }
    let rules: Vec<Rule> = obligations.iter().map(Rule::from_obligation).collect();
    gw.redactor.redact_json(&gw.inspector, v, &rules) as u32
}

fn facts(auth: &Authenticated, tool: &Tool, args: &Value, ask: Ask<'_>, now: i64) -> CallFacts {
    let (listing, result, findings) = match ask {
        Ask::Listing => (true, false, Findings::default()),
        Ask::Call(f) => (false, false, f.clone()),
        Ask::Result(f) => (false, true, f.clone()),
    };
    let a = &auth.agent;
    CallFacts {
        agent: AgentFacts {
            id: a.id.to_string(),
            name: a.id.name().into(),
            owner: a.owner.clone(),
            purpose: a.purpose.clone(),
            autonomy: i64::from(a.autonomy),
            risk_score: 0,
        },
        tool: ToolFacts {
            server: tool.tool.server.clone(),
            name: tool.tool.tool.clone(),
            sensitivity: tool.sensitivity.as_str().into(),
            sensitivity_level: tool.sensitivity.level(),
            action_class: tool.action_class.as_str().into(),
            exfil_capable: tool.exfil_capable,
        },
        request: RequestFacts {
            task: auth.claims.task.clone(),
            in_scope: auth.claims.in_scope(&tool.tool) && a.may_use(&tool.tool),
            delegation_depth: auth.claims.delegation().len() as i64 - 1,
            now,
            args: args.clone(),
            listing,
            findings,
            result,
        },
    }
}

async fn list_tools(call: &Call<'_>, auth: &Authenticated, id: &Value) -> Response {
    let snap = call.gw.snapshot();
    let policy = call.gw.policy();
    let empty = json!({});
    let tools: Vec<Value> = {
        let defs = call.gw.definitions.read().expect("definitions lock");
        defs.iter()
            .filter(|(tref, _)| auth.claims.in_scope(tref) && auth.agent.may_use(tref))
            .filter_map(|(tref, def)| snap.tools.get(tref).filter(|t| t.is_callable()).map(|t| (t, def)))
            .filter(|(t, _)| policy.decide(&facts(auth, t, &empty, Ask::Listing, call.now)).is_allow())
            .map(|(t, def)| {
                let mut d = def.clone();
                d["name"] = t.tool.federated_name().into();
                d
            })
            .collect()
    };
    let mut ev = call.event(EventKind::ToolList, Some(auth));
    ev.action = Some("tools/list".into());
    ev.decision = "allow".into();
    ev.reason = Some(format!("{} tools visible", tools.len()));
    call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": { "tools": tools } }), id).await
}

fn unavailable_reason(tool: Option<&Tool>, tref: &ToolRef) -> String {
    match tool.map(|t| t.status) {
        None => format!("tool {tref} is not registered with the gateway"),
        Some(ToolStatus::Pending) => format!("tool {tref} has not been approved by an operator (warden tool approve {tref})"),
        Some(ToolStatus::Changed) => format!(
            "tool {tref} changed its definition upstream since it was approved (possible tool poisoning or rug pull); it is blocked until an operator reviews and re-approves it"
        ),
        Some(ToolStatus::Disabled) => format!("tool {tref} is disabled by an operator"),
        Some(ToolStatus::Approved) => format!("tool {tref} has not been seen upstream with its pinned definition"),
    }
}

async fn call_tool(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value) -> Response {
    let mut ev = call.event(EventKind::ToolCall, Some(auth));
    ev.action = Some("call_tool".into());
    let deny = |mut ev: AuditEvent, reason: String, code: i64, data: Option<Value>| {
        ev.decision = "deny".into();
        ev.reason = Some(reason.clone());
        let message = format!("denied: {reason}");
        (ev, rpc_error(id, code, &message, data))
    };
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        let (ev, body) = deny(ev, "tools/call needs params.name".into(), codes::INVALID_PARAMS, None);
        return call.finish(ev, StatusCode::OK, body, id).await;
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            let (ev, body) = deny(ev, "params.arguments must be an object".into(), codes::INVALID_PARAMS, None);
            return call.finish(ev, StatusCode::OK, body, id).await;
        }
    };
    ev.args_sha256 = Some(sha256_hex(canonical_json(&args).as_bytes()));
    ev.tool = Some(name.to_string());
    let Some(tref) = ToolRef::from_federated_name(name) else {
        let (ev, body) = deny(ev, format!("unknown tool {name:?}: gateway tools are named SERVER__TOOL"), codes::INVALID_PARAMS, None);
        return call.finish(ev, StatusCode::OK, body, id).await;
    };
    ev.tool = Some(tref.to_string());
    if !(auth.claims.in_scope(&tref) && auth.agent.may_use(&tref)) {
        let (ev, body) =
            deny(ev, format!("tool {tref} is outside this token's scope"), codes::OUT_OF_SCOPE, Some(json!({ "required_scope": tref.to_string() })));
        let resp = call.finish(ev, StatusCode::FORBIDDEN, body, id).await;
        let f = crate::AuthFailure {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            description: format!("the token does not grant {tref}"),
            agent: None,
            token_id: None,
        };
        return with_challenge(resp, StatusCode::FORBIDDEN, &f.challenge(&call.gw.config.resource_metadata, Some(&tref.to_string())));
    }
    let snap = call.gw.snapshot();
    let tool = match snap.tools.get(&tref).filter(|t| t.is_callable()) {
        Some(t) => t,
        None => {
            let (ev, body) = deny(ev, unavailable_reason(snap.tools.get(&tref), &tref), codes::DENIED, None);
            return call.finish(ev, StatusCode::OK, body, id).await;
        }
    };
    let Some(upstream) = call.gw.upstream(&tref.server) else {
        let (ev, body) = deny(ev, format!("no upstream server {:?} is configured", tref.server), codes::DENIED, None);
        return call.finish(ev, StatusCode::OK, body, id).await;
    };
    let arg_scan = call.gw.inspector.scan_json(&args);
    ev.findings = finding_labels("args", &arg_scan.summary);
    let policy = call.gw.policy();
    let decision = policy.decide(&facts(auth, tool, &args, Ask::Call(&arg_scan.summary), call.now));
    ev.policies = decision.policies().to_vec();
    match decision {
        Decision::Deny { reason, policies } => {
            let data = json!({ "policies": policies, "correlation_id": call.corr });
            let (ev, body) = deny(ev, reason, codes::DENIED, Some(data));
            call.finish(ev, StatusCode::OK, body, id).await
        }
        Decision::NeedsApproval { reason, policies } => {
            ev.decision = "needs_approval".into();
            ev.reason = Some(reason.clone());
            let message = format!("requires human approval: {reason}. No approval workflow is configured on this gateway, so the call was not executed");
            let body = rpc_error(id, codes::NEEDS_APPROVAL, &message, Some(json!({ "policies": policies, "correlation_id": call.corr })));
            call.finish(ev, StatusCode::OK, body, id).await
        }
        Decision::Allow { obligations, .. } => {
            ev.decision = "allow".into();
            ev.forwarded = true;
            // Obligations of the call apply to the arguments before they leave.
            let mut forwarded = args.clone();
            ev.redacted += redact(call.gw, &mut forwarded, &obligations, &arg_scan.summary);
            let result = upstream.request("tools/call", json!({ "name": tref.tool, "arguments": forwarded })).await;
            let body = match result {
                Ok(r) => match review_result(call, &policy, auth, tool, &args, r, &mut ev) {
                    Ok(r) => json!({ "jsonrpc": "2.0", "id": id, "result": r }),
                    Err((code, message, policies)) => rpc_error(id, code, &message, Some(json!({ "policies": policies, "correlation_id": call.corr }))),
                },
                Err(UpstreamError::Rpc { code, message, data, .. }) => {
                    ev.reason = Some(format!("upstream error {code}: {message}"));
                    rpc_error(id, code, &message, data.map(|d| *d))
                }
                Err(e) => {
                    ev.reason = Some(e.to_string());
                    rpc_error(id, codes::INTERNAL, &e.to_string(), None)
                }
            };
            call.finish(ev, StatusCode::OK, body, id).await
        }
    }
}

/// Inspect an upstream result and decide on it (`receive_result`): withhold
/// it on a deny (the call itself already happened upstream), or release it
/// with the permits' redaction obligations applied. `policy` is the bundle
/// that decided the call, so one bundle decides both.
fn review_result(
    call: &Call<'_>,
    policy: &PolicyBundle,
    auth: &Authenticated,
    tool: &Tool,
    args: &Value,
    mut result: Value,
    ev: &mut AuditEvent,
) -> Result<Value, (i64, String, Vec<String>)> {
    let scan = call.gw.inspector.scan_json(&result);
    ev.findings.extend(finding_labels("result", &scan.summary));
    let decision = policy.decide(&facts(auth, tool, args, Ask::Result(&scan.summary), call.now));
    for p in decision.policies() {
        if !ev.policies.contains(p) {
            ev.policies.push(p.clone());
        }
    }
    match decision {
        Decision::Allow { obligations, .. } => {
            ev.redacted += redact(call.gw, &mut result, &obligations, &scan.summary);
            Ok(result)
        }
        Decision::Deny { reason, policies } => {
            ev.decision = "deny".into();
            let reason = format!("result withheld: {reason}");
            ev.reason = Some(reason.clone());
            Err((codes::DENIED, format!("denied: {reason}"), policies))
        }
        Decision::NeedsApproval { reason, policies } => {
            ev.decision = "needs_approval".into();
            let reason = format!("result withheld until a human approves it: {reason}");
            ev.reason = Some(reason.clone());
            Err((codes::NEEDS_APPROVAL, reason, policies))
        }
    }
}

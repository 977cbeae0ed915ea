//! The MCP streamable-HTTP endpoint (`POST/GET/DELETE /mcp`). Responses are
//! single JSON bodies; the gateway opens no server-initiated streams.

use crate::authn::Authenticated;
use crate::state::Gateway;
use crate::upstream::UpstreamError;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use warden_core::clock::{now_ms, now_secs};
use warden_core::{ActionClass, Approval, ApprovalStatus, AuditEvent, Decision, EventKind, Obligation, Tool, ToolRef, ToolStatus, canonical_json, sha256_hex};
use warden_inspect::Rule;
use warden_monitor::{Assessment, Kill, KillScope, Outcome, Refusal, Taint, records_in};
use warden_policy::{CallFacts, Findings, MonitorFacts, PolicyBundle, RequestFacts, ToolFacts};

/// How often a held call looks for its approval decision.
const APPROVAL_POLL: std::time::Duration = std::time::Duration::from_millis(50);
const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

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
    Router::new().route("/mcp", axum::routing::post(handle_post).get(handle_get).delete(handle_delete)).with_state(gw)
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
    /// The agent's trace context (W3C `traceparent`), for the span.
    trace: Option<([u8; 16], [u8; 8])>,
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

    /// Export the call's span when tracing is configured (no argument
    /// values, like the audit record).
    fn span(&self, ev: &AuditEvent, latency_us: u64) {
        let Some(t) = &self.gw.traces else { return };
        let (random_trace, span_id) = crate::telemetry::random_ids();
        let end = u64::try_from(warden_core::clock::since_epoch().as_nanos()).unwrap_or(u64::MAX);
        let opt = |k: &'static str, v: &Option<String>| v.as_ref().map(|v| (k, v.clone()));
        let mut attributes: Vec<(&'static str, String)> =
            [opt("warden.agent", &ev.agent), opt("warden.tool", &ev.tool), opt("warden.task", &ev.task), opt("warden.reason", &ev.reason)]
                .into_iter()
                .flatten()
                .collect();
        attributes.push(("warden.decision", ev.decision.clone()));
        attributes.push(("warden.correlation_id", self.corr.clone()));
        attributes.push(("warden.policies", ev.policies.join(",")));
        if let Some(r) = ev.risk {
            attributes.push(("warden.risk", r.to_string()));
        }
        t.record(crate::telemetry::Span {
            trace_id: self.trace.map(|(t, _)| t).unwrap_or(random_trace),
            span_id,
            parent_span_id: self.trace.map(|(_, p)| p),
            name: "tools/call".into(),
            start_unix_nanos: end.saturating_sub(latency_us * 1000),
            end_unix_nanos: end,
            error: ev.decision != "allow",
            attributes,
        });
    }

    /// Audit, then answer; if the audit write fails, the answer is an error.
    async fn finish(&self, mut ev: AuditEvent, status: StatusCode, body: Value, id: &Value) -> Response {
        let latency_us = self.start.elapsed().as_micros() as u64;
        ev.latency_us = Some(latency_us);
        if ev.kind == Some(EventKind::ToolCall) {
            self.gw.metrics.observe_call(&ev.decision, latency_us);
            self.span(&ev, latency_us);
        }
        match self.gw.audit.record(ev).await {
            Ok(_) => respond(status, body, &self.corr),
            Err(e) => respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(id, codes::INTERNAL, &e.to_string(), None), &self.corr),
        }
    }
}

/// Each request runs to its end in a task of its own, tracked for the
/// shutdown drain: a client that disconnects mid-call drops only the wait
/// for the answer, never the call's forwarding, outcome or audit record.
async fn handle_post(State(gw): State<Arc<Gateway>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Body) -> Response {
    let Some(task) = gw.track(process_post(gw.clone(), peer, headers, body)) else {
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "the gateway is shutting down; retry on another replica").into_response();
    };
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "an MCP request task failed");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
}

async fn process_post(gw: Arc<Gateway>, peer: SocketAddr, headers: HeaderMap, body: Body) -> Response {
    let trace = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(crate::telemetry::parse_traceparent);
    let call = Call { gw: &gw, corr: correlation_id(), start: Instant::now(), now: now_secs(), trace };
    let null = Value::Null;
    if let Some(why) = gw.registry_stale() {
        let mut ev = call.event(EventKind::McpRequest, None);
        ev.decision = "deny".into();
        ev.reason = Some(why.clone());
        return call.finish(ev, StatusCode::SERVICE_UNAVAILABLE, rpc_error(&null, codes::INTERNAL, &why, None), &null).await;
    }
    let auth = match authenticate(&gw, &headers, "POST", peer, call.now).await {
        Ok(a) => a,
        Err(resp) => return *resp,
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

    // A contained caller (its agent, an ancestor, its owner, or everyone)
    // gets nothing more through the gateway.
    if let Some(k) = gw.kill_covering(&auth, None) {
        let mut ev = call.event(EventKind::McpRequest, Some(&auth));
        ev.action = Some(method.to_string());
        ev.decision = "deny".into();
        ev.reason = Some(k.describe());
        ev.policies = vec![k.policy_id()];
        let body = rpc_error(&id, codes::DENIED, &format!("denied: {}", k.describe()), Some(json!({ "correlation_id": call.corr })));
        return call.finish(ev, StatusCode::FORBIDDEN, body, &id).await;
    }

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

/// Authenticate a request to `/mcp`. A failure is answered with its
/// challenge and tallied for the aggregated audit record of its source (no
/// record of its own: strangers must not drive audit writes); a source that
/// failed too often is answered 429 before any signature is checked.
async fn authenticate(gw: &Gateway, headers: &HeaderMap, method: &str, peer: SocketAddr, now: i64) -> Result<Authenticated, Box<Response>> {
    let corr = correlation_id();
    if let Err(t) = gw.admit_stranger(peer.ip(), warden_monitor::Door::Mcp) {
        let msg = format!("too many failed authentications from this address; retry in {} s", t.retry_after_secs);
        return Err(Box::new(crate::throttled_response(t, rpc_error(&Value::Null, codes::UNAUTHENTICATED, &msg, None).to_string())));
    }
    gw.authenticate(headers, method, now).await.map_err(|f| {
        // `f.agent` is set only once the token's signature verified.
        let claimed = f.agent.as_deref().map_or(warden_monitor::Claimed::Nothing, warden_monitor::Claimed::Verified);
        gw.stranger_failed(peer.ip(), warden_monitor::Door::Mcp, &f.description, claimed);
        // A contained agent's tokens are revoked with it; it is told why.
        let kills = gw.kills();
        if let Some(k) = f.agent.as_deref().and_then(|a| kills.for_caller([a], "")) {
            let body = rpc_error(&Value::Null, codes::DENIED, &format!("denied: {}", k.describe()), Some(json!({ "policies": [k.policy_id()] })));
            return Box::new(respond(StatusCode::FORBIDDEN, body, &corr));
        }
        let msg = format!("unauthorized: {}", f.description);
        let resp = respond(f.status, rpc_error(&Value::Null, codes::UNAUTHENTICATED, &msg, None), &corr);
        Box::new(with_challenge(resp, f.status, &f.challenge(&gw.config.resource_metadata, None)))
    })
}

fn session_for(gw: &Gateway, headers: &HeaderMap, auth: &Authenticated) -> Result<(), (StatusCode, &'static str)> {
    let sid =
        headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).ok_or((StatusCode::BAD_REQUEST, "missing Mcp-Session-Id header: send initialize first"))?;
    if gw.sessions.lock().touch(sid, auth.claims.agent(), Instant::now()) {
        Ok(())
    } else {
        Err((StatusCode::NOT_FOUND, "unknown or expired session: initialize a new one"))
    }
}

async fn initialize(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value) -> Response {
    let requested = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(SUPPORTED_VERSIONS[1]);
    let version = if SUPPORTED_VERSIONS.contains(&requested) { requested } else { SUPPORTED_VERSIONS[0] };
    let sid = format!("{}{}", correlation_id(), correlation_id());
    if call.gw.sessions.lock().open(sid.clone(), auth.claims.agent(), Instant::now()).is_err() {
        return respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(id, codes::INTERNAL, "too many open sessions; retry later", None), &call.corr);
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

async fn handle_delete(State(gw): State<Arc<Gateway>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    let auth = match authenticate(&gw, &headers, "DELETE", peer, now_secs()).await {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let Some(sid) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, "missing Mcp-Session-Id").into_response();
    };
    if gw.sessions.lock().close(sid, auth.claims.agent()) { StatusCode::NO_CONTENT.into_response() } else { StatusCode::NOT_FOUND.into_response() }
}

/// How a decision is asked: for a call (with the arguments' findings), for
/// its result (with the result's findings), or for a listing.
pub(crate) enum Ask<'a> {
    Listing,
    Call(&'a Findings),
    Result(&'a Findings),
}

/// Finding kinds for the audit record (never values).
pub(crate) fn finding_labels(prefix: &str, s: &Findings) -> Vec<String> {
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

/// What the monitor contributes to a decision: the agent's risk and the
/// call's `context.monitor`.
#[derive(Default)]
pub(crate) struct MonitorView {
    risk: i64,
    facts: MonitorFacts,
}

impl From<&Assessment> for MonitorView {
    fn from(a: &Assessment) -> Self {
        Self {
            risk: i64::from(a.risk),
            facts: MonitorFacts {
                anomaly: i64::from(a.anomaly.score),
                learning: a.learning,
                calls_this_minute: a.calls_this_minute as i64,
                taint: a.taint.labels().into_iter().map(String::from).collect(),
            },
        }
    }
}

pub(crate) fn facts(auth: &Authenticated, tool: &Tool, args: &Value, ask: Ask<'_>, now: i64, mon: &MonitorView) -> CallFacts {
    let (listing, result, findings) = match ask {
        Ask::Listing => (true, false, Findings::default()),
        Ask::Call(f) => (false, false, f.clone()),
        Ask::Result(f) => (false, true, f.clone()),
    };
    let a = &auth.agent;
    CallFacts {
        agent: auth.agent_facts(mon.risk),
        tool: ToolFacts {
            server: tool.tool.server.clone(),
            name: tool.tool.tool.clone(),
            sensitivity: tool.sensitivity.as_str().into(),
            sensitivity_level: tool.sensitivity.level(),
            action_class: tool.action_class.as_str().into(),
            exfil_capable: tool.exfil_capable,
            untrusted_content: tool.untrusted_content,
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
            monitor: mon.facts.clone(),
        },
    }
}

/// The monitor's view of a call.
pub(crate) fn monitor_call<'a>(auth: &'a Authenticated, tool: &'a Tool, args: &Value, arg_bytes: usize) -> warden_monitor::Call<'a> {
    warden_monitor::Call {
        agent: auth.claims.agent(),
        agent_name: auth.agent.id.name(),
        lineage_root: auth.claims.lineage_root(),
        task: &auth.claims.task,
        tool: &tool.tool,
        sensitivity_level: tool.sensitivity.level(),
        exfil_capable: tool.exfil_capable,
        financial: tool.action_class == ActionClass::Financial,
        // A number or a numeric string, as policy reads it; anything else
        // (text, non-finite) is NaN, which an amount cap refuses, as it
        // refuses a negative amount.
        amount: warden_policy::amount_of(args).map(|a| a.unwrap_or(0.0)).unwrap_or(f64::NAN),
        arg_bytes,
        now_ms: now_ms(),
    }
}

/// Contain an agent automatically (the monitor's verdict at `trigger`).
async fn contain_agent(gw: &Gateway, agent: &str, cause: String, trigger: Instant) {
    let kill = Kill { id: 0, scope: KillScope::Agent, target: agent.to_string(), reason: cause, by: "monitor".into(), at_ms: now_ms() };
    match gw.contain_since(kill, trigger).await {
        Ok(_) | Err(warden_store::StoreError::Conflict(_)) => {}
        Err(e) => tracing::error!("automatic containment of {agent}: {e}"),
    }
}

async fn list_tools(call: &Call<'_>, auth: &Authenticated, id: &Value) -> Response {
    let snap = call.gw.snapshot();
    let policy = call.gw.policy();
    let kills = call.gw.kills();
    let empty = json!({});
    let mon = MonitorView { risk: i64::from(call.gw.monitor.risk(auth.claims.agent(), now_ms())), ..Default::default() };
    let tools: Vec<Value> = {
        let defs = call.gw.definitions.read();
        defs.iter()
            .filter(|(tref, _)| auth.claims.in_scope(tref) && auth.agent.may_use(tref))
            .filter_map(|(tref, def)| snap.tools.get(tref).filter(|t| t.is_callable() && kills.for_tool(tref).is_none()).map(|t| (t, def)))
            .filter(|(t, _)| policy.decide(&facts(auth, t, &empty, Ask::Listing, call.now, &mon)).is_allow())
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

/// A call refused before it could be assessed (malformed, unknown or
/// unavailable tool, outside the token's scope): still a denial on the
/// agent's record, since probing for tools is what a rogue agent does.
async fn refused_early(call: &Call<'_>, auth: &Authenticated, ev: AuditEvent, status: StatusCode, body: Value, id: &Value) -> Response {
    let trigger = Instant::now();
    if let Some(cause) = call.gw.monitor.refused(auth.claims.agent(), now_ms()) {
        contain_agent(call.gw, auth.claims.agent(), cause, trigger).await;
    }
    call.finish(ev, status, body, id).await
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
        return refused_early(call, auth, ev, StatusCode::OK, body, id).await;
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            let (ev, body) = deny(ev, "params.arguments must be an object".into(), codes::INVALID_PARAMS, None);
            return refused_early(call, auth, ev, StatusCode::OK, body, id).await;
        }
    };
    let canonical = canonical_json(&args);
    let arg_bytes = canonical.len();
    ev.args_sha256 = Some(sha256_hex(canonical.as_bytes()));
    ev.tool = Some(name.to_string());
    let Some(tref) = ToolRef::from_federated_name(name) else {
        let (ev, body) = deny(ev, format!("unknown tool {name:?}: gateway tools are named SERVER__TOOL"), codes::INVALID_PARAMS, None);
        return refused_early(call, auth, ev, StatusCode::OK, body, id).await;
    };
    ev.tool = Some(tref.to_string());
    if !(auth.claims.in_scope(&tref) && auth.agent.may_use(&tref)) {
        let (ev, body) =
            deny(ev, format!("tool {tref} is outside this token's scope"), codes::OUT_OF_SCOPE, Some(json!({ "required_scope": tref.to_string() })));
        let resp = refused_early(call, auth, ev, StatusCode::FORBIDDEN, body, id).await;
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
            return refused_early(call, auth, ev, StatusCode::OK, body, id).await;
        }
    };
    let Some(upstream) = call.gw.upstream(&tref.server) else {
        let (ev, body) = deny(ev, format!("no upstream server {:?} is configured", tref.server), codes::DENIED, None);
        return call.finish(ev, StatusCode::OK, body, id).await;
    };
    if let Some(k) = call.gw.kill_covering(auth, Some(&tref)) {
        ev.policies = vec![k.policy_id()];
        let (ev, body) = deny(ev, k.describe(), codes::DENIED, None);
        return call.finish(ev, StatusCode::OK, body, id).await;
    }
    let arg_scan = call.gw.inspector.scan_json(&args);
    ev.findings = finding_labels("args", &arg_scan.summary);
    let mcall = monitor_call(auth, tool, &args, arg_bytes);
    let seen = call.gw.monitor.assess(&mcall);
    let assessed = Instant::now();
    ev.risk = Some(seen.risk);
    ev.anomaly = Some(seen.anomaly.score);
    let mut outcome =
        Outcome { injection_in_args: arg_scan.summary.injection_score >= 50, secret_in_args: arg_scan.summary.secret_count > 0, ..Default::default() };
    let step = Step { call, auth, id, tool, args: &args, mcall: &mcall, seen: &seen };
    let (ev, body) = step.decide_and_forward(upstream, &arg_scan.summary, &mut outcome, ev).await;
    settle(call.gw, &mcall, &seen, assessed, &outcome).await;
    call.finish(ev, StatusCode::OK, body, id).await
}

/// After a call's decision, before its answer leaves (so no later call gets
/// in): record the outcome with the monitor, contain the agent when the
/// assessment (made at `assessed`) or the outcome takes it over the
/// threshold, and demote it after a `@critical` violation.
pub(crate) async fn settle(gw: &Gateway, mcall: &warden_monitor::Call<'_>, seen: &Assessment, assessed: Instant, outcome: &Outcome) {
    let (cause, trigger) = match &seen.contain {
        Some(c) => (Some(c.clone()), assessed),
        None => (gw.monitor.finish(mcall, outcome), Instant::now()),
    };
    if let Some(cause) = cause {
        contain_agent(gw, mcall.agent, cause, trigger).await;
    }
    if let Some(p) = &outcome.critical {
        gw.demote(mcall.agent, p).await;
    }
}

/// One authorized `tools/call` on its way through policy, limits and the upstream.
struct Step<'a> {
    call: &'a Call<'a>,
    auth: &'a Authenticated,
    id: &'a Value,
    tool: &'a Tool,
    args: &'a Value,
    mcall: &'a warden_monitor::Call<'a>,
    seen: &'a Assessment,
}

impl Step<'_> {
    /// A kill switch covering this caller or tool, engaged since the call
    /// was first checked.
    fn kill(&self) -> Option<Kill> {
        self.call.gw.kill_covering(self.auth, Some(&self.tool.tool))
    }

    fn refuse(&self, mut ev: AuditEvent, reason: String, code: i64, policies: &[String]) -> (AuditEvent, Value) {
        ev.decision = "deny".into();
        ev.reason = Some(reason.clone());
        let data = json!({ "policies": policies, "correlation_id": self.call.corr });
        (ev, rpc_error(self.id, code, &format!("denied: {reason}"), Some(data)))
    }

    fn refused_by_monitor(&self, mut ev: AuditEvent, r: &Refusal, outcome: &mut Outcome) -> (AuditEvent, Value) {
        outcome.denied = true;
        outcome.limit_hit = matches!(r, Refusal::Limit(_));
        ev.policies.push(r.id());
        let policies = ev.policies.clone();
        self.refuse(ev, r.to_string(), codes::DENIED, &policies)
    }

    async fn decide_and_forward(
        &self,
        upstream: &crate::upstream::Upstream,
        found: &Findings,
        outcome: &mut Outcome,
        mut ev: AuditEvent,
    ) -> (AuditEvent, Value) {
        if let Some(cause) = &self.seen.contain {
            outcome.denied = true;
            ev.policies = vec!["monitor:risk".into()];
            return self.refuse(ev, format!("the agent is contained: {cause}"), codes::DENIED, &["monitor:risk".to_string()]);
        }
        if let Some(r) = &self.seen.refusal {
            return self.refused_by_monitor(ev, r, outcome);
        }
        let policy = self.call.gw.policy();
        let mon = MonitorView::from(self.seen);
        let decision = policy.decide(&facts(self.auth, self.tool, self.args, Ask::Call(found), self.call.now, &mon));
        ev.policies = decision.policies().to_vec();
        match decision {
            Decision::Deny { reason, policies } => {
                outcome.denied = true;
                outcome.critical = policies.iter().find(|p| policy.is_critical(p)).cloned();
                self.refuse(ev, reason, codes::DENIED, &policies)
            }
            Decision::NeedsApproval { reason, policies, .. } => match self.approval(&policy, &reason, &policies, &mut ev).await {
                Ok(id) => {
                    ev.policies.push(format!("approval#{id}"));
                    match self.reauthorize(&policies, found).await {
                        Ok((policy, obligations)) => {
                            if let Err(e) = self.call.gw.store.use_approval(&id, now_ms()).await {
                                outcome.denied = true;
                                let reason = format!("approval {id} could not be used, so the call was not executed: {e}");
                                return self.refuse(ev, reason, codes::DENIED, &policies);
                            }
                            self.forward(upstream, &policy, found, &obligations, outcome, ev).await
                        }
                        Err((reason, by)) => {
                            outcome.denied = true;
                            ev.policies.extend(by.iter().cloned());
                            let policies = ev.policies.clone();
                            self.refuse(ev, format!("approval {id} was not used: {reason}"), codes::DENIED, &policies)
                        }
                    }
                }
                Err((code, message)) => {
                    // Waiting for a human is not misbehaviour: only a refusal
                    // counts against the agent.
                    outcome.denied = code != codes::NEEDS_APPROVAL;
                    outcome.trifecta = self.seen.taint.both() && self.tool.exfil_capable;
                    ev.decision = if code == codes::NEEDS_APPROVAL { "needs_approval" } else { "deny" }.into();
                    ev.reason = Some(message.clone());
                    (ev, rpc_error(self.id, code, &message, Some(json!({ "policies": policies, "correlation_id": self.call.corr }))))
                }
            },
            Decision::Allow { obligations, .. } => self.forward(upstream, &policy, found, &obligations, outcome, ev).await,
        }
    }

    /// Get a human's approval for this exact call: one granted earlier (the
    /// agent retried after a hold ran out), or a new request held until it is
    /// decided, expires (timeout = deny) or the hold ends. Returns the
    /// approval id, not yet used (the call is authorized again first), or the
    /// JSON-RPC error code and message.
    async fn approval(&self, policy: &PolicyBundle, reason: &str, policies: &[String], ev: &mut AuditEvent) -> Result<String, (i64, String)> {
        let gw = self.call.gw;
        let cfg = &gw.config.approvals;
        let store_err = |e: warden_store::StoreError| (codes::INTERNAL, format!("approval store unavailable, so the call was not executed: {e}"));
        let hash = ev.args_sha256.clone().unwrap_or_default();
        let agent = self.auth.claims.agent();
        if let Some(id) = gw.store.approved_for(agent, &self.tool.tool, &hash, now_ms()).await.map_err(store_err)? {
            ev.reason = Some(format!("approved earlier (approval {id}); this is the repeated call it covers"));
            return Ok(id);
        }
        // Approvers see the personal data they decide on (the destination);
        // everyone else (audit, webhooks, viewers) a keyed fingerprint of it.
        // No human needs a secret to decide, so secrets are masked for all.
        let rule = |class: &str, method| Rule { class: class.into(), method };
        let mut shown = self.args.clone();
        gw.redactor.redact_json(&gw.inspector, &mut shown, &[rule("secrets", warden_inspect::Method::Mask)]);
        let mut masked = shown.clone();
        gw.redactor.redact_json(&gw.inspector, &mut masked, &[rule("pii", warden_inspect::Method::Fingerprint)]);
        let now = now_ms();
        let held = Approval {
            id: correlation_id(),
            agent: agent.to_string(),
            owner: self.auth.agent.owner.clone(),
            task: self.auth.claims.task.clone(),
            tool: self.tool.tool.clone(),
            args_sha256: hash,
            args_redacted: masked,
            args: Some(shown),
            reason: reason.to_string(),
            policies: policies.to_vec(),
            risk: self.seen.risk,
            required: policy.approvers_required(policies),
            approvers: Vec::new(),
            status: ApprovalStatus::Pending,
            decided_by: None,
            decision_reason: None,
            created_ms: now,
            expires_ms: now + cfg.expire_secs as i64 * 1000,
        };
        gw.store.insert_approval(&held).await.map_err(store_err)?;
        let mut req = ev.clone();
        req.kind = Some(EventKind::ApprovalRequested);
        req.decision = "needs_approval".into();
        req.reason = Some(format!("approval {} requested ({} approver(s)): {reason}", held.id, held.required));
        gw.audit.record(req).await.map_err(|e| (codes::INTERNAL, e.to_string()))?;
        gw.metrics.observe_approval_request();
        gw.notify_approval(&held);
        let id = held.id;
        let hold_until = Instant::now() + std::time::Duration::from_secs(cfg.hold_secs);
        loop {
            tokio::time::sleep(APPROVAL_POLL).await;
            let cur = gw.store.get_approval(&id).await.map_err(store_err)?;
            match cur.status {
                ApprovalStatus::Approved => {
                    ev.reason = Some(format!("approved by {} (approval {id})", cur.approvers.join(" and ")));
                    return Ok(id);
                }
                ApprovalStatus::Denied => {
                    let by = cur.decided_by.unwrap_or_default();
                    let why = cur.decision_reason.filter(|r| !r.is_empty()).map(|r| format!(": {r}")).unwrap_or_default();
                    return Err((codes::DENIED, format!("denied: approval {id} was refused by {by}{why}")));
                }
                ApprovalStatus::Pending if now_ms() > cur.expires_ms => {
                    let _ = gw.store.expire_approval(&id).await;
                    return Err((codes::DENIED, format!("denied: no decision on approval {id} before it expired (timeout = deny)")));
                }
                // A stopping gateway answers held calls now (they stay
                // pending) instead of holding its shutdown.
                ApprovalStatus::Pending if Instant::now() >= hold_until || gw.shutting_down() => {
                    let left = (cur.expires_ms - now_ms()).max(0) / 1000;
                    return Err((
                        codes::NEEDS_APPROVAL,
                        format!(
                            "requires human approval: {reason}. Approval {id} is pending (`warden approvals approve {id}`); repeat this exact call once it is approved (it expires in {left} s)"
                        ),
                    ));
                }
                ApprovalStatus::Pending => {}
                ApprovalStatus::Expired | ApprovalStatus::Used => {
                    return Err((codes::DENIED, format!("denied: approval {id} is {}", cur.status)));
                }
            }
        }
    }

    /// Authorize an approved call again as it is released: the hold lasted
    /// up to minutes, during which the agent may have been suspended,
    /// revoked or contained, its token revoked or expired, the tool disabled
    /// or reclassified, its scope narrowed, the policy changed or the
    /// agent's risk grown. The approval lifts only the forbids it was asked
    /// for (`approved`); whatever else the current policy says stands.
    /// Returns the policy and obligations to forward under, or why not and
    /// the policies that say so.
    async fn reauthorize(&self, approved: &[String], found: &Findings) -> Result<(Arc<PolicyBundle>, Vec<Obligation>), (String, Vec<String>)> {
        let gw = self.call.gw;
        let now = now_secs();
        self.auth.claims.check_lifetime(now).map_err(|e| (format!("the token is no longer valid ({e}); repeat the call with a fresh token"), Vec::new()))?;
        let auth = gw.authorize_claims(self.auth.claims.clone()).map_err(|f| (f.description, Vec::new()))?;
        let snap = gw.snapshot();
        let tref = &self.tool.tool;
        let tool = snap.tools.get(tref).filter(|t| t.is_callable()).ok_or_else(|| (unavailable_reason(snap.tools.get(tref), tref), Vec::new()))?;
        if !(auth.claims.in_scope(tref) && auth.agent.may_use(tref)) {
            return Err((format!("tool {tref} is no longer within the agent's registered tools"), Vec::new()));
        }
        let policy = gw.policy();
        let mon = MonitorView { risk: i64::from(gw.monitor.risk(auth.claims.agent(), now_ms()).max(self.seen.risk)), ..MonitorView::from(self.seen) };
        match policy.decide(&facts(&auth, tool, self.args, Ask::Call(found), now, &mon)) {
            Decision::Allow { obligations, .. } => Ok((policy, obligations)),
            Decision::NeedsApproval { policies, obligations, .. } if policies.iter().all(|p| approved.contains(p)) => Ok((policy, obligations)),
            Decision::NeedsApproval { reason, policies, .. } => Err((format!("it now also needs approval for: {reason}"), policies)),
            Decision::Deny { reason, policies } => Err((reason, policies)),
        }
    }

    /// Forward an allowed (or approved) call: kill switches checked again,
    /// limits consumed, the call's obligations applied to the arguments, the
    /// upstream called and its result reviewed.
    async fn forward(
        &self,
        upstream: &crate::upstream::Upstream,
        policy: &PolicyBundle,
        found: &Findings,
        obligations: &[Obligation],
        outcome: &mut Outcome,
        mut ev: AuditEvent,
    ) -> (AuditEvent, Value) {
        // A kill engaged while this call was being decided stops it
        // before it reaches the upstream.
        if let Some(k) = self.kill() {
            outcome.denied = true;
            ev.policies = vec![k.policy_id()];
            return self.refuse(ev, k.describe(), codes::DENIED, &[k.policy_id()]);
        }
        // Held across the upstream call: if the agent goes away mid-call, a
        // breaker probe is abandoned rather than left in flight for good.
        let _admitted = match self.call.gw.monitor.admit(self.mcall) {
            Ok(a) => a,
            Err(r) => return self.refused_by_monitor(ev, &r, outcome),
        };
        ev.decision = "allow".into();
        // Obligations of the call apply to the arguments before they leave.
        let mut forwarded = self.args.clone();
        ev.redacted += redact(self.call.gw, &mut forwarded, obligations, found);
        // Write-ahead: the decision to forward is durable before the
        // upstream sees the call, so nothing executes unrecorded (a full
        // disk or a lost database refuses the call instead).
        let mut intent = ev.clone();
        intent.kind = Some(EventKind::ToolCallIntent);
        intent.reason = Some("forwarding to the upstream".into());
        if let Err(e) = self.call.gw.audit.record(intent).await {
            outcome.failed = true;
            ev.decision = "error".into();
            ev.reason = Some(format!("not forwarded: {e}"));
            return (ev, rpc_error(self.id, codes::INTERNAL, &format!("the call was not forwarded: {e}"), None));
        }
        ev.forwarded = true;
        let result = upstream.request("tools/call", json!({ "name": self.tool.tool.tool, "arguments": forwarded })).await;
        outcome.upstream_ok = Some(!matches!(result, Err(ref e) if !matches!(e, UpstreamError::Rpc { .. })));
        let body = match result {
            Ok(r) => match self.review_result(policy, r, &mut ev, outcome) {
                Ok(r) => json!({ "jsonrpc": "2.0", "id": self.id, "result": r }),
                Err((code, message, policies)) => {
                    outcome.denied = true;
                    rpc_error(self.id, code, &message, Some(json!({ "policies": policies, "correlation_id": self.call.corr })))
                }
            },
            Err(UpstreamError::Rpc { code, message, data, .. }) => {
                outcome.failed = true;
                ev.reason = Some(format!("upstream error {code}: {message}"));
                rpc_error(self.id, code, &message, data.map(|d| *d))
            }
            Err(e) => {
                outcome.failed = true;
                ev.reason = Some(e.to_string());
                rpc_error(self.id, codes::INTERNAL, &e.to_string(), None)
            }
        };
        (ev, body)
    }

    /// Inspect an upstream result and decide on it (`receive_result`):
    /// withhold it on a deny (the call itself already happened upstream) or
    /// when its records would exceed a cap, or release it with the permits'
    /// redaction obligations applied and taint the session with what it
    /// carried. `policy` is the bundle that decided the call, so one bundle
    /// decides both.
    fn review_result(&self, policy: &PolicyBundle, mut result: Value, ev: &mut AuditEvent, outcome: &mut Outcome) -> Result<Value, (i64, String, Vec<String>)> {
        let gw = self.call.gw;
        // Contained while the upstream ran: the call happened, but nothing
        // more reaches the agent.
        if let Some(k) = self.kill() {
            ev.decision = "deny".into();
            let reason = format!("result withheld: {}", k.describe());
            ev.reason = Some(reason.clone());
            ev.policies.push(k.policy_id());
            return Err((codes::DENIED, format!("denied: {reason}"), ev.policies.clone()));
        }
        let scan = gw.inspector.scan_json(&result);
        ev.findings.extend(finding_labels("result", &scan.summary));
        let decision = policy.decide(&facts(self.auth, self.tool, self.args, Ask::Result(&scan.summary), self.call.now, &MonitorView::from(self.seen)));
        for p in decision.policies() {
            if !ev.policies.contains(p) {
                ev.policies.push(p.clone());
            }
        }
        match decision {
            Decision::Allow { obligations, .. } => {
                if let Err(hit) = gw.monitor.take_records(self.mcall, records_in(&result)) {
                    outcome.limit_hit = true;
                    ev.decision = "deny".into();
                    let reason = format!("result withheld: {hit}");
                    ev.reason = Some(reason.clone());
                    ev.policies.push(format!("limit:{}", hit.rule));
                    return Err((codes::DENIED, format!("denied: {reason}"), ev.policies.clone()));
                }
                ev.redacted += redact(gw, &mut result, &obligations, &scan.summary);
                let s = &scan.summary;
                outcome.taint = Taint {
                    untrusted: self.tool.untrusted_content || s.injection_score >= 50,
                    sensitive: s.pii_count + s.secret_count > 0 || self.tool.sensitivity.level() >= 3,
                };
                Ok(result)
            }
            Decision::Deny { reason, policies } => {
                outcome.critical = policies.iter().find(|p| policy.is_critical(p)).cloned();
                ev.decision = "deny".into();
                let reason = format!("result withheld: {reason}");
                ev.reason = Some(reason.clone());
                Err((codes::DENIED, format!("denied: {reason}"), policies))
            }
            Decision::NeedsApproval { reason, policies, .. } => {
                ev.decision = "needs_approval".into();
                let reason = format!("result withheld until a human approves it: {reason}");
                ev.reason = Some(reason.clone());
                Err((codes::NEEDS_APPROVAL, reason, policies))
            }
        }
    }
}

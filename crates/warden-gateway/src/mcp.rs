//! The MCP streamable-HTTP endpoint (`POST/GET/DELETE /mcp`): the MCP
//! front door. It parses JSON-RPC, keeps MCP sessions, authenticates each
//! request, runs tool calls, resource reads, prompts and completions through
//! the enforcement core ([`crate::enforce`]), federates the upstreams'
//! listings (names as [`crate::catalog`] gives them, filtered by scope and
//! policy) and renders what the core decided as JSON-RPC. Responses are
//! single JSON bodies; the gateway opens no server-initiated streams.

use crate::authn::Authenticated;
use crate::catalog::{self, Cursor};
use crate::enforce::{self, Pipeline, Refusal, Stopped, Target, Trail, Withheld, correlation_id};
use crate::jsonrpc::Message;
use crate::peer::PeerCertificate;
use crate::state::Gateway;
use crate::upstream::{Caller, ClientOffers, Exchange, UpstreamError};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use warden_core::clock::now_secs;
use warden_core::{AuditEvent, EventKind, TargetKind, Verdict};

use crate::upstream::PROTOCOL_VERSIONS as SUPPORTED_VERSIONS;

pub use crate::jsonrpc::codes;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new().route("/mcp", axum::routing::post(handle_post).get(handle_get).delete(handle_delete)).with_state(gw)
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
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(challenge).unwrap_or(HeaderValue::from_static("Bearer, DPoP")));
    }
    resp
}

/// Per-request context of the MCP front door.
struct Call<'a> {
    gw: &'a Gateway,
    corr: String,
    /// When the request arrived.
    start: Instant,
    now: i64,
    /// The agent's trace context (W3C `traceparent`), for the span.
    trace: Option<([u8; 16], [u8; 8])>,
}

impl Call<'_> {
    /// The record of an MCP request that is not a tool call (a session
    /// opened, a listing, a request refused before it was understood).
    fn event(&self, kind: EventKind, auth: Option<&Authenticated>, action: Option<&str>, decision: Verdict, reason: Option<String>) -> AuditEvent {
        let mut ev = match auth {
            Some(a) => Trail::new(kind, &self.corr, action.unwrap_or_default(), a, self.start).into_event(kind, decision, reason),
            None => AuditEvent { kind: Some(kind), correlation_id: Some(self.corr.clone()), decision, reason, ..Default::default() },
        };
        ev.action = action.map(String::from);
        ev.latency_us = Some(self.start.elapsed().as_micros() as u64);
        ev
    }

    /// Audit, then answer; if the audit write fails, the answer is an error.
    async fn finish(&self, ev: AuditEvent, status: StatusCode, body: Value, id: &Value) -> Response {
        match enforce::record(self.gw, ev, self.trace).await {
            Ok(()) => respond(status, body, &self.corr),
            Err(e) => respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(id, codes::INTERNAL, &e.to_string(), None), &self.corr),
        }
    }
}

/// Each request runs to its end in a task of its own, tracked for the
/// shutdown drain: a client that disconnects mid-call drops only the wait
/// for the answer, never the call's forwarding, outcome or audit record.
async fn handle_post(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    cert: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cert = cert.map(|Extension(c)| c);
    let Some(task) = gw.track(process_post(gw.clone(), peer, cert, headers, body)) else {
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "the gateway is shutting down; retry on another replica").into_response();
    };
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "an MCP request task failed");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
}

/// DNS-rebinding protection (`origin.rs`), before anything reads the request.
fn rebinding(gw: &Gateway, headers: &HeaderMap) -> Option<Response> {
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let refused = gw.config.origins.check(header(header::HOST), header(header::ORIGIN)).err()?;
    Some(respond(StatusCode::FORBIDDEN, rpc_error(&Value::Null, codes::INVALID_REQUEST, &refused.to_string(), None), &correlation_id()))
}

async fn process_post(gw: Arc<Gateway>, peer: SocketAddr, cert: Option<PeerCertificate>, headers: HeaderMap, body: Body) -> Response {
    if let Some(refused) = rebinding(&gw, &headers) {
        return refused;
    }
    let trace = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(crate::telemetry::parse_traceparent);
    let call = Call { gw: &gw, corr: correlation_id(), start: Instant::now(), now: now_secs(), trace };
    let null = Value::Null;
    if let Some(why) = gw.registry_stale() {
        let ev = call.event(EventKind::McpRequest, None, None, Verdict::Deny, Some(why.clone()));
        return call.finish(ev, StatusCode::SERVICE_UNAVAILABLE, rpc_error(&null, codes::INTERNAL, &why, None), &null).await;
    }
    let auth = match authenticate(&gw, &headers, "POST", peer, cert.as_ref(), call.now).await {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let bytes = match axum::body::to_bytes(body, gw.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            // An authenticated request refused before it is understood.
            let reason = format!("request body too large: the limit is {} bytes", gw.config.max_body_bytes);
            let ev = call.event(EventKind::McpRequest, Some(&auth), None, Verdict::Deny, Some(reason.clone()));
            return call.finish(ev, StatusCode::PAYLOAD_TOO_LARGE, rpc_error(&null, codes::INVALID_REQUEST, &reason, None), &null).await;
        }
    };
    let msg = match crate::jsonrpc::parse(&bytes) {
        Ok(m) => m,
        Err(e) => {
            let ev = call.event(EventKind::McpRequest, Some(&auth), None, Verdict::Deny, Some(e.to_string()));
            return call.finish(ev, StatusCode::BAD_REQUEST, rpc_error(&null, e.code(), &e.to_string(), None), &null).await;
        }
    };
    let (id, method, params) = match msg {
        Message::Request { id, method, params } => (Some(id.to_value()), method, params),
        Message::Notification { method, params } => (None, method, params),
        // A client answering a request an upstream made of it, relayed in
        // its own session (anything else is nobody's answer).
        Message::Response { id, result, error } => {
            if gw.kill_covering(&auth, None).is_none()
                && let Ok(Caller::Session { session, .. }) = session_for(&gw, &headers, &auth)
            {
                answer_relayed(&gw, &session, &id.to_value(), result, error);
            }
            return respond(StatusCode::ACCEPTED, Value::Null, &call.corr);
        }
    };
    let notification = id.is_none();
    let id = id.unwrap_or(Value::Null);
    let method = method.as_str();

    // A contained caller (its agent, an ancestor, its owner, or everyone)
    // gets nothing more through the gateway.
    if let Some(k) = gw.kill_covering(&auth, None) {
        let mut ev = call.event(EventKind::McpRequest, Some(&auth), Some(method), Verdict::Deny, Some(k.describe()));
        ev.policies = vec![k.policy_id()];
        let body = rpc_error(&id, codes::DENIED, &Refusal::Killed(k).message(), Some(json!({ "correlation_id": call.corr })));
        return call.finish(ev, StatusCode::FORBIDDEN, body, &id).await;
    }

    if method == "initialize" {
        return initialize(&call, &auth, &id, &params).await;
    }
    let session = match session_for(&gw, &headers, &auth) {
        Ok(sid) => sid,
        Err((status, message)) => return respond(status, rpc_error(&id, codes::INVALID_REQUEST, message, None), &call.corr),
    };
    if let Some(v) = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok())
        && !SUPPORTED_VERSIONS.contains(&v)
    {
        return respond(StatusCode::BAD_REQUEST, rpc_error(&id, codes::INVALID_REQUEST, &format!("unsupported MCP-Protocol-Version {v}"), None), &call.corr);
    }
    if notification {
        // A cancellation reaches its request if it is still in flight in
        // this session (too late is fine: the spec allows the race).
        if method == "notifications/cancelled"
            && let (Caller::Session { session, .. }, Some(request)) = (&session, params.get("requestId"))
        {
            gw.cancels.cancel(session, request);
        }
        // Notifications need no answer.
        return respond(StatusCode::ACCEPTED, Value::Null, &call.corr);
    }
    match method {
        "ping" => respond(StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": {} }), &call.corr),
        "tools/list" => list_tools(&call, &auth, &id).await,
        "tools/call" | "resources/read" | "prompts/get" | "completion/complete" => {
            let streams = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
            let r = Relayed {
                gw: gw.clone(),
                corr: call.corr.clone(),
                start: call.start,
                now: call.now,
                trace: call.trace,
                auth,
                id,
                method: method.into(),
                params,
                caller: session,
            };
            if streams { with_progress(r).await } else { r.run(None).await }
        }
        "logging/setLevel" => set_level(&call, &auth, &id, &params, &session).await,
        "resources/list" => list_catalog(&call, &auth, &id, &params, &session, Listing::Resources).await,
        "resources/templates/list" => list_catalog(&call, &auth, &id, &params, &session, Listing::Templates).await,
        "prompts/list" => list_catalog(&call, &auth, &id, &params, &session, Listing::Prompts).await,
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
async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
    method: &str,
    peer: SocketAddr,
    cert: Option<&PeerCertificate>,
    now: i64,
) -> Result<Authenticated, Box<Response>> {
    let corr = correlation_id();
    if let Err(t) = gw.admit_stranger(peer.ip(), warden_monitor::Door::Mcp) {
        let msg = format!("too many failed authentications from this address; retry in {} s", t.retry_after_secs);
        return Err(Box::new(crate::throttled_response(t, rpc_error(&Value::Null, codes::UNAUTHENTICATED, &msg, None).to_string())));
    }
    gw.authenticate(headers, method, cert, now).await.map_err(|f| {
        // `f.agent` is set only once the token's signature verified.
        let claimed = f.agent.as_deref().map_or(warden_monitor::Claimed::Nothing, warden_monitor::Claimed::Verified);
        gw.stranger_failed(peer.ip(), warden_monitor::Door::Mcp, &f.description, claimed);
        // A contained agent's tokens are revoked with it; it is told why.
        let kills = gw.kills();
        if let Some(k) = f.agent.as_deref().and_then(|a| kills.for_caller([a], "")) {
            let data = json!({ "policies": [k.policy_id()] });
            let body = rpc_error(&Value::Null, codes::DENIED, &Refusal::Killed(k.clone()).message(), Some(data));
            return Box::new(respond(StatusCode::FORBIDDEN, body, &corr));
        }
        let msg = format!("unauthorized: {}", f.description);
        let resp = respond(f.status, rpc_error(&Value::Null, codes::UNAUTHENTICATED, &msg, None), &corr);
        Box::new(with_challenge(resp, f.status, &f.challenge(&gw.config.resource_metadata, None)))
    })
}

/// The caller's session (its upstream sessions are its own).
fn session_for(gw: &Gateway, headers: &HeaderMap, auth: &Authenticated) -> Result<Caller, (StatusCode, &'static str)> {
    let sid =
        headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).ok_or((StatusCode::BAD_REQUEST, "missing Mcp-Session-Id header: send initialize first"))?;
    let mut sessions = gw.sessions.lock();
    if sessions.touch(sid, auth.claims.agent(), Instant::now()) {
        Ok(Caller::Session { agent: auth.claims.agent().to_string(), session: sid.to_string(), offers: sessions.offers(sid) })
    } else {
        Err((StatusCode::NOT_FOUND, "unknown or expired session: initialize a new one"))
    }
}

async fn initialize(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value) -> Response {
    let requested = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(SUPPORTED_VERSIONS[1]);
    let version = if SUPPORTED_VERSIONS.contains(&requested) { requested } else { SUPPORTED_VERSIONS[0] };
    let sid = format!("{}{}", correlation_id(), correlation_id());
    {
        let mut sessions = call.gw.sessions.lock();
        if sessions.open(sid.clone(), auth.claims.agent(), Instant::now()).is_err() {
            return respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(id, codes::INTERNAL, "too many open sessions; retry later", None), &call.corr);
        }
        sessions.set_offers(&sid, ClientOffers::of(params.get("capabilities").unwrap_or(&Value::Null)));
    }
    let ev = call.event(EventKind::McpRequest, Some(auth), Some("initialize"), Verdict::Allow, None);
    let result = json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false }, "resources": {}, "prompts": {}, "completions": {}, "logging": {} },
        "serverInfo": { "name": "warden-gateway", "version": env!("CARGO_PKG_VERSION") },
        "instructions": instructions(call.gw, auth),
    });
    let mut resp = call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": result }), id).await;
    resp.headers_mut().insert("mcp-session-id", HeaderValue::from_str(&sid).expect("hex"));
    resp
}

/// The gateway's instructions, and those of each upstream the caller may
/// use something of. An upstream's instructions go into the model's
/// context like a tool's description, so they are scanned the same way: a
/// server whose instructions are flagged as poisoned is named, its text left
/// out.
fn instructions(gw: &Gateway, auth: &Authenticated) -> String {
    let mut out = String::from("Tools and prompts are named SERVER__NAME, resources SERVER+URI. Every request is checked against policy and audited.");
    for up in gw.upstreams.values() {
        let name = &up.config.name;
        let Some(text) = up.instructions().filter(|_| granted_any(auth, name)) else { continue };
        if gw.inspector.scan_tool_definition(&json!({ "instructions": text }), name, &[]).flagged() {
            tracing::warn!(upstream = %name, "leaving out its instructions, flagged as poisoned");
            out.push_str(&format!("\n\n{name}: (its instructions were withheld by the gateway's inspection)"));
        } else {
            out.push_str(&format!("\n\n{name}: {text}"));
        }
    }
    out
}

async fn handle_get(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Some(refused) = rebinding(&gw, &headers) {
        return refused;
    }
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST, DELETE")], "this gateway does not open server-initiated streams").into_response()
}

async fn handle_delete(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    cert: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = rebinding(&gw, &headers) {
        return refused;
    }
    let cert = cert.map(|Extension(c)| c);
    let auth = match authenticate(&gw, &headers, "DELETE", peer, cert.as_ref(), now_secs()).await {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let Some(sid) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, "missing Mcp-Session-Id").into_response();
    };
    if !gw.sessions.lock().close(sid, auth.claims.agent()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    for up in gw.upstreams.values() {
        up.close_sessions(|c| matches!(c, Caller::Session { session, .. } if session == sid));
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn list_tools(call: &Call<'_>, auth: &Authenticated, id: &Value) -> Response {
    let tools = enforce::visible_tools(call.gw, auth, call.now);
    let ev = call.event(EventKind::ToolList, Some(auth), Some("tools/list"), Verdict::Allow, Some(format!("{} tools visible", tools.len())));
    call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": { "tools": tools } }), id).await
}

/// A federated listing of the upstreams' resources, resource templates or
/// prompts.
#[derive(Clone, Copy)]
enum Listing {
    Resources,
    Templates,
    Prompts,
}

impl Listing {
    fn method(self) -> &'static str {
        match self {
            Self::Resources => "resources/list",
            Self::Templates => "resources/templates/list",
            Self::Prompts => "prompts/list",
        }
    }

    /// The result's array.
    fn key(self) -> &'static str {
        match self {
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
            Self::Prompts => "prompts",
        }
    }

    /// The field that names an item (federated on the way out).
    fn name_field(self) -> &'static str {
        match self {
            Self::Resources => "uri",
            Self::Templates => "uriTemplate",
            Self::Prompts => "name",
        }
    }

    fn kind(self) -> TargetKind {
        if matches!(self, Self::Prompts) { TargetKind::Prompt } else { TargetKind::Resource }
    }
}

/// Upstream pages one listing request may read (to skip pages the caller
/// sees nothing of) before it answers with what it has and a cursor.
const MAX_PAGES_PER_LISTING: usize = 16;

/// List one kind of item across the upstreams, in server-name order, one
/// upstream page at a time (the cursor says where it continues), in the
/// caller's own upstream sessions, showing only what the caller's grant and
/// policy let it see. An upstream that fails is skipped (and named in the
/// record) so that the others can still be listed.
async fn list_catalog(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value, caller: &Caller, l: Listing) -> Response {
    let start = match params.get("cursor") {
        None | Some(Value::Null) => None,
        Some(c) => match c.as_str().and_then(Cursor::decode) {
            Some(c) => Some(c),
            None => {
                return respond(
                    StatusCode::OK,
                    rpc_error(id, codes::INVALID_PARAMS, "invalid cursor: pass nextCursor exactly as a previous page returned it", None),
                    &call.corr,
                );
            }
        },
    };
    let servers: Vec<&Arc<crate::Upstream>> = call
        .gw
        .upstreams
        .values()
        .filter(|u| start.as_ref().is_none_or(|c| u.config.name >= c.server))
        .filter(|u| enforce::item_tool(u, l.kind()).is_some_and(|t| auth.claims.in_scope(&t.tool) && auth.agent.may_use(&t.tool)))
        .collect();
    let (mut items, mut failed, mut next) = (Vec::new(), Vec::new(), None);
    // The cursor's upstream cursor, if its server is still the first listed.
    let mut upstream_cursor = match (&start, servers.first()) {
        (Some(c), Some(u)) if u.config.name == c.server => c.upstream.clone(),
        _ => None,
    };
    let capability = if matches!(l, Listing::Prompts) { "prompts" } else { "resources" };
    let (mut pages, mut i) = (0, 0);
    while i < servers.len() {
        let up = servers[i];
        // One page with something in it is an answer.
        if pages == MAX_PAGES_PER_LISTING || !items.is_empty() {
            next = Some(Cursor { server: up.config.name.clone(), upstream: upstream_cursor.take() });
            break;
        }
        pages += 1;
        if up.offers(capability) == Some(false) {
            i += 1;
            upstream_cursor = None;
            continue;
        }
        let ask = match upstream_cursor.take() {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        match up.request_for(caller, l.method(), ask).await {
            Ok(page) => {
                let listed = page.get(l.key()).and_then(Value::as_array).cloned().unwrap_or_default();
                let name_of = |v: &Value| v.get(l.name_field()).and_then(Value::as_str).map(|n| n.to_string());
                let shown = enforce::visible_items(call.gw, auth, up, l.kind(), listed, |v| v.get(l.name_field()).and_then(Value::as_str), call.now);
                for mut item in shown {
                    let name = name_of(&item).expect("visible items have names");
                    let federated = match l {
                        Listing::Prompts => Some(catalog::federate_name(&up.config.name, &name)),
                        _ => catalog::federate_uri(&up.config.name, &name),
                    };
                    if let Some(f) = federated {
                        item[l.name_field()] = f.into();
                        items.push(item);
                    }
                }
                match page.get("nextCursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
                    Some(c) => upstream_cursor = Some(c.to_string()),
                    None => i += 1,
                }
            }
            // Offers none after all.
            Err(UpstreamError::Rpc { code: codes::METHOD_NOT_FOUND, .. }) => i += 1,
            Err(e) => {
                tracing::warn!(upstream = %up.config.name, "{} failed: {e}", l.method());
                failed.push(up.config.name.clone());
                i += 1;
            }
        }
    }
    let mut reason = format!("{} {} visible", items.len(), l.key());
    if !failed.is_empty() {
        reason.push_str(&format!("; skipped, unavailable: {}", failed.join(", ")));
    }
    let ev = call.event(EventKind::ToolList, Some(auth), Some(l.method()), Verdict::Allow, Some(reason));
    let mut result = json!({ l.key(): items });
    if let Some(c) = next {
        result["nextCursor"] = c.encode().into();
    }
    call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": result }), id).await
}

/// A request relayed to an upstream (a tool call, a resource read, a
/// prompt, a completion), owned so that it can run on while its progress
/// streams to the client.
struct Relayed {
    gw: Arc<Gateway>,
    corr: String,
    start: Instant,
    now: i64,
    trace: Option<([u8; 16], [u8; 8])>,
    auth: Authenticated,
    id: Value,
    method: String,
    params: Value,
    caller: Caller,
}

impl Relayed {
    /// Run it to its answer, cancellable by its client while it runs, its
    /// progress sent to `progress`.
    async fn run(self, progress: Option<mpsc::UnboundedSender<crate::upstream::Relayed>>) -> Response {
        let call = Call { gw: &self.gw, corr: self.corr.clone(), start: self.start, now: self.now, trace: self.trace };
        let cancellable = match &self.caller {
            Caller::Session { session, .. } => Some(self.gw.cancels.start(session, &self.id)),
            Caller::Gateway => None,
        };
        let relay = Exchange { progress, cancel: cancellable.as_ref().map(|c| c.token.clone()) };
        match self.method.as_str() {
            "tools/call" => call_tool(&call, &self.auth, &self.id, &self.params, self.caller.clone(), relay).await,
            method => request_item(&call, &self.auth, &self.id, method, &self.params, self.caller.clone(), relay).await,
        }
    }
}

/// Answer a request whose client accepts an event stream: as a plain
/// response if it ends before any notification about it arrives (its HTTP
/// status and challenge intact), otherwise as an event stream of its
/// progress and log notifications (inspected: see [`screened`]) and then
/// its answer. A client that goes away stops only the stream; the request
/// runs to its end and its record.
async fn with_progress(r: Relayed) -> Response {
    let (gw, corr) = (r.gw.clone(), r.corr.clone());
    let passing = Passing {
        gw: gw.clone(),
        auth: r.auth.clone(),
        corr: corr.clone(),
        session: match &r.caller {
            Caller::Session { session, .. } => Some(session.clone()),
            Caller::Gateway => None,
        },
        subject: subject_of(&gw, &r.method, &r.params),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let Some(mut work) = gw.track(r.run(Some(tx))) else {
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "the gateway is shutting down; retry on another replica").into_response();
    };
    let failed = |e: tokio::task::JoinError| {
        tracing::error!(error = %e, "an MCP request task failed");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    };
    let first = loop {
        tokio::select! {
            done = &mut work => return done.unwrap_or_else(failed),
            Some(ev) = rx.recv() => if let Some(ev) = passing.pass(ev).await { break ev },
        }
    };
    let (out, body) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let frame = |v: &Value| format!("event: message\ndata: {v}\n\n");
        let _ = out.send(frame(&first)).await;
        let done = loop {
            tokio::select! {
                biased;
                Some(ev) = rx.recv() => if let Some(ev) = passing.pass(ev).await {
                    let _ = out.send(frame(&ev)).await;
                },
                done = &mut work => break done,
            }
        };
        while let Ok(ev) = rx.try_recv() {
            if let Some(ev) = passing.pass(ev).await {
                let _ = out.send(frame(&ev)).await;
            }
        }
        let answer = done.unwrap_or_else(failed);
        let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX).await.unwrap_or_default();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let _ = out.send(frame(&answer)).await;
    });
    let stream = futures_util::stream::unfold(body, |mut body| async move { body.recv().await.map(|f| (Ok::<_, std::convert::Infallible>(f), body)) });
    let mut resp =
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream)).into_response();
    resp.headers_mut().insert("x-warden-correlation-id", HeaderValue::from_str(&corr).expect("hex"));
    resp
}

/// What a relayed request's stream needs to pass on what its upstream sends
/// about it: notifications, and requests of the client.
struct Passing {
    gw: Arc<Gateway>,
    auth: Authenticated,
    corr: String,
    session: Option<String>,
    /// What the request is for, as policy sees it (the resource of a
    /// `relay_request` decision).
    subject: Option<(warden_core::Tool, TargetKind, String)>,
}

impl Passing {
    /// The message for the client, if any, for what the upstream relayed.
    async fn pass(&self, r: crate::upstream::Relayed) -> Option<Value> {
        match r {
            crate::upstream::Relayed::Notification(ev) => screened(&self.gw, ev),
            crate::upstream::Relayed::Request(msg, answer) => self.request(msg, answer).await,
        }
    }

    /// A request the upstream makes of the client (its client offers it):
    /// inspected, decided by Cedar (`relay_request`) and recorded; if
    /// allowed, sent on under an id of the gateway's, to which the client's
    /// answer must come back in this session; if not, the upstream is told
    /// why and the client never sees it.
    async fn request(&self, mut msg: Value, answer: tokio::sync::oneshot::Sender<Value>) -> Option<Value> {
        let refuse = |answer: tokio::sync::oneshot::Sender<Value>, reason: &str| {
            let _ = answer.send(json!({ "error": { "code": codes::DENIED, "message": format!("refused by the Warden gateway: {reason}") } }));
            None
        };
        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
        let (Some(session), Some((tool, kind, name))) = (&self.session, &self.subject) else {
            return refuse(answer, "the request it came with is not one the gateway relays for");
        };
        let params = msg.get("params").cloned().unwrap_or_default();
        let findings = self.gw.inspector.scan_json(&params).summary;
        let asks = method == "elicitation/create" && enforce::asks_for_credentials(&params);
        let mon = enforce::MonitorView { risk: i64::from(self.gw.monitor.risk(self.auth.claims.agent(), warden_core::clock::now_ms())), ..Default::default() };
        let ask = enforce::Ask::Relay { findings: &findings, method: &method, asks_for_credentials: asks };
        let decision = self.gw.policy().decide(&enforce::facts(&self.auth, enforce::Subject { tool, kind: *kind, name }, &json!({}), ask, now_secs(), &mon));
        let mut trail = Trail::new(EventKind::McpRequest, &self.corr, method.as_str(), &self.auth, Instant::now());
        trail.tool = Some(tool.tool.to_string());
        trail.add_policies(decision.policies().iter().cloned());
        let refused = match &decision {
            warden_core::Decision::Allow { .. } => None,
            warden_core::Decision::Deny { reason, .. } | warden_core::Decision::NeedsApproval { reason, .. } => Some(reason.clone()),
        };
        let (verdict, reason) = match &refused {
            None => (Verdict::Allow, "relayed to the client".to_string()),
            Some(r) => (Verdict::Deny, r.clone()),
        };
        let mut ev = trail.into_event(EventKind::McpRequest, verdict, Some(reason));
        ev.findings = enforce::finding_labels("relayed", &findings);
        if let Err(e) = enforce::record(&self.gw, ev, None).await {
            return refuse(answer, &format!("it could not be recorded ({e})"));
        }
        if let Some(reason) = refused {
            return refuse(answer, &reason);
        }
        msg["id"] = self.gw.awaiting.start(session, answer).into();
        Some(msg)
    }
}

/// What a relayed request is for, as policy sees it.
fn subject_of(gw: &Gateway, method: &str, params: &Value) -> Option<(warden_core::Tool, TargetKind, String)> {
    if method == "tools/call" {
        let tref = warden_core::ToolRef::from_federated_name(params.get("name")?.as_str()?)?;
        let tool = gw.snapshot().tools.get(&tref)?.clone();
        return Some((tool, TargetKind::Tool, tref.tool));
    }
    let (kind, server, name, _) = item_of(method, params).ok()?;
    Some((enforce::item_tool(gw.upstream(server)?, kind)?, kind, name.to_string()))
}

/// A client's answer to a request relayed to it: to the upstream that
/// asked, unless it carries a credential (the upstream is then told so).
fn answer_relayed(gw: &Gateway, session: &str, id: &Value, result: Option<Value>, error: Option<Value>) {
    let Some(waiter) = id.as_str().and_then(|id| gw.awaiting.take(session, id)) else { return };
    let answer = match (result, error) {
        (Some(r), _) if gw.inspector.scan_json(&r).summary.secret_count > 0 => {
            json!({ "error": { "code": codes::DENIED, "message": "the client's answer carried a credential; the Warden gateway withheld it from the server" } })
        }
        (Some(r), _) => json!({ "result": r }),
        (None, Some(e)) => json!({ "error": e }),
        (None, None) => json!({ "error": { "code": codes::INTERNAL, "message": "the client's answer had neither result nor error" } }),
    };
    let _ = waiter.send(answer);
}

/// A notification as the client may see it. What an upstream says in one
/// is text headed for the agent's context, so it is inspected: a progress
/// `message` that carries an injection, a credential or personal data is
/// dropped (the progress itself stays), and so is a log message whose data
/// does.
fn screened(gw: &Gateway, mut ev: Value) -> Option<Value> {
    let flagged = |v: &Value| {
        let f = gw.inspector.scan_json(v).summary;
        f.injection_score >= 50 || f.secret_count + f.pii_count > 0
    };
    let params = ev.get_mut("params").and_then(Value::as_object_mut)?;
    if params.get("message").is_some_and(&flagged) {
        params.remove("message");
    }
    let is_log = ev.get("method").and_then(Value::as_str) == Some("notifications/message");
    if is_log && ev.get("params").is_some_and(flagged) {
        tracing::warn!("dropping an upstream log message that carries an injection, a credential or personal data");
        return None;
    }
    Some(ev)
}

/// `logging/setLevel`: set in the caller's own session of every upstream it
/// is granted something of that offers logging (no other agent's level
/// changes); their log messages about its requests then stream to it.
async fn set_level(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value, caller: &Caller) -> Response {
    let Some(level) = params.get("level").and_then(Value::as_str) else {
        return respond(StatusCode::OK, rpc_error(id, codes::INVALID_PARAMS, "logging/setLevel needs params.level", None), &call.corr);
    };
    let mut failed = Vec::new();
    for up in call.gw.upstreams.values().filter(|u| u.offers("logging") != Some(false) && granted_any(auth, &u.config.name)) {
        if let Err(e) = up.request_for(caller, "logging/setLevel", json!({ "level": level })).await
            && !matches!(e, UpstreamError::Rpc { code: codes::METHOD_NOT_FOUND, .. })
        {
            failed.push(format!("{}: {e}", up.config.name));
        }
    }
    let reason = if failed.is_empty() { format!("level {level}") } else { format!("level {level}; not set at {}", failed.join("; ")) };
    let ev = call.event(EventKind::McpRequest, Some(auth), Some("logging/setLevel"), Verdict::Allow, Some(reason));
    call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": {} }), id).await
}

/// Whether the caller's token grants anything of `server`.
fn granted_any(auth: &Authenticated, server: &str) -> bool {
    auth.claims.scope.split_whitespace().filter_map(|s| s.parse::<warden_core::ToolRef>().ok()).any(|t| t.server == server)
}

/// The request `_meta` passed upstream with a relayed request. It is
/// caller-controlled data headed for the upstream like the arguments, so it
/// is inspected: if it carries a credential, personal data or an injection
/// only its progress token (which the upstream sees as the gateway's own)
/// goes on.
fn meta_of(gw: &Gateway, params: &Value) -> Option<Value> {
    let mut meta = params.get("_meta")?.as_object()?.clone();
    let token = meta.remove("progressToken");
    if !meta.is_empty() {
        let f = gw.inspector.scan_json(&Value::Object(meta.clone())).summary;
        if f.secret_count + f.pii_count > 0 || f.injection_score >= 50 {
            tracing::warn!("dropping request _meta that carries a credential, personal data or an injection");
            meta.clear();
        }
    }
    if let Some(t) = token {
        meta.insert("progressToken".into(), t);
    }
    (!meta.is_empty()).then_some(Value::Object(meta))
}

/// `params` with the `_meta` that may go upstream.
fn with_meta(gw: &Gateway, mut sent: Value, params: &Value) -> Value {
    match meta_of(gw, params) {
        Some(m) => sent["_meta"] = m,
        None => {
            sent.as_object_mut().map(|o| o.remove("_meta"));
        }
    }
    sent
}

/// A `tools/call`, through the enforcement core; the upstream is called
/// with the admitted arguments.
async fn call_tool(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value, caller: Caller, relay: Exchange) -> Response {
    let trail = Trail::new(EventKind::ToolCall, &call.corr, "call_tool", auth, call.start);
    let mut pipeline = Pipeline::new(call.gw, auth, call.now, trail);
    let forward = async |upstream: &crate::Upstream, t: &Target, args: Value| {
        let sent = with_meta(call.gw, json!({ "name": t.name, "arguments": args }), params);
        let mut r = upstream.exchange(&caller, "tools/call", sent, &relay).await?;
        catalog::federate_references(&upstream.config.name, &mut r);
        Ok(r)
    };
    let answer = pipeline.tool_call(params.get("name").and_then(Value::as_str), params.get("arguments"), forward).await;
    answer_of(call, pipeline, answer, id).await
}

/// A resource read, a prompt or a completion, through the enforcement core
/// as a `read_resource` or `get_prompt` of its server (a completion is
/// decided as the prompt or resource it completes, with the argument it
/// completes as its arguments, and its suggestions are reviewed as an
/// answer of that prompt or resource).
async fn request_item(call: &Call<'_>, auth: &Authenticated, id: &Value, method: &str, params: &Value, caller: Caller, relay: Exchange) -> Response {
    let trail = Trail::new(EventKind::ToolCall, &call.corr, method, auth, call.start);
    let mut pipeline = Pipeline::new(call.gw, auth, call.now, trail);
    let answer = match item_of(method, params) {
        Err(why) => Err(Stopped::Refused(why)),
        Ok((kind, server, name, args)) => match pipeline.resolve_item(kind, server, name, args).await {
            Err(r) => Err(Stopped::Refused(r)),
            Ok(target) => {
                let forward = async |upstream: &crate::Upstream, t: &Target, args: Value| {
                    let mut sent = params.clone();
                    match method {
                        "resources/read" => sent = args,
                        "prompts/get" => sent = json!({ "name": t.name, "arguments": args }),
                        // The reference as the upstream names it; the argument
                        // and the context's arguments as admitted.
                        _ => {
                            sent["ref"] = if t.kind == TargetKind::Prompt {
                                json!({ "type": "ref/prompt", "name": t.name })
                            } else {
                                json!({ "type": "ref/resource", "uri": t.name })
                            };
                            let mut others = args.as_object().cloned().unwrap_or_default();
                            let name = params.pointer("/argument/name").and_then(Value::as_str).unwrap_or_default();
                            sent["argument"] = json!({ "name": name, "value": others.remove(name).unwrap_or(json!("")) });
                            if sent.get("context").is_some_and(Value::is_object) || !others.is_empty() {
                                sent["context"] = json!({ "arguments": others });
                            }
                        }
                    }
                    let mut r = upstream.exchange(&caller, method, with_meta(call.gw, sent, params), &relay).await?;
                    catalog::federate_references(&upstream.config.name, &mut r);
                    Ok(r)
                };
                pipeline.carry(target, forward).await
            }
        },
    };
    answer_of(call, pipeline, answer, id).await
}

/// What a resource read, a prompt or a completion asks for: its kind, the
/// server, the name upstream and the arguments policy sees.
fn item_of<'p>(method: &str, params: &'p Value) -> Result<(TargetKind, &'p str, &'p str, Value), Refusal> {
    let text = |v: Option<&'p Value>, what: &str| v.and_then(Value::as_str).ok_or_else(|| Refusal::Malformed(format!("{method} needs {what}")));
    let resource = |uri: &'p str| {
        catalog::resolve_uri(uri).ok_or_else(|| {
            Refusal::Unknown(format!("unknown resource {uri:?}: resources through the gateway are named SERVER+URI, as resources/list shows them"))
        })
    };
    let prompt = |name: &'p str| {
        catalog::resolve_name(name).ok_or_else(|| Refusal::Unknown(format!("unknown prompt {name:?}: prompts through the gateway are named SERVER__PROMPT")))
    };
    match method {
        "resources/read" => {
            let (server, uri) = resource(text(params.get("uri"), "params.uri")?)?;
            Ok((TargetKind::Resource, server, uri, json!({ "uri": uri })))
        }
        "prompts/get" => {
            let (server, name) = prompt(text(params.get("name"), "params.name")?)?;
            let args = match params.get("arguments") {
                None | Some(Value::Null) => json!({}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(_) => return Err(Refusal::Malformed("params.arguments must be an object".into())),
            };
            Ok((TargetKind::Prompt, server, name, args))
        }
        _ => {
            // What policy and inspection see: the arguments the prompt or
            // template would get, the completed one with its partial value.
            let r = params.get("ref");
            let arg = params.get("argument");
            let mut args = match params.pointer("/context/arguments") {
                None | Some(Value::Null) => json!({}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(_) => return Err(Refusal::Malformed("params.context.arguments must be an object".into())),
            };
            args[text(arg.and_then(|a| a.get("name")), "params.argument.name")?] = arg.and_then(|a| a.get("value")).cloned().unwrap_or(json!(""));
            match text(r.and_then(|r| r.get("type")), "params.ref.type")? {
                "ref/prompt" => {
                    let (server, name) = prompt(text(r.and_then(|r| r.get("name")), "params.ref.name")?)?;
                    Ok((TargetKind::Prompt, server, name, args))
                }
                "ref/resource" => {
                    let (server, uri) = resource(text(r.and_then(|r| r.get("uri")), "params.ref.uri")?)?;
                    Ok((TargetKind::Resource, server, uri, args))
                }
                other => Err(Refusal::Malformed(format!("params.ref.type {other:?} is neither ref/prompt nor ref/resource"))),
            }
        }
    }
}

/// Record a call that went through the pipeline, and answer it as JSON-RPC.
async fn answer_of(call: &Call<'_>, pipeline: Pipeline<'_>, answer: Result<Value, Stopped>, id: &Value) -> Response {
    let ev = pipeline.trail.record(answer.as_ref().err());
    let (status, body) = match &answer {
        Ok(r) => (StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": r })),
        Err(Stopped::Refused(r)) => render(r, id, &call.corr, &ev.policies),
        // The upstream's own JSON-RPC error, passed through.
        Err(Stopped::UpstreamFailed(UpstreamError::Rpc { code, message, data, .. })) => {
            (StatusCode::OK, rpc_error(id, *code, message, data.as_ref().map(|d| (**d).clone())))
        }
        Err(Stopped::UpstreamFailed(e)) => (StatusCode::OK, rpc_error(id, codes::INTERNAL, &e.to_string(), None)),
    };
    let resp = call.finish(ev, status, body, id).await;
    match &answer {
        Err(Stopped::Refused(Refusal::OutOfScope(tref))) => {
            let f = crate::AuthFailure {
                status: StatusCode::FORBIDDEN,
                error: Some("insufficient_scope"),
                description: format!("the token does not grant {tref}"),
                agent: None,
                token_id: None,
            };
            with_challenge(resp, StatusCode::FORBIDDEN, &f.challenge(&call.gw.config.resource_metadata, Some(&tref.to_string())))
        }
        _ => resp,
    }
}

/// A refusal as JSON-RPC: its code, the HTTP status, and data naming the
/// policies that refused it (and the correlation id to find its record).
fn render(r: &Refusal, id: &Value, corr: &str, policies: &[String]) -> (StatusCode, Value) {
    let code = match r {
        Refusal::Malformed(_) | Refusal::Unknown(_) => codes::INVALID_PARAMS,
        Refusal::OutOfScope(_) => codes::OUT_OF_SCOPE,
        Refusal::Pending { .. } | Refusal::Withheld(Withheld::NeedsApproval { .. }) => codes::NEEDS_APPROVAL,
        Refusal::ApprovalsUnavailable(_) | Refusal::NotForwarded(_) => codes::INTERNAL,
        _ => codes::DENIED,
    };
    let (status, data) = match r {
        Refusal::Malformed(_) | Refusal::Unknown(_) | Refusal::Unavailable(_) | Refusal::NotForwarded(_) => (StatusCode::OK, None),
        Refusal::OutOfScope(t) => (StatusCode::FORBIDDEN, Some(json!({ "required_scope": t.to_string() }))),
        _ => (StatusCode::OK, Some(json!({ "policies": r.result_policies().unwrap_or(policies), "correlation_id": corr }))),
    };
    (status, rpc_error(id, code, &r.message(), data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::{Kill, KillScope};

    #[test]
    fn refusals_render_as_their_json_rpc_codes() {
        let id = json!(7);
        let code = |r: Refusal| render(&r, &id, "c0", &[]).1["error"]["code"].as_i64().unwrap();
        assert_eq!(code(Refusal::Malformed("x".into())), codes::INVALID_PARAMS);
        assert_eq!(code(Refusal::Policy { reason: "x".into(), critical: None }), codes::DENIED);
        assert_eq!(code(Refusal::Pending { approval: "a".into(), reason: "r".into(), expires_in_secs: 1 }), codes::NEEDS_APPROVAL);
        assert_eq!(code(Refusal::Withheld(Withheld::NeedsApproval { reason: "r".into(), policies: vec![] })), codes::NEEDS_APPROVAL);
        assert_eq!(code(Refusal::NotForwarded("disk".into())), codes::INTERNAL);
        assert_eq!(code(Refusal::ApprovalsUnavailable("store".into())), codes::INTERNAL);
    }

    #[test]
    fn an_out_of_scope_call_is_forbidden_and_names_the_scope_it_needs() {
        let tref = warden_core::ToolRef::new("crm", "export").unwrap();
        let (status, body) = render(&Refusal::OutOfScope(tref), &json!(1), "c0", &[]);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["data"], json!({ "required_scope": "crm/export" }));
        assert_eq!(body["error"]["message"], "denied: tool crm/export is outside this token's scope");
    }

    #[test]
    fn a_decided_refusal_names_its_policies_and_correlation_id() {
        let k = Kill { id: 3, scope: KillScope::Global, target: "*".into(), reason: "incident".into(), by: "op".into(), at_ms: 0 };
        let (status, body) = render(&Refusal::Killed(k), &json!("a"), "c0", &["kill#3".to_string()]);
        assert_eq!(status, StatusCode::OK, "a tool call refusal is a JSON-RPC error, not an HTTP one");
        assert_eq!(body["id"], "a");
        assert_eq!(body["error"]["message"], "denied: global kill switch engaged: incident");
        assert_eq!(body["error"]["data"], json!({ "policies": ["kill#3"], "correlation_id": "c0" }));
    }
}

//! The MCP streamable-HTTP endpoint (`POST/GET/DELETE /mcp`): the MCP
//! front door. It parses JSON-RPC, keeps MCP sessions, authenticates each
//! request, runs tool calls, resource reads, prompts and completions through
//! the enforcement core ([`crate::enforce`]), federates the upstreams'
//! listings (names as [`crate::catalog`] gives them, filtered by scope and
//! policy) and renders what the core decided as JSON-RPC. Answers are JSON
//! bodies, or event streams when the upstream talks back before it answers
//! ([`stream`]); `GET /mcp` opens the session's own stream of what its
//! upstreams say about no request, resumable with `Last-Event-ID`.
//! Listings are in [`listing`]. Requests of the stateless revision
//! (2026-07-28: no session, per-request `_meta`, mirrored headers) are
//! checked by [`modern`] and then dispatched like a session's.

use crate::authn::Authenticated;
use crate::catalog;
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
use warden_core::clock::now_secs;
use warden_core::{AuditEvent, EventKind, TargetKind, Verdict};

use crate::upstream::PROTOCOL_VERSIONS as SUPPORTED_VERSIONS;

pub use crate::jsonrpc::codes;

mod listen;
mod listing;
mod modern;
mod stream;

use listing::{Listing, list_catalog, list_tools};
use modern::Modern;
pub(crate) use modern::upstream_meta;
pub(crate) use stream::deliver_notices;
use stream::{Dispatched, answer_relayed, session_stream, with_meta, with_progress};

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
    ctx: Context,
}

/// What the front door knows of a request besides the gateway: owned, so
/// that a request relayed upstream ([`stream::Dispatched`]) carries it.
#[derive(Clone)]
struct Context {
    corr: String,
    /// When the request arrived.
    start: Instant,
    now: i64,
    /// The agent's trace context (W3C `traceparent`), for the span.
    trace: Option<([u8; 16], [u8; 8])>,
    /// What a request of the stateless revision declared (its results get
    /// that revision's envelope).
    modern: Option<Modern>,
    /// The pending approval a stateless client's retry comes back for.
    resumes: Option<String>,
}

impl Call<'_> {
    /// The record of an MCP request that is not a tool call (a session
    /// opened, a listing, a request refused before it was understood).
    fn event(&self, kind: EventKind, auth: Option<&Authenticated>, action: Option<&str>, decision: Verdict, reason: Option<String>) -> AuditEvent {
        let mut ev = match auth {
            Some(a) => Trail::new(kind, &self.ctx.corr, action.unwrap_or_default(), a, self.ctx.start).into_event(kind, decision, reason),
            None => AuditEvent { kind: Some(kind), correlation_id: Some(self.ctx.corr.clone()), decision, reason, ..Default::default() },
        };
        ev.action = action.map(String::from);
        ev.latency_us = Some(self.ctx.start.elapsed().as_micros() as u64);
        ev
    }

    /// Audit, then answer; if the audit write fails, the answer is an error.
    async fn finish(&self, ev: AuditEvent, status: StatusCode, mut body: Value, id: &Value) -> Response {
        if let (Some(m), Some(r)) = (&self.ctx.modern, body.get_mut("result")) {
            m.envelope(r);
        }
        match enforce::record(self.gw, ev, self.ctx.trace).await {
            Ok(()) => respond(status, body, &self.ctx.corr),
            Err(e) => respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(id, codes::INTERNAL, &e.to_string(), None), &self.ctx.corr),
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
    let mut call = Call { gw: &gw, ctx: Context { corr: correlation_id(), start: Instant::now(), now: now_secs(), trace, modern: None, resumes: None } };
    let null = Value::Null;
    if let Some(why) = gw.registry_stale() {
        let ev = call.event(EventKind::McpRequest, None, None, Verdict::Deny, Some(why.clone()));
        return call.finish(ev, StatusCode::SERVICE_UNAVAILABLE, rpc_error(&null, codes::INTERNAL, &why, None), &null).await;
    }
    let auth = match authenticate(&gw, &headers, "POST", peer, cert.as_ref(), call.ctx.now).await {
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
            return respond(StatusCode::ACCEPTED, Value::Null, &call.ctx.corr);
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
        let body = rpc_error(&id, codes::DENIED, &Refusal::Killed(k).message(), Some(json!({ "correlation_id": call.ctx.corr })));
        return call.finish(ev, StatusCode::FORBIDDEN, body, &id).await;
    }

    if modern::is_modern(&headers, &params) {
        if notification {
            // This revision defines none over HTTP; nothing to do.
            return respond(StatusCode::ACCEPTED, Value::Null, &call.ctx.corr);
        }
        let schema = (method == "tools/call").then(|| tool_schema(&gw, &params)).flatten();
        match modern::admit(&headers, method, &params, schema.as_ref()) {
            Ok(m) => call.ctx.modern = Some(m),
            Err(r) => return refuse_stateless(&call, &auth, method, &id, r).await,
        }
        return stateless(&gw, &call, &headers, auth, id, method, params).await;
    }
    if method == "initialize" {
        return initialize(&call, &auth, &id, &params).await;
    }
    let session = match session_for(&gw, &headers, &auth) {
        Ok(sid) => sid,
        Err((status, message)) => return respond(status, rpc_error(&id, codes::INVALID_REQUEST, message, None), &call.ctx.corr),
    };
    // (A version header naming no session revision was answered above, as
    // the stateless revision answers it: -32022 with the versions spoken.)
    if notification {
        // A cancellation reaches its request if it is still in flight in
        // this session (too late is fine: the spec allows the race).
        if method == "notifications/cancelled"
            && let (Caller::Session { session, .. }, Some(request)) = (&session, params.get("requestId"))
        {
            gw.cancels.cancel(session, request);
        }
        // Notifications need no answer.
        return respond(StatusCode::ACCEPTED, Value::Null, &call.ctx.corr);
    }
    match method {
        "ping" => respond(StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": {} }), &call.ctx.corr),
        "tools/list" => list_tools(&call, &auth, &id).await,
        "tools/call" | "resources/read" | "resources/subscribe" | "resources/unsubscribe" | "prompts/get" | "completion/complete" => {
            dispatch(call.relayed(&gw, auth, id, method, params, session), &headers).await
        }
        "logging/setLevel" => set_level(&call, &auth, &id, &params, &session).await,
        "resources/list" => list_catalog(&call, &auth, &id, &params, &session, Listing::Resources).await,
        "resources/templates/list" => list_catalog(&call, &auth, &id, &params, &session, Listing::Templates).await,
        "prompts/list" => list_catalog(&call, &auth, &id, &params, &session, Listing::Prompts).await,
        other => respond(
            StatusCode::OK,
            rpc_error(&id, codes::METHOD_NOT_FOUND, &format!("method {other} is not available through the Warden gateway"), None),
            &call.ctx.corr,
        ),
    }
}

impl Call<'_> {
    /// This request, owned, to relay to an upstream in `caller`'s sessions.
    fn relayed(&self, gw: &Arc<Gateway>, auth: Authenticated, id: Value, method: &str, params: Value, caller: Caller) -> Dispatched {
        Dispatched { gw: gw.clone(), ctx: self.ctx.clone(), auth, id, method: method.into(), params, caller }
    }
}

/// A request relayed to an upstream, streamed when its client takes it so.
async fn dispatch(r: Dispatched, headers: &HeaderMap) -> Response {
    if accepts_event_stream(headers) { with_progress(r).await } else { r.run(None).await }
}

/// A request of the stateless revision, checked: the methods it has, in
/// the caller's own upstream sessions (one per agent, so no state crosses
/// agents), whose declared client takes no server requests.
async fn stateless(gw: &Arc<Gateway>, call: &Call<'_>, headers: &HeaderMap, auth: Authenticated, id: Value, method: &str, params: Value) -> Response {
    let caller = Caller::Session {
        agent: auth.claims.agent().to_string(),
        session: crate::listeners::stateless_session(auth.claims.agent()),
        offers: Default::default(),
    };
    match method {
        "server/discover" => discover(call, &auth, &id).await,
        "subscriptions/listen" => listen::listen(gw, call, auth, id, &params, caller).await,
        "tools/list" => list_tools(call, &auth, &id).await,
        "tools/call" | "resources/read" | "prompts/get" | "completion/complete" => match retried(call, &auth, method, params) {
            Ok((params, resumes)) => {
                let mut r = call.relayed(gw, auth, id, method, params, caller);
                r.ctx.resumes = resumes;
                dispatch(r, headers).await
            }
            Err(r) => refuse_stateless(call, &auth, method, &id, r).await,
        },
        "resources/list" => list_catalog(call, &auth, &id, &params, &caller, Listing::Resources).await,
        "resources/templates/list" => list_catalog(call, &auth, &id, &params, &caller, Listing::Templates).await,
        "prompts/list" => list_catalog(call, &auth, &id, &params, &caller, Listing::Prompts).await,
        // `initialize`, `ping`, `logging/setLevel` and the subscriptions of
        // the session revisions included.
        other => respond(
            StatusCode::NOT_FOUND,
            rpc_error(&id, codes::METHOD_NOT_FOUND, &format!("method {other} is not available through the Warden gateway in MCP {}", modern::VERSION), None),
            &call.ctx.corr,
        ),
    }
}

/// A request of the stateless revision refused before it is dispatched,
/// recorded like any refused request.
async fn refuse_stateless(call: &Call<'_>, auth: &Authenticated, method: &str, id: &Value, r: modern::Rejection) -> Response {
    let ev = call.event(EventKind::McpRequest, Some(auth), Some(method), Verdict::Deny, Some(r.message.clone()));
    call.finish(ev, r.status, rpc_error(id, r.code, &r.message, r.data), id).await
}

/// A retry of an MRTR request, made ready for its upstream: the sealed
/// `requestState` opened to the upstream's own (refused when it was not
/// this agent's for this request at this server, was altered or expired);
/// `inputResponses` only with such a state, and only those that answer
/// what the gateway let the server ask: others, and any without a state,
/// are dropped, as a server ignores what it did not ask for (it then asks
/// again). They are refused when they carry a credential (the server
/// asked for it; the gateway does not hand it over).
/// The approval the state was sealed with comes back beside them.
fn retried(call: &Call<'_>, auth: &Authenticated, method: &str, mut params: Value) -> Result<(Value, Option<String>), modern::Rejection> {
    let sealed = match params.get("requestState") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(modern::malformed("params.requestState must be a string")),
    };
    let Some(p) = params.as_object_mut() else { return Ok((params, None)) };
    let responses = p.remove("inputResponses").filter(|r| !r.is_null());
    p.remove("requestState");
    let state = match sealed {
        None => None,
        Some(sealed) => {
            let name = modern::request_name(method, &params);
            let server = server_of(call.gw, method, &params);
            Some(modern::RequestState::open(&sealed, &call.gw.cursor_key, auth.claims.agent(), (method, name, server.as_deref()), call.ctx.now)?)
        }
    };
    match (responses, &state) {
        (None, _) | (Some(_), None) => {}
        (Some(Value::Object(mut answers)), Some(s)) => {
            answers.retain(|k, _| s.asked.contains(k));
            let answers = Value::Object(answers);
            if call.gw.inspector.scan_json(&answers).summary.secret_count > 0 {
                return Err(modern::Rejection {
                    status: StatusCode::OK,
                    code: codes::DENIED,
                    message: "denied: the client's inputResponses carry a credential; the Warden gateway does not pass it to the server".into(),
                    data: None,
                });
            }
            params["inputResponses"] = answers;
        }
        (Some(_), Some(_)) => return Err(modern::malformed("params.inputResponses must be an object")),
    }
    let (upstream, resumes) = state.map_or((None, None), |s| (s.upstream, s.approval));
    if let Some(upstream) = upstream {
        params["requestState"] = upstream.into();
    }
    Ok((params, resumes))
}

/// The server a tool call, prompt or resource read goes to, as the
/// gateway resolves its name now.
fn server_of(gw: &Gateway, method: &str, params: &Value) -> Option<String> {
    let name = modern::request_name(method, params);
    match method {
        "tools/call" => gw.resolve_tool_name(name).ok().map(|t| t.server),
        "prompts/get" => gw.resolve_item(name, TargetKind::Prompt).ok().map(|(s, _)| s),
        "resources/read" => gw.resolve_item(name, TargetKind::Resource).ok().map(|(s, _)| s),
        _ => None,
    }
}

/// The `inputSchema` of the tool a `tools/call` names, as the gateway
/// lists it.
fn tool_schema(gw: &Gateway, params: &Value) -> Option<Value> {
    let tref = gw.resolve_tool_name(params.get("name")?.as_str()?).ok()?;
    gw.definitions.read().get(&tref)?.get("inputSchema").cloned()
}

/// What the gateway offers a client (the same in either revision: the
/// stateless one hears of changes and subscribes through
/// `subscriptions/listen`, a session on its `GET` stream).
fn capabilities() -> Value {
    json!({
        "tools": { "listChanged": true },
        "resources": { "subscribe": true, "listChanged": true },
        "prompts": { "listChanged": true },
        "completions": {},
        "logging": {},
    })
}

/// `server/discover`: the versions the gateway speaks, what it offers and
/// its instructions (the envelope adds its identity).
async fn discover(call: &Call<'_>, auth: &Authenticated, id: &Value) -> Response {
    let ev = call.event(EventKind::McpRequest, Some(auth), Some("server/discover"), Verdict::Allow, None);
    let result = json!({ "supportedVersions": modern::supported_versions(), "capabilities": capabilities(), "instructions": instructions(call.gw, auth) });
    call.finish(ev, StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": result }), id).await
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

/// Whether the client takes an event stream for an answer.
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"))
}

/// A GET or DELETE past the DNS-rebinding check and authentication.
async fn admitted(
    gw: &Gateway,
    headers: &HeaderMap,
    method: &str,
    peer: SocketAddr,
    cert: Option<Extension<PeerCertificate>>,
) -> Result<Authenticated, Box<Response>> {
    if let Some(refused) = rebinding(gw, headers) {
        return Err(Box::new(refused));
    }
    let cert = cert.map(|Extension(c)| c);
    authenticate(gw, headers, method, peer, cert.as_ref(), now_secs()).await
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
            return respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(id, codes::INTERNAL, "too many open sessions; retry later", None), &call.ctx.corr);
        }
        sessions.set_offers(&sid, ClientOffers::of(params.get("capabilities").unwrap_or(&Value::Null)));
    }
    let ev = call.event(EventKind::McpRequest, Some(auth), Some("initialize"), Verdict::Allow, None);
    let result = json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
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
    let mut out = String::from("Tools and prompts are named SERVER__NAME, resources SERVER+URI");
    let bare: Vec<&str> = gw.upstreams.values().filter(|u| u.config.naming == catalog::Naming::Bare).map(|u| u.config.name.as_str()).collect();
    if !bare.is_empty() {
        out.push_str(&format!(", except those of {}, which keep their own names", bare.join(", ")));
    }
    out.push_str(". Every request is checked against policy and audited.");
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

/// A GET or DELETE of the stateless revision, which has no session to
/// stream or end.
fn not_in_stateless(verb: &str) -> Response {
    let message = format!("MCP {} has no {verb} /mcp: send each request as a POST (subscriptions/listen for notifications)", modern::VERSION);
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")], message).into_response()
}

/// `GET /mcp`: the session's stream of what its upstreams say about no
/// request (log messages, list changes), resumable with `Last-Event-ID`.
async fn handle_get(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    cert: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
) -> Response {
    let auth = match admitted(&gw, &headers, "GET", peer, cert).await {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    if modern::stateless_header(&headers) {
        return not_in_stateless("GET");
    }
    if !accepts_event_stream(&headers) {
        return (StatusCode::NOT_ACCEPTABLE, "GET /mcp opens an event stream: send Accept: text/event-stream").into_response();
    }
    if gw.kill_covering(&auth, None).is_some() {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Some(sid) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, "missing Mcp-Session-Id: send initialize first").into_response();
    };
    let after = match headers.get("last-event-id").map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok())) {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return (StatusCode::BAD_REQUEST, "Last-Event-ID must be an event id this stream gave").into_response(),
    };
    let opened = {
        let mut sessions = gw.sessions.lock();
        let live = sessions.touch(sid, auth.claims.agent(), Instant::now());
        live.then(|| sessions.open_stream(sid, auth.claims.agent(), after)).flatten()
    };
    match opened {
        Some((replay, live)) => session_stream(replay, live),
        None => (StatusCode::NOT_FOUND, "unknown or expired session: initialize a new one").into_response(),
    }
}

async fn handle_delete(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    cert: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
) -> Response {
    let auth = match admitted(&gw, &headers, "DELETE", peer, cert).await {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    if modern::stateless_header(&headers) {
        return not_in_stateless("DELETE");
    }
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

/// `logging/setLevel`: set in the caller's own session of every upstream it
/// is granted something of that offers logging (no other agent's level
/// changes); their log messages about its requests then stream to it.
async fn set_level(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value, caller: &Caller) -> Response {
    // Only the spec's levels (RFC 5424's names): the value goes to every
    // upstream, so it must not be a channel for anything else.
    const LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];
    let Some(level) = params.get("level").and_then(Value::as_str).filter(|l| LEVELS.contains(l)) else {
        let message = format!("logging/setLevel needs params.level, one of {}", LEVELS.join(", "));
        return respond(StatusCode::OK, rpc_error(id, codes::INVALID_PARAMS, &message, None), &call.ctx.corr);
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

/// A `tools/call`, through the enforcement core; the upstream is called
/// with the admitted arguments.
async fn call_tool(call: &Call<'_>, auth: &Authenticated, id: &Value, params: &Value, caller: Caller, relay: Exchange) -> Response {
    let trail = Trail::new(EventKind::ToolCall, &call.ctx.corr, "call_tool", auth, call.ctx.start);
    let mut pipeline = Pipeline::new(call.gw, auth, call.ctx.now, trail);
    pipeline.resumes = call.ctx.resumes.clone();
    let forward = async |upstream: &crate::Upstream, t: &Target, args: Value| {
        let sent = with_meta(call.gw, json!({ "name": t.name, "arguments": args }), params);
        let mut r = Relaying { call, auth, caller: &caller, params, exchange: &relay }.send(upstream, t, "tools/call", sent).await?;
        catalog::federate_references(&upstream.config, &mut r);
        Ok(r)
    };
    let answer = pipeline.tool_call(params.get("name").and_then(Value::as_str), params.get("arguments"), forward).await;
    answer_of(call, pipeline, answer, (id, "tools/call", params)).await
}

/// A resource read, a prompt or a completion, through the enforcement core
/// as a `read_resource` or `get_prompt` of its server (a completion is
/// decided as the prompt or resource it completes, with the argument it
/// completes as its arguments, and its suggestions are reviewed as an
/// answer of that prompt or resource).
async fn request_item(call: &Call<'_>, auth: &Authenticated, id: &Value, method: &str, params: &Value, caller: Caller, relay: Exchange) -> Response {
    let (pipeline, answer) = request_answer(call, auth, method, params, caller, relay).await;
    answer_of(call, pipeline, answer, (id, method, params)).await
}

/// What [`request_item`] answers, before it is recorded and rendered.
async fn request_answer<'c>(
    call: &'c Call<'_>,
    auth: &'c Authenticated,
    method: &str,
    params: &Value,
    caller: Caller,
    relay: Exchange,
) -> (Pipeline<'c>, Result<Value, Stopped>) {
    let trail = Trail::new(EventKind::ToolCall, &call.ctx.corr, method, auth, call.ctx.start);
    let mut pipeline = Pipeline::new(call.gw, auth, call.ctx.now, trail);
    pipeline.resumes = call.ctx.resumes.clone();
    let answer = match item_of(call.gw, method, params) {
        Err(why) => {
            // Counted like an unknown tool: free unless it is a flood.
            pipeline.unresolved(&why).await;
            Err(Stopped::Refused(why))
        }
        Ok((kind, server, name, args)) => match pipeline.resolve_item(kind, &server, &name, args).await {
            Err(r) => Err(Stopped::Refused(r)),
            Ok(target) => {
                let forward = async |upstream: &crate::Upstream, t: &Target, args: Value| {
                    // Built from what was admitted, never from the client's
                    // params: nothing uninspected goes upstream.
                    let sent = match method {
                        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => args,
                        "prompts/get" => json!({ "name": t.name, "arguments": args }),
                        // The reference as the upstream names it; the argument
                        // and the context's arguments as admitted.
                        _ => {
                            let reference = if t.kind == TargetKind::Prompt {
                                json!({ "type": "ref/prompt", "name": t.name })
                            } else {
                                json!({ "type": "ref/resource", "uri": t.name })
                            };
                            let mut others = args.as_object().cloned().unwrap_or_default();
                            let name = params.pointer("/argument/name").and_then(Value::as_str).unwrap_or_default();
                            let argument = json!({ "name": name, "value": others.remove(name).unwrap_or(json!("")) });
                            json!({ "ref": reference, "argument": argument, "context": { "arguments": others } })
                        }
                    };
                    let sent = with_meta(call.gw, sent, params);
                    let mut r = Relaying { call, auth, caller: &caller, params, exchange: &relay }.send(upstream, t, method, sent).await?;
                    catalog::federate_references(&upstream.config, &mut r);
                    Ok(r)
                };
                pipeline.carry(target, forward).await
            }
        },
    };
    // The session revisions' "resource not found" is `-32602` in the
    // stateless one (SEP-2164); an upstream of theirs answers `-32002`.
    let mut answer = answer;
    if call.ctx.modern.is_some()
        && method == "resources/read"
        && let Err(Stopped::UpstreamFailed(UpstreamError::Rpc { code, .. })) = &mut answer
        && *code == LEGACY_RESOURCE_NOT_FOUND
    {
        *code = codes::INVALID_PARAMS;
    }
    (pipeline, answer)
}

/// "Resource not found" in MCP 2025-06-18 and 2025-11-25.
const LEGACY_RESOURCE_NOT_FOUND: i64 = -32002;

/// What a resource read, a prompt or a completion asks for: its kind, the
/// server, the name upstream and the arguments policy sees.
fn item_of(gw: &Gateway, method: &str, params: &Value) -> Result<(TargetKind, String, String, Value), Refusal> {
    let text =
        |v: Option<&Value>, what: &str| v.and_then(Value::as_str).map(str::to_string).ok_or_else(|| Refusal::Malformed(format!("{method} needs {what}")));
    let named = |kind: TargetKind, name: String| {
        let (what, how) = if kind == TargetKind::Resource { ("resource", "SERVER+URI") } else { ("prompt", "SERVER__PROMPT") };
        gw.resolve_item(&name, kind).map_err(|e| match e {
            catalog::NameError::Unknown => {
                Refusal::Unknown(format!("unknown {what} {name:?}: {what}s through the gateway are named {how}, as the gateway lists them"))
            }
            catalog::NameError::Ambiguous(servers) => {
                Refusal::Unknown(format!("{what} {name:?} could be of {}: more than one server keeps its own {what} names", servers.join(", ")))
            }
        })
    };
    match method {
        // A subscription is decided as a read: its updates are the resource's.
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let (server, uri) = named(TargetKind::Resource, text(params.get("uri"), "params.uri")?)?;
            let args = json!({ "uri": uri });
            Ok((TargetKind::Resource, server, uri, args))
        }
        "prompts/get" => {
            let (server, name) = named(TargetKind::Prompt, text(params.get("name"), "params.name")?)?;
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
            let (kind, field) = match text(r.and_then(|r| r.get("type")), "params.ref.type")?.as_str() {
                "ref/prompt" => (TargetKind::Prompt, "name"),
                "ref/resource" => (TargetKind::Resource, "uri"),
                other => return Err(Refusal::Malformed(format!("params.ref.type {other:?} is neither ref/prompt nor ref/resource"))),
            };
            let (server, name) = named(kind, text(r.and_then(|r| r.get(field)), &format!("params.ref.{field}"))?)?;
            Ok((kind, server, name, args))
        }
    }
}

/// Send what the pipeline admitted to its upstream: in the caller's own
/// upstream session, or, when both the client and the upstream speak the
/// stateless revision, as a request of that revision. Then an upstream
/// that needs the client's input (MRTR, SEP-2322) answers `input_required`:
/// each input request must be one the client declared and is decided like
/// a server request of the session revisions; the upstream's
/// `requestState` goes to the client sealed ([`modern::RequestState`]),
/// and the client's retry brings the `inputResponses` and the state, opened
/// at the front door, along.
struct Relaying<'r> {
    call: &'r Call<'r>,
    auth: &'r Authenticated,
    caller: &'r Caller,
    /// The client's params.
    params: &'r Value,
    exchange: &'r Exchange,
}

impl Relaying<'_> {
    async fn send(&self, upstream: &crate::Upstream, t: &Target, method: &str, sent: Value) -> Result<Value, UpstreamError> {
        let r = match self.call.ctx.modern {
            Some(m) if upstream.speaks_stateless().await => return self.stateless(m, upstream, t, method, sent).await,
            _ => upstream.exchange(self.caller, method, sent, self.exchange).await?,
        };
        // Only a request of the stateless revision can be answered so (and
        // only there does the gateway decide on the input requests).
        if self.call.ctx.modern.is_some() && r.get("resultType").and_then(Value::as_str) == Some("input_required") {
            return Err(refused_by_gateway(upstream, "an upstream of the session revisions answered input_required".into()));
        }
        Ok(r)
    }

    async fn stateless(&self, m: Modern, upstream: &crate::Upstream, t: &Target, method: &str, mut sent: Value) -> Result<Value, UpstreamError> {
        let (call, auth, params, relay) = (self.call, self.auth, self.params, self.exchange);
        for retried in ["inputResponses", "requestState"] {
            if let Some(v) = params.get(retried).filter(|v| !v.is_null()) {
                sent[retried] = v.clone();
            }
        }
        let schema = (t.kind == TargetKind::Tool).then(|| call.gw.definitions.read().get(&t.tool.tool).and_then(|d| d.get("inputSchema")).cloned()).flatten();
        let mut r = upstream.stateless(m.offers, m.log_level, schema.as_ref(), method, sent, relay).await?;
        if r.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return Ok(r);
        }
        let refused = |why: String| refused_by_gateway(upstream, why);
        if !modern::takes_input(method) {
            return Err(refused(format!("the server answered {method} with input_required, which only tool calls, prompts and resource reads may")));
        }
        let asked = match r.get("inputRequests") {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(a)) if a.len() <= MAX_INPUT_REQUESTS => a.clone(),
            Some(Value::Object(_)) => return Err(refused(format!("the server asked for more than {MAX_INPUT_REQUESTS} inputs at once"))),
            Some(_) => return Err(refused("the server's inputRequests is not an object".into())),
        };
        let subject = stream::subject_of(call.gw, method, params);
        for (key, request) in &asked {
            let what = request.get("method").and_then(Value::as_str).unwrap_or_default();
            let its = request.get("params").cloned().unwrap_or_default();
            m.offers.admit(what, &its).map_err(|why| refused(format!("the server asked the client ({key:?}) for what it did not declare: {why}")))?;
            stream::relay_decision(call.gw, auth, &call.ctx.corr, subject.as_ref(), what, &its)
                .await
                .map_err(|why| refused(format!("the server's input request {key:?} ({what}): {why}")))?;
        }
        let state = modern::RequestState {
            method: method.to_string(),
            name: modern::request_name(method, params).to_string(),
            server: upstream.config.name.clone(),
            asked: asked.keys().cloned().collect(),
            upstream: r.get("requestState").and_then(Value::as_str).map(str::to_string),
            approval: None,
            expires: now_secs() + modern::RequestState::LIFETIME_SECS,
        };
        r["requestState"] = state.seal(&call.gw.cursor_key, auth.claims.agent()).into();
        Ok(r)
    }
}

/// The most input requests one MRTR answer may carry (each is a policy
/// decision and an audit record).
const MAX_INPUT_REQUESTS: usize = 16;

/// An upstream's answer the gateway refuses to pass on, and why.
fn refused_by_gateway(upstream: &crate::Upstream, why: String) -> UpstreamError {
    UpstreamError::Rpc { server: upstream.config.name.clone(), code: codes::DENIED, message: format!("refused by the Warden gateway: {why}"), data: None }
}

/// Record a call that went through the pipeline, and answer it as JSON-RPC.
/// `request` is the client's: its id, method and params.
async fn answer_of(call: &Call<'_>, pipeline: Pipeline<'_>, answer: Result<Value, Stopped>, request: (&Value, &str, &Value)) -> Response {
    let (id, method, params) = request;
    let ev = pipeline.trail.record(answer.as_ref().err());
    let (status, body) = match &answer {
        Ok(r) => (StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": r })),
        Err(Stopped::Refused(Refusal::Pending { approval, reason, .. }))
            if call.ctx.modern.is_some_and(|m| m.offers.elicitation_url) && modern::takes_input(method) =>
        {
            let result = approval_asked(call, pipeline.auth, method, params, approval, reason);
            (StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": result }))
        }
        Err(Stopped::Refused(r)) => render(r, id, &call.ctx.corr, &ev.policies),
        // The upstream's own JSON-RPC error, passed through (in the
        // stateless revision the specification's own errors, such as a
        // missing client capability, are HTTP 400s).
        Err(Stopped::UpstreamFailed(UpstreamError::Rpc { code, message, data, .. })) => match *code {
            // A missing client capability is the client's to know about.
            codes::MISSING_CLIENT_CAPABILITY if call.ctx.modern.is_some() => {
                (StatusCode::BAD_REQUEST, rpc_error(id, *code, message, data.as_ref().map(|d| (**d).clone())))
            }
            // The upstream refusing the gateway's own headers or version
            // says nothing about the client's request: not passed off as the
            // gateway's answer to it.
            c if call.ctx.modern.is_some() && (-32099..=-32020).contains(&c) => {
                (StatusCode::OK, rpc_error(id, codes::INTERNAL, &format!("the upstream refused the gateway's request ({c}): {message}"), None))
            }
            c => (StatusCode::OK, rpc_error(id, c, message, data.as_ref().map(|d| (**d).clone()))),
        },
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

/// A call held for a human's approval, for a client of the stateless
/// revision that takes URL elicitation: an MRTR answer whose input request
/// sends the user to the approvals (the host shows it natively), with a
/// sealed state naming the approval, so that the retry waits for that one
/// (and goes through once it is approved) rather than asking again.
fn approval_asked(call: &Call<'_>, auth: &Authenticated, method: &str, params: &Value, approval: &str, reason: &str) -> Value {
    let state = modern::RequestState {
        method: method.to_string(),
        name: modern::request_name(method, params).to_string(),
        server: server_of(call.gw, method, params).unwrap_or_default(),
        asked: Vec::new(),
        upstream: None,
        approval: Some(approval.to_string()),
        expires: call.ctx.now + modern::RequestState::LIFETIME_SECS,
    };
    let message = format!(
        "This call needs a human's approval (approval {approval}: {reason}). An approver decides it on the Warden dashboard; retry once it is decided."
    );
    let url = format!("{}/dashboard", call.gw.config.issuer);
    json!({
        "resultType": "input_required",
        "inputRequests": { "warden_approval": { "method": "elicitation/create", "params": { "mode": "url", "message": message, "url": url } } },
        "requestState": state.seal(&call.gw.cursor_key, auth.claims.agent()),
    })
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

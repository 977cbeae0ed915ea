//! Requests that can run long (tool calls, resource reads, prompts,
//! completions) while their upstream talks back: progress and log
//! notifications streamed to the client as SSE ahead of the answer, the
//! upstream's own requests of the client (sampling, elicitation, roots)
//! decided and relayed, the client's answers routed back, and the request
//! `_meta` that may go upstream.

use super::modern::{self, Modern};
use super::{Call, Context, call_tool, codes, item_of, request_item};
use crate::authn::Authenticated;
use crate::enforce::{self, Trail};
use crate::listeners::Change;
use crate::state::Gateway;
use crate::upstream::{Caller, Exchange, Relayed};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use warden_core::clock::now_secs;
use warden_core::{EventKind, TargetKind, Verdict};

/// A request relayed to an upstream (a tool call, a resource read, a
/// prompt, a completion), owned so that it can run on while its progress
/// streams to the client.
pub(super) struct Dispatched {
    pub(super) gw: Arc<Gateway>,
    pub(super) ctx: Context,
    pub(super) auth: Authenticated,
    pub(super) id: Value,
    pub(super) method: String,
    pub(super) params: Value,
    pub(super) caller: Caller,
}

impl Dispatched {
    /// Run it to its answer, cancellable by its client while it runs, its
    /// progress sent to `progress`.
    pub(super) async fn run(self, progress: Option<mpsc::Sender<Relayed>>) -> Response {
        let call = Call { gw: &self.gw, ctx: self.ctx.clone() };
        let cancellable = self.cancel_key().map(|key| self.gw.cancels.start(&key, &self.id));
        let relay = Exchange { progress, cancel: cancellable.as_ref().map(|c| c.token.clone()) };
        match self.method.as_str() {
            "tools/call" => call_tool(&call, &self.auth, &self.id, &self.params, self.caller.clone(), relay).await,
            method => request_item(&call, &self.auth, &self.id, method, &self.params, self.caller.clone(), relay).await,
        }
    }

    /// Where the request's cancellation is registered: its session, or, in
    /// the stateless revision (whose agent's clients all share one upstream
    /// session), the request alone, so that no other request of the agent
    /// under the same id can be cancelled with it.
    fn cancel_key(&self) -> Option<String> {
        let Caller::Session { session, .. } = &self.caller else { return None };
        Some(if self.ctx.modern.is_some() { format!("{session} {}", self.ctx.corr) } else { session.clone() })
    }
}

/// Answer a request whose client accepts an event stream: as a plain
/// response if it ends before any notification about it arrives (its HTTP
/// status and challenge intact), otherwise as an event stream of its
/// progress and log notifications (inspected: see [`screened`]) and then
/// its answer. A client of the session revisions that goes away stops only
/// the stream; the request runs to its end and its record. In the stateless
/// revision closing the stream is how a client cancels (it has no
/// `notifications/cancelled`), so the request is cancelled upstream.
pub(super) async fn with_progress(r: Dispatched) -> Response {
    let (gw, corr, id) = (r.gw.clone(), r.ctx.corr.clone(), r.id.clone());
    let cancel_on_close = r.ctx.modern.and(r.cancel_key());
    let passing = Passing {
        gw: gw.clone(),
        auth: r.auth.clone(),
        corr: corr.clone(),
        session: match &r.caller {
            Caller::Session { session, .. } => Some(session.clone()),
            Caller::Gateway => None,
        },
        subject: subject_of(&gw, &r.method, &r.params),
        modern: r.ctx.modern,
    };
    // Bounded: a client that does not keep up misses progress rather than
    // the gateway holding it all (see `upstream::Progress`).
    let (tx, mut rx) = mpsc::channel(RELAYED_BUFFER);
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
            Some(ev) = rx.recv() => if let Some(ev) = passing.pass(ev, false).await { break ev },
        }
    };
    let (out, body) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let frame = |v: &Value| format!("event: message\ndata: {v}\n\n");
        let _ = out.send(frame(&first)).await;
        let mut watching = cancel_on_close;
        let done = loop {
            tokio::select! {
                biased;
                Some(ev) = rx.recv() => if let Some(ev) = passing.pass(ev, out.is_closed()).await {
                    let _ = out.send(frame(&ev)).await;
                },
                done = &mut work => break done,
                _ = out.closed(), if watching.is_some() => {
                    if let Some(session) = watching.take() {
                        gw.cancels.cancel(&session, &id);
                    }
                }
            }
        };
        while let Ok(ev) = rx.try_recv() {
            if let Some(ev) = passing.pass(ev, out.is_closed()).await {
                let _ = out.send(frame(&ev)).await;
            }
        }
        // The stream ends with the answer to the client's request, whatever
        // became of it.
        let answer = done.unwrap_or_else(failed);
        let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX).await.unwrap_or_default();
        let answer = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(|a| a.get("id").is_some())
            .unwrap_or_else(|| super::rpc_error(&id, codes::INTERNAL, "the request failed inside the gateway; see its log", None));
        let _ = out.send(frame(&answer)).await;
    });
    let stream = futures_util::stream::unfold(body, |mut body| async move { body.recv().await.map(|f| (Ok::<_, std::convert::Infallible>(f), body)) });
    let mut resp =
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream)).into_response();
    resp.headers_mut().insert("x-warden-correlation-id", HeaderValue::from_str(&corr).expect("hex"));
    resp
}

/// Notifications and requests of an upstream's buffered for one request's
/// stream.
const RELAYED_BUFFER: usize = 256;

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
    /// A request of the stateless revision gets log messages only when it
    /// asked for them, at its level.
    modern: Option<Modern>,
}

impl Passing {
    /// The message for the client, if any, for what the upstream relayed;
    /// a request is refused at once when the client has gone.
    async fn pass(&self, r: Relayed, client_gone: bool) -> Option<Value> {
        match r {
            Relayed::Notification(ev) if self.modern.is_some_and(|m| log_level(&ev).is_some_and(|l| !m.wants_log(l))) => None,
            Relayed::Notification(ev) => screened(&self.gw, ev),
            Relayed::Request(_, answer) if client_gone => {
                let _ = answer.send(json!({ "error": { "code": codes::INTERNAL, "message": "the client's stream for this request has closed" } }));
                None
            }
            Relayed::Request(msg, answer) => self.request(msg, answer).await,
        }
    }

    /// A request the upstream makes of the client (its client offers it):
    /// decided (see [`relay_decision`]); if allowed, sent on under an id of
    /// the gateway's, to which the client's answer must come back in this
    /// session; if not, the upstream is told why and the client never sees
    /// it.
    async fn request(&self, mut msg: Value, answer: tokio::sync::oneshot::Sender<Value>) -> Option<Value> {
        let refuse = |answer: tokio::sync::oneshot::Sender<Value>, reason: &str| {
            let _ = answer.send(json!({ "error": { "code": codes::DENIED, "message": format!("refused by the Warden gateway: {reason}") } }));
            None
        };
        let Some(session) = &self.session else {
            return refuse(answer, "the request it came with is not one the gateway relays for");
        };
        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
        let params = msg.get("params").cloned().unwrap_or_default();
        if let Err(reason) = relay_decision(&self.gw, &self.auth, &self.corr, self.subject.as_ref(), &method, &params).await {
            return refuse(answer, &reason);
        }
        msg["id"] = self.gw.awaiting.start(session, answer).into();
        Some(msg)
    }
}

/// Whether a request an upstream makes of the client (a server request of
/// the session revisions, or an input request of an MRTR answer) may
/// reach it: inspected, decided by Cedar (`relay_request`, as an ask of
/// `subject`, what the request it came with is for) and recorded. `Err`
/// says why not.
pub(super) async fn relay_decision(
    gw: &Gateway,
    auth: &Authenticated,
    corr: &str,
    subject: Option<&(warden_core::Tool, TargetKind, String)>,
    method: &str,
    params: &Value,
) -> Result<(), String> {
    let Some((tool, kind, name)) = subject else {
        return Err("the request it came with is not one the gateway relays for".into());
    };
    // A request of the client's model is instructions to it by design.
    let findings = gw.rules_only.scan_json(params).summary;
    let asks = method == "elicitation/create" && enforce::asks_for_credentials(params);
    let mon = enforce::MonitorView { risk: i64::from(gw.monitor.risk(auth.claims.agent(), warden_core::clock::now_ms())), ..Default::default() };
    let ask = enforce::Ask::Relay { findings: &findings, method, asks_for_credentials: asks };
    let decision = gw.policy().decide(&enforce::facts(auth, enforce::Subject { tool, kind: *kind, name }, &json!({}), ask, now_secs(), &mon));
    let mut trail = Trail::new(EventKind::McpRequest, corr, method, auth, Instant::now());
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
    enforce::record(gw, ev, None).await.map_err(|e| format!("it could not be recorded ({e})"))?;
    refused.map_or(Ok(()), Err)
}

/// The level of a log message; none for any other notification.
fn log_level(ev: &Value) -> Option<&str> {
    (ev.get("method").and_then(Value::as_str) == Some("notifications/message")).then(|| ev.pointer("/params/level").and_then(Value::as_str).unwrap_or("info"))
}

/// What a relayed request is for, as policy sees it.
pub(super) fn subject_of(gw: &Gateway, method: &str, params: &Value) -> Option<(warden_core::Tool, TargetKind, String)> {
    if method == "tools/call" {
        let tref = gw.resolve_tool_name(params.get("name")?.as_str()?).ok()?;
        let tool = gw.snapshot().tools.get(&tref)?.clone();
        return Some((tool, TargetKind::Tool, tref.tool));
    }
    let (kind, server, name, _) = item_of(gw, method, params).ok()?;
    Some((enforce::item_tool(gw.upstream(&server)?, kind)?, kind, name))
}

/// A client's answer to a request relayed to it: to the upstream that
/// asked, unless it carries a credential (the upstream is then told so).
pub(super) fn answer_relayed(gw: &Gateway, session: &str, id: &Value, result: Option<Value>, error: Option<Value>) {
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
    let flagged = |v: &Value| carries_sensitive(gw, v);
    let Some(params) = ev.get_mut("params").and_then(Value::as_object_mut) else { return Some(ev) };
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

/// Whether a value that passes between a client and an upstream outside
/// the pipeline (a notification, a request's `_meta`) carries an injection
/// (score 50 or more), a credential or personal data.
fn carries_sensitive(gw: &Gateway, v: &Value) -> bool {
    let f = gw.inspector.scan_json(v).summary;
    f.injection_score >= 50 || f.secret_count + f.pii_count > 0
}

/// The request `_meta` passed upstream with a relayed request. It is
/// caller-controlled data headed for the upstream like the arguments, so it
/// is inspected: if it carries a credential, personal data or an injection
/// only its progress token (which the upstream sees as the gateway's own)
/// goes on.
fn meta_of(gw: &Gateway, params: &Value) -> Option<Value> {
    let mut meta = params.get("_meta")?.as_object()?.clone();
    // What the client declared of itself is the client's; upstream, the
    // gateway speaks for itself.
    for field in modern::REQUEST_FIELDS {
        meta.remove(field);
    }
    let token = meta.remove("progressToken");
    if !meta.is_empty() && carries_sensitive(gw, &Value::Object(meta.clone())) {
        tracing::warn!("dropping request _meta that carries a credential, personal data or an injection");
        meta.clear();
    }
    if let Some(t) = token {
        meta.insert("progressToken".into(), t);
    }
    (!meta.is_empty()).then_some(Value::Object(meta))
}

/// `params` with the `_meta` that may go upstream.
pub(super) fn with_meta(gw: &Gateway, mut sent: Value, params: &Value) -> Value {
    match meta_of(gw, params) {
        Some(m) => sent["_meta"] = m,
        None => {
            sent.as_object_mut().map(|o| o.remove("_meta"));
        }
    }
    sent
}

/// A session's GET stream: the events it missed, then the ones to come,
/// each with its id for `Last-Event-ID`. It ends when the session does (or
/// another GET stream replaces it).
pub(super) fn session_stream(replay: Vec<(u64, Value)>, live: mpsc::Receiver<(u64, Value)>) -> Response {
    let frame = |(n, v): (u64, Value)| Ok::<_, std::convert::Infallible>(format!("id: {n}\nevent: message\ndata: {v}\n\n"));
    let replayed = futures_util::stream::iter(replay.into_iter().map(frame));
    let coming = futures_util::stream::unfold(live, move |mut live| async move { live.recv().await.map(|e| (frame(e), live)) });
    let body = Body::from_stream(futures_util::StreamExt::chain(replayed, coming));
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Deliver upstreams' notifications about no request: in a caller's
/// session, to its session stream: a log message (screened like one about
/// a request, its logger named after its server), the changes of a
/// server's resource or prompt lists, and updates of resources the caller
/// subscribed to; in a stateless agent's upstream session, the updates of
/// the resources its notification streams subscribed to; in the gateway's
/// own session, a server's list changes (see [`gateway_notice`]). Nothing
/// else (tool list changes reach clients through the gateway's own
/// definition checks).
pub(crate) async fn deliver_notices(gw: Arc<Gateway>, mut rx: mpsc::Receiver<crate::upstream::Notice>) {
    while let Some(n) = rx.recv().await {
        let (agent, session) = match &n.caller {
            Caller::Gateway if n.lost => continue,
            Caller::Gateway => {
                gateway_notice(&gw, &n);
                continue;
            }
            Caller::Session { agent, session, .. } => (agent, session),
        };
        if n.lost {
            session_lost(&gw, &n.server, agent, session);
            continue;
        }
        // A notice of a server the agent is now cut off from goes nowhere.
        let kills = gw.kills();
        let server = warden_core::ToolRef { server: n.server.clone(), tool: "*".into() };
        let covered = kills.for_caller([agent.as_str()], "").is_some() || kills.for_tool(&server).is_some();
        if covered || n.message.to_string().len() > crate::upstream::MAX_NOTICE_BYTES {
            continue;
        }
        // Rebuilt from what each kind may carry: nothing else of the
        // server's passes on.
        let method = n.message.get("method").and_then(Value::as_str).unwrap_or_default();
        let params = n.message.get("params");
        let msg = match method {
            "notifications/message" => {
                let logger = params.and_then(|p| p.get("logger")).and_then(Value::as_str).map_or(n.server.clone(), |l| format!("{}/{l}", n.server));
                let level = params.and_then(|p| p.get("level")).cloned().unwrap_or(json!("info"));
                let data = params.and_then(|p| p.get("data")).cloned().unwrap_or(Value::Null);
                json!({ "jsonrpc": "2.0", "method": method, "params": { "level": level, "logger": logger, "data": data } })
            }
            "notifications/resources/list_changed" | "notifications/prompts/list_changed" => json!({ "jsonrpc": "2.0", "method": method }),
            // A resource the caller subscribed to, under the name it knows
            // (which must read back as this server's).
            "notifications/resources/updated" => {
                let Some(up) = gw.upstream(&n.server) else { continue };
                let Some(uri) = params.and_then(|p| p.get("uri")).and_then(Value::as_str) else { continue };
                let Some(exposed) = crate::catalog::exposed_item(&n.server, up.config.naming, TargetKind::Resource, uri) else { continue };
                if gw.resolve_item(&exposed, TargetKind::Resource).ok() != Some((n.server.clone(), uri.to_string())) {
                    continue;
                }
                json!({ "jsonrpc": "2.0", "method": method, "params": { "uri": exposed } })
            }
            _ => continue,
        };
        let Some(msg) = screened(&gw, msg) else { continue };
        match crate::listeners::stateless_agent(session) {
            // A stateless client hears only what its streams asked for.
            Some(agent) => {
                if let Some(uri) = msg.pointer("/params/uri").and_then(Value::as_str).filter(|_| method == "notifications/resources/updated") {
                    gw.listeners.lock().deliver(Change::Updated { agent, uri });
                }
            }
            None => gw.sessions.lock().push_event(session, msg),
        }
    }
}

/// The shortest time between two listings of a server that keeps saying
/// its tools changed.
const RELIST_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// A caller's upstream session ended, and what it held with it. A
/// stateless agent's notification streams that subscribed to resources of
/// that server end (gracefully: their clients listen again, which
/// subscribes again in a new session) rather than stay open and deaf.
fn session_lost(gw: &Gateway, server: &str, agent: &str, session: &str) {
    if crate::listeners::stateless_agent(session).is_none() {
        return;
    }
    let at_server = |uri: &String| gw.resolve_item(uri, TargetKind::Resource).is_ok_and(|(s, _)| s == server);
    gw.listeners.lock().close_where(|l| l.agent == agent && l.resources().any(at_server));
}

/// A notification in the gateway's own session with a server: its tools
/// changed (they are listed again, one listing at a time per server, and clients are
/// told if what the gateway lists changed), or its prompts or resources
/// did (the notification streams that asked, of callers granted something
/// of the server, are told; sessions hear it from their own upstream
/// sessions).
fn gateway_notice(gw: &Arc<Gateway>, n: &crate::upstream::Notice) {
    let server = n.server.as_str();
    if gw.kills().for_tool(&warden_core::ToolRef { server: server.to_string(), tool: "*".into() }).is_some() {
        return;
    }
    match n.message.get("method").and_then(Value::as_str).unwrap_or_default() {
        "notifications/tools/list_changed" => {
            {
                // A change told during a listing may have come after the
                // listing read the tools: it is listed once more after it.
                let mut relisting = gw.relisting.lock();
                if let Some(again) = relisting.get_mut(server) {
                    *again = true;
                    return;
                }
                relisting.insert(server.to_string(), false);
            }
            let gw = gw.clone();
            let server = server.to_string();
            tokio::spawn(async move {
                loop {
                    gw.check_definitions(Some(&[server.clone()].into())).await;
                    {
                        let mut relisting = gw.relisting.lock();
                        if relisting.insert(server.clone(), false) != Some(true) {
                            relisting.remove(&server);
                            return;
                        }
                    }
                    // A server that says so again and again is listed no
                    // more often than this.
                    tokio::time::sleep(RELIST_AGAIN_AFTER).await;
                }
            });
        }
        "notifications/prompts/list_changed" => {
            gw.listeners.lock().deliver(Change::Prompts { server });
        }
        "notifications/resources/list_changed" => {
            gw.listeners.lock().deliver(Change::Resources { server });
        }
        _ => {}
    }
}

//! `subscriptions/listen` (MCP 2026-07-28, SEP-2575): a stateless client's
//! long-lived stream of the notifications it asked for, multiplexed over
//! the upstreams. What each stream hears:
//!
//! - `toolsListChanged`: the gateway's own listing may differ (an upstream
//!   said its tools changed and the definition check saw a difference, or
//!   the registry's tools changed: an approval, a block, a new pin).
//! - `promptsListChanged`, `resourcesListChanged`: an upstream the caller's
//!   token grants something of said so in the gateway's own session.
//! - `resourceSubscriptions`: each resource is subscribed to as a read of it
//!   (`read_resource`, decided and recorded like `resources/subscribe` in a
//!   session) in the agent's own upstream session, and its updates come
//!   from there; one the gateway refuses, or whose server cannot subscribe,
//!   is left out of the acknowledgment.
//!
//! The stream starts with `notifications/subscriptions/acknowledged` and
//! tags every notification with the request's id. It lives only as long as
//! its credentials: the token is re-checked (revocation, the agent's status
//! and key, kill switches) with every notification and every few seconds,
//! and the stream ends at the token's expiry with the graceful closing
//! response, as it does at shutdown; a revoked token or a kill ends it with
//! an error saying why. A client closing the stream ends the subscription
//! and the upstream subscriptions only it held.

use super::modern;
use super::{Call, Context, codes, item_of, request_answer, respond, rpc_error};
use crate::authn::Authenticated;
use crate::enforce::{self, Refusal};
use crate::listeners::{Filter, Full, Listener, SUBSCRIPTION_ID, tagged};
use crate::state::Gateway;
use crate::upstream::{Caller, Exchange};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use warden_core::clock::now_secs;
use warden_core::{EventKind, Verdict};

/// Notifications waiting for a slow stream; more are dropped for it, and a
/// client that reads nothing while its stream's buffer is full loses the
/// stream.
const BUFFER: usize = 64;
/// How often an idle stream re-checks its credentials and sends a comment,
/// so that a client that went away (or a proxy that cuts idle streams) is
/// noticed.
const RECHECK: Duration = Duration::from_secs(5);

/// Open a stream for a stateless client.
pub(super) async fn listen(gw: &Arc<Gateway>, call: &Call<'_>, auth: Authenticated, id: Value, params: &Value, caller: Caller) -> Response {
    let mut filter = match Filter::parse(params.get("notifications")) {
        Ok(f) => f,
        Err(message) => return super::refuse_stateless(call, &auth, "subscriptions/listen", &id, modern::malformed(message)).await,
    };
    let servers: BTreeSet<String> = gw.upstreams.keys().filter(|s| super::granted_any(&auth, s)).cloned().collect();
    // Honoured only where some server it may use can say it.
    let offered = |what: &str| servers.iter().any(|s| gw.upstream(s).is_some_and(|u| u.offers(what) != Some(false)));
    filter.prompts &= offered("prompts");
    filter.resources &= offered("resources");
    let (tx, rx) = mpsc::channel(BUFFER);
    let asked = filter.uris.clone();
    // Registered with every resource it asks for, so that an update the
    // upstream sends as it subscribes is kept for the stream (after the
    // acknowledgment); trimmed to those taken below.
    let opened = gw.listeners.lock().open(Listener::new(auth.claims.agent().to_string(), servers, filter.clone(), id.clone(), tx));
    let key = match opened {
        Ok(k) => k,
        Err(full) => {
            let message = match full {
                Full::Agent => format!("this agent has {} notification streams open already; close one first", crate::listeners::MAX_PER_AGENT),
                Full::Gateway => {
                    "the gateway is not opening notification streams now (it is full, or shutting down); retry later, or on another replica".to_string()
                }
            };
            let ev = call.event(EventKind::McpRequest, Some(&auth), Some("subscriptions/listen"), Verdict::Deny, Some(message.clone()));
            return call.finish(ev, StatusCode::TOO_MANY_REQUESTS, rpc_error(&id, codes::INTERNAL, &message, None), &id).await;
        }
    };
    let mut open = Open { gw: gw.clone(), key, caller: caller.clone(), holds: Vec::new() };
    let mut taken = BTreeSet::new();
    for uri in &asked {
        let Some((server, subscribed, recorded)) = subscribe(call, &auth, uri, &caller).await else { continue };
        if subscribed {
            gw.listeners.lock().hold(key, uri);
            // Its session must stay open while the stream needs it.
            if !open.holds.iter().any(|(s, _)| *s == server)
                && let Some(h) = gw.upstream(&server).and_then(|u| u.hold(&caller))
            {
                open.holds.push((server, h));
            }
        }
        if subscribed && recorded {
            taken.insert(uri.clone());
        }
    }
    gw.listeners.lock().keep_uris(key, &taken);
    filter.uris = taken;
    let acknowledged = filter.acknowledged();
    let reason = format!("listening for {acknowledged}");
    let ev = call.event(EventKind::McpRequest, Some(&auth), Some("subscriptions/listen"), Verdict::Allow, Some(reason));
    if let Err(e) = enforce::record(gw, ev, call.ctx.trace).await {
        // Dropping `open` closes the stream and its subscriptions.
        return respond(StatusCode::SERVICE_UNAVAILABLE, rpc_error(&id, codes::INTERNAL, &e.to_string(), None), &call.ctx.corr);
    }
    let ack = json!({ "jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": { "notifications": acknowledged } });
    let (out, body) = mpsc::channel::<String>(BUFFER);
    tokio::spawn(stream(open, auth, tagged(ack, &id), id, rx, out));
    let frames = futures_util::stream::unfold(body, |mut body| async move { body.recv().await.map(|f| (Ok::<_, std::convert::Infallible>(f), body)) });
    let mut resp =
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(frames)).into_response();
    resp.headers_mut().insert("x-warden-correlation-id", HeaderValue::from_str(&call.ctx.corr).expect("hex"));
    resp
}

/// A registered stream; dropping it closes the registration and the
/// upstream subscriptions no other stream of the agent needs, and lets its
/// upstream sessions close again.
struct Open {
    gw: Arc<Gateway>,
    key: u64,
    caller: Caller,
    holds: Vec<(String, crate::upstream::SessionHold)>,
}

impl Drop for Open {
    fn drop(&mut self) {
        let closed = self.gw.listeners.lock().close(self.key);
        if let Some((agent, orphaned)) = closed {
            unsubscribe(&self.gw, &self.caller, agent, orphaned);
        }
    }
}

/// The stream's life: the acknowledgment first, then what it was told,
/// until the client goes or stops reading, its credentials end, or the
/// gateway ends it.
async fn stream(open: Open, auth: Authenticated, ack: Value, id: Value, mut rx: mpsc::Receiver<Value>, out: mpsc::Sender<String>) {
    let frame = |v: &Value| format!("event: message\ndata: {v}\n\n");
    // Never waits on the client: one that does not read loses the stream
    // (its expiry and its credentials' checks must not wait on it either).
    let send = |text: String| out.try_send(text).is_ok();
    if let Err((code, message)) = still_valid(&open.gw, &auth) {
        send(frame(&rpc_error(&id, code, &message, None)));
        return;
    }
    if !send(frame(&ack)) {
        return;
    }
    let expires = tokio::time::Instant::now() + Duration::from_secs(u64::try_from(auth.claims.exp - now_secs()).unwrap_or(0));
    let mut tick = tokio::time::interval(RECHECK);
    tick.tick().await;
    let ended = loop {
        tokio::select! {
            biased;
            () = out.closed() => return,
            () = tokio::time::sleep_until(expires) => break None,
            told = rx.recv() => match told {
                Some(n) => match still_valid(&open.gw, &auth) {
                    Err(why) => break Some(why),
                    Ok(()) => if !send(frame(&n)) { return },
                },
                // Closed by the gateway: the shutdown, its upstream session
                // lost, or a kill switch (which the check names).
                None => break still_valid(&open.gw, &auth).err(),
            },
            _ = tick.tick() => match still_valid(&open.gw, &auth) {
                Err(why) => break Some(why),
                Ok(()) => if !send(": still listening\n\n".into()) { return },
            },
        }
    };
    let end = match ended {
        // The graceful end (SEP-2575): the client may listen again.
        None => json!({ "jsonrpc": "2.0", "id": id, "result": { "resultType": "complete", "_meta": { SUBSCRIPTION_ID: id } } }),
        Some((code, message)) => rpc_error(&id, code, &message, Some(json!({ SUBSCRIPTION_ID: id }))),
    };
    send(frame(&end));
    drop(open);
}

/// Whether the stream's credentials still hold: the token unrevoked, its
/// agents active and its key current, no kill switch covering it.
fn still_valid(gw: &Gateway, auth: &Authenticated) -> Result<(), (i64, String)> {
    if let Some(k) = gw.kill_covering(auth, None) {
        return Err((codes::DENIED, Refusal::Killed(k).message()));
    }
    gw.authorize_claims(auth.claims.clone()).map(|_| ()).map_err(|f| (codes::UNAUTHENTICATED, format!("unauthorized: {}", f.description)))
}

/// Subscribe to one resource in the agent's own upstream session, decided
/// and recorded as `resources/subscribe` is in a session. Always in a
/// session revision: the stateless one has no `resources/subscribe`, and
/// every upstream speaks a session revision (the gateway's own session
/// opens with `initialize`). Its server, whether the upstream subscribed,
/// and whether that was recorded; `None` for a name no server answers to.
async fn subscribe(call: &Call<'_>, auth: &Authenticated, uri: &str, caller: &Caller) -> Option<(String, bool, bool)> {
    let params = json!({ "uri": uri });
    let (_, server, _, _) = item_of(call.gw, "resources/subscribe", &params).ok()?;
    let in_session = Call { gw: call.gw, ctx: Context { modern: None, ..call.ctx.clone() } };
    let (pipeline, answer) = request_answer(&in_session, auth, "resources/subscribe", &params, caller.clone(), Exchange::default()).await;
    let ev = pipeline.trail.record(answer.as_ref().err());
    let recorded = enforce::record(call.gw, ev, call.ctx.trace).await.is_ok();
    Some((server, answer.is_ok(), recorded))
}

/// Unsubscribe, in the background, from resources no stream needs any
/// more, each checked again just before (a client listening again at once
/// subscribes again in the same upstream session).
fn unsubscribe(gw: &Arc<Gateway>, caller: &Caller, agent: String, uris: Vec<String>) {
    if uris.is_empty() {
        return;
    }
    let (gw, caller) = (gw.clone(), caller.clone());
    let task = gw.clone();
    let _ = task.track(async move {
        for uri in uris {
            if gw.listeners.lock().needed(&agent, &uri) {
                continue;
            }
            let params = json!({ "uri": uri });
            let Ok((_, server, name, _)) = item_of(&gw, "resources/unsubscribe", &params) else { continue };
            let Some(up) = gw.upstream(&server) else { continue };
            if let Err(e) = up.request_for(&caller, "resources/unsubscribe", json!({ "uri": name })).await {
                tracing::info!(upstream = %server, "could not unsubscribe from a resource no stream listens to: {e}");
            }
        }
    });
}

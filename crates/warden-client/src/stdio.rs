//! `warden connect` on stdio, the transport every MCP host can launch:
//! newline-delimited JSON-RPC from the host is relayed to the gateway's
//! streamable HTTP endpoint, and every message the gateway sends back (a
//! JSON answer, each event of an SSE answer, the server's own GET stream) is
//! written to the host as one line. Requests run concurrently, so a long
//! tool call does not hold up a ping or a cancellation.
//!
//! The gateway's session is the bridge's business: it is opened by the
//! host's `initialize`, and when the gateway no longer knows it (a restart,
//! an idle timeout) the bridge opens a new one with the host's own
//! `initialize` and sends the message again, once. At the end of input the
//! bridge lets requests in flight finish, then closes the session.
//!
//! A host of the stateless revision (MCP 2026-07-28) opens no session: each
//! of its requests says its version in `_meta`, and the bridge sends it
//! with the headers that revision mirrors from the body (SEP-2243),
//! `Mcp-Param-*` included for the tools whose schemas it saw listed.

use crate::relay::{MAX_MESSAGE_BYTES, Relay, RelayError, challenge_description, error_reply, request_id};
use parking_lot::Mutex;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use warden_core::sse;
use warden_core::{jsonrpc_codes, mcp_headers};

#[derive(Default)]
struct Session {
    id: Option<String>,
    /// The version `initialize` agreed, sent as `MCP-Protocol-Version`.
    protocol: Option<String>,
    /// The host's `initialize`, to open a new session with when the
    /// gateway has forgotten this one.
    initialize: Option<Value>,
    /// The task relaying the gateway's GET stream for this session.
    listener: Option<tokio::task::AbortHandle>,
}

struct Bridge {
    relay: Arc<Relay>,
    session: Mutex<Session>,
    out: mpsc::Sender<Value>,
    /// The `inputSchema` of each tool a stateless host was listed, for the
    /// arguments its calls mirror into headers.
    schemas: Mutex<std::collections::HashMap<String, Value>>,
    /// A stateless host's requests in flight, by id: that revision cancels
    /// a request on HTTP by closing its stream, which the bridge does when
    /// the host sends `notifications/cancelled` for it.
    cancellable: Mutex<std::collections::HashMap<String, tokio::task::AbortHandle>>,
}

/// The most tool schemas the bridge keeps (a listing beyond starts over).
const MAX_SCHEMAS: usize = 4096;

/// The version a host's message of the stateless revision declares.
fn stateless_version(msg: &Value) -> Option<&str> {
    msg.pointer("/params/_meta")?.get(mcp_headers::PROTOCOL_VERSION_KEY)?.as_str()
}

/// Relay `input` (the host's messages) to the gateway and its answers to
/// `output` until `input` ends and every request in flight is answered.
pub async fn serve<R, W>(relay: Arc<Relay>, input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, rx) = mpsc::channel(64);
    let writer = tokio::spawn(write_lines(rx, output));
    let bridge = Arc::new(Bridge { relay, session: Mutex::new(Session::default()), out, schemas: Default::default(), cancellable: Default::default() });
    let mut reader = BufReader::new(input);
    let mut in_flight = JoinSet::new();
    loop {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_MESSAGE_BYTES).unwrap_or(u64::MAX);
        if (&mut reader).take(limit).read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        if line.len() >= MAX_MESSAGE_BYTES && !line.ends_with(b"\n") {
            skip_line(&mut reader).await?;
            let msg = format!("a message from the host exceeded {} MiB and was not sent", MAX_MESSAGE_BYTES >> 20);
            bridge.emit(error_reply(&Value::Null, jsonrpc_codes::INVALID_REQUEST, &msg)).await;
            continue;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(msg) if bridge.cancelled_here(&msg) => {}
            Ok(msg) => match stateless_version(&msg).is_some().then(|| request_id(&msg).map(Value::to_string)).flatten() {
                Some(key) => {
                    // Registered under the lock the task's own removal
                    // takes, so a request that ends at once leaves nothing.
                    let mut cancellable = bridge.cancellable.lock();
                    let b = bridge.clone();
                    let k = key.clone();
                    let task = in_flight.spawn(async move {
                        b.clone().forward(msg).await;
                        b.cancellable.lock().remove(&k);
                    });
                    cancellable.insert(key, task);
                }
                None => {
                    in_flight.spawn(bridge.clone().forward(msg));
                }
            },
            Err(e) => bridge.emit(error_reply(&Value::Null, jsonrpc_codes::PARSE_ERROR, &format!("not JSON: {e}"))).await,
        }
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
    bridge.close().await;
    drop(bridge);
    writer.await.map_err(std::io::Error::other)?
}

async fn skip_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Value>, mut output: W) -> std::io::Result<()> {
    while let Some(msg) = rx.recv().await {
        let mut line = serde_json::to_vec(&msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        output.write_all(&line).await?;
        output.flush().await?;
    }
    Ok(())
}

fn is_initialize(msg: &Value) -> bool {
    msg.get("method").and_then(Value::as_str) == Some("initialize")
}

impl Bridge {
    /// Whether `msg` cancels a stateless host's request in flight, which
    /// it then ends here (its stream to the gateway closes, no answer
    /// follows); a cancellation of anything else goes to the gateway.
    fn cancelled_here(&self, msg: &Value) -> bool {
        if msg.get("method").and_then(Value::as_str) != Some("notifications/cancelled") {
            return false;
        }
        let Some(id) = msg.pointer("/params/requestId") else { return false };
        let Some(task) = self.cancellable.lock().remove(&id.to_string()) else { return false };
        task.abort();
        true
    }

    async fn emit(&self, msg: Value) {
        // The writer is gone only when the host's output closed: nothing to tell.
        let _ = self.out.send(msg).await;
    }

    fn headers(&self, accept: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        let s = self.session.lock();
        for (name, value) in [("mcp-session-id", &s.id), ("mcp-protocol-version", &s.protocol)] {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                h.insert(name, v);
            }
        }
        h
    }

    /// The headers of a host's request of the stateless revision: its
    /// version, and what that revision mirrors from the body; no session.
    fn stateless_headers(&self, msg: &Value, version: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default();
        let params = msg.get("params").unwrap_or(&Value::Null);
        let schema = params.get("name").and_then(Value::as_str).and_then(|n| self.schemas.lock().get(n).cloned());
        let mirrored = mcp_headers::mirrored_headers(method, params, schema.as_ref());
        for (name, value) in std::iter::once(("mcp-protocol-version".to_string(), version.to_string())).chain(mirrored) {
            if let (Ok(n), Ok(v)) = (reqwest::header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
                h.insert(n, v);
            }
        }
        h
    }

    /// Relay one message from the host; a request that cannot be relayed is
    /// answered with the reason.
    async fn forward(self: Arc<Self>, msg: Value) {
        let request_id = request_id(&msg).cloned();
        if is_initialize(&msg) {
            let mut s = self.session.lock();
            if let Some(l) = s.listener.take() {
                l.abort();
            }
            *s = Session { initialize: Some(msg.clone()), ..Session::default() };
        }
        if let Err(e) = self.exchange(&msg).await {
            match request_id {
                Some(id) => self.emit(e.reply(&id)).await,
                None => tracing::warn!("warden connect: a message from the host was not relayed: {e}"),
            }
        }
    }

    async fn exchange(self: &Arc<Self>, msg: &Value) -> Result<(), RelayError> {
        let body = serde_json::to_vec(msg).unwrap_or_default();
        let mut reopened = false;
        let stateless = stateless_version(msg);
        loop {
            let had_session = stateless.is_none() && self.session.lock().id.is_some();
            let headers = match stateless {
                Some(version) => self.stateless_headers(msg, version),
                None => self.headers("application/json, text/event-stream"),
            };
            let resp = self.relay.send(Method::POST, headers, body.clone()).await?;
            if resp.status() == StatusCode::NOT_FOUND && had_session && !reopened && !is_initialize(msg) {
                reopened = true;
                self.reopen().await?;
                continue;
            }
            if is_initialize(msg) && resp.status().is_success() {
                let sid = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
                self.session.lock().id = sid;
            }
            return self.answers(msg, resp, true).await;
        }
    }

    /// The messages of one answer from the gateway. An HTTP refusal without
    /// a JSON-RPC body becomes a JSON-RPC error saying what the gateway said.
    /// Each message is passed on as it arrives (progress and log
    /// notifications of a long call reach the host during it), to the host
    /// when `to_host`, else dropped.
    async fn answers(self: &Arc<Self>, msg: &Value, mut resp: reqwest::Response, to_host: bool) -> Result<(), RelayError> {
        let status = resp.status();
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        let event_stream = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
        if status.is_success() && event_stream {
            let mut events = sse::Decoder::new(MAX_MESSAGE_BYTES);
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(e))? {
                let data = events.push(&chunk).map_err(|sse::TooLarge| self.garbled("an SSE event over the size bound"))?;
                for v in data.iter().filter_map(|d| serde_json::from_str::<Value>(d).ok()) {
                    self.deliver(msg, v, to_host).await;
                }
            }
            return Ok(());
        }
        let challenge = challenge_description(resp.headers());
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(e))? {
            if bytes.len() + chunk.len() > MAX_MESSAGE_BYTES {
                return Err(self.garbled("an answer over the size bound"));
            }
            bytes.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut v) if v.get("jsonrpc").is_some() => {
                // Refused before the gateway read the id (authentication):
                // the host matches answers by id, so it gets its own.
                if v["id"].is_null()
                    && let Some(id) = request_id(msg)
                {
                    v["id"] = id.clone();
                }
                self.deliver(msg, v, to_host).await;
                Ok(())
            }
            _ if status.is_success() => Err(self.garbled("an answer that is not JSON-RPC")),
            _ => {
                let Some(id) = request_id(msg) else { return Ok(()) };
                let text = String::from_utf8_lossy(&bytes);
                let said = challenge.unwrap_or_else(|| warden_core::untrusted_text(text.trim(), 500));
                let code = match status {
                    StatusCode::UNAUTHORIZED => jsonrpc_codes::UNAUTHENTICATED,
                    StatusCode::FORBIDDEN => jsonrpc_codes::DENIED,
                    _ => jsonrpc_codes::INTERNAL,
                };
                let reply = error_reply(id, code, &format!("the Warden gateway refused the request (HTTP {}): {said}", status.as_u16()));
                self.deliver(msg, reply, to_host).await;
                Ok(())
            }
        }
    }

    /// One message of the gateway's answer to `msg`. The answer to the
    /// host's `initialize` also settles the session's protocol version and
    /// starts relaying the session's own stream.
    async fn deliver(self: &Arc<Self>, msg: &Value, answer: Value, to_host: bool) {
        if !to_host {
            return;
        }
        if stateless_version(msg).is_some()
            && msg.get("method").and_then(Value::as_str) == Some("tools/list")
            && let Some(tools) = answer.pointer("/result/tools").and_then(Value::as_array)
        {
            let mut schemas = self.schemas.lock();
            if schemas.len() + tools.len() > MAX_SCHEMAS {
                schemas.clear();
            }
            for t in tools {
                if let (Some(name), Some(schema)) = (t.get("name").and_then(Value::as_str), t.get("inputSchema")) {
                    schemas.insert(name.to_string(), schema.clone());
                }
            }
        }
        if is_initialize(msg)
            && let Some(v) = answer.pointer("/result/protocolVersion").and_then(Value::as_str)
        {
            self.session.lock().protocol = Some(v.to_string());
            let listener = tokio::spawn(self.clone().listen()).abort_handle();
            if let Some(old) = self.session.lock().listener.replace(listener) {
                old.abort();
            }
        }
        self.emit(answer).await;
    }

    fn unreachable(&self, e: reqwest::Error) -> RelayError {
        RelayError::Unreachable { gateway: self.relay.gateway().to_string(), message: e.to_string() }
    }

    fn garbled(&self, what: &str) -> RelayError {
        RelayError::Unreachable { gateway: self.relay.gateway().to_string(), message: format!("the gateway sent {what}") }
    }

    /// Open a new gateway session with the host's `initialize`; its answer
    /// is the bridge's, not the host's (the host already has one).
    async fn reopen(self: &Arc<Self>) -> Result<(), RelayError> {
        let Some(mut init) = self.session.lock().initialize.clone() else { return Ok(()) };
        init["id"] = json!("warden-connect-reopen");
        self.session.lock().id = None;
        tracing::info!(agent = %self.relay.agent(), "warden connect: the gateway no longer knows the session; opening a new one");
        let resp = self.relay.send(Method::POST, self.headers("application/json, text/event-stream"), serde_json::to_vec(&init).unwrap_or_default()).await?;
        let sid = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let ok = resp.status().is_success();
        self.answers(&init, resp, false).await?;
        if !ok {
            return Err(self.garbled("a refusal to open a new session"));
        }
        self.session.lock().id = sid;
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        self.relay.send(Method::POST, self.headers("application/json, text/event-stream"), note.to_string().into_bytes()).await.map(drop)
    }

    /// The gateway's own stream for the session (notifications and requests
    /// from upstream servers), relayed while the session lasts. A gateway
    /// without one answers 405 and the bridge stops asking.
    async fn listen(self: Arc<Self>) {
        let Some(sid) = self.session.lock().id.clone() else { return };
        loop {
            let resp = match self.relay.send(Method::GET, self.headers("text/event-stream"), Vec::new()).await {
                Ok(r) if r.status().is_success() => r,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("warden connect: the gateway's stream for the session is closed: {e}");
                    return;
                }
            };
            let mut resp = resp;
            let mut events = sse::Decoder::new(MAX_MESSAGE_BYTES);
            while let Ok(Some(chunk)) = resp.chunk().await {
                let Ok(data) = events.push(&chunk) else { break };
                for d in data {
                    if let Ok(v) = serde_json::from_str::<Value>(&d) {
                        self.emit(v).await;
                    }
                }
            }
            if self.session.lock().id.as_deref() != Some(sid.as_str()) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// End the gateway session (best effort: the gateway also expires it).
    async fn close(&self) {
        if let Some(l) = self.session.lock().listener.take() {
            l.abort();
        }
        if self.session.lock().id.is_none() {
            return;
        }
        let delete = self.relay.send(Method::DELETE, self.headers("application/json"), Vec::new());
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), delete).await {
            tracing::info!("warden connect: closing the session: {e}");
        }
    }
}

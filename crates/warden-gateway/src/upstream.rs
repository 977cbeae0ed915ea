//! Connections to upstream MCP servers: stdio child processes and streamable
//! HTTP endpoints. Each is (re)connected lazily with the MCP `initialize`
//! handshake; the gateway's own request ids are used upstream, never the
//! client's, and the client's token never leaves the gateway.
//!
//! Every exchange with an upstream, connecting included, ends within the
//! upstream's `timeout_secs` of the call arriving: a hung server costs its
//! callers that long at most and never holds up calls once it answers again.
//! A response is accepted only under the id the gateway gave its request. An
//! expired session (HTTP 404 to a request carrying `Mcp-Session-Id`) or a
//! stdio server that exited is reconnected, and a request the server provably
//! did not process is sent once more.
//!
//! Upstream sessions are per caller: each agent's MCP session at the gateway
//! gets its own upstream session (its own child process for a stdio
//! server), so nothing an upstream keeps per session (subscriptions, a
//! logging level, session resources, conversation state) crosses from one
//! agent to another. The gateway's own listings and definition checks use a
//! session of their own. A caller's session ends when its gateway session
//! does (DELETE, a kill switch), after [`SESSION_IDLE`] unused, or when the
//! caller's agent opens more than [`MAX_SESSIONS_PER_AGENT`] (its own least
//! recently used idle one goes) or the upstream's [`MAX_CALLER_SESSIONS`]
//! are taken (the least recently used idle one goes).

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use warden_core::sse;

/// The MCP revisions the gateway speaks, newest first: it offers the
/// newest to each upstream and uses whichever of these the upstream answers.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// Largest upstream message (JSON body, SSE event or stdio line) the gateway
/// accepts: a response is inspected and redacted as a whole, so its size is
/// what bounds the gateway's memory per call.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Times one call's event stream is resumed after the server closed it.
const MAX_RESUMES: usize = 3;

/// Requests of a server's waiting for the client's answer at once, per
/// connection; more are refused at once.
const MAX_RELAYED_PER_CONNECTION: usize = 8;

/// Upstream sessions one upstream keeps open for callers at once.
pub const MAX_CALLER_SESSIONS: usize = 256;
/// Of those, one agent's: an agent opening more closes its own least
/// recently used idle one, never another agent's.
pub const MAX_SESSIONS_PER_AGENT: usize = 16;
/// An upstream session unused this long is closed (the gateway's own MCP
/// sessions expire after the same time).
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// Whose upstream session a request travels in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// The gateway's own: tool listings and definition checks.
    Gateway,
    /// One agent's MCP session at the gateway, and what its client offers
    /// (declared upstream, so a server asks only for what can be relayed).
    Session { agent: String, session: String, offers: ClientOffers },
}

/// The client capabilities the gateway relays: what an agent's client
/// declared at `initialize` (with the parts of them a server's request
/// must stay within), and so what its upstream sessions declare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ClientOffers {
    pub sampling: bool,
    /// `sampling.tools`: a sampling request may offer the model tools.
    pub sampling_tools: bool,
    /// `elicitation` in form mode (an empty `elicitation` object means it).
    pub elicitation_form: bool,
    /// `elicitation.url`: the user may be sent to a URL.
    pub elicitation_url: bool,
    pub roots: bool,
}

impl ClientOffers {
    /// Everything the gateway can relay (its own session declares it).
    pub const ALL: Self = Self { sampling: true, sampling_tools: true, elicitation_form: true, elicitation_url: true, roots: true };

    /// What a client's `initialize` capabilities offer.
    pub fn of(capabilities: &Value) -> Self {
        let obj = |p: &str| capabilities.pointer(p).is_some_and(Value::is_object);
        let elicitation = obj("/elicitation");
        let (form, url) = (obj("/elicitation/form"), obj("/elicitation/url"));
        Self {
            sampling: obj("/sampling"),
            sampling_tools: obj("/sampling/tools"),
            elicitation_form: elicitation && (form || !url),
            elicitation_url: url,
            roots: obj("/roots"),
        }
    }

    /// The capabilities declared upstream.
    pub(crate) fn capabilities(self) -> Value {
        let mut caps = serde_json::Map::new();
        if self.sampling {
            caps.insert("sampling".into(), if self.sampling_tools { json!({ "tools": {} }) } else { json!({}) });
        }
        if self.elicitation_form || self.elicitation_url {
            let mut e = serde_json::Map::new();
            for (offered, mode) in [(self.elicitation_form, "form"), (self.elicitation_url, "url")] {
                if offered {
                    e.insert(mode.into(), json!({}));
                }
            }
            caps.insert("elicitation".into(), Value::Object(e));
        }
        if self.roots {
            caps.insert("roots".into(), json!({}));
        }
        Value::Object(caps)
    }

    /// Whether a server's request may reach the client: a method it
    /// offers, within what it declared. A sampling request may not ask for
    /// context beyond its own messages (through a gateway "this server" or
    /// "all servers" is every upstream the client reaches: other servers'
    /// data would flow to the one that asked).
    pub fn admit(self, method: &str, params: &Value) -> Result<(), String> {
        let offered = match method {
            "sampling/createMessage" => {
                if params.get("includeContext").and_then(Value::as_str).is_some_and(|c| c != "none") {
                    return Err("a sampling request may not include context through the gateway (includeContext must be \"none\")".into());
                }
                if params.get("tools").is_some() && !self.sampling_tools {
                    return Err("the client did not declare sampling with tools".into());
                }
                self.sampling
            }
            "elicitation/create" => match params.get("mode").and_then(Value::as_str) {
                Some("url") => self.elicitation_url,
                _ => self.elicitation_form,
            },
            "roots/list" => self.roots,
            _ => false,
        };
        if offered { Ok(()) } else { Err(format!("the client does not offer {method} (it did not declare it at initialize)")) }
    }
}

/// What the gateway passes on to the door about a request in flight.
#[derive(Debug)]
pub enum Relayed {
    /// A notification about it (progress, a log message).
    Notification(Value),
    /// A request of the server's (sampling, elicitation, roots) that the
    /// client offers: the door decides on it and sends its client's answer
    /// (a JSON-RPC response, `result` or `error`) back here.
    Request(Value, oneshot::Sender<Value>),
}

/// How to reach one upstream server.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase", deny_unknown_fields)]
pub enum Transport {
    /// A child process speaking newline-delimited JSON-RPC on stdio.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        /// The server's environment: these variables plus PATH, HOME and
        /// the locale; nothing else of the gateway's environment (where its
        /// own and other upstreams' secrets live) is passed on.
        #[serde(default)]
        env: BTreeMap<String, String>,
        cwd: Option<String>,
        /// Confine the server (Landlock, seccomp, rlimits); see `sandbox`.
        sandbox: Option<crate::sandbox::SandboxConfig>,
    },
    /// A streamable HTTP endpoint.
    Http {
        url: String,
        /// Headers the gateway injects (upstream credentials), each taken
        /// from the named environment variable at start-up: `{ Authorization = "CRM_TOKEN" }`.
        #[serde(default)]
        headers_from_env: BTreeMap<String, String>,
        /// Headers the gateway injects from files (a mounted secret), re-read
        /// at most every second so a rotated credential is used without a
        /// restart: `{ Authorization = "/run/secrets/crm-authorization" }`.
        /// Surrounding whitespace (a trailing newline) is ignored.
        #[serde(default)]
        headers_from_file: BTreeMap<String, std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamConfig {
    /// Server name: the `SERVER` in `SERVER/TOOL`.
    pub name: String,
    #[serde(flatten)]
    pub transport: Transport,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How clients name this server's tools: `prefixed` (`SERVER__TOOL`,
    /// the default) or `bare` (as the server names them).
    #[serde(default)]
    pub naming: crate::catalog::Naming,
    /// Other names for some of its tools: `{ lookup = "customer_lookup" }`
    /// (a tool with an alias answers only to it).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// How policy and the monitor see this server's resources
    /// (`resources/read`): medium sensitivity, untrusted content unless
    /// the operator says otherwise.
    #[serde(default = "Classification::resources")]
    pub resources: Classification,
    /// How policy and the monitor see this server's prompts (`prompts/get`):
    /// low sensitivity, untrusted content (a prompt's messages go straight
    /// into the model's context) unless the operator says otherwise.
    #[serde(default = "Classification::prompts")]
    pub prompts: Classification,
}

/// The classification an upstream's resources or prompts have, as a tool's
/// is set by `warden tool approve`: they are reads, never
/// exfiltration-capable (what they send upstream is a URI or a prompt's
/// arguments, inspected like a tool's arguments).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    pub sensitivity: warden_core::Sensitivity,
    /// Reading them taints the session as having read untrusted content.
    pub untrusted_content: bool,
}

impl Classification {
    fn resources() -> Self {
        Self { sensitivity: warden_core::Sensitivity::Medium, untrusted_content: true }
    }

    fn prompts() -> Self {
        Self { sensitivity: warden_core::Sensitivity::Low, untrusted_content: true }
    }
}

fn default_timeout() -> u64 {
    60
}

impl UpstreamConfig {
    /// An upstream with the defaults a configuration file gets.
    pub fn new(name: impl Into<String>, transport: Transport, timeout_secs: u64) -> Self {
        Self {
            name: name.into(),
            transport,
            timeout_secs,
            naming: Default::default(),
            aliases: Default::default(),
            resources: Classification::resources(),
            prompts: Classification::prompts(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {server} is unavailable: {message}")]
    Unavailable { server: String, message: String },
    #[error(
        "upstream {server} did not answer {what} within {secs} s (its timeout_secs); check that it is running and responsive, the gateway retries it on the next call"
    )]
    Timeout { server: String, what: &'static str, secs: u64 },
    #[error("upstream {server} returned an invalid response: {message}")]
    Protocol { server: String, message: String },
    /// A JSON-RPC error object from the upstream, passed through.
    #[error("upstream {server} answered with error {code}: {message}")]
    Rpc { server: String, code: i64, message: String, data: Option<Box<Value>> },
    #[error("upstream {server} is misconfigured: {message}")]
    Config { server: String, message: String },
    /// The client cancelled the request; the upstream was told.
    #[error("the client cancelled the request; upstream {server} was told to stop")]
    Cancelled { server: String },
}

type Pending = Arc<parking_lot::Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

/// What travels with one request besides its answer.
#[derive(Default)]
pub struct Exchange {
    /// Where the server's notifications about the request go: its progress
    /// (with the client's own progress token: upstream, the request carries
    /// the gateway's id as its token, so no client can name another's
    /// request) and its log messages.
    pub progress: Option<mpsc::Sender<Relayed>>,
    /// Cancelled when the client cancels the request: the server is told
    /// (`notifications/cancelled` with the gateway's id) and the request
    /// ends with [`UpstreamError::Cancelled`].
    pub cancel: Option<tokio_util::sync::CancellationToken>,
}

/// Requests whose notifications are relayed, by the gateway's request id
/// (which is also their progress token upstream): the client's progress
/// token, if it gave one, and where the notifications go.
#[derive(Clone, Default)]
struct Progress(Arc<parking_lot::Mutex<HashMap<i64, Watcher>>>);

/// A client's progress token and where notifications go.
type Watcher = (Option<Value>, mpsc::Sender<Relayed>);

impl Progress {
    /// Relay `msg` if it is about request `id`: an event of that request's
    /// own stream (HTTP), so its progress and its log messages.
    fn relay(&self, id: i64, msg: Value) {
        // On a request's own stream, what is not about it is dropped: the
        // server sends those on its own stream, which is the caller's.
        let _ = self.relay_any(msg, Some(id));
    }

    /// Relay `msg` to the request it is about: progress by its token; a log
    /// message, with `only` unknown (stdio: one stream for all), to every
    /// request relayed on the connection (a stdio server runs for one
    /// caller, so they are all its).
    /// Returns the message when it is about no request relayed (for the
    /// caller's session stream, if anything).
    fn relay_any(&self, mut msg: Value, only: Option<i64>) -> Option<Value> {
        match msg.get("method").and_then(Value::as_str) {
            Some("notifications/progress") => {
                let token = msg.pointer("/params/progressToken").and_then(Value::as_i64).filter(|t| only.is_none_or(|id| id == *t))?;
                if let Some((Some(client_token), tx)) = self.0.lock().get(&token) {
                    msg["params"]["progressToken"] = client_token.clone();
                    // A client that does not keep up misses progress, which
                    // the next notification supersedes.
                    let _ = tx.try_send(Relayed::Notification(msg));
                }
                None
            }
            Some("notifications/message") => {
                let watchers = self.0.lock();
                let mut to = watchers.iter().filter(|(id, _)| only.is_none_or(|o| o == **id)).map(|(_, (_, tx))| tx).peekable();
                if to.peek().is_none() {
                    return Some(msg);
                }
                to.for_each(|tx| drop(tx.try_send(Relayed::Notification(msg.clone()))));
                None
            }
            _ => Some(msg),
        }
    }

    /// Where a server's request about request `id` (HTTP: its own stream)
    /// may go; with `id` unknown (stdio: one stream for all), only while a
    /// single request is relayed on the connection, as only then is it
    /// certain which request (and so which decision's target) it is about.
    fn requester(&self, id: Option<i64>) -> Option<mpsc::Sender<Relayed>> {
        let watchers = self.0.lock();
        match id {
            Some(id) => watchers.get(&id).map(|(_, tx)| tx.clone()),
            None if watchers.len() == 1 => watchers.values().next().map(|(_, tx)| tx.clone()),
            None => None,
        }
    }
}

/// Relay a server's request to the client through `to` and wait for the
/// client's answer (at most `wait`); the answer to send back upstream,
/// under the server's own id. Without anyone to relay it to, or for a
/// method the client does not offer, it is refused at once.
async fn relay_request(to: Option<mpsc::Sender<Relayed>>, offers: ClientOffers, msg: Value, wait: Duration) -> Value {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
    let params = msg.get("params").cloned().unwrap_or_default();
    if let Err(why) = offers.admit(&method, &params) {
        return refuse_server_request(&id, &method, &why);
    }
    let Some(to) = to else { return refuse_server_request(&id, &method, "no single request of the client's is in flight to carry it") };
    let (tx, rx) = oneshot::channel();
    if to.try_send(Relayed::Request(msg, tx)).is_err() {
        return refuse_server_request(&id, &method, "the client is not keeping up with its request's stream");
    }
    let answer = match tokio::time::timeout(wait, rx).await {
        Ok(Ok(a)) => a,
        Ok(Err(_)) => json!({ "error": { "code": -32603, "message": format!("the client's request ended before it answered {method}") } }),
        Err(_) => json!({ "error": { "code": -32603, "message": format!("the client did not answer {method} within {} s", wait.as_secs()) } }),
    };
    let mut reply = json!({ "jsonrpc": "2.0", "id": id });
    match (answer.get("result"), answer.get("error")) {
        (Some(r), _) => reply["result"] = r.clone(),
        (None, Some(e)) => reply["error"] = e.clone(),
        (None, None) => reply["error"] = json!({ "code": -32603, "message": "the client's answer had neither result nor error" }),
    }
    reply
}

/// Ends a request's progress relay when its wait ends, however it ends.
struct ProgressEntry<'a> {
    progress: &'a Progress,
    id: i64,
}

impl Drop for ProgressEntry<'_> {
    fn drop(&mut self) {
        self.progress.0.lock().remove(&self.id);
    }
}

struct StdioConn {
    tx: mpsc::Sender<String>,
    pending: Pending,
    progress: Progress,
    alive: Arc<AtomicBool>,
    _child: Child,
}

struct HttpConn {
    session: Option<String>,
    protocol: String,
    /// What the caller's client offers (the server's requests it may get).
    offers: ClientOffers,
    /// The headers a request of the stateless revision mirrors from its
    /// body (none in a session).
    mirrored: Vec<(String, String)>,
    /// Ends the session's `GET` stream with the connection.
    _listening: Option<tokio_util::sync::DropGuard>,
}

impl HttpConn {
    /// A request of the stateless revision (it mirrors at least its method).
    fn stateless(&self) -> bool {
        self.session.is_none() && !self.mirrored.is_empty()
    }
}

/// The connection, and what is known about making one.
#[derive(Default)]
struct Link {
    conn: Option<Arc<Conn>>,
    /// The newest failed attempt: when it started, and why it failed.
    failed: Option<(Instant, UpstreamError)>,
    /// When the newest attempt in flight started.
    connecting: Option<Instant>,
    /// Whether a connection was made before: a new one is a new session,
    /// without what the old one held.
    connected_before: bool,
}

/// What a call does next to get a connection.
enum Next {
    Use(Arc<Conn>),
    Fail(UpstreamError),
    /// Wait for the attempt in flight, until it ends or this instant.
    Wait(Instant),
    /// Make an attempt, started now.
    Attempt(Instant),
}

/// One caller's upstream session: its connection and the attempts to make one.
#[derive(Default)]
struct Slot {
    link: parking_lot::Mutex<Link>,
    /// Woken when an attempt to connect ends.
    changed: tokio::sync::Notify,
    /// What its caller's client offers, declared upstream when it connects.
    offers: ClientOffers,
    /// Whose session it is: where the server's notifications about no
    /// request go.
    caller: Option<Caller>,
}

/// The caller sessions of one upstream, each with when it was last used.
#[derive(Default)]
struct Slots {
    by_caller: HashMap<Caller, (Arc<Slot>, Instant)>,
}

impl Slots {
    /// `caller`'s slot, opened if new; idle slots are closed on the way.
    fn get(&mut self, caller: &Caller, now: Instant) -> Option<Arc<Slot>> {
        if let Some((slot, used)) = self.by_caller.get_mut(caller) {
            *used = now;
            return Some(slot.clone());
        }
        self.by_caller.retain(|c, (slot, used)| *c == Caller::Gateway || now.duration_since(*used) < SESSION_IDLE || Arc::strong_count(slot) > 1);
        let agent = match caller {
            Caller::Session { agent, .. } => Some(agent.as_str()),
            Caller::Gateway => None,
        };
        let own = |c: &Caller| matches!(c, Caller::Session { agent: a, .. } if Some(a.as_str()) == agent);
        if agent.is_some() && self.by_caller.keys().filter(|c| own(c)).count() >= MAX_SESSIONS_PER_AGENT {
            self.evict(|c| own(c))?;
        } else if self.by_caller.len() >= MAX_CALLER_SESSIONS {
            self.evict(|c| *c != Caller::Gateway)?;
        }
        let offers = match caller {
            Caller::Session { offers, .. } => *offers,
            // The gateway's own session declares everything it can relay,
            // so that it sees the tools servers offer only to clients with
            // those capabilities (it relays nothing itself: no client).
            Caller::Gateway => ClientOffers::ALL,
        };
        let slot = Arc::new(Slot { offers, caller: Some(caller.clone()), ..Slot::default() });
        self.by_caller.insert(caller.clone(), (slot.clone(), now));
        Some(slot)
    }

    /// Close the least recently used slot `which` selects that has no
    /// request in flight; `None` when every one is busy.
    fn evict(&mut self, which: impl Fn(&Caller) -> bool) -> Option<()> {
        let victim = self
            .by_caller
            .iter()
            .filter(|(c, (slot, _))| which(c) && Arc::strong_count(slot) == 1)
            .min_by_key(|(_, (_, used))| *used)
            .map(|(c, _)| c.clone())?;
        self.by_caller.remove(&victim);
        Some(())
    }
}

/// Keeps a caller's upstream session from being closed for being idle or
/// to make room (see [`Upstream::hold`]).
pub(crate) struct SessionHold {
    _slot: Arc<Slot>,
}

/// Ends an attempt however it ends (cancelled with its call too), so calls
/// waiting on it move on.
struct AttemptEnd<'a> {
    slot: &'a Slot,
    started: Instant,
}

impl Drop for AttemptEnd<'_> {
    fn drop(&mut self) {
        {
            let mut link = self.slot.link.lock();
            if link.connecting == Some(self.started) {
                link.connecting = None;
            }
        }
        self.slot.changed.notify_waiters();
    }
}

/// Why a request got no result: `Unsent` when the upstream provably did not
/// process it (so sending it again cannot run it twice).
enum SendError {
    Unsent(UpstreamError),
    Failed(UpstreamError),
}

impl From<UpstreamError> for SendError {
    fn from(e: UpstreamError) -> Self {
        SendError::Failed(e)
    }
}

impl SendError {
    fn into_error(self) -> UpstreamError {
        match self {
            SendError::Unsent(e) | SendError::Failed(e) => e,
        }
    }
}

/// A stdio request waiting for its response; removed from the pending map
/// when the wait ends for any reason (answer, timeout, abandoned call).
struct PendingEntry<'a> {
    pending: &'a Pending,
    id: i64,
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

enum Conn {
    Stdio(StdioConn),
    Http(HttpConn),
}

impl Conn {
    fn alive(&self) -> bool {
        match self {
            Conn::Stdio(s) => s.alive.load(Ordering::Relaxed),
            Conn::Http(_) => true,
        }
    }
}

/// Variables of the gateway's environment a stdio server gets.
const PASSED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"];

/// How often credential files are re-read.
const CREDENTIAL_RECHECK: Duration = Duration::from_secs(1);

/// The headers injected into every request to an HTTP upstream: fixed ones
/// from the environment, and ones from files that may be rotated.
struct Credentials {
    fixed: Vec<(String, String)>,
    files: Vec<(String, std::path::PathBuf)>,
    /// When the files were last read, and their values then.
    current: parking_lot::RwLock<(std::time::Instant, Vec<(String, String)>)>,
}

impl Credentials {
    fn read_file(server: &str, header: &str, path: &std::path::Path) -> Result<String, UpstreamError> {
        let config = |message: String| UpstreamError::Config { server: server.to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| config(format!("cannot read {} (for header {header}): {e}", path.display())))?;
        let value = text.trim().to_string();
        if value.is_empty() || reqwest::header::HeaderValue::from_str(&value).is_err() {
            return Err(config(format!("{} (for header {header}) is empty or not a valid header value", path.display())));
        }
        Ok(value)
    }

    /// The headers to send now, re-reading the files when due. A file that
    /// cannot be read during a rotation leaves its last good value in use.
    fn headers(&self, server: &str) -> Vec<(String, String)> {
        let due = self.current.read().0.elapsed() >= CREDENTIAL_RECHECK;
        if due && !self.files.is_empty() {
            let mut cur = self.current.write();
            if cur.0.elapsed() >= CREDENTIAL_RECHECK {
                for (i, (header, path)) in self.files.iter().enumerate() {
                    match Self::read_file(server, header, path) {
                        Ok(v) if v != cur.1[i].1 => {
                            tracing::info!("upstream {server}: credential for header {header} rotated ({})", path.display());
                            cur.1[i].1 = v;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!("{e}; keeping the previous value"),
                    }
                }
                cur.0 = std::time::Instant::now();
            }
        }
        let cur = self.current.read();
        self.fixed.iter().chain(cur.1.iter()).cloned().collect()
    }
}

/// One upstream server.
pub struct Upstream {
    pub config: UpstreamConfig,
    http: reqwest::Client,
    credentials: Arc<Credentials>,
    slots: parking_lot::Mutex<Slots>,
    next_id: AtomicI64,
    /// The `capabilities` the server answered its last `initialize` with
    /// (`Null` until it has been reached).
    capabilities: parking_lot::RwLock<Value>,
    /// The `instructions` it answered with, if any.
    instructions: parking_lot::RwLock<Option<String>>,
    /// Where notifications about no request go (the gateway's session streams).
    notices: std::sync::OnceLock<mpsc::Sender<Notice>>,
    /// Whether the server speaks the stateless revision (`server/discover`
    /// said so); `None` until asked.
    stateless: parking_lot::RwLock<Option<bool>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({})", self.config.name)
    }
}

impl Upstream {
    /// Prepare an upstream; resolves injected credentials from the
    /// environment now so a missing secret is reported at start-up.
    pub fn new(config: UpstreamConfig, http: reqwest::Client) -> Result<Self, UpstreamError> {
        let (mut fixed, mut files, mut from_files) = (Vec::new(), Vec::new(), Vec::new());
        if let Transport::Http { headers_from_env, headers_from_file, .. } = &config.transport {
            for (header, var) in headers_from_env {
                let value = std::env::var(var).map_err(|_| UpstreamError::Config {
                    server: config.name.clone(),
                    message: format!("environment variable {var} (for header {header}) is not set"),
                })?;
                fixed.push((header.clone(), value));
            }
            for (header, path) in headers_from_file {
                from_files.push((header.clone(), Credentials::read_file(&config.name, header, path)?));
                files.push((header.clone(), path.clone()));
            }
        }
        let credentials = Arc::new(Credentials { fixed, files, current: parking_lot::RwLock::new((std::time::Instant::now(), from_files)) });
        Ok(Self {
            config,
            http,
            credentials,
            slots: Default::default(),
            next_id: AtomicI64::new(1),
            capabilities: Default::default(),
            instructions: Default::default(),
            notices: Default::default(),
            stateless: Default::default(),
        })
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn too_large(&self) -> UpstreamError {
        UpstreamError::Protocol { server: self.name().into(), message: format!("response larger than {} MiB; refused", MAX_MESSAGE_BYTES >> 20) }
    }

    fn unavailable(&self, message: impl Into<String>) -> UpstreamError {
        UpstreamError::Unavailable { server: self.name().into(), message: message.into() }
    }

    fn timeout(&self, what: &'static str) -> UpstreamError {
        UpstreamError::Timeout { server: self.name().into(), what, secs: self.config.timeout_secs }
    }

    /// Send a request in the gateway's own session and return its `result`,
    /// within `timeout_secs` of now (connecting included).
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, UpstreamError> {
        self.request_for(&Caller::Gateway, method, params).await
    }

    /// Send a request in `caller`'s upstream session (opened if new) and
    /// return its `result`, within `timeout_secs` of now (connecting included).
    pub async fn request_for(&self, caller: &Caller, method: &str, params: Value) -> Result<Value, UpstreamError> {
        self.exchange(caller, method, params, &Exchange::default()).await
    }

    /// As [`Upstream::request_for`], relaying the request's progress and
    /// its cancellation as `relay` asks.
    pub async fn exchange(&self, caller: &Caller, method: &str, params: Value, relay: &Exchange) -> Result<Value, UpstreamError> {
        let arrived = Instant::now();
        let deadline = arrived + Duration::from_secs(self.config.timeout_secs);
        let Some(slot) = self.slots.lock().get(caller, arrived) else {
            return Err(self.unavailable("every upstream session this caller may open is busy; retry shortly"));
        };
        let connected = AtomicBool::new(false);
        let exchange = async {
            let conn = self.connection(&slot, arrived, deadline, None).await?;
            connected.store(true, Ordering::Relaxed);
            match self.send(&conn, method, params.clone(), relay).await {
                // Not processed (expired session, server gone before the
                // request was written): once more on a new connection.
                Err(SendError::Unsent(e)) => {
                    tracing::info!(upstream = %self.name(), "{e}; reconnecting and sending {method} again");
                    let conn = self.connection(&slot, arrived, deadline, Some(&conn)).await?;
                    self.send(&conn, method, params, relay).await.map_err(SendError::into_error)
                }
                other => other.map_err(SendError::into_error),
            }
        };
        tokio::time::timeout_at(deadline.into(), exchange)
            .await
            .unwrap_or_else(|_| Err(self.timeout(if connected.load(Ordering::Relaxed) { method_what(method) } else { "initialize" })))
    }

    /// Whether the server speaks the stateless revision (2026-07-28): an
    /// HTTP server asked once with `server/discover`. A server of the
    /// session revisions refuses that request outside a session; one that
    /// cannot be reached is asked again next time.
    pub async fn speaks_stateless(&self) -> bool {
        if !matches!(self.config.transport, Transport::Http { .. }) {
            return false;
        }
        if let Some(known) = *self.stateless.read() {
            return known;
        }
        let deadline = Instant::now() + Duration::from_secs(self.config.timeout_secs);
        let asked = tokio::time::timeout_at(
            deadline.into(),
            self.stateless_send(ClientOffers::default(), None, None, "server/discover", json!({}), &Exchange::default()),
        )
        .await
        .unwrap_or_else(|_| Err(self.timeout("server/discover")));
        let known = match asked {
            Ok(r) => r.get("supportedVersions").and_then(Value::as_array).is_some_and(|v| v.iter().any(|v| v == warden_core::mcp_headers::STATELESS_VERSION)),
            Err(UpstreamError::Unavailable { .. } | UpstreamError::Timeout { .. }) => return false,
            Err(_) => false,
        };
        *self.stateless.write() = Some(known);
        tracing::info!(upstream = %self.name(), "speaks MCP {}: {known}", warden_core::mcp_headers::STATELESS_VERSION);
        known
    }

    /// Send a request of the stateless revision: no session, the gateway's
    /// own `_meta` (declaring `offers`, the client's, and `log_level`), the
    /// headers mirrored from the body (`tool_schema` annotates the
    /// arguments'), within `timeout_secs` of now.
    pub async fn stateless(
        &self,
        offers: ClientOffers,
        log_level: Option<usize>,
        tool_schema: Option<&Value>,
        method: &str,
        params: Value,
        relay: &Exchange,
    ) -> Result<Value, UpstreamError> {
        let deadline = Instant::now() + Duration::from_secs(self.config.timeout_secs);
        tokio::time::timeout_at(deadline.into(), self.stateless_send(offers, log_level, tool_schema, method, params, relay))
            .await
            .unwrap_or_else(|_| Err(self.timeout(method_what(method))))
    }

    async fn stateless_send(
        &self,
        offers: ClientOffers,
        log_level: Option<usize>,
        tool_schema: Option<&Value>,
        method: &str,
        mut params: Value,
        relay: &Exchange,
    ) -> Result<Value, UpstreamError> {
        crate::mcp::upstream_meta(&mut params, offers, log_level);
        let mirrored = warden_core::mcp_headers::mirrored_headers(method, &params, tool_schema);
        let conn = Conn::Http(HttpConn { session: None, protocol: warden_core::mcp_headers::STATELESS_VERSION.into(), offers, mirrored, _listening: None });
        self.send(&conn, method, params, relay).await.map_err(SendError::into_error)
    }

    /// End the callers' sessions `close` selects (their gateway sessions
    /// ended): a stdio server's process ends, an HTTP session is no longer
    /// used. A request in flight in one finishes first.
    pub fn close_sessions(&self, close: impl Fn(&Caller) -> bool) {
        self.slots.lock().by_caller.retain(|c, _| *c == Caller::Gateway || !close(c));
    }

    /// Whether the server offers `capability` (`tools`, `resources`,
    /// `prompts`, `completions`, `logging`); `None` before it was reached.
    pub fn offers(&self, capability: &str) -> Option<bool> {
        let caps = self.capabilities.read();
        caps.is_object().then(|| caps.get(capability).is_some_and(|c| !c.is_null()))
    }

    /// Send the server's notifications about no request to `to` (once).
    pub fn send_notices_to(&self, to: mpsc::Sender<Notice>) {
        let _ = self.notices.set(to);
    }

    /// Where a connection of `slot`'s sends notifications about no request,
    /// with whose session it is.
    fn notices_for(&self, slot: &Slot) -> Option<(Caller, mpsc::Sender<Notice>)> {
        Some((slot.caller.clone()?, self.notices.get()?.clone()))
    }

    /// Say that `slot`'s session ended (it was replaced by a new one).
    fn session_lost(&self, slot: &Slot) {
        if let Some((caller, to)) = self.notices_for(slot) {
            let _ = to.try_send(Notice { caller, server: self.name().to_string(), message: Value::Null, lost: true });
        }
    }

    /// Keep `caller`'s session open (not closed idle, nor to make room)
    /// while the hold lives: a notification stream depends on what it holds.
    pub(crate) fn hold(&self, caller: &Caller) -> Option<SessionHold> {
        self.slots.lock().get(caller, Instant::now()).map(|slot| SessionHold { _slot: slot })
    }

    /// Open the `GET` stream of an HTTP session just made, on which the
    /// server says what is about no request (list changes, subscribed
    /// resources' updates, log messages); it ends with the connection.
    fn listen(&self, conn: &HttpConn, slot: &Slot) -> Option<tokio_util::sync::DropGuard> {
        let (Transport::Http { url, .. }, Some(session)) = (&self.config.transport, &conn.session) else { return None };
        let stop = tokio_util::sync::CancellationToken::new();
        let listening = Listening {
            http: self.http.clone(),
            url: url.clone(),
            name: self.name().to_string(),
            session: session.clone(),
            protocol: conn.protocol.clone(),
            credentials: self.credentials.clone(),
            notices: self.notices_for(slot),
            timeout: Duration::from_secs(self.config.timeout_secs),
        };
        tokio::spawn(listening.run(stop.clone()));
        Some(stop.drop_guard())
    }

    /// The instructions the server gave at its last `initialize`.
    pub fn instructions(&self) -> Option<String> {
        self.instructions.read().clone()
    }

    /// All tools, following `nextCursor` pagination (none from a server
    /// that offers only resources or prompts).
    pub async fn list_tools(&self) -> Result<Vec<Value>, UpstreamError> {
        let mut tools = Vec::new();
        if self.offers("tools") == Some(false) {
            return Ok(tools);
        }
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.request("tools/list", params).await?;
            let items = page
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| UpstreamError::Protocol { server: self.name().into(), message: "tools/list result has no tools array".into() })?;
            tools.extend(items.iter().cloned());
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return Ok(tools),
            }
        }
        Err(UpstreamError::Protocol { server: self.name().into(), message: "more than 100 pages of tools".into() })
    }

    /// An attempt to connect that has run this long is presumed hung: a call
    /// that finds it starts another instead of waiting on it, so a server
    /// that recovers is used at once (at most about four attempts overlap).
    fn presumed_hung_after(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs).div_f64(4.0).max(Duration::from_secs(1))
    }

    /// The live connection, or a new one made before `deadline`. `stale` is
    /// a connection the caller found dead (unless it was replaced already).
    /// One attempt runs at a time unless it is presumed hung, and a call
    /// shares the failure of an attempt that started after it arrived rather
    /// than start yet another: calls queued behind a hung `initialize` fail
    /// together instead of one attempt after another.
    async fn connection(&self, slot: &Slot, arrived: Instant, deadline: Instant, stale: Option<&Arc<Conn>>) -> Result<Arc<Conn>, UpstreamError> {
        if let Some(s) = stale {
            let mut link = slot.link.lock();
            if link.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, s)) {
                link.conn = None;
            }
        }
        loop {
            let notified = slot.changed.notified();
            tokio::pin!(notified);
            let next = {
                let mut link = slot.link.lock();
                let now = Instant::now();
                if let Some(c) = link.conn.as_ref().filter(|c| c.alive()) {
                    Next::Use(c.clone())
                } else if let Some((_, e)) = link.failed.as_ref().filter(|(at, _)| *at >= arrived) {
                    Next::Fail(e.clone())
                } else if let Some(started) = link.connecting.filter(|s| now < *s + self.presumed_hung_after()) {
                    // Registered before the lock is released: its end cannot be missed.
                    notified.as_mut().enable();
                    Next::Wait(started + self.presumed_hung_after())
                } else {
                    link.connecting = Some(now);
                    Next::Attempt(now)
                }
            };
            match next {
                Next::Use(c) => return Ok(c),
                Next::Fail(e) => return Err(e),
                Next::Attempt(started) => return self.attempt(slot, started, deadline).await,
                Next::Wait(until) => {
                    let _ = tokio::time::timeout_at(until.into(), notified).await;
                }
            }
        }
    }

    /// One attempt to connect, bounded by `deadline`.
    async fn attempt(&self, slot: &Slot, started: Instant, deadline: Instant) -> Result<Arc<Conn>, UpstreamError> {
        let _end = AttemptEnd { slot, started };
        let made = tokio::time::timeout_at(deadline.into(), self.connect(slot)).await.unwrap_or_else(|_| Err(self.timeout("initialize")));
        let mut link = slot.link.lock();
        match made {
            // An overlapping attempt connected first: use its connection
            // (this one is dropped: its child process ends, its session idles).
            Ok(_) if link.conn.as_ref().is_some_and(|c| c.alive()) => Ok(link.conn.clone().expect("checked")),
            Ok(c) => {
                let c = Arc::new(c);
                link.conn = Some(c.clone());
                link.failed = None;
                if std::mem::replace(&mut link.connected_before, true) {
                    self.session_lost(slot);
                }
                Ok(c)
            }
            Err(e) => {
                tracing::warn!(upstream = %self.name(), "connecting failed: {e}");
                if link.failed.as_ref().is_none_or(|(at, _)| *at < started) {
                    link.failed = Some((started, e.clone()));
                }
                Err(e)
            }
        }
    }

    /// Start (stdio) or open (HTTP) a connection and run the handshake; the
    /// caller bounds it.
    async fn connect(&self, slot: &Slot) -> Result<Conn, UpstreamError> {
        let offers = slot.offers;
        let init = json!({
            "protocolVersion": PROTOCOL_VERSIONS[0],
            "capabilities": offers.capabilities(),
            "clientInfo": { "name": "warden-gateway", "version": env!("CARGO_PKG_VERSION") },
        });
        match &self.config.transport {
            Transport::Stdio { command, args, env, cwd, sandbox } => {
                let mut cmd = match sandbox {
                    // `warden sandbox-exec` confines itself, then execs the server.
                    Some(sb) => {
                        let me = std::env::current_exe().map_err(|e| self.unavailable(format!("cannot locate the warden binary for the sandbox: {e}")))?;
                        let mut c = Command::new(me);
                        c.arg("sandbox-exec").arg("--spec").arg(serde_json::to_string(sb).expect("sandbox config serializes")).arg("--").arg(command);
                        c
                    }
                    None => Command::new(command),
                };
                cmd.env_clear().envs(std::env::vars().filter(|(k, _)| PASSED_ENV.contains(&k.as_str())));
                cmd.args(args).envs(env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
                if let Some(d) = cwd {
                    cmd.current_dir(d);
                }
                let mut child = cmd.spawn().map_err(|e| self.unavailable(format!("cannot start {command:?}: {e}")))?;
                let stdin = child.stdin.take().expect("piped");
                let stdout = child.stdout.take().expect("piped");
                let stderr = child.stderr.take().expect("piped");
                let (tx, rx) = mpsc::channel::<String>(256);
                let pending: Pending = Default::default();
                let progress = Progress::default();
                let alive = Arc::new(AtomicBool::new(true));
                tokio::spawn(write_loop(stdin, rx));
                let wait = Duration::from_secs(self.config.timeout_secs);
                tokio::spawn(read_loop(
                    self.name().to_string(),
                    stdout,
                    Relay { tx: tx.clone(), pending: pending.clone(), progress: progress.clone(), offers, wait, notices: self.notices_for(slot) },
                    alive.clone(),
                ));
                let name = self.name().to_string();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l.starts_with("warden sandbox-exec:") {
                            tracing::error!(upstream = %name, "{l}");
                        } else {
                            tracing::debug!(upstream = %name, "stderr: {l}");
                        }
                    }
                });
                let conn = Conn::Stdio(StdioConn { tx, pending, progress, alive, _child: child });
                let result = self.send(&conn, "initialize", init, &Exchange::default()).await.map_err(SendError::into_error)?;
                self.check_init(&result)?;
                self.notify(&conn, "notifications/initialized").await?;
                Ok(conn)
            }
            Transport::Http { .. } => {
                let bootstrap = Conn::Http(HttpConn { session: None, protocol: PROTOCOL_VERSIONS[0].into(), offers, mirrored: Vec::new(), _listening: None });
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (result, session) = self.http_post(&bootstrap, Some(id), "initialize", init, None).await.map_err(SendError::into_error)?;
                self.check_init(&result)?;
                let protocol = self.protocol_of(&result)?.to_string();
                let mut conn = Conn::Http(HttpConn { session, protocol, offers, mirrored: Vec::new(), _listening: None });
                self.notify(&conn, "notifications/initialized").await?;
                if let Conn::Http(h) = &mut conn {
                    h._listening = self.listen(h, slot);
                }
                Ok(conn)
            }
        }
    }

    async fn notify(&self, conn: &Conn, method: &str) -> Result<(), UpstreamError> {
        self.notify_with(conn, method, Value::Null).await
    }

    async fn notify_with(&self, conn: &Conn, method: &str, params: Value) -> Result<(), UpstreamError> {
        match conn {
            Conn::Stdio(s) => {
                let mut msg = json!({ "jsonrpc": "2.0", "method": method });
                if !params.is_null() {
                    msg["params"] = params;
                }
                s.tx.send(msg.to_string()).await.map_err(|_| self.unavailable("process exited"))
            }
            Conn::Http(_) => self.http_post(conn, None, method, params, None).await.map(|_| ()).map_err(SendError::into_error),
        }
    }

    /// Send a request under a fresh id of the gateway's and wait for the
    /// response to that id; the caller bounds the wait. A client's progress
    /// token is replaced by that id, and a cancellation ends the wait and
    /// is passed on.
    async fn send(&self, conn: &Conn, method: &str, mut params: Value, relay: &Exchange) -> Result<Value, SendError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let http_progress = Progress::default();
        let progress = match conn {
            Conn::Stdio(s) => &s.progress,
            Conn::Http(_) => &http_progress,
        };
        let _relayed = match (&relay.progress, params.pointer_mut("/_meta/progressToken")) {
            (Some(tx), token) => {
                let client_token = token.map(|t| std::mem::replace(t, id.into()));
                progress.0.lock().insert(id, (client_token, tx.clone()));
                Some(ProgressEntry { progress, id })
            }
            // Nobody to relay progress to: the server is not asked for it.
            (None, Some(_)) => {
                params["_meta"].as_object_mut().map(|m| m.remove("progressToken"));
                None
            }
            (None, None) => None,
        };
        let answer = async {
            match conn {
                Conn::Stdio(s) => {
                    let (tx, rx) = oneshot::channel();
                    s.pending.lock().insert(id, tx);
                    let _entry = PendingEntry { pending: &s.pending, id };
                    let msg = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string();
                    if !s.alive.load(Ordering::Relaxed) || s.tx.send(msg).await.is_err() {
                        return Err(SendError::Unsent(self.unavailable("the server process had exited")));
                    }
                    // It may have run the request before exiting: not sent again.
                    let resp = rx.await.map_err(|_| self.unavailable("the server process exited before answering; it is restarted on the next call"))?;
                    Ok(self.result_of(resp)?)
                }
                Conn::Http(_) => self.http_post(conn, Some(id), method, params, Some(progress)).await.map(|(r, _)| r),
            }
        };
        let Some(cancel) = &relay.cancel else { return answer.await };
        tokio::select! {
            r = answer => r,
            () = cancel.cancelled() => {
                let notice = json!({ "requestId": id, "reason": "cancelled by the client" });
                // In the stateless revision dropping the request's stream
                // is its cancellation; there is no notification to send.
                let stateless = matches!(conn, Conn::Http(h) if h.stateless());
                if !stateless && let Err(e) = self.notify_with(conn, "notifications/cancelled", notice).await {
                    tracing::warn!(upstream = %self.name(), "could not pass a cancellation on: {e}");
                }
                Err(UpstreamError::Cancelled { server: self.name().into() }.into())
            }
        }
    }

    fn result_of(&self, resp: Value) -> Result<Value, UpstreamError> {
        if let Some(err) = resp.get("error") {
            return Err(UpstreamError::Rpc {
                server: self.name().into(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(-32603),
                message: err.get("message").and_then(Value::as_str).unwrap_or("error").into(),
                data: err.get("data").cloned().map(Box::new),
            });
        }
        resp.get("result")
            .cloned()
            .ok_or_else(|| UpstreamError::Protocol { server: self.name().into(), message: "response has neither result nor error".into() })
    }

    /// A response to request `id`, or why it is not one: a response for
    /// another request (a confused or malicious server, or one answering a
    /// stale request) must never become this call's result.
    fn response_for(&self, id: i64, msg: Value) -> Result<Value, UpstreamError> {
        match msg.get("id") {
            Some(got) if got.as_i64() == Some(id) && msg.get("method").is_none() => self.result_of(msg),
            got => Err(UpstreamError::Protocol {
                server: self.name().into(),
                message: format!(
                    "answered request {id} with a message for id {}; refused (responses are matched strictly to the gateway's request ids)",
                    got.map(Value::to_string).unwrap_or_else(|| "(none)".into())
                ),
            }),
        }
    }

    /// A POST to the server in `h`'s session, with the injected credentials.
    fn http_request(&self, url: &str, h: &HttpConn, versioned: bool) -> reqwest::RequestBuilder {
        let post = self.http.post(url).header("accept", "application/json, text/event-stream").header("content-type", "application/json");
        self.in_session(post, h, versioned)
    }

    /// `req` in `h`'s session (its revision when `versioned`), with the
    /// injected credentials.
    fn in_session(&self, mut req: reqwest::RequestBuilder, h: &HttpConn, versioned: bool) -> reqwest::RequestBuilder {
        if versioned {
            req = req.header("mcp-protocol-version", &h.protocol);
        }
        if let Some(s) = &h.session {
            req = req.header("mcp-session-id", s);
        }
        for (k, v) in &h.mirrored {
            req = req.header(k, v);
        }
        for (k, v) in self.credentials.headers(&self.config.name) {
            req = req.header(k, v);
        }
        req
    }

    /// Resume a stream the server closed, from after event `last`.
    async fn http_resume(&self, conn: &Conn, last: &str) -> Result<reqwest::Response, UpstreamError> {
        let (Transport::Http { url, .. }, Conn::Http(h)) = (&self.config.transport, conn) else { unreachable!("http_resume on an HTTP upstream only") };
        let get = self.http.get(url).header("accept", "text/event-stream").header("last-event-id", last);
        let resp = self.in_session(get, h, true).send().await.map_err(|e| self.unavailable(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(self.unavailable(format!("resuming its event stream got HTTP {}", resp.status())));
        }
        Ok(resp)
    }

    /// POST a response to a request of the server's.
    async fn http_send(&self, conn: &Conn, msg: &Value) -> Result<(), UpstreamError> {
        let (Transport::Http { url, .. }, Conn::Http(h)) = (&self.config.transport, conn) else { unreachable!("http_send on an HTTP upstream only") };
        let resp = self.http_request(url, h, true).body(msg.to_string()).send().await.map_err(|e| self.unavailable(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(self.unavailable(format!("HTTP {}", resp.status())));
        }
        Ok(())
    }

    /// POST one message. For requests, returns the result and any session id
    /// the server assigned; the response may be JSON or an SSE stream.
    async fn http_post(
        &self,
        conn: &Conn,
        id: Option<i64>,
        method: &str,
        params: Value,
        progress: Option<&Progress>,
    ) -> Result<(Value, Option<String>), SendError> {
        let (Transport::Http { url, .. }, Conn::Http(h)) = (&self.config.transport, conn) else { unreachable!("http_post on an HTTP upstream only") };
        let mut msg = json!({ "jsonrpc": "2.0", "method": method });
        if let Some(id) = id {
            msg["id"] = id.into();
        }
        if !params.is_null() {
            msg["params"] = params;
        }
        let resp =
            self.http_request(url, h, method != "initialize").body(msg.to_string()).send().await.map_err(|e| self.unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        // The spec's signal that the session is gone (the server restarted or
        // ended it): the request was refused, not processed.
        if status == reqwest::StatusCode::NOT_FOUND && h.session.is_some() {
            return Err(SendError::Unsent(self.unavailable("its MCP session expired (HTTP 404)")));
        }
        // A server of the stateless revision refuses a request with a
        // JSON-RPC error under a 4xx status: that error is its answer.
        // (Not one about the gateway's credentials or its rate: those are
        // the upstream being unavailable to it for now.)
        let answers_with_error = h.stateless() && status.is_client_error() && !matches!(status.as_u16(), 401 | 403 | 407 | 408 | 429);
        if !(status.is_success() || answers_with_error) {
            return Err(self.unavailable(format!("HTTP {status}")).into());
        }
        let session = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let Some(id) = id else { return Ok((Value::Null, session)) };
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let message = if ctype.starts_with("text/event-stream") {
            self.read_sse(conn, resp, id, progress).await?
        } else {
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk.map_err(|e| self.unavailable(e.without_url().to_string()))?);
                if body.len() > MAX_MESSAGE_BYTES {
                    return Err(self.too_large().into());
                }
            }
            serde_json::from_slice(&body).map_err(|e| UpstreamError::Protocol { server: self.name().into(), message: e.to_string() })?
        };
        if answers_with_error && message.get("error").is_none() {
            return Err(UpstreamError::Protocol { server: self.name().into(), message: format!("answered HTTP {status} without a JSON-RPC error") }.into());
        }
        Ok((self.response_for(id, message)?, session))
    }

    /// The revision the server chose, which must be one the gateway speaks.
    fn protocol_of<'r>(&self, result: &'r Value) -> Result<&'r str, UpstreamError> {
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
        PROTOCOL_VERSIONS.contains(&version).then_some(version).ok_or_else(|| UpstreamError::Protocol {
            server: self.name().into(),
            message: format!("it speaks MCP revision {version:?}; the gateway speaks {}", PROTOCOL_VERSIONS.join(", ")),
        })
    }

    /// Keep what a server offers, which must be something the gateway relays.
    fn check_init(&self, result: &Value) -> Result<(), UpstreamError> {
        self.protocol_of(result)?;
        let caps = result.get("capabilities").filter(|c| c.is_object()).cloned().unwrap_or_default();
        if !["tools", "resources", "prompts"].iter().any(|c| caps.get(c).is_some_and(|v| !v.is_null())) {
            return Err(UpstreamError::Protocol { server: self.name().into(), message: "server offers no tools, resources or prompts".into() });
        }
        *self.capabilities.write() = caps;
        *self.instructions.write() = result.get("instructions").and_then(Value::as_str).map(str::to_string);
        Ok(())
    }

    /// Read SSE events until a response arrives (requests and notifications
    /// the server streams first are skipped, progress about request `id`
    /// relayed); the caller checks the response's id.
    async fn read_sse(&self, conn: &Conn, resp: reqwest::Response, id: i64, progress: Option<&Progress>) -> Result<Value, UpstreamError> {
        let mut stream = resp.bytes_stream();
        let mut events = sse::Decoder::new(MAX_MESSAGE_BYTES);
        let mut resumed = 0;
        loop {
            let Some(chunk) = stream.next().await else {
                // The server may close a request's stream before it answers
                // and let the client resume it (GET with `Last-Event-ID`):
                // resumed a few times, within the call's deadline.
                let Conn::Http(h) = conn else { unreachable!("read_sse on an HTTP upstream only") };
                match events.last_event_id() {
                    // The stateless revision has no resumption.
                    Some(last) if resumed < MAX_RESUMES && !h.stateless() => {
                        resumed += 1;
                        stream = self.http_resume(conn, last).await?.bytes_stream();
                        continue;
                    }
                    _ => break,
                }
            };
            let chunk = chunk.map_err(|e| self.unavailable(e.without_url().to_string()))?;
            for data in events.push(&chunk).map_err(|sse::TooLarge| self.too_large())? {
                let Ok(v) = serde_json::from_str::<Value>(&data) else { continue };
                if v.get("method").is_none() && (v.get("result").is_some() || v.get("error").is_some()) {
                    return Ok(v);
                }
                // A request of the server's (sampling, elicitation, roots)
                // on this call's stream: relayed to the client if it offers
                // it, else answered at once, so that the call never hangs on it.
                if v.get("id").is_some() && v.get("method").is_some() {
                    let to = progress.and_then(|p| p.requester(Some(id)));
                    let Conn::Http(h) = conn else { unreachable!("read_sse on an HTTP upstream only") };
                    // The stateless revision has no server requests (MRTR
                    // replaces them) and no session to answer one in.
                    if h.stateless() {
                        tracing::warn!(upstream = %self.name(), "ignoring a server request on a stream of MCP {}", warden_core::mcp_headers::STATELESS_VERSION);
                        continue;
                    }
                    let answer = relay_request(to, h.offers, v, Duration::from_secs(self.config.timeout_secs)).await;
                    if let Err(e) = self.http_send(conn, &answer).await {
                        tracing::warn!(upstream = %self.name(), "could not answer its request: {e}");
                    }
                    continue;
                }
                if let Some(p) = progress {
                    p.relay(id, v);
                }
            }
        }
        Err(UpstreamError::Protocol { server: self.name().into(), message: "event stream ended without a response".into() })
    }
}

/// How a timeout names what went unanswered.
fn method_what(method: &str) -> &'static str {
    match method {
        "tools/call" => "the tool call",
        "tools/list" => "tools/list",
        "resources/read" => "the resource read",
        "prompts/get" => "the prompt",
        _ => "the request",
    }
}

/// The answer to a request from an upstream server that is not relayed to
/// a client (one it does not offer, or with no request of the client's in
/// flight to carry it): a ping is answered, anything else refused.
fn refuse_server_request(id: &Value, method: &str, why: &str) -> Value {
    if method == "ping" {
        json!({ "jsonrpc": "2.0", "id": id, "result": {} })
    } else {
        json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": format!("the Warden gateway does not relay this {method} to the client: {why}") } })
    }
}

/// An HTTP session's `GET` stream (streamable HTTP's stream for what is
/// about no request), held open for the session's life: each notification
/// goes on as a notice of the session's; each request of the server's on
/// it is answered at once (a ping) or refused, since no request of the
/// client's is in flight to relay it on and policy decides a relayed
/// request as part of one; a stream that ends is resumed from its last
/// event id, after a pause that grows while attempts bring nothing. A
/// server that offers no such stream (405, or an answer that is not an
/// event stream) is not asked again; one that ended the session (404)
/// ends the stream, and its callers are told the session was lost.
struct Listening {
    http: reqwest::Client,
    url: String,
    name: String,
    session: String,
    protocol: String,
    credentials: Arc<Credentials>,
    notices: Option<(Caller, mpsc::Sender<Notice>)>,
    /// How long answering a request of the server's may take.
    timeout: Duration,
}

/// The longest pause before the stream is opened again.
const MAX_LISTEN_BACKOFF: Duration = Duration::from_secs(30);

impl Listening {
    fn request(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req.header("mcp-protocol-version", &self.protocol).header("mcp-session-id", &self.session);
        self.credentials.headers(&self.name).into_iter().fold(req, |r, (k, v)| r.header(k, v))
    }

    fn notice(&self, message: Value, lost: bool) {
        if let Some((caller, to)) = &self.notices {
            // Dropped if the gateway is behind, as on stdio.
            let _ = to.try_send(Notice { caller: caller.clone(), server: self.name.clone(), message, lost });
        }
    }

    async fn run(self, stop: tokio_util::sync::CancellationToken) {
        let mut last: Option<String> = None;
        let mut idle = 0u32;
        loop {
            let mut get = self.request(self.http.get(&self.url).header("accept", "text/event-stream"));
            if let Some(l) = &last {
                get = get.header("last-event-id", l);
            }
            let sent = tokio::select! {
                r = get.send() => r,
                () = stop.cancelled() => return,
            };
            let event_stream = |r: &reqwest::Response| {
                r.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.to_ascii_lowercase().starts_with("text/event-stream"))
            };
            match sent {
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    self.notice(Value::Null, true);
                    return;
                }
                Ok(r) if r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED || (r.status().is_success() && !event_stream(&r)) => {
                    tracing::debug!(upstream = %self.name, "offers no stream for notifications about no request (GET answered {})", r.status());
                    return;
                }
                Ok(r) if r.status().is_success() => match self.read(r, &mut last, &stop).await {
                    None => return,
                    Some(0) => idle += 1,
                    Some(_) => idle = 0,
                },
                Ok(r) => {
                    // The event id may be what it refuses: not offered again.
                    if r.status().is_client_error() {
                        last = None;
                    }
                    idle += 1;
                    tracing::debug!(upstream = %self.name, "its notification stream (GET) answered HTTP {}", r.status());
                }
                Err(e) => {
                    idle += 1;
                    tracing::debug!(upstream = %self.name, "its notification stream (GET): {}", e.without_url());
                }
            }
            let pause = Duration::from_millis(500 << idle.min(6)).min(MAX_LISTEN_BACKOFF);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Read the stream until it ends: how many messages it carried (then it
    /// is opened again), or `None` when the session's connection went.
    async fn read(&self, resp: reqwest::Response, last: &mut Option<String>, stop: &tokio_util::sync::CancellationToken) -> Option<usize> {
        let mut body = resp.bytes_stream();
        let mut events = sse::Decoder::new(MAX_MESSAGE_BYTES);
        let mut carried = 0;
        loop {
            let chunk = tokio::select! {
                c = body.next() => c,
                () = stop.cancelled() => return None,
            };
            let Some(Ok(chunk)) = chunk else { return Some(carried) };
            let Ok(messages) = events.push(&chunk) else {
                tracing::warn!(upstream = %self.name, "its notification stream sent an event larger than {} MiB; reopening it", MAX_MESSAGE_BYTES >> 20);
                return Some(carried);
            };
            for data in messages {
                carried += 1;
                if data.len() > MAX_NOTICE_BYTES {
                    tracing::debug!(upstream = %self.name, "dropping a notification larger than {MAX_NOTICE_BYTES} bytes");
                    continue;
                }
                let Ok(msg) = serde_json::from_str::<Value>(&data) else { continue };
                let Some(method) = msg.get("method").and_then(Value::as_str) else { continue };
                let Some(id) = msg.get("id") else {
                    self.notice(msg, false);
                    continue;
                };
                let answer = refuse_server_request(id, method, "it came with no request of the client's in flight");
                let post =
                    self.request(self.http.post(&self.url).header("content-type", "application/json").header("accept", "application/json, text/event-stream"));
                tokio::select! {
                    r = tokio::time::timeout(self.timeout, post.body(answer.to_string()).send()) => match r {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::debug!(upstream = %self.name, "could not answer its request: {}", e.without_url()),
                        Err(_) => tracing::debug!(upstream = %self.name, "answering its request timed out"),
                    },
                    () = stop.cancelled() => return None,
                }
            }
            if let Some(id) = events.last_event_id() {
                *last = Some(id.to_string());
            }
        }
    }
}

async fn write_loop(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<String>) {
    while let Some(mut msg) = rx.recv().await {
        msg.push('\n');
        if stdin.write_all(msg.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

/// A notification from an upstream about no request in flight, for its
/// caller's session stream.
#[derive(Debug)]
pub struct Notice {
    pub caller: Caller,
    pub server: String,
    pub message: Value,
    /// Instead of a message: the session ended (the server restarted or
    /// expired it, or its process exited), and what it held (resource
    /// subscriptions, a log level) with it.
    pub lost: bool,
}

/// The largest notice passed on (a log message with a big payload is
/// dropped: a session stream keeps [`crate::sessions::EVENTS_KEPT`] of
/// them, and one chatty session must not crowd the others out of the
/// notices' queue).
pub const MAX_NOTICE_BYTES: usize = 16 << 10;

/// What a stdio server's reader relays to: the writer (answers to the
/// server's requests), the requests waiting for a response, the requests
/// whose notifications and server requests go to their client.
struct Relay {
    tx: mpsc::Sender<String>,
    pending: Pending,
    progress: Progress,
    offers: ClientOffers,
    /// How long the server's request may wait for the client's answer.
    wait: Duration,
    /// Where its notifications about no request go, with whose they are.
    notices: Option<(Caller, mpsc::Sender<Notice>)>,
}

async fn read_loop(name: String, stdout: tokio::process::ChildStdout, relay: Relay, alive: Arc<AtomicBool>) {
    let Relay { tx, pending, progress, offers, wait, notices } = relay;
    let relaying = Arc::new(tokio::sync::Semaphore::new(MAX_RELAYED_PER_CONNECTION));
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_MESSAGE_BYTES as u64 + 1).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > MAX_MESSAGE_BYTES && !line.ends_with(b"\n") {
            // Skip the rest of an oversized message; the call it answers times out.
            tracing::warn!(upstream = %name, "dropping a message larger than {} MiB", MAX_MESSAGE_BYTES >> 20);
            loop {
                line.clear();
                match (&mut reader).take(1 << 20).read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.ends_with(b"\n") => break,
                    Ok(_) => {}
                }
            }
            continue;
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&line) else {
            tracing::warn!(upstream = %name, "ignoring non-JSON line on stdout");
            continue;
        };
        let id = msg.get("id").cloned();
        match (id, msg.get("method").and_then(Value::as_str)) {
            // A response to one of ours.
            (Some(id), None) => match id.as_i64().and_then(|i| pending.lock().remove(&i)) {
                Some(tx) => {
                    let _ = tx.send(msg);
                }
                // A duplicate, a response to an abandoned request, or an id
                // the gateway never sent: nobody's result.
                None => tracing::warn!(upstream = %name, "dropping a response for id {id}, which no pending request has"),
            },
            // A request from the server: relayed to its caller's client if
            // it offers it, answered without blocking this reader.
            (Some(_), Some(_)) => {
                let (to, tx) = (progress.requester(None), tx.clone());
                // At most a few at once: each is decided and recorded.
                let Ok(permit) = relaying.clone().try_acquire_owned() else {
                    let id = msg.get("id").cloned().unwrap_or_default();
                    let refused = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32603, "message": "too many requests of the server's are waiting for the client" } });
                    let _ = tx.send(refused.to_string()).await;
                    continue;
                };
                tokio::spawn(async move {
                    let _ = tx.send(relay_request(to, offers, msg, wait).await.to_string()).await;
                    drop(permit);
                });
            }
            (None, _) if line.len() > MAX_NOTICE_BYTES => tracing::debug!(upstream = %name, "dropping a notification larger than {MAX_NOTICE_BYTES} bytes"),
            (None, _) => {
                if let (Some(msg), Some((caller, to))) = (progress.relay_any(msg, None), &notices) {
                    // Dropped if the gateway is behind: the session's
                    // stream is best effort, as notifications are.
                    let _ = to.try_send(Notice { caller: caller.clone(), server: name.clone(), message: msg, lost: false });
                }
            }
        }
    }
    alive.store(false, Ordering::Relaxed);
    pending.lock().clear();
    tracing::warn!(upstream = %name, "upstream process closed its stdout; it will be restarted on the next call");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_request_reaches_the_client_only_within_what_it_declared() {
        let form_only = ClientOffers::of(&json!({ "sampling": {}, "elicitation": {} }));
        assert_eq!(form_only.capabilities(), json!({ "sampling": {}, "elicitation": { "form": {} } }));
        assert!(form_only.admit("sampling/createMessage", &json!({ "messages": [] })).is_ok());
        assert!(form_only.admit("sampling/createMessage", &json!({ "includeContext": "none" })).is_ok());
        for context in ["thisServer", "allServers"] {
            assert!(form_only.admit("sampling/createMessage", &json!({ "includeContext": context })).is_err(), "{context}");
        }
        assert!(form_only.admit("sampling/createMessage", &json!({ "tools": [] })).is_err(), "tools were not declared");
        assert!(form_only.admit("elicitation/create", &json!({ "message": "m" })).is_ok());
        assert!(form_only.admit("elicitation/create", &json!({ "mode": "url", "url": "https://h.test" })).is_err(), "url mode was not declared");
        assert!(form_only.admit("roots/list", &json!({})).is_err());
        let url = ClientOffers::of(&json!({ "elicitation": { "url": {} }, "roots": { "listChanged": true } }));
        assert!(url.admit("elicitation/create", &json!({ "mode": "url" })).is_ok() && url.admit("elicitation/create", &json!({})).is_err());
        assert!(url.admit("roots/list", &json!({})).is_ok());
        assert!(ClientOffers::default().admit("sampling/createMessage", &json!({})).is_err());
        assert!(ClientOffers::ALL.admit("anything/else", &json!({})).is_err());
    }

    fn session(agent: &str, n: usize) -> Caller {
        Caller::Session { agent: agent.into(), session: format!("s{n}"), offers: ClientOffers::default() }
    }

    #[test]
    fn an_agent_over_its_share_closes_its_own_oldest_session_not_anothers() {
        let mut slots = Slots::default();
        let t0 = Instant::now();
        let other = slots.get(&session("b", 0), t0).unwrap();
        for n in 0..MAX_SESSIONS_PER_AGENT {
            slots.get(&session("a", n), t0 + Duration::from_millis(n as u64 + 1)).unwrap();
        }
        let later = t0 + Duration::from_secs(1);
        slots.get(&session("a", 99), later).unwrap();
        assert!(!slots.by_caller.contains_key(&session("a", 0)), "a's least recently used session went");
        assert!(slots.by_caller.contains_key(&session("b", 0)), "b's stays");
        assert_eq!(slots.by_caller.keys().filter(|c| matches!(c, Caller::Session { agent, .. } if agent == "a")).count(), MAX_SESSIONS_PER_AGENT);
        drop(other);
    }

    #[test]
    fn sessions_with_a_request_in_flight_are_never_closed_to_make_room() {
        let mut slots = Slots::default();
        let now = Instant::now();
        let busy: Vec<_> = (0..MAX_SESSIONS_PER_AGENT).map(|n| slots.get(&session("a", n), now).unwrap()).collect();
        assert!(slots.get(&session("a", 99), now).is_none(), "all of a's are busy: refused, nothing closed");
        assert_eq!(busy.len(), MAX_SESSIONS_PER_AGENT);
        assert!(slots.get(&session("b", 0), now).is_some(), "another agent still gets one");
    }

    #[test]
    fn idle_sessions_close_and_the_gateways_own_stays() {
        let mut slots = Slots::default();
        let t0 = Instant::now();
        slots.get(&Caller::Gateway, t0).unwrap();
        slots.get(&session("a", 0), t0).unwrap();
        slots.get(&session("b", 0), t0 + SESSION_IDLE).unwrap();
        assert!(!slots.by_caller.contains_key(&session("a", 0)));
        assert!(slots.by_caller.contains_key(&Caller::Gateway));
    }
}

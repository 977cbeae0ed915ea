//! Agent-side client for Warden: obtains DPoP-bound tokens with
//! `private_key_jwt` (client credentials or RFC 8693 exchange) and speaks MCP
//! over streamable HTTP to the gateway, signing a fresh DPoP proof for every
//! request. Used by the demo agent and the integration tests; agents in Rust
//! can use it as is. [`relay`], [`stdio`] and [`listen`] are `warden
//! connect`, the bridge that lets any MCP host act as a registered agent.

pub mod discovery;
pub mod listen;
pub mod relay;
pub mod signin;

pub use discovery::Endpoints;
pub mod stdio;

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use warden_core::clock::now_secs;
use warden_identity::{AgentSigner, b64url, make_dpop_proof, make_dpop_proof_with_nonce, sign_jws};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("OAuth request refused ({status}): {error}: {description}")]
    Token { status: u16, error: String, description: String },
    #[error("unexpected response: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// RFC 6749 §5.1 only recommends it: a server that does not say is
    /// taken to grant five minutes (a refusal before then renews too).
    #[serde(default = "default_lifetime")]
    pub expires_in: i64,
    /// Absent when the server granted what was asked (RFC 6749 §5.1).
    #[serde(default)]
    pub scope: String,
    /// Given with a human's sign-in, to renew without the human.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    /// Whether the token is DPoP-bound (RFC 9449 §5): it is then presented
    /// with the `DPoP` scheme and a proof, otherwise as a bearer token.
    pub fn dpop_bound(&self) -> bool {
        self.token_type.eq_ignore_ascii_case("dpop")
    }
}

fn default_lifetime() -> i64 {
    300
}

/// Raw outcome of one MCP POST.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub session: Option<String>,
    /// The gateway's correlation id for this request (in its audit record).
    pub correlation_id: Option<String>,
    /// The answer (the last message of an event stream).
    pub body: Value,
    /// The messages an event-stream answer carried before it (progress
    /// notifications); empty for a plain JSON answer.
    pub events: Vec<Value>,
}

impl Reply {
    pub fn result(&self) -> Option<&Value> {
        self.body.get("result")
    }

    pub fn error_message(&self) -> Option<&str> {
        self.body.get("error").and_then(|e| e.get("message")).and_then(Value::as_str)
    }

    pub fn error_code(&self) -> Option<i64> {
        self.body.get("error").and_then(|e| e.get("code")).and_then(Value::as_i64)
    }
}

fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS random source available");
    b64url(&b)
}

/// Keeps the `DPoP-Nonce` a server sent with an answer (RFC 9449 §8.2: any
/// answer may carry the next one) in `slot`; whether it is a new one, the
/// only case in which a `use_dpop_nonce` refusal is worth a retry.
pub(crate) fn take_dpop_nonce(slot: &parking_lot::Mutex<Option<String>>, headers: &reqwest::header::HeaderMap) -> bool {
    let Some(fresh) = headers.get("dpop-nonce").and_then(|v| v.to_str().ok()) else { return false };
    let mut kept = slot.lock();
    let new = kept.as_deref() != Some(fresh);
    *kept = Some(fresh.to_string());
    new
}

/// How a request to the authorization server authenticates the client.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// A public client, or one whose credentials are in the form already.
    None,
    /// An RFC 7523 assertion by the agent's key.
    Assertion,
    /// HTTP Basic with a client id and secret (RFC 6749 §2.3.1).
    Basic(&'a str, &'a str),
}

/// One agent's connection to a Warden server.
pub struct AgentClient {
    http: reqwest::Client,
    endpoints: Endpoints,
    pub agent_id: String,
    key: Arc<AgentSigner>,
    pub token: Option<String>,
    pub session: Option<String>,
    next_id: i64,
    /// The token endpoint's last DPoP nonce (RFC 9449 §8), sent in every
    /// proof after it; servers that want none send none.
    as_nonce: parking_lot::Mutex<Option<String>>,
}

impl AgentClient {
    /// With the agent's key of any accepted type (an Ed25519 `Keypair`, or
    /// an `AgentSigner` for P-256 and RSA keys).
    pub fn new(base: &str, agent_id: &str, key: impl Into<AgentSigner>) -> Self {
        Self::with_http(base, agent_id, Arc::new(key.into()), reqwest::Client::new())
    }

    /// With an HTTP client of the caller's (a client certificate for
    /// mutual TLS, a private CA).
    pub fn with_http(base: &str, agent_id: &str, key: Arc<AgentSigner>, http: reqwest::Client) -> Self {
        Self::with_endpoints(Endpoints::warden(base), agent_id, key, http)
    }

    /// For an MCP server whose endpoints were discovered
    /// ([`discovery::discover`]): Warden's or another's.
    pub fn with_endpoints(endpoints: Endpoints, agent_id: &str, key: Arc<AgentSigner>, http: reqwest::Client) -> Self {
        Self { http, endpoints, agent_id: agent_id.into(), key, token: None, session: None, next_id: 1, as_nonce: parking_lot::Mutex::new(None) }
    }

    pub fn mcp_url(&self) -> String {
        self.endpoints.mcp.clone()
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn token_url(&self) -> String {
        self.endpoints.token.clone()
    }

    /// An RFC 7523 client assertion for the token endpoint, addressed to the
    /// authorization server's issuer (which Warden, like the drafts that
    /// update RFC 7523, takes as the audience).
    pub fn client_assertion(&self) -> String {
        let now = now_secs();
        let claims = json!({ "iss": self.agent_id, "sub": self.agent_id, "aud": self.endpoints.issuer, "iat": now, "exp": now + 60, "jti": nonce() });
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "JWT".into());
        sign_jws(&*self.key, header, &claims)
    }

    /// A DPoP proof for a request to the MCP endpoint with the current token.
    pub fn proof(&self, method: &str) -> String {
        make_dpop_proof(&*self.key, method, &self.mcp_url(), self.token.as_deref(), now_secs())
    }

    /// POSTs `form` with this agent's client assertion (RFC 7523) and a DPoP
    /// proof to an OAuth endpoint; the JSON answer (`null` when empty).
    async fn oauth_post(&self, url: &str, form: Vec<(&str, String)>) -> Result<Value, ClientError> {
        self.post(url, form, Auth::Assertion).await
    }

    /// POSTs `form` with a DPoP proof by this client's key (when the
    /// authorization server binds tokens with DPoP); the JSON answer. A
    /// `use_dpop_nonce` refusal is answered once, with the server's nonce.
    async fn post_form(&self, url: &str, form: Vec<(&str, String)>) -> Result<Value, ClientError> {
        self.post(url, form, Auth::None).await
    }

    /// POSTs `form` authenticated as `auth` (a fresh assertion for every
    /// attempt: a retry must not replay its `jti`).
    async fn post(&self, url: &str, form: Vec<(&str, String)>, auth: Auth<'_>) -> Result<Value, ClientError> {
        let mut retried = false;
        loop {
            let mut form = form.clone();
            if matches!(auth, Auth::Assertion) {
                form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
                form.push(("client_assertion", self.client_assertion()));
            }
            let body: String = form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&");
            let mut req = self.http.post(url).header("content-type", "application/x-www-form-urlencoded");
            if let Auth::Basic(id, secret) = auth {
                req = req.basic_auth(urlencode(id), Some(urlencode(secret)));
            }
            if self.endpoints.dpop {
                let nonce = self.as_nonce.lock().clone();
                req = req.header("dpop", make_dpop_proof_with_nonce(&*self.key, "POST", url, None, nonce.as_deref(), now_secs()));
            }
            let resp = req.body(body).send().await.map_err(|e| ClientError::Http { url: url.into(), message: e.to_string() })?;
            let status = resp.status().as_u16();
            let new_nonce = take_dpop_nonce(&self.as_nonce, resp.headers());
            let text = resp.text().await.map_err(|e| ClientError::Http { url: url.into(), message: e.to_string() })?;
            let v: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).map_err(|e| ClientError::Protocol(format!("{url}: {e}")))? };
            if status == 200 {
                return Ok(v);
            }
            let error = v["error"].as_str().unwrap_or("?");
            if error == "use_dpop_nonce" && self.endpoints.dpop && !retried && new_nonce {
                retried = true;
                continue;
            }
            return Err(ClientError::Token { status, error: error.into(), description: v["error_description"].as_str().unwrap_or("").into() });
        }
    }

    async fn token_request(&mut self, form: Vec<(&str, String)>) -> Result<TokenResponse, ClientError> {
        let v = self.oauth_post(&self.token_url(), form).await?;
        self.took(v)
    }

    fn took(&mut self, v: Value) -> Result<TokenResponse, ClientError> {
        let t: TokenResponse = serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.token = Some(t.access_token.clone());
        self.session = None;
        Ok(t)
    }

    /// RFC 7009: revoke one of this agent's tokens (or one derived from it).
    pub async fn revoke(&self, token: &str) -> Result<(), ClientError> {
        let url = self.endpoints.revocation.clone().ok_or_else(|| ClientError::Protocol("the authorization server has no revocation endpoint".into()))?;
        self.oauth_post(&url, vec![("token", token.to_string())]).await.map(drop)
    }

    /// A token for another resource of the same server (RFC 8707), e.g. the
    /// egress proxy (`BASE/egress`), optionally for the same `task` as the
    /// agent's other tokens (one monitored session).
    pub async fn fetch_token_for(&mut self, resource: &str, task: Option<&str>) -> Result<TokenResponse, ClientError> {
        let mut form = vec![("grant_type", "client_credentials".to_string()), ("resource", resource.to_string())];
        if let Some(t) = task {
            form.push(("task", t.into()));
        }
        self.token_request(form).await
    }

    /// RFC 7523 `jwt-bearer` grant on a workload credential (a Kubernetes
    /// service-account token, a SPIFFE JWT-SVID): no client assertion, and
    /// this client's key (the workload's own, for the session) only signs
    /// the DPoP proof the token is bound to.
    pub async fn fetch_token_on_workload(&mut self, credential: &str, scope: Option<&str>, task: Option<&str>) -> Result<TokenResponse, ClientError> {
        let mut form = vec![("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string()), ("assertion", credential.to_string())];
        if let Some(s) = scope {
            form.push(("scope", s.into()));
        }
        if let Some(t) = task {
            form.push(("task", t.into()));
        }
        let v = self.post_form(&self.token_url(), form).await?;
        self.took(v)
    }

    /// Redeems a human's authorization code (RFC 6749 §4.1.3, PKCE's
    /// verifier, RFC 8707's `resource`) as `host`, a public client or one
    /// with the secret its registration gave.
    pub async fn redeem_code(&mut self, host: &signin::Host, code: &str, verifier: &str) -> Result<TokenResponse, ClientError> {
        let form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", host.redirect_uri.clone()),
            ("code_verifier", verifier.to_string()),
            ("resource", self.endpoints.resource.clone()),
        ];
        self.host_token_request(host, form).await
    }

    /// Renews a human's sign-in without the human (RFC 6749 §6).
    pub async fn refresh(&mut self, host: &signin::Host, refresh_token: &str) -> Result<TokenResponse, ClientError> {
        let form =
            vec![("grant_type", "refresh_token".to_string()), ("refresh_token", refresh_token.to_string()), ("resource", self.endpoints.resource.clone())];
        self.host_token_request(host, form).await
    }

    async fn host_token_request(&mut self, host: &signin::Host, mut form: Vec<(&str, String)>) -> Result<TokenResponse, ClientError> {
        let auth = match &host.secret {
            Some(secret) if host.basic => Auth::Basic(&host.client_id, secret),
            Some(secret) => {
                form.push(("client_secret", secret.clone()));
                Auth::None
            }
            None => Auth::None,
        };
        if !matches!(auth, Auth::Basic(..)) {
            form.push(("client_id", host.client_id.clone()));
        }
        let v = self.post(&self.token_url(), form, auth).await?;
        self.took(v)
    }

    /// `client_credentials` grant authenticated by a client secret (SEP-1046's
    /// `client_secret_basic`, or in the form where the server lists only
    /// `client_secret_post`), for MCP servers whose authorization server
    /// registers machine clients so; Warden's own takes keys only.
    pub async fn fetch_token_with_secret(&mut self, secret: &str, scope: Option<&str>) -> Result<TokenResponse, ClientError> {
        let mut form = vec![("grant_type", "client_credentials".to_string()), ("resource", self.endpoints.resource.clone())];
        if let Some(s) = scope {
            form.push(("scope", s.into()));
        }
        let client = signin::Host {
            client_id: self.agent_id.clone(),
            secret: Some(secret.into()),
            basic: self.endpoints.interactive.secret_basic,
            redirect_uri: String::new(),
        };
        self.host_token_request(&client, form).await
    }

    /// `client_credentials` grant for `scope` (space-separated `SERVER/TOOL`s).
    pub async fn fetch_token(&mut self, scope: Option<&str>, task: Option<&str>) -> Result<TokenResponse, ClientError> {
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if let Some(s) = scope {
            form.push(("scope", s.into()));
        }
        if let Some(t) = task {
            form.push(("task", t.into()));
        }
        self.token_request(form).await
    }

    /// RFC 8693 exchange of a parent's token for this (sub-)agent, for the
    /// MCP endpoint or another `resource` of the same server (RFC 8707).
    pub async fn exchange(&mut self, subject_token: &str, scope: Option<&str>, resource: Option<&str>) -> Result<TokenResponse, ClientError> {
        let mut form = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange".to_string()),
            ("subject_token", subject_token.to_string()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token".to_string()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s.into()));
        }
        if let Some(r) = resource {
            form.push(("resource", r.into()));
        }
        self.token_request(form).await
    }

    /// POST raw bytes to the MCP endpoint with explicit credentials.
    pub async fn post_raw(&self, body: Vec<u8>, authorization: Option<String>, dpop: Option<String>) -> Result<Reply, ClientError> {
        let url = self.mcp_url();
        let mut req = self.http.post(&url).header("content-type", "application/json").header("accept", "application/json, text/event-stream");
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        if let Some(d) = dpop {
            req = req.header("dpop", d);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.body(body).send().await.map_err(|e| ClientError::Http { url: url.clone(), message: e.to_string() })?;
        let status = resp.status().as_u16();
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let www_authenticate = header("www-authenticate");
        let session = header("mcp-session-id");
        let correlation_id = header("x-warden-correlation-id");
        let streamed = header("content-type").is_some_and(|c| c.starts_with("text/event-stream"));
        let bytes = resp.bytes().await.map_err(|e| ClientError::Http { url, message: e.to_string() })?;
        let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).map_err(|e| ClientError::Protocol(e.to_string()));
        let (body, events) = if streamed {
            let mut decoder = warden_core::sse::Decoder::new(usize::MAX);
            let mut events = decoder
                .push(&bytes)
                .map_err(|_| ClientError::Protocol("event too large".into()))?
                .iter()
                .map(|d| parse(d.as_bytes()))
                .collect::<Result<Vec<_>, _>>()?;
            let body = events.pop().ok_or_else(|| ClientError::Protocol("an event stream without an answer".into()))?;
            (body, events)
        } else if bytes.is_empty() {
            (Value::Null, Vec::new())
        } else {
            (parse(&bytes)?, Vec::new())
        };
        Ok(Reply { status, www_authenticate, session, correlation_id, body, events })
    }

    /// Send a JSON-RPC request with the current token and a fresh proof.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let auth = self.token.as_ref().map(|t| format!("DPoP {t}"));
        let reply = self.post_raw(msg.to_string().into_bytes(), auth, Some(self.proof("POST"))).await?;
        if method == "initialize" {
            self.session = reply.session.clone();
        }
        Ok(reply)
    }

    /// `initialize` + `notifications/initialized`.
    pub async fn initialize(&mut self) -> Result<Reply, ClientError> {
        self.session = None;
        let r = self
            .request(
                "initialize",
                json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "warden-client", "version": env!("CARGO_PKG_VERSION") } }),
            )
            .await?;
        if r.status == 200 {
            let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
            let auth = self.token.as_ref().map(|t| format!("DPoP {t}"));
            self.post_raw(note.to_string().into_bytes(), auth, Some(self.proof("POST"))).await?;
        }
        Ok(r)
    }

    /// Names of the tools the gateway shows this agent.
    pub async fn list_tools(&mut self) -> Result<Vec<String>, ClientError> {
        let r = self.request("tools/list", json!({})).await?;
        let tools =
            r.result().and_then(|x| x.get("tools")).and_then(Value::as_array).ok_or_else(|| ClientError::Protocol(format!("tools/list failed: {}", r.body)))?;
        Ok(tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string)).collect())
    }

    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> Result<Reply, ClientError> {
        self.request("tools/call", json!({ "name": name, "arguments": arguments })).await
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

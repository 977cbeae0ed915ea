//! What `warden connect` does for every message, whichever side the host
//! speaks on: it finds the server's authorization server as the MCP
//! specification describes ([`crate::discovery`]), holds the agent's key,
//! gets task tokens with `private_key_jwt` (or on a workload credential, or
//! by signing the human in, [`crate::signin`]), renews them before they
//! expire (and once more when the server says a token is no longer valid),
//! and signs a DPoP proof for each request when the token is DPoP-bound,
//! with the server's nonce when it asks for one (RFC 9449 §9), so the host
//! needs no OAuth support and never sees a credential. The fronts
//! ([`crate::stdio`], [`crate::listen`]) only move messages.

use crate::discovery::{auth_param, discover, mcp_endpoint};
use crate::signin::{self, SignIn, SignInError};
use crate::{AgentClient, ClientError, TokenResponse};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use std::sync::Arc;
use warden_core::clock::now_secs;
use warden_core::jsonrpc_codes;
use warden_identity::{AgentSigner, JwsSigner, make_dpop_proof_with_nonce};

/// Largest message either side may send through the bridge (a JSON body, an
/// SSE event or a stdio line); the gateway's own bound is the same order.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const TOKEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Who the bridge acts as, and for what.
#[derive(Debug)]
pub struct Identity {
    /// The gateway's base URL (its `/mcp` is meant), or the URL of any MCP
    /// endpoint whose authorization server takes `private_key_jwt` clients.
    pub gateway: String,
    pub agent: String,
    /// The agent's private key (any accepted type).
    pub key: Arc<AgentSigner>,
    /// Space-separated `SERVER/TOOL`s to ask for; `None`: every tool the agent may use.
    pub scope: Option<String>,
    /// The task every token is for: one monitored session across renewals.
    pub task: String,
    pub grant: Grant,
    /// The authorization server the user expects: anything the server names
    /// otherwise is refused before a credential is sent (what a client
    /// secret, replayable wherever it goes, needs).
    pub issuer: Option<String>,
}

/// How the bridge gets its tokens.
#[derive(Debug)]
pub enum Grant {
    /// Client credentials with a `private_key_jwt` assertion by `key`.
    Agent,
    /// Client credentials with a client secret, for other servers' machine
    /// clients (Warden's agents have keys); `key` is the session's.
    Secret(Secret),
    /// A workload credential file (a projected service-account token, a
    /// JWT-SVID) re-read at every renewal, as its platform rotates it;
    /// `key` is then the bridge's own for the session, not a registered one.
    Workload(std::path::PathBuf),
    /// The human at the keyboard signs in; `key` is the session's.
    SignIn(SignIn),
}

/// A client secret; never printed.
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a message could not be relayed. The text is meant for the person at
/// the host: it says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot find where to get tokens for {gateway}: {message}. Check --gateway (Warden's public_url, or the MCP endpoint's URL)")]
    Discovery { gateway: String, message: String },
    #[error(
        "Warden refused agent {agent}'s credentials: {reason}. The bridge cannot act for this agent until an operator restores it (see `warden agent list` and `warden kill list` on the server)"
    )]
    Refused { agent: String, reason: String },
    #[error("the Warden gateway at {gateway} cannot be reached: {message}. Check --gateway and that the server is running")]
    Unreachable { gateway: String, message: String },
    #[error("the workload credential {} cannot be read: {message}. Check --workload-token (the projected token's path)", path.display())]
    Credential { path: std::path::PathBuf, message: String },
    #[error("the sign-in did not complete: {0}. Sign in again: the next request opens a new sign-in")]
    SignIn(#[from] SignInError),
}

impl RelayError {
    /// The JSON-RPC error answering request `id` with this error.
    pub fn reply(&self, id: &Value) -> Value {
        let code = match self {
            Self::Refused { .. } | Self::Credential { .. } | Self::SignIn(_) => jsonrpc_codes::UNAUTHENTICATED,
            Self::Unreachable { .. } | Self::Discovery { .. } => jsonrpc_codes::INTERNAL,
        };
        error_reply(id, code, &self.to_string())
    }
}

/// The id of `msg` when it is a request: what an error must answer
/// (responses and notifications are answered by nothing).
pub fn request_id(msg: &Value) -> Option<&Value> {
    msg.get("method").and(msg.get("id"))
}

/// A JSON-RPC 2.0 error response.
pub fn error_reply(id: &Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

#[derive(Clone)]
struct Credentials {
    token: String,
    /// Presented with the `DPoP` scheme and a proof (else as a bearer token).
    dpop: bool,
    /// A signed-in human's, to renew without them.
    refresh: Option<String>,
    /// What the server says it granted.
    scope: String,
    /// When to get the next token: three quarters into this one's life, so
    /// a renewal that has to wait for a slow gateway still lands in time.
    renew_at: i64,
    /// When it ends: until then a failed renewal leaves it in use.
    expires_at: i64,
}

struct Tokens {
    /// Made once the authorization server is discovered.
    client: Option<AgentClient>,
    /// The host as the authorization server knows it, after a first sign-in.
    host: Option<signin::Host>,
    /// What a sign-in asks for: the user's scope or the server's, widened
    /// by step-up challenges (the union, as SEP-2350 has clients keep it).
    scope: Option<String>,
    current: Option<Credentials>,
    /// When the last sign-in failed, and why.
    failed_sign_in: Option<(i64, String)>,
}

/// How long after a failed sign-in requests get its error rather than a new
/// prompt each.
const SIGN_IN_BACKOFF_SECS: i64 = 30;

/// Relays requests to the gateway's MCP endpoint with the agent's
/// credentials. Shared by every message in flight.
pub struct Relay {
    id: Identity,
    http: reqwest::Client,
    oauth: reqwest::Client,
    mcp_url: String,
    /// One renewal at a time: requests that find the token stale wait for it.
    tokens: tokio::sync::Mutex<Tokens>,
    /// The MCP server's last DPoP nonce (RFC 9449 §9).
    rs_nonce: parking_lot::Mutex<Option<String>>,
}

impl Relay {
    pub fn new(id: Identity) -> Self {
        let gateway = id.gateway.trim_end_matches('/').to_string();
        // A gateway that stops answering must not hold the bridge: discovery
        // and token requests are bounded whole (every request waits on a
        // renewal that is due), MCP requests in connecting only (answers may
        // stream). Metadata is never followed through redirects.
        let oauth = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOKEN_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let mcp = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().unwrap_or_default();
        let mcp_url = mcp_endpoint(&gateway);
        Self {
            id: Identity { gateway, ..id },
            http: mcp,
            oauth,
            mcp_url,
            tokens: tokio::sync::Mutex::new(Tokens { client: None, host: None, scope: None, current: None, failed_sign_in: None }),
            rs_nonce: parking_lot::Mutex::new(None),
        }
    }

    pub fn agent(&self) -> &str {
        &self.id.agent
    }

    pub fn gateway(&self) -> &str {
        &self.id.gateway
    }

    /// A token good for now: the current one, or a new one when it is due
    /// for renewal or is `stale` (the one the gateway just refused).
    pub async fn token(&self, stale: Option<&str>) -> Result<String, RelayError> {
        self.credentials(stale).await.map(|c| c.token)
    }

    async fn credentials(&self, stale: Option<&str>) -> Result<Credentials, RelayError> {
        let mut t = self.tokens.lock().await;
        self.renewed(&mut t, stale, false).await
    }

    /// After the server refused `stale` for too narrow a scope (a step-up
    /// challenge for `scope`): a sign-in for the union of what was asked
    /// before and `scope` (SEP-2350), or `None` when that asks for nothing
    /// new: the server would refuse again, so the host gets the refusal and
    /// the human no new prompt. The current credentials stay until the new
    /// sign-in succeeds.
    async fn stepped_up(&self, stale: &str, scope: &str) -> Option<Result<Credentials, RelayError>> {
        let mut t = self.tokens.lock().await;
        if let Some(c) = t.current.as_ref().filter(|c| c.token != stale) {
            // Another request stepped up meanwhile.
            return Some(Ok(c.clone()));
        }
        let mut wanted: Vec<String> = Vec::new();
        let mut add = |from: &str| {
            let before = wanted.len();
            for s in from.split(' ').filter(|s| !s.is_empty()) {
                if !wanted.iter().any(|w| w == s) {
                    wanted.push(s.to_string());
                }
            }
            wanted.len() > before
        };
        // What was asked for and what was granted (a server's default
        // grant included), then the challenge's.
        add(t.scope.as_deref().unwrap_or(""));
        add(t.current.as_ref().map_or("", |c| c.scope.as_str()));
        if !add(scope) {
            return None;
        }
        t.scope = Some(wanted.join(" "));
        Some(self.renewed(&mut t, Some(stale), true).await)
    }

    /// The current credentials, or new ones when they are due, `stale` (the
    /// server refused them) or, with `sign_in_again`, too narrow.
    async fn renewed(&self, t: &mut Tokens, stale: Option<&str>, sign_in_again: bool) -> Result<Credentials, RelayError> {
        let now = now_secs();
        if let Some(c) = &t.current
            && c.renew_at > now
            && Some(c.token.as_str()) != stale
            && !sign_in_again
        {
            return Ok(c.clone());
        }
        match self.fresh(t, stale, sign_in_again).await {
            Ok(c) => Ok(c),
            // A token still good (not refused, not too narrow) stays in use
            // while renewing it fails: the next request tries again.
            Err(e) if stale.is_none() && !sign_in_again && t.current.as_ref().is_some_and(|c| c.expires_at > now_secs() + 1) => {
                tracing::warn!(error = %e, "warden connect: renewing the token failed; using it until it expires");
                Ok(t.current.clone().expect("checked above"))
            }
            Err(e) => Err(e),
        }
    }

    async fn fresh(&self, t: &mut Tokens, stale: Option<&str>, sign_in_again: bool) -> Result<Credentials, RelayError> {
        self.discovered(t, stale.is_some()).await?;
        let previous = t.current.as_ref().and_then(|c| c.refresh.clone());
        let Tokens { client, host, scope, failed_sign_in, .. } = &mut *t;
        let client = client.as_mut().expect("discovered above");
        let granted = match &self.id.grant {
            Grant::Workload(path) => {
                let credential = std::fs::read_to_string(path).map_err(|e| RelayError::Credential { path: path.clone(), message: e.to_string() })?;
                client.fetch_token_on_workload(credential.trim(), self.id.scope.as_deref(), Some(&self.id.task)).await.map_err(|e| self.refusal(e))
            }
            Grant::Agent => client.fetch_token(self.id.scope.as_deref(), Some(&self.id.task)).await.map_err(|e| self.refusal(e)),
            Grant::Secret(secret) => client.fetch_token_with_secret(&secret.0, self.id.scope.as_deref()).await.map_err(|e| self.refusal(e)),
            Grant::SignIn(how) => {
                let renewed = match (previous.as_deref().filter(|_| !sign_in_again), host.as_ref()) {
                    (Some(r), Some(h)) => match client.refresh(h, r).await {
                        // A server that does not rotate refresh tokens sends none: the old one stays good.
                        Ok(t) => Some(TokenResponse { refresh_token: t.refresh_token.clone().or(previous.clone()), ..t }),
                        // Spent, revoked or expired: the human signs in again.
                        Err(ClientError::Token { error, description, .. }) => {
                            tracing::info!(error = %signin::printable(&error), description = %signin::printable(&description), "warden connect: the sign-in cannot be renewed; signing in again");
                            None
                        }
                        Err(e) => return Err(self.refusal(e)),
                    },
                    _ => None,
                };
                match (renewed, failed_sign_in.as_ref()) {
                    (Some(t), _) => Ok(t),
                    // Requests queued behind a failed sign-in do not each open one.
                    (None, Some((at, message))) if now_secs() - at < SIGN_IN_BACKOFF_SECS => {
                        Err(RelayError::SignIn(SignInError::Recent { message: message.clone(), wait: SIGN_IN_BACKOFF_SECS - (now_secs() - at) }))
                    }
                    (None, _) => {
                        let signed_in = self.sign_in(client, host, how, scope.as_deref()).await;
                        if let Err(e) = &signed_in {
                            let why = match e {
                                RelayError::SignIn(inner) => inner.to_string(),
                                e => e.to_string(),
                            };
                            *failed_sign_in = Some((now_secs(), why));
                        }
                        signed_in
                    }
                }
            }
        };
        let granted: TokenResponse = granted?;
        t.failed_sign_in = None;
        tracing::info!(agent = %self.id.agent, expires_in = granted.expires_in, "warden connect: got a task token");
        let now = now_secs();
        let c = Credentials {
            dpop: granted.dpop_bound(),
            token: granted.access_token,
            refresh: granted.refresh_token,
            scope: granted.scope,
            renew_at: now + (granted.expires_in * 3 / 4).max(1),
            expires_at: now + granted.expires_in,
        };
        t.current = Some(c.clone());
        Ok(c)
    }

    /// Finds the authorization server: first, and `again` whenever the
    /// server refuses a token, since it may have moved to another one
    /// (SEP-2352). A failure to look again keeps the one known.
    async fn discovered(&self, t: &mut Tokens, again: bool) -> Result<(), RelayError> {
        if t.client.is_some() && !again {
            return Ok(());
        }
        let endpoints = match discover(&self.oauth, &self.mcp_url, self.id.key.alg().as_str()).await {
            Ok(e) => e,
            Err(e) if t.client.is_some() => {
                tracing::warn!(error = %e, "warden connect: could not look again for the authorization server; keeping the one known");
                return Ok(());
            }
            Err(ClientError::Http { message, .. }) => return Err(RelayError::Unreachable { gateway: self.id.gateway.clone(), message }),
            Err(e) => return Err(RelayError::Discovery { gateway: self.id.gateway.clone(), message: e.to_string() }),
        };
        if let Some(expected) = self.id.issuer.as_deref().filter(|i| *i != endpoints.issuer) {
            return Err(RelayError::Discovery {
                gateway: self.id.gateway.clone(),
                message: format!("the server names authorization server {}, not the --issuer {expected} given; nothing was sent to it", endpoints.issuer),
            });
        }
        if let Some(known) = &t.client {
            let from = &known.endpoints().issuer;
            if *from == endpoints.issuer {
                return Ok(());
            }
            if !self.may_move() {
                tracing::warn!(%from, to = %endpoints.issuer, "warden connect: the server names another authorization server now; this identity was made for the first, so the bridge stays with it");
                return Ok(());
            }
            tracing::info!(%from, to = %endpoints.issuer, "warden connect: the server names another authorization server now; signing in there");
            (t.host, t.current) = (None, None);
        }
        if !endpoints.dpop {
            tracing::warn!(issuer = %endpoints.issuer, "warden connect: the authorization server does not bind tokens with DPoP for this key's algorithm; its tokens are bearer tokens");
        }
        t.scope = self.id.scope.clone().or(endpoints.interactive.scope.clone());
        t.client = Some(AgentClient::with_endpoints(endpoints, &self.id.agent, self.id.key.clone(), self.oauth.clone()));
        Ok(())
    }

    /// Whether the bridge may follow the resource to another authorization
    /// server: only a sign-in whose host the new server can know by its own
    /// means (a metadata document, a registration). A registered agent, a
    /// workload credential (a bearer assertion the new server could replay)
    /// and a host's registered id and secret belong to the server they were
    /// made for.
    fn may_move(&self) -> bool {
        matches!(&self.id.grant, Grant::SignIn(s) if s.client_secret.is_none() && s.client_id.as_deref().is_none_or(|id| id.starts_with("https://")))
    }

    /// A human's sign-in, from the browser to the redeemed code. The host's
    /// client id (and its loopback port) is kept for the next one.
    async fn sign_in(&self, client: &mut AgentClient, host: &mut Option<signin::Host>, how: &SignIn, scope: Option<&str>) -> Result<TokenResponse, RelayError> {
        let failed = RelayError::SignIn;
        let endpoints = client.endpoints().clone();
        let port = host.as_ref().and_then(|h| h.redirect_uri.rsplit_once(':')).and_then(|(_, p)| p.split('/').next()?.parse().ok()).unwrap_or(0);
        let listener = signin::listener(port).await.map_err(failed)?;
        let redirect = signin::redirect_uri(&listener).map_err(failed)?;
        if host.as_ref().is_none_or(|h| h.redirect_uri != redirect) {
            *host = Some(signin::host_for(&self.oauth, &endpoints, how, &redirect).await.map_err(failed)?);
        }
        let h = host.as_ref().expect("set above");
        let pkce = signin::Pkce::new();
        let state = signin::new_state();
        let url = signin::authorize_url(&endpoints, h, &pkce.challenge, &state, scope).map_err(failed)?;
        let code = signin::await_code(listener, &endpoints, &url, &state, how.browser.as_deref()).await.map_err(failed)?;
        client.redeem_code(h, &code, &pkce.verifier).await.map_err(|e| match e {
            ClientError::Token { error, description, .. } => {
                RelayError::SignIn(SignInError::Refused { error: signin::printable(&error), description: signin::printable(&description) })
            }
            e => self.refusal(e),
        })
    }

    fn refusal(&self, e: ClientError) -> RelayError {
        match e {
            ClientError::Token { error, description, .. } => {
                let (error, description) = (signin::printable(&error), signin::printable(&description));
                RelayError::Refused { agent: self.id.agent.clone(), reason: if description.is_empty() { error } else { format!("{error}: {description}") } }
            }
            ClientError::Http { message, .. } | ClientError::Protocol(message) => RelayError::Unreachable { gateway: self.id.gateway.clone(), message },
        }
    }

    /// Send one request to the MCP endpoint with `headers` (the host's MCP
    /// headers, passed on) and the agent's credentials. When the gateway
    /// answers 401 `invalid_token` (expired or revoked by its holder), the
    /// request is sent once more with a new token; any other answer is the
    /// caller's to relay.
    pub async fn send(&self, method: Method, headers: HeaderMap, body: Vec<u8>) -> Result<reqwest::Response, RelayError> {
        let mut c = self.credentials(None).await?;
        let (mut renewed, mut nonce_retried, mut stepped_up) = (false, false, false);
        loop {
            let mut req = self.http.request(method.clone(), &self.mcp_url).headers(headers.clone());
            req = if c.dpop {
                let nonce = self.rs_nonce.lock().clone();
                let proof = make_dpop_proof_with_nonce(&*self.id.key, method.as_str(), &self.mcp_url, Some(&c.token), nonce.as_deref(), now_secs());
                req.header(AUTHORIZATION, format!("DPoP {}", c.token)).header("dpop", proof)
            } else {
                req.header(AUTHORIZATION, format!("Bearer {}", c.token))
            };
            let resp = req.body(body.clone()).send().await.map_err(|e| RelayError::Unreachable { gateway: self.id.gateway.clone(), message: e.to_string() })?;
            let new_nonce = crate::take_dpop_nonce(&self.rs_nonce, resp.headers());
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
                match challenge_error(resp.headers()).as_deref() {
                    Some("invalid_token") if !renewed => {
                        renewed = true;
                        c = self.credentials(Some(&c.token)).await?;
                        continue;
                    }
                    Some("use_dpop_nonce") if c.dpop && !nonce_retried && new_nonce => {
                        nonce_retried = true;
                        continue;
                    }
                    _ => {}
                }
            }
            // A step-up challenge (RFC 6750 §3.1): a signed-in human can be
            // asked for the wider scope, once per request.
            if resp.status() == reqwest::StatusCode::FORBIDDEN
                && matches!(self.id.grant, Grant::SignIn(_))
                && !stepped_up
                && challenge_error(resp.headers()).as_deref() == Some("insufficient_scope")
                && let Some(scope) = resp.headers().get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| auth_param(v, "scope"))
            {
                stepped_up = true;
                if let Some(wider) = self.stepped_up(&c.token, &scope).await {
                    c = wider?;
                    continue;
                }
            }
            return Ok(resp);
        }
    }
}

/// The `error` of a 401's challenge: `invalid_token` (the token, not the
/// proof or the request, was refused: a new token can fix it) or
/// `use_dpop_nonce` (a proof with the server's nonce can).
fn challenge_error(headers: &HeaderMap) -> Option<String> {
    headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| auth_param(v, "error"))
}

/// The `error_description` of a `WWW-Authenticate` challenge, if any.
pub fn challenge_description(headers: &HeaderMap) -> Option<String> {
    auth_param(headers.get(WWW_AUTHENTICATE)?.to_str().ok()?, "error_description")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn the_challenge_error_decides_what_a_retry_can_fix() {
        let mut h = HeaderMap::new();
        assert_eq!(challenge_error(&h), None);
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer resource_metadata="https://x/m""#));
        h.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP error="invalid_dpop_proof", error_description="DPoP proof replayed""#));
        assert_eq!(challenge_error(&h).as_deref(), Some("invalid_dpop_proof"));
        let mut h = HeaderMap::new();
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP error="use_dpop_nonce", resource_metadata="https://x/m""#));
        assert_eq!(challenge_error(&h).as_deref(), Some("use_dpop_nonce"));
    }

    #[test]
    fn a_challenge_description_is_read_up_to_its_quote() {
        let mut h = HeaderMap::new();
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP realm="x", error="invalid_token", error_description="token has expired", algs="EdDSA""#));
        assert_eq!(challenge_description(&h).as_deref(), Some("token has expired"));
        assert_eq!(challenge_description(&HeaderMap::new()), None);
    }

    #[test]
    fn a_refusal_names_the_agent_and_what_to_do_and_answers_the_request() {
        let e = RelayError::Refused { agent: "a1".into(), reason: "invalid_client: agent a1 is suspended".into() };
        let r = e.reply(&json!(7));
        assert_eq!(r["id"], 7);
        assert_eq!(r["error"]["code"], jsonrpc_codes::UNAUTHENTICATED);
        let m = r["error"]["message"].as_str().unwrap();
        assert!(m.contains("agent a1 is suspended") && m.contains("operator"), "{m}");
    }
}

//! What `warden connect` does for every message, whichever side the host
//! speaks on: it finds the server's authorization server as the MCP
//! specification describes ([`crate::discovery`]), holds the agent's key,
//! gets task tokens with `private_key_jwt` (or on a workload credential),
//! renews them before they expire (and once more when the server says a
//! token is no longer valid), and signs a DPoP proof for each request when
//! the token is DPoP-bound, so the host needs no OAuth support and never
//! sees a credential. The fronts ([`crate::stdio`], [`crate::listen`]) only
//! move messages.

use crate::discovery::{discover, mcp_endpoint};
use crate::{AgentClient, ClientError, TokenResponse};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use std::sync::Arc;
use warden_core::clock::now_secs;
use warden_core::jsonrpc_codes;
use warden_identity::{AgentSigner, JwsSigner, make_dpop_proof};

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
    /// A workload credential file (a projected service-account token, a
    /// JWT-SVID) re-read at every renewal, as its platform rotates it;
    /// `key` is then the bridge's own for the session, not a registered one.
    pub workload_token: Option<std::path::PathBuf>,
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
}

impl RelayError {
    /// The JSON-RPC error answering request `id` with this error.
    pub fn reply(&self, id: &Value) -> Value {
        let code = match self {
            Self::Refused { .. } | Self::Credential { .. } => jsonrpc_codes::UNAUTHENTICATED,
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
    /// When to get the next token: three quarters into this one's life, so
    /// a renewal that has to wait for a slow gateway still lands in time.
    renew_at: i64,
}

struct Tokens {
    /// Made once the authorization server is discovered.
    client: Option<AgentClient>,
    current: Option<Credentials>,
}

/// Relays requests to the gateway's MCP endpoint with the agent's
/// credentials. Shared by every message in flight.
pub struct Relay {
    id: Identity,
    http: reqwest::Client,
    oauth: reqwest::Client,
    mcp_url: String,
    /// One renewal at a time: requests that find the token stale wait for it.
    tokens: tokio::sync::Mutex<Tokens>,
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
        Self { id: Identity { gateway, ..id }, http: mcp, oauth, mcp_url, tokens: tokio::sync::Mutex::new(Tokens { client: None, current: None }) }
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
        let now = now_secs();
        if let Some(c) = &t.current
            && c.renew_at > now
            && Some(c.token.as_str()) != stale
        {
            return Ok(c.clone());
        }
        if t.client.is_none() {
            let endpoints = discover(&self.oauth, &self.mcp_url, self.id.key.alg().as_str()).await.map_err(|e| match e {
                ClientError::Http { message, .. } => RelayError::Unreachable { gateway: self.id.gateway.clone(), message },
                e => RelayError::Discovery { gateway: self.id.gateway.clone(), message: e.to_string() },
            })?;
            if !endpoints.dpop {
                tracing::warn!(issuer = %endpoints.issuer, "warden connect: the authorization server does not bind tokens with DPoP for this key's algorithm; its tokens are bearer tokens");
            }
            t.client = Some(AgentClient::with_endpoints(endpoints, &self.id.agent, self.id.key.clone(), self.oauth.clone()));
        }
        let client = t.client.as_mut().expect("discovered above");
        let granted = match &self.id.workload_token {
            Some(path) => {
                let credential = std::fs::read_to_string(path).map_err(|e| RelayError::Credential { path: path.clone(), message: e.to_string() })?;
                client.fetch_token_on_workload(credential.trim(), self.id.scope.as_deref(), Some(&self.id.task)).await
            }
            None => client.fetch_token(self.id.scope.as_deref(), Some(&self.id.task)).await,
        };
        let granted: TokenResponse = granted.map_err(|e| self.refusal(e))?;
        tracing::info!(agent = %self.id.agent, expires_in = granted.expires_in, "warden connect: got a task token");
        let renew_at = now + (granted.expires_in * 3 / 4).max(1);
        let c = Credentials { dpop: granted.dpop_bound(), token: granted.access_token, renew_at };
        t.current = Some(c.clone());
        Ok(c)
    }

    fn refusal(&self, e: ClientError) -> RelayError {
        match e {
            ClientError::Token { error, description, .. } => {
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
        let mut renewed = false;
        loop {
            let mut req = self.http.request(method.clone(), &self.mcp_url).headers(headers.clone());
            req = if c.dpop {
                let proof = make_dpop_proof(&*self.id.key, method.as_str(), &self.mcp_url, Some(&c.token), now_secs());
                req.header(AUTHORIZATION, format!("DPoP {}", c.token)).header("dpop", proof)
            } else {
                req.header(AUTHORIZATION, format!("Bearer {}", c.token))
            };
            let resp = req.body(body.clone()).send().await.map_err(|e| RelayError::Unreachable { gateway: self.id.gateway.clone(), message: e.to_string() })?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !renewed && invalid_token(resp.headers()) {
                renewed = true;
                c = self.credentials(Some(&c.token)).await?;
                continue;
            }
            return Ok(resp);
        }
    }
}

/// Whether a 401's challenge says the token (not the proof or the request)
/// was refused: the one case a new token can fix.
fn invalid_token(headers: &HeaderMap) -> bool {
    headers.get_all(WWW_AUTHENTICATE).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("error=\"invalid_token\"")))
}

/// The `error_description` of a `WWW-Authenticate` challenge, if any.
pub fn challenge_description(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let start = v.find("error_description=\"")? + "error_description=\"".len();
    let rest = &v[start..];
    Some(rest[..rest.find('"').unwrap_or(rest.len())].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn only_an_invalid_token_challenge_asks_for_a_new_token() {
        let mut h = HeaderMap::new();
        assert!(!invalid_token(&h));
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP error="invalid_dpop_proof", error_description="DPoP proof replayed""#));
        assert!(!invalid_token(&h));
        h.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"DPoP error="invalid_token", error_description="token has expired""#));
        assert!(invalid_token(&h));
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

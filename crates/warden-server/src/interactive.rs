//! Interactive authorization for MCP hosts acting for a human (`[interactive]`):
//! the OAuth 2.1 authorization code grant with PKCE, as the MCP
//! authorization specification asks of an authorization server.
//!
//! 1. The host sends the human's browser to `/oauth/authorize` with its
//!    `client_id`, the HTTPS URL of its Client ID Metadata Document (CIMD).
//!    Warden fetches the document (no redirects, a size cap, addresses
//!    that resolve to private ranges refused unless an operator allowed the
//!    host; cached five minutes), requires the `redirect_uri` to be one it
//!    lists, and requires the host to be one an operator mapped to a
//!    registered agent (`[[interactive.host]]`).
//! 2. Warden sends the browser on to the enterprise IdP (OpenID Connect
//!    authorization code with PKCE and a nonce); the pending request
//!    travels as the sealed `state`, and a cookie ties it to this browser
//!    (login CSRF).
//! 3. `/oauth/callback` redeems the IdP's code, verifies the ID token
//!    (signature by the IdP's JWKS, issuer, audience, nonce, expiry; RFC
//!    9207 `iss` when the IdP sends it), checks that this human may use this
//!    host, and redirects to the host with a sealed, one-minute code and
//!    `iss` (RFC 9207).
//! 4. The host redeems the code at the token endpoint with its PKCE
//!    verifier ([`OAuth::authorization_code`]). The token is the agent's,
//!    with the human as `sub`; a replayed code is refused and the token
//!    first issued for it revoked (RFC 6749 §4.1.2).
//!
//! Codes and state are sealed rather than stored, so every replica can
//! redeem them; their one-time use goes through the store's used-id table.

use crate::config::InteractiveConfig;
use crate::oauth::{OAuth, OAuthError, err, random_id, unavailable};
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::clock::now_secs;
use warden_core::{Agent, AgentStatus, AuditEvent, EventKind, Operator, Role, TokenBinding, untrusted_text};
use warden_gateway::PeerCertificate;
use warden_identity::{
    AccessClaims, ClientMetadata, MAX_METADATA_BYTES, Sealer, TrustedIssuer, is_s256_challenge, pkce_challenge, pkce_matches, verify_id_token,
};
use warden_store::RevocationKind;

/// How long a human has to sign in at the IdP.
const SIGN_IN_SECS: i64 = 600;
/// How long an authorization code lives (OAuth 2.1 recommends minutes at most).
const CODE_SECS: i64 = 60;
/// How long a fetched metadata document or IdP discovery is reused.
const CACHE_FOR: Duration = Duration::from_secs(300);
/// A signature no cached IdP key verifies refetches the JWKS, at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The host's `state` travels inside the IdP's: bounded, so URLs stay short.
const MAX_HOST_STATE: usize = 512;
/// The task of every token of one sign-in is this and the code's id.
const FAMILY_PREFIX: &str = "sign-in-";
const STATE: &str = "sign-in state";
const CODE: &str = "authorization code";
const REFRESH: &str = "refresh token";
const CONSENT: &str = "consent";

/// `[interactive]`, loaded.
pub struct Interactive {
    cfg: InteractiveConfig,
    /// Host `client_id` to the agent's SPIFFE id.
    agents: HashMap<String, String>,
    idp_secret: String,
    sealer: Sealer,
    extra_roots: Vec<reqwest::Certificate>,
    /// For the IdP: no redirects followed, bounded time.
    http: reqwest::Client,
    idp: tokio::sync::Mutex<IdpCache>,
    metadata: Mutex<HashMap<String, (ClientMetadata, Instant)>>,
}

/// The IdP as last read, and when reading it last failed: during an outage
/// sign-ins fail at once (or use the copy they have) instead of queueing
/// behind one slow fetch after another.
struct IdpCache {
    idp: Option<Idp>,
    failed: Option<(Instant, String)>,
}

/// How long after a failed read of the IdP it is not read again.
const IDP_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long past its refresh a copy of the IdP serves while the IdP is down.
const STALE_FOR: Duration = Duration::from_secs(3600);

/// The IdP's discovery document and keys.
struct Idp {
    authorization_endpoint: String,
    token_endpoint: String,
    /// Where claims the ID token leaves out are read (OIDC Core §5.3).
    userinfo_endpoint: Option<String>,
    /// It sends `iss` with authorization responses (RFC 9207), so one
    /// without it, or with another, is a mix-up.
    sends_iss: bool,
    keys: TrustedIssuer,
    fetched: Instant,
}

/// The host's request, while the human signs in.
#[derive(Serialize, Deserialize)]
struct Pending {
    id: String,
    /// The host's request; `None` for an operator signing in to the dashboard.
    host: Option<HostRequest>,
    /// An operator sign-in: the nonce the dashboard that started it keeps,
    /// echoed with the session so that no other page can plant one.
    dashboard_nonce: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct HostRequest {
    client_id: String,
    agent: String,
    redirect_uri: String,
    challenge: String,
    scope: Option<String>,
    resource: String,
    state: Option<String>,
}

/// Who a sign-in's tokens are for: the host's agent acting for a human.
#[derive(Serialize, Deserialize, Clone)]
struct SignIn {
    client_id: String,
    agent: String,
    human: String,
    scope: Option<String>,
    resource: String,
}

/// What an authorization code grants.
#[derive(Serialize, Deserialize)]
struct Code {
    id: String,
    redirect_uri: String,
    challenge: String,
    grant: SignIn,
    /// When the human authenticated at the IdP (its `auth_time`, else the sign-in).
    auth_time: i64,
}

/// What a refresh token renews: one sign-in (its `family`, also the task of
/// every token it yields), until `expires`.
#[derive(Serialize, Deserialize)]
struct Refresh {
    id: String,
    family: String,
    grant: SignIn,
    /// The DPoP key of the sign-in (RFC 9449 §5: a public client's refresh
    /// token is bound to it), if it proved one.
    jkt: Option<String>,
    /// When the human authenticated at the IdP, for the tokens' `auth_time`.
    auth_time: i64,
    /// When the code was redeemed: a revocation of the agent's tokens since
    /// then ends the sign-in. (Not `auth_time`: an IdP session older than a
    /// revocation must not end sign-ins made after it.)
    signed_in: i64,
    expires: i64,
}

impl Interactive {
    /// `agents` maps each host's `client_id` to its agent's SPIFFE id;
    /// `secret` keys the sealed values (the same on every replica).
    /// `idp_secret` is Warden's client secret at the IdP.
    pub fn new(cfg: InteractiveConfig, agents: HashMap<String, String>, idp_secret: String, secret: &[u8]) -> Result<Self, String> {
        let extra_roots = match &cfg.metadata_ca_file {
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| format!("interactive.metadata_ca_file {}: {e}", p.display()))?;
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("interactive.metadata_ca_file {}: {e}", p.display()))?
            }
            None => Vec::new(),
        };
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(FETCH_TIMEOUT).build().map_err(|e| e.to_string())?;
        Ok(Self {
            cfg,
            agents,
            idp_secret,
            sealer: Sealer::new(secret),
            extra_roots,
            http,
            idp: tokio::sync::Mutex::new(IdpCache { idp: None, failed: None }),
            metadata: Mutex::new(HashMap::new()),
        })
    }

    /// The IdP's endpoints and keys: cached, refetched when old or when
    /// `stale_keys` says a signature found no key (a rotation).
    async fn idp<T>(&self, use_it: impl Fn(&Idp) -> T, stale_keys: bool) -> Result<T, String> {
        let mut c = self.idp.lock().await;
        let max_age = if stale_keys { JWKS_REFETCH } else { CACHE_FOR };
        let fresh = |c: &IdpCache| c.idp.as_ref().is_some_and(|i| i.fetched.elapsed() < max_age);
        let backing_off = c.failed.as_ref().is_some_and(|(at, _)| at.elapsed() < IDP_RETRY_AFTER);
        if !fresh(&c) && !backing_off {
            match self.discover().await {
                Ok(idp) => *c = IdpCache { idp: Some(idp), failed: None },
                Err(e) => c.failed = Some((Instant::now(), e)),
            }
        }
        // While the IdP cannot be read an older copy serves, for an hour at
        // most, and never to retry keys it lacked (a removed key stays out).
        let usable = fresh(&c) || (!stale_keys && c.idp.as_ref().is_some_and(|i| i.fetched.elapsed() < CACHE_FOR + STALE_FOR));
        match (&c.idp, &c.failed) {
            (Some(idp), _) if usable => Ok(use_it(idp)),
            (_, Some((_, why))) => Err(why.clone()),
            _ => Err("the IdP has not been read yet".into()),
        }
    }

    async fn discover(&self) -> Result<Idp, String> {
        let issuer = self.cfg.idp_issuer.trim_end_matches('/');
        let doc: Value = self.get_json(&format!("{issuer}/.well-known/openid-configuration")).await?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.cfg.idp_issuer.as_str()) {
            return Err(format!("the IdP's discovery document names another issuer than {}", self.cfg.idp_issuer));
        }
        let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("the IdP's discovery document has no {name}"));
        let jwks_uri = field("jwks_uri")?;
        let jwks: Value = self.get_json(&jwks_uri).await?;
        let keys = TrustedIssuer::from_jwks(&self.cfg.idp_issuer, &self.cfg.idp_client_id, &jwks.to_string()).map_err(|e| e.to_string())?;
        Ok(Idp {
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            userinfo_endpoint: field("userinfo_endpoint").ok(),
            sends_iss: doc.get("authorization_response_iss_parameter_supported") == Some(&Value::Bool(true)),
            keys,
            fetched: Instant::now(),
        })
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let r = self.http.get(url).header(header::ACCEPT, "application/json").send().await.map_err(|e| format!("the IdP at {url} is unreachable: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("the IdP answered {} for {url}", r.status()));
        }
        r.json().await.map_err(|e| format!("the IdP's {url} is not JSON: {e}"))
    }

    /// The host's metadata document, fetched with SSRF protections.
    async fn client_metadata(&self, client_id: &str) -> Result<ClientMetadata, String> {
        if let Some((m, at)) = self.metadata.lock().get(client_id)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(m.clone());
        }
        let url = url::Url::parse(client_id).map_err(|e| format!("client_id is not a URL: {e}"))?;
        let host = url.host_str().ok_or("client_id has no host")?.to_string();
        let port = url.port_or_known_default().ok_or("client_id has no port")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port)).await.map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
        let private_ok = self.cfg.private_metadata_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host));
        // Every address, not the first: a name that also resolves privately
        // could be made to connect there.
        if addrs.is_empty() || (!private_ok && addrs.iter().any(|a| !warden_gateway::egress::is_public(a.ip()))) {
            return Err(format!(
                "{host} resolves to a private or special address; its metadata is fetched only if an operator lists it in interactive.private_metadata_hosts"
            ));
        }
        // Connect to the address checked above, not one a second lookup returns.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .resolve(bare, addrs[0])
            // A proxy would resolve the name again, past the check above.
            .no_proxy()
            .tls_certs_merge(self.extra_roots.iter().cloned())
            .build()
            .map_err(|e| e.to_string())?;
        let mut r = client.get(url).header(header::ACCEPT, "application/json").send().await.map_err(|e| format!("fetching {client_id}: {e}"))?;
        if r.status() != StatusCode::OK {
            return Err(format!("fetching {client_id} answered {} (redirects are not followed)", r.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| format!("fetching {client_id}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_METADATA_BYTES {
                return Err(format!("{client_id} is larger than {MAX_METADATA_BYTES} bytes"));
            }
        }
        let m = ClientMetadata::parse(client_id, &body).map_err(|e| e.to_string())?;
        let mut cache = self.metadata.lock();
        cache.retain(|_, (_, at)| at.elapsed() < CACHE_FOR);
        if cache.len() < 1024 {
            cache.insert(client_id.to_string(), (m.clone(), Instant::now()));
        }
        Ok(m)
    }

    fn callback_url(issuer_url: &str) -> String {
        format!("{issuer_url}/oauth/callback")
    }

    /// The human the ID token names, by `human_claim` (an email only if verified).
    fn human(&self, claims: &Value) -> Result<String, String> {
        let claim = self.cfg.human_claim.as_str();
        let value = claims.get(claim).and_then(Value::as_str).filter(|v| !v.is_empty()).ok_or_else(|| format!("the ID token has no {claim} claim"))?;
        if claim == "email" {
            if claims.get("email_verified") != Some(&Value::Bool(true)) {
                return Err("the ID token's email is not verified".into());
            }
            // One spelling in tokens, audit records and `context.human`.
            return Ok(value.to_lowercase());
        }
        Ok(value.to_string())
    }

    /// Whether `human` may use `host` as `agent`, by the configuration now:
    /// checked at sign-in and again at every refresh, so a change to the
    /// mapping or the humans ends sign-ins it no longer allows.
    fn may_use(&self, host: &str, agent: &Agent, human: &str) -> bool {
        if self.agents.get(host) != Some(&agent.id.to_string()) {
            return false;
        }
        let listed = self.cfg.hosts.iter().find(|h| h.client_id == host).map(|h| h.humans.as_slice()).unwrap_or_default();
        let same = |a: &str| if self.cfg.human_claim == "email" { a.eq_ignore_ascii_case(human) } else { a == human };
        if listed.is_empty() { same(&agent.owner) } else { listed.iter().any(|h| same(h)) }
    }
}

/// Redirect the browser to `uri` with `params` added to its query.
fn redirect(uri: &str, params: &[(&str, &str)], cookie: Option<String>) -> Response {
    let mut u = match url::Url::parse(uri) {
        Ok(u) => u,
        Err(e) => return err("invalid_request", format!("cannot redirect to {uri}: {e}")).into_response(),
    };
    u.query_pairs_mut().extend_pairs(params);
    let mut r = (StatusCode::FOUND, [(header::LOCATION, u.to_string()), (header::CACHE_CONTROL, "no-store".into())]).into_response();
    if let Some(c) = cookie
        && let Ok(v) = c.parse()
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// An error for the host at its (validated) redirect URI, with its state and our `iss`.
fn to_host(s: &OAuth, redirect_uri: &str, state: Option<&str>, e: OAuthError) -> Response {
    let mut params = vec![("error", e.error), ("error_description", e.description.as_str()), ("iss", s.issuer_url.as_str())];
    if let Some(st) = state {
        params.push(("state", st));
    }
    redirect(redirect_uri, &params, None)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// `/oauth/authorize`: validate the host's request, then send the human to the IdP.
pub async fn authorize(State(s): State<Arc<OAuth>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(i) = &s.interactive else {
        return err(
            "unsupported_response_type",
            "interactive authorization (authorization code with PKCE) is not enabled on this server ([interactive] in warden.toml); agents get tokens at the token endpoint with grant_type=client_credentials and private_key_jwt",
        )
        .into_response();
    };
    // Until the redirect URI is known to be the host's, errors are shown
    // here, never redirected (OAuth 2.1 §4.1.2.1).
    let client_id = q.get("client_id").map(String::as_str).unwrap_or_default();
    let Some(agent_id) = i.agents.get(client_id) else {
        return err(
            "invalid_client",
            format!("{} is not a host an operator registered for interactive sign-in ([[interactive.host]])", untrusted_text(client_id, 200)),
        )
        .into_response();
    };
    let metadata = match i.client_metadata(client_id).await {
        Ok(m) => m,
        Err(e) => return err("invalid_client", format!("the host's client metadata document: {e}")).into_response(),
    };
    let redirect_uri = q.get("redirect_uri").map(String::as_str).unwrap_or_default();
    if !metadata.allows_redirect(redirect_uri) {
        return err("invalid_request", format!("redirect_uri {} is not one the host's metadata document lists", untrusted_text(redirect_uri, 200)))
            .into_response();
    }
    let state = q.get("state").map(String::as_str);
    if state.is_some_and(|st| st.len() > MAX_HOST_STATE) {
        return to_host(&s, redirect_uri, None, err("invalid_request", format!("state is longer than {MAX_HOST_STATE} bytes")));
    }
    let refuse = |e: OAuthError| to_host(&s, redirect_uri, state, e);
    if q.get("response_type").map(String::as_str) != Some("code") {
        return refuse(err("unsupported_response_type", "only response_type=code is supported"));
    }
    let challenge = q.get("code_challenge").map(String::as_str).unwrap_or_default();
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") || !is_s256_challenge(challenge) {
        return refuse(err("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256"));
    }
    let agent = match host_agent(&s, agent_id) {
        Ok(a) => a,
        Err(e) => return refuse(e),
    };
    let resource = match s.check_resource(&q) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    if let Err(e) = OAuth::requested_scope(q.get("scope")).and_then(|r| s.scope_for(&agent, r).map(drop)) {
        return refuse(e);
    }
    let host = HostRequest {
        client_id: client_id.to_string(),
        agent: agent.id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        challenge: challenge.to_string(),
        scope: q.get("scope").filter(|s| !s.trim().is_empty()).cloned(),
        resource,
        state: state.map(str::to_string),
    };
    let pending = Pending { id: random_id(), host: Some(host), dashboard_nonce: None };
    consent_page(&s, i, &pending, &metadata, &agent)
}

/// The human sees which application asks to act as which agent, with
/// which tools, before anything is sent to the IdP: a local process that
/// starts a host's sign-in (any can, for a loopback redirect) cannot ride
/// the human's IdP session unseen. The page cannot be framed, and its form
/// counts only with the cookie it set (`SameSite=Strict`: no other site can
/// submit it for the human).
fn consent_page(s: &OAuth, i: &Interactive, pending: &Pending, metadata: &ClientMetadata, agent: &Agent) -> Response {
    let host = pending.host.as_ref().expect("a host's sign-in");
    let sealed = i.sealer.seal(CONSENT, now_secs() + SIGN_IN_SECS, pending);
    let name = metadata.client_name.clone().unwrap_or_else(|| host.client_id.clone());
    let local = if is_loopback_redirect(&host.redirect_uri) {
        "<p class=warn>It returns to a program on this computer. Continue only if you just started signing in to it yourself.</p>"
    } else {
        ""
    };
    let tools = match &host.scope {
        Some(scope) => scope.split_whitespace().map(html_escape).collect::<Vec<_>>().join(", "),
        None => agent.tools.iter().map(|t| html_escape(&t.to_string())).collect::<Vec<_>>().join(", "),
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Sign in to {name} through Warden</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:36em;margin:3em auto}}.warn{{color:#a40}}code{{word-break:break-all}}</style></head><body>\
         <h1>{name}</h1><p>wants to act for you as the agent <b>{agent}</b>, with the tools {tools}.</p>\
         <p>Application: <code>{client_id}</code></p>{local}\
         <form method=post action=\"{action}\"><input type=hidden name=consent value=\"{sealed}\">\
         <button name=decision value=allow>Continue to sign in</button> <button name=decision value=deny>Cancel</button></form></body></html>",
        name = html_escape(&name),
        agent = html_escape(agent.id.name()),
        client_id = html_escape(&host.client_id),
        action = html_escape(&format!("{}/oauth/authorize", s.issuer_url)),
    );
    let cookie = CONSENT_PAGE.set(&s.issuer_url, &pending.id);
    let mut r = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CACHE_CONTROL, "no-store".into()),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'".into()),
            (header::X_FRAME_OPTIONS, "DENY".into()),
            (header::REFERRER_POLICY, "no-referrer".into()),
        ],
        html,
    )
        .into_response();
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The consent page's answer: on to the IdP, or back to the host refused.
pub async fn consent(State(s): State<Arc<OAuth>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let Some(i) = &s.interactive else { return StatusCode::NOT_FOUND.into_response() };
    let pending: Pending = match form.get("consent").map(|c| i.sealer.open(CONSENT, c, now_secs())) {
        Some(Ok(p)) => p,
        Some(Err(e)) => return err("invalid_request", format!("{e}; start the sign-in again from the application")).into_response(),
        None => return err("invalid_request", "the form has no consent; start the sign-in again from the application").into_response(),
    };
    if !CONSENT_PAGE.held(&headers, &pending.id) {
        return err("invalid_request", "this consent was not given on the page Warden showed in this browser; start the sign-in again from the application")
            .into_response();
    }
    let Some(host) = &pending.host else { return err("invalid_request", "not a host's sign-in").into_response() };
    if form.get("decision").map(String::as_str) != Some("allow") {
        return to_host(&s, &host.redirect_uri, host.state.as_deref(), err("access_denied", "the user cancelled the sign-in"));
    }
    let (redirect_uri, state) = (host.redirect_uri.clone(), host.state.clone());
    let spent = CONSENT_PAGE.clear(&s.issuer_url, &pending.id);
    let mut r = to_idp(&s, i, pending).await.unwrap_or_else(|e| to_host(&s, &redirect_uri, state.as_deref(), e));
    if let Ok(v) = spent.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn html_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The path of the public URL (a reverse proxy's prefix), without a final `/`.
fn base_path(issuer_url: &str) -> String {
    url::Url::parse(issuer_url).map(|u| u.path().trim_end_matches('/').to_string()).unwrap_or_default()
}

/// `/admin/sso/login?n=NONCE`: an operator signs in to the dashboard at the
/// IdP; the dashboard accepts the session only with its own nonce back.
pub async fn operator_login(State(s): State<Arc<OAuth>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let nonce = q.get("n").filter(|n| (16..=128).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let Some(nonce) = nonce else {
        return err("invalid_request", "start the sign-in from the dashboard (it sends its nonce as n)").into_response();
    };
    match s.interactive.as_ref().filter(|i| i.cfg.operators.is_some()) {
        Some(i) => to_idp(&s, i, Pending { id: random_id(), host: None, dashboard_nonce: Some(nonce.clone()) })
            .await
            .unwrap_or_else(|e| dashboard_error(&s.issuer_url, &e.description)),
        None => err("unsupported_response_type", "operator sign-in at an identity provider is not configured ([interactive.operators] in warden.toml)")
            .into_response(),
    }
}

/// `/admin/sso`: whether the dashboard offers operator sign-in at the IdP.
pub async fn operator_sso(State(s): State<Arc<OAuth>>) -> Response {
    axum::Json(serde_json::json!({ "enabled": s.interactive.as_ref().is_some_and(|i| i.cfg.operators.is_some()) })).into_response()
}

/// Send the browser to the IdP for `pending`, tied to it by a cookie.
async fn to_idp(s: &OAuth, i: &Interactive, pending: Pending) -> Result<Response, OAuthError> {
    let now = now_secs();
    let endpoint = i.idp(|idp| idp.authorization_endpoint.clone(), false).await.map_err(|e| err("temporarily_unavailable", e))?;
    let mut scope = vec!["openid"];
    if i.cfg.human_claim == "email" {
        scope.push("email");
    }
    scope.extend(i.cfg.operators.iter().flat_map(|o| o.scope.as_deref()));
    let scope = scope.join(" ");
    let sealed = i.sealer.seal(STATE, now + SIGN_IN_SECS, &pending);
    let nonce = i.sealer.derive("idp nonce", &pending.id);
    let challenge = pkce_challenge(&i.sealer.derive("idp pkce verifier", &pending.id));
    let callback = Interactive::callback_url(&s.issuer_url);
    let params = [
        ("response_type", "code"),
        ("client_id", i.cfg.idp_client_id.as_str()),
        ("redirect_uri", &callback),
        ("scope", &scope),
        ("state", &sealed),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    Ok(redirect(&endpoint, &params, Some(SIGN_IN.set(&s.issuer_url, &pending.id))))
}

fn is_loopback_redirect(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| u.scheme() == "http" && crate::config::is_loopback(&u))
}

/// A cookie that ties one step of a sign-in (by its id) to the browser that
/// took it: one per sign-in, so two at once in one browser do not overwrite
/// each other, under the public URL's path.
struct Binding {
    name: &'static str,
    path: &'static str,
    same_site: &'static str,
}

/// The IdP's answer must come back to the browser that was sent there.
const SIGN_IN: Binding = Binding { name: "warden_sign_in", path: "/oauth/callback", same_site: "Lax" };
/// The consent form counts only in the browser that was shown the page
/// (`Strict`: no other site can submit it for the human).
const CONSENT_PAGE: Binding = Binding { name: "warden_consent", path: "/oauth/authorize", same_site: "Strict" };

impl Binding {
    fn set(&self, issuer_url: &str, id: &str) -> String {
        self.header(issuer_url, id, id, SIGN_IN_SECS)
    }

    fn clear(&self, issuer_url: &str, id: &str) -> String {
        self.header(issuer_url, id, "", 0)
    }

    fn header(&self, issuer_url: &str, id: &str, value: &str, max_age: i64) -> String {
        let secure = if issuer_url.starts_with("https:") { "; Secure" } else { "" };
        format!("{}_{id}={value}; Path={}{}; HttpOnly; SameSite={}; Max-Age={max_age}{secure}", self.name, base_path(issuer_url), self.path, self.same_site)
    }

    /// The request comes from the browser that holds this step's cookie.
    fn held(&self, headers: &HeaderMap, id: &str) -> bool {
        cookie(headers, &format!("{}_{id}", self.name)).as_deref() == Some(id)
    }
}

/// The registered agent a host acts as, if it may get tokens this way.
fn host_agent(s: &OAuth, agent_id: &str) -> Result<Agent, OAuthError> {
    let agent =
        s.gw.snapshot().agents.get(agent_id).cloned().ok_or_else(|| err("unauthorized_client", format!("the host's agent {agent_id} is not registered")))?;
    if agent.status != AgentStatus::Active {
        return Err(err("access_denied", format!("agent {} is {}", agent.id, agent.status.as_str())));
    }
    if agent.parent.is_some() {
        return Err(err("unauthorized_client", format!("agent {} is a sub-agent: it gets tokens only by token exchange", agent.id)));
    }
    if agent.token_binding == TokenBinding::Mtls {
        return Err(err("unauthorized_client", format!("agent {} requires certificate-bound tokens, which a browser sign-in cannot give", agent.id)));
    }
    Ok(agent)
}

/// `/oauth/callback`: the IdP's answer; on success, a code for the host.
pub async fn callback(State(s): State<Arc<OAuth>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(i) = &s.interactive else { return StatusCode::NOT_FOUND.into_response() };
    let now = now_secs();
    let pending: Pending = match q.get("state").map(|st| i.sealer.open(STATE, st, now)) {
        Some(Ok(p)) => p,
        Some(Err(e)) => return err("invalid_request", format!("{e}; start the sign-in again from the application")).into_response(),
        None => return err("invalid_request", "the identity provider's answer has no state; start the sign-in again from the application").into_response(),
    };
    if !SIGN_IN.held(&headers, &pending.id) {
        return err("invalid_request", "this sign-in was not started in this browser; start it again from the application").into_response();
    }
    match s.gw.first_use(&format!("sign-in:{}", pending.id), now + SIGN_IN_SECS).await {
        Ok(true) => {}
        Ok(false) => return err("invalid_request", "this sign-in was already completed; start it again from the application").into_response(),
        Err(e) => return unavailable(e).into_response(),
    }
    let signed_in = sign_in(&s, i, &pending.id, &q, now).await;
    let clear = SIGN_IN.clear(&s.issuer_url, &pending.id);
    let Some(host) = pending.host else {
        return operator_signed_in(&s, i, signed_in, pending.dashboard_nonce.as_deref().unwrap_or_default(), clear, now).await;
    };
    let pending = host;
    let state = pending.state.as_deref();
    let (human, auth_time) = match signed_in {
        Ok((h, claims)) => (h, claims.get("auth_time").and_then(Value::as_i64).filter(|t| *t <= now).unwrap_or(now)),
        Err(e) => {
            record_refusal(&s, Some(&pending.agent), None, &e).await;
            return to_host(&s, &pending.redirect_uri, state, e);
        }
    };
    let agent = match host_agent(&s, &pending.agent) {
        Ok(a) => a,
        Err(e) => return to_host(&s, &pending.redirect_uri, state, e),
    };
    if !i.may_use(&pending.client_id, &agent, &human) {
        let e = err(
            "access_denied",
            format!(
                "{} may not use this application (agent {}): ask an operator to add them to its [[interactive.host]] humans",
                untrusted_text(&human, 120),
                agent.id
            ),
        );
        record_refusal(&s, Some(&pending.agent), Some(&human), &e).await;
        return to_host(&s, &pending.redirect_uri, state, e);
    }
    let code = Code {
        id: random_id(),
        redirect_uri: pending.redirect_uri.clone(),
        challenge: pending.challenge,
        grant: SignIn { client_id: pending.client_id, agent: pending.agent, human, scope: pending.scope, resource: pending.resource },
        auth_time,
    };
    let sealed = i.sealer.seal(CODE, now + CODE_SECS, &code);
    let mut params = vec![("code", sealed.as_str()), ("iss", s.issuer_url.as_str())];
    if let Some(st) = state {
        params.push(("state", st));
    }
    redirect(&pending.redirect_uri, &params, Some(clear))
}

/// An operator's sign-in: a dashboard session with the role their claims
/// give, handed to the dashboard in the URL fragment (never sent to a
/// server, so no proxy or log sees it).
async fn operator_signed_in(s: &OAuth, i: &Interactive, signed_in: Result<(String, Value), OAuthError>, nonce: &str, clear: String, now: i64) -> Response {
    let Some(ops) = i.cfg.operators.as_ref() else {
        return dashboard_error(&s.issuer_url, "operator sign-in at the identity provider is no longer configured");
    };
    let (human, claims) = match signed_in {
        Ok(x) => x,
        Err(e) => return dashboard_error(&s.issuer_url, &e.description),
    };
    let Some(role) = ops.role(&claims) else {
        let e = err(
            "access_denied",
            format!(
                "{} has no operator role: the IdP's {} claim names none of the groups in [interactive.operators]",
                untrusted_text(&human, 120),
                ops.roles_claim
            ),
        );
        record_refusal(s, None, Some(&human), &e).await;
        return dashboard_error(&s.issuer_url, &e.description);
    };
    // Named apart from registered operators, whose names an admin chooses.
    let name = format!("sso:{human}");
    // After any cut-off that ended this operator's sessions, as a token's iat is.
    let since = s.gw.snapshot().revocations.operators_before.get(&name).map_or(now, |cut| now.max(cut + 1));
    let session = OperatorSession { name, role, id: random_id(), since };
    let ev = AuditEvent {
        kind: Some(EventKind::TokenIssued),
        action: Some("operator sign-in".into()),
        subject: Some(format!("operator:{}", session.name)),
        decision: warden_core::Verdict::Allow,
        reason: Some(format!("role {role} for {} s", ops.session_secs)),
        ..Default::default()
    };
    if let Err(e) = s.gw.audit.record(ev).await {
        return dashboard_error(&s.issuer_url, &format!("the sign-in could not be audited ({e}); try again"));
    }
    let token = format!("{OPERATOR_SESSION_PREFIX}{}", i.sealer.seal(OPERATOR_SESSION, now + ops.session_secs, &session));
    let location = format!("{}/dashboard#sso={token}&n={nonce}", s.issuer_url);
    let mut r = (StatusCode::FOUND, [(header::LOCATION, location), (header::CACHE_CONTROL, "no-store".to_string())]).into_response();
    if let Ok(v) = clear.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Back to the dashboard's sign-in with why it failed.
fn dashboard_error(issuer_url: &str, why: &str) -> Response {
    let enc: String = url::form_urlencoded::byte_serialize(why.as_bytes()).collect();
    (StatusCode::FOUND, [(header::LOCATION, format!("{issuer_url}/dashboard#sso-error={enc}")), (header::CACHE_CONTROL, "no-store".to_string())])
        .into_response()
}

/// Operator tokens from a dashboard sign-in start with this (registered
/// operators' tokens never do: `warden operator add` makes hex).
pub const OPERATOR_SESSION_PREFIX: &str = "wsso.";
const OPERATOR_SESSION: &str = "operator session";

#[derive(Serialize, Deserialize)]
struct OperatorSession {
    name: String,
    role: Role,
    /// Names the session among revocations (its holder signing out).
    id: String,
    /// When it started (a cut-off for the operator ends it).
    since: i64,
}

/// An operator signed in at the IdP, and which session of theirs this is.
pub struct SignedIn {
    pub operator: Operator,
    pub session: String,
    pub since: i64,
}

impl Interactive {
    /// The operator an SSO session token names, while it is valid (the
    /// caller checks it has not been ended).
    pub fn operator_session(&self, token: &str, now: i64) -> Option<SignedIn> {
        let sealed = token.strip_prefix(OPERATOR_SESSION_PREFIX)?;
        self.cfg.operators.as_ref()?;
        let s: OperatorSession = self.sealer.open(OPERATOR_SESSION, sealed, now).ok()?;
        Some(SignedIn { operator: Operator { name: s.name, role: s.role }, session: s.id, since: s.since })
    }
}

/// Redeem the IdP's code and verify the ID token: the human who signed in,
/// and their claims.
async fn sign_in(s: &OAuth, i: &Interactive, id: &str, q: &HashMap<String, String>, now: i64) -> Result<(String, Value), OAuthError> {
    let (token_endpoint, userinfo, sends_iss) =
        i.idp(|idp| (idp.token_endpoint.clone(), idp.userinfo_endpoint.clone(), idp.sends_iss), false).await.map_err(|e| err("temporarily_unavailable", e))?;
    // RFC 9207: an answer that names another issuer (or none, from one that
    // always names itself) came from a server this sign-in did not go to.
    match q.get("iss") {
        Some(iss) if *iss != i.cfg.idp_issuer => {
            return Err(err(
                "access_denied",
                format!("the sign-in answer names issuer {}, not {} (RFC 9207 mix-up)", untrusted_text(iss, 120), i.cfg.idp_issuer),
            ));
        }
        None if sends_iss => return Err(err("access_denied", "the sign-in answer has no iss although the identity provider always sends one (RFC 9207)")),
        _ => {}
    }
    if let Some(e) = q.get("error") {
        let why = q.get("error_description").map(|d| format!(": {}", untrusted_text(d, 200))).unwrap_or_default();
        return Err(err("access_denied", format!("the identity provider refused the sign-in ({}{why})", untrusted_text(e, 60))));
    }
    let code = q.get("code").ok_or_else(|| err("access_denied", "the identity provider's answer has neither a code nor an error"))?;
    let callback = Interactive::callback_url(&s.issuer_url);
    let verifier = i.sealer.derive("idp pkce verifier", id);
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", &callback), ("code_verifier", &verifier)])
        .finish();
    // RFC 6749 §2.3.1: client_secret_basic, each part form-encoded.
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let r = i
        .http
        .post(&token_endpoint)
        .basic_auth(enc(&i.cfg.idp_client_id), Some(enc(&i.idp_secret)))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| err("temporarily_unavailable", format!("the identity provider's token endpoint is unreachable: {e}")))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let id_token = body.get("id_token").and_then(Value::as_str).ok_or_else(|| {
        let why = body.get("error").and_then(Value::as_str).map(|e| untrusted_text(e, 60)).unwrap_or_else(|| status.to_string());
        err("access_denied", format!("the identity provider did not redeem its code ({why})"))
    })?;
    let nonce = i.sealer.derive("idp nonce", id);
    let nonce = nonce.as_str();
    let verify = |stale: bool| async move { i.idp(|idp| verify_id_token(id_token, &idp.keys, nonce, now), stale).await };
    let claims = match verify(false).await.map_err(|e| err("temporarily_unavailable", e))? {
        // A key the cached JWKS lacks: the IdP may have rotated.
        Err(e) if e.to_string().contains("verifies its signature") => verify(true).await.map_err(|e| err("temporarily_unavailable", e))?,
        r => r,
    }
    .map_err(|e| err("access_denied", e.to_string()))?;
    let needs = |c: &Value| c.get(&i.cfg.human_claim).is_none() || i.cfg.operators.as_ref().is_some_and(|o| c.get(&o.roles_claim).is_none());
    if !needs(&claims) {
        return i.human(&claims).map(|h| (h, claims)).map_err(|e| err("access_denied", e));
    }
    // Many IdPs put only `sub` in the ID token of a code flow and the rest
    // at the UserInfo endpoint, which must describe the same subject.
    let (Some(userinfo), Some(access)) = (userinfo, body.get("access_token").and_then(Value::as_str)) else {
        return Err(err("access_denied", format!("the ID token has no {} claim and the IdP offers no UserInfo endpoint", i.cfg.human_claim)));
    };
    let info = i.http.get(&userinfo).bearer_auth(access).header(header::ACCEPT, "application/json").send().await;
    let info: Value = match info {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        Ok(r) => return Err(err("access_denied", format!("the IdP's UserInfo endpoint answered {}", r.status()))),
        Err(e) => return Err(err("temporarily_unavailable", format!("the IdP's UserInfo endpoint is unreachable: {e}"))),
    };
    if info.get("sub") != claims.get("sub") {
        return Err(err("access_denied", "the IdP's UserInfo answer is about another subject than its ID token (OIDC Core §5.3.2)"));
    }
    i.human(&info).map(|h| (h, info)).map_err(|e| err("access_denied", e))
}

/// A sign-in refused after the host was identified: audited with its agent.
async fn record_refusal(s: &OAuth, agent: Option<&str>, human: Option<&str>, e: &OAuthError) {
    let ev = AuditEvent {
        kind: Some(EventKind::TokenDenied),
        action: Some(if agent.is_some() { "authorize" } else { "operator sign-in" }.into()),
        agent: agent.map(str::to_string),
        subject: human.map(str::to_string),
        decision: warden_core::Verdict::Deny,
        reason: Some(format!("{}: {}", e.error, e.description)),
        ..Default::default()
    };
    if let Err(a) = s.gw.audit.record(ev).await {
        tracing::error!("auditing a refused sign-in failed: {a}");
    }
}

impl OAuth {
    /// `grant_type=authorization_code`: the host redeems its code with the
    /// PKCE verifier. Returns the claims and the sign-in's refresh token.
    pub(crate) async fn authorization_code(
        &self,
        form: &HashMap<String, String>,
        headers: &HeaderMap,
        cert: Option<&PeerCertificate>,
        ev: &mut AuditEvent,
        now: i64,
    ) -> Result<(AccessClaims, Option<String>), OAuthError> {
        let (i, code) = self.open_grant::<Code>(CODE, "code", form, ev, now, |c| &c.grant)?;
        if form.get("redirect_uri") != Some(&code.redirect_uri) {
            return Err(err("invalid_grant", "redirect_uri is not the one the code was requested with"));
        }
        if !pkce_matches(form.get("code_verifier").map(String::as_str).unwrap_or_default(), &code.challenge) {
            return Err(err("invalid_grant", "PKCE verification failed: code_verifier does not match the code_challenge"));
        }
        if self.check_resource(form)? != code.grant.resource {
            return Err(err("invalid_target", "resource is not the one the code was requested for"));
        }
        let agent = self.grant_agent(i, &code.grant)?;
        // The host proves a key of its own for the session, if any.
        let cnf = self.confirmation(headers, cert, &agent, true, now).await?;
        let family = format!("{FAMILY_PREFIX}{}", code.id);
        // Only after the checks a thief without the verifier cannot pass
        // (nobody else can burn the host's code) and the ones a retry can
        // fix (a missing DPoP proof does not spend it).
        if !self.gw.first_use(&format!("code:{}", code.id), now + CODE_SECS).await.map_err(unavailable)? {
            // Every token issued on it (RFC 6749 §4.1.2): the sign-in's task.
            if let Err(e) = self.gw.store.revoke(RevocationKind::Task, &family, "its authorization code was replayed", now).await {
                tracing::error!("revoking the sign-in of a replayed code failed: {e}");
            }
            let _ = self.gw.refresh().await;
            return Err(err("invalid_grant", "the authorization code was already used; every token issued for it is revoked"));
        }
        let mut claims = self.sign_in_claims(&agent, &code.grant, &family, cnf, code.auth_time, now)?;
        claims.jti = code.id;
        let refresh = Refresh {
            id: random_id(),
            family,
            grant: code.grant,
            jkt: claims.cnf.as_ref().and_then(|c| c.jkt.clone()),
            auth_time: code.auth_time,
            signed_in: now,
            expires: now + i.cfg.refresh_token_secs,
        };
        Ok((claims, i.refresh_token(&refresh)))
    }

    /// `grant_type=refresh_token`: a new access token for the same sign-in
    /// and a new refresh token; the old one is spent. A spent one presented
    /// again was copied: every token of the sign-in is revoked.
    pub(crate) async fn refresh(
        &self,
        form: &HashMap<String, String>,
        headers: &HeaderMap,
        cert: Option<&PeerCertificate>,
        ev: &mut AuditEvent,
        now: i64,
    ) -> Result<(AccessClaims, Option<String>), OAuthError> {
        let (i, r) = self.open_grant::<Refresh>(REFRESH, "refresh_token", form, ev, now, |r| &r.grant)?;
        // RFC 8707: without `resource`, the one the sign-in was for.
        if form.contains_key("resource") && self.check_resource(form)? != r.grant.resource {
            return Err(err("invalid_target", "resource is not the one the sign-in was for"));
        }
        let agent = self.grant_agent(i, &r.grant)?;
        let cnf = self.confirmation(headers, cert, &agent, true, now).await?;
        if r.jkt.is_some() && cnf.as_ref().and_then(|c| c.jkt.as_ref()) != r.jkt.as_ref() {
            return Err(err("invalid_grant", "the refresh token is bound to the DPoP key of its sign-in: sign the proof with that key"));
        }
        let mut claims = self.sign_in_claims(&agent, &r.grant, &r.family, cnf, r.auth_time, now)?;
        // Revocations since the sign-in (of the agent, of the task) end it.
        let signed_in = AccessClaims { iat: r.signed_in, ..claims.clone() };
        self.gw.snapshot().revocations.check(&signed_in).map_err(|e| err("invalid_grant", format!("the sign-in was revoked ({e}): sign in again")))?;
        if !self.gw.first_use(&format!("refresh:{}", r.id), r.expires).await.map_err(unavailable)? {
            if let Err(e) = self.gw.store.revoke(RevocationKind::Task, &r.family, "a spent refresh token was presented again", now).await {
                tracing::error!("revoking the sign-in of a reused refresh token failed: {e}");
            }
            let _ = self.gw.refresh().await;
            return Err(err("invalid_grant", "the refresh token was already used: every token of this sign-in is revoked; sign in again"));
        }
        claims.exp = claims.exp.min(r.expires.max(now + 1));
        let next = Refresh { id: random_id(), jkt: claims.cnf.as_ref().and_then(|c| c.jkt.clone()).or(r.jkt.clone()), ..r };
        Ok((claims, i.refresh_token(&next)))
    }

    /// The sealed `param` of a grant request, opened as `purpose`: its agent
    /// and human named in the audit record, issued to the requesting client.
    fn open_grant<T: serde::de::DeserializeOwned>(
        &self,
        purpose: &str,
        param: &str,
        form: &HashMap<String, String>,
        ev: &mut AuditEvent,
        now: i64,
        sign_in: impl Fn(&T) -> &SignIn,
    ) -> Result<(&Interactive, T), OAuthError> {
        let i = self.interactive()?;
        let raw = form.get(param).map(String::as_str).unwrap_or_default();
        let value: T = i.sealer.open(purpose, raw, now).map_err(|e| err("invalid_grant", e.to_string()))?;
        let grant = sign_in(&value);
        ev.agent = Some(grant.agent.clone());
        ev.subject = Some(grant.human.clone());
        if form.get("client_id") != Some(&grant.client_id) {
            return Err(err("invalid_grant", format!("the {purpose} was issued to another client_id")));
        }
        Ok((i, value))
    }

    /// RFC 7009 for a host (a public client, known by its `client_id`): a
    /// refresh or access token of one of its sign-ins ends that sign-in,
    /// every token of it (the host's sign-out). `None`: not a host's
    /// request, for the agents' revocation.
    pub(crate) async fn revoke_sign_in(&self, form: &HashMap<String, String>, now: i64) -> Option<Response> {
        let i = self.interactive.as_deref()?;
        let client_id = form.get("client_id")?;
        let agent = i.agents.get(client_id)?;
        let token = form.get("token").map(String::as_str).unwrap_or_default();
        let family = match i.sealer.open::<Refresh>(REFRESH, token, now) {
            Ok(r) => (r.grant.client_id == *client_id).then_some(r.family),
            Err(_) => self.verify_own(token, now).filter(|c| c.auth_time.is_some() && c.agent() == agent && c.task.starts_with(FAMILY_PREFIX)).map(|c| c.task),
        };
        // RFC 7009 §2.2: an invalid, expired or foreign token is answered 200 and changes nothing.
        let Some(family) = family else { return Some(StatusCode::OK.into_response()) };
        if let Err(e) = self.gw.store.revoke(RevocationKind::Task, &family, "signed out by its host (RFC 7009)", now).await {
            return Some(err("temporarily_unavailable", e.to_string()).into_response());
        }
        let ev = AuditEvent {
            kind: Some(EventKind::Revocation),
            agent: Some(agent.clone()),
            task: Some(family),
            decision: warden_core::Verdict::Allow,
            reason: Some("sign-in ended by its host".into()),
            ..Default::default()
        };
        if let Err(e) = self.gw.audit.record(ev).await {
            return Some(err("temporarily_unavailable", e.to_string()).into_response());
        }
        let _ = self.gw.refresh().await;
        Some(StatusCode::OK.into_response())
    }

    /// The agent a code or refresh token is for, while it may still get
    /// tokens this way and the configuration still lets this human use this
    /// host as it.
    fn grant_agent(&self, i: &Interactive, grant: &SignIn) -> Result<Agent, OAuthError> {
        let agent = host_agent(self, &grant.agent).map_err(|e| err("invalid_grant", e.description))?;
        if !i.may_use(&grant.client_id, &agent, &grant.human) {
            return Err(err("invalid_grant", "the configuration no longer lets this human use this host as this agent: sign in again"));
        }
        Ok(agent)
    }

    fn interactive(&self) -> Result<&Interactive, OAuthError> {
        self.interactive
            .as_deref()
            .ok_or_else(|| err("unsupported_grant_type", "interactive authorization is not enabled on this server ([interactive] in warden.toml)"))
    }

    /// The host's agent acting for the human who signed in at `auth_time`,
    /// in sign-in `family` (its task).
    fn sign_in_claims(
        &self,
        agent: &Agent,
        s: &SignIn,
        family: &str,
        cnf: Option<warden_identity::Confirmation>,
        auth_time: i64,
        now: i64,
    ) -> Result<AccessClaims, OAuthError> {
        let mut claims = self.grant(agent, OAuth::requested_scope(s.scope.as_ref())?, Some(family), cnf, s.resource.clone(), now)?;
        claims.sub = s.human.clone();
        claims.fed = Some(self.interactive()?.cfg.idp_issuer.clone());
        claims.auth_time = Some(auth_time);
        Ok(claims)
    }
}

impl Interactive {
    fn refresh_token(&self, r: &Refresh) -> Option<String> {
        (self.cfg.refresh_token_secs > 0).then(|| self.sealer.seal(REFRESH, r.expires, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interactive(private_metadata_hosts: Vec<String>) -> Interactive {
        let cfg = InteractiveConfig {
            idp_issuer: "https://idp.example".into(),
            idp_client_id: "warden".into(),
            idp_client_secret_env: "UNUSED".into(),
            human_claim: "sub".into(),
            refresh_token_secs: 3600,
            metadata_ca_file: None,
            private_metadata_hosts,
            hosts: vec![],
            operators: None,
        };
        Interactive::new(cfg, HashMap::new(), "idp secret".into(), b"key").unwrap()
    }

    #[tokio::test]
    async fn metadata_on_private_or_loopback_addresses_is_not_fetched_unless_an_operator_allowed_the_host() {
        let i = interactive(vec![]);
        for url in ["https://127.0.0.1:9/client.json", "https://localhost:9/client.json", "https://[::1]:9/c.json", "https://169.254.169.254/latest/meta-data"]
        {
            let e = i.client_metadata(url).await.unwrap_err();
            assert!(e.contains("private or special address"), "{url}: {e}");
        }
        // Allowed: the fetch is attempted (nothing listens on port 9).
        let e = interactive(vec!["127.0.0.1".into()]).client_metadata("https://127.0.0.1:9/client.json").await.unwrap_err();
        assert!(e.starts_with("fetching"), "{e}");
    }

    #[test]
    fn the_sign_in_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; warden_sign_in=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "warden_sign_in").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}

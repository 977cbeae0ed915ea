//! OAuth 2.1 authorization server endpoints for agents. Clients authenticate
//! with `private_key_jwt` (RFC 7523) signed by their registered key (EdDSA,
//! ES256 or RS256, as the key's type says). A DPoP proof (RFC 9449) with that
//! same key binds the token to the agent's identity; an agent an operator
//! registered for bearer tokens may omit it and gets an unbound `Bearer`
//! token (the MCP SDKs do not sign DPoP proofs), while one registered for
//! `dpop` (the default) is refused without a proof. Token exchange (RFC 8693)
//! issues attenuated tokens to registered sub-agents.
//!
//! MCP hosts acting for a human use the authorization code grant with PKCE
//! when `[interactive]` is configured ([`crate::interactive`]).

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use warden_core::clock::now_secs;
use warden_core::{Agent, AgentStatus, AuditEvent, EventKind, TokenBinding, ToolRef, untrusted_text};
use warden_gateway::{Gateway, PeerCertificate};
use warden_identity::{
    AccessClaims, Actor, AgentKey, Confirmation, JwsAlg, MAX_ASSERTION_LIFETIME, SubAgent, TokenIssuer, TrustedIssuer, assertion_client_id, attenuate,
    verify_client_assertion, verify_dpop_proof, verify_workload_jwt,
};
use warden_monitor::{Claimed, Door};
use warden_store::RevocationKind;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523 §2.1: a JWT (here a workload credential) as an authorization grant.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

pub struct OAuth {
    pub gw: Arc<Gateway>,
    pub issuer: TokenIssuer,
    pub issuer_url: String,
    pub ttl: i64,
    /// The listener verifies client certificates: tokens can be bound to them.
    pub mtls: bool,
    /// Trusted issuers of workload credentials, each with its subject-to-agent map.
    pub workload: Vec<Workload>,
    /// Hosts acting for humans signed in at the IdP (`[interactive]`).
    pub interactive: Option<Arc<crate::interactive::Interactive>>,
}

/// One `[[workload_issuer]]`, loaded.
pub struct Workload {
    pub issuer: TrustedIssuer,
    /// Subject to agent (SPIFFE id).
    pub agents: std::collections::BTreeMap<String, String>,
}

impl OAuth {
    fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.issuer_url)
    }
}

pub fn router(state: Arc<OAuth>) -> Router {
    Router::new()
        .route("/oauth/authorize", get(crate::interactive::authorize).post(crate::interactive::consent))
        .route("/oauth/callback", get(crate::interactive::callback))
        .route("/admin/sso", get(crate::interactive::operator_sso))
        .route("/admin/sso/login", get(crate::interactive::operator_login))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route("/.well-known/oauth-protected-resource", get(pr_metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(pr_metadata))
        .route("/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// An RFC 6749 §5.2 error response.
pub(crate) struct OAuthError {
    status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

pub(crate) fn err(error: &'static str, description: impl Into<String>) -> OAuthError {
    let status = if error == "invalid_client" { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
    OAuthError { status, error, description: description.into() }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        (self.status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
    }
}

/// A source that failed client authentication too often: 429.
fn slow_down(t: warden_monitor::Throttled) -> Response {
    let msg = format!("too many failed requests from this address; retry in {} s", t.retry_after_secs);
    warden_gateway::throttled_response(t, json!({ "error": "slow_down", "error_description": msg }).to_string())
}

pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS random source available");
    warden_identity::b64url(&b)
}

pub(crate) fn unavailable(e: warden_store::OneTimeIdsUnavailable) -> OAuthError {
    OAuthError { status: StatusCode::SERVICE_UNAVAILABLE, error: "temporarily_unavailable", description: e.to_string() }
}

fn param<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    form.get(name).map(String::as_str).filter(|s| !s.is_empty()).ok_or_else(|| err("invalid_request", format!("missing parameter {name}")))
}

impl OAuth {
    /// Authenticate the client by its assertion; returns the active agent.
    async fn authenticate_client(&self, form: &HashMap<String, String>, now: i64) -> Result<Agent, OAuthError> {
        if param(form, "client_assertion_type")? != ASSERTION_TYPE {
            return Err(err("invalid_client", format!("client_assertion_type must be {ASSERTION_TYPE} (private_key_jwt)")));
        }
        let assertion = param(form, "client_assertion")?;
        let client_id = assertion_client_id(assertion).map_err(|e| err("invalid_client", e.to_string()))?;
        if let Some(cid) = form.get("client_id")
            && cid != &client_id
        {
            return Err(err("invalid_client", "client_id does not match the assertion's sub"));
        }
        let snap = self.gw.snapshot();
        // Unverified until the signature checks: quoted and bounded.
        let agent = snap.agents.get(&client_id).ok_or_else(|| err("invalid_client", format!("unknown agent \"{}\"", untrusted_text(&client_id, 120))))?;
        let key = AgentKey::from_registry(&agent.public_key)
            .map_err(|e| err("invalid_client", format!("the agent's registered key is unusable ({e}); rotate its key")))?;
        let endpoint = self.token_endpoint();
        let c =
            verify_client_assertion(assertion, &key, &[endpoint.as_str(), self.issuer_url.as_str()], now).map_err(|e| err("invalid_client", e.to_string()))?;
        if !self.gw.first_use(&format!("assertion:{}:{}", client_id, c.jti), now + MAX_ASSERTION_LIFETIME).await.map_err(unavailable)? {
            return Err(err("invalid_client", "client assertion replayed: its jti was already used"));
        }
        if agent.status != AgentStatus::Active {
            return Err(err("invalid_client", format!("agent {client_id} is {}", agent.status.as_str())));
        }
        Ok(agent.clone())
    }

    /// The agent a workload credential (the `assertion` of a `jwt-bearer`
    /// grant) proves, by its issuer's subject map, and the issuer.
    fn workload_agent(&self, form: &HashMap<String, String>, now: i64) -> Result<(Agent, String), OAuthError> {
        if self.workload.is_empty() {
            return Err(err("unsupported_grant_type", "no workload issuers are configured ([[workload_issuer]])"));
        }
        let assertion = param(form, "assertion")?;
        let c = verify_workload_jwt(assertion, self.workload.iter().map(|w| &w.issuer), now).map_err(|e| err("invalid_grant", e.to_string()))?;
        let w = self.workload.iter().find(|w| w.issuer.issuer == c.iss).expect("verified against a configured issuer");
        let Some(name) = w.agents.get(&c.sub) else {
            return Err(err(
                "invalid_grant",
                format!("workload {} of {} is not mapped to an agent ([[workload_issuer]] agents)", untrusted_text(&c.sub, 200), c.iss),
            ));
        };
        let agent = self.gw.snapshot().agents.get(name).cloned();
        let agent = agent.ok_or_else(|| err("invalid_grant", format!("workload {} maps to agent {name}, which is not registered", c.sub)))?;
        if agent.status != AgentStatus::Active {
            return Err(err("invalid_grant", format!("agent {} is {}", agent.id, agent.status.as_str())));
        }
        Ok((agent, c.iss))
    }

    /// What the issued token is bound to. An agent whose binding is `mtls`
    /// gets a token bound to the X.509-SVID of this connection, which must
    /// be its own. Otherwise the DPoP proof at the token endpoint must be
    /// signed by the agent's registered key, and the token is bound to it.
    /// Without a proof, only an agent registered for bearer tokens gets one,
    /// unbound (`None`); a client that does send a proof always gets the
    /// stronger, bound token.
    pub(crate) async fn confirmation(
        &self,
        headers: &HeaderMap,
        cert: Option<&PeerCertificate>,
        agent: &Agent,
        federated: bool,
        now: i64,
    ) -> Result<Option<Confirmation>, OAuthError> {
        if agent.token_binding == TokenBinding::Mtls {
            return match cert {
                Some(c) if c.spiffe_id == agent.id.as_str() => Ok(Some(Confirmation::certificate(c.x5t_s256.clone()))),
                Some(c) => Err(err("invalid_client", format!("the client certificate is {}'s, not {}'s", c.spiffe_id, agent.id))),
                None => Err(err(
                    "invalid_request",
                    format!(
                        "agent {} requires certificate-bound tokens (token binding mtls): request them over the gateway's TLS listener with the agent's X.509-SVID (`warden agent issue-cert {}`)",
                        agent.id,
                        agent.id.name()
                    ),
                )),
            };
        }
        let Some(proof) = headers.get("dpop") else {
            return match agent.token_binding {
                TokenBinding::Bearer => Ok(None),
                _ => Err(err("invalid_dpop_proof", format!("a DPoP proof header is required: {}", warden_gateway::bearer_refused(agent)))),
            };
        };
        let proof = proof.to_str().map_err(|_| err("invalid_dpop_proof", "the DPoP header is not ASCII"))?;
        let skew = self.gw.config.dpop_skew_secs;
        let p = verify_dpop_proof(proof, "POST", &self.token_endpoint(), None, now, skew).map_err(|e| err("invalid_dpop_proof", e.to_string()))?;
        // On a workload credential the key is the workload's own for the
        // session (it holds no registered key); otherwise it is the agent's.
        if !federated && AgentKey::from_registry(&agent.public_key).map(|k| k.thumbprint()).as_ref() != Ok(&p.jkt) {
            return Err(err("invalid_dpop_proof", "the DPoP key must be the agent's registered key"));
        }
        if !self.gw.first_use(&format!("dpop:{}:{}", p.jkt, p.jti), now + 2 * skew).await.map_err(unavailable)? {
            return Err(err("invalid_dpop_proof", "DPoP proof replayed"));
        }
        Ok(Some(Confirmation::key(p.jkt)))
    }

    /// The tools a `scope` parameter names; `None` when it names none.
    pub(crate) fn requested_scope(scope: Option<&String>) -> Result<Option<Vec<ToolRef>>, OAuthError> {
        match scope.map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s
                .split_whitespace()
                .map(|t| t.parse().map_err(|e: warden_core::CoreError| err("invalid_scope", e.to_string())))
                .collect::<Result<_, _>>()
                .map(Some),
        }
    }

    /// The resource (RFC 8707) the token is for: the MCP endpoint (default)
    /// or, when the egress proxy runs, the proxy.
    pub(crate) fn check_resource(&self, form: &HashMap<String, String>) -> Result<String, OAuthError> {
        let known: Vec<&String> = std::iter::once(&self.gw.config.resource).chain(&self.gw.config.egress_resource).collect();
        match form.get("resource").or(form.get("audience")) {
            None => Ok(self.gw.config.resource.clone()),
            Some(r) if known.contains(&r) => Ok(r.clone()),
            Some(_) => {
                Err(err("invalid_target", format!("this server issues tokens only for {}", known.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" and "))))
            }
        }
    }

    /// A token for `resource` (checked by [`Self::check_resource`]) on
    /// the agent's own credential.
    fn client_credentials(
        &self,
        form: &HashMap<String, String>,
        agent: &Agent,
        cnf: Option<Confirmation>,
        resource: String,
        now: i64,
    ) -> Result<AccessClaims, OAuthError> {
        self.grant(agent, Self::requested_scope(form.get("scope"))?, form.get("task").map(String::as_str), cnf, resource, now)
    }

    /// What `agent` gets for `requested` (all its tools when `None`).
    pub(crate) fn scope_for(&self, agent: &Agent, requested: Option<Vec<ToolRef>>) -> Result<Vec<ToolRef>, OAuthError> {
        let scope = match requested {
            Some(req) => {
                if let Some(bad) = req.iter().find(|t| !agent.may_use(t)) {
                    return Err(err("invalid_scope", format!("agent {} may not use {bad}", agent.id)));
                }
                req
            }
            None => agent.tools.clone(),
        };
        if scope.is_empty() {
            return Err(err("invalid_scope", "the agent has no tools to grant"));
        }
        Ok(scope)
    }

    /// A root grant to `agent` for `task` (a new one when `None`). Only for
    /// root agents: a sub-agent's authority derives from its parent's, so
    /// it gets tokens by exchanging a parent token, never on its own.
    pub(crate) fn grant(
        &self,
        agent: &Agent,
        requested: Option<Vec<ToolRef>>,
        task: Option<&str>,
        cnf: Option<Confirmation>,
        resource: String,
        now: i64,
    ) -> Result<AccessClaims, OAuthError> {
        if let Some(parent) = &agent.parent {
            return Err(err(
                "unauthorized_client",
                format!("agent {} is a sub-agent of {parent}: it gets tokens only by exchanging a token of its parent (grant_type={TOKEN_EXCHANGE})", agent.id),
            ));
        }
        let scope = self.scope_for(agent, requested)?;
        let iat = self.gw.snapshot().revocations.issue_time([agent.id.as_str()], now);
        let task = task.map_or_else(|| format!("task-{}", random_id()), str::to_string);
        if task.is_empty() || task.len() > 200 || task.chars().any(char::is_control) {
            return Err(err("invalid_request", "task must be 1-200 printable characters"));
        }
        Ok(AccessClaims {
            iss: self.issuer_url.clone(),
            sub: agent.owner.clone(),
            aud: resource,
            exp: now + self.ttl,
            iat,
            nbf: iat,
            jti: random_id(),
            client_id: agent.id.to_string(),
            scope: scope.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            act: Actor { sub: agent.id.to_string(), act: None },
            cnf,
            task,
            chain: vec![],
            fed: None,
            auth_time: None,
        })
    }

    /// RFC 8693 exchange of a parent's `/mcp` token for a sub-agent's token
    /// for `resource` (checked by [`Self::check_resource`]): a sub-agent may
    /// get a token for the egress proxy, where its own allowlist applies.
    fn exchange(
        &self,
        form: &HashMap<String, String>,
        child: &Agent,
        cnf: Option<Confirmation>,
        resource: String,
        now: i64,
    ) -> Result<AccessClaims, OAuthError> {
        if param(form, "subject_token_type")? != ACCESS_TOKEN_TYPE {
            return Err(err("invalid_request", format!("subject_token_type must be {ACCESS_TOKEN_TYPE}")));
        }
        if let Some(t) = form.get("requested_token_type")
            && t != ACCESS_TOKEN_TYPE
        {
            return Err(err("invalid_request", "only access tokens can be requested"));
        }
        let subject = param(form, "subject_token")?;
        let verifier = self.issuer.verifier(&self.issuer_url, &self.gw.config.resource);
        let parent = verifier.verify(subject, now).map_err(|e| err("invalid_grant", format!("subject_token: {e}")))?;
        // The same checks as a call with it: unrevoked, the registered
        // lineage, every agent in it active, bound to the parent's key.
        let parent = self.gw.authorize_claims(parent).map_err(|f| err("invalid_grant", format!("subject_token: {}", f.description)))?.claims;
        let snap = self.gw.snapshot();
        if child.parent.as_ref().map(|p| p.as_str()) != Some(parent.agent()) {
            return Err(err("invalid_grant", format!("agent {} is not registered as a sub-agent of {}", child.id, parent.agent())));
        }
        let requested = Self::requested_scope(form.get("scope"))?;
        let sub = SubAgent { id: child.id.as_str(), allowed: &child.tools, cnf: cnf.as_ref() };
        let iat = snap.revocations.issue_time(std::iter::once(child.id.as_str()).chain(parent.delegation()), now);
        let mut claims = attenuate(&parent, &sub, requested.as_deref(), self.ttl, iat, random_id()).map_err(|e| err("invalid_scope", e.to_string()))?;
        claims.aud = resource;
        Ok(claims)
    }

    /// An unexpired token this server issued, for any resource it serves.
    pub(crate) fn verify_own(&self, token: &str, now: i64) -> Option<AccessClaims> {
        let mcp = self.issuer.verifier(&self.issuer_url, &self.gw.config.resource);
        mcp.verify(token, now).ok().or_else(|| self.gw.config.egress_verifier.as_ref()?.verify(token, now).ok())
    }
}

async fn token(
    State(s): State<Arc<OAuth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    cert: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let now = now_secs();
    // A certificate that expired on a connection that outlived it proves nothing.
    let cert = cert.map(|Extension(c)| c).filter(|c| c.valid_at(now).is_some());
    if let Err(t) = s.gw.admit_stranger(peer.ip(), Door::Token) {
        return slow_down(t);
    }
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let mut ev = AuditEvent { action: Some(format!("token:{}", untrusted_text(&grant, 80))), ..Default::default() };
    let result = async {
        if let Some(why) = s.gw.registry_stale() {
            return Err(OAuthError { status: StatusCode::SERVICE_UNAVAILABLE, error: "temporarily_unavailable", description: why });
        }
        let resource = s.check_resource(&form)?;
        if grant == JWT_BEARER {
            let (agent, issuer) = s.workload_agent(&form, now)?;
            ev.agent = Some(agent.id.to_string());
            let cnf = s.confirmation(&headers, cert.as_ref(), &agent, true, now).await?;
            let mut claims = s.client_credentials(&form, &agent, cnf, resource, now)?;
            claims.fed = Some(issuer);
            return Ok((claims, None));
        }
        if grant == "authorization_code" {
            return s.authorization_code(&form, &headers, cert.as_ref(), &mut ev, now).await;
        }
        if grant == "refresh_token" {
            return s.refresh(&form, &headers, cert.as_ref(), &mut ev, now).await;
        }
        if grant != "client_credentials" && grant != TOKEN_EXCHANGE {
            return Err(err("unsupported_grant_type", format!("use client_credentials, authorization_code, refresh_token, {TOKEN_EXCHANGE} or {JWT_BEARER}")));
        }
        let agent = s.authenticate_client(&form, now).await?;
        ev.agent = Some(agent.id.to_string());
        let cnf = s.confirmation(&headers, cert.as_ref(), &agent, false, now).await?;
        let claims =
            if grant == "client_credentials" { s.client_credentials(&form, &agent, cnf, resource, now) } else { s.exchange(&form, &agent, cnf, resource, now) };
        claims.map(|c| (c, None))
    }
    .await;
    // Until the client is authenticated the request proves nothing about
    // who sent it: tallied for its source's aggregated record, not audited
    // one by one.
    let result = match result {
        Err(e) if ev.agent.is_none() => {
            let claimed = form.get("client_assertion").and_then(|a| assertion_client_id(a).ok());
            let claimed = claimed.as_deref().map_or(Claimed::Nothing, Claimed::Unverified);
            s.gw.stranger_failed(peer.ip(), Door::Token, &format!("{}: {}", e.error, e.description), claimed);
            return e.into_response();
        }
        r => r,
    };
    match result {
        Ok((claims, refresh_token)) => {
            ev.kind = Some(if claims.chain.is_empty() { EventKind::TokenIssued } else { EventKind::TokenExchanged });
            ev.decision = warden_core::Verdict::Allow;
            ev.subject = Some(claims.sub.clone());
            ev.task = Some(claims.task.clone());
            ev.token_id = Some(claims.jti.clone());
            let binding = match &claims.cnf {
                Some(Confirmation { jkt: Some(_), .. }) => TokenBinding::Dpop,
                Some(_) => TokenBinding::Mtls,
                None => TokenBinding::Bearer,
            };
            ev.token_binding = Some(binding);
            ev.reason = Some(format!("scope: {}", claims.scope));
            if !claims.chain.is_empty() {
                ev.delegation = claims.delegation().iter().map(|s| s.to_string()).collect();
            }
            if let Err(e) = s.gw.audit.record(ev).await {
                return err("temporarily_unavailable", e.to_string()).into_response();
            }
            let token = s.issuer.issue(&claims);
            let mut body = json!({
                "access_token": token,
                "token_type": if binding == TokenBinding::Dpop { "DPoP" } else { "Bearer" },
                "expires_in": claims.exp - now,
                "scope": claims.scope,
            });
            if grant == TOKEN_EXCHANGE {
                body["issued_token_type"] = ACCESS_TOKEN_TYPE.into();
            }
            if let Some(r) = refresh_token {
                body["refresh_token"] = r.into();
            }
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(e) => {
            ev.kind = Some(EventKind::TokenDenied);
            ev.decision = warden_core::Verdict::Deny;
            ev.reason = Some(format!("{}: {}", e.error, e.description));
            if let Err(a) = s.gw.audit.record(ev).await {
                return err("temporarily_unavailable", a.to_string()).into_response();
            }
            e.into_response()
        }
    }
}

/// RFC 7009: an agent revokes one of its own tokens (or one derived from it);
/// a host ends one of its sign-ins ([`OAuth::revoke_sign_in`]).
async fn revoke(State(s): State<Arc<OAuth>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Form(form): Form<HashMap<String, String>>) -> Response {
    let now = now_secs();
    if let Err(t) = s.gw.admit_stranger(peer.ip(), Door::Token) {
        return slow_down(t);
    }
    if !form.contains_key("client_assertion")
        && let Some(r) = s.revoke_sign_in(&form, now).await
    {
        return r;
    }
    let agent = match s.authenticate_client(&form, now).await {
        Ok(a) => a,
        Err(e) => {
            s.gw.stranger_failed(peer.ip(), Door::Token, &format!("revocation: {}: {}", e.error, e.description), Claimed::Nothing);
            return e.into_response();
        }
    };
    let Ok(token) = param(&form, "token") else {
        return err("invalid_request", "missing parameter token").into_response();
    };
    // Expired or foreign tokens: RFC 7009 says answer 200 and do nothing.
    let Some(claims) = s.verify_own(token, now) else { return StatusCode::OK.into_response() };
    if !claims.delegation().contains(&agent.id.as_str()) {
        return StatusCode::OK.into_response();
    }
    if let Err(e) = s.gw.store.revoke(RevocationKind::Token, &claims.jti, "revoked by the agent (RFC 7009)", now).await {
        return err("temporarily_unavailable", e.to_string()).into_response();
    }
    let ev = AuditEvent {
        kind: Some(EventKind::Revocation),
        agent: Some(agent.id.to_string()),
        token_id: Some(claims.jti.clone()),
        decision: warden_core::Verdict::Allow,
        reason: Some("token revoked by its holder".into()),
        ..Default::default()
    };
    if let Err(e) = s.gw.audit.record(ev).await {
        return err("temporarily_unavailable", e.to_string()).into_response();
    }
    let _ = s.gw.refresh().await;
    StatusCode::OK.into_response()
}

/// Every JWS algorithm an agent key may sign with (its type decides which).
fn algs() -> Vec<&'static str> {
    JwsAlg::ALL.map(JwsAlg::as_str).to_vec()
}

/// RFC 8414 metadata. `authorization_endpoint` and `response_types_supported`
/// are required by RFC 8414 and by the MCP SDKs' schemas; without
/// `[interactive]` the endpoint refuses every request, and
/// `grant_types_supported` names only the grants that work.
async fn as_metadata(State(s): State<Arc<OAuth>>) -> Json<Value> {
    let mut grants = vec!["client_credentials", TOKEN_EXCHANGE];
    let mut auth_methods = vec!["private_key_jwt"];
    if s.interactive.is_some() {
        grants.extend(["authorization_code", "refresh_token"]);
        auth_methods.push("none");
    }
    if !s.workload.is_empty() {
        grants.push(JWT_BEARER);
    }
    Json(json!({
        "issuer": s.issuer_url,
        "authorization_endpoint": format!("{}/oauth/authorize", s.issuer_url),
        "token_endpoint": s.token_endpoint(),
        "revocation_endpoint": format!("{}/oauth/revoke", s.issuer_url),
        "jwks_uri": format!("{}/jwks.json", s.issuer_url),
        "grant_types_supported": grants,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": s.interactive.is_some(),
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": algs(),
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": algs(),
        "dpop_signing_alg_values_supported": algs(),
        "tls_client_certificate_bound_access_tokens": s.mtls,
    }))
}

/// RFC 9728 metadata. `dpop_bound_access_tokens_required` is false: an
/// agent an operator registered for bearer tokens uses them here; every
/// other agent's tokens are DPoP-bound, which the token endpoint enforces.
async fn pr_metadata(State(s): State<Arc<OAuth>>) -> Json<Value> {
    Json(json!({
        "resource": s.gw.config.resource,
        "authorization_servers": [s.issuer_url],
        "bearer_methods_supported": ["header"],
        "dpop_bound_access_tokens_required": false,
        "dpop_signing_alg_values_supported": algs(),
        "resource_signing_alg_values_supported": ["EdDSA"],
        "resource_name": "Warden MCP gateway",
        "tls_client_certificate_bound_access_tokens": s.mtls,
    }))
}

async fn jwks(State(s): State<Arc<OAuth>>) -> Json<Value> {
    let mut jwk = s.issuer.public_key().jwk();
    jwk.kid = Some(s.issuer.public_key().kid());
    jwk.alg = Some("EdDSA".into());
    jwk.r#use = Some("sig".into());
    Json(json!({ "keys": [jwk] }))
}

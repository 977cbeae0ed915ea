//! Request authentication at the enforcement point: an access token for this
//! resource, unexpired, unrevoked, held by a registered active agent whose
//! whole delegation chain is active, presented either
//!
//! - DPoP-bound (`Authorization: DPoP …` plus a `DPoP` proof): a fresh proof
//!   signed by the key the token is bound to, which must be the agent's
//!   registered key; or
//! - certificate-bound (`Authorization: Bearer …` on a mutual-TLS
//!   connection, RFC 8705): a token whose `cnf.x5t#S256` is the thumbprint of
//!   the client certificate of this very connection; or
//! - as a bearer token (`Authorization: Bearer …`, RFC 6750): only a token
//!   bound to nothing (no `cnf`), of an agent whose registered binding is
//!   `bearer` now, re-read on every request. A bound token is never accepted
//!   as a bearer token (downgrade), nor an unbound one with the DPoP scheme.

use crate::peer::PeerCertificate;
use crate::state::Gateway;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use warden_core::{Agent, AgentStatus, TokenBinding};
use warden_identity::{AccessClaims, AgentKey, Confirmation, IdentityError, JwsAlg, verify_dpop_proof};

/// A caller that passed authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: AccessClaims,
    pub agent: Agent,
    /// How the request proved it holds the token: a DPoP proof of the
    /// token's key, or the token alone (an unbound token, or any token at
    /// the egress proxy, whose clients cannot sign proofs). Policy sees it
    /// as `context.token_binding`.
    pub binding: TokenBinding,
}

impl Authenticated {
    /// Whether the caller may use `tool` (a tool, or a server's
    /// `SERVER/:resources` / `SERVER/:prompts`): in its token's scope and
    /// among its agent's registered tools.
    pub(crate) fn grants(&self, tool: &warden_core::ToolRef) -> bool {
        self.claims.in_scope(tool) && self.agent.may_use(tool)
    }

    /// What policy sees of the calling agent, with its current risk score.
    pub(crate) fn agent_facts(&self, risk_score: i64) -> warden_policy::AgentFacts {
        let a = &self.agent;
        warden_policy::AgentFacts {
            id: a.id.to_string(),
            name: a.id.name().into(),
            owner: a.owner.clone(),
            purpose: a.purpose.clone(),
            autonomy: i64::from(a.autonomy),
            risk_score,
        }
    }
}

/// Why authentication failed, as an RFC 6750 / RFC 9449 challenge.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub status: StatusCode,
    /// `invalid_token`, `invalid_dpop_proof`, `insufficient_scope`, or none
    /// when no credentials were presented.
    pub error: Option<&'static str>,
    pub description: String,
    pub agent: Option<String>,
    pub token_id: Option<String>,
}

impl AuthFailure {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self { status: StatusCode::UNAUTHORIZED, error: Some(error), description: description.into(), agent: None, token_id: None }
    }

    fn with_claims(mut self, c: &AccessClaims) -> Self {
        self.agent = Some(c.agent().to_string());
        self.token_id = Some(c.jti.clone());
        self
    }

    /// The `WWW-Authenticate` header value: a `Bearer` challenge (RFC 6750;
    /// MCP clients read `resource_metadata` from it) and a `DPoP` one (RFC
    /// 9449 §7.1) with the same parameters, since either kind of token may be
    /// what the agent is registered for.
    pub fn challenge(&self, resource_metadata: &str, scope: Option<&str>) -> String {
        let mut params = format!(r#"resource_metadata="{resource_metadata}""#);
        if let Some(e) = self.error {
            params.push_str(&format!(r#", error="{e}", error_description="{}""#, self.description.replace(['"', '\\'], "'")));
        }
        if let Some(s) = scope {
            params.push_str(&format!(r#", scope="{s}""#));
        }
        let algs = JwsAlg::ALL.map(JwsAlg::as_str).join(" ");
        format!(r#"Bearer {params}, DPoP algs="{algs}", {params}"#)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthFailure> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthFailure::new("invalid_request", format!("more than one {name} header")));
    }
    v.to_str().map(Some).map_err(|_| AuthFailure::new("invalid_request", format!("{name} header is not ASCII")))
}

/// Verified tokens remembered; the cache is emptied when it reaches this.
const VERIFIED_CACHE: usize = 100_000;

impl Gateway {
    /// Signature, issuer and audience are checked once per token; lifetime on
    /// every use. Revocation and DPoP are the caller's, per request.
    fn verify_token(&self, token: &str, now: i64) -> Result<AccessClaims, IdentityError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(c) = self.verified.lock().get(&digest) {
            c.check_lifetime(now)?;
            return Ok(c.clone());
        }
        let claims = self.verifier.verify(token, now)?;
        let mut cache = self.verified.lock();
        if cache.len() >= VERIFIED_CACHE {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
        }
        cache.insert(digest, claims.clone());
        Ok(claims)
    }

    /// Authenticate one request to the resource with HTTP `method`, on a
    /// connection whose client presented `cert` (mutual TLS) or none. On a
    /// connection whose client proved an X.509-SVID, the token must be that
    /// agent's: a certificate is not lent to another agent's token. A
    /// certificate that expired on a connection that outlived it proves
    /// nothing.
    pub async fn authenticate(&self, headers: &HeaderMap, method: &str, cert: Option<&PeerCertificate>, now: i64) -> Result<Authenticated, AuthFailure> {
        let cert = cert.and_then(|c| c.valid_at(now));
        let a = self.authenticate_token(headers, method, cert, now).await?;
        match cert {
            Some(c) if c.spiffe_id != a.claims.agent() => {
                Err(AuthFailure::new("invalid_token", format!("the client certificate is {}'s; the token is {}'s", c.spiffe_id, a.claims.agent()))
                    .with_claims(&a.claims))
            }
            _ => Ok(a),
        }
    }

    /// The token of a request and its proof of possession.
    async fn authenticate_token(&self, headers: &HeaderMap, method: &str, cert: Option<&PeerCertificate>, now: i64) -> Result<Authenticated, AuthFailure> {
        let Some(auth) = header(headers, "authorization")? else {
            return Err(AuthFailure {
                status: StatusCode::UNAUTHORIZED,
                error: None,
                description: "authentication required".into(),
                agent: None,
                token_id: None,
            });
        };
        let (dpop, token) = match auth.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("dpop") => (true, t.trim()),
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => (false, t.trim()),
            _ => return Err(AuthFailure::new("invalid_token", "unsupported authorization scheme; expected DPoP or Bearer")),
        };
        let claims = self.verify_token(token, now).map_err(|e| AuthFailure::new("invalid_token", e.to_string()))?;
        let jkt = match (dpop, &claims.cnf) {
            (true, Some(Confirmation { jkt: Some(jkt), .. })) => jkt.clone(),
            (false, None) => return self.authorize_claims(claims),
            (false, Some(Confirmation { jkt: None, x5t_s256: Some(x5t) })) => {
                return match cert {
                    Some(c) if c.x5t_s256 == *x5t => self.authorize_claims(claims),
                    _ => Err(AuthFailure::new(
                        "invalid_token",
                        "this token is bound to a client certificate (RFC 8705): present it over a TLS connection with that certificate",
                    )
                    .with_claims(&claims)),
                };
            }
            (false, Some(_)) => {
                return Err(AuthFailure::new(
                    "invalid_token",
                    "this token is DPoP-bound: present it as `Authorization: DPoP <token>` with a DPoP proof signed by its key; a bound token is never accepted as a bearer token",
                )
                .with_claims(&claims));
            }
            (true, _) => {
                return Err(
                    AuthFailure::new("invalid_token", "this token is not DPoP-bound: present it as `Authorization: Bearer <token>`").with_claims(&claims)
                );
            }
        };
        let proof = header(headers, "dpop")?.ok_or_else(|| AuthFailure::new("invalid_dpop_proof", "missing DPoP proof header").with_claims(&claims))?;
        let skew = self.config.dpop_skew_secs;
        let p = verify_dpop_proof(proof, method, &self.config.resource, Some(token), now, skew)
            .map_err(|e| AuthFailure::new("invalid_dpop_proof", e.to_string()).with_claims(&claims))?;
        if p.jkt != jkt {
            return Err(AuthFailure::new("invalid_dpop_proof", IdentityError::DpopKeyMismatch.to_string()).with_claims(&claims));
        }
        let first = self.first_use(&format!("dpop:{}:{}", p.jkt, p.jti), now + 2 * skew).await.map_err(|e| AuthFailure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: None,
            description: e.to_string(),
            agent: Some(claims.agent().to_string()),
            token_id: Some(claims.jti.clone()),
        })?;
        if !first {
            return Err(AuthFailure::new("invalid_dpop_proof", IdentityError::DpopReplay.to_string()).with_claims(&claims));
        }
        self.authorize_claims(claims)
    }

    /// Authenticate a connection to the egress proxy: a token issued for the
    /// egress resource. Proxy clients cannot sign DPoP proofs, so here the
    /// token is a bearer credential within its minutes of lifetime; it is
    /// useless at `/mcp` (another audience) and still checked against
    /// revocations and the agent's status and key.
    pub fn authenticate_egress(&self, token: &str, now: i64) -> Result<Authenticated, AuthFailure> {
        let verifier = self.config.egress_verifier.as_ref().ok_or_else(|| AuthFailure::new("invalid_token", "the egress proxy is not configured"))?;
        let claims = verifier.verify(token, now).map_err(|e| AuthFailure::new("invalid_token", e.to_string()))?;
        Ok(Authenticated { binding: TokenBinding::Bearer, ..self.authorize_claims(claims)? })
    }

    /// The token is unrevoked, its delegation chain is exactly the agent's
    /// registered lineage (so a sub-agent acts only under its parent, and
    /// every control on an ancestor reaches it), every agent in it is
    /// active, and it is bound to the agent's current key or, unbound, the
    /// agent's binding is `bearer` now. Also checks the subject token of a
    /// token exchange.
    pub fn authorize_claims(&self, claims: AccessClaims) -> Result<Authenticated, AuthFailure> {
        let snap = self.snapshot();
        snap.revocations.check(&claims).map_err(|e| AuthFailure::new("invalid_token", e.to_string()).with_claims(&claims))?;
        let chain = claims.delegation();
        let lineage = registered_lineage(&snap.agents, claims.agent()).map_err(|e| AuthFailure::new("invalid_token", e).with_claims(&claims))?;
        if chain != lineage {
            return Err(AuthFailure::new(
                "invalid_token",
                format!(
                    "the token's delegation chain ({}) is not the agent's registered lineage ({}): a sub-agent acts only through a token exchanged from its parent's",
                    chain.join(" <- "),
                    lineage.join(" <- ")
                ),
            )
            .with_claims(&claims));
        }
        for id in &chain {
            let agent = &snap.agents[*id];
            if agent.status != AgentStatus::Active {
                return Err(AuthFailure::new("invalid_token", format!("agent {id} is {}", agent.status.as_str())).with_claims(&claims));
            }
        }
        let agent = snap.agents[claims.agent()].clone();
        let binding = match &claims.cnf {
            // A token granted on a workload credential is bound to the key
            // the workload proved for its session, not the registered one.
            Some(Confirmation { jkt: Some(_), x5t_s256: None }) if claims.fed.is_some() => TokenBinding::Dpop,
            Some(Confirmation { jkt: Some(jkt), x5t_s256: None }) => {
                let key = AgentKey::from_registry(&agent.public_key).map_err(|e| {
                    AuthFailure::new("invalid_token", format!("agent {}'s registered key is unusable ({e}); rotate its key", agent.id)).with_claims(&claims)
                })?;
                if key.thumbprint() != *jkt {
                    return Err(AuthFailure::new("invalid_token", "token is bound to a key that is no longer the agent's registered key").with_claims(&claims));
                }
                TokenBinding::Dpop
            }
            // Which certificate: the connection's, checked by the caller
            // that has one (`authenticate`).
            Some(Confirmation { jkt: None, x5t_s256: Some(_) }) => TokenBinding::Mtls,
            Some(_) => return Err(AuthFailure::new("invalid_token", "the token's cnf must name exactly one key or certificate").with_claims(&claims)),
            None if agent.token_binding == TokenBinding::Bearer => TokenBinding::Bearer,
            None => return Err(AuthFailure::new("invalid_token", bearer_refused(&agent)).with_claims(&claims)),
        };
        // An agent moved to mTLS uses certificate-bound tokens only.
        if agent.token_binding == TokenBinding::Mtls && binding != TokenBinding::Mtls {
            return Err(AuthFailure::new(
                "invalid_token",
                format!(
                    "agent {} requires certificate-bound tokens (token binding mtls): get one over the gateway's TLS listener with its X.509-SVID",
                    agent.id
                ),
            )
            .with_claims(&claims));
        }
        Ok(Authenticated { claims, agent, binding })
    }
}

/// Why an agent registered for DPoP-bound tokens gets no bearer token, and
/// what an operator can do about it (the token endpoint says the same).
pub fn bearer_refused(agent: &Agent) -> String {
    format!(
        "agent {} requires DPoP-bound tokens (token binding dpop): use a client that sends DPoP proofs (RFC 9449), or have an operator allow bearer tokens with `warden agent set-binding {} bearer`",
        agent.id,
        agent.id.name()
    )
}

/// Deepest delegation the registry may express; a longer parent chain is a
/// corrupt registry (or a cycle), and its agents get nothing.
const MAX_LINEAGE: usize = 16;

/// `agent` and its registered ancestors, the agent first: the only
/// delegation chain a token of `agent` may carry.
pub(crate) fn registered_lineage<'a>(agents: &'a HashMap<String, Agent>, agent: &'a str) -> Result<Vec<&'a str>, String> {
    let mut out: Vec<&str> = Vec::new();
    let mut cur = Some(agent);
    while let Some(id) = cur {
        if out.len() == MAX_LINEAGE || out.contains(&id) {
            return Err(format!("agent {agent} has no valid registered lineage (a parent cycle or more than {MAX_LINEAGE} levels)"));
        }
        let a = agents.get(id).ok_or_else(|| format!("unknown agent {id}"))?;
        out.push(a.id.as_str());
        cur = a.parent.as_ref().map(|p| p.as_str());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::AgentId;

    fn agent(name: &str, parent: Option<&str>) -> Agent {
        Agent {
            id: AgentId::new("td", name).unwrap(),
            owner: "alice@example.com".into(),
            purpose: "test".into(),
            tools: Vec::new(),
            autonomy: 1.try_into().unwrap(),
            status: AgentStatus::Active,
            public_key: "k".into(),
            token_binding: warden_core::TokenBinding::Dpop,
            parent: parent.map(|p| AgentId::new("td", p).unwrap()),
            created_at: 0,
        }
    }

    fn registry(agents: &[Agent]) -> HashMap<String, Agent> {
        agents.iter().map(|a| (a.id.to_string(), a.clone())).collect()
    }

    #[test]
    fn a_lineage_runs_from_the_agent_to_its_root() {
        let reg = registry(&[agent("root", None), agent("mid", Some("root")), agent("leaf", Some("mid"))]);
        let lineage = registered_lineage(&reg, "spiffe://td/agent/leaf").unwrap();
        assert_eq!(lineage, ["spiffe://td/agent/leaf", "spiffe://td/agent/mid", "spiffe://td/agent/root"]);
        assert_eq!(registered_lineage(&reg, "spiffe://td/agent/root").unwrap(), ["spiffe://td/agent/root"]);
    }

    #[test]
    fn a_missing_ancestor_or_a_cycle_has_no_lineage() {
        let reg = registry(&[agent("orphan", Some("gone"))]);
        assert!(registered_lineage(&reg, "spiffe://td/agent/orphan").unwrap_err().contains("unknown agent spiffe://td/agent/gone"));
        let reg = registry(&[agent("a", Some("b")), agent("b", Some("a"))]);
        assert!(registered_lineage(&reg, "spiffe://td/agent/a").unwrap_err().contains("cycle"));
        assert!(registered_lineage(&reg, "spiffe://td/agent/nobody").is_err());
    }

    use crate::enforce::tests::{AGENT, Fixture, METADATA};
    use axum::http::HeaderValue;

    fn headers(values: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, v) in values {
            h.append(*name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    async fn failure(fx: &Fixture, h: &HeaderMap) -> AuthFailure {
        fx.gw.authenticate(h, "POST", None, warden_core::clock::now_secs()).await.expect_err("refused")
    }

    #[tokio::test]
    async fn a_request_without_authorization_gets_a_challenge_without_an_error() {
        let fx = Fixture::new().await;
        let f = failure(&fx, &HeaderMap::new()).await;
        assert_eq!((f.status, f.error, f.description.as_str()), (StatusCode::UNAUTHORIZED, None, "authentication required"));
        assert_eq!(
            f.challenge(METADATA, None),
            format!(r#"Bearer resource_metadata="{METADATA}", DPoP algs="EdDSA ES256 RS256", resource_metadata="{METADATA}""#)
        );
    }

    #[tokio::test]
    async fn a_bound_token_sent_as_bearer_and_an_unbound_one_sent_as_dpop_are_refused() {
        let fx = Fixture::new().await;
        let token = fx.issuer.issue(&fx.claims());
        let f = failure(&fx, &headers(&[("authorization", &format!("Bearer {token}"))])).await;
        assert_eq!(f.error, Some("invalid_token"));
        assert!(f.description.starts_with("this token is DPoP-bound: present it as `Authorization: DPoP <token>`"), "{}", f.description);
        let unbound = fx.issuer.issue(&AccessClaims { cnf: None, ..fx.claims() });
        let f = failure(&fx, &headers(&[("authorization", &format!("DPoP {unbound}"))])).await;
        assert_eq!(f.description, "this token is not DPoP-bound: present it as `Authorization: Bearer <token>`");
        let f = failure(&fx, &headers(&[("authorization", "Basic Ym90OnB3")])).await;
        assert_eq!((f.error, f.description.as_str()), (Some("invalid_token"), "unsupported authorization scheme; expected DPoP or Bearer"));
    }

    #[tokio::test]
    async fn an_unbound_token_works_only_while_its_agent_is_registered_for_bearer_tokens() {
        let fx = Fixture::new().await;
        let token = fx.issuer.issue(&AccessClaims { cnf: None, ..fx.claims() });
        let bearer = headers(&[("authorization", &format!("Bearer {token}"))]);
        let f = failure(&fx, &bearer).await;
        assert_eq!(f.error, Some("invalid_token"));
        assert!(f.description.starts_with(&format!("agent {AGENT} requires DPoP-bound tokens (token binding dpop)")), "{}", f.description);
        assert!(f.description.ends_with("`warden agent set-binding bot bearer`"), "{}", f.description);
        let id: warden_core::AgentId = AGENT.parse().unwrap();
        fx.gw.store.set_token_binding(&id, TokenBinding::Bearer).await.unwrap();
        fx.gw.refresh().await.unwrap();
        let ok = fx.gw.authenticate(&bearer, "POST", None, warden_core::clock::now_secs()).await.unwrap();
        assert_eq!(ok.binding, TokenBinding::Bearer);
    }

    #[tokio::test]
    async fn two_authorization_headers_are_refused() {
        let fx = Fixture::new().await;
        let token = fx.issuer.issue(&fx.claims());
        let dpop = format!("DPoP {token}");
        let f = failure(&fx, &headers(&[("authorization", &dpop), ("authorization", &dpop)])).await;
        assert_eq!((f.status, f.error, f.description.as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_request"), "more than one authorization header"));
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_refused_before_its_proof_is_asked_for() {
        let fx = Fixture::new().await;
        let token = fx.issuer.issue(&AccessClaims { aud: "https://warden.test/egress".into(), ..fx.claims() });
        let f = failure(&fx, &headers(&[("authorization", &format!("DPoP {token}"))])).await;
        assert_eq!(f.error, Some("invalid_token"));
        assert_eq!(f.description, r#"wrong audience: token is for "https://warden.test/egress", this resource is "https://warden.test/mcp""#);
        assert_eq!(f.agent, None, "an unverified token names no agent");
    }

    #[tokio::test]
    async fn a_valid_token_without_a_proof_is_refused_and_names_its_agent() {
        let fx = Fixture::new().await;
        let claims = fx.claims();
        let token = fx.issuer.issue(&claims);
        let f = failure(&fx, &headers(&[("authorization", &format!("DPoP {token}"))])).await;
        assert_eq!((f.error, f.description.as_str()), (Some("invalid_dpop_proof"), "missing DPoP proof header"));
        assert_eq!((f.agent.as_deref(), f.token_id), (Some(AGENT), Some(claims.jti)), "a verified token names its agent");
    }

    #[tokio::test]
    async fn claims_bound_to_another_key_or_of_an_unknown_agent_are_not_authorized() {
        let fx = Fixture::new().await;
        assert!(fx.gw.authorize_claims(fx.claims()).is_ok());
        let other = AgentKey::from(warden_identity::Keypair::generate().public()).thumbprint();
        let f = fx.gw.authorize_claims(AccessClaims { cnf: Some(warden_identity::Confirmation::key(other)), ..fx.claims() }).unwrap_err();
        assert_eq!(f.description, "token is bound to a key that is no longer the agent's registered key");
        let stranger = warden_identity::Actor { sub: "spiffe://td/agent/nobody".into(), act: None };
        let f = fx.gw.authorize_claims(AccessClaims { act: stranger, ..fx.claims() }).unwrap_err();
        assert_eq!(f.description, "unknown agent spiffe://td/agent/nobody");
    }

    #[tokio::test]
    async fn the_egress_door_refuses_tokens_when_it_is_not_configured() {
        let fx = Fixture::new().await;
        let f = fx.gw.authenticate_egress(&fx.issuer.issue(&fx.claims()), warden_core::clock::now_secs()).unwrap_err();
        assert_eq!((f.error, f.description.as_str()), (Some("invalid_token"), "the egress proxy is not configured"));
    }

    #[test]
    fn a_challenge_carries_the_error_with_quotes_and_backslashes_escaped_and_the_scope() {
        let f = AuthFailure {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            description: r#"the "crm" tool \ export"#.into(),
            agent: None,
            token_id: None,
        };
        assert_eq!(
            f.challenge("https://m", Some("crm/export")),
            concat!(
                r#"Bearer resource_metadata="https://m", error="insufficient_scope", error_description="the 'crm' tool ' export", scope="crm/export", "#,
                r#"DPoP algs="EdDSA ES256 RS256", resource_metadata="https://m", error="insufficient_scope", error_description="the 'crm' tool ' export", scope="crm/export""#
            )
        );
    }
}

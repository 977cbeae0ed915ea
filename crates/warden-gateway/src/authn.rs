//! Request authentication at the enforcement point: a DPoP-bound access token
//! (`Authorization: DPoP …` plus a `DPoP` proof) for this resource, unexpired,
//! unrevoked, held by a registered active agent whose whole delegation chain
//! is active, with a fresh proof signed by the key the token is bound to.

use crate::state::Gateway;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use warden_core::{Agent, AgentStatus};
use warden_identity::{AccessClaims, IdentityError, verify_dpop_proof};

/// A caller that passed authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: AccessClaims,
    pub agent: Agent,
}

impl Authenticated {
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

    /// The `WWW-Authenticate` header value.
    pub fn challenge(&self, resource_metadata: &str, scope: Option<&str>) -> String {
        let mut h = format!(r#"DPoP algs="EdDSA", resource_metadata="{resource_metadata}""#);
        if let Some(e) = self.error {
            h.push_str(&format!(r#", error="{e}", error_description="{}""#, self.description.replace(['"', '\\'], "'")));
        }
        if let Some(s) = scope {
            h.push_str(&format!(r#", scope="{s}""#));
        }
        h
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
        if let Some(c) = self.verified.lock().expect("token cache lock").get(&digest) {
            c.check_lifetime(now)?;
            return Ok(c.clone());
        }
        let claims = self.verifier.verify(token, now)?;
        let mut cache = self.verified.lock().expect("token cache lock");
        if cache.len() >= VERIFIED_CACHE {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
        }
        cache.insert(digest, claims.clone());
        Ok(claims)
    }

    /// Authenticate one request to the resource with HTTP `method`.
    pub async fn authenticate(&self, headers: &HeaderMap, method: &str, now: i64) -> Result<Authenticated, AuthFailure> {
        let Some(auth) = header(headers, "authorization")? else {
            return Err(AuthFailure {
                status: StatusCode::UNAUTHORIZED,
                error: None,
                description: "authentication required".into(),
                agent: None,
                token_id: None,
            });
        };
        let token = match auth.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("dpop") => t.trim(),
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => {
                return Err(AuthFailure::new("invalid_token", "bearer tokens are not accepted: use a DPoP-bound token with the DPoP scheme (RFC 9449)"));
            }
            _ => return Err(AuthFailure::new("invalid_token", "unsupported authorization scheme; expected DPoP")),
        };
        let claims = self.verify_token(token, now).map_err(|e| AuthFailure::new("invalid_token", e.to_string()))?;
        let proof = header(headers, "dpop")?.ok_or_else(|| AuthFailure::new("invalid_dpop_proof", "missing DPoP proof header").with_claims(&claims))?;
        let skew = self.config.dpop_skew_secs;
        let p = verify_dpop_proof(proof, method, &self.config.resource, Some(token), now, skew)
            .map_err(|e| AuthFailure::new("invalid_dpop_proof", e.to_string()).with_claims(&claims))?;
        if p.jkt != claims.cnf.jkt {
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
        self.authorize_claims(claims)
    }

    /// The token is unrevoked, every agent in its delegation chain is
    /// registered and active, and it is bound to the agent's current key.
    fn authorize_claims(&self, claims: AccessClaims) -> Result<Authenticated, AuthFailure> {
        let snap = self.snapshot();
        snap.revocations.check(&claims).map_err(|e| AuthFailure::new("invalid_token", e.to_string()).with_claims(&claims))?;
        for id in claims.delegation() {
            let agent = snap.agents.get(id).ok_or_else(|| AuthFailure::new("invalid_token", format!("unknown agent {id}")).with_claims(&claims))?;
            if agent.status != AgentStatus::Active {
                return Err(AuthFailure::new("invalid_token", format!("agent {id} is {}", agent.status.as_str())).with_claims(&claims));
            }
        }
        let agent = snap.agents.get(claims.agent()).expect("checked above").clone();
        if warden_identity::thumbprint(&agent.public_key) != claims.cnf.jkt {
            return Err(AuthFailure::new("invalid_token", "token is bound to a key that is no longer the agent's registered key").with_claims(&claims));
        }
        Ok(Authenticated { claims, agent })
    }
}

use crate::IdentityError;
use crate::agent_key::AgentKey;
use crate::jose::split_jws;
use serde::{Deserialize, Serialize};

/// Claims of an RFC 7523 `private_key_jwt` client assertion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientAssertion {
    pub iss: String,
    pub sub: String,
    pub aud: serde_json::Value,
    pub exp: i64,
    #[serde(default)]
    pub iat: Option<i64>,
    pub jti: String,
}

/// Longest lifetime accepted for an assertion; bounds the replay cache.
pub const MAX_ASSERTION_LIFETIME: i64 = 300;

/// The `iss`/`sub` (client id) an assertion claims, before verifying it, so
/// the caller can look up the registered key.
pub fn assertion_client_id(assertion: &str) -> Result<String, IdentityError> {
    let jws = split_jws(assertion).map_err(|e| IdentityError::Assertion(e.to_string()))?;
    let claims = jws.unverified_claims()?;
    claims.get("sub").and_then(|v| v.as_str()).map(str::to_string).ok_or_else(|| IdentityError::Assertion("missing sub".into()))
}

/// Verify an assertion signed by `key` (the agent's registered key, whose
/// type fixes the algorithm) for `audience` (the token endpoint or issuer). Returns the claims; the caller must record `jti` against replay.
pub fn verify_client_assertion(assertion: &str, key: &AgentKey, audiences: &[&str], now: i64) -> Result<ClientAssertion, IdentityError> {
    let jws = split_jws(assertion).map_err(|e| IdentityError::Assertion(e.to_string()))?;
    let c: ClientAssertion = jws.verify(key).map_err(|e| IdentityError::Assertion(e.to_string()))?;
    if c.iss != c.sub {
        return Err(IdentityError::Assertion("iss and sub must both be the client id".into()));
    }
    let aud_ok = match &c.aud {
        serde_json::Value::String(a) => audiences.contains(&a.as_str()),
        serde_json::Value::Array(list) => list.iter().any(|a| a.as_str().is_some_and(|a| audiences.contains(&a))),
        _ => false,
    };
    if !aud_ok {
        return Err(IdentityError::Assertion(format!("audience must be one of {audiences:?}")));
    }
    if c.exp <= now {
        return Err(IdentityError::Assertion("expired".into()));
    }
    if c.exp - c.iat.unwrap_or(now).min(now) > MAX_ASSERTION_LIFETIME {
        return Err(IdentityError::Assertion(format!("lifetime exceeds {MAX_ASSERTION_LIFETIME} s")));
    }
    if c.jti.is_empty() || c.jti.len() > 256 {
        return Err(IdentityError::Assertion("jti must be 1-256 characters".into()));
    }
    Ok(c)
}

use crate::{CoreError, ToolRef, validate_name};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// SPIFFE-style workload id of an agent: `spiffe://TRUST_DOMAIN/agent/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    pub fn new(trust_domain: &str, name: &str) -> Result<Self, CoreError> {
        validate_name(name)?;
        let td_ok = !trust_domain.is_empty()
            && trust_domain.len() <= 255
            && trust_domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
        if !td_ok {
            return Err(CoreError::AgentId(format!("spiffe://{trust_domain}/agent/{name}")));
        }
        Ok(Self(format!("spiffe://{trust_domain}/agent/{name}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn trust_domain(&self) -> &str {
        self.0["spiffe://".len()..].split('/').next().unwrap_or_default()
    }

    /// The NAME part, unique within the trust domain.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl FromStr for AgentId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let rest = s.strip_prefix("spiffe://").ok_or_else(|| CoreError::AgentId(s.into()))?;
        let mut parts = rest.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(td), Some("agent"), Some(name)) => Self::new(td, name).map_err(|_| CoreError::AgentId(s.into())),
            _ => Err(CoreError::AgentId(s.into())),
        }
    }
}

impl TryFrom<String> for AgentId {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        s.parse()
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> String {
        id.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_enum!(
    /// Lifecycle state of an agent. Only `Active` agents get tokens or make calls.
    AgentStatus, "status", "active, suspended, revoked", {
    Active => "active",
    Suspended => "suspended",
    Revoked => "revoked",
});

string_enum!(
    /// How the tokens an agent gets are bound to it. `Dpop` (the default)
    /// binds every token to the agent's key (RFC 9449): a stolen token is
    /// useless without the key. `Bearer` lets clients that cannot sign DPoP
    /// proofs (most MCP SDKs) use unbound tokens, which an operator allows
    /// per agent. `Mtls` binds every token to the agent's X.509-SVID on a
    /// mutual-TLS connection (RFC 8705): it is used only over a connection
    /// with that certificate.
    TokenBinding, "token binding", "dpop, bearer, mtls", {
    Dpop => "dpop",
    Bearer => "bearer",
    Mtls => "mtls",
});

#[expect(clippy::derivable_impls, reason = "string_enum! makes the enum and derives no Default")]
impl Default for TokenBinding {
    fn default() -> Self {
        Self::Dpop
    }
}

/// Autonomy level 0 (assisted) … 3 (autonomous within bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Autonomy(u8);

impl Autonomy {
    pub fn level(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Autonomy {
    type Error = CoreError;
    fn try_from(v: i64) -> Result<Self, CoreError> {
        if (0..=3).contains(&v) { Ok(Self(v as u8)) } else { Err(CoreError::Autonomy(v)) }
    }
}

impl From<Autonomy> for i64 {
    fn from(a: Autonomy) -> i64 {
        a.0 as i64
    }
}

/// A registered agent: one cryptographic identity, one accountable human owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub owner: String,
    pub purpose: String,
    /// Tools this agent may ever be granted (`SERVER/TOOL` or `SERVER/*`).
    pub tools: Vec<ToolRef>,
    pub autonomy: Autonomy,
    pub status: AgentStatus,
    /// Public key as its RFC 7638 canonical JWK (Ed25519, P-256 or RSA;
    /// `warden_identity::AgentKey::from_registry` reads it).
    pub public_key: String,
    /// Whether its tokens must be DPoP-bound or may be bearer tokens.
    #[serde(default)]
    pub token_binding: TokenBinding,
    /// The agent this one may act for as a sub-agent (RFC 8693 delegation).
    pub parent: Option<AgentId>,
    /// Unix seconds of the last key rotation or registration; tokens issued
    /// before a revocation cut-off are rejected.
    pub created_at: i64,
}

impl Agent {
    /// Whether the agent's allow-list covers `tool`.
    pub fn may_use(&self, tool: &ToolRef) -> bool {
        self.tools.iter().any(|t| t.covers(tool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_round_trip_and_rejects_bad_input() {
        let id = AgentId::new("example.org", "billing-bot").unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/agent/billing-bot");
        assert_eq!(id.name(), "billing-bot");
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.as_str().parse::<AgentId>().unwrap(), id);
        for bad in ["spiffe://x/agent/", "spiffe://x/user/a", "http://x/agent/a", "spiffe://X/agent/a", "spiffe://x/agent/a/b", "spiffe://x/agent/a__b"] {
            assert!(bad.parse::<AgentId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn autonomy_is_bounded() {
        assert!(Autonomy::try_from(3).is_ok());
        assert_eq!(Autonomy::try_from(4), Err(CoreError::Autonomy(4)));
        assert!(Autonomy::try_from(-1).is_err());
    }
}

//! Domain types shared by every Warden component: agent identities, tools,
//! decisions, inspection findings and audit events. Pure data and validation, no IO.

mod agent;
mod approval;
mod decision;
mod event;
mod findings;
mod json;
mod tool;

pub use agent::{Agent, AgentId, AgentStatus, Autonomy};
pub use approval::{Approval, ApprovalStatus};
pub use decision::{Decision, Obligation};
pub use event::{AuditEvent, EventKind};
pub use findings::Findings;
pub use json::{canonical_json, sha256_hex};
pub use tool::{ActionClass, Sensitivity, Tool, ToolRef, ToolStatus};

/// Errors raised when input does not satisfy the domain's rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("invalid agent id {0:?}: expected spiffe://TRUST_DOMAIN/agent/NAME with NAME of [a-z0-9._-], 1-64 chars")]
    AgentId(String),
    #[error("invalid name {0:?}: use 1-64 characters of [a-z0-9._-], starting with a letter or digit")]
    Name(String),
    #[error("invalid tool reference {0:?}: expected SERVER/TOOL (or SERVER/* in an allow-list)")]
    ToolRef(String),
    #[error("invalid {field} {value:?}: expected one of {allowed}")]
    Enum { field: &'static str, value: String, allowed: &'static str },
    #[error("autonomy level {0} is out of range: use 0 (assisted) to 3 (autonomous within bounds)")]
    Autonomy(i64),
    #[error("approval {id} cannot be decided: {why}")]
    Approval { id: String, why: String },
    #[error("invalid redaction rule {rule:?}: {why}")]
    Redaction { rule: String, why: String },
}

/// A registry name (agent name, server name): lowercase, no `/`, no `__`
/// so that federated tool names `SERVER__TOOL` split unambiguously.
pub fn validate_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && !name.contains("__");
    if ok { Ok(()) } else { Err(CoreError::Name(name.to_string())) }
}

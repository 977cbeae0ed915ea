//! Domain types shared by every Warden component: agent identities, tools,
//! decisions, approvals, kill switches, operator roles, inspection findings
//! and audit events. Pure data and validation, no IO; `clock` is the one
//! wall clock the IO crates read (pure code takes `now` as an argument).

/// A closed set of lowercase names: the enum, `as_str`, `FromStr` (with an
/// error listing what is allowed) and `Display`.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal, $allowed:literal, { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::CoreError;
            fn from_str(s: &str) -> Result<Self, $crate::CoreError> {
                match s {
                    $($s => Ok(Self::$variant),)+
                    _ => Err($crate::CoreError::Enum { field: $field, value: s.into(), allowed: $allowed }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod agent;
mod approval;
pub mod clock;
mod decision;
mod event;
mod findings;
mod json;
pub mod jsonrpc_codes;
mod kill;
pub mod mcp_headers;
mod operator;
pub mod sse;
mod text;
mod tool;

pub use agent::{Agent, AgentId, AgentStatus, Autonomy, TokenBinding};
pub use approval::{Approval, ApprovalStatus};
pub use decision::{Decision, Obligation};
pub use event::{AuditEvent, EventKind, Verdict};
pub use findings::Findings;
pub use json::{canonical_json, sha256_hex};
pub use kill::{Kill, KillScope};
pub use operator::{Operator, Role};
pub use text::untrusted_text;
pub use tool::{ActionClass, Sensitivity, TargetKind, Tool, ToolRef, ToolStatus};

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

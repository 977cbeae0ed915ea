//! Why an operator action was refused, each message saying what to do.
//! Transports map these once: the CLI prints them, the admin API turns them
//! into a status (bad input 400, the store's not found 404 and conflict
//! 409, an unavailable database or audit log 503).

use std::path::PathBuf;
use warden_audit::PublishError;
use warden_core::{AgentId, CoreError, ToolRef};
use warden_gateway::AuditUnavailable;
use warden_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A name, id, tool reference or level that does not parse.
    #[error(transparent)]
    Invalid(#[from] CoreError),
    #[error("a non-empty reason is required to {0} (`--reason`, or \"reason\" in the request body; it is recorded in the audit log)")]
    ReasonRequired(Why),
    #[error(
        "name one tool (SERVER/TOOL); to stop every tool of {server}, engage a server kill switch instead (scope \"server\", `warden kill server {server}`)"
    )]
    WildcardKill { server: String },
    #[error("name the owner whose agents to stop (an owner kill switch needs a non-empty target)")]
    OwnerRequired,
    #[error("classify one tool at a time (SERVER/TOOL), not {0}")]
    WildcardTool(ToolRef),
    #[error("every agent needs an accountable human and a stated purpose: give a non-empty owner and purpose")]
    OwnerAndPurposeRequired,
    #[error("the parent agent {0} was not found: register it first, or name a registered parent")]
    UnknownParent(AgentId),
    #[error("no OS randomness for the operator token ({0}); retry once the system's entropy source is available")]
    Randomness(String),
    #[error("{0} is not an operator signed in at the identity provider (sso:HUMAN); a registered operator's token ends with `warden operator remove {0}`")]
    NotSignedIn(String),
    #[error("reading the newest published checkpoint (audit.publish_checkpoints_to): {0}")]
    Publication(#[from] PublishError),
    #[error("published checkpoint {} is for the log {origin:?}, not this one ({expected:?}): point audit.publish_checkpoints_to at this log's own directory", path.display())]
    ForeignCheckpoint { path: PathBuf, origin: String, expected: String },
    #[error("agent {agent} is {status}: certificates are issued only to active agents (`warden agent resume` first)")]
    NotActive { agent: AgentId, status: &'static str },
    #[error("issuing the certificate: {0}")]
    Certificate(#[from] warden_identity::IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
}

/// What a required reason is for, as its error message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Suspend,
    Revoke,
    ChangeAutonomy,
    ChangeTokenBinding,
    RevokeTokens,
    EngageKill,
    LiftKill,
    Deny,
    PushPolicy,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Suspend => "suspend an agent",
            Self::Revoke => "revoke an agent",
            Self::ChangeAutonomy => "change an agent's autonomy",
            Self::ChangeTokenBinding => "change an agent's token binding",
            Self::RevokeTokens => "revoke tokens",
            Self::EngageKill => "engage a kill switch",
            Self::LiftKill => "lift a kill switch, saying why it is safe",
            Self::Deny => "deny a held call",
            Self::PushPolicy => "push a policy bundle",
        })
    }
}

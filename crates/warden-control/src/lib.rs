//! The Policy Administrator (NIST SP 800-207): every operator action —
//! registering, suspending and revoking agents, classifying and approving
//! tools, deciding held calls, engaging and lifting kill switches, revoking
//! tokens, managing operators, pushing policy, verifying the audit log —
//! implemented once, over the store and the audit sink. The CLI and the
//! admin API only parse input, call a [`ControlPlane`] method (or
//! [`verify_audit`]) and render its typed result, so both validate alike
//! and write the same audit records.
//!
//! Does IO (the store, the audit log). A control plane inside a running
//! gateway ([`ControlPlane::in_gateway`]) makes a change hold in that
//! process before it answers; a standalone one (the CLI) writes the store,
//! and every gateway picks the change up at its next registry refresh.

mod agents;
mod error;
mod kills;
mod people;
mod tools;
mod verify;

pub use agents::{AutonomyChange, NewAgent, Revocation, ValidAgent};
pub use error::{ControlError, Why};
pub use people::PolicyPush;
pub use tools::Classification;
pub use verify::{Publication, Published, Verification, verify_audit};

use std::sync::Arc;
use warden_core::{AgentId, AuditEvent, EventKind, Operator};
use warden_gateway::{AuditSink, Gateway};
use warden_store::Store;

/// The door an operator came through; audit records of the admin API say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `warden …` on a host with access to the database.
    Cli,
    /// `/admin/v1` with an operator's bearer token.
    AdminApi,
}

/// Who performs an action, as audit records and kill switches name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    subject: String,
    via: Via,
}

impl Actor {
    /// An operator authenticated by their token.
    pub fn operator(op: &Operator, via: Via) -> Self {
        Self { subject: op.subject(), via }
    }

    /// The OS user running the CLI. Database access is gateway-administrator
    /// access (ARCHITECTURE.md, "Insiders with database access"), so the CLI
    /// asks no token for registry changes; only approvals need one.
    pub fn local_user() -> Self {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Self { subject: format!("operator:{user}"), via: Via::Cli }
    }

    /// `operator:NAME`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The audit record's subject: the operator, and the door when it is
    /// the admin API.
    fn audit_subject(&self) -> String {
        match self.via {
            Via::Cli => self.subject.clone(),
            Via::AdminApi => format!("{} (admin api)", self.subject),
        }
    }
}

/// Accept `NAME` (in `trust_domain`) or a full SPIFFE id.
pub fn agent_id(trust_domain: &str, name: &str) -> Result<AgentId, ControlError> {
    let id = if name.starts_with("spiffe://") { name.parse()? } else { AgentId::new(trust_domain, name)? };
    Ok(id)
}

/// The operator actions, over one store and one audit sink.
pub struct ControlPlane {
    store: Store,
    audit: AuditSink,
    trust_domain: String,
    /// The enforcement point in this process, when there is one.
    gateway: Option<Arc<Gateway>>,
}

impl ControlPlane {
    /// Outside a gateway (the CLI): changes reach running gateways through
    /// the store.
    pub fn standalone(store: Store, audit: AuditSink, trust_domain: &str) -> Self {
        Self { store, audit, trust_domain: trust_domain.to_string(), gateway: None }
    }

    /// Inside a running gateway (the admin API): a kill switch holds for
    /// the next call checked, other changes after one registry refresh,
    /// both before the action returns.
    pub fn in_gateway(gw: Arc<Gateway>, trust_domain: &str) -> Self {
        Self { store: gw.store.clone(), audit: gw.audit.clone(), trust_domain: trust_domain.to_string(), gateway: Some(gw) }
    }

    #[cfg(test)]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// `NAME` or a SPIFFE id, in this control plane's trust domain.
    pub fn agent_id(&self, name: &str) -> Result<AgentId, ControlError> {
        agent_id(&self.trust_domain, name)
    }

    /// Record an operator's action once it is stored. A record that cannot
    /// be written fails the action, so the operator learns that the change
    /// is in force but unaudited instead of taking it for a clean one.
    async fn record(&self, actor: &Actor, kind: EventKind, action: &str, mut ev: AuditEvent) -> Result<(), ControlError> {
        ev.kind = Some(kind);
        ev.subject = Some(actor.audit_subject());
        ev.action = Some(action.to_string());
        self.audit.record(ev).await?;
        Ok(())
    }

    /// Let the gateway in this process see a registry change now. A failed
    /// refresh is not the action's failure: the change is stored, and the
    /// next poll (or the staleness bound, failing closed) catches up.
    async fn settle(&self) {
        if let Some(gw) = &self.gateway
            && let Err(e) = gw.refresh().await
        {
            tracing::warn!(error = %e, "registry refresh after an operator action failed; the next poll catches up");
        }
    }
}

/// A reason an operator must give, trimmed.
pub(crate) fn required(reason: &str, why: Why) -> Result<&str, ControlError> {
    let t = reason.trim();
    if t.is_empty() { Err(ControlError::ReasonRequired(why)) } else { Ok(t) }
}

#[cfg(test)]
mod tests;

/// The record of an operator's change that went ahead, with why.
pub(crate) fn change(reason: String) -> AuditEvent {
    AuditEvent { decision: warden_core::Verdict::Allow, reason: Some(reason), ..Default::default() }
}

//! Decisions only people make: held calls approved or denied (by an
//! operator authenticated by their token), operators added and removed,
//! their sign-in sessions ended, policy bundles pushed.

use crate::{Actor, ControlError, ControlPlane, Via, Why, required};
use warden_core::{Approval, AuditEvent, EventKind, Operator, Role, sha256_hex};

/// A tested policy bundle to store as the next version.
#[derive(Debug, Clone)]
pub struct PolicyPush<'a> {
    /// The bundle's sources as stored (JSON).
    pub sources_json: &'a str,
    /// SHA-256 of `sources_json`, hex.
    pub sha256: &'a str,
    pub policy_ids: Vec<String>,
    pub reason: &'a str,
}

impl ControlPlane {
    /// Approve or deny a held call as `approver` (the two-person rule counts
    /// operators, so only an authenticated one may decide). A denial needs
    /// a reason; the held call sees the decision within 50 ms.
    pub async fn decide_approval(&self, approver: &Operator, via: Via, id: &str, approve: bool, reason: &str) -> Result<Approval, ControlError> {
        let reason = if approve { reason.trim() } else { required(reason, Why::Deny)? };
        let a = self.store.decide_approval(id, approver, approve, reason, warden_core::clock::now_ms()).await?;
        let ev = a.decision_event(approver, approve, reason);
        let action = ev.action.clone().unwrap_or_default();
        self.record(&Actor::operator(approver, via), EventKind::ApprovalDecided, &action, ev).await?;
        Ok(a)
    }

    /// Add an operator; returns their token (only its SHA-256 is stored).
    pub async fn add_operator(&self, actor: &Actor, name: &str, role: &str) -> Result<(Role, String), ControlError> {
        warden_core::validate_name(name)?;
        let role: Role = role.parse()?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| ControlError::Randomness(e.to_string()))?;
        let token = format!("wdn_{}", hex::encode(secret));
        self.store.add_operator(name, role, &sha256_hex(token.as_bytes()), warden_core::clock::now_ms()).await?;
        self.record(actor, EventKind::OperatorChanged, "operator:add", reason(format!("operator {name} added as {role}"))).await?;
        Ok((role, token))
    }

    /// Remove an operator; their token stops working at once.
    pub async fn remove_operator(&self, actor: &Actor, name: &str) -> Result<(), ControlError> {
        self.store.remove_operator(name).await?;
        self.record(actor, EventKind::OperatorChanged, "operator:remove", reason(format!("operator {name} removed"))).await
    }

    /// End operator `name`'s sign-in sessions at the IdP (`sso:HUMAN`), every
    /// one started up to now, on every replica before its next request
    /// (a registered operator's token ends with `remove_operator`).
    pub async fn end_operator_sessions(&self, actor: &Actor, name: &str) -> Result<(), ControlError> {
        if !name.starts_with("sso:") {
            return Err(ControlError::NotSignedIn(name.into()));
        }
        let now = warden_core::clock::now_secs();
        self.store.revoke(warden_store::RevocationKind::Operator, name, "sessions ended by an operator", now).await?;
        self.settle().await;
        self.record(actor, EventKind::OperatorChanged, "operator:sessions-ended", reason(format!("every sign-in session of operator {name} ended"))).await
    }

    /// End one sign-in session (its holder signing out).
    pub async fn sign_out(&self, actor: &Actor, session: &str) -> Result<(), ControlError> {
        let now = warden_core::clock::now_secs();
        self.store.revoke(warden_store::RevocationKind::Token, &warden_identity::operator_session_id(session), "signed out", now).await?;
        self.settle().await;
        self.record(actor, EventKind::OperatorChanged, "operator:sign-out", reason("signed out of the dashboard".to_string())).await
    }

    /// Store a tested bundle as the next policy version (every gateway on
    /// the database switches to it); returns the version.
    pub async fn push_policy(&self, actor: &Actor, p: PolicyPush<'_>) -> Result<i64, ControlError> {
        let why = required(p.reason, Why::PushPolicy)?;
        let version = self.store.push_policy(p.sources_json, p.sha256, actor.subject(), warden_core::clock::now_ms()).await?;
        self.settle().await;
        let ev = AuditEvent { args_sha256: Some(p.sha256.to_string()), policies: p.policy_ids, ..crate::change(why.to_string()) };
        self.record(actor, EventKind::PolicyChanged, &format!("policy:push v{version}"), ev).await?;
        Ok(version)
    }
}

fn reason(text: String) -> AuditEvent {
    crate::change(text)
}

//! A tool call held for human approval: what the approver sees, and the
//! rules of deciding it. An approval covers one agent, one tool and the exact
//! arguments (their canonical SHA-256), is used once, and expires (timeout =
//! deny). A policy may ask for two distinct approvers (two-person rule).

use crate::{CoreError, ToolRef};
use serde::{Deserialize, Serialize};

string_enum!(ApprovalStatus, "approval status", "pending, approved, denied, expired, used", {
    Pending => "pending",
    Approved => "approved",
    Denied => "denied",
    Expired => "expired",
    // Approved and consumed by the call it was for.
    Used => "used",
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    /// SPIFFE id of the calling agent, and its accountable owner.
    pub agent: String,
    pub owner: String,
    pub task: String,
    pub tool: ToolRef,
    /// SHA-256 of the canonical arguments: the approval covers exactly these.
    pub args_sha256: String,
    /// The arguments with personal data and secrets masked, for the approver.
    pub args_redacted: serde_json::Value,
    /// Why approval is needed (the policies' `@approval` texts).
    pub reason: String,
    pub policies: Vec<String>,
    /// The agent's risk score when the call was held.
    pub risk: u8,
    /// Distinct approvers needed (2 = two-person rule).
    pub required: u8,
    pub approvers: Vec<String>,
    pub status: ApprovalStatus,
    /// Who denied it, or gave the final approval.
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl Approval {
    /// The audit record of `approver`'s decision on it.
    pub fn decision_event(&self, approver: &str, approve: bool, reason: &str) -> crate::AuditEvent {
        crate::AuditEvent {
            kind: Some(crate::EventKind::ApprovalDecided),
            subject: Some(approver.to_string()),
            action: Some(if approve { "approval:approve" } else { "approval:deny" }.into()),
            agent: Some(self.agent.clone()),
            tool: Some(self.tool.to_string()),
            args_sha256: Some(self.args_sha256.clone()),
            policies: self.policies.clone(),
            decision: if approve { "allow" } else { "deny" }.into(),
            reason: Some(format!("approval {} {}: {reason}", self.id, self.status)),
            ..Default::default()
        }
    }

    /// Record one approver's decision.
    pub fn decide(&mut self, approver: &str, approve: bool, reason: &str, now_ms: i64) -> Result<(), CoreError> {
        let err = |why: String| Err(CoreError::Approval { id: self.id.clone(), why });
        if self.status != ApprovalStatus::Pending {
            return err(format!("it is already {}", self.status));
        }
        if now_ms > self.expires_ms {
            self.status = ApprovalStatus::Expired;
            return err("it expired before a decision (timeout = deny); the agent must ask again".into());
        }
        if approver.trim().is_empty() {
            return err("the approver must be named".into());
        }
        if !approve {
            self.status = ApprovalStatus::Denied;
            self.decided_by = Some(approver.into());
            self.decision_reason = Some(reason.into());
            return Ok(());
        }
        if self.approvers.iter().any(|a| a == approver) {
            return err(format!("{approver} already approved it; the two-person rule needs a different approver"));
        }
        self.approvers.push(approver.into());
        if self.approvers.len() >= usize::from(self.required.max(1)) {
            self.status = ApprovalStatus::Approved;
            self.decided_by = Some(approver.into());
            self.decision_reason = Some(reason.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(required: u8) -> Approval {
        Approval {
            id: "ap1".into(),
            agent: "spiffe://td/agent/a".into(),
            owner: "alice".into(),
            task: "t".into(),
            tool: "pay/transfer".parse().unwrap(),
            args_sha256: "h".into(),
            args_redacted: serde_json::json!({}),
            reason: "big payment".into(),
            policies: vec!["large-payment-approval".into()],
            risk: 10,
            required,
            approvers: vec![],
            status: ApprovalStatus::Pending,
            decided_by: None,
            decision_reason: None,
            created_ms: 0,
            expires_ms: 1_000,
        }
    }

    #[test]
    fn one_approver_decides_and_a_decision_is_final() {
        let mut a = held(1);
        a.decide("operator:bob", true, "ok", 10).unwrap();
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert!(a.decide("operator:carol", false, "no", 11).unwrap_err().to_string().contains("already approved"));
        let mut d = held(1);
        d.decide("operator:bob", false, "not today", 10).unwrap();
        assert_eq!((d.status, d.decision_reason.as_deref()), (ApprovalStatus::Denied, Some("not today")));
    }

    #[test]
    fn two_person_rule_needs_two_distinct_approvers() {
        let mut a = held(2);
        a.decide("operator:bob", true, "", 10).unwrap();
        assert_eq!(a.status, ApprovalStatus::Pending);
        assert!(a.decide("operator:bob", true, "", 11).unwrap_err().to_string().contains("different approver"));
        a.decide("operator:carol", true, "", 12).unwrap();
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(a.approvers, vec!["operator:bob", "operator:carol"]);
    }

    #[test]
    fn late_decisions_expire_it() {
        let mut a = held(1);
        assert!(a.decide("operator:bob", true, "", 5_000).is_err());
        assert_eq!(a.status, ApprovalStatus::Expired);
    }
}

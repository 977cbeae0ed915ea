//! A tool call held for human approval: what the approver sees, and the
//! rules of deciding it. An approval covers one agent, one tool and the exact
//! arguments (their canonical SHA-256), is used once, and expires (timeout =
//! deny). A policy may ask for two distinct approvers (two-person rule).
//!
//! Only authenticated operators with the approver role decide, and
//! distinctness is by operator id, so one person cannot meet the two-person
//! rule under two names. Agent owners are free text (an accountable human,
//! usually an email) and not linked to operator accounts, so "an owner may
//! not approve their own agent" is not enforced here: it needs operators
//! bound to owner identities first.

use crate::{CoreError, Operator, Role, ToolRef};
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
    /// The arguments with secrets masked and personal data replaced by a
    /// keyed fingerprint (`[iban …1234 #1a2b3c4d]`): what audit records,
    /// webhooks and viewers see, enough to tell two destinations apart.
    pub args_redacted: serde_json::Value,
    /// The arguments as approvers must see them: personal data in clear (the
    /// destination they approve), secrets still masked. Never serialized, so
    /// no webhook, audit record or listing carries it by accident; the store
    /// keeps it in its own column until the approval is final, and only the
    /// approver role is shown it.
    #[serde(skip)]
    pub args: Option<serde_json::Value>,
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
    pub fn decision_event(&self, approver: &Operator, approve: bool, reason: &str) -> crate::AuditEvent {
        crate::AuditEvent {
            kind: Some(crate::EventKind::ApprovalDecided),
            subject: Some(approver.subject()),
            action: Some(if approve { "approval:approve" } else { "approval:deny" }.into()),
            agent: Some(self.agent.clone()),
            tool: Some(self.tool.to_string()),
            args_sha256: Some(self.args_sha256.clone()),
            policies: self.policies.clone(),
            decision: if approve { crate::Verdict::Allow } else { crate::Verdict::Deny },
            reason: Some(format!("approval {} {}: {reason}", self.id, self.status)),
            ..Default::default()
        }
    }

    /// The approval as an operator with `role` may see it: the clear
    /// arguments (`args`) only for approvers.
    pub fn view(&self, role: Role) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(args) = self.args.as_ref().filter(|_| role >= Role::Approver) {
            v["args"] = args.clone();
        }
        v
    }

    /// Record one authenticated operator's decision.
    pub fn decide(&mut self, by: &Operator, approve: bool, reason: &str, now_ms: i64) -> Result<(), CoreError> {
        let err = |why: String| Err(CoreError::Approval { id: self.id.clone(), why });
        if by.role < Role::Approver {
            return err(format!(
                "operator {} is a {}; deciding approvals needs the approver role (`warden operator add NAME --role approver`)",
                by.name, by.role
            ));
        }
        if self.status != ApprovalStatus::Pending {
            return err(format!("it is already {}", self.status));
        }
        if now_ms > self.expires_ms {
            self.status = ApprovalStatus::Expired;
            return err("it expired before a decision (timeout = deny); the agent must ask again".into());
        }
        let approver = by.subject();
        if !approve {
            self.status = ApprovalStatus::Denied;
            self.decided_by = Some(approver);
            self.decision_reason = Some(reason.into());
            return Ok(());
        }
        if self.approvers.contains(&approver) {
            return err(format!("{approver} already approved it; the two-person rule needs a different approver"));
        }
        self.approvers.push(approver.clone());
        if self.approvers.len() >= usize::from(self.required.max(1)) {
            self.status = ApprovalStatus::Approved;
            self.decided_by = Some(approver);
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
            args_redacted: serde_json::json!({ "to": "[iban #00]" }),
            args: Some(serde_json::json!({ "to": "DE89370400440532013000" })),
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

    fn op(name: &str, role: Role) -> Operator {
        Operator { name: name.into(), role }
    }

    #[test]
    fn one_approver_decides_and_a_decision_is_final() {
        let mut a = held(1);
        a.decide(&op("bob", Role::Approver), true, "ok", 10).unwrap();
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert!(a.decide(&op("carol", Role::Admin), false, "no", 11).unwrap_err().to_string().contains("already approved"));
        let mut d = held(1);
        d.decide(&op("bob", Role::Approver), false, "not today", 10).unwrap();
        assert_eq!((d.status, d.decision_reason.as_deref(), d.decided_by.as_deref()), (ApprovalStatus::Denied, Some("not today"), Some("operator:bob")));
    }

    #[test]
    fn two_person_rule_needs_two_distinct_operators() {
        let mut a = held(2);
        a.decide(&op("bob", Role::Approver), true, "", 10).unwrap();
        assert_eq!(a.status, ApprovalStatus::Pending);
        // The same operator id, whatever role they now hold, is one person.
        assert!(a.decide(&op("bob", Role::Admin), true, "", 11).unwrap_err().to_string().contains("different approver"));
        a.decide(&op("carol", Role::Admin), true, "", 12).unwrap();
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(a.approvers, vec!["operator:bob", "operator:carol"]);
    }

    #[test]
    fn a_viewer_cannot_decide() {
        let mut a = held(1);
        let e = a.decide(&op("vera", Role::Viewer), true, "", 10).unwrap_err().to_string();
        assert!(e.contains("needs the approver role"), "{e}");
        assert!(a.decide(&op("vera", Role::Viewer), false, "no", 10).is_err());
        assert_eq!((a.status, a.approvers.len()), (ApprovalStatus::Pending, 0));
    }

    #[test]
    fn the_clear_arguments_never_serialize() {
        let a = held(1);
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains("DE89370400440532013000"), "{text}");
        let back: Approval = serde_json::from_str(&text).unwrap();
        assert_eq!(back.args, None);
        assert_eq!(back.args_redacted, a.args_redacted);
    }

    #[test]
    fn only_approvers_are_shown_the_clear_arguments() {
        let a = held(1);
        assert_eq!(a.view(Role::Approver)["args"]["to"], "DE89370400440532013000");
        assert_eq!(a.view(Role::Admin)["args"], a.view(Role::Approver)["args"]);
        let v = a.view(Role::Viewer);
        assert!(v.get("args").is_none() && !v.to_string().contains("DE89370400440532013000"), "{v}");
        assert_eq!(v["args_redacted"]["to"], "[iban #00]");
    }

    #[test]
    fn late_decisions_expire_it() {
        let mut a = held(1);
        assert!(a.decide(&op("bob", Role::Approver), true, "", 5_000).is_err());
        assert_eq!(a.status, ApprovalStatus::Expired);
    }
}

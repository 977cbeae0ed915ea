//! Why a call did not go ahead: one typed value per cause, from which every
//! front door renders its answer (a JSON-RPC error, an HTTP status, a proxy
//! refusal) and the audit record takes its verdict, reason and policies.
//! Pure, no IO.

use warden_core::Kill;
use warden_core::{ToolRef, Verdict};
use warden_monitor::LimitHit;

/// A refusal, from any stage of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// Not a well-formed call (missing name, arguments not an object, a
    /// name that is not SERVER__TOOL).
    Malformed(String),
    /// It names nothing the gateway offers (a tool name that is not
    /// SERVER__TOOL or not registered, a resource or prompt of no
    /// configured server): the spec's invalid-params error. Generic
    /// clients probe like this, so it counts against the agent only in a
    /// flood (the monitor's `missed`).
    Unknown(String),
    /// Larger than the front door inspects.
    TooLarge(String),
    /// Outside the token's scope or the agent's registered tools.
    OutOfScope(ToolRef),
    /// The tool cannot be called: not registered, not approved, changed
    /// since it was pinned, disabled, or without an upstream.
    Unavailable(String),
    /// A kill switch covers the caller (its agent, an ancestor, its owner,
    /// everyone) or the tool.
    Killed(Kill),
    /// The monitor contained the agent at this call.
    Contained(String),
    /// A rate limit, an impact cap or an open circuit breaker.
    Monitor(warden_monitor::Refusal),
    /// Cedar forbade it. `critical` names the `@critical` policy among those
    /// that did, which demotes the agent.
    Policy { reason: String, critical: Option<String> },
    /// The front door's own grant does not cover it (the egress allowlist).
    NotGranted(String),
    /// It needs a human's approval, which this front door cannot wait for.
    CannotWait(String),
    /// Held for approval and still undecided when the hold ended.
    Pending { approval: String, reason: String, expires_in_secs: i64 },
    /// An approver refused it, or its approval expired or was spent.
    ApprovalRefused(String),
    /// Approvals could not be read or written, so nothing was executed.
    ApprovalsUnavailable(String),
    /// Authorized again as its approval was released, and refused now.
    ApprovalNotUsed { approval: String, why: String },
    /// The approval could not be marked used, so it was not spent on a call.
    ApprovalUnusable { approval: String, error: String },
    /// The write-ahead record could not be written, so the upstream never
    /// saw the call.
    NotForwarded(String),
    /// The call ran upstream; its result does not reach the agent.
    Withheld(Withheld),
}

/// Why a result was withheld.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Withheld {
    Killed(Kill),
    /// Its records would exceed an impact cap.
    Limit(LimitHit),
    /// `policies` are those that decided on the result.
    Policy {
        reason: String,
        critical: Option<String>,
        policies: Vec<String>,
    },
    /// Policy wants a human to see it first.
    NeedsApproval {
        reason: String,
        policies: Vec<String>,
    },
}

impl Refusal {
    /// The audit record's verdict.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Self::Pending { .. } | Self::Withheld(Withheld::NeedsApproval { .. }) => Verdict::NeedsApproval,
            Self::NotForwarded(_) => Verdict::Error,
            _ => Verdict::Deny,
        }
    }

    /// The audit record's reason.
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Malformed(r)
            | Self::Unknown(r)
            | Self::TooLarge(r)
            | Self::Unavailable(r)
            | Self::NotGranted(r)
            | Self::ApprovalRefused(r)
            | Self::ApprovalsUnavailable(r) => r.clone(),
            Self::OutOfScope(t) => format!("tool {t} is outside this token's scope"),
            Self::Killed(k) => k.describe(),
            Self::Contained(cause) => format!("the agent is contained: {cause}"),
            Self::Monitor(r) => r.to_string(),
            Self::Policy { reason, .. } => reason.clone(),
            Self::CannotWait(reason) => format!("refused by policy (it needs a human's approval, which the proxy cannot wait for): {reason}"),
            Self::Pending { approval, reason, expires_in_secs } => format!(
                "requires human approval: {reason}. Approval {approval} is pending (`warden approvals approve {approval}`); repeat this exact call once it is approved (it expires in {expires_in_secs} s)"
            ),
            Self::ApprovalNotUsed { approval, why } => format!("approval {approval} was not used: {why}"),
            Self::ApprovalUnusable { approval, error } => format!("approval {approval} could not be used, so the call was not executed: {error}"),
            Self::NotForwarded(e) => format!("not forwarded: {e}"),
            Self::Withheld(w) => match w {
                Withheld::Killed(k) => format!("result withheld: {}", k.describe()),
                Withheld::Limit(hit) => format!("result withheld: {hit}"),
                Withheld::Policy { reason, .. } => format!("result withheld: {reason}"),
                Withheld::NeedsApproval { reason, .. } => format!("result withheld until a human approves it: {reason}"),
            },
        }
    }

    /// What the agent is told.
    pub(crate) fn message(&self) -> String {
        match self {
            // These already say what happened in full.
            Self::ApprovalRefused(m) | Self::ApprovalsUnavailable(m) => m.clone(),
            Self::Pending { .. } | Self::Withheld(Withheld::NeedsApproval { .. }) => self.reason(),
            Self::NotForwarded(e) => format!("the call was not forwarded: {e}"),
            _ => format!("denied: {}", self.reason()),
        }
    }

    /// The policy-like ids this refusal adds to the record (a Cedar denial's
    /// policies come with the decision itself).
    pub(crate) fn policy_ids(&self) -> Vec<String> {
        match self {
            Self::Killed(k) | Self::Withheld(Withheld::Killed(k)) => vec![k.policy_id()],
            Self::Contained(_) => vec!["monitor:risk".into()],
            Self::Monitor(r) => vec![r.id()],
            Self::Withheld(Withheld::Limit(hit)) => vec![format!("limit:{}", hit.rule)],
            _ => Vec::new(),
        }
    }

    /// The policies that decided a withheld result (the agent is told
    /// those, not the ones that let the call through).
    pub(crate) fn result_policies(&self) -> Option<&[String]> {
        match self {
            Self::Withheld(Withheld::Policy { policies, .. } | Withheld::NeedsApproval { policies, .. }) => Some(policies),
            _ => None,
        }
    }

    /// Does it count against the agent with the monitor? Waiting for a
    /// human is not misbehaviour, nor is the gateway's own failure.
    pub(crate) fn counts_against_agent(&self) -> bool {
        !matches!(self, Self::Pending { .. } | Self::NotForwarded(_))
    }

    /// Does a refusal at resolution, before the monitor assessed the call,
    /// count against the agent? Asking for what exists but is outside its
    /// grant is probing for privilege; a name nothing answers to, a
    /// malformed request or a tool an operator has not made callable is
    /// what ordinary clients do (listing-then-calling races, the
    /// conformance suite's unknown-tool check).
    pub(crate) fn suspicious_at_resolution(&self) -> bool {
        matches!(self, Self::OutOfScope(_))
    }

    /// Did a rate limit or an impact cap refuse it?
    pub(crate) fn limit_hit(&self) -> bool {
        matches!(self, Self::Monitor(warden_monitor::Refusal::Limit(_)) | Self::Withheld(Withheld::Limit(_)))
    }

    /// The `@critical` policy that refused it.
    pub(crate) fn critical(&self) -> Option<&str> {
        match self {
            Self::Policy { critical, .. } | Self::Withheld(Withheld::Policy { critical, .. }) => critical.as_deref(),
            _ => None,
        }
    }

    /// Refused on the way to a human's approval (or at it): an
    /// exfiltration-capable call from a session tainted both ways there is
    /// the lethal trifecta.
    pub(crate) fn at_approval(&self) -> bool {
        matches!(self, Self::Pending { .. } | Self::ApprovalRefused(_) | Self::ApprovalsUnavailable(_) | Self::CannotWait(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::KillScope;

    fn kill() -> Kill {
        Kill { id: 7, scope: KillScope::Agent, target: "spiffe://td/agent/a".into(), reason: "leak".into(), by: "op".into(), at_ms: 0 }
    }

    #[test]
    fn verdicts_follow_the_cause() {
        assert_eq!(Refusal::Policy { reason: "no".into(), critical: None }.verdict(), Verdict::Deny);
        assert_eq!(Refusal::Pending { approval: "a1".into(), reason: "big".into(), expires_in_secs: 60 }.verdict(), Verdict::NeedsApproval);
        assert_eq!(Refusal::Withheld(Withheld::NeedsApproval { reason: "pii".into(), policies: vec![] }).verdict(), Verdict::NeedsApproval);
        assert_eq!(Refusal::NotForwarded("disk full".into()).verdict(), Verdict::Error);
        assert_eq!(Refusal::Killed(kill()).verdict(), Verdict::Deny);
    }

    #[test]
    fn the_agent_is_told_denied_except_where_the_text_says_more() {
        let r = Refusal::Policy { reason: "external email".into(), critical: None };
        assert_eq!((r.reason(), r.message()), ("external email".into(), "denied: external email".into()));
        let r = Refusal::Pending { approval: "a1".into(), reason: "a large payment".into(), expires_in_secs: 30 };
        assert!(r.message().starts_with("requires human approval: a large payment. Approval a1 is pending"), "{}", r.message());
        assert_eq!(r.message(), r.reason());
        let r = Refusal::ApprovalRefused("denied: approval a1 was refused by bob".into());
        assert_eq!(r.message(), "denied: approval a1 was refused by bob", "not denied twice");
        let r = Refusal::NotForwarded("the audit log is unavailable".into());
        assert_eq!(r.reason(), "not forwarded: the audit log is unavailable");
        assert_eq!(r.message(), "the call was not forwarded: the audit log is unavailable");
        assert_eq!(Refusal::Killed(kill()).message(), "denied: agent spiffe://td/agent/a is contained: leak");
    }

    #[test]
    fn refusals_add_the_ids_of_what_refused_them() {
        assert_eq!(Refusal::Killed(kill()).policy_ids(), ["kill#7"]);
        assert_eq!(Refusal::Withheld(Withheld::Killed(kill())).policy_ids(), ["kill#7"]);
        assert_eq!(Refusal::Contained("risk 90".into()).policy_ids(), ["monitor:risk"]);
        assert!(Refusal::Policy { reason: "x".into(), critical: None }.policy_ids().is_empty(), "the decision carries its own");
    }

    #[test]
    fn only_asking_beyond_the_grant_counts_at_resolution() {
        assert!(Refusal::OutOfScope("crm/export".parse().unwrap()).suspicious_at_resolution());
        for ordinary in [Refusal::Unknown("no tool x".into()), Refusal::Malformed("no name".into()), Refusal::Unavailable("disabled".into())] {
            assert!(!ordinary.suspicious_at_resolution(), "{ordinary:?}");
        }
    }

    #[test]
    fn only_misbehaviour_counts_against_the_agent() {
        assert!(Refusal::Policy { reason: "x".into(), critical: None }.counts_against_agent());
        assert!(Refusal::ApprovalRefused("denied".into()).counts_against_agent());
        assert!(
            Refusal::Withheld(Withheld::NeedsApproval { reason: "x".into(), policies: vec![] }).counts_against_agent(),
            "a withheld result is a refusal of what was asked"
        );
        assert!(!Refusal::Pending { approval: "a".into(), reason: "r".into(), expires_in_secs: 1 }.counts_against_agent());
        assert!(!Refusal::NotForwarded("e".into()).counts_against_agent());
        let critical = Refusal::Withheld(Withheld::Policy { reason: "x".into(), critical: Some("p".into()), policies: vec!["p".into()] });
        assert_eq!(critical.critical(), Some("p"));
        assert_eq!(critical.result_policies(), Some(&["p".to_string()][..]));
    }
}

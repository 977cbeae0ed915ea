//! Kill switches as records: what is stopped (scope and target), why, by
//! whom and since when, and how decisions and audit records name one.
//! Which switch covers a caller is the monitor's `KillSet`.

use crate::{AuditEvent, EventKind};
use serde::{Deserialize, Serialize};

string_enum!(KillScope, "kill scope", "global, agent, owner, server, tool", {
    // Every tool call through the gateway.
    Global => "global",
    // One agent and every sub-agent acting under it.
    Agent => "agent",
    // Every agent of a human owner.
    Owner => "owner",
    // Every tool of an upstream server.
    Server => "server",
    // One tool (`SERVER/TOOL`).
    Tool => "tool",
});

/// An engaged kill switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    /// Store id; 0 until persisted.
    pub id: i64,
    pub scope: KillScope,
    /// SPIFFE id, owner, server name or `SERVER/TOOL`; empty for global.
    pub target: String,
    pub reason: String,
    /// Who engaged it: `operator:NAME` or `monitor`.
    pub by: String,
    /// Unix milliseconds when it was engaged.
    pub at_ms: i64,
}

impl Kill {
    /// The same switch (scope and target), whatever its id.
    pub fn same_switch(&self, other: &Kill) -> bool {
        self.scope == other.scope && self.target == other.target
    }

    /// How decisions and audit records refer to it (`kill#ID`).
    pub fn policy_id(&self) -> String {
        format!("kill#{}", self.id)
    }

    /// The audit record of engaging it (`Containment`) or lifting it
    /// (`ContainmentLifted`); callers add the reason and who lifted it.
    pub fn audit_event(&self, kind: EventKind) -> AuditEvent {
        let lifted = kind == EventKind::ContainmentLifted;
        AuditEvent {
            kind: Some(kind),
            agent: (self.scope == KillScope::Agent).then(|| self.target.clone()),
            tool: matches!(self.scope, KillScope::Tool | KillScope::Server).then(|| self.target.clone()),
            action: Some(if lifted { format!("kill:lift:{}", self.scope) } else { format!("kill:{}", self.scope) }),
            subject: Some(self.by.clone()),
            decision: if lifted { crate::Verdict::Allow } else { crate::Verdict::Contain },
            policies: vec![self.policy_id()],
            remediation: (!lifted).then(|| format!("review the audit trail, then lift it with `warden kill lift {}`", self.id)),
            ..Default::default()
        }
    }

    pub fn describe(&self) -> String {
        match self.scope {
            KillScope::Global => format!("global kill switch engaged: {}", self.reason),
            s => format!("{s} {} is contained: {}", self.target, self.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_reads_back_from_its_stored_name_and_an_unknown_one_lists_the_choices() {
        for s in [KillScope::Global, KillScope::Agent, KillScope::Owner, KillScope::Server, KillScope::Tool] {
            assert_eq!(s.as_str().parse::<KillScope>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""), "stored and serialized alike");
        }
        let e = "everything".parse::<KillScope>().unwrap_err();
        assert_eq!(e.to_string(), "invalid kill scope \"everything\": expected one of global, agent, owner, server, tool");
    }

    #[test]
    fn a_kill_is_described_and_audited_by_its_scope() {
        let k = Kill { id: 7, scope: KillScope::Tool, target: "pay/transfer".into(), reason: "risk 93".into(), by: "monitor".into(), at_ms: 0 };
        assert_eq!(k.describe(), "tool pay/transfer is contained: risk 93");
        assert_eq!(Kill { scope: KillScope::Global, ..k.clone() }.describe(), "global kill switch engaged: risk 93");
        let engaged = k.audit_event(EventKind::Containment);
        assert_eq!((engaged.tool.as_deref(), engaged.agent, engaged.decision.as_str()), (Some("pay/transfer"), None, "contain"));
        assert_eq!(engaged.policies, ["kill#7"]);
        let lifted = k.audit_event(EventKind::ContainmentLifted);
        assert_eq!((lifted.action.as_deref(), lifted.remediation), (Some("kill:lift:tool"), None));
    }
}

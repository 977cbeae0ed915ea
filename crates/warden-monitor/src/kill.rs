//! Kill switches: by agent, owner, server, tool, or global. Matching is a
//! few hash lookups so the check costs nothing measurable on the hot path.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use warden_core::{AuditEvent, EventKind, ToolRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillScope {
    /// Every tool call through the gateway.
    Global,
    /// One agent and every sub-agent acting under it.
    Agent,
    /// Every agent of a human owner.
    Owner,
    /// Every tool of an upstream server.
    Server,
    /// One tool (`SERVER/TOOL`).
    Tool,
}

impl KillScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Agent => "agent",
            Self::Owner => "owner",
            Self::Server => "server",
            Self::Tool => "tool",
        }
    }
}

impl fmt::Display for KillScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KillScope {
    type Err = crate::MonitorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "global" => Self::Global,
            "agent" => Self::Agent,
            "owner" => Self::Owner,
            "server" => Self::Server,
            "tool" => Self::Tool,
            _ => return Err(crate::MonitorError::Config(format!("kill scope {s:?} is not one of global, agent, owner, server, tool"))),
        })
    }
}

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
            decision: if lifted { warden_core::Verdict::Allow } else { warden_core::Verdict::Contain },
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

/// The engaged kill switches, indexed for the per-call check.
#[derive(Debug, Clone, Default)]
pub struct KillSet {
    global: Option<Kill>,
    by: HashMap<(KillScope, String), Kill>,
}

impl KillSet {
    pub fn new(kills: impl IntoIterator<Item = Kill>) -> Self {
        let mut s = Self::default();
        for k in kills {
            s.insert(k);
        }
        s
    }

    pub fn insert(&mut self, k: Kill) {
        match k.scope {
            KillScope::Global => self.global = Some(k),
            scope => {
                self.by.insert((scope, k.target.clone()), k);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.by.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Kill> {
        self.global.iter().chain(self.by.values())
    }

    fn get(&self, scope: KillScope, target: &str) -> Option<&Kill> {
        if self.by.is_empty() {
            return None;
        }
        self.by.get(&(scope, target.to_string()))
    }

    /// The kill that stops this caller: global, its owner, or any agent in
    /// its delegation chain.
    pub fn for_caller<'a>(&self, chain: impl IntoIterator<Item = &'a str>, owner: &str) -> Option<&Kill> {
        self.global.as_ref().or_else(|| self.get(KillScope::Owner, owner)).or_else(|| chain.into_iter().find_map(|a| self.get(KillScope::Agent, a)))
    }

    /// The kill that stops calls to this tool.
    pub fn for_tool(&self, t: &ToolRef) -> Option<&Kill> {
        if self.by.is_empty() {
            return None;
        }
        self.get(KillScope::Server, &t.server).or_else(|| self.get(KillScope::Tool, &t.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(scope: KillScope, target: &str) -> Kill {
        Kill { id: 1, scope, target: target.into(), reason: "test".into(), by: "operator:alice".into(), at_ms: 0 }
    }

    #[test]
    fn each_scope_matches_what_it_names() {
        let set = KillSet::new([kill(KillScope::Agent, "spiffe://td/agent/parent"), kill(KillScope::Tool, "pay/transfer")]);
        assert!(set.for_caller(["spiffe://td/agent/child", "spiffe://td/agent/parent"], "bob").is_some(), "sub-agents of a killed agent");
        assert!(set.for_caller(["spiffe://td/agent/other"], "bob").is_none());
        assert!(set.for_tool(&"pay/transfer".parse().unwrap()).is_some());
        assert!(set.for_tool(&"pay/refund".parse().unwrap()).is_none());
        let set = KillSet::new([kill(KillScope::Server, "pay"), kill(KillScope::Owner, "bob")]);
        assert!(set.for_tool(&"pay/refund".parse().unwrap()).is_some());
        assert!(set.for_caller(["spiffe://td/agent/x"], "bob").is_some());
        let set = KillSet::new([kill(KillScope::Global, "")]);
        assert!(set.for_caller(["spiffe://td/agent/x"], "carol").unwrap().describe().starts_with("global"));
        assert!("everything".parse::<KillScope>().is_err());
    }
}

//! Kill-switch matching: which engaged switch (by agent, owner, server,
//! tool, or global) stops a caller or a tool. Matching is a few hash lookups
//! so the check costs nothing measurable on the hot path. The switches
//! themselves are `warden_core::Kill` records.

use std::collections::HashMap;
use warden_core::{Kill, KillScope, ToolRef};

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
    }
}

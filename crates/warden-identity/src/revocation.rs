use crate::AccessClaims;
use crate::IdentityError;
use std::collections::{HashMap, HashSet};

/// Everything revoked: token ids (which cascade to tokens derived from them),
/// tasks, and per-agent cut-offs (every token an agent or its delegates got at
/// or before the cut-off is dead).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    pub token_ids: HashSet<String>,
    pub tasks: HashSet<String>,
    pub agents_before: HashMap<String, i64>,
}

impl RevocationSet {
    pub fn check(&self, c: &AccessClaims) -> Result<(), IdentityError> {
        if self.token_ids.contains(&c.jti) {
            return Err(IdentityError::Revoked("token id".into()));
        }
        if c.chain.iter().any(|j| self.token_ids.contains(j)) {
            return Err(IdentityError::Revoked("a parent token was revoked".into()));
        }
        if self.tasks.contains(&c.task) {
            return Err(IdentityError::Revoked(format!("task {}", c.task)));
        }
        for agent in c.delegation() {
            if self.agents_before.get(agent).is_some_and(|cut| c.iat <= *cut) {
                return Err(IdentityError::Revoked(format!("all tokens of {agent}")));
            }
        }
        Ok(())
    }
}

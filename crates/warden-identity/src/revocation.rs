use crate::AccessClaims;
use crate::IdentityError;
use std::collections::{HashMap, HashSet};

/// Everything revoked: token ids (which cascade to tokens derived from them),
/// tasks, and per-agent cut-offs (every token an agent or its delegates got at
/// or before the cut-off is dead); for operators' sign-in sessions, single
/// sessions (by [`operator_session_id`]) and per-operator cut-offs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    pub token_ids: HashSet<String>,
    pub tasks: HashSet<String>,
    pub agents_before: HashMap<String, i64>,
    pub operators_before: HashMap<String, i64>,
}

/// How one operator sign-in session is named among revoked token ids (apart
/// from agents' token ids, whatever their form).
pub fn operator_session_id(session: &str) -> String {
    format!("operator-session:{session}")
}

impl RevocationSet {
    /// The `iat` for a new token of these agents: after every cut-off, so a
    /// token issued in the same second as a suspension or key rotation (and
    /// the resume that may follow it) is not born revoked. At most one second
    /// ahead of `now`, within the verifier's `nbf` leeway.
    pub fn issue_time<'a>(&self, agents: impl IntoIterator<Item = &'a str>, now: i64) -> i64 {
        agents.into_iter().filter_map(|a| self.agents_before.get(a)).fold(now, |t, cut| t.max(cut + 1))
    }

    /// Whether operator `name`'s sign-in session `session`, started at
    /// `since`, has ended: signed out, or all their sessions up to then.
    pub fn ends_operator_session(&self, name: &str, session: &str, since: i64) -> bool {
        self.token_ids.contains(&operator_session_id(session)) || self.operators_before.get(name).is_some_and(|cut| since <= *cut)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_session_ends_by_itself_or_with_all_of_the_operators_before_a_cutoff() {
        let mut r = RevocationSet::default();
        assert!(!r.ends_operator_session("sso:alice", "s1", 100));
        r.token_ids.insert(operator_session_id("s1"));
        assert!(r.ends_operator_session("sso:alice", "s1", 100));
        assert!(!r.ends_operator_session("sso:alice", "s2", 100));
        // An agent token id of the same text ends no session.
        r.token_ids.insert("s2".into());
        assert!(!r.ends_operator_session("sso:alice", "s2", 100));
        r.operators_before.insert("sso:alice".into(), 150);
        assert!(r.ends_operator_session("sso:alice", "s3", 150));
        assert!(!r.ends_operator_session("sso:alice", "s4", 151), "a session started after the cut-off lives");
        assert!(!r.ends_operator_session("sso:bob", "s5", 100));
    }

    #[test]
    fn issue_time_follows_the_latest_cutoff() {
        let mut r = RevocationSet::default();
        assert_eq!(r.issue_time(["a"], 100), 100);
        r.agents_before.insert("a".into(), 100);
        r.agents_before.insert("b".into(), 50);
        assert_eq!(r.issue_time(["a", "b"], 100), 101);
        assert_eq!(r.issue_time(["b"], 100), 100);
    }
}

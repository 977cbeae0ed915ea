//! Agents and their credentials: registration, status (suspend, resume,
//! revoke), autonomy, token binding, key rotation, X.509-SVIDs and token
//! revocation.

use crate::{Actor, ControlError, ControlPlane, Why, required};
use warden_core::{Agent, AgentId, AgentStatus, AuditEvent, Autonomy, EventKind, TokenBinding, ToolRef};
use warden_identity::AgentKey;
use warden_store::{RevocationKind, StoreError};

/// An agent to register, as an operator describes it.
#[derive(Debug, Clone)]
pub struct NewAgent<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub purpose: &'a str,
    /// `SERVER/TOOL` or `SERVER/*` each.
    pub tools: &'a [String],
    pub autonomy: i64,
    /// `NAME` or a SPIFFE id of a registered agent.
    pub parent: Option<&'a str>,
    /// `dpop` unless the operator allows the agent bearer tokens.
    pub token_binding: TokenBinding,
}

/// A registration that passed every check but the key: make the key (which
/// may write a private key file) only once you hold one of these.
#[derive(Debug, Clone)]
pub struct ValidAgent {
    agent: Agent,
    /// The tools as the operator gave them, for the audit record.
    tools: String,
}

/// An autonomy change: what it was, what it is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutonomyChange {
    pub agent: AgentId,
    pub from: u8,
    pub to: u8,
    pub reason: String,
}

impl std::fmt::Display for AutonomyChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "autonomy {} -> {}: {}", self.from, self.to, self.reason)
    }
}

/// What to revoke: one token, a task, or every token of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation<'a> {
    Token(&'a str),
    Task(&'a str),
    /// `NAME` or a SPIFFE id of a registered agent.
    Agent(&'a str),
}

impl ControlPlane {
    /// Check a registration: a valid name, tools and level, an owner and a
    /// purpose, and a registered parent.
    pub async fn check_registration(&self, a: &NewAgent<'_>) -> Result<ValidAgent, ControlError> {
        let id = AgentId::new(&self.trust_domain, a.name)?;
        let tools = a.tools.iter().map(|t| t.trim().parse::<ToolRef>()).collect::<Result<Vec<_>, _>>()?;
        let autonomy = Autonomy::try_from(a.autonomy)?;
        let parent = a.parent.map(|p| self.agent_id(p)).transpose()?;
        if a.owner.trim().is_empty() || a.purpose.trim().is_empty() {
            return Err(ControlError::OwnerAndPurposeRequired);
        }
        if let Some(p) = &parent {
            match self.store.get_agent(p).await {
                Err(StoreError::NotFound(_)) => return Err(ControlError::UnknownParent(p.clone())),
                r => r.map(|_| ())?,
            }
        }
        let agent = Agent {
            id,
            owner: a.owner.to_string(),
            purpose: a.purpose.to_string(),
            tools,
            autonomy,
            status: AgentStatus::Active,
            public_key: String::new(),
            token_binding: a.token_binding,
            parent,
            created_at: warden_core::clock::now_secs(),
        };
        Ok(ValidAgent { agent, tools: a.tools.join(",") })
    }

    /// Register a checked agent with its public key.
    pub async fn register_agent(&self, actor: &Actor, a: ValidAgent, key: &AgentKey) -> Result<AgentId, ControlError> {
        let ValidAgent { mut agent, tools } = a;
        agent.public_key = key.to_registry();
        self.store.insert_agent(&agent).await?;
        self.settle().await;
        let reason = format!("owner {}, tools {tools}, {} key, token binding {}", agent.owner, key.alg().as_str(), agent.token_binding);
        self.record(actor, EventKind::AgentChanged, "agent:register", agent_event(&agent.id, reason)).await?;
        Ok(agent.id)
    }

    /// Suspend, resume or revoke an agent (its tokens stop working with a
    /// suspension or revocation). Suspending and revoking need a reason;
    /// resuming without one records "resumed by an operator".
    pub async fn set_agent_status(&self, actor: &Actor, agent: &str, status: AgentStatus, reason: &str) -> Result<AgentId, ControlError> {
        let reason = match status {
            AgentStatus::Active if reason.trim().is_empty() => "resumed by an operator",
            AgentStatus::Active => reason.trim(),
            AgentStatus::Suspended => required(reason, Why::Suspend)?,
            AgentStatus::Revoked => required(reason, Why::Revoke)?,
        };
        let id = self.agent_id(agent)?;
        self.store.set_agent_status(&id, status, reason, warden_core::clock::now_secs()).await?;
        self.settle().await;
        self.record(actor, EventKind::AgentChanged, &format!("agent:{}", status.as_str()), agent_event(&id, reason.to_string())).await?;
        Ok(id)
    }

    /// Set an agent's autonomy level (0-3), with a reason.
    pub async fn set_autonomy(&self, actor: &Actor, agent: &str, level: i64, reason: &str) -> Result<AutonomyChange, ControlError> {
        let id = self.agent_id(agent)?;
        let level = Autonomy::try_from(level)?;
        let reason = required(reason, Why::ChangeAutonomy)?;
        let from = self.store.get_agent(&id).await?.autonomy.level();
        self.store.set_autonomy(&id, level).await?;
        self.settle().await;
        let change = AutonomyChange { agent: id, from, to: level.level(), reason: reason.to_string() };
        self.record(actor, EventKind::AgentChanged, "agent:autonomy", agent_event(&change.agent, change.to_string())).await?;
        Ok(change)
    }

    /// Allow an agent bearer tokens, or require DPoP-bound ones again. Its
    /// tokens are checked against the binding on every use: going back to
    /// `dpop` cuts off the bearer tokens it holds.
    pub async fn set_token_binding(&self, actor: &Actor, agent: &str, binding: TokenBinding, reason: &str) -> Result<AgentId, ControlError> {
        let id = self.agent_id(agent)?;
        let reason = required(reason, Why::ChangeTokenBinding)?;
        let from = self.store.get_agent(&id).await?.token_binding;
        self.store.set_token_binding(&id, binding).await?;
        self.settle().await;
        let what = format!("token binding {from} -> {binding}: {reason}");
        self.record(actor, EventKind::AgentChanged, "agent:token-binding", agent_event(&id, what)).await?;
        Ok(id)
    }

    /// The registered agent `agent` names (to check it before making a key).
    pub async fn agent(&self, agent: &str) -> Result<Agent, ControlError> {
        Ok(self.store.get_agent(&self.agent_id(agent)?).await?)
    }

    /// Replace an agent's public key; tokens bound to the old one stop working.
    pub async fn rotate_key(&self, actor: &Actor, agent: &str, key: &AgentKey) -> Result<AgentId, ControlError> {
        let id = self.agent_id(agent)?;
        self.store.rotate_key(&id, &key.to_registry(), warden_core::clock::now_secs()).await?;
        self.settle().await;
        self.record(actor, EventKind::AgentChanged, "agent:rotate-key", agent_event(&id, "key rotated; earlier tokens revoked".into())).await?;
        Ok(id)
    }

    /// Issue an X.509-SVID for an active agent from Warden's CA, valid for
    /// `lifetime_secs` from now (at most a day); audited with its
    /// `x5t#S256` and expiry (the key itself is only the caller's).
    pub async fn issue_certificate(
        &self,
        actor: &Actor,
        agent: &str,
        ca: &warden_identity::Authority,
        lifetime_secs: i64,
    ) -> Result<warden_identity::Issued, ControlError> {
        let a = self.agent(agent).await?;
        if a.status != AgentStatus::Active {
            return Err(ControlError::NotActive { agent: a.id, status: a.status.as_str() });
        }
        let now = warden_core::clock::now_secs();
        let issued = ca.issue_agent(a.id.as_str(), now - 60, now + lifetime_secs)?;
        let svid = warden_identity::read_svid(&warden_identity::pem_to_der(&issued.cert_pem)?)?;
        let reason = format!("X.509-SVID issued, x5t#S256 {}, valid for {} s", svid.x5t_s256, lifetime_secs);
        self.record(actor, EventKind::AgentChanged, "agent:issue-cert", agent_event(&a.id, reason)).await?;
        Ok(issued)
    }

    /// Revoke a token, a task or an agent's tokens; returns what was revoked
    /// (an agent as its SPIFFE id).
    pub async fn revoke(&self, actor: &Actor, what: Revocation<'_>, reason: &str) -> Result<String, ControlError> {
        let reason = required(reason, Why::RevokeTokens)?;
        let mut ev = crate::change(reason.to_string());
        let (kind, value) = match what {
            Revocation::Token(j) => (RevocationKind::Token, ev.token_id.insert(j.to_string()).clone()),
            Revocation::Task(t) => (RevocationKind::Task, ev.task.insert(t.to_string()).clone()),
            Revocation::Agent(a) => {
                let id = self.agent_id(a)?;
                self.store.get_agent(&id).await?;
                (RevocationKind::Agent, ev.agent.insert(id.to_string()).clone())
            }
        };
        self.store.revoke(kind, &value, reason, warden_core::clock::now_secs()).await?;
        self.settle().await;
        self.record(actor, EventKind::Revocation, "token:revoke", ev).await?;
        Ok(value)
    }
}

fn agent_event(id: &AgentId, reason: String) -> AuditEvent {
    AuditEvent { agent: Some(id.to_string()), ..crate::change(reason) }
}

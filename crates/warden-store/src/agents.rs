//! The `agents` table: registration, status (with the revocations a
//! suspension implies), autonomy, token binding and key rotation, and an
//! agent's history as promotion reads it.

use crate::{Result, RevocationKind, Store, StoreError, col, corrupt, db};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use std::str::FromStr;
use warden_core::{Agent, AgentId, AgentStatus, ApprovalStatus, Autonomy, TokenBinding};

/// What an agent's stored history says for its promotion (see
/// [`Store::autonomy_record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutonomyRecord {
    /// When the agent was last contained for a critical policy violation
    /// (Unix milliseconds); `None` if never.
    pub last_critical_ms: Option<i64>,
    /// Its held calls that humans approved (used or not yet).
    pub approvals_granted: u64,
    /// Its held calls that humans refused.
    pub approvals_refused: u64,
}

impl Store {
    pub async fn insert_agent(&self, a: &Agent) -> Result<()> {
        let mut tx = self.write_tx("registering an agent").await?;
        if let Some(p) = &a.parent {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM agents WHERE id = $1")
                .bind(p.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("registering an agent"))?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("parent agent {p}")));
            }
        }
        let r =
            sqlx::query("INSERT INTO agents (id, owner, purpose, tools, autonomy, status, public_key, parent, created_at, token_binding) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)")
                .bind(a.id.as_str())
                .bind(&a.owner)
                .bind(&a.purpose)
                .bind(serde_json::to_string(&a.tools).expect("tool refs serialize"))
                .bind(i64::from(a.autonomy))
                .bind(a.status.as_str())
                .bind(&a.public_key)
                .bind(a.parent.as_ref().map(AgentId::as_str))
                .bind(a.created_at)
                .bind(a.token_binding.as_str())
                .execute(&mut *tx)
                .await;
        match r {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("agent {} already exists or its public key is already registered to another agent", a.id)));
            }
            other => other.map_err(db("registering an agent"))?,
        };
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("registering an agent"))
    }

    pub async fn get_agent(&self, id: &AgentId) -> Result<Agent> {
        let row = sqlx::query("SELECT * FROM agents WHERE id = $1").bind(id.as_str()).fetch_optional(&self.pool).await.map_err(db("reading an agent"))?;
        row.map(|r| agent_from_row(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("agent {id}")))
    }

    pub async fn list_agents(&self) -> Result<Vec<Agent>> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY id").fetch_all(&self.pool).await.map_err(db("listing agents"))?;
        rows.iter().map(agent_from_row).collect()
    }

    /// Change an agent's status. Suspending or revoking also revokes every
    /// token it (and its sub-agents) holds; a revoked agent cannot come back.
    /// Resuming lifts the agent's kill switches.
    pub async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, reason: &str, now: i64) -> Result<()> {
        let mut tx = self.write_tx("changing agent status").await?;
        Self::agent_status_tx(&mut tx, id, status, reason, now).await?;
        if status == AgentStatus::Active {
            sqlx::query("UPDATE kills SET lifted_at_ms = $1, lifted_by = $2 WHERE scope = 'agent' AND target = $3 AND lifted_at_ms IS NULL")
                .bind(now.saturating_mul(1000))
                .bind("operator (agent resume)")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("changing agent status"))?;
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("changing agent status"))
    }

    /// Within a write transaction: change an agent's status, revoking its
    /// tokens unless it becomes active (kill switches suspend through it).
    pub(crate) async fn agent_status_tx(tx: &mut Transaction<'_, Any>, id: &AgentId, status: AgentStatus, reason: &str, now: i64) -> Result<()> {
        let cur: Option<String> = sqlx::query_scalar("SELECT status FROM agents WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("changing agent status"))?;
        let cur = cur.ok_or_else(|| StoreError::NotFound(format!("agent {id}")))?;
        if cur == "revoked" && status != AgentStatus::Revoked {
            return Err(StoreError::Conflict(format!("agent {id} is revoked for good; register a new agent instead")));
        }
        sqlx::query("UPDATE agents SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id.as_str())
            .execute(&mut **tx)
            .await
            .map_err(db("changing agent status"))?;
        if status != AgentStatus::Active {
            Self::insert_revocation(tx, RevocationKind::Agent, id.as_str(), now, reason, now).await?;
        }
        Ok(())
    }

    /// Change an agent's autonomy level.
    pub async fn set_autonomy(&self, id: &AgentId, autonomy: Autonomy) -> Result<()> {
        let mut tx = self.write_tx("changing autonomy").await?;
        let r = sqlx::query("UPDATE agents SET autonomy = $1 WHERE id = $2")
            .bind(i64::from(autonomy))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("changing autonomy"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent {id}")));
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("changing autonomy"))
    }

    /// Change how an agent's tokens are bound. Tokens already issued are
    /// checked against the binding on every use, so going back to `dpop`
    /// cuts off its bearer tokens at the next refresh.
    pub async fn set_token_binding(&self, id: &AgentId, binding: TokenBinding) -> Result<()> {
        let mut tx = self.write_tx("changing the token binding").await?;
        let r = sqlx::query("UPDATE agents SET token_binding = $1 WHERE id = $2")
            .bind(binding.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("changing the token binding"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent {id}")));
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("changing the token binding"))
    }

    /// From the stored history of an agent: when it was last contained for
    /// a critical violation, and how many of its held calls humans approved
    /// and refused.
    pub async fn autonomy_record(&self, id: &AgentId) -> Result<AutonomyRecord> {
        let mut last_critical = None;
        for r in self.audit_records().await?.into_iter().flatten() {
            let e = &r.event;
            if e.kind == Some(warden_core::EventKind::Containment)
                && e.agent.as_deref() == Some(id.as_str())
                && e.reason.as_deref().is_some_and(|x| x.contains("critical policy violation"))
            {
                last_critical = Some(r.ts_ms);
            }
        }
        let (mut granted, mut refused) = (0, 0);
        for a in self.list_approvals(false, u32::MAX).await?.into_iter().filter(|a| a.agent == id.as_str()) {
            match a.status {
                ApprovalStatus::Approved | ApprovalStatus::Used => granted += 1,
                ApprovalStatus::Denied => refused += 1,
                ApprovalStatus::Pending | ApprovalStatus::Expired => {}
            }
        }
        Ok(AutonomyRecord { last_critical_ms: last_critical, approvals_granted: granted, approvals_refused: refused })
    }

    /// Replace an agent's key; tokens bound to the old key are revoked.
    pub async fn rotate_key(&self, id: &AgentId, public_key: &str, now: i64) -> Result<()> {
        let mut tx = self.write_tx("rotating a key").await?;
        let r = sqlx::query("UPDATE agents SET public_key = $1 WHERE id = $2").bind(public_key).bind(id.as_str()).execute(&mut *tx).await;
        let r = match r {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("that public key is already registered".into())),
            other => other.map_err(db("rotating a key"))?,
        };
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent {id}")));
        }
        Self::insert_revocation(&mut tx, RevocationKind::Agent, id.as_str(), now, "key rotated", now).await?;
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("rotating a key"))
    }
}

fn agent_from_row(r: &AnyRow) -> Result<Agent> {
    let tools: String = col(r, "tools")?;
    Ok(Agent {
        id: AgentId::from_str(&col::<String>(r, "id")?).map_err(corrupt("agent id"))?,
        owner: col(r, "owner")?,
        purpose: col(r, "purpose")?,
        tools: serde_json::from_str(&tools).map_err(|e| StoreError::Corrupt(format!("agent tools: {e}")))?,
        autonomy: Autonomy::try_from(col::<i64>(r, "autonomy")?).map_err(corrupt("autonomy"))?,
        status: AgentStatus::from_str(&col::<String>(r, "status")?).map_err(corrupt("status"))?,
        public_key: col(r, "public_key")?,
        token_binding: TokenBinding::from_str(&col::<String>(r, "token_binding")?).map_err(corrupt("token binding"))?,
        parent: col::<Option<String>>(r, "parent")?.map(|p| AgentId::from_str(&p)).transpose().map_err(corrupt("parent"))?,
        created_at: col(r, "created_at")?,
    })
}

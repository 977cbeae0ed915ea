//! The `approvals` table: calls held for humans, decided by operators,
//! used once; the clear arguments approvers see are kept apart and only
//! while the approval is open.

use crate::{Result, Store, StoreError, db};
use sqlx::{Any, Transaction};
use warden_core::{Approval, ApprovalStatus, Operator, ToolRef};

impl Store {
    pub async fn insert_approval(&self, a: &Approval) -> Result<()> {
        let mut tx = self.write_tx("holding a call for approval").await?;
        Self::write_approval(&mut tx, a, true).await?;
        tx.commit().await.map_err(db("holding a call for approval"))
    }

    async fn write_approval(tx: &mut Transaction<'_, Any>, a: &Approval, insert: bool) -> Result<()> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("approval {}: {e}", a.id));
        let record = serde_json::to_string(a).map_err(corrupt)?;
        // The clear arguments are kept only while someone may still decide or
        // the call may still run on them.
        let open = matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::Approved);
        let args = a.args.as_ref().filter(|_| open).map(serde_json::to_string).transpose().map_err(corrupt)?;
        // An update never replaces the stored clear arguments, only drops them.
        let q = match (insert, open) {
            (true, _) => {
                "INSERT INTO approvals (status, record, id, agent, tool, args_sha256, created_ms, expires_ms, approver_args) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
            }
            (false, true) => {
                "UPDATE approvals SET status = $1, record = $2 WHERE id = $3 AND agent = $4 AND tool = $5 AND args_sha256 = $6 AND created_ms = $7 AND expires_ms = $8"
            }
            (false, false) => {
                "UPDATE approvals SET status = $1, record = $2, approver_args = NULL \
                 WHERE id = $3 AND agent = $4 AND tool = $5 AND args_sha256 = $6 AND created_ms = $7 AND expires_ms = $8"
            }
        };
        let mut query = sqlx::query(q)
            .bind(a.status.as_str())
            .bind(record)
            .bind(&a.id)
            .bind(&a.agent)
            .bind(a.tool.to_string())
            .bind(&a.args_sha256)
            .bind(a.created_ms)
            .bind(a.expires_ms);
        if insert {
            query = query.bind(args);
        }
        query.execute(&mut **tx).await.map_err(db("recording an approval"))?;
        Ok(())
    }

    /// An approval from its stored `record` and clear arguments.
    fn parse_approval(id: &str, (record, args): (String, Option<String>)) -> Result<Approval> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("approval {id}: {e}"));
        let mut a: Approval = serde_json::from_str(&record).map_err(corrupt)?;
        a.args = args.map(|t| serde_json::from_str(&t)).transpose().map_err(corrupt)?;
        Ok(a)
    }

    async fn read_approval(tx: &mut Transaction<'_, Any>, id: &str) -> Result<Approval> {
        let row: Option<(String, Option<String>)> = sqlx::query_as("SELECT record, approver_args FROM approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("reading an approval"))?;
        Self::parse_approval(id, row.ok_or_else(|| StoreError::NotFound(format!("approval {id} (see `warden approvals list`)")))?)
    }

    pub async fn get_approval(&self, id: &str) -> Result<Approval> {
        let mut tx = self.pool.begin().await.map_err(db("reading an approval"))?;
        Self::read_approval(&mut tx, id).await
    }

    /// Approvals, newest first: pending only, or all (at most `limit`).
    pub async fn list_approvals(&self, pending_only: bool, limit: u32) -> Result<Vec<Approval>> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT record, approver_args FROM approvals WHERE status = 'pending' OR NOT $1 ORDER BY created_ms DESC LIMIT $2")
                .bind(pending_only)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing approvals"))?;
        rows.into_iter().map(|r| Self::parse_approval("in the list", r)).collect()
    }

    /// One authenticated operator's decision (see `Approval::decide`); an
    /// approval found expired is marked so and the decision refused.
    pub async fn decide_approval(&self, id: &str, approver: &Operator, approve: bool, reason: &str, now_ms: i64) -> Result<Approval> {
        let mut tx = self.write_tx("deciding an approval").await?;
        let mut a = Self::read_approval(&mut tx, id).await?;
        let decided = a.decide(approver, approve, reason, now_ms);
        Self::write_approval(&mut tx, &a, false).await?;
        tx.commit().await.map_err(db("deciding an approval"))?;
        decided.map_err(|e| StoreError::Conflict(e.to_string()))?;
        Ok(a)
    }

    /// Mark a still-pending approval expired (its call timed out).
    pub async fn expire_approval(&self, id: &str) -> Result<Approval> {
        self.transition_approval(id, ApprovalStatus::Pending, ApprovalStatus::Expired, i64::MIN).await
    }

    /// Use an approved, unexpired approval for its call: once only.
    pub async fn use_approval(&self, id: &str, now_ms: i64) -> Result<Approval> {
        self.transition_approval(id, ApprovalStatus::Approved, ApprovalStatus::Used, now_ms).await
    }

    async fn transition_approval(&self, id: &str, from: ApprovalStatus, to: ApprovalStatus, now_ms: i64) -> Result<Approval> {
        let mut tx = self.write_tx("updating an approval").await?;
        let mut a = Self::read_approval(&mut tx, id).await?;
        if a.status != from || now_ms > a.expires_ms {
            return Err(StoreError::Conflict(format!("approval {id} is {}, not {from}", if now_ms > a.expires_ms { "expired" } else { a.status.as_str() })));
        }
        a.status = to;
        Self::write_approval(&mut tx, &a, false).await?;
        tx.commit().await.map_err(db("updating an approval"))?;
        Ok(a)
    }

    /// The approved, unexpired approval for exactly this call, if any.
    pub async fn approved_for(&self, agent: &str, tool: &ToolRef, args_sha256: &str, now_ms: i64) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT id FROM approvals WHERE agent = $1 AND tool = $2 AND args_sha256 = $3 AND status = 'approved' AND expires_ms >= $4 ORDER BY created_ms LIMIT 1",
        )
        .bind(agent)
        .bind(tool.to_string())
        .bind(args_sha256)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("looking up approvals"))
    }
}

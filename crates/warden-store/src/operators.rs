//! The `operators` table: who may use the admin API and dashboard, with
//! which role, known by the SHA-256 of their token (never the token).

use crate::{Result, Store, StoreError, corrupt, db};
use warden_core::{Operator, Role};

/// A registered operator (see [`Store::list_operators`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOperator {
    /// The name audit records carry (`operator:NAME`).
    pub name: String,
    /// What the operator may do.
    pub role: Role,
    /// When it was added (Unix milliseconds).
    pub created_ms: i64,
}

impl Store {
    /// Register an operator by the SHA-256 of their API token.
    pub async fn add_operator(&self, name: &str, role: Role, token_sha256: &str, now_ms: i64) -> Result<()> {
        let mut tx = self.write_tx("adding an operator").await?;
        let r = sqlx::query("INSERT INTO operators (name, role, token_sha256, created_ms) VALUES ($1,$2,$3,$4)")
            .bind(name)
            .bind(role.as_str())
            .bind(token_sha256)
            .bind(now_ms)
            .execute(&mut *tx)
            .await;
        match r {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("operator {name} exists; remove it first to issue a new token")));
            }
            other => other.map_err(db("adding an operator"))?,
        };
        tx.commit().await.map_err(db("adding an operator"))
    }

    pub async fn remove_operator(&self, name: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM operators WHERE name = $1").bind(name).execute(&self.pool).await.map_err(db("removing an operator"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("operator {name}")));
        }
        Ok(())
    }

    /// The operator holding the token with this digest.
    pub async fn operator_by_token(&self, token_sha256: &str) -> Result<Option<Operator>> {
        let row: Option<(String, String)> = sqlx::query_as("SELECT name, role FROM operators WHERE token_sha256 = $1")
            .bind(token_sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("authenticating an operator"))?;
        row.map(|(name, r)| Ok(Operator { name, role: r.parse().map_err(corrupt("operator role"))? })).transpose()
    }

    /// Every operator, by name.
    pub async fn list_operators(&self) -> Result<Vec<StoredOperator>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, role, created_ms FROM operators ORDER BY name").fetch_all(&self.pool).await.map_err(db("listing operators"))?;
        rows.into_iter().map(|(name, r, created_ms)| Ok(StoredOperator { name, role: r.parse().map_err(corrupt("operator role"))?, created_ms })).collect()
    }
}

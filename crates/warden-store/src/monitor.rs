//! The `monitor_state` table: each agent's learned monitor state (baseline,
//! risk; JSON written by `warden-monitor`), saved and restored across
//! restarts.

use crate::{Result, Store, db};

/// One agent's saved monitor state (see [`Store::monitor_states`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMonitorState {
    /// The agent's SPIFFE id.
    pub agent: String,
    /// The state as `warden-monitor` serialized it (JSON).
    pub state: String,
    /// When it was saved (Unix milliseconds).
    pub updated_ms: i64,
}

impl Store {
    /// Save learned monitor state (JSON per agent) in one transaction.
    pub async fn save_monitor_states(&self, states: &[(String, String)], now_ms: i64) -> Result<()> {
        let mut tx = self.write_tx("saving monitor state").await?;
        for (agent, state) in states {
            sqlx::query(
                "INSERT INTO monitor_state (agent, state, updated_ms) VALUES ($1,$2,$3)
                 ON CONFLICT(agent) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
            )
            .bind(agent)
            .bind(state)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db("saving monitor state"))?;
        }
        tx.commit().await.map_err(db("saving monitor state"))
    }

    /// Every agent's saved monitor state, by agent.
    pub async fn monitor_states(&self) -> Result<Vec<StoredMonitorState>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT agent, state, updated_ms FROM monitor_state ORDER BY agent")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading monitor state"))?;
        Ok(rows.into_iter().map(|(agent, state, updated_ms)| StoredMonitorState { agent, state, updated_ms }).collect())
    }
}

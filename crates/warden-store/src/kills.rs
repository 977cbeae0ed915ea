//! The `kills` table: kill switches engaged and lifted (an agent's switch
//! suspends and resumes the agent too), and their history.

use crate::{Result, Store, StoreError, col, corrupt, db};
use sqlx::any::AnyRow;
use std::str::FromStr;
use warden_core::{AgentId, AgentStatus, Kill, KillScope};

/// A kill switch just engaged (see [`Store::engage_kill`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngagedKill {
    /// The switch with its store id.
    pub kill: Kill,
    /// The change counter after the write: a gateway whose snapshot has
    /// reached it sees the switch.
    pub change_seq: i64,
}

/// A kill switch as stored, engaged or lifted (see [`Store::list_kills`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKill {
    /// The switch as it was engaged.
    pub kill: Kill,
    /// When and by whom it was lifted; `None` while it is engaged.
    pub lifted: Option<KillLift>,
}

/// The lifting of a kill switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillLift {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `operator:NAME`, or what lifted it (an agent resumed).
    pub by: String,
}

impl Store {
    /// Engage a kill switch; returns it with its id and the change counter
    /// after the write. An agent kill also suspends the agent and revokes
    /// every token it and its sub-agents hold. One switch per scope and
    /// target can be engaged at a time.
    pub async fn engage_kill(&self, k: &Kill) -> Result<EngagedKill> {
        let mut tx = self.write_tx("engaging a kill switch").await?;
        if k.scope == KillScope::Agent {
            let id = AgentId::from_str(&k.target).map_err(|e| StoreError::NotFound(e.to_string()))?;
            Self::agent_status_tx(&mut tx, &id, AgentStatus::Suspended, &k.reason, k.at_ms.div_euclid(1000)).await?;
        }
        let r = sqlx::query_scalar("INSERT INTO kills (scope, target, reason, by, at_ms) VALUES ($1,$2,$3,$4,$5) RETURNING id")
            .bind(k.scope.as_str())
            .bind(&k.target)
            .bind(&k.reason)
            .bind(&k.by)
            .bind(k.at_ms)
            .fetch_one(&mut *tx)
            .await;
        let id: i64 = match r {
            Ok(id) => id,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("a kill switch for {} {} is already engaged", k.scope, k.target)));
            }
            Err(e) => return Err(StoreError::Db { context: "engaging a kill switch", source: e }),
        };
        self.bump(&mut tx).await?;
        let seq: String =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'change_seq'").fetch_one(&mut *tx).await.map_err(db("engaging a kill switch"))?;
        tx.commit().await.map_err(db("engaging a kill switch"))?;
        let change_seq = seq.parse().map_err(|_| StoreError::Corrupt("change counter".into()))?;
        Ok(EngagedKill { kill: Kill { id, ..k.clone() }, change_seq })
    }

    /// Lift an engaged kill switch. Lifting an agent kill re-activates the
    /// agent (unless it was revoked for good); its old tokens stay revoked.
    pub async fn lift_kill(&self, id: i64, by: &str, now_ms: i64) -> Result<Kill> {
        let mut tx = self.write_tx("lifting a kill switch").await?;
        let row = sqlx::query("SELECT * FROM kills WHERE id = $1 AND lifted_at_ms IS NULL")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("lifting a kill switch"))?;
        let kill = kill_from_row(&row.ok_or_else(|| StoreError::NotFound(format!("engaged kill switch #{id} (see `warden kill list`)")))?)?;
        sqlx::query("UPDATE kills SET lifted_at_ms = $1, lifted_by = $2 WHERE id = $3")
            .bind(now_ms)
            .bind(by)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("lifting a kill switch"))?;
        if kill.scope == KillScope::Agent {
            sqlx::query("UPDATE agents SET status = 'active' WHERE id = $1 AND status = 'suspended'")
                .bind(&kill.target)
                .execute(&mut *tx)
                .await
                .map_err(db("lifting a kill switch"))?;
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("lifting a kill switch"))?;
        Ok(kill)
    }

    /// Kill switches, newest first: engaged only, or the history too (with
    /// when and by whom each was lifted).
    pub async fn list_kills(&self, include_lifted: bool) -> Result<Vec<StoredKill>> {
        let rows = sqlx::query("SELECT * FROM kills WHERE lifted_at_ms IS NULL OR $1 ORDER BY id DESC")
            .bind(include_lifted)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing kill switches"))?;
        rows.iter()
            .map(|r| {
                let lifted = col::<Option<i64>>(r, "lifted_at_ms")?
                    .map(|at_ms| Ok::<_, StoreError>(KillLift { at_ms, by: col::<Option<String>>(r, "lifted_by")?.unwrap_or_default() }));
                Ok(StoredKill { kill: kill_from_row(r)?, lifted: lifted.transpose()? })
            })
            .collect()
    }

    pub async fn active_kills(&self) -> Result<Vec<Kill>> {
        Ok(self.list_kills(false).await?.into_iter().map(|k| k.kill).collect())
    }
}

fn kill_from_row(r: &AnyRow) -> Result<Kill> {
    Ok(Kill {
        id: col(r, "id")?,
        scope: KillScope::from_str(&col::<String>(r, "scope")?).map_err(corrupt("kill scope"))?,
        target: col(r, "target")?,
        reason: col(r, "reason")?,
        by: col(r, "by")?,
        at_ms: col(r, "at_ms")?,
    })
}

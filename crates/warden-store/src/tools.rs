//! The `tools` table: classification, definitions observed upstream with
//! their inspection findings, and the pin that makes a tool callable.

use crate::{Result, Store, StoreError, col, corrupt, db};
use sqlx::any::AnyRow;
use std::str::FromStr;
use warden_core::{Tool, ToolRef, ToolStatus};

impl Store {
    /// Register or update a tool's classification (keeps pins and observations).
    pub async fn upsert_tool(&self, t: &Tool) -> Result<()> {
        let mut tx = self.write_tx("registering a tool").await?;
        sqlx::query(
            "INSERT INTO tools (tool, sensitivity, action_class, exfil_capable, untrusted_content, pinned_hash, observed_hash, status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
             ON CONFLICT(tool) DO UPDATE SET sensitivity = excluded.sensitivity, action_class = excluded.action_class,
             exfil_capable = excluded.exfil_capable, untrusted_content = excluded.untrusted_content, status = excluded.status,
             pinned_hash = excluded.pinned_hash",
        )
        .bind(t.tool.to_string())
        .bind(t.sensitivity.as_str())
        .bind(t.action_class.as_str())
        .bind(i64::from(t.exfil_capable))
        .bind(i64::from(t.untrusted_content))
        .bind(&t.pinned_hash)
        .bind(&t.observed_hash)
        .bind(t.status.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db("registering a tool"))?;
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("registering a tool"))
    }

    pub async fn get_tool(&self, tool: &ToolRef) -> Result<Tool> {
        let row = sqlx::query("SELECT * FROM tools WHERE tool = $1").bind(tool.to_string()).fetch_optional(&self.pool).await.map_err(db("reading a tool"))?;
        row.map(|r| tool_from_row(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("tool {tool}")))
    }

    pub async fn list_tools(&self) -> Result<Vec<Tool>> {
        let rows = sqlx::query("SELECT * FROM tools ORDER BY tool").fetch_all(&self.pool).await.map_err(db("listing tools"))?;
        rows.iter().map(tool_from_row).collect()
    }

    /// The definition last observed upstream (canonical JSON), if any.
    pub async fn observed_definition(&self, tool: &ToolRef) -> Result<Option<String>> {
        self.observed(tool, "SELECT observed_definition FROM tools WHERE tool = $1").await
    }

    /// Inspection findings on the observed definition (JSON array), if any.
    pub async fn observed_findings(&self, tool: &ToolRef) -> Result<Option<String>> {
        self.observed(tool, "SELECT observed_findings FROM tools WHERE tool = $1").await
    }

    /// One nullable text column of a tool's row, by a constant query.
    async fn observed(&self, tool: &ToolRef, query: &'static str) -> Result<Option<String>> {
        let v: Option<Option<String>> =
            sqlx::query_scalar(query).bind(tool.to_string()).fetch_optional(&self.pool).await.map_err(db("reading a tool's observed definition"))?;
        Ok(v.flatten())
    }

    /// Record a definition seen upstream, with what inspection found in it
    /// (a JSON array; `None` when clean). A tool seen for the first time is
    /// added as `pending`; an approved tool whose definition moved away from
    /// its pin becomes `changed`. Returns the tool after the update.
    pub async fn observe_tool(&self, tool: &ToolRef, hash: &str, definition: &str, findings: Option<&str>) -> Result<Tool> {
        let mut tx = self.write_tx("recording a tool definition").await?;
        let before: Option<(Option<String>, String)> = sqlx::query_as("SELECT observed_hash, status FROM tools WHERE tool = $1")
            .bind(tool.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("recording a tool definition"))?;
        sqlx::query(
            "INSERT INTO tools (tool, sensitivity, action_class, exfil_capable, untrusted_content, observed_hash, observed_definition, observed_findings, status)
             VALUES ($1, 'high', 'exec', 1, 1, $2, $3, $4, 'pending')
             ON CONFLICT(tool) DO UPDATE SET observed_hash = excluded.observed_hash, observed_definition = excluded.observed_definition,
             observed_findings = excluded.observed_findings,
             status = CASE WHEN tools.status = 'approved' AND tools.pinned_hash IS DISTINCT FROM excluded.observed_hash THEN 'changed'
                           WHEN tools.status = 'changed' AND tools.pinned_hash IS NOT DISTINCT FROM excluded.observed_hash THEN 'approved'
                           ELSE tools.status END",
        )
        .bind(tool.to_string())
        .bind(hash)
        .bind(definition)
        .bind(findings)
        .execute(&mut *tx)
        .await
        .map_err(db("recording a tool definition"))?;
        let row =
            sqlx::query("SELECT * FROM tools WHERE tool = $1").bind(tool.to_string()).fetch_one(&mut *tx).await.map_err(db("recording a tool definition"))?;
        let after = tool_from_row(&row)?;
        if before.as_ref().map(|(h, s)| (h.as_deref(), s.as_str())) != Some((after.observed_hash.as_deref(), after.status.as_str())) {
            self.bump(&mut tx).await?;
        }
        tx.commit().await.map_err(db("recording a tool definition"))?;
        Ok(after)
    }

    /// Pin the observed definition: the tool becomes callable as it is now.
    /// A definition that inspection flagged (possible tool poisoning) is
    /// pinned only when the operator accepts the findings explicitly.
    pub async fn approve_tool(&self, tool: &ToolRef, accept_findings: bool) -> Result<Tool> {
        let mut tx = self.write_tx("approving a tool").await?;
        let flagged: Option<Option<String>> = sqlx::query_scalar("SELECT observed_findings FROM tools WHERE tool = $1")
            .bind(tool.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("approving a tool"))?;
        if let Some(Some(f)) = flagged.filter(|_| !accept_findings) {
            return Err(StoreError::Conflict(format!(
                "the observed definition of {tool} was flagged by inspection (possible tool poisoning): {f}; review it with `warden tool show {tool}` and approve with --accept-findings only if it is safe"
            )));
        }
        let r = sqlx::query("UPDATE tools SET pinned_hash = observed_hash, status = 'approved' WHERE tool = $1 AND observed_hash IS NOT NULL")
            .bind(tool.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db("approving a tool"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tool {tool} with an observed definition (start `warden serve` so the gateway can see it upstream)")));
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("approving a tool"))?;
        self.get_tool(tool).await
    }

    pub async fn set_tool_status(&self, tool: &ToolRef, status: ToolStatus) -> Result<()> {
        let mut tx = self.write_tx("changing a tool").await?;
        let r = sqlx::query("UPDATE tools SET status = $1 WHERE tool = $2")
            .bind(status.as_str())
            .bind(tool.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db("changing a tool"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tool {tool}")));
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("changing a tool"))
    }
}

fn tool_from_row(r: &AnyRow) -> Result<Tool> {
    Ok(Tool {
        tool: ToolRef::from_str(&col::<String>(r, "tool")?).map_err(corrupt("tool"))?,
        sensitivity: col::<String>(r, "sensitivity")?.parse().map_err(corrupt("sensitivity"))?,
        action_class: col::<String>(r, "action_class")?.parse().map_err(corrupt("action class"))?,
        exfil_capable: col::<i64>(r, "exfil_capable")? != 0,
        untrusted_content: col::<i64>(r, "untrusted_content")? != 0,
        pinned_hash: col(r, "pinned_hash")?,
        observed_hash: col(r, "observed_hash")?,
        status: col::<String>(r, "status")?.parse().map_err(corrupt("tool status"))?,
    })
}

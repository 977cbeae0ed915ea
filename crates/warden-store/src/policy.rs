//! The `policy_bundles` table: validated, tested policy bundles pushed for
//! every gateway; the highest version is in force.

use crate::{Result, Store, db};

/// The policy bundle in force (see [`Store::latest_policy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// 1 for the first bundle pushed, one more for each next.
    pub version: i64,
    /// SHA-256 of the bundle, as pushed.
    pub sha256: String,
    /// The schema and policy files (`warden_policy::BundleSources` as JSON).
    pub sources: String,
}

impl Store {
    /// Store a validated, tested bundle as the next version; every gateway
    /// loads it at its next refresh (at once on PostgreSQL). Returns the
    /// version.
    pub async fn push_policy(&self, sources_json: &str, sha256: &str, by: &str, now_ms: i64) -> Result<i64> {
        let mut tx = self.write_tx("pushing a policy bundle").await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM policy_bundles").fetch_one(&mut *tx).await.map_err(db("pushing a policy bundle"))?;
        let version = last.unwrap_or(0) + 1;
        sqlx::query("INSERT INTO policy_bundles (version, sha256, sources, pushed_by, pushed_ms) VALUES ($1,$2,$3,$4,$5)")
            .bind(version)
            .bind(sha256)
            .bind(sources_json)
            .bind(by)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db("pushing a policy bundle"))?;
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("pushing a policy bundle"))?;
        Ok(version)
    }

    /// The version in force (0: none pushed; gateways use their policy_dir).
    pub async fn policy_version(&self) -> Result<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM policy_bundles").fetch_one(&self.pool).await.map_err(db("reading the policy version"))?;
        Ok(v.unwrap_or(0))
    }

    /// The bundle in force, if any was pushed.
    pub async fn latest_policy(&self) -> Result<Option<StoredPolicy>> {
        let row: Option<(i64, String, String)> = sqlx::query_as("SELECT version, sha256, sources FROM policy_bundles ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading the policy bundle"))?;
        Ok(row.map(|(version, sha256, sources)| StoredPolicy { version, sha256, sources }))
    }
}

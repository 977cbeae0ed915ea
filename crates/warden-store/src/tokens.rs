//! What makes a token or proof unusable: the `revocations` table (tokens,
//! tasks, agents up to a cut-off, operators' sign-in sessions) and the `one_time_ids` table (DPoP proof
//! and client assertion `jti`s already used), with its group-commit writer.

use crate::{Result, Store, db};
use sqlx::{Any, Transaction};
use std::time::Duration;
use warden_identity::RevocationSet;

/// Kind of revocation entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    /// One token id (and every token derived from it).
    Token,
    /// Every token for a task.
    Task,
    /// Every token an agent (or its sub-agents) got up to the cut-off.
    Agent,
    /// Every sign-in session an operator started up to the cut-off.
    Operator,
}

impl RevocationKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Task => "task",
            Self::Agent => "agent",
            Self::Operator => "operator",
        }
    }
}

impl Store {
    /// Within a write transaction: revoke what `kind` and `value` name up to
    /// `cutoff` (agents suspended or re-keyed revoke through it).
    pub(crate) async fn insert_revocation(tx: &mut Transaction<'_, Any>, kind: RevocationKind, value: &str, cutoff: i64, reason: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO revocations (kind, value, cutoff, reason, at) VALUES ($1,$2,$3,$4,$5)")
            .bind(kind.as_str())
            .bind(value)
            .bind(cutoff)
            .bind(reason)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db("recording a revocation"))?;
        Ok(())
    }

    pub async fn revoke(&self, kind: RevocationKind, value: &str, reason: &str, now: i64) -> Result<()> {
        let mut tx = self.write_tx("revoking").await?;
        Self::insert_revocation(&mut tx, kind, value, now, reason, now).await?;
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("revoking"))
    }

    pub async fn revocation_set(&self) -> Result<RevocationSet> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT kind, value, cutoff FROM revocations").fetch_all(&self.pool).await.map_err(db("reading revocations"))?;
        let mut set = RevocationSet::default();
        for (kind, value, cutoff) in rows {
            match kind.as_str() {
                "token" => {
                    set.token_ids.insert(value);
                }
                "task" => {
                    set.tasks.insert(value);
                }
                "operator" => {
                    let e = set.operators_before.entry(value).or_insert(cutoff);
                    *e = (*e).max(cutoff);
                }
                _ => {
                    let e = set.agents_before.entry(value).or_insert(cutoff);
                    *e = (*e).max(cutoff);
                }
            }
        }
        Ok(set)
    }
}

impl Store {
    /// Record one-time ids with the time each stops being acceptable, in one
    /// statement (one round trip for the batch). Per id: `true` when this
    /// call recorded it first, `false` when it was already recorded (by any
    /// replica, before or after a restart) or repeats earlier in `ids`.
    pub async fn claim_one_time_ids(&self, ids: &[(String, i64)]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = String::from("INSERT INTO one_time_ids (id, expires_at) VALUES ");
        for i in 0..ids.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
        }
        sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for (id, expires_at) in ids {
            q = q.bind(id.as_str()).bind(*expires_at);
        }
        let inserted: std::collections::HashSet<String> = q.fetch_all(&self.pool).await.map_err(db("recording one-time ids"))?.into_iter().collect();
        let mut first = std::collections::HashSet::new();
        Ok(ids.iter().map(|(id, _)| inserted.contains(id) && first.insert(id.as_str())).collect())
    }

    /// Forget one-time ids that expired before `before` (Unix seconds).
    pub async fn prune_one_time_ids(&self, before: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM one_time_ids WHERE expires_at < $1").bind(before).execute(&self.pool).await.map_err(db("pruning one-time ids"))?;
        Ok(r.rows_affected())
    }

    /// Start the group-commit writer for one-time ids (needs a Tokio
    /// runtime). Expired ids are pruned every minute once they are
    /// `prune_grace_secs` past their expiry: the grace covers clocks that
    /// differ between replicas, so a replica running ahead does not forget
    /// an id another one would still accept.
    pub fn one_time_ids(&self, prune_grace_secs: i64) -> OneTimeIds {
        let (tx, rx) = tokio::sync::mpsc::channel(8192);
        tokio::spawn(claim_batches(self.clone(), rx, prune_grace_secs));
        OneTimeIds { via: Claims::Batched(tx) }
    }
}

type ClaimReply = tokio::sync::oneshot::Sender<std::result::Result<bool, OneTimeIdsUnavailable>>;

/// Records one-time ids through one writer: each caller waits for the
/// statement holding its id, and ids arriving while one is in flight go in
/// the next (group commit without a timer: a lone request waits one round
/// trip, a busy gateway one round trip per batch).
#[derive(Debug, Clone)]
pub struct OneTimeIds {
    via: Claims,
}

#[derive(Debug, Clone)]
enum Claims {
    /// Batched into statements on the pool (PostgreSQL).
    Batched(tokio::sync::mpsc::Sender<(String, i64, ClaimReply)>),
    /// Committed with the audit records by SQLite's one writer.
    Writer(crate::SqliteWriter),
}

/// The one-time id could not be recorded; the request must be refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the one-time id cannot be recorded in the database ({0}); refusing the request (fail closed): retry when the database is reachable")]
pub struct OneTimeIdsUnavailable(pub(crate) String);

/// Ids per statement (two parameters each).
const MAX_CLAIM_BATCH: usize = 128;

impl OneTimeIds {
    /// `true` when `id` is used for the first time anywhere; it is then
    /// recorded until `expires_at` (Unix seconds).
    pub async fn claim(&self, id: String, expires_at: i64) -> std::result::Result<bool, OneTimeIdsUnavailable> {
        let tx = match &self.via {
            Claims::Batched(tx) => tx,
            Claims::Writer(w) => return w.claim(id, expires_at).await,
        };
        let stopped = || OneTimeIdsUnavailable("the one-time id writer stopped".into());
        let (reply, rx) = tokio::sync::oneshot::channel();
        tx.send((id, expires_at, reply)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// One-time ids recorded by a SQLite writer.
    pub(crate) fn through(writer: crate::SqliteWriter) -> Self {
        Self { via: Claims::Writer(writer) }
    }
}

async fn claim_batches(store: Store, mut rx: tokio::sync::mpsc::Receiver<(String, i64, ClaimReply)>, prune_grace_secs: i64) {
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(MAX_CLAIM_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_CLAIM_BATCH) => if n == 0 { return },
            _ = prune.tick() => {
                let now = warden_core::clock::now_secs();
                if let Err(e) = store.prune_one_time_ids(now - prune_grace_secs).await {
                    tracing::warn!("pruning expired one-time ids failed (retried in a minute): {e}");
                }
                continue;
            }
        }
        let (ids, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|(id, exp, reply)| ((id, exp), reply)).unzip();
        match store.claim_one_time_ids(&ids).await {
            Ok(first) => first.into_iter().zip(replies).for_each(|(f, reply)| drop(reply.send(Ok(f)))),
            Err(e) => {
                let e = OneTimeIdsUnavailable(e.to_string());
                replies.into_iter().for_each(|reply| drop(reply.send(Err(e.clone()))));
            }
        }
    }
}

//! The single audit writer: events from every request are sealed into the
//! hash chain and committed in batches (group commit); each caller waits for
//! its record to be durable, so a failed audit write fails the request.
//! Committed records are also handed to the OTLP logs exporter when one is
//! configured. On SQLite the store's [`SqliteWriter`] batches and commits
//! (with the one-time ids, in the same transactions); on PostgreSQL a task
//! here batches for an [`warden_store::AuditAppender`].

use crate::telemetry::Exporter;
use tokio::sync::{mpsc, oneshot};
use warden_audit::AuditRecord;
use warden_core::AuditEvent;
use warden_identity::Keypair;
use warden_store::{OneTimeIds, SqliteWriter, Store};

type Reply = oneshot::Sender<Result<u64, String>>;

/// Handle for appending audit events.
#[derive(Clone, Debug)]
pub struct AuditSink {
    via: Writer,
}

#[derive(Clone, Debug)]
enum Writer {
    /// The batching task in front of a pooled appender (PostgreSQL).
    Batched(mpsc::Sender<(AuditEvent, Reply)>),
    /// SQLite's one writer, and the logs exporter each committed record
    /// goes to (records carry their `seq`: arrival order may differ).
    Sqlite(SqliteWriter, Option<std::sync::Arc<Exporter<AuditRecord>>>),
}

/// The audit log could not be written; the request must fail closed.
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written ({0}); refusing the request")]
pub struct AuditUnavailable(pub String);

const MAX_BATCH: usize = 512;

/// The longest a request waits for its record to commit (and, on
/// PostgreSQL, the writer for one batch): a database that stops answering (frozen, partitioned) fails
/// requests closed within this bound instead of holding them.
pub const AUDIT_WRITE_TIMEOUT: std::time::Duration = warden_store::DB_WAIT;

impl AuditSink {
    pub fn start(store: Store, key: Keypair, logs: Option<Exporter<AuditRecord>>) -> Self {
        if let Some(w) = store.sqlite_writer(key.clone()) {
            return Self { via: Writer::Sqlite(w, logs.map(std::sync::Arc::new)) };
        }
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(writer(store, key, rx, logs));
        Self { via: Writer::Batched(tx) }
    }

    /// The one-time ids (DPoP proofs, client assertions) recorded alongside:
    /// on SQLite by the same writer, so the two never contend for the
    /// database's write lock.
    pub fn one_time_ids(&self, store: &Store, prune_grace_secs: i64) -> OneTimeIds {
        match &self.via {
            Writer::Sqlite(w, _) => w.one_time_ids(prune_grace_secs),
            Writer::Batched(_) => store.one_time_ids(prune_grace_secs),
        }
    }

    /// Append one event; returns its sequence number once committed.
    pub async fn record(&self, event: AuditEvent) -> Result<u64, AuditUnavailable> {
        let tx = match &self.via {
            Writer::Batched(tx) => tx,
            Writer::Sqlite(w, None) => return w.append(event).await.map(|r| r.seq).map_err(|e| AuditUnavailable(e.0)),
            Writer::Sqlite(w, Some(logs)) => {
                // In a task of its own: a committed record is exported even
                // when the request that wrote it goes away meanwhile.
                let (w, logs) = (w.clone(), logs.clone());
                let exported = tokio::spawn(async move {
                    let r = w.append(event).await?;
                    let seq = r.seq;
                    logs.record(r);
                    Ok(seq)
                });
                return exported
                    .await
                    .unwrap_or_else(|_| Err(warden_store::WriteFailed("the audit writer task failed".into())))
                    .map_err(|e| AuditUnavailable(e.0));
            }
        };
        let (reply, rx) = oneshot::channel();
        let wait = async {
            tx.send((event, reply)).await.map_err(|_| AuditUnavailable("writer stopped".into()))?;
            rx.await.map_err(|_| AuditUnavailable("writer stopped".into()))?.map_err(AuditUnavailable)
        };
        tokio::time::timeout(AUDIT_WRITE_TIMEOUT, wait).await.unwrap_or_else(|_| {
            Err(AuditUnavailable(format!(
                "the database did not commit the record within {} s; check that it is up and responsive",
                AUDIT_WRITE_TIMEOUT.as_secs()
            )))
        })
    }
}

async fn writer(store: Store, key: Keypair, mut rx: mpsc::Receiver<(AuditEvent, Reply)>, logs: Option<Exporter<AuditRecord>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut appender = None;
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let now = warden_core::clock::now_ms();
        let (events, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|(e, r)| ((e, now), r)).unzip();
        if appender.is_none() {
            appender = store.audit_appender(key.clone()).await.map_err(|e| tracing::error!("audit writer: {e}")).ok();
        }
        let result = match appender.as_mut() {
            // On a timeout the connection is dropped (its state unknown) and
            // the next batch starts from the head stored in the database.
            Some(w) => tokio::time::timeout(AUDIT_WRITE_TIMEOUT, w.append(events)).await.unwrap_or_else(|_| {
                Err(warden_store::StoreError::Conflict(format!("the audit append did not finish within {} s", AUDIT_WRITE_TIMEOUT.as_secs())))
            }),
            None => Err(warden_store::StoreError::Conflict("no database connection for the audit writer".into())),
        };
        if result.is_err() {
            // Reconnect on the next batch.
            appender = None;
        }
        match result {
            Ok(records) => {
                for (r, reply) in records.iter().zip(replies) {
                    let _ = reply.send(Ok(r.seq));
                }
                if let Some(l) = &logs {
                    records.into_iter().for_each(|r| l.record(r));
                }
            }
            Err(e) => {
                tracing::error!("audit append failed: {e}");
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

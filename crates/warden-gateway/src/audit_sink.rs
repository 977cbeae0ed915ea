//! The single audit writer: events from every request are sealed into the
//! hash chain and committed in batches (group commit); each caller waits for
//! its record to be durable, so a failed audit write fails the request.
//! Committed records are also handed to the OTLP logs exporter when one is
//! configured.

use crate::telemetry::Exporter;
use tokio::sync::{mpsc, oneshot};
use warden_audit::AuditRecord;
use warden_core::AuditEvent;
use warden_identity::Keypair;
use warden_store::Store;

type Reply = oneshot::Sender<Result<u64, String>>;

/// Handle for appending audit events.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<(AuditEvent, Reply)>,
}

/// The audit log could not be written; the request must fail closed.
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written ({0}); refusing the request")]
pub struct AuditUnavailable(pub String);

const MAX_BATCH: usize = 512;

/// The longest a request waits for its record to commit, and the writer for
/// one batch: a database that stops answering (frozen, partitioned) fails
/// requests closed within this bound instead of holding them.
pub const AUDIT_WRITE_TIMEOUT: std::time::Duration = warden_store::DB_WAIT;

impl AuditSink {
    pub fn start(store: Store, key: Keypair, logs: Option<Exporter<AuditRecord>>) -> Self {
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(writer(store, key, rx, logs));
        Self { tx }
    }

    /// Append one event; returns its sequence number once committed.
    pub async fn record(&self, event: AuditEvent) -> Result<u64, AuditUnavailable> {
        let (tx, rx) = oneshot::channel();
        let wait = async {
            self.tx.send((event, tx)).await.map_err(|_| AuditUnavailable("writer stopped".into()))?;
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

//! The `audit` table and the audit head in `meta`: appending sealed
//! records, reading and verifying the chain; and the `checkpoints` table of
//! signed Merkle checkpoints over it.

use crate::{Backend, Result, Store, StoreError, db};
use sqlx::{Any, Executor};
use warden_audit::merkle::Frontier;
use warden_audit::{AuditError, AuditRecord, Chain, ChainHead, Checkpoint, VerifyReport};
use warden_core::AuditEvent;
use warden_identity::Keypair;

impl Store {
    /// The whole stored log in order; unreadable rows come back as parse
    /// errors in their place (verification reports them).
    pub async fn audit_records(&self) -> Result<Vec<std::result::Result<AuditRecord, AuditError>>> {
        Ok(self.audit_lines(None).await?.iter().enumerate().map(|(i, l)| warden_audit::parse_line(i, l)).collect())
    }

    /// Every record's stored JSON text (its export line), in order; with
    /// `upto`, only records up to that sequence number.
    async fn audit_lines(&self, upto: Option<u64>) -> Result<Vec<String>> {
        const PAGE: u32 = 10_000;
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let mut page = self.read_audit_texts(after, PAGE).await?;
            let n = page.len();
            if let Some(last) = page.last() {
                after = last.seq as u64;
            }
            page.retain(|row| upto.is_none_or(|u| row.seq as u64 <= u));
            let cut = page.len() < n;
            out.extend(page.into_iter().map(|row| row.text));
            if n < PAGE as usize || cut {
                return Ok(out);
            }
        }
    }

    /// Verify the stored log against the gateway key, the stored head and
    /// every signed checkpoint.
    pub async fn verify_audit(&self, key: &warden_identity::PublicKey) -> Result<std::result::Result<VerifyReport, AuditError>> {
        self.verify_audit_with(key, &[]).await
    }

    /// As [`Store::verify_audit`], and against checkpoints kept outside the
    /// database (already signature-checked): the stored head and checkpoint
    /// rows are the database writer's to rewrite, those are not.
    pub async fn verify_audit_with(&self, key: &warden_identity::PublicKey, published: &[Checkpoint]) -> Result<std::result::Result<VerifyReport, AuditError>> {
        let mut checkpoints = published.to_vec();
        for c in self.checkpoints().await? {
            match Checkpoint::verify(&c.note, key) {
                Ok(cp) if cp.size == c.size => checkpoints.push(cp),
                _ => return Ok(Err(AuditError::Checkpoint { size: c.size })),
            }
        }
        // The head first, then the records up to it: the head and its
        // records commit together, so the log read this way is exactly as
        // long as the head says unless records were removed, however many
        // a live gateway appends meanwhile (those wait for the next run).
        let head = self.audit_head().await?;
        let lines = self.audit_lines(Some(head.seq)).await?;
        Ok(warden_audit::verify_lines(lines.iter().map(String::as_str), key, ChainHead::default(), Some(&head), &checkpoints))
    }

    /// A writer for the audit log, holding its own connection.
    pub async fn audit_appender(&self, key: Keypair) -> Result<AuditAppender> {
        let mut conn = self.pool.acquire().await.map_err(db("opening the audit writer"))?;
        if self.backend == Backend::Sqlite {
            // The answer to a call waits for its record: the record must
            // survive a power loss too, not only a crash of this process
            // (which WAL with NORMAL already survives). One fsync per batch.
            conn.execute("PRAGMA synchronous = FULL").await.map_err(db("opening the audit writer"))?;
        }
        Ok(AuditAppender { store: self.clone(), conn, key, head: None })
    }

    /// The head recorded with the last append.
    pub async fn audit_head(&self) -> Result<ChainHead> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'audit_head'").fetch_optional(&self.pool).await.map_err(db("reading the audit head"))?;
        match v {
            None => Ok(ChainHead::default()),
            Some(s) => serde_json::from_str(&s).map_err(|_| StoreError::Corrupt("audit head".into())),
        }
    }

    /// Records with `seq > after`, in order, at most `limit`. Rows that do not
    /// parse are returned as errors so verification reports them.
    pub async fn read_audit(&self, after: u64, limit: u32) -> Result<Vec<std::result::Result<AuditRecord, String>>> {
        let rows = self.read_audit_texts(after, limit).await?;
        Ok(rows.into_iter().map(|row| serde_json::from_str(&row.text).map_err(|e| format!("row {}: {e}", row.seq))).collect())
    }

    /// Rows with `seq > after`, in order, at most `limit`, unparsed.
    async fn read_audit_texts(&self, after: u64, limit: u32) -> Result<Vec<AuditRow>> {
        let rows: Vec<(i64, String)> = sqlx::query_as("SELECT seq, record FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the audit log"))?;
        Ok(rows.into_iter().map(|(seq, text)| AuditRow { seq, text }).collect())
    }

    /// The newest signed checkpoint, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let row: Option<(i64, String, String, String, i64)> =
            sqlx::query_as("SELECT size, head_hash, frontier, note, ts_ms FROM checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading checkpoints"))?;
        row.map(StoredCheckpoint::from_row).transpose()
    }

    /// Every signed checkpoint, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as("SELECT size, head_hash, frontier, note, ts_ms FROM checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading checkpoints"))?;
        rows.into_iter().map(StoredCheckpoint::from_row).collect()
    }

    /// Sign a checkpoint of the log as it stands, if it grew since the last
    /// one. Only records that verify (chain, hashes, batch signatures) from
    /// the last checkpoint on are covered: a checkpoint never vouches for a
    /// log that was already tampered with. Replicas racing to checkpoint the
    /// same size produce the same note (Ed25519 is deterministic); the first
    /// one stored wins. Returns the newest checkpoint.
    pub async fn make_checkpoint(&self, key: &Keypair, origin: &str, now_ms: i64) -> Result<Option<StoredCheckpoint>> {
        let last = self.latest_checkpoint().await?;
        let (mut head, mut tree) = match &last {
            Some(c) => (ChainHead { seq: c.size, hash: c.head_hash.clone() }, c.frontier.clone()),
            None => (ChainHead::default(), Frontier::default()),
        };
        let start = head.seq;
        const PAGE: u32 = 10_000;
        loop {
            let page = self.read_audit(head.seq, PAGE).await?;
            let n = page.len();
            let records: Vec<AuditRecord> =
                page.into_iter().collect::<std::result::Result<_, _>>().map_err(|e| StoreError::Corrupt(format!("audit log: {e}")))?;
            let Some(last_rec) = records.last() else { break };
            let next = ChainHead { seq: last_rec.seq, hash: last_rec.hash.clone() };
            for r in &records {
                tree.push(r.leaf_hash().map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
            // A page may end inside a batch: its signature, further on,
            // covers these records through the chain.
            match warden_audit::verify(records.into_iter().map(Ok), &key.public(), head, None) {
                Ok(_) => {}
                Err(AuditError::Unsealed { .. }) if n == PAGE as usize => {}
                Err(e) => return Err(StoreError::Corrupt(format!("audit log does not verify, no checkpoint signed: {e}"))),
            }
            head = next;
            if n < PAGE as usize {
                break;
            }
        }
        if head.seq == start {
            return Ok(last);
        }
        let note = Checkpoint { origin: origin.to_string(), size: tree.size(), root: tree.root() }.sign(key);
        sqlx::query("INSERT INTO checkpoints (size, head_hash, frontier, note, ts_ms) VALUES ($1,$2,$3,$4,$5) ON CONFLICT (size) DO NOTHING")
            .bind(tree.size() as i64)
            .bind(&head.hash)
            .bind(serde_json::to_string(&tree).expect("frontier serializes"))
            .bind(&note)
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(db("storing a checkpoint"))?;
        self.latest_checkpoint().await
    }

    /// Raw access for tamper demonstrations and repair tooling.
    pub async fn overwrite_audit_row(&self, seq: u64, record_json: &str) -> Result<()> {
        let r = sqlx::query("UPDATE audit SET record = $1 WHERE seq = $2")
            .bind(record_json)
            .bind(seq as i64)
            .execute(&self.pool)
            .await
            .map_err(db("editing the audit log"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("audit record {seq}")));
        }
        Ok(())
    }
}

/// One row of the `audit` table as stored.
struct AuditRow {
    seq: i64,
    /// The record's JSON text, exactly as written (its export line).
    text: String,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size = the last record's `seq`.
    pub size: u64,
    /// Chain hash of record `size`.
    pub head_hash: String,
    pub frontier: Frontier,
    /// The C2SP signed note.
    pub note: String,
    pub ts_ms: i64,
}

impl StoredCheckpoint {
    fn from_row((size, head_hash, frontier, note, ts_ms): (i64, String, String, String, i64)) -> Result<Self> {
        let frontier: Frontier = serde_json::from_str(&frontier).map_err(|e| StoreError::Corrupt(format!("checkpoint {size}: {e}")))?;
        if !frontier.is_valid() || frontier.size() != size as u64 {
            return Err(StoreError::Corrupt(format!("checkpoint {size}: frontier does not match its size")));
        }
        Ok(Self { size: size as u64, head_hash, frontier, note, ts_ms })
    }
}

/// Appends to the audit log over a dedicated connection (no pool checkout
/// or health check per append on the hot path).
pub struct AuditAppender {
    store: Store,
    conn: sqlx::pool::PoolConnection<Any>,
    key: Keypair,
    head: Option<ChainHead>,
}

impl AuditAppender {
    /// Seal `events` onto the chain and append them atomically.
    ///
    /// The writer remembers the head it last wrote: with it the whole append is
    /// one statement batch (a single round trip to the database worker, on
    /// the hot path of every call). If another writer (a CLI command, another
    /// process) extended the chain meanwhile, the sequence number collides,
    /// nothing is written, and the append is redone from the stored head, so
    /// writers never fork the chain.
    pub async fn append(&mut self, events: Vec<(AuditEvent, i64)>) -> Result<Vec<AuditRecord>> {
        // Replicas sharing PostgreSQL extend one chain; under contention a
        // writer may lose the race a few times in a row.
        for _ in 0..50 {
            let head = match self.head.take() {
                Some(h) => h,
                None => self.store.audit_head().await?,
            };
            let records = Chain::new(self.key.clone(), head).seal_batch(events.clone());
            let Some(last) = records.last() else { return Ok(records) };
            let new_head = ChainHead { seq: last.seq, hash: last.hash.clone() };
            let begin = match self.store.backend {
                Backend::Sqlite => "BEGIN IMMEDIATE",
                Backend::Postgres => "BEGIN",
            };
            let mut sql = format!("{begin};\nINSERT INTO audit (seq, record) VALUES ");
            for (i, r) in records.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("({}, {})", r.seq, sql_text(&serde_json::to_string(r).expect("record serializes"))));
            }
            sql.push_str(&format!(
                ";\nINSERT INTO meta (key, value) VALUES ('audit_head', {}) ON CONFLICT(key) DO UPDATE SET value = excluded.value;\nCOMMIT;",
                sql_text(&serde_json::to_string(&new_head).expect("head serializes"))
            ));
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *self.conn).await {
                Ok(_) => {
                    self.head = Some(new_head);
                    return Ok(records);
                }
                Err(e) => {
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await;
                    match e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => continue,
                        other => return Err(StoreError::Db { context: "appending to the audit log", source: other }),
                    }
                }
            }
        }
        Err(StoreError::Conflict("the audit log is being extended by another writer too quickly; retry".into()))
    }
}

/// An SQL string literal. SQLite, and PostgreSQL with standard-conforming
/// strings (checked on connect), have no backslash escapes: doubling single
/// quotes is complete, and serde_json never emits a raw NUL.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

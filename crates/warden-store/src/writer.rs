//! The SQLite write path of every call: one thread owns one connection and
//! commits, in one transaction, every one-time id claim and audit event
//! that queued while the last transaction was committing (group commit:
//! one fsync and one batch signature cover all of them; a caller that finds
//! the writer idle waits for its own commit only).
//!
//! Why a thread on rusqlite rather than the sqlx pool the rest of the store
//! uses: on SQLite every write serialises on one file lock. With the audit
//! appender and the one-time ids as two writers, the loser of each race
//! slept in SQLite's busy handler (a millisecond and up) behind the other's
//! fsync; every sqlx statement is also two hand-offs between the runtime
//! and sqlx's worker thread, and the batch SQL, built with literals, was
//! prepared anew each time. Here statements are prepared once, the thread
//! blocks only on its queue and the disk, and a caller's only hand-offs are
//! its send and the reply. PostgreSQL keeps the pooled writers: there the
//! network round trip is the cost and replicas contend for the chain anyway.
//!
//! Other processes on the same file (the CLI, another gateway) write
//! through connections of their own, their own writer threads included; the
//! file lock orders them (`busy_timeout` is [`DB_WAIT`]) and an audit append
//! that finds its sequence number taken is sealed again on the stored head.
//!
//! Durability: every commit is synced to disk (`synchronous=FULL`), so an
//! answered call's record, and a one-time id its request was admitted on,
//! survive a power loss, not only a crash of this process (which WAL with
//! NORMAL survives). An unsynced id could be forgotten by a power cut and
//! its proof presented once more within its lifetime, with a body of the
//! replayer's choosing (DPoP does not sign the body).

use crate::DB_WAIT;
use crate::tokens::OneTimeIdsUnavailable;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use warden_audit::{AuditRecord, Chain, ChainHead};
use warden_core::AuditEvent;
use warden_identity::Keypair;

/// Jobs per transaction: a burst larger than this commits in several.
const MAX_BATCH: usize = 512;

/// How long a busy writer waits for more jobs before committing a batch of
/// fewer than [`LINGER_BELOW`] with audit records in it: well under the
/// commit's own fsync (about 250 µs on a virtual disk), so the wait costs a
/// caller less than the commits it saves the others.
const LINGER: Duration = Duration::from_micros(100);
const LINGER_BELOW: usize = 16;

/// Writes one-time ids and audit records to a SQLite database through one
/// connection on a thread of its own. Cheap to clone; the thread ends when
/// the last clone (and the last [`crate::OneTimeIds`] made from one) is
/// dropped.
#[derive(Debug, Clone)]
pub struct SqliteWriter {
    tx: mpsc::Sender<Job>,
}

/// Why a write did not commit: the database's own message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct WriteFailed(pub String);

#[derive(Debug)]
enum Job {
    /// Record a one-time id; `true` when this is its first use.
    Claim { id: String, expires_at: i64, reply: oneshot::Sender<Result<bool, WriteFailed>> },
    /// Seal an event onto the chain and append it.
    Append { event: Box<AuditEvent>, reply: oneshot::Sender<Result<AuditRecord, WriteFailed>> },
    /// Forget one-time ids that expired before this (Unix seconds).
    Prune { before: i64 },
}

impl SqliteWriter {
    /// Start the writer for the database file at `path`, sealing audit
    /// records with `key`. The connection is opened on the thread, and
    /// opened again after a failed commit (its state is then unknown).
    pub(crate) fn start(path: PathBuf, key: Keypair) -> Self {
        let (tx, rx) = mpsc::channel(8192);
        std::thread::Builder::new()
            .name("warden-db-writer".into())
            .spawn(move || Writer { path, key, conn: None, head: None }.run(rx))
            .expect("the OS can start a thread");
        Self { tx }
    }

    /// Seal `event` onto the audit chain and commit it; the record as
    /// committed. Fails when the database cannot be written within
    /// [`DB_WAIT`] (the caller must fail closed).
    pub async fn append(&self, event: AuditEvent) -> Result<AuditRecord, WriteFailed> {
        let (reply, rx) = oneshot::channel();
        self.ask(Job::Append { event: Box::new(event), reply }, rx).await
    }

    /// Record a one-time id until `expires_at` (Unix seconds): `true` when
    /// it was not recorded before (by this or any other writer of the file).
    pub async fn claim(&self, id: String, expires_at: i64) -> Result<bool, OneTimeIdsUnavailable> {
        let (reply, rx) = oneshot::channel();
        self.ask(Job::Claim { id, expires_at, reply }, rx).await.map_err(|e| OneTimeIdsUnavailable(e.0))
    }

    /// The one-time ids of this writer, pruned every minute once they are
    /// `prune_grace_secs` past their expiry (see [`crate::Store::one_time_ids`]).
    pub fn one_time_ids(&self, prune_grace_secs: i64) -> crate::OneTimeIds {
        // Weak: the pruning does not keep the writer alive.
        let tx = self.tx.downgrade();
        tokio::spawn(async move {
            let mut prune = tokio::time::interval(Duration::from_secs(60));
            prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                prune.tick().await;
                let before = warden_core::clock::now_secs() - prune_grace_secs;
                let Some(tx) = tx.upgrade() else { return };
                if tx.send(Job::Prune { before }).await.is_err() {
                    return;
                }
            }
        });
        crate::OneTimeIds::through(self.clone())
    }

    async fn ask<T>(&self, job: Job, rx: oneshot::Receiver<Result<T, WriteFailed>>) -> Result<T, WriteFailed> {
        let stopped = || WriteFailed("the database writer stopped".into());
        let wait = async {
            self.tx.send(job).await.map_err(|_| stopped())?;
            rx.await.map_err(|_| stopped())?
        };
        // The thread's lock waits are bounded by `busy_timeout`; this also
        // bounds a queue behind a disk that stopped answering.
        tokio::time::timeout(DB_WAIT, wait)
            .await
            .unwrap_or_else(|_| Err(WriteFailed(format!("the database did not commit within {} s; check that its disk is responsive", DB_WAIT.as_secs()))))
    }
}

/// The thread's state: its connection and the chain head it last wrote.
struct Writer {
    path: PathBuf,
    key: Keypair,
    conn: Option<Connection>,
    head: Option<ChainHead>,
}

/// What a transaction committed: each claim's answer and the records, in
/// the order they came.
struct Committed {
    firsts: Vec<bool>,
    records: Vec<AuditRecord>,
}

/// The jobs of one transaction, taken apart: what to write, and whom to
/// answer (in the order each kind came).
#[derive(Default)]
struct Batch {
    claims: Vec<(String, i64)>,
    prune_before: Option<i64>,
    events: Vec<(AuditEvent, i64)>,
    claimed: Vec<oneshot::Sender<Result<bool, WriteFailed>>>,
    appended: Vec<oneshot::Sender<Result<AuditRecord, WriteFailed>>>,
}

impl Batch {
    fn add(&mut self, job: Job, now_ms: i64) {
        match job {
            Job::Claim { id, expires_at, reply } => {
                self.claims.push((id, expires_at));
                self.claimed.push(reply);
            }
            Job::Append { event, reply } => {
                self.events.push((*event, now_ms));
                self.appended.push(reply);
            }
            Job::Prune { before } => self.prune_before = Some(before),
        }
    }

    fn len(&self) -> usize {
        self.claimed.len() + self.appended.len()
    }

    /// Take what is queued, up to a batch.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Job>, now_ms: i64) {
        while self.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => self.add(j, now_ms),
                Err(_) => return,
            }
        }
    }

    fn answer(self, outcome: Result<Committed, WriteFailed>) {
        match outcome {
            Ok(Committed { firsts, records }) => {
                debug_assert_eq!((firsts.len(), records.len()), (self.claimed.len(), self.appended.len()), "one answer per job");
                self.claimed.into_iter().zip(firsts).for_each(|(reply, first)| drop(reply.send(Ok(first))));
                self.appended.into_iter().zip(records).for_each(|(reply, r)| drop(reply.send(Ok(r))));
            }
            Err(e) => {
                tracing::error!("database write failed: {e}");
                self.claimed.into_iter().for_each(|reply| drop(reply.send(Err(e.clone()))));
                self.appended.into_iter().for_each(|reply| drop(reply.send(Err(e.clone()))));
            }
        }
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        loop {
            // Jobs already waiting when the last commit ended mean callers
            // arrive faster than commits: then a moment's wait lets one
            // commit (one fsync, one signature) cover more of them. A
            // caller that finds the writer idle is committed at once.
            let (first, behind) = match rx.try_recv() {
                Ok(j) => (j, true),
                Err(mpsc::error::TryRecvError::Empty) => match rx.blocking_recv() {
                    Some(j) => (j, false),
                    None => return,
                },
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            };
            let now_ms = warden_core::clock::now_ms();
            let mut batch = Batch::default();
            batch.add(first, now_ms);
            batch.drain(&mut rx, now_ms);
            if behind && !batch.events.is_empty() && batch.len() < LINGER_BELOW {
                std::thread::sleep(LINGER);
                batch.drain(&mut rx, now_ms);
            }
            let events = std::mem::take(&mut batch.events);
            // A panic must not end the thread (every later write would fail
            // until a restart): it fails this batch like any error.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(&batch, events)))
                .unwrap_or_else(|_| Err(WriteFailed("the database writer failed unexpectedly; the batch was not written".into())));
            if outcome.is_err() {
                // Reopened for the next batch, which starts from the stored head.
                self.conn = None;
                self.head = None;
            }
            batch.answer(outcome);
        }
    }

    fn commit(&mut self, batch: &Batch, events: Vec<(AuditEvent, i64)>) -> Result<Committed, WriteFailed> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(open(&self.path).map_err(|e| failed("opening the database", &e))?),
        };
        if let Some(before) = batch.prune_before {
            // A transaction of its own: a failed prune fails no caller.
            if let Err(e) = conn.execute("DELETE FROM one_time_ids WHERE expires_at < ?1", [before]) {
                tracing::warn!("pruning expired one-time ids failed (retried in a minute): {e}");
            }
        }
        let (committed, head) = attempt(conn, &self.key, self.head.take(), batch, events)?;
        self.head = head;
        Ok(committed)
    }
}

/// One transaction over the whole batch: claims first, then the audit
/// events sealed from `head`. Returns what it committed and the head after
/// it (`head` as given when there were no events).
///
/// The transaction holds the write lock from its start (`BEGIN
/// IMMEDIATE`): if a remembered head is stale (another process appended
/// since), the insert collides, and the head read now is the latest one.
/// A collision on that one means the stored head is behind the log.
fn attempt(
    conn: &mut Connection,
    key: &Keypair,
    head: Option<ChainHead>,
    batch: &Batch,
    events: Vec<(AuditEvent, i64)>,
) -> Result<(Committed, Option<ChainHead>), WriteFailed> {
    let fail = |what: &'static str| move |e: rusqlite::Error| failed(what, &e);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail("starting a write"))?;
    let mut firsts = Vec::with_capacity(batch.claims.len());
    if !batch.claims.is_empty() {
        // A repeat within the batch inserts nothing the second time: `false`.
        let mut claim = tx
            .prepare_cached("INSERT INTO one_time_ids (id, expires_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING")
            .map_err(fail("recording one-time ids"))?;
        for (id, expires_at) in &batch.claims {
            firsts.push(claim.execute(params![id, expires_at]).map_err(fail("recording one-time ids"))? == 1);
        }
    }
    if events.is_empty() {
        tx.commit().map_err(fail("committing"))?;
        return Ok((Committed { firsts, records: Vec::new() }, head));
    }
    let (mut head, mut events) = (head, events);
    let records = loop {
        let (from, stored) = match head.take() {
            Some(h) => (h, false),
            None => (stored_head(&tx)?, true),
        };
        let records = Chain::new(key.clone(), from).seal_batch(events);
        match insert_records(&tx, &records)? {
            true => break records,
            false if !stored => events = records.into_iter().map(|r| (r.event, r.ts_ms)).collect(),
            false => {
                return Err(WriteFailed(
                    "the stored audit head is behind the log (a record after it exists); nothing was written: check the log with `warden audit verify`".into(),
                ));
            }
        }
    };
    let last = records.last().expect("events were sealed");
    let new_head = ChainHead { seq: last.seq, hash: last.hash.clone() };
    tx.prepare_cached("INSERT INTO meta (key, value) VALUES ('audit_head', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
        .and_then(|mut s| s.execute([serde_json::to_string(&new_head).expect("head serializes")]))
        .map_err(fail("appending to the audit log"))?;
    tx.commit().map_err(fail("committing the audit log"))?;
    Ok((Committed { firsts, records }, Some(new_head)))
}

/// Insert sealed records; `false` (nothing kept) when a sequence number is
/// taken already.
fn insert_records(tx: &rusqlite::Transaction<'_>, records: &[AuditRecord]) -> Result<bool, WriteFailed> {
    let mut insert = tx.prepare_cached("INSERT INTO audit (seq, record) VALUES (?1, ?2)").map_err(|e| failed("appending to the audit log", &e))?;
    for (i, r) in records.iter().enumerate() {
        let text = serde_json::to_string(r).expect("record serializes");
        match insert.execute(params![r.seq as i64, text]) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                // The rows this batch inserted before the collision go too.
                if i > 0 {
                    tx.execute("DELETE FROM audit WHERE seq >= ?1 AND seq < ?2", params![records[0].seq as i64, r.seq as i64])
                        .map_err(|e| failed("appending to the audit log", &e))?;
                }
                return Ok(false);
            }
            Err(e) => return Err(failed("appending to the audit log", &e)),
        }
    }
    Ok(true)
}

/// The head recorded with the last append, checked for what the chain can
/// extend (a sequence number a batch can follow, a SHA-256 hash).
fn stored_head(tx: &rusqlite::Transaction<'_>) -> Result<ChainHead, WriteFailed> {
    let v: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'audit_head'", [], |r| r.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
        .map_err(|e| failed("reading the audit head", &e))?;
    let corrupt = || WriteFailed("the stored audit head is corrupt; nothing was written: check the log with `warden audit verify`".into());
    let head: ChainHead = match v {
        None => return Ok(ChainHead::default()),
        Some(s) => serde_json::from_str(&s).map_err(|_| corrupt())?,
    };
    let hash_ok = head.hash.len() == 64 && head.hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if head.seq > (i64::MAX as u64) - MAX_BATCH as u64 || !hash_ok {
        return Err(corrupt());
    }
    Ok(head)
}

/// The writer's connection: the store's session settings, every commit
/// synced. The file must exist (the store created and migrated it): one
/// removed meanwhile is not silently recreated empty.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.execute_batch(crate::SQLITE_SESSION)?;
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    Ok(conn)
}

fn failed(what: &str, e: &rusqlite::Error) -> WriteFailed {
    WriteFailed(format!("database error while {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn database() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("w.db");
        crate::Store::open(&path).await.expect("store opens");
        (dir, path)
    }

    #[tokio::test]
    async fn every_commit_is_synced_to_disk_and_waits_for_the_lock_at_most_db_wait() {
        let (_dir, path) = database().await;
        let conn = open(&path).expect("opens");
        let pragma = |p: &str| conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0)).expect("reads");
        assert_eq!(pragma("synchronous"), 2, "FULL: an id or a record survives a power cut");
        assert_eq!(pragma("busy_timeout"), DB_WAIT.as_millis() as i64);
    }

    fn event(reason: &str) -> (AuditEvent, i64) {
        (AuditEvent { reason: Some(reason.into()), ..Default::default() }, 1)
    }

    fn claim(id: &str) -> Batch {
        let mut batch = Batch::default();
        batch.claims.push((id.into(), i64::MAX));
        batch
    }

    fn seqs(path: &Path) -> Vec<i64> {
        let db = Connection::open(path).expect("opens");
        let mut q = db.prepare("SELECT seq FROM audit ORDER BY seq").expect("prepares");
        q.query_map([], |r| r.get(0)).expect("reads").map(|r| r.expect("row")).collect()
    }

    fn set_head(path: &Path, value: &str) {
        Connection::open(path)
            .expect("opens")
            .execute("INSERT INTO meta (key, value) VALUES ('audit_head', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [value])
            .expect("writes");
    }

    #[tokio::test]
    async fn a_batch_that_fails_answers_no_claim_and_keeps_none() {
        let (_dir, path) = database().await;
        let mut w = Writer { path: path.clone(), key: Keypair::generate(), conn: None, head: None };
        set_head(&path, &format!(r#"{{"seq":1,"hash":"{}"}}"#, "A".repeat(64)));
        let e = w.commit(&claim("x"), vec![event("e")]).err().expect("an upper-case head is not one this chain wrote");
        assert!(e.0.contains("audit head is corrupt"), "{e}");
        let c = w.commit(&claim("x"), Vec::new()).expect("commits");
        assert_eq!(c.firsts, [true], "the failed batch's claim was rolled back with it");
        assert!(seqs(&path).is_empty());
    }

    #[tokio::test]
    async fn a_stale_head_is_sealed_again_and_a_head_behind_the_log_fails() {
        let (_dir, path) = database().await;
        let key = Keypair::generate();
        let mut w = Writer { path: path.clone(), key: key.clone(), conn: None, head: None };
        w.commit(&Batch::default(), vec![event("1"), event("2")]).expect("commits");
        // Another writer left seq 4 (and its head) while 3 is free: the
        // batch collides midway, takes back its seq 3 and goes on from 4.
        let four = format!(r#"{{"seq":4,"hash":"{}"}}"#, "b".repeat(64));
        Connection::open(&path).expect("opens").execute("INSERT INTO audit (seq, record) VALUES (4, 'other')", []).expect("writes");
        set_head(&path, &four);
        let c = w.commit(&Batch::default(), vec![event("a"), event("b")]).expect("commits");
        assert_eq!(c.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(seqs(&path), [1, 2, 4, 5, 6]);
        // A stored head behind the log: nothing is written over it.
        set_head(&path, &four);
        let mut fresh = Writer { path: path.clone(), key, conn: None, head: None };
        let e = fresh.commit(&claim("y"), vec![event("c")]).err().expect("fails");
        assert!(e.0.contains("behind the log"), "{e}");
        assert_eq!(seqs(&path), [1, 2, 4, 5, 6]);
    }

    #[tokio::test]
    async fn a_repeat_within_one_batch_is_not_a_first_use() {
        let (_dir, path) = database().await;
        let mut w = Writer { path, key: Keypair::generate(), conn: None, head: None };
        let mut batch = Batch::default();
        let (reply, _rx) = oneshot::channel();
        for id in ["a", "b", "a"] {
            batch.claims.push((id.into(), i64::MAX));
        }
        batch.claimed.push(reply);
        let c = w.commit(&batch, Vec::new()).expect("commits");
        assert_eq!((c.firsts, c.records.len()), (vec![true, true, false], 0));
        let c = w.commit(&batch, vec![(AuditEvent::default(), 1)]).expect("commits");
        assert_eq!((c.firsts, c.records.len()), (vec![false, false, false], 1), "recorded by the first commit");
        assert_eq!(w.head.as_ref().map(|h| h.seq), Some(1));
    }

    #[tokio::test]
    async fn a_file_removed_meanwhile_is_not_recreated() {
        let (dir, path) = database().await;
        drop(dir);
        let e = open(&path).expect_err("gone");
        assert!(!path.exists() && e.to_string().contains("unable to open"), "{e}");
    }
}

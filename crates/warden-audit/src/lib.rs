//! The tamper-evident audit log: records linked by SHA-256 hash chain, each
//! batch sealed by an Ed25519 signature of the gateway key over its last hash
//! (which commits to everything before it). Verification finds edited,
//! deleted, inserted or reordered records. Over the same records, an RFC 9162
//! Merkle tree ([`merkle`]) gives signed checkpoints ([`checkpoint`]) that
//! can be published elsewhere, inclusion proofs for one record and
//! consistency proofs between two checkpoints. Exporters for SIEMs live in
//! [`export`]. Pure: storage is the caller's.

pub mod checkpoint;
pub mod export;
pub mod merkle;
pub mod proof;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use proof::{ConsistencyProof, InclusionProof, ProofError};

use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_core::{AuditEvent, canonical_json, sha256_hex};
use warden_identity::{Keypair, PublicKey, b64url, b64url_decode};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// Hash of the previous record (`GENESIS` for the first).
    pub prev: String,
    pub event: AuditEvent,
    /// SHA-256 over the canonical JSON of `seq`, `ts_ms`, `prev`, `event`.
    pub hash: String,
    /// Ed25519 signature over `hash` (as bytes); on the last record of each batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl AuditRecord {
    /// This record's Merkle leaf hash: `HASH(0x00 || chain hash)`.
    pub fn leaf_hash(&self) -> Result<merkle::Hash, AuditError> {
        let raw = merkle::parse_hash(&self.hash).ok_or(AuditError::Hash { seq: self.seq })?;
        Ok(merkle::leaf_hash(&raw))
    }

    /// Does the record's content still hash to its `hash`?
    pub fn content_matches_hash(&self) -> bool {
        Self::compute_hash(self.seq, self.ts_ms, &self.prev, &self.event) == self.hash
    }

    fn compute_hash(seq: u64, ts_ms: i64, prev: &str, event: &AuditEvent) -> String {
        let body = json!({ "seq": seq, "ts_ms": ts_ms, "prev": prev, "event": event });
        sha256_hex(canonical_json(&body).as_bytes())
    }
}

/// Where the chain stands: last sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl Default for ChainHead {
    fn default() -> Self {
        Self { seq: 0, hash: GENESIS.into() }
    }
}

/// Extends the chain. One per log: appends must be serialized.
#[derive(Debug)]
pub struct Chain {
    key: Keypair,
    head: ChainHead,
}

impl Chain {
    pub fn new(key: Keypair, head: ChainHead) -> Self {
        Self { key, head }
    }

    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    /// Link a batch of events and sign its last record.
    pub fn seal_batch(&mut self, events: Vec<(AuditEvent, i64)>) -> Vec<AuditRecord> {
        let mut out = Vec::with_capacity(events.len());
        for (event, ts_ms) in events {
            let seq = self.head.seq + 1;
            let hash = AuditRecord::compute_hash(seq, ts_ms, &self.head.hash, &event);
            out.push(AuditRecord { seq, ts_ms, prev: std::mem::replace(&mut self.head.hash, hash.clone()), event, hash, sig: None });
            self.head.seq = seq;
        }
        if let Some(last) = out.last_mut() {
            let raw = hex::decode(&last.hash).expect("own hex");
            last.sig = Some(b64url(&self.key.sign(&raw)));
        }
        out
    }
}

/// What verification proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub records: u64,
    pub head: ChainHead,
    pub signatures: u64,
    /// Merkle tree head (hex) over the verified records (from genesis).
    pub root: String,
    /// Signed checkpoints the records were proven against.
    pub checkpoints: u64,
}

/// The first problem found, with the record where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("record at position {position} has seq {found}, expected {expected}: a record was deleted, inserted or reordered")]
    Sequence { position: u64, expected: u64, found: u64 },
    #[error("record {seq} does not link to the record before it: a record was deleted, inserted or reordered")]
    Link { seq: u64 },
    #[error("record {seq} has been modified: its content does not match its hash")]
    Hash { seq: u64 },
    #[error("record {seq} carries an invalid signature: it was not sealed by this gateway key")]
    Signature { seq: u64 },
    #[error("records after {last_signed} are not covered by any signature (the log was cut or forged after them)")]
    Unsealed { last_signed: u64 },
    #[error("the log ends at record {found} but the signed head is at {expected}: records were removed from the end")]
    Truncated { expected: u64, found: u64 },
    #[error("the records do not match the signed checkpoint at tree size {size}: the log was rewritten after it was published")]
    Checkpoint { size: u64 },
    #[error("the log ends at record {found}, before the signed checkpoint at tree size {size}: records were removed")]
    ShorterThanCheckpoint { size: u64, found: u64 },
    #[error("checkpoints can only be checked when verifying from the first record")]
    CheckpointNeedsGenesis,
    #[error("line {line}: not an audit record: {message}")]
    Parse { line: u64, message: String },
}

/// Verify records in order. `start` is the head before the first record
/// (default: genesis); `expected_head`, when known, catches a cut tail.
pub fn verify<I>(records: I, key: &PublicKey, start: ChainHead, expected_head: Option<&ChainHead>) -> Result<VerifyReport, AuditError>
where
    I: IntoIterator<Item = Result<AuditRecord, AuditError>>,
{
    verify_with_checkpoints(records, key, start, expected_head, &[])
}

/// As [`verify`], and prove the records against signed checkpoints
/// (already signature-checked): the Merkle tree head of the first `size`
/// records must equal each checkpoint's root.
pub fn verify_with_checkpoints<I>(
    records: I,
    key: &PublicKey,
    start: ChainHead,
    expected_head: Option<&ChainHead>,
    checkpoints: &[Checkpoint],
) -> Result<VerifyReport, AuditError>
where
    I: IntoIterator<Item = Result<AuditRecord, AuditError>>,
{
    if start.seq != 0 && !checkpoints.is_empty() {
        return Err(AuditError::CheckpointNeedsGenesis);
    }
    let mut pending: Vec<&Checkpoint> = checkpoints.iter().collect();
    pending.sort_by_key(|c| std::cmp::Reverse(c.size));
    let mut tree = merkle::Frontier::default();
    let check = |tree: &merkle::Frontier, pending: &mut Vec<&Checkpoint>| -> Result<(), AuditError> {
        while let Some(c) = pending.last().filter(|c| c.size <= tree.size()) {
            if c.size != tree.size() || tree.root() != c.root {
                return Err(AuditError::Checkpoint { size: c.size });
            }
            pending.pop();
        }
        Ok(())
    };
    check(&tree, &mut pending)?;
    let mut head = start;
    let mut last_signed = head.seq;
    let mut signatures = 0;
    let mut count = 0;
    for (i, rec) in records.into_iter().enumerate() {
        let rec = rec?;
        let expected = head.seq + 1;
        if rec.seq != expected {
            return Err(AuditError::Sequence { position: i as u64 + 1, expected, found: rec.seq });
        }
        if AuditRecord::compute_hash(rec.seq, rec.ts_ms, &rec.prev, &rec.event) != rec.hash {
            return Err(AuditError::Hash { seq: rec.seq });
        }
        if rec.prev != head.hash {
            return Err(AuditError::Link { seq: rec.seq });
        }
        if let Some(sig) = &rec.sig {
            let raw = hex::decode(&rec.hash).map_err(|_| AuditError::Hash { seq: rec.seq })?;
            let sig = b64url_decode(sig).map_err(|_| AuditError::Signature { seq: rec.seq })?;
            key.verify(&raw, &sig).map_err(|_| AuditError::Signature { seq: rec.seq })?;
            last_signed = rec.seq;
            signatures += 1;
        }
        tree.push(rec.leaf_hash()?);
        check(&tree, &mut pending)?;
        head = ChainHead { seq: rec.seq, hash: rec.hash };
        count += 1;
    }
    if let Some(c) = pending.last() {
        return Err(AuditError::ShorterThanCheckpoint { size: c.size, found: head.seq });
    }
    if last_signed != head.seq {
        return Err(AuditError::Unsealed { last_signed });
    }
    if let Some(exp) = expected_head {
        if head.seq < exp.seq {
            return Err(AuditError::Truncated { expected: exp.seq, found: head.seq });
        }
        if head.seq == exp.seq && head.hash != exp.hash {
            return Err(AuditError::Link { seq: head.seq });
        }
    }
    Ok(VerifyReport { records: count, head, signatures, root: hex::encode(tree.root()), checkpoints: checkpoints.len() as u64 })
}

/// Parse a JSONL export line by line (for `warden audit verify --file`).
pub fn parse_jsonl(text: &str) -> impl Iterator<Item = Result<AuditRecord, AuditError>> + '_ {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| AuditError::Parse { line: i as u64 + 1, message: e.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::EventKind;

    fn ev(n: u64) -> AuditEvent {
        AuditEvent { kind: Some(EventKind::ToolCall), tool: Some(format!("s/t{n}")), decision: "allow".into(), ..Default::default() }
    }

    fn log(n: u64) -> (Keypair, Vec<AuditRecord>) {
        let key = Keypair::generate();
        let mut chain = Chain::new(key.clone(), ChainHead::default());
        let mut recs = chain.seal_batch((1..=n / 2).map(|i| (ev(i), i as i64)).collect());
        recs.extend(chain.seal_batch((n / 2 + 1..=n).map(|i| (ev(i), i as i64)).collect()));
        (key, recs)
    }

    fn check(key: &Keypair, recs: &[AuditRecord]) -> Result<VerifyReport, AuditError> {
        verify(recs.iter().cloned().map(Ok), &key.public(), ChainHead::default(), None)
    }

    #[test]
    fn intact_log_verifies() {
        let (key, recs) = log(10);
        let r = check(&key, &recs).unwrap();
        assert_eq!((r.records, r.signatures, r.head.seq), (10, 2, 10));
        let jsonl: String = recs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        assert_eq!(verify(parse_jsonl(&jsonl), &key.public(), ChainHead::default(), Some(&r.head)).unwrap(), r);
    }

    #[test]
    fn records_are_proven_against_signed_checkpoints() {
        let (key, recs) = log(10);
        let leaves: Vec<merkle::Hash> = recs.iter().map(|r| r.leaf_hash().unwrap()).collect();
        let cp = |size: usize| {
            let note = Checkpoint { origin: "td/audit".into(), size: size as u64, root: merkle::root(&leaves[..size]) }.sign(&key);
            Checkpoint::verify(&note, &key.public()).unwrap()
        };
        let all =
            |cps: &[Checkpoint], recs: &[AuditRecord]| verify_with_checkpoints(recs.iter().cloned().map(Ok), &key.public(), ChainHead::default(), None, cps);
        let r = all(&[cp(4), cp(10)], &recs).unwrap();
        assert_eq!((r.checkpoints, r.root.as_str()), (2, hex::encode(merkle::root(&leaves)).as_str()));
        // The whole log re-chained and re-signed by the key holder (a rewrite
        // of history) still fails against a checkpoint published earlier.
        let mut chain = Chain::new(key.clone(), ChainHead::default());
        let mut rewritten = chain.seal_batch(recs[..3].iter().map(|r| (r.event.clone(), r.ts_ms)).collect());
        rewritten.extend(chain.seal_batch(recs[3..].iter().map(|r| (AuditEvent { decision: "allow".into(), ..r.event.clone() }, r.ts_ms + 1)).collect()));
        assert!(all(&[], &rewritten).is_ok(), "the chain alone cannot tell");
        assert_eq!(all(&[cp(4)], &rewritten), Err(AuditError::Checkpoint { size: 4 }));
        assert_eq!(all(&[cp(10)], &recs[..5]), Err(AuditError::ShorterThanCheckpoint { size: 10, found: 5 }), "cut after a checkpoint");
    }

    #[test]
    fn edit_delete_reorder_and_wrong_key_are_caught() {
        let (key, recs) = log(10);
        let mut edited = recs.clone();
        edited[3].event.decision = "deny".into();
        assert_eq!(check(&key, &edited), Err(AuditError::Hash { seq: 4 }));

        let mut deleted = recs.clone();
        deleted.remove(4);
        assert!(matches!(check(&key, &deleted), Err(AuditError::Sequence { expected: 5, found: 6, .. })));

        let mut renumbered = deleted.clone();
        for (i, r) in renumbered.iter_mut().enumerate() {
            r.seq = i as u64 + 1;
        }
        assert!(matches!(check(&key, &renumbered), Err(AuditError::Hash { .. })));

        let mut swapped = recs.clone();
        swapped.swap(2, 3);
        assert!(check(&key, &swapped).is_err());

        let other = Keypair::generate();
        assert_eq!(check(&other, &recs), Err(AuditError::Signature { seq: 5 }));

        let cut = &recs[..7];
        assert_eq!(check(&key, cut), Err(AuditError::Unsealed { last_signed: 5 }));
        let head = check(&key, &recs).unwrap().head;
        assert!(matches!(
            verify(recs[..5].iter().cloned().map(Ok), &key.public(), ChainHead::default(), Some(&head)),
            Err(AuditError::Truncated { expected: 10, found: 5 })
        ));
    }
}

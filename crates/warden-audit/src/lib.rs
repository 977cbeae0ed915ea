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

pub use checkpoint::{Checkpoint, CheckpointError, PublishError, newest_published, publish};
pub use proof::{ConsistencyProof, InclusionProof, ProofError};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warden_core::AuditEvent;
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
        self.checked_digest().is_some()
    }

    /// SHA-256 over the canonical JSON of `{event, prev, seq, ts_ms}`.
    /// [`HashInput`] and [`AuditEvent`] serialize with sorted keys and no
    /// maps, so they are streamed into the hasher as canonical JSON
    /// directly (a test pins this to `canonical_json`).
    fn compute_hash(seq: u64, ts_ms: i64, prev: &str, event: &AuditEvent) -> String {
        hex::encode(Self::digest(seq, ts_ms, prev, event))
    }

    fn digest(seq: u64, ts_ms: i64, prev: &str, event: &AuditEvent) -> merkle::Hash {
        // Serialized into a reused buffer and hashed in one call: serde
        // writes token by token, and per-token hasher updates cost more.
        thread_local!(static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        BUF.with_borrow_mut(|buf| {
            buf.clear();
            serde_json::to_writer(&mut *buf, &HashInput { event, prev, seq, ts_ms }).expect("writing to a Vec");
            Sha256::digest(&buf[..]).into()
        })
    }

    /// The record's content hash if it matches the stored `hash`.
    fn checked_digest(&self) -> Option<merkle::Hash> {
        let d = Self::digest(self.seq, self.ts_ms, &self.prev, &self.event);
        (merkle::parse_hash(&self.hash)? == d).then_some(d)
    }
}

/// What a record's hash covers; fields in canonical (alphabetical) order.
#[derive(Serialize)]
struct HashInput<'a> {
    event: &'a AuditEvent,
    prev: &'a str,
    seq: u64,
    ts_ms: i64,
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
    verify_items(records, |r: Result<AuditRecord, AuditError>| Ok(Facts::of(&r?, key)), start, expected_head, checkpoints)
}

/// As [`verify_with_checkpoints`] over a JSONL export, on all cores. A line
/// in the exporter's own layout is checked without parsing it (see
/// [`exported_facts`]); any other line is parsed and checked as a record.
pub fn verify_jsonl(
    text: &str,
    key: &PublicKey,
    start: ChainHead,
    expected_head: Option<&ChainHead>,
    checkpoints: &[Checkpoint],
) -> Result<VerifyReport, AuditError> {
    verify_numbered(jsonl_lines(text), key, start, expected_head, checkpoints)
}

/// As [`verify_jsonl`] over records' JSON texts, one per item (a store's
/// rows); errors name the item's position as its line.
pub fn verify_lines<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    key: &PublicKey,
    start: ChainHead,
    expected_head: Option<&ChainHead>,
    checkpoints: &[Checkpoint],
) -> Result<VerifyReport, AuditError> {
    verify_numbered(lines.into_iter().enumerate(), key, start, expected_head, checkpoints)
}

fn verify_numbered<'a>(
    lines: impl IntoIterator<Item = (usize, &'a str)>,
    key: &PublicKey,
    start: ChainHead,
    expected_head: Option<&ChainHead>,
    checkpoints: &[Checkpoint],
) -> Result<VerifyReport, AuditError> {
    let facts = |(i, l): (usize, &str)| match exported_facts(l, key) {
        Some(f) => Ok(f),
        None => Ok(Facts::of(&parse_line(i, l)?, key)),
    };
    verify_items(lines, facts, start, expected_head, checkpoints)
}

/// The facts of an export line in the exporter's exact layout
/// (`{"seq":S,"ts_ms":T,"prev":"P","event":E,"hash":"H"}`, with `,"sig":"G"`
/// before the brace on sealed records) whose hash checks, taken from the
/// bytes themselves: the hash input is `{"event":E,"prev":"P","seq":S,"ts_ms":T}`,
/// the line's own canonical bytes, so no JSON is parsed or re-serialized.
/// A match means these bytes are the ones that were sealed (SHA-256), so
/// nothing a parser would see differently can hide in them. `None` (another
/// layout, a mismatch, a bad signature) sends the line to the full parse,
/// which gives the verdict and its error: the same as without this path.
fn exported_facts(line: &str, key: &PublicKey) -> Option<Facts> {
    // Fixed-width parts are found by position, not by searching the line:
    // hashes are 64 hex characters, signatures 86 base64url ones.
    const HASH_KEY: &str = ",\"hash\":\"";
    const SIG_KEY: &str = "\",\"sig\":\"";
    let line = line.trim_end();
    let rest = line.strip_prefix("{\"seq\":")?;
    let digits = |s: &str| s.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    let (seq_text, rest) = rest.split_at(digits(rest));
    let rest = rest.strip_prefix(",\"ts_ms\":")?;
    let sign = usize::from(rest.starts_with('-'));
    let (ts_ms, rest) = rest.split_at(sign + digits(&rest[sign..]));
    let rest = rest.strip_prefix(",\"prev\":\"")?;
    let (prev, rest) = (rest.get(..64)?, rest.get(64..)?);
    let rest = rest.strip_prefix("\",\"event\":")?.strip_suffix("\"}")?;
    let (rest, sig) = match rest.len().checked_sub(86 + SIG_KEY.len()).filter(|&at| rest.get(at..at + SIG_KEY.len()) == Some(SIG_KEY)) {
        Some(at) => (&rest[..at], Some(&rest[at + SIG_KEY.len()..])),
        None => (rest, None),
    };
    let at = rest.len().checked_sub(64 + HASH_KEY.len())?;
    let (event, hash) = (rest.get(..at)?, rest.get(at..)?.strip_prefix(HASH_KEY)?);
    let seq: u64 = seq_text.parse().ok()?;
    let stored = merkle::parse_hash(hash)?;
    let mut h = Sha256::new();
    for part in ["{\"event\":", event, ",\"prev\":\"", prev, "\",\"seq\":", seq_text, ",\"ts_ms\":", ts_ms, "}"] {
        h.update(part.as_bytes());
    }
    let digest: merkle::Hash = h.finalize().into();
    if digest != stored || sig.is_some_and(|sig| check_signature(seq, &digest, sig, key).is_err()) {
        return None;
    }
    Some(Facts { seq, prev: merkle::parse_hash(prev), signed: sig.is_some(), alone: Ok((digest, merkle::leaf_hash(&digest))) })
}

fn verify_items<T: Send, I: IntoIterator<Item = T>>(
    items: I,
    facts: impl Fn(T) -> Result<Facts, AuditError> + Sync,
    start: ChainHead,
    expected_head: Option<&ChainHead>,
    checkpoints: &[Checkpoint],
) -> Result<VerifyReport, AuditError> {
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
    let mut head_hash = merkle::parse_hash(&start.hash).ok_or(AuditError::Link { seq: start.seq + 1 })?;
    let mut head_seq = start.seq;
    let mut last_signed = head_seq;
    let mut signatures = 0;
    let mut count = 0;
    let mut items = items.into_iter();
    loop {
        // Parsing, hashes and signatures are checked on all cores a chunk at
        // a time; order, links and the tree then in sequence. Errors keep
        // the order a record-by-record pass would report them in.
        let chunk: Vec<T> = items.by_ref().take(VERIFY_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        for f in check_each(chunk, &facts) {
            let f = f?;
            let expected = head_seq + 1;
            if f.seq != expected {
                return Err(AuditError::Sequence { position: count + 1, expected, found: f.seq });
            }
            if let Err(e @ AuditError::Hash { .. }) = f.alone {
                return Err(e);
            }
            if f.prev != Some(head_hash) {
                return Err(AuditError::Link { seq: f.seq });
            }
            let (hash, leaf) = f.alone?;
            if f.signed {
                last_signed = f.seq;
                signatures += 1;
            }
            tree.push(leaf);
            check(&tree, &mut pending)?;
            (head_seq, head_hash) = (f.seq, hash);
            count += 1;
        }
    }
    let head = ChainHead { seq: head_seq, hash: hex::encode(head_hash) };
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

const VERIFY_CHUNK: usize = 8192;

/// What one record proves on its own, reduced to what the in-order pass
/// needs (the record itself is dropped on the worker thread).
struct Facts {
    seq: u64,
    prev: Option<merkle::Hash>,
    signed: bool,
    /// Its content hashes to its `hash`, and its signature (if any) is the
    /// key's over that hash: (hash, Merkle leaf hash).
    alone: Result<(merkle::Hash, merkle::Hash), AuditError>,
}

impl Facts {
    fn of(rec: &AuditRecord, key: &PublicKey) -> Self {
        Facts { seq: rec.seq, prev: merkle::parse_hash(&rec.prev), signed: rec.sig.is_some(), alone: check_alone(rec, key) }
    }
}

fn check_alone(rec: &AuditRecord, key: &PublicKey) -> Result<(merkle::Hash, merkle::Hash), AuditError> {
    let digest = rec.checked_digest().ok_or(AuditError::Hash { seq: rec.seq })?;
    if let Some(sig) = &rec.sig {
        check_signature(rec.seq, &digest, sig, key)?;
    }
    Ok((digest, merkle::leaf_hash(&digest)))
}

/// `sig` (base64url) is the key's signature over record `seq`'s hash.
fn check_signature(seq: u64, digest: &merkle::Hash, sig: &str, key: &PublicKey) -> Result<(), AuditError> {
    let sig = b64url_decode(sig).map_err(|_| AuditError::Signature { seq })?;
    key.verify(digest, &sig).map_err(|_| AuditError::Signature { seq })
}

/// Check each item alone ([`Facts`]), split across the available cores.
fn check_each<T: Send>(chunk: Vec<T>, one: &(impl Fn(T) -> Result<Facts, AuditError> + Sync)) -> Vec<Result<Facts, AuditError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    if threads == 1 || chunk.len() < 512 {
        return chunk.into_iter().map(one).collect();
    }
    let per = chunk.len().div_ceil(threads);
    let mut parts = Vec::with_capacity(threads);
    let mut it = chunk.into_iter();
    loop {
        let part: Vec<T> = it.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = parts.into_iter().map(|part| s.spawn(move || part.into_iter().map(one).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("verification thread")).collect()
    })
}

/// Parse a JSONL export line by line (for `warden audit verify --file`).
pub fn parse_jsonl(text: &str) -> impl Iterator<Item = Result<AuditRecord, AuditError>> + '_ {
    jsonl_lines(text).map(|(i, l)| parse_line(i, l))
}

fn jsonl_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty())
}

/// Parse one record's JSON text; `index` (from 0) names it in the error.
pub fn parse_line(index: usize, line: &str) -> Result<AuditRecord, AuditError> {
    serde_json::from_str(line).map_err(|e| AuditError::Parse { line: index as u64 + 1, message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::EventKind;

    fn ev(n: u64) -> AuditEvent {
        AuditEvent { kind: Some(EventKind::ToolCall), tool: Some(format!("s/t{n}")), decision: warden_core::Verdict::Allow, ..Default::default() }
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
    fn record_hash_is_sha256_of_the_canonical_json() {
        let e = AuditEvent { reason: Some("q\"\u{1}é\u{2028}".into()), delegation: vec!["x".into()], risk: Some(9), ..ev(3) };
        let body = serde_json::json!({ "seq": 7, "ts_ms": -5, "prev": GENESIS, "event": e });
        let want = warden_core::sha256_hex(warden_core::canonical_json(&body).as_bytes());
        assert_eq!(AuditRecord::compute_hash(7, -5, GENESIS, &e), want);
    }

    #[test]
    fn intact_log_verifies() {
        let (key, recs) = log(10);
        let r = check(&key, &recs).unwrap();
        assert_eq!((r.records, r.signatures, r.head.seq), (10, 2, 10));
        let jsonl: String = recs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        assert_eq!(verify(parse_jsonl(&jsonl), &key.public(), ChainHead::default(), Some(&r.head)).unwrap(), r);
        assert_eq!(verify_jsonl(&jsonl, &key.public(), ChainHead::default(), Some(&r.head), &[]).unwrap(), r);

        // Long enough to be checked in parallel chunks: the same verdicts.
        let (key, recs) = log(3 * VERIFY_CHUNK as u64 + 7);
        let jsonl: String = recs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        assert_eq!(verify_jsonl(&jsonl, &key.public(), ChainHead::default(), None, &[]).unwrap().records, recs.len() as u64);
        let mut bad = recs.clone();
        bad[VERIFY_CHUNK + 100].event.decision = warden_core::Verdict::Deny;
        bad[2 * VERIFY_CHUNK + 5].event.decision = warden_core::Verdict::Deny;
        assert_eq!(check(&key, &bad), Err(AuditError::Hash { seq: VERIFY_CHUNK as u64 + 101 }), "the first problem is reported");
        let mut lines: Vec<String> = jsonl.lines().map(str::to_string).collect();
        lines[VERIFY_CHUNK + 3] = "{not json".into();
        assert!(
            matches!(verify_jsonl(&lines.join("\n"), &key.public(), ChainHead::default(), None, &[]), Err(AuditError::Parse { line, .. }) if line == VERIFY_CHUNK as u64 + 4)
        );
    }

    #[test]
    fn export_lines_are_checked_from_their_bytes_with_the_same_verdicts() {
        let (key, recs) = log(10);
        let pk = key.public();
        let lines: Vec<String> = recs.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        // The exporter's layout takes the fast path, signed or not.
        let fast = exported_facts(&lines[4], &pk).expect("exporter layout");
        assert!(fast.signed && fast.alone.is_ok() && fast.seq == 5);
        assert!(exported_facts(&lines[3], &pk).is_some_and(|f| !f.signed && f.prev == merkle::parse_hash(&recs[2].hash)));
        let want = verify_jsonl(&lines.join("\n"), &pk, ChainHead::default(), None, &[]).unwrap();

        // The same records in another layout (keys sorted) verify through
        // the parser.
        let sorted: Vec<String> = recs.iter().map(|r| warden_core::canonical_json(&serde_json::to_value(r).unwrap())).collect();
        assert!(exported_facts(&sorted[0], &pk).is_none());
        assert_eq!(verify_jsonl(&sorted.join("\n"), &pk, ChainHead::default(), None, &[]).unwrap(), want);

        // Tampering in the exporter's layout gets the parser's verdicts.
        let with = |i: usize, line: String| {
            let mut l = lines.clone();
            l[i] = line;
            verify_jsonl(&l.join("\n"), &pk, ChainHead::default(), None, &[])
        };
        assert_eq!(with(3, lines[3].replace("\"allow\"", "\"deny\"")), Err(AuditError::Hash { seq: 4 }));
        assert!(matches!(with(3, lines[3].replace("\"seq\":4,", "\"seq\":04,")), Err(AuditError::Parse { line: 4, .. })));
        let other_sig = b64url(&Keypair::generate().sign(&hex::decode(&recs[4].hash).unwrap()));
        assert_eq!(with(4, lines[4].replace(recs[4].sig.as_deref().unwrap(), &other_sig)), Err(AuditError::Signature { seq: 5 }));
        // A signature moved onto an unsigned record is still checked.
        let moved = format!("{},\"sig\":\"{}\"}}", &lines[3][..lines[3].len() - 1], recs[4].sig.as_deref().unwrap());
        assert_eq!(with(3, moved), Err(AuditError::Signature { seq: 4 }));
        // A record whose event text hides an extra field is refused.
        let sneaky = lines[2].replace("\"decision\":\"allow\"", "\"decision\":\"allow\",\"decision\":\"deny\"");
        assert!(with(2, sneaky).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Checking lines from their bytes never changes a verdict: any
        /// content, any edit of one byte of one line, the same answer as
        /// parsing every line.
        #[test]
        fn byte_checked_lines_get_the_parsers_verdict(
            reason in "\\PC{0,40}",
            ts in proptest::prelude::any::<i64>(),
            line in 0usize..6,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let key = Keypair::generate();
            let mut chain = Chain::new(key.clone(), ChainHead::default());
            let events = (0..6).map(|i| (AuditEvent { reason: Some(format!("{reason}{i}")), ..ev(i) }, ts.wrapping_add(i as i64))).collect();
            let recs = chain.seal_batch(events);
            let mut lines: Vec<Vec<u8>> = recs.iter().map(|r| serde_json::to_vec(r).unwrap()).collect();
            let slow = |text: &str| verify(parse_jsonl(text), &key.public(), ChainHead::default(), None);
            let intact = String::from_utf8(lines.join(&b'\n')).unwrap();
            proptest::prop_assert_eq!(verify_jsonl(&intact, &key.public(), ChainHead::default(), None, &[]), slow(&intact));
            let i = at.index(lines[line].len());
            lines[line][i] = byte;
            if let Ok(edited) = String::from_utf8(lines.join(&b'\n')) {
                proptest::prop_assert_eq!(verify_jsonl(&edited, &key.public(), ChainHead::default(), None, &[]), slow(&edited));
            }
        }
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
        rewritten.extend(
            chain.seal_batch(recs[3..].iter().map(|r| (AuditEvent { decision: warden_core::Verdict::Allow, ..r.event.clone() }, r.ts_ms + 1)).collect()),
        );
        assert!(all(&[], &rewritten).is_ok(), "the chain alone cannot tell");
        assert_eq!(all(&[cp(4)], &rewritten), Err(AuditError::Checkpoint { size: 4 }));
        assert_eq!(all(&[cp(10)], &recs[..5]), Err(AuditError::ShorterThanCheckpoint { size: 10, found: 5 }), "cut after a checkpoint");
    }

    #[test]
    fn edit_delete_reorder_and_wrong_key_are_caught() {
        let (key, recs) = log(10);
        let mut edited = recs.clone();
        edited[3].event.decision = warden_core::Verdict::Deny;
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

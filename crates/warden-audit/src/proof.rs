//! Portable proofs over the audit log, checkable offline with only the
//! gateway's public key: that one record is in the log a signed checkpoint
//! commits to (inclusion), and that a newer checkpoint extends an older one
//! without rewriting it (consistency).

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::merkle::{self, Hash};
use crate::{AuditError, AuditRecord};
use serde::{Deserialize, Serialize};
use warden_identity::PublicKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Record(#[from] AuditError),
    #[error("the checkpoint covers {size} records; record {seq} is not among them")]
    OutOfRange { seq: u64, size: u64 },
    #[error("the proof is for tree size {proof}, the checkpoint for {checkpoint}")]
    SizeMismatch { proof: u64, checkpoint: u64 },
    #[error("the checkpoints are for different logs ({0} and {1})")]
    Origin(String, String),
    #[error("the proof does not verify: {0}")]
    Invalid(&'static str),
    #[error("a proof hash is not 64 hex characters")]
    Hex,
}

fn hexes(v: &[Hash]) -> Vec<String> {
    v.iter().map(hex::encode).collect()
}

fn parse(v: &[String]) -> Result<Vec<Hash>, ProofError> {
    v.iter().map(|h| merkle::parse_hash(h).ok_or(ProofError::Hex)).collect()
}

/// A record and its audit path to a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub record: AuditRecord,
    pub tree_size: u64,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

impl InclusionProof {
    /// `leaves` are the leaf hashes of the checkpoint's first `size` records.
    pub fn new(record: AuditRecord, leaves: &[Hash], checkpoint: String) -> Result<Self, ProofError> {
        let size = leaves.len() as u64;
        let path = (record.seq >= 1).then(|| merkle::inclusion_proof(leaves, record.seq as usize - 1)).flatten();
        let path = path.ok_or(ProofError::OutOfRange { seq: record.seq, size })?;
        Ok(Self { record, tree_size: size, proof: hexes(&path), checkpoint })
    }

    /// Check the checkpoint's signature, the record's own hash, and its path
    /// to the checkpoint's root. Returns the checkpoint.
    pub fn verify(&self, key: &PublicKey) -> Result<Checkpoint, ProofError> {
        let cp = Checkpoint::verify(&self.checkpoint, key)?;
        if cp.size != self.tree_size {
            return Err(ProofError::SizeMismatch { proof: self.tree_size, checkpoint: cp.size });
        }
        let r = &self.record;
        if r.seq == 0 || r.seq > cp.size {
            return Err(ProofError::OutOfRange { seq: r.seq, size: cp.size });
        }
        if !r.content_matches_hash() {
            return Err(AuditError::Hash { seq: r.seq }.into());
        }
        if !merkle::verify_inclusion(r.seq - 1, cp.size, &r.leaf_hash()?, &parse(&self.proof)?, &cp.root) {
            return Err(ProofError::Invalid("the record is not in the log this checkpoint signs"));
        }
        Ok(cp)
    }
}

/// Proof that the log at `tree_size` (the checkpoint) extends the log at
/// `old_size` unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub tree_size: u64,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

impl ConsistencyProof {
    /// `leaves` are the leaf hashes of the checkpoint's first `size` records.
    pub fn new(old_size: u64, leaves: &[Hash], checkpoint: String) -> Result<Self, ProofError> {
        let size = leaves.len() as u64;
        let path = merkle::consistency_proof(leaves, old_size as usize).ok_or(ProofError::OutOfRange { seq: old_size, size })?;
        Ok(Self { old_size, tree_size: size, proof: hexes(&path), checkpoint })
    }

    /// Check both checkpoints' signatures (the old one as published
    /// earlier) and that the new one extends the old. Returns the new one.
    pub fn verify(&self, key: &PublicKey, old_note: &str) -> Result<Checkpoint, ProofError> {
        let new = Checkpoint::verify(&self.checkpoint, key)?;
        let old = Checkpoint::verify(old_note, key)?;
        if old.origin != new.origin {
            return Err(ProofError::Origin(old.origin, new.origin));
        }
        if new.size != self.tree_size {
            return Err(ProofError::SizeMismatch { proof: self.tree_size, checkpoint: new.size });
        }
        if old.size != self.old_size {
            return Err(ProofError::SizeMismatch { proof: self.old_size, checkpoint: old.size });
        }
        if !merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &parse(&self.proof)?) {
            return Err(ProofError::Invalid("the newer checkpoint does not extend the older one: the log was rewritten"));
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, ChainHead};
    use warden_core::AuditEvent;
    use warden_identity::Keypair;

    #[test]
    fn inclusion_and_consistency_proofs_verify_offline_and_catch_rewrites() {
        let key = Keypair::generate();
        let mut chain = Chain::new(key.clone(), ChainHead::default());
        let recs = chain.seal_batch((0..13).map(|i| (AuditEvent { tool: Some(format!("t{i}")), ..Default::default() }, i)).collect());
        let leaves: Vec<Hash> = recs.iter().map(|r| r.leaf_hash().unwrap()).collect();
        let note = |n: usize| Checkpoint { origin: "td/audit".into(), size: n as u64, root: merkle::root(&leaves[..n]) }.sign(&key);

        let p = InclusionProof::new(recs[6].clone(), &leaves[..10], note(10)).unwrap();
        let p: InclusionProof = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(p.verify(&key.public()).unwrap().size, 10);
        assert!(matches!(p.verify(&Keypair::generate().public()), Err(ProofError::Checkpoint(_))));
        let mut edited = p.clone();
        edited.record.event.decision = warden_core::Verdict::Allow;
        assert_eq!(edited.verify(&key.public()), Err(ProofError::Record(AuditError::Hash { seq: 7 })));
        let mut other = p.clone();
        other.record = recs[7].clone();
        assert!(matches!(other.verify(&key.public()), Err(ProofError::Invalid(_))));
        assert!(InclusionProof::new(recs[11].clone(), &leaves[..10], note(10)).is_err(), "record 12 is past the checkpoint");

        let c = ConsistencyProof::new(4, &leaves, note(13)).unwrap();
        assert_eq!(c.verify(&key.public(), &note(4)).unwrap().size, 13);
        assert!(matches!(c.verify(&key.public(), &note(5)), Err(ProofError::SizeMismatch { .. })));
        // A checkpoint of a different history at size 4 is not extended.
        let forged = Checkpoint { origin: "td/audit".into(), size: 4, root: merkle::root(&leaves[1..5]) }.sign(&key);
        assert!(matches!(c.verify(&key.public(), &forged), Err(ProofError::Invalid(_))));
    }
}

//! Signed tree heads as C2SP checkpoints in the signed-note format
//! (<https://c2sp.org/tlog-checkpoint>, <https://c2sp.org/signed-note>),
//! the format transparency-log witnesses and monitors read. A checkpoint
//! commits to the first `size` records of the audit log; publish it
//! anywhere (a ticket, a bucket, a witness) and any later export can be
//! proven to extend it.
//!
//! ```text
//! warden.local/audit          <- origin
//! 1234                        <- tree size
//! Zm9vYmFy...=                <- base64 root hash
//!                             <- blank line
//! — warden.local/audit AAAA...=   <- key name, base64(key id ‖ Ed25519 signature)
//! ```

use crate::merkle::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use warden_identity::{Keypair, PublicKey};

/// A verified (or freshly signed) checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint: {0}")]
    Format(String),
    #[error("the checkpoint carries no valid signature by this gateway key for origin {0}")]
    Signature(String),
}

/// Signed-note key id: the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ key),
/// 0x01 being the Ed25519 signature type.
fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let d = Sha256::new().chain_update(name.as_bytes()).chain_update(b"\n\x01").chain_update(key.to_bytes()).finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_origin(o: &str) -> bool {
    !o.is_empty() && !o.contains(char::is_whitespace) && !o.contains('+')
}

impl Checkpoint {
    fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// The signed note text.
    pub fn sign(&self, key: &Keypair) -> String {
        assert!(valid_origin(&self.origin), "origin is a key name: no spaces or '+'");
        let body = self.body();
        let mut blob = key_id(&self.origin, &key.public()).to_vec();
        blob.extend_from_slice(&key.sign(body.as_bytes()));
        format!("{body}\n\u{2014} {} {}\n", self.origin, STANDARD.encode(blob))
    }

    /// Parse a signed note and check it carries a signature by `key` under
    /// the checkpoint's own origin as key name (other signatures, e.g. a
    /// witness's cosignature, are ignored).
    pub fn verify(note: &str, key: &PublicKey) -> Result<Self, CheckpointError> {
        let fmt = |m: &str| CheckpointError::Format(m.to_string());
        let (body, sigs) = note.split_once("\n\n").ok_or_else(|| fmt("no blank line before the signatures"))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines.next().filter(|o| valid_origin(o)).ok_or_else(|| fmt("bad origin line"))?.to_string();
        let size: u64 = lines.next().and_then(|s| s.parse().ok()).ok_or_else(|| fmt("bad tree size line"))?;
        let root: Hash =
            lines.next().and_then(|r| STANDARD.decode(r).ok()).and_then(|r| r.try_into().ok()).ok_or_else(|| fmt("bad root hash line (base64 of 32 bytes)"))?;
        let id = key_id(&origin, key);
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else { return Err(fmt("signature lines start with an em dash")) };
            let Some((name, blob)) = rest.split_once(' ') else { return Err(fmt("signature line has no key name")) };
            let Ok(blob) = STANDARD.decode(blob) else { continue };
            if name == origin && blob.len() == 68 && blob[..4] == id && key.verify(body.as_bytes(), &blob[4..]).is_ok() {
                return Ok(Self { origin, size, root });
            }
        }
        Err(CheckpointError::Signature(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_note_round_trip_and_tampering() {
        let key = Keypair::generate();
        let cp = Checkpoint { origin: "warden.local/audit".into(), size: 42, root: [7; 32] };
        let note = cp.sign(&key);
        assert!(note.starts_with("warden.local/audit\n42\nBwcH"));
        assert!(note.contains("\n\n\u{2014} warden.local/audit "));
        assert_eq!(Checkpoint::verify(&note, &key.public()).unwrap(), cp);
        assert!(matches!(Checkpoint::verify(&note, &Keypair::generate().public()), Err(CheckpointError::Signature(_))));
        assert!(Checkpoint::verify(&note.replace("\n42\n", "\n43\n"), &key.public()).is_err());
        assert!(Checkpoint::verify(&note.replacen("warden.local/audit\n", "evil/audit\n", 1), &key.public()).is_err());
        // A cosignature by someone else is tolerated.
        let mut cosigned = note.clone();
        cosigned.push_str(&format!("\u{2014} witness {}\n", STANDARD.encode([0u8; 68])));
        assert_eq!(Checkpoint::verify(&cosigned, &key.public()).unwrap(), cp);
        assert!(Checkpoint::verify("garbage", &key.public()).is_err());
    }
}

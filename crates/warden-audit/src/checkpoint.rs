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
//!
//! Publication outside the database: each checkpoint is written once, never
//! replaced, as its own file in a directory (`checkpoint-<size, 20 digits>`),
//! so the directory can live where a database writer cannot reach
//! (another mount, an append-only or object-locked store) and verification
//! can demand the log reach the newest one.

use crate::merkle::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
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

const PUBLISHED_PREFIX: &str = "checkpoint-";

/// The file name a checkpoint of `size` is published under: zero-padded so
/// the newest sorts last.
pub fn published_name(size: u64) -> String {
    format!("{PUBLISHED_PREFIX}{size:020}")
}

/// The tree size a published file name stands for.
fn published_size(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PUBLISHED_PREFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("checkpoint publication directory {}: {source}; check that it exists and this process may read and write it", dir.display())]
    Io { dir: PathBuf, source: std::io::Error },
    #[error("{} already holds a different checkpoint of tree size {size}: the log forked or the file was altered; investigate before publishing again", path.display())]
    Differs { path: PathBuf, size: u64 },
    #[error("published checkpoint {}: {source}", path.display())]
    Invalid { path: PathBuf, source: CheckpointError },
}

/// Publish a signed checkpoint `note` of `size` into `dir`, without ever
/// replacing a file: written to a temporary file, synced, then linked under
/// its final name (which fails if the name exists). Publishing the same
/// note again is a no-op; a different note under the same size is an error.
pub fn publish(dir: &Path, size: u64, note: &str) -> Result<PathBuf, PublishError> {
    let io = |source| PublishError::Io { dir: dir.to_path_buf(), source };
    let path = dir.join(published_name(size));
    // Unique per process and call: replicas and the CLI may publish at once.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{}.{call}.tmp", published_name(size), std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(note.as_bytes())?;
        f.sync_all()
    })()
    .map_err(io);
    // Ok(Err(AlreadyExists)): the final name exists (the temporary name is unique).
    let linked = written.map(|()| std::fs::hard_link(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    match linked? {
        Ok(()) => {
            // The new name is durable once the directory is.
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            Ok(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read_to_string(&path).map_err(io)? == note {
                Ok(path)
            } else {
                Err(PublishError::Differs { path, size })
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// The newest checkpoint published in `dir` (`None`: none yet), checked
/// against `key`: its signature must verify and its size match its name.
pub fn newest_published(dir: &Path, key: &PublicKey) -> Result<Option<(PathBuf, Checkpoint)>, PublishError> {
    let io = |source| PublishError::Io { dir: dir.to_path_buf(), source };
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(size) = entry.file_name().to_str().and_then(published_size)
            && newest.as_ref().is_none_or(|(n, _)| size > *n)
        {
            newest = Some((size, entry.path()));
        }
    }
    let Some((size, path)) = newest else { return Ok(None) };
    let note = std::fs::read_to_string(&path).map_err(io)?;
    let cp = Checkpoint::verify(&note, key).map_err(|source| PublishError::Invalid { path: path.clone(), source })?;
    if cp.size != size {
        return Err(PublishError::Invalid { path, source: CheckpointError::Format(format!("it signs tree size {}, not the {size} its name says", cp.size)) });
    }
    Ok(Some((path, cp)))
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

    #[test]
    fn a_published_checkpoint_is_never_replaced_and_the_newest_is_found_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate();
        let note = |size| Checkpoint { origin: "td/audit".into(), size, root: [size as u8; 32] }.sign(&key);
        assert!(newest_published(dir.path(), &key.public()).unwrap().is_none());
        for size in [9, 10, 2] {
            publish(dir.path(), size, &note(size)).unwrap();
        }
        assert_eq!(publish(dir.path(), 10, &note(10)).unwrap(), dir.path().join(published_name(10)), "the same note again is fine");
        let forked = Checkpoint { origin: "td/audit".into(), size: 10, root: [0; 32] }.sign(&key);
        assert!(matches!(publish(dir.path(), 10, &forked), Err(PublishError::Differs { size: 10, .. })));
        assert_eq!(std::fs::read_to_string(dir.path().join(published_name(10))).unwrap(), note(10), "the published file is unchanged");
        let (path, cp) = newest_published(dir.path(), &key.public()).unwrap().unwrap();
        assert_eq!((path.file_name().unwrap().to_str().unwrap(), cp.size), (published_name(10).as_str(), 10), "10 is newer than 9 and 2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "no temporary files left");

        // A newer file that is not a valid checkpoint by this key fails closed.
        std::fs::write(dir.path().join(published_name(11)), note(12)).unwrap();
        assert!(matches!(newest_published(dir.path(), &key.public()), Err(PublishError::Invalid { .. })));
        std::fs::write(dir.path().join(published_name(11)), Checkpoint { origin: "td/audit".into(), size: 11, root: [0; 32] }.sign(&Keypair::generate()))
            .unwrap();
        assert!(matches!(newest_published(dir.path(), &key.public()), Err(PublishError::Invalid { .. })));
    }
}

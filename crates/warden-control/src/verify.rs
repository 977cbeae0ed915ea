//! Verifying the audit log (`warden audit verify`, `GET /admin/v1/audit/verify`):
//! against the gateway key, the stored head and checkpoints, and — when
//! checkpoints are published outside the database — the newest published
//! one, since the database's own rows cannot vouch for a log whose writer
//! could rewrite them. Reads only.

use crate::ControlError;
use std::path::{Path, PathBuf};
use warden_audit::{AuditError, VerifyReport};
use warden_identity::PublicKey;
use warden_store::Store;

/// Where this log's checkpoints are published (`[audit] publish_checkpoints_to`)
/// and its origin line.
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    pub dir: &'a Path,
    pub origin: &'a str,
}

/// What a published checkpoint had to do with a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// No publication directory is configured.
    NotConfigured,
    /// Configured, nothing published there yet: the database alone vouched.
    NoneYet(PathBuf),
    /// The log was checked against the newest published checkpoint.
    Checked { path: PathBuf, size: u64 },
}

#[derive(Debug)]
pub struct Verification {
    pub result: Result<VerifyReport, AuditError>,
    pub published: Published,
}

impl Verification {
    /// The report, or why verification failed (naming the published
    /// checkpoint when the log does not reach it or differs from it).
    pub fn outcome(&self) -> Result<&VerifyReport, String> {
        let e = match &self.result {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        Err(match (&self.published, e) {
            (Published::Checked { path, size }, AuditError::Checkpoint { size: s } | AuditError::ShorterThanCheckpoint { size: s, .. }) if s == size => {
                format!("the log does not match the checkpoint published at {} (tree size {size}): {e}", path.display())
            }
            _ => e.to_string(),
        })
    }
}

/// Verify the stored log; an unreadable publication directory, or one
/// holding another log's checkpoints, is an error rather than a pass.
pub async fn verify_audit(store: &Store, key: &PublicKey, publication: Option<Publication<'_>>) -> Result<Verification, ControlError> {
    let Some(p) = publication else {
        return Ok(Verification { result: store.verify_audit(key).await?, published: Published::NotConfigured });
    };
    let Some((path, cp)) = warden_audit::newest_published(p.dir, key)? else {
        return Ok(Verification { result: store.verify_audit(key).await?, published: Published::NoneYet(p.dir.to_path_buf()) });
    };
    if cp.origin != p.origin {
        return Err(ControlError::ForeignCheckpoint { path, origin: cp.origin, expected: p.origin.to_string() });
    }
    let result = store.verify_audit_with(key, std::slice::from_ref(&cp)).await?;
    Ok(Verification { result, published: Published::Checked { path, size: cp.size } })
}

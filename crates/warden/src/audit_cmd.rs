//! `warden audit …`: tail, query, verify (store or export, against signed
//! checkpoints; the store also against the newest one published outside the
//! database), export (JSONL, OCSF), checkpoints (published when configured)
//! and Merkle proofs.

use crate::cli::{AuditCmd, Cli, ExportFormat};
use crate::{load_config, open_store};
use anyhow::{Context, Result, bail, ensure};
use std::io::Write;
use std::path::{Path, PathBuf};
use warden_audit::merkle::Hash;
use warden_audit::{AuditError, AuditRecord, ChainHead, Checkpoint, ConsistencyProof, InclusionProof, VerifyReport, verify_jsonl};
use warden_control::{Publication, Published, Verification};
use warden_identity::{Keypair, PublicKey};
use warden_store::{Store, StoredCheckpoint};

/// Every record in order (rows that do not parse become errors).
pub async fn all_records(store: &Store) -> Result<Vec<Result<AuditRecord, AuditError>>> {
    Ok(store.audit_records().await?)
}

/// Verify the stored log against the gateway key and the stored head.
pub async fn verify_store(store: &Store, key: &PublicKey) -> Result<Result<VerifyReport, AuditError>> {
    Ok(store.verify_audit(key).await?)
}

fn gateway_key(cli: &Cli) -> Result<Keypair> {
    let cfg = load_config(cli)?;
    let path = cfg.key_path();
    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading the gateway key {} (or pass --public-key)", path.display()))?;
    Ok(Keypair::from_pkcs8_pem(&pem)?)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The key given with --public-key, else the local gateway's.
fn public_key(cli: &Cli, given: &Option<PathBuf>) -> Result<PublicKey> {
    match given {
        Some(p) => Ok(PublicKey::parse(&read(p)?)?),
        None => Ok(gateway_key(cli)?.public()),
    }
}

/// The stored checkpoint of this tree size, or the newest.
async fn stored_checkpoint(store: &Store, size: Option<u64>) -> Result<StoredCheckpoint> {
    let all = store.checkpoints().await?;
    let sizes = all.iter().map(|c| c.size.to_string()).collect::<Vec<_>>().join(", ");
    match size {
        None => all.into_iter().last().context("no audit checkpoint yet; sign one with `warden audit checkpoint`"),
        Some(n) => all.into_iter().find(|c| c.size == n).with_context(|| format!("no checkpoint at tree size {n} (stored: {sizes})")),
    }
}

/// Leaf hashes of the first `size` records.
async fn leaves(store: &Store, size: u64) -> Result<(Vec<AuditRecord>, Vec<Hash>)> {
    let recs: Vec<AuditRecord> = all_records(store).await?.into_iter().take(size as usize).collect::<Result<_, _>>()?;
    ensure!(recs.len() as u64 == size, "the stored log has {} records, fewer than the checkpoint's {size}", recs.len());
    let leaves = recs.iter().map(AuditRecord::leaf_hash).collect::<Result<_, _>>()?;
    Ok((recs, leaves))
}

/// One record as a terminal line. Every field is escaped: a record's text
/// may have come from a caller (or been written by an insider), and must
/// not forge a line or steer the terminal.
fn line(r: &AuditRecord) -> String {
    let e = &r.event;
    let esc = crate::printable;
    let ts = chrono::DateTime::from_timestamp_millis(r.ts_ms).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default();
    let kind = e.kind.map(|k| serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()).unwrap_or_default();
    format!(
        "{:>6} {ts} {:<16} {:<14} {:<42} {:<28} {}",
        r.seq,
        kind,
        esc(e.decision.as_str()),
        esc(e.agent.as_deref().unwrap_or("-")),
        esc(e.tool.as_deref().or(e.action.as_deref()).unwrap_or("-")),
        esc(e.reason.as_deref().unwrap_or(""))
    )
}

pub async fn run(cli: &Cli, cmd: &AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { file: Some(file), public_key: pk, head, checkpoint } => {
            let head = head.as_deref().map(parse_head).transpose()?;
            let key = public_key(cli, pk)?;
            let checkpoints = checkpoint
                .iter()
                .map(|p| Checkpoint::verify(&read(p)?, &key).with_context(|| format!("checkpoint {}", p.display())))
                .collect::<Result<Vec<_>>>()?;
            let text = read(file)?;
            report(verify_jsonl(&text, &key, ChainHead::default(), head.as_ref(), &checkpoints))
        }
        AuditCmd::CheckProof { file, public_key: pk, old_checkpoint } => {
            let key = public_key(cli, pk)?;
            let v: serde_json::Value = serde_json::from_str(&read(file)?).with_context(|| format!("{} is not JSON", file.display()))?;
            if v.get("record").is_some() {
                let p: InclusionProof = serde_json::from_value(v).context("not an inclusion proof")?;
                let cp = p.verify(&key).context("inclusion proof FAILED")?;
                println!("inclusion proof OK: record {} ({}) is in the log {} signed at tree size {}", p.record.seq, p.record.hash, cp.origin, cp.size);
            } else {
                let p: ConsistencyProof = serde_json::from_value(v).context("not a consistency proof")?;
                let old = old_checkpoint.as_deref().context("a consistency proof needs --old-checkpoint FILE (the checkpoint published earlier)")?;
                let cp = p.verify(&key, &read(old)?).context("consistency proof FAILED")?;
                println!("consistency proof OK: the log {} at tree size {} extends tree size {} unchanged", cp.origin, cp.size, p.old_size);
            }
            Ok(())
        }
        AuditCmd::PublicKey => {
            print!("{}", gateway_key(cli)?.public().to_spki_pem());
            Ok(())
        }
        _ => {
            let cfg = load_config(cli)?;
            let store = open_store(&cfg).await?;
            match cmd {
                AuditCmd::Verify { .. } => {
                    let key = gateway_key(cli)?.public();
                    let origin = cfg.audit_origin();
                    let publication = cfg.audit.publish_checkpoints_to.as_deref().map(|dir| Publication { dir, origin: &origin });
                    verified(warden_control::verify_audit(&store, &key, publication).await?)
                }
                AuditCmd::Checkpoint { out } => {
                    let key = gateway_key(cli)?;
                    let cp = store.make_checkpoint(&key, &cfg.audit_origin(), warden_core::clock::now_ms()).await?;
                    let cp = cp.context("the audit log is empty: nothing to checkpoint yet")?;
                    if let Some(dir) = &cfg.audit.publish_checkpoints_to {
                        let path = warden_audit::publish(dir, cp.size, &cp.note)?;
                        eprintln!("checkpoint at tree size {} published to {}", cp.size, path.display());
                    }
                    match out {
                        Some(p) => {
                            std::fs::write(p, &cp.note).with_context(|| format!("writing {}", p.display()))?;
                            eprintln!("checkpoint at tree size {} written to {}", cp.size, p.display());
                        }
                        None => print!("{}", cp.note),
                    }
                    Ok(())
                }
                AuditCmd::Prove { seq, size } => {
                    let cp = stored_checkpoint(&store, *size).await?;
                    ensure!((1..=cp.size).contains(seq), "record {seq} is not covered by the checkpoint at tree size {}", cp.size);
                    let (recs, leaves) = leaves(&store, cp.size).await?;
                    let proof = InclusionProof::new(recs[*seq as usize - 1].clone(), &leaves, cp.note)?;
                    println!("{}", serde_json::to_string_pretty(&proof)?);
                    Ok(())
                }
                AuditCmd::Consistency { old_size, size } => {
                    let cp = stored_checkpoint(&store, *size).await?;
                    ensure!((1..=cp.size).contains(old_size), "the older size must be between 1 and {}", cp.size);
                    let (_, leaves) = leaves(&store, cp.size).await?;
                    let proof = ConsistencyProof::new(*old_size, &leaves, cp.note)?;
                    println!("{}", serde_json::to_string_pretty(&proof)?);
                    Ok(())
                }
                AuditCmd::Tail { n, json } => {
                    let head = store.audit_head().await?;
                    let recs = store.read_audit(head.seq.saturating_sub(*n), *n as u32).await?;
                    print_records(recs.into_iter().filter_map(Result::ok), *json)
                }
                AuditCmd::Query { agent, tool, decision, kind, task, limit, json } => {
                    let matches = |r: &AuditRecord| {
                        let e = &r.event;
                        let kind_s = e.kind.and_then(|k| serde_json::to_value(k).ok()).and_then(|v| v.as_str().map(str::to_string));
                        agent.as_ref().is_none_or(|a| e.agent.as_deref().is_some_and(|x| x == a || x.ends_with(&format!("/agent/{a}"))))
                            && tool.as_ref().is_none_or(|t| e.tool.as_deref() == Some(t.as_str()))
                            && decision.as_ref().is_none_or(|d| e.decision.as_str() == d.as_str())
                            && kind.as_ref().is_none_or(|k| kind_s.as_deref() == Some(k.as_str()))
                            && task.as_ref().is_none_or(|t| e.task.as_deref() == Some(t.as_str()))
                    };
                    let recs: Vec<AuditRecord> = all_records(&store).await?.into_iter().filter_map(Result::ok).filter(matches).collect();
                    let skip = recs.len().saturating_sub(*limit);
                    print_records(recs.into_iter().skip(skip), *json)
                }
                AuditCmd::Export { out, format } => {
                    let mut w: Box<dyn Write> = match out {
                        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)),
                        None => Box::new(std::io::stdout().lock()),
                    };
                    let mut n = 0;
                    for r in all_records(&store).await? {
                        let r = r.map_err(|e| anyhow::anyhow!("cannot export: {e}"))?;
                        let line = match format {
                            ExportFormat::Jsonl => serde_json::to_string(&r)?,
                            ExportFormat::Ocsf => serde_json::to_string(&warden_audit::export::ocsf(&r, env!("CARGO_PKG_VERSION")))?,
                        };
                        writeln!(w, "{line}")?;
                        n += 1;
                    }
                    w.flush()?;
                    if out.is_some() {
                        eprintln!("exported {n} records");
                    }
                    Ok(())
                }
                AuditCmd::PublicKey | AuditCmd::CheckProof { .. } => unreachable!("handled above"),
            }
        }
    }
}

/// The stored log's verification as the terminal shows it.
fn verified(v: Verification) -> Result<()> {
    if let Published::NoneYet(dir) = &v.published {
        println!("note: no checkpoint published in {} yet; verifying against the database alone", dir.display());
    }
    print_report(v.outcome().map_err(|why| anyhow::anyhow!("audit log verification FAILED: {why}"))?);
    if let Published::Checked { path, size } = &v.published {
        println!("the log reaches the newest published checkpoint {} (tree size {size})", path.display());
    }
    Ok(())
}

fn parse_head(s: &str) -> Result<ChainHead> {
    let (seq, hash) = s.split_once(':').context("--head must be SEQ:HASH")?;
    let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    ensure!(ok, "--head hash must be 64 hex characters");
    Ok(ChainHead { seq: seq.parse().context("--head SEQ must be a number")?, hash: hash.to_ascii_lowercase() })
}

fn print_records(recs: impl Iterator<Item = AuditRecord>, json: bool) -> Result<()> {
    for r in recs {
        if json { println!("{}", serde_json::to_string(&r)?) } else { println!("{}", line(&r)) }
    }
    Ok(())
}

fn report(r: Result<VerifyReport, AuditError>) -> Result<()> {
    match r {
        Ok(rep) => {
            print_report(&rep);
            Ok(())
        }
        Err(e) => bail!("audit log verification FAILED: {e}"),
    }
}

fn print_report(rep: &VerifyReport) {
    println!(
        "audit log OK: {} records, {} signed batches, head {}:{}, Merkle root {}, {} signed checkpoints matched",
        rep.records, rep.signatures, rep.head.seq, rep.head.hash, rep.root, rep.checkpoints
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::{AuditEvent, EventKind};

    #[test]
    fn a_printed_record_cannot_forge_a_line() {
        let forged = "bad token\n    99 2026-12-01T00:00:00.000Z approval_decided allow operator:cfo \u{1b}[2K";
        let r = AuditRecord {
            seq: 7,
            ts_ms: 0,
            prev: String::new(),
            event: AuditEvent {
                kind: Some(EventKind::AuthnFailure),
                agent: Some("spiffe://td/agent/x\r".into()),
                decision: warden_core::Verdict::Deny,
                reason: Some(forged.into()),
                ..Default::default()
            },
            hash: String::new(),
            sig: None,
        };
        let out = line(&r);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out}");
        assert!(out.contains("bad token\\u{a}"), "{out}");
    }
}

//! `warden audit …`: tail, query, verify, export.

use crate::cli::{AuditCmd, Cli};
use crate::{load_config, open_store};
use anyhow::{Context, Result, bail, ensure};
use std::io::Write;
use warden_audit::{AuditError, AuditRecord, ChainHead, VerifyReport, parse_jsonl, verify};
use warden_identity::{Keypair, PublicKey};
use warden_store::Store;

/// Every record in order (rows that do not parse become errors).
pub async fn all_records(store: &Store) -> Result<Vec<Result<AuditRecord, AuditError>>> {
    Ok(store.audit_records().await?)
}

/// Verify the stored log against the gateway key and the stored head.
pub async fn verify_store(store: &Store, key: &PublicKey) -> Result<Result<VerifyReport, AuditError>> {
    Ok(store.verify_audit(key).await?)
}

fn gateway_public_key(cli: &Cli) -> Result<PublicKey> {
    let cfg = load_config(cli)?;
    let path = cfg.key_path();
    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading the gateway key {} (or pass --public-key)", path.display()))?;
    Ok(Keypair::from_pkcs8_pem(&pem)?.public())
}

fn line(r: &AuditRecord) -> String {
    let e = &r.event;
    let ts = chrono::DateTime::from_timestamp_millis(r.ts_ms).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default();
    let kind = e.kind.map(|k| serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()).unwrap_or_default();
    format!(
        "{:>6} {ts} {:<16} {:<14} {:<42} {:<28} {}",
        r.seq,
        kind,
        e.decision,
        e.agent.as_deref().unwrap_or("-"),
        e.tool.as_deref().or(e.action.as_deref()).unwrap_or("-"),
        e.reason.as_deref().unwrap_or("")
    )
}

pub async fn run(cli: &Cli, cmd: &AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { file: Some(file), public_key, head } => {
            let head = head.as_deref().map(parse_head).transpose()?;
            let key = match public_key {
                Some(p) => PublicKey::parse(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)?,
                None => gateway_public_key(cli)?,
            };
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            report(verify(parse_jsonl(&text), &key, ChainHead::default(), head.as_ref()))
        }
        AuditCmd::PublicKey => {
            print!("{}", gateway_public_key(cli)?.to_spki_pem());
            Ok(())
        }
        _ => {
            let cfg = load_config(cli)?;
            let store = open_store(&cfg).await?;
            match cmd {
                AuditCmd::Verify { .. } => {
                    let key = gateway_public_key(cli)?;
                    report(verify_store(&store, &key).await?)
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
                            && decision.as_ref().is_none_or(|d| &e.decision == d)
                            && kind.as_ref().is_none_or(|k| kind_s.as_deref() == Some(k.as_str()))
                            && task.as_ref().is_none_or(|t| e.task.as_deref() == Some(t.as_str()))
                    };
                    let recs: Vec<AuditRecord> = all_records(&store).await?.into_iter().filter_map(Result::ok).filter(matches).collect();
                    let skip = recs.len().saturating_sub(*limit);
                    print_records(recs.into_iter().skip(skip), *json)
                }
                AuditCmd::Export { out } => {
                    let mut w: Box<dyn Write> = match out {
                        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)),
                        None => Box::new(std::io::stdout().lock()),
                    };
                    let mut n = 0;
                    for r in all_records(&store).await? {
                        let r = r.map_err(|e| anyhow::anyhow!("cannot export: {e}"))?;
                        writeln!(w, "{}", serde_json::to_string(&r)?)?;
                        n += 1;
                    }
                    w.flush()?;
                    if out.is_some() {
                        eprintln!("exported {n} records");
                    }
                    Ok(())
                }
                AuditCmd::PublicKey => unreachable!("handled above"),
            }
        }
    }
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
            println!("audit log OK: {} records, {} signed batches, head {}:{}", rep.records, rep.signatures, rep.head.seq, rep.head.hash);
            Ok(())
        }
        Err(e) => bail!("audit log verification FAILED: {e}"),
    }
}

//! Audit verification speed: the hash chain, batch signatures and the Merkle
//! tree over 100,000 records sealed in batches of 256 (group commit under
//! load), from parsed records and from a JSONL export (checked from the
//! lines' bytes, as the store's rows are); Merkle proofs.

use criterion::BatchSize;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_audit::{AuditRecord, Chain, ChainHead, merkle, verify, verify_jsonl};
use warden_core::{AuditEvent, EventKind};
use warden_identity::Keypair;

const N: usize = 100_000;

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        kind: Some(EventKind::ToolCall),
        agent: Some("spiffe://bench/agent/a".into()),
        subject: Some("alice@example.com".into()),
        tool: Some("crm/lookup".into()),
        action: Some("call_tool".into()),
        task: Some("t-1".into()),
        decision: warden_core::Verdict::Allow,
        policies: vec!["read-low-medium".into()],
        args_sha256: Some(format!("{i:064x}")),
        correlation_id: Some(format!("{i:032x}")),
        latency_us: Some(900),
        forwarded: true,
        risk: Some(3),
        anomaly: Some(1),
        ..Default::default()
    }
}

fn log(key: &Keypair) -> Vec<AuditRecord> {
    let mut chain = Chain::new(key.clone(), ChainHead::default());
    let mut out = Vec::with_capacity(N);
    for start in (0..N).step_by(256) {
        out.extend(chain.seal_batch((start..(start + 256).min(N)).map(|i| (event(i), 1_700_000_000_000 + i as i64)).collect()));
    }
    out
}

fn bench(c: &mut Criterion) {
    let key = Keypair::generate();
    let recs = log(&key);
    let jsonl: String = recs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    let leaves: Vec<merkle::Hash> = recs.iter().map(|r| r.leaf_hash().unwrap()).collect();
    let pk = key.public();

    let mut g = c.benchmark_group("audit verify");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("parsed records", |b| {
        b.iter_batched(|| recs.clone(), |r| verify(r.into_iter().map(Ok), &pk, ChainHead::default(), None).unwrap(), BatchSize::LargeInput)
    });
    g.bench_function("jsonl export", |b| b.iter(|| verify_jsonl(&jsonl, &pk, ChainHead::default(), None, &[]).unwrap()));
    g.bench_function("merkle root", |b| b.iter(|| merkle::root(&leaves)));
    g.finish();

    let mut g = c.benchmark_group("merkle proof");
    g.bench_function("inclusion, 100k leaves", |b| b.iter(|| merkle::inclusion_proof(&leaves, 54_321).unwrap()));
    let proof = merkle::inclusion_proof(&leaves, 54_321).unwrap();
    let root = merkle::root(&leaves);
    g.bench_function("verify inclusion", |b| b.iter(|| assert!(merkle::verify_inclusion(54_321, N as u64, &leaves[54_321], &proof, &root))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

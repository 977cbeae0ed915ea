//! Durable audit appends on SQLite: one event per transaction (a lone call)
//! and batches of 256 (group commit under load).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_core::{AuditEvent, EventKind};
use warden_identity::Keypair;
use warden_store::Store;

fn event() -> AuditEvent {
    AuditEvent {
        kind: Some(EventKind::ToolCall),
        agent: Some("spiffe://bench/agent/a".into()),
        tool: Some("crm/lookup".into()),
        decision: "allow".into(),
        policies: vec!["read-low-medium".into()],
        args_sha256: Some("0".repeat(64)),
        ..Default::default()
    }
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The writer's pooled connection is returned on drop, inside the runtime.
    let _ctx = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(Store::open(&dir.path().join("bench.db"))).unwrap();
    let key = Keypair::generate();
    let mut w = rt.block_on(store.audit_appender(key)).unwrap();
    let mut g = c.benchmark_group("audit append");
    for batch in [1usize, 256] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch of {batch}"), |b| b.iter(|| rt.block_on(w.append(vec![(event(), 0); batch])).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);

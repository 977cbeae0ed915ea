//! Durable audit appends: one event per transaction (a lone call) and
//! batches of 256 (group commit under load), on SQLite (synchronous=FULL
//! for the audit writer) and, when `WARDEN_TEST_POSTGRES_URL` names a
//! server, on PostgreSQL. On SQLite also through the writer thread the
//! gateway uses there (`SqliteWriter`): a lone record, and 64 callers at
//! once, each with a one-time id and a record (it batches them itself).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_core::{AuditEvent, EventKind};
use warden_identity::Keypair;
use warden_store::Store;

fn event() -> AuditEvent {
    AuditEvent {
        kind: Some(EventKind::ToolCall),
        agent: Some("spiffe://bench/agent/a".into()),
        tool: Some("crm/lookup".into()),
        decision: warden_core::Verdict::Allow,
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
    let mut stores = vec![("sqlite", rt.block_on(Store::open(&dir.path().join("bench.db"))).unwrap())];
    if let Some(url) = rt.block_on(warden_test_support::fresh_postgres_url()).unwrap() {
        stores.push(("postgres", rt.block_on(Store::connect(&url)).unwrap()));
    }
    let mut g = c.benchmark_group("audit append");
    for (name, store) in &stores {
        let mut w = rt.block_on(store.audit_appender(Keypair::generate())).unwrap();
        for batch in [1usize, 256] {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("{name}, batch of {batch}"), |b| b.iter(|| rt.block_on(w.append(vec![(event(), 0); batch])).unwrap()));
        }
    }
    let w = stores[0].1.sqlite_writer(Keypair::generate()).expect("SQLite");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sqlite, writer thread, a lone record", |b| b.iter(|| rt.block_on(w.append(event())).unwrap()));
    let ids = w.one_time_ids(60);
    let next = std::sync::atomic::AtomicU64::new(0);
    g.throughput(Throughput::Elements(64));
    g.bench_function("sqlite, writer thread, 64 callers with an id and a record each", |b| {
        b.iter(|| {
            rt.block_on(async {
                let calls: Vec<_> = (0..64)
                    .map(|_| {
                        let (w, ids) = (w.clone(), ids.clone());
                        let id = format!("dpop:bench:{}", next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                        tokio::spawn(async move {
                            assert!(ids.claim(id, i64::MAX).await.unwrap());
                            w.append(event()).await.unwrap();
                        })
                    })
                    .collect();
                for c in calls {
                    c.await.unwrap();
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);

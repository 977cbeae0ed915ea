//! The replay check's cost per request. Before: the in-memory cache alone
//! (per process). After: the cache plus the store's record through the
//! group-commit writer, which every first use waits for — a lone request
//! (one round trip) and 64 at once (batched), on SQLite and, when
//! `WARDEN_TEST_POSTGRES_URL` names a server, on PostgreSQL. On SQLite
//! both writers: the pooled one (sqlx) and the writer thread the gateway
//! uses there (`SqliteWriter`, which also commits the audit records).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::atomic::{AtomicU64, Ordering};
use warden_core::clock::now_secs;
use warden_identity::ReplayCache;
use warden_store::Store;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh id shaped like the gateway's (`dpop:JKT:JTI`).
fn id() -> String {
    format!("dpop:0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I:{:022}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn one_time_ids(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _ctx = rt.enter();
    let mut g = c.benchmark_group("one-time id");
    let mut cache = ReplayCache::new(1_000_000);
    g.throughput(Throughput::Elements(1));
    g.bench_function("in-memory cache only (before)", |b| b.iter(|| cache.check_and_insert(&id(), now_secs() + 120, now_secs())));

    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![("sqlite", rt.block_on(Store::open(&dir.path().join("bench.db"))).unwrap())];
    if let Some(url) = rt.block_on(warden_test_support::fresh_postgres_url()).unwrap() {
        stores.push(("postgres", rt.block_on(Store::connect(&url)).unwrap()));
    }
    let writer = stores[0].1.sqlite_writer(warden_identity::Keypair::generate()).expect("SQLite");
    let mut writers: Vec<_> = stores.iter().map(|(name, store)| (format!("{name}, pooled"), store.one_time_ids(60))).collect();
    writers.push(("sqlite, writer thread".into(), writer.one_time_ids(60)));
    for (name, w) in writers {
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}, a lone request"), |b| b.iter(|| rt.block_on(w.claim(id(), now_secs() + 120)).unwrap()));
        g.throughput(Throughput::Elements(64));
        g.bench_function(format!("{name}, 64 requests at once"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let claims: Vec<_> = (0..64)
                        .map(|_| {
                            let w = w.clone();
                            tokio::spawn(async move { w.claim(id(), now_secs() + 120).await })
                        })
                        .collect();
                    for c in claims {
                        assert!(c.await.unwrap().unwrap());
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, one_time_ids);
criterion_main!(benches);

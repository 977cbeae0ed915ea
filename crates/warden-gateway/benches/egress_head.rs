//! The egress proxy's per-connection cost before any IO: parsing and
//! validating a typical request head, decoding its path, and inspecting
//! what it carries (path only, as the proxy once did, against path, query,
//! headers and a 1 KB body). Run: `cargo bench -p warden-gateway`.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use warden_gateway::egress::{parse_request_head, path};
use warden_inspect::Inspector;

const HEAD: &[u8] = b"POST http://api.example.com/v1/items/42?expand=owner&page=2 HTTP/1.1\r\nHost: api.example.com\r\n\
Proxy-Authorization: Basic YWdlbnQ6ZXlKaGJHY2lPaUpGWkVSVFFTSjkuZXlKemRXSWlPaUpoWjJWdWRDSjkuc2ln\r\n\
User-Agent: agent-sdk/1.4\r\nAccept: application/json\r\nContent-Type: application/json\r\nX-Request-Id: 7f3a9c2e-41d2-4b8e\r\n\
Content-Length: 1024\r\n\r\n";

fn bench(c: &mut Criterion) {
    let ins = Inspector::default();
    let body = "{\"name\": \"quarterly report\", \"notes\": \"ship the migration on Tuesday, keep the old endpoint for two releases\"} ".repeat(10);
    c.bench_function("egress/parse_head", |b| b.iter(|| parse_request_head(black_box(HEAD)).unwrap()));
    c.bench_function("egress/parse_head_and_path", |b| {
        b.iter(|| {
            let h = parse_request_head(black_box(HEAD)).unwrap();
            let p = h.path.as_deref().unwrap().split('?').next().unwrap();
            path::normalize(p).unwrap()
        })
    });
    let path_only = json!({ "path": "/v1/items/42?expand=owner&page=2" });
    c.bench_function("egress/inspect_path_only", |b| b.iter(|| ins.scan_json(black_box(&path_only))));
    let everything = json!({
        "method": "POST", "host": "api.example.com", "port": 80, "path": "/v1/items/42", "query": "expand=owner&page=2",
        "headers": { "user-agent": "agent-sdk/1.4", "accept": "application/json", "content-type": "application/json", "x-request-id": "7f3a9c2e-41d2-4b8e" },
        "body": &body[..1024],
    });
    c.bench_function("egress/inspect_request_1k_body", |b| b.iter(|| ins.scan_json(black_box(&everything))));
}

criterion_group!(benches, bench);
criterion_main!(benches);

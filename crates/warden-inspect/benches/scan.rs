//! Inspection on the hot path: full-scan throughput (MB/s per core) on
//! mixed text, the added latency for a typical 4 KB tool result (scan, then
//! redaction), and throughput on pathological inputs built to trip the
//! scanners and the normalisers. Run: `cargo bench -p warden-inspect`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use warden_inspect::{Inspector, Redactor, Rule};

/// Mixed content as tools return it: prose, JSON records, logs, code and
/// configuration, with the occasional e-mail, phone number, card and key.
fn mixed(bytes: usize) -> String {
    let parts = [
        "The quarterly review covers onboarding, churn and support volume. Teams should update their dashboards before Friday; the new layout groups metrics by region and product line.\n",
        "{\"id\": \"ord-20931\", \"status\": \"shipped\", \"items\": [{\"sku\": \"A-1182\", \"qty\": 2, \"price\": 19.99}], \"customer\": \"c-5521\", \"updated\": \"2026-11-20T10:22:31Z\"}\n",
        "2026-11-23T09:41:35Z INFO request_id=7f3a9c2e method=GET path=/api/v2/orders status=200 latency_ms=42 bytes=5123 upstream=10.0.4.17:8080\n",
        "fn main() {\n    let cfg = Config::load(\"app.toml\").expect(\"config\");\n    for (i, item) in cfg.items.iter().enumerate() { println!(\"{i}: {item:?}\"); }\n}\n",
        "Contact Jane Doe at jane.doe@example.com or +44 20 7946 0958 about invoice 2026-0412. Card on file ends 4242; IBAN GB82 WEST 1234 5698 7654 32.\n",
        "[server]\nlisten = \"0.0.0.0:8443\"\nworkers = 8\ntimeout_secs = 30\nlog_level = \"info\"\n# rotate keys monthly\n",
        "Meeting notes: agreed to ship the migration on Tuesday, keep the old endpoint for two releases, and document the retry semantics in the README.\n",
        "export AWS_REGION=eu-west-1\nexport DEPLOY_TOKEN=ghp_Z3MNQ7RXW4PVBC5DKp4Qx7Rm2Sn5Tb8Vw3Yz\n",
    ];
    let mut s = String::with_capacity(bytes + 256);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(parts[i % parts.len()]);
        i += 1;
    }
    s.truncate(bytes);
    s
}

/// A typical 4 KB MCP `tools/call` result: JSON records as text content.
fn tool_result_4k() -> serde_json::Value {
    let mut rows = Vec::new();
    let mut i = 0;
    loop {
        let plan = ["starter", "team", "enterprise"][i % 3];
        rows.push(json!({ "id": format!("c-{}", 1000 + i), "name": format!("Customer {i}"), "plan": plan,
                          "email": format!("user{i}@example.com"), "notes": "renewal due next quarter; prefers e-mail contact", "seats": 5 + i }));
        let text = serde_json::to_string(&json!({ "rows": rows })).unwrap();
        if text.len() >= 4000 {
            return json!({ "content": [{ "type": "text", "text": text }], "isError": false });
        }
        i += 1;
    }
}

fn bench(c: &mut Criterion) {
    let ins = Inspector::default();
    let mut g = c.benchmark_group("scan");
    for size in [4 << 10, 64 << 10, 1 << 20] {
        let text = mixed(size);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("mixed_text", size), &text, |b, t| b.iter(|| black_box(ins.scan_text(black_box(t)))));
    }
    // The word model's share of a scan.
    let text = mixed(64 << 10);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("mixed_text_64k/word_model", |b| b.iter(|| black_box(warden_inspect::word_model_probability(black_box(&text)))));
    let result = tool_result_4k();
    let len = result.to_string().len();
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("tool_result_4k/scan", |b| b.iter(|| black_box(ins.scan_json(black_box(&result)))));
    let redactor = Redactor::new([9; 32]);
    let rules = Rule::parse_list("pii:token, secrets:mask").unwrap();
    g.bench_function("tool_result_4k/scan_and_redact", |b| {
        b.iter(|| {
            let mut v = result.clone();
            let s = ins.scan_json(&v);
            if s.summary.pii_count + s.summary.secret_count > 0 {
                redactor.redact_json(&ins, &mut v, &rules);
            }
            black_box(v)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("adversarial");
    g.sample_size(10);
    for (name, unit) in [
        ("digits", "4 "),
        ("at_signs", "a@"),
        ("colons", "a:"),
        ("pem_begin", "-----BEGIN PRIVATE KEY-----"),
        ("keywords", "key=password="),
        ("base64", "aWdub3Jl"),
        ("percent", "%41"),
        ("tags", "\u{e0041}"),
        // the normalisers
        ("entities", "&#105;"),
        ("spaced_out", "a "),
        ("binary", "01101001 "),
        ("homoglyphs", "a\u{430}"),
        ("wrapped_base64", "aWdub3JlIGFsbCBwcmV2aW91cyBp\n"),
        ("reversed_cues", "AIKA snoitcurtsni "),
    ] {
        let text = unit.repeat((256 << 10) / unit.len());
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new(name, text.len()), &text, |b, t| b.iter(|| black_box(ins.scan_text(black_box(t)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

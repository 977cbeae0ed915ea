//! Cost of the monitor on the hot path: assess + admit + finish for one call
//! of an agent with a learned baseline, among 10,000 agents.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use warden_core::ToolRef;
use warden_monitor::{Call, Dimension, KillSet, LimitRule, Metric, Monitor, MonitorConfig, Outcome};

fn bench(c: &mut Criterion) {
    let cfg = MonitorConfig {
        limit: vec![
            LimitRule { name: "calls".into(), metric: Metric::Calls, max: 1e9, window_secs: 60, tools: vec![], agents: vec![], per: vec![Dimension::Agent] },
            LimitRule {
                name: "per-tool".into(),
                metric: Metric::Calls,
                max: 1e9,
                window_secs: 3600,
                tools: vec![],
                agents: vec![],
                per: vec![Dimension::Agent, Dimension::Tool],
            },
        ],
        ..Default::default()
    };
    let m = Monitor::new(cfg);
    let tools: Vec<ToolRef> = (0..8).map(|i| format!("srv/tool{i}").parse().unwrap()).collect();
    let agents: Vec<String> = (0..10_000).map(|i| format!("spiffe://bench/agent/a{i}")).collect();
    let call = |agent: &'_ str, i: usize, now_ms: i64| -> (String, usize, i64) { (agent.to_string(), i, now_ms) };
    let run = |m: &Monitor, (agent, i, now_ms): &(String, usize, i64)| {
        let c = Call {
            agent,
            agent_name: "a",
            lineage_root: agent,
            task: "task",
            tool: &tools[i % tools.len()],
            sensitivity_level: 2,
            exfil_capable: false,
            financial: false,
            amount: 0.0,
            arg_bytes: 64,
            now_ms: *now_ms,
        };
        let a = m.assess(&c);
        // Held until the outcome is reported, as the gateway does.
        let admitted = m.admit(&c).unwrap();
        black_box(m.finish(&c, &Outcome { upstream_ok: Some(true), ..Default::default() }));
        drop(admitted);
        a.risk
    };
    let mut now = 0i64;
    for (n, a) in agents.iter().enumerate() {
        for i in 0..50 {
            now += 1;
            run(&m, &call(a, n + i, now));
        }
    }
    let mut i = 0usize;
    c.bench_function("assess+admit+finish (10k agents, learned)", |b| {
        b.iter(|| {
            i += 1;
            now += 1;
            run(&m, &call(&agents[i % agents.len()], i, now))
        })
    });
    let kills = KillSet::new([]);
    let chain = ["spiffe://bench/agent/a1"];
    c.bench_function("kill-switch check (none engaged)", |b| {
        b.iter(|| black_box(kills.for_caller(chain, "alice").is_some() || kills.for_tool(&tools[1]).is_some()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

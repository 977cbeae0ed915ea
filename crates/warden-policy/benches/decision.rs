//! Policy decision latency: the shipped policies plus generated ones (100
//! in all) and requests from 10,000 distinct agents over 50 tools. Criterion
//! reports the mean; a second pass times 200,000 single decisions and prints
//! p50/p99/p99.9.

use cedar_policy::PolicySet;
use criterion::{Criterion, criterion_group};
use serde_json::json;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;
use warden_policy::{AgentFacts, CallFacts, PolicyBundle, PolicySource, RequestFacts, ToolFacts};

const AGENTS: usize = 10_000;
const TOOLS: usize = 50;

fn bundle() -> PolicyBundle {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
    let (base, guardrails) = (read("base.cedar"), read("guardrails.cedar"));
    // Per-agent permits fill the bundle up to 100 whatever the shipped count.
    let shipped = PolicySet::from_str(&format!("{base}\n{guardrails}")).unwrap().policies().count();
    let mut generated = String::new();
    for i in 0..100 - 30 - 20 - shipped {
        generated.push_str(&format!(
            "@id(\"agent-{i}\") permit(principal == Warden::Agent::\"spiffe://bench/agent/a{i}\", action == Warden::Action::\"call_tool\", resource) when {{ context.in_scope && resource.sensitivity_level <= 3 }};\n"
        ));
    }
    for k in 0..30 {
        generated.push_str(&format!(
            "@id(\"owner-{k}\") @reason(\"team {k} is off hours\") forbid(principal in Warden::Owner::\"team-{k}\", action, resource == Warden::Tool::\"srv{k}/tool{k}\") when {{ context.hour < 6 }};\n"
        ));
    }
    for j in 0..20 {
        generated.push_str(&format!(
            "@id(\"limit-{j}\") @approval(\"limit {j}\") forbid(principal, action, resource == Warden::Tool::\"pay/tool{j}\") when {{ context.args has amount && context.args.amount > {} }};\n",
            (j + 1) * 100
        ));
    }
    let files = [
        PolicySource { name: "base.cedar".into(), text: base },
        PolicySource { name: "guardrails.cedar".into(), text: guardrails },
        PolicySource { name: "generated.cedar".into(), text: generated },
    ];
    let b = PolicyBundle::load(&PolicySource { name: "schema".into(), text: read("schema.cedarschema") }, &files).unwrap();
    assert_eq!(b.len(), 100, "the benchmark needs exactly 100 policies");
    b
}

fn requests() -> Vec<CallFacts> {
    let classes = ["read", "write", "financial", "read", "read"];
    (0..AGENTS)
        .map(|i| {
            let t = i % TOOLS;
            CallFacts {
                agent: AgentFacts {
                    id: format!("spiffe://bench/agent/a{i}"),
                    name: format!("a{i}"),
                    owner: format!("team-{}", i % 30),
                    purpose: "benchmark".into(),
                    autonomy: (i % 4) as i64,
                    risk_score: (i % 100) as i64,
                },
                tool: ToolFacts {
                    kind: warden_core::TargetKind::Tool,
                    server: if t < 20 { "pay".into() } else { format!("srv{}", t % 30) },
                    name: format!("tool{}", t % 30),
                    sensitivity: "medium".into(),
                    sensitivity_level: 2,
                    action_class: classes[t % classes.len()].into(),
                    exfil_capable: t.is_multiple_of(7),
                    untrusted_content: false,
                },
                request: RequestFacts {
                    task: format!("task-{}", i % 97),
                    in_scope: !i.is_multiple_of(10),
                    delegation_depth: i.is_multiple_of(3) as i64,
                    now: 1_795_435_200 + (i as i64 * 37) % 86_400,
                    args: json!({ "amount": (i * 13) % 5000, "to": "ops@example.com", "customer_id": format!("c-{i}") }),
                    ..Default::default()
                },
            }
        })
        .collect()
}

/// Time `bundle` deciding `reqs` in turn.
fn bench(c: &mut Criterion, name: &str, bundle: &PolicyBundle, reqs: &[CallFacts]) {
    let mut i = 0;
    c.bench_function(name, |bench| {
        bench.iter(|| {
            i = (i + 1) % reqs.len();
            black_box(bundle.decide(black_box(&reqs[i])))
        })
    });
}

fn decision(c: &mut Criterion) {
    bench(c, "decide/100-policies/10k-agents", &bundle(), &requests());
}

/// The second decision of every forwarded call: on its result.
fn result_decision(c: &mut Criterion) {
    let mut reqs = requests();
    for r in &mut reqs {
        r.request.result = true;
    }
    bench(c, "decide/receive_result/100-policies/10k-agents", &bundle(), &reqs);
}

fn one_policy(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let schema = std::fs::read_to_string(format!("{dir}/schema.cedarschema")).unwrap();
    let b = PolicyBundle::load(
        &PolicySource { name: "schema".into(), text: schema },
        &[PolicySource { name: "p".into(), text: "permit(principal, action, resource) when { context.in_scope };".into() }],
    )
    .unwrap();
    bench(c, "decide/1-policy", &b, &requests());
}

fn percentiles() {
    let b = bundle();
    let reqs = requests();
    let mut outcomes = std::collections::HashMap::<&str, usize>::new();
    for r in &reqs {
        *outcomes.entry(b.decide(r).outcome()).or_default() += 1;
    }
    let n = 200_000;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let r = &reqs[(i * 7919) % reqs.len()];
        let t = Instant::now();
        black_box(b.decide(black_box(r)));
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0;
    println!(
        "policy decision, 100 policies, {AGENTS} agents, {n} samples: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs; outcomes {outcomes:?}",
        q(0.5),
        q(0.99),
        q(0.999)
    );
}

criterion_group!(benches, decision, result_decision, one_policy);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    percentiles();
}

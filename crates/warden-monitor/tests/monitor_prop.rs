//! Property tests: arbitrary call streams keep scores in range, limits are
//! never overrun within a window bucket, and state survives serialization.

use proptest::prelude::*;
use std::collections::HashMap;
use warden_core::ToolRef;
use warden_monitor::{Call, Dimension, Learning, LimitRule, Metric, Monitor, MonitorConfig, Outcome, Taint};

#[derive(Debug, Clone)]
struct Step {
    agent: usize,
    tool: usize,
    dt_ms: i64,
    denied: bool,
    failed: bool,
    financial: bool,
    amount: u32,
    taint: (bool, bool),
}

fn step() -> impl Strategy<Value = Step> {
    (0usize..3, 0usize..5, prop_oneof![0i64..50, 0i64..5_000, 0i64..200_000], any::<bool>(), any::<bool>(), any::<bool>(), 0u32..2_000, any::<(bool, bool)>())
        .prop_map(|(agent, tool, dt_ms, denied, failed, financial, amount, taint)| Step { agent, tool, dt_ms, denied, failed, financial, amount, taint })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn scores_stay_in_range_and_limits_hold(steps in proptest::collection::vec(step(), 1..300)) {
        const MAX_CALLS: f64 = 7.0;
        const MAX_AMOUNT: f64 = 3_000.0;
        let window_ms = 10_000;
        let cfg = MonitorConfig {
            learning: Learning { min_calls: 10, min_secs: 0, cold_calls_per_minute: 20.0 },
            limit: vec![
                LimitRule { name: "calls".into(), metric: Metric::Calls, max: MAX_CALLS, window_secs: 10, tools: vec![], agents: vec![], per: vec![Dimension::Agent] },
                LimitRule { name: "money".into(), metric: Metric::Amount, max: MAX_AMOUNT, window_secs: 10, tools: vec![], agents: vec![], per: vec![] },
            ],
            ..Default::default()
        };
        let m = Monitor::new(cfg.clone());
        let tools: Vec<ToolRef> = (0..5).map(|i| format!("s/t{i}").parse().unwrap()).collect();
        let agents = ["a", "b", "c"];
        let mut now = 1_000_000i64;
        // Admitted calls and money per bucket (bucket index = now / window).
        let mut calls: HashMap<(usize, i64), f64> = HashMap::new();
        let mut money: HashMap<i64, f64> = HashMap::new();
        for s in &steps {
            now += s.dt_ms;
            let c = Call {
                agent: agents[s.agent],
                agent_name: agents[s.agent],
                lineage_root: agents[s.agent],
                task: "t",
                tool: &tools[s.tool],
                sensitivity_level: 1 + s.tool as i64 % 4,
                exfil_capable: s.tool == 4,
                financial: s.financial,
                amount: f64::from(s.amount),
                arg_bytes: 100,
                now_ms: now,
            };
            let a = m.assess(&c);
            prop_assert!(a.risk <= 100 && a.anomaly.score <= 100);
            let admitted = m.admit(&c).is_ok();
            if admitted {
                let b = now / window_ms;
                *calls.entry((s.agent, b)).or_default() += 1.0;
                if s.financial {
                    *money.entry(b).or_default() += f64::from(s.amount);
                }
            }
            let o = Outcome { denied: s.denied || !admitted, limit_hit: !admitted, failed: s.failed, upstream_ok: admitted.then_some(!s.failed), taint: Taint { untrusted: s.taint.0, sensitive: s.taint.1 }, ..Default::default() };
            let _ = m.finish(&c, &o);
            prop_assert!(m.risk(agents[s.agent], now) <= 100);
        }
        for (k, n) in &calls {
            prop_assert!(*n <= MAX_CALLS, "{} calls admitted in bucket {:?}", n, k);
        }
        for (k, n) in &money {
            prop_assert!(*n <= MAX_AMOUNT, "{} moved in bucket {}", n, k);
        }
        // Saved state restores to the same summaries.
        let restored = Monitor::new(cfg);
        for (agent, json) in m.take_dirty() {
            restored.restore(&agent, &json).unwrap();
            prop_assert_eq!(restored.risk(&agent, now), m.risk(&agent, now));
        }
    }
}

//! Crash safety of the audit log: the server is killed (SIGKILL) in the
//! middle of a load; after a restart the log verifies and every call that
//! got an answer has its audit record.

use crate::common::Harness;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

async fn crash_under_load(env: &[(&str, &str)]) {
    // Bursting from one agent is the point here, not an anomaly to contain.
    let mut h = Harness::start_with("", "[monitor]\ncontain_at = 0\n[monitor.learning]\ncold_calls_per_minute = 1000000\n", env);
    h.approve_demo_tools();
    let (id, key) = h.register("loader", "onboarding/customer_lookup", 2, None);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let mut c = h.ready_client(&id, &key, None).await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) && i > 0 {
                    break;
                }
                // Any answer counts, allowed or not: each must be audited.
                match c.call_tool("onboarding__customer_lookup", json!({ "customer_id": format!("c-100{}", (w + i) % 3) })).await {
                    Ok(r) => answered.push(r.correlation_id.expect("every answer carries its correlation id")),
                    Err(_) => break, // the server is gone
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.stop(); // SIGKILL: no shutdown hooks, no flush
    stop.store(true, Ordering::Relaxed);
    let mut answered = HashSet::new();
    for w in workers {
        answered.extend(w.await.unwrap());
    }
    assert!(answered.len() > 50, "the load ran: {} answers", answered.len());

    h.serve();
    h.assert_audit_intact();
    let audited: HashSet<String> = h
        .cli(&["audit", "export"])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["event"]["correlation_id"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|c| !audited.contains(*c)).collect();
    eprintln!("{} calls answered before the kill, all {} audited", answered.len(), answered.len() - missing.len());
    assert!(missing.is_empty(), "answered but not audited: {missing:?}");
    // The restarted server keeps extending the same chain.
    let mut c = h.ready_client(&id, &key, None).await;
    assert!(c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap().result().is_some());
    h.assert_audit_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_answered_call_sqlite() {
    crash_under_load(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_answered_call_postgres() {
    let Some(url) = warden_test_support::fresh_postgres_url().await.expect("test PostgreSQL") else { return };
    crash_under_load(&[("WARDEN_DATABASE_URL", &url)]).await;
}

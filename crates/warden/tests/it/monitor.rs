//! Monitoring and containment through the real binary: a scripted rogue
//! agent is contained automatically while a legitimate one keeps working;
//! operator kill switches by tool and globally; learned baselines survive a
//! restart.

use crate::common::Harness;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MONITOR: &str = r#"
# Calls needing approval are answered "pending" at once here.
[approvals]
hold_secs = 0
[monitor]
contain_at = 90
flush_secs = 1
[monitor.learning]
min_calls = 20
min_secs = 0
cold_calls_per_minute = 30
[[monitor.limit]]
name = "calls-per-agent"
metric = "calls"
max = 40
window_secs = 60
tools = ["onboarding/customer_lookup"]
"#;

fn start() -> Harness {
    let h = Harness::start_with("", MONITOR, &[]);
    h.approve_demo_tools();
    // The onboarding share holds partner-supplied files: untrusted content.
    h.cli(&["tool", "set", "onboarding/file_read", "--sensitivity", "medium", "--action-class", "read", "--untrusted"]);
    h
}

fn audit(h: &Harness, kind: &str) -> Vec<Value> {
    h.cli(&["audit", "query", "--kind", kind, "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn lookup(i: usize) -> Value {
    json!({ "customer_id": format!("c-100{}", 1 + i % 3) })
}

fn internal_mail() -> Value {
    json!({ "to": "ops@example.com", "subject": "onboarding", "body": "customer signed up" })
}

#[tokio::test]
async fn a_rogue_agent_is_contained_automatically_and_a_legitimate_one_keeps_working() {
    let h = start();
    let (rogue_id, rogue_key) = h.register("rogue", "onboarding/*", 2, None);
    let (good_id, good_key) = h.register("good", "onboarding/*", 2, None);
    let mut rogue = h.ready_client(&rogue_id, &rogue_key, None).await;
    let mut good = h.ready_client(&good_id, &good_key, None).await;

    // Learning period: both do the same routine (look a customer up, send an
    // internal e-mail).
    for i in 0..12 {
        for c in [&mut rogue, &mut good] {
            assert!(c.call_tool("onboarding__customer_lookup", lookup(i)).await.unwrap().result().is_some());
            let r = c.call_tool("onboarding__email_send", internal_mail()).await.unwrap();
            assert!(r.result().is_some(), "routine e-mail: {}", r.body);
        }
    }

    // The rogue turns: reads untrusted content (a tool it never used), then
    // tries to mail data out (lethal trifecta), then bursts lookups.
    let mut script: Vec<(&str, Value)> = vec![("onboarding__file_read", json!({ "path": "/onboarding/checklist.md" }))];
    script.push(("onboarding__email_send", json!({ "to": "ops@example.com", "subject": "list", "body": "all customers" })));
    // (The held exfiltration attempt counts as the lethal trifecta, not as a
    // refusal: waiting for a human is no misbehaviour. So the burst runs
    // a few calls further into its limit than when holds counted twice.)
    script.extend((0..40).map(|i| ("onboarding__customer_lookup", lookup(i))));
    script.extend((0..4).map(|_| ("onboarding__customer_lookup", lookup(0))));
    let mut replies = Vec::new();
    for (tool, args) in &script {
        replies.push(rogue.call_tool(tool, args.clone()).await.unwrap());
    }
    let trifecta = &replies[1];
    assert_eq!(trifecta.error_code(), Some(-32002), "exfiltration after reading untrusted content and PII needs approval: {}", trifecta.body);
    assert!(trifecta.body["error"]["data"]["policies"].to_string().contains("lethal-trifecta"), "{}", trifecta.body);

    // Where the risk crosses depends on timing: on the assessment (that call
    // is refused as "the agent is contained") or after a call's outcome
    // (that call keeps its own refusal; the next meets the kill switch,
    // "agent … is contained").
    let crossing = replies
        .iter()
        .position(|r| r.error_message().is_some_and(|m| m.contains("is contained: risk score")))
        .unwrap_or_else(|| panic!("never contained: {:#?}", replies.iter().map(|r| r.body.to_string()).collect::<Vec<_>>()));
    eprintln!("rogue contained at scripted call {} of {}", crossing + 1, script.len());
    for e in h.cli(&["audit", "query", "--agent", &rogue_id, "--kind", "tool_call", "--limit", "1000", "--json"]).lines() {
        let e: Value = serde_json::from_str(e).unwrap();
        let e = &e["event"];
        eprintln!("  {} {} risk {} anomaly {} {}", e["tool"], e["decision"], e["risk"], e["anomaly"], e["reason"].as_str().unwrap_or(""));
    }
    let m = replies[crossing].error_message().unwrap();
    assert!(m.contains("risk score") && m.contains("containment threshold 90"), "{m}");
    // The crossing call and every later one are refused.
    for (i, r) in replies.iter().enumerate().skip(crossing + 1) {
        assert!(r.result().is_none() && r.status != 200 || r.error_code().is_some(), "call {i} after containment got through: {}", r.body);
        assert!(r.status == 401 || r.status == 403, "call {i}: HTTP {} {}", r.status, r.body);
    }
    let upstream_before = h.upstream_calls();
    // A new token is refused too (the agent is suspended), and the old one stays dead.
    let mut fresh = h.client(&rogue_id, &rogue_key);
    let err = fresh.fetch_token(None, Some("test-task")).await.unwrap_err().to_string();
    assert!(err.contains("suspended"), "{err}");
    let r = rogue.call_tool("onboarding__customer_lookup", lookup(1)).await.unwrap();
    assert!(r.status == 401 || r.status == 403, "{}", r.body);
    assert_eq!(h.upstream_calls(), upstream_before, "nothing reached the upstream after containment");

    // The legitimate agent keeps working.
    for i in 0..3 {
        assert!(good.call_tool("onboarding__customer_lookup", lookup(i)).await.unwrap().result().is_some());
    }
    let r = good.call_tool("onboarding__email_send", internal_mail()).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);

    // The containment is audited with its cause and timing, and listed.
    let events = audit(&h, "containment");
    let auto = events.iter().find(|e| e["event"]["subject"] == "monitor").expect("automatic containment audited");
    assert_eq!(auto["event"]["agent"], rogue_id.as_str());
    assert!(auto["event"]["reason"].as_str().unwrap().contains("risk score"), "{auto}");
    assert!(auto["event"]["latency_us"].as_u64().is_some(), "{auto}");
    let listed = h.cli(&["kill", "list", "--json"]);
    let kill: Value = serde_json::from_str(listed.lines().next().expect("a kill switch")).unwrap();
    assert_eq!((kill["scope"].as_str(), kill["target"].as_str(), kill["by"].as_str()), (Some("agent"), Some(rogue_id.as_str()), Some("monitor")));
    h.assert_audit_intact();

    // Only an operator resumes it; its risk starts again from zero.
    let id = kill["id"].as_i64().unwrap().to_string();
    h.cli(&["kill", "lift", &id, "--reason", "investigated: test script"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = h.client(&rogue_id, &rogue_key);
    while back.fetch_token(None, Some("test-task")).await.is_err() {
        assert!(Instant::now() < deadline, "agent not resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(back.initialize().await.unwrap().status, 200);
    // (Its lookups stay refused by the rate limit until the minute is over.)
    let r = back.call_tool("onboarding__file_read", json!({ "path": "/onboarding/checklist.md" })).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert!(audit(&h, "containment_lifted").iter().any(|e| e["event"]["reason"].as_str().unwrap_or("").contains("starts again from zero")));
}

#[tokio::test]
async fn operator_kill_switches_by_tool_and_globally() {
    let h = start();
    let (id, key) = h.register("ops", "onboarding/*", 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    assert!(c.call_tool("onboarding__email_send", internal_mail()).await.unwrap().result().is_some());

    let out = h.cli(&["kill", "tool", "onboarding/email_send", "--reason", "mail relay compromised"]);
    assert!(out.contains("engaged"), "{out}");
    let engaged = Instant::now();
    loop {
        let r = c.call_tool("onboarding__email_send", internal_mail()).await.unwrap();
        if r.error_message().is_some_and(|m| m.contains("mail relay compromised")) {
            break;
        }
        assert!(engaged.elapsed() < Duration::from_secs(10), "tool kill not enforced: {}", r.body);
    }
    // Other tools still work, and the killed one is hidden from listings.
    assert!(c.call_tool("onboarding__customer_lookup", lookup(0)).await.unwrap().result().is_some());
    assert!(!c.list_tools().await.unwrap().contains(&"onboarding__email_send".to_string()));
    let took = audit(&h, "containment");
    assert!(took.iter().any(|e| e["event"]["reason"].as_str().unwrap_or("").contains("in force on this gateway")), "{took:?}");

    h.cli(&["kill", "global", "--reason", "incident response"]);
    let engaged = Instant::now();
    loop {
        let r = c.call_tool("onboarding__customer_lookup", lookup(0)).await.unwrap();
        if r.status == 403 && r.error_message().is_some_and(|m| m.contains("global kill switch")) {
            break;
        }
        assert!(engaged.elapsed() < Duration::from_secs(10), "global kill not enforced: {}", r.body);
    }
    let listed = h.cli(&["kill", "list", "--json"]);
    let ids: Vec<String> = listed.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].to_string()).collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        h.cli(&["kill", "lift", id, "--reason", "incident closed"]);
    }
    let out = h.cli_output(&["kill", "lift", &ids[0], "--reason", "again"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("kill list"), "lifting twice is an error");
    // The global kill closed every session: start a new one once it is lifted.
    let lifted = Instant::now();
    while c.initialize().await.unwrap().status != 200 {
        assert!(lifted.elapsed() < Duration::from_secs(10), "global kill not lifted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        let r = c.call_tool("onboarding__email_send", internal_mail()).await.unwrap();
        if r.result().is_some() {
            break;
        }
        assert!(lifted.elapsed() < Duration::from_secs(10), "not lifted: {}", r.body);
    }
    let out = h.cli_output(&["kill", "agent", "nobody", "--reason", "x"]);
    assert!(!out.status.success(), "unknown agents are refused");
    h.assert_audit_intact();
}

#[tokio::test]
async fn rate_limits_refuse_with_a_clear_reason() {
    let h = start();
    let (id, key) = h.register("busy", "onboarding/customer_lookup", 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let mut refused = None;
    for i in 0..45 {
        let r = c.call_tool("onboarding__customer_lookup", lookup(i)).await.unwrap();
        if r.error_code().is_some() {
            refused = Some((i, r));
            break;
        }
    }
    let (i, r) = refused.expect("the limit refuses");
    assert_eq!(i, 40, "exactly the configured 40 calls per minute got through");
    assert!(r.error_message().unwrap().contains("limit \"calls-per-agent\" reached: 40 of 40 calls per 60 s"), "{}", r.body);
    assert_eq!(r.body["error"]["data"]["policies"], json!(["limit:calls-per-agent"]));
}

async fn saved_calls(h: &Harness, agent: &str) -> Option<(u64, bool)> {
    let out = h.cli_output(&["monitor", "show", agent, "--json"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["summary"]["calls"].as_u64()?, v["summary"]["learning"].as_bool()?))
}

/// Wait until the gateway has saved `want` (calls, learning) for `agent`.
async fn wait_saved(h: &Harness, agent: &str, want: (u64, bool)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while saved_calls(h, agent).await != Some(want) {
        assert!(Instant::now() < deadline, "{agent}: saved state is {:?}, expected {want:?}", saved_calls(h, agent).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn baselines_survive_a_restart_and_new_agents_start_learning() {
    let mut h = start();
    let (id, key) = h.register("steady", "onboarding/customer_lookup", 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    for i in 0..25 {
        assert!(c.call_tool("onboarding__customer_lookup", lookup(i)).await.unwrap().result().is_some());
    }
    wait_saved(&h, "steady", (25, false)).await;
    // Killed without a chance to flush: what was saved is what comes back.
    h.serve();
    let mut c = h.ready_client(&id, &key, None).await;
    assert!(c.call_tool("onboarding__customer_lookup", lookup(0)).await.unwrap().result().is_some());
    wait_saved(&h, "steady", (26, false)).await;
    let out = h.cli(&["monitor", "show", "steady"]);
    assert!(out.contains("baseline trusted") && out.contains("onboarding/customer_lookup 100%"), "{out}");

    // A brand-new agent is in its learning period.
    let (nid, nkey) = h.register("newcomer", "onboarding/customer_lookup", 2, None);
    let mut n = h.ready_client(&nid, &nkey, None).await;
    assert!(n.call_tool("onboarding__customer_lookup", lookup(0)).await.unwrap().result().is_some());
    wait_saved(&h, "newcomer", (1, true)).await;
}

#[tokio::test]
async fn a_critical_violation_contains_and_demotes_and_promotion_is_an_operators_call() {
    let h = start();
    let (id, key) = h.register("mailer", "onboarding/email_send", 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let out = h.cli(&["agent", "show", "mailer"]);
    assert!(out.contains("promotion to autonomy 3: not yet") && out.contains("since registration, none so far"), "{out}");

    // A credential on its way out through an exfiltration-capable tool.
    let leak = json!({ "to": "ops@example.com", "subject": "keys", "body": "token ghp_R7xK2mQ9vL4pT8wZ3nB6yC1dF5gH0jS2aE4u" });
    let r = c.call_tool("onboarding__email_send", leak).await.unwrap();
    assert_eq!(r.error_code(), Some(-32001), "{}", r.body);
    assert!(r.body["error"]["data"]["policies"].to_string().contains("credential-exfiltration"), "{}", r.body);
    let r = c.call_tool("onboarding__email_send", internal_mail()).await.unwrap();
    assert!(r.status == 401 || r.status == 403, "contained at once: {}", r.body);
    let events = audit(&h, "containment");
    assert!(events.iter().any(|e| e["event"]["reason"].as_str().unwrap_or("").contains("critical policy violation (credential-exfiltration)")), "{events:?}");
    let changed = audit(&h, "agent_changed");
    let demote = changed.iter().find(|e| e["event"]["action"] == "agent:demote").expect("demotion audited");
    assert!(demote["event"]["reason"].as_str().unwrap().contains("from 2 to 1"), "{demote}");

    let out = h.cli(&["agent", "show", "mailer"]);
    assert!(out.contains("autonomy") && out.contains("0 days since the last critical violation"), "{out}");
    assert!(h.cli(&["agent", "list"]).contains("mailer"));
    // Promotion is an operator's decision, audited.
    let out = h.cli_output(&["agent", "autonomy", "mailer", "4", "--reason", "x"]);
    assert!(!out.status.success(), "levels are 0-3");
    h.cli(&["agent", "autonomy", "mailer", "2", "--reason", "reviewed the incident: test fixture key"]);
    assert!(audit(&h, "agent_changed").iter().any(|e| e["event"]["action"] == "agent:autonomy"));
}

//! Regression tests for the classes of defects an outside review found,
//! through the real binary: delegation that does not derive from the
//! parent, approvals released without re-authorization, taint washed off by
//! a new task label, tokens from the future, strangers driving audit
//! writes, and calls that execute without a record (client disconnects,
//! shutdown, an audit log that cannot be written).

use crate::common::Harness;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BOT_TOOLS: &str = "onboarding/customer_lookup,onboarding/email_send,onboarding/file_read";

/// The stored audit records, oldest first.
fn audit(h: &Harness) -> Vec<Value> {
    h.cli(&["audit", "tail", "-n", "100000", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn records_of<'a>(recs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["event"]["kind"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_agent_acts_only_through_its_parent_whatever_grant_it_tries() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (lead, lead_key) = h.register("lead", BOT_TOOLS, 2, None);
    let (helper, helper_key) = h.register("helper", "onboarding/customer_lookup", 2, Some("lead"));
    let mut parent = h.ready_client(&lead, &lead_key, None).await;

    // Its own assertion gets a sub-agent no token of its own.
    let e = h.client(&helper, &helper_key).fetch_token(None, Some("fresh-task")).await.unwrap_err().to_string();
    assert!(e.contains("unauthorized_client") && e.contains("sub-agent of") && e.contains("token-exchange"), "{e}");

    // A root token for the sub-agent (as one issued before this check
    // existed would be) is refused at the gateway: its chain is not the
    // registered lineage.
    let mut minted = h.claims(&helper, &helper_key, "onboarding/customer_lookup");
    minted.task = "escape".into();
    let mut rogue = h.client(&helper, &helper_key);
    rogue.token = Some(h.mint(&minted));
    let r = rogue.initialize().await.unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.to_string().contains("registered lineage"), "{}", r.body);

    // Through the exchange it works, and controls on the parent reach it.
    let parent_token = parent.token.clone().unwrap();
    let mut child = h.client(&helper, &helper_key);
    child.exchange(&parent_token, None, None).await.unwrap();
    assert_eq!(child.initialize().await.unwrap().status, 200);
    let lookup = json!({ "customer_id": "c-1001" });
    assert!(child.call_tool("onboarding__customer_lookup", lookup.clone()).await.unwrap().result().is_some());
    h.cli(&["agent", "suspend", "lead", "--reason", "review"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.call_tool("onboarding__customer_lookup", lookup.clone()).await.unwrap().status != 401 {
        assert!(Instant::now() < deadline, "the suspension of the parent never reached the sub-agent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = h.client(&helper, &helper_key).fetch_token(None, None).await.unwrap_err().to_string();
    assert!(e.contains("unauthorized_client"), "still no way around the parent: {e}");
    assert!(parent.list_tools().await.is_err(), "the parent is suspended too");
}

/// A payment held for approval: the harness, the waiting call and its approval.
async fn held_payment() -> (Harness, tokio::task::JoinHandle<Result<warden_client::Reply, warden_client::ClientError>>, Value) {
    let h = Harness::start_with("", "[approvals]\nhold_secs = 20\nexpire_secs = 60\n", &[]);
    h.approve_demo_tools();
    let (id, key) = h.register("payer", "onboarding/payment_transfer", 3, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let held = tokio::spawn(async move { c.call_tool("onboarding__payment_transfer", json!({ "amount": 5000, "currency": "EUR", "to": "acct-42" })).await });
    let approval = h.pending_approval().await;
    (h, held, approval)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_call_is_authorized_again_before_it_runs() {
    let (h, held, approval) = held_payment().await;
    // While the call waits, the operator suspends the agent; the approval
    // that arrives afterwards must not run it.
    h.cli(&["agent", "suspend", "payer", "--reason", "compromised"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bob = h.operator("bob", "approver");
    h.cli(&["approvals", "approve", approval["id"].as_str().unwrap(), "--operator-token-file", bob.to_str().unwrap()]);
    let r = held.await.unwrap().unwrap();
    assert_eq!(r.error_code(), Some(-32001), "{}", r.body);
    let msg = r.error_message().unwrap();
    // Suspension cuts the agent's tokens off first.
    assert!(msg.contains("was not used") && msg.contains("all tokens of") && msg.contains("payer"), "{msg}");
    assert_eq!(h.upstream_calls(), 0, "the approved call never reached the upstream");
    // The call's own record: the approval's may land after it (the
    // decision takes effect before the operator's record of it commits).
    let recs = audit(&h);
    let call = *records_of(&recs, "tool_call").last().expect("the call's record");
    assert_eq!(call["event"]["decision"], "deny", "{call}");
    assert_eq!(call["event"]["forwarded"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_disabled_during_a_hold_is_not_called_when_approved() {
    let (h, held, approval) = held_payment().await;
    h.cli(&["tool", "disable", "onboarding/payment_transfer"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bob = h.operator("bob", "approver");
    h.cli(&["approvals", "approve", approval["id"].as_str().unwrap(), "--operator-token-file", bob.to_str().unwrap()]);
    let r = held.await.unwrap().unwrap();
    assert!(r.error_message().unwrap().contains("disabled"), "{}", r.body);
    assert_eq!(h.upstream_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taint_follows_the_agent_into_a_task_it_picks_and_into_its_sub_agents() {
    let h = Harness::start_with("", "[approvals]\nhold_secs = 0\n", &[]);
    h.approve_demo_tools();
    h.cli(&["tool", "set", "onboarding/file_read", "--sensitivity", "medium", "--action-class", "read", "--untrusted"]);
    let (id, key) = h.register("reader", BOT_TOOLS, 2, None);
    let (sub, sub_key) = h.register("mailer", "onboarding/email_send", 2, Some("reader"));
    let mut c = h.ready_client(&id, &key, None).await;
    let mail = json!({ "to": "ops@example.com", "subject": "status", "body": "done" });
    // Untrusted content and customer data read in one task…
    assert!(c.call_tool("onboarding__file_read", json!({ "path": "/onboarding/checklist.md" })).await.unwrap().result().is_some());
    assert!(c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap().result().is_some());
    // …follow the agent into a task label it picks…
    let mut fresh = h.client(&id, &key);
    fresh.fetch_token(None, Some("a-clean-task")).await.unwrap();
    fresh.initialize().await.unwrap();
    let r = fresh.call_tool("onboarding__email_send", mail.clone()).await.unwrap();
    assert_eq!(r.error_code(), Some(-32002), "{}", r.body);
    assert!(r.body["error"]["data"]["policies"].to_string().contains("lethal-trifecta"), "{}", r.body);
    // …and into its sub-agent.
    let mut child = h.client(&sub, &sub_key);
    child.exchange(fresh.token.as_ref().unwrap(), None, None).await.unwrap();
    child.initialize().await.unwrap();
    let r = child.call_tool("onboarding__email_send", mail).await.unwrap();
    assert!(r.body["error"]["data"]["policies"].to_string().contains("lethal-trifecta"), "{}", r.body);
    assert_eq!(h.upstream_calls(), 2, "only the two reads executed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_in_the_future_is_refused() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    let _ = h.ready_client(&id, &key, None).await;
    let mut claims = h.claims(&id, &key, "onboarding/customer_lookup");
    claims.iat += 3600;
    let mut c = h.client(&id, &key);
    c.token = Some(h.mint(&claims));
    let r = c.initialize().await.unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.to_string().contains("not yet valid"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_throttled_and_audited_in_aggregate_while_agents_are_served() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    let mut agent = h.ready_client(&id, &key, None).await;
    let before = audit(&h).len();
    // The agent's latency alone, then during a flood of forged requests from
    // another loopback address (four clients at once). Printed, not gated.
    let sample = async |agent: &mut warden_client::AgentClient| {
        let mut us = Vec::new();
        for _ in 0..40 {
            let t = Instant::now();
            assert!(agent.list_tools().await.is_ok(), "the registered agent is served");
            us.push(t.elapsed().as_micros() as u64);
        }
        us.sort_unstable();
        (us[us.len() / 2], us[us.len() - 1])
    };
    let alone = sample(&mut agent).await;
    let huge_sub = format!("spiffe://evil/agent/x\napproval_decided allow operator:cfo {}", "a".repeat(20_000));
    let flood: Vec<_> = (0..4)
        .map(|_| {
            let (base, huge_sub) = (h.base.clone(), huge_sub.clone());
            tokio::spawn(async move {
                let stranger = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
                let (mut refused, mut throttled) = (0, 0);
                for i in 0..150 {
                    let r = if i % 2 == 0 {
                        stranger.post(format!("{base}/mcp")).header("authorization", "DPoP forged.token.here").body("{}").send().await.unwrap()
                    } else {
                        let assertion = format!(
                            "{}.{}.sig",
                            warden_identity::b64url(br#"{"alg":"EdDSA"}"#),
                            warden_identity::b64url(json!({ "sub": huge_sub }).to_string().as_bytes())
                        );
                        let form = format!(
                            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
                        );
                        stranger.post(format!("{base}/oauth/token")).header("content-type", "application/x-www-form-urlencoded").body(form).send().await.unwrap()
                    };
                    match r.status().as_u16() {
                        429 => {
                            assert!(r.headers().contains_key("retry-after"));
                            throttled += 1
                        }
                        400 | 401 => refused += 1,
                        s => panic!("unexpected status {s}"),
                    }
                }
                (refused, throttled)
            })
        })
        .collect();
    let during = sample(&mut agent).await;
    let (mut refused, mut throttled) = (0, 0);
    for f in flood {
        let (r, t) = f.await.unwrap();
        (refused, throttled) = (refused + r, throttled + t);
    }
    eprintln!("agent tools/list p50/max: alone {} / {} µs, during the flood {} / {} µs", alone.0, alone.1, during.0, during.1);
    assert!(refused >= 20 && throttled >= 400, "refused {refused}, throttled {throttled}");
    // One aggregated record per source, kind and reason, after the window.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let recs = audit(&h);
    let added = &recs[before..];
    let flood: Vec<&Value> = added.iter().filter(|r| r["event"]["action"] == "unauthenticated:127.0.0.2").collect();
    assert!(!flood.is_empty(), "the flood is on record");
    // A record per window and door, not one per request.
    assert!(flood.len() <= 8, "{} records for 600 forged requests", flood.len());
    let counted: u64 = flood
        .iter()
        .map(|r| {
            let reason = r["event"]["reason"].as_str().unwrap();
            let failed: u64 = reason.split(' ').next().unwrap().parse().unwrap();
            let throttled: u64 = reason.split_once(", and ").map_or(0, |(_, t)| t.split(' ').next().unwrap().parse().unwrap());
            failed + throttled
        })
        .sum();
    assert_eq!(counted, 600, "every forged request is counted");
    let text = serde_json::to_string(&flood).unwrap();
    assert!(text.contains("failed requests from 127.0.0.2") && text.contains("answered 429"), "{text}");
    assert!(flood.iter().all(|r| r.to_string().len() < 2_000), "bounded records");
    let tail = h.cli(&["audit", "tail", "-n", "50"]);
    assert!(!tail.lines().any(|l| l.starts_with("approval_decided") || l.contains("\napproval")), "no forged line: {tail}");
    let metrics = reqwest::get(format!("{}/metrics", h.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("warden_unauthenticated_requests_total{outcome=\"throttled\"}"), "{metrics}");
    h.assert_audit_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_client_disconnects_still_runs_to_its_record() {
    let h = Harness::start(", WARDEN_DEMO_DELAY_MS = \"800\"");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let gone = tokio::time::timeout(Duration::from_millis(200), c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" }))).await;
    assert!(gone.is_err(), "the client gave up before the answer");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let recs = audit(&h);
        if let Some(r) = records_of(&recs, "tool_call").last() {
            assert_eq!(r["event"]["forwarded"], true, "{r}");
            assert_eq!(r["event"]["decision"], "allow", "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "the disconnected call was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.upstream_calls(), 1);
    assert_eq!(records_of(&audit(&h), "tool_call_intent").len(), 1, "written before the upstream saw it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_calls_in_flight_and_records_them() {
    let mut h = Harness::start(", WARDEN_DEMO_DELAY_MS = \"1500\"");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let call = tokio::spawn(async move { c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = h.terminate();
    assert!(status.success(), "clean exit: {status}");
    let r = call.await.unwrap().expect("answered, not reset");
    assert!(r.result().is_some(), "{}", r.body);
    let recs = audit(&h);
    let calls = records_of(&recs, "tool_call");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["event"]["forwarded"], true);
    assert_eq!(h.upstream_calls(), 1);
    h.assert_audit_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_forwarded_while_the_audit_log_cannot_be_written() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let lookup = json!({ "customer_id": "c-1001" });
    assert!(c.call_tool("onboarding__customer_lookup", lookup.clone()).await.unwrap().result().is_some());
    // A storage fault: every audit insert fails (as on a full disk).
    let db = h.dir.path().join("warden-data/warden.db");
    let sql = |s: &str| {
        let ok = std::process::Command::new("python3")
            .args(["-c", &format!("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute({s:?}); c.commit()"), db.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{s}");
    };
    sql("CREATE TRIGGER full_disk BEFORE INSERT ON audit BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END");
    for _ in 0..5 {
        let r = c.call_tool("onboarding__customer_lookup", lookup.clone()).await.unwrap();
        assert!(r.status == 503 || r.error_code() == Some(-32603), "{}", r.body);
    }
    assert_eq!(h.upstream_calls(), 1, "no call executed without its record");
    // The fault clears: calls work again without a restart, and the log verifies.
    sql("DROP TRIGGER full_disk");
    let r = c.call_tool("onboarding__customer_lookup", lookup).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(h.upstream_calls(), 2);
    h.assert_audit_intact();
}

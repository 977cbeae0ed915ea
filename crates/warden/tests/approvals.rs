//! Human approval through the real binary: a held call completes when an
//! operator approves it and fails when one denies it; the two-person rule;
//! an approval covers the exact arguments once; no decision = deny.

mod common;

use common::Harness;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use warden_client::AgentClient;

async fn payer(approvals: &str) -> (Harness, AgentClient) {
    let h = Harness::start_with("", approvals, &[]);
    h.approve_demo_tools();
    let (id, key) = h.register("payer", "onboarding/payment_transfer", 3, None);
    let c = h.ready_client(&id, &key, None).await;
    (h, c)
}

fn pay(amount: i64) -> Value {
    json!({ "amount": amount, "currency": "EUR", "to": "acct-42" })
}

/// The newest pending approval, once the gateway has stored it.
async fn pending(h: &Harness) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = h.cli(&["approvals", "list", "--json"]).lines().next() {
            return serde_json::from_str(l).unwrap();
        }
        assert!(Instant::now() < deadline, "no approval was requested");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn held_calls_complete_on_approval_and_fail_on_denial() {
    let (h, mut c) = payer("[approvals]\nhold_secs = 20\nexpire_secs = 60\n").await;

    // Approved: the held call completes.
    let call = tokio::spawn(async move {
        let r = c.call_tool("onboarding__payment_transfer", pay(5000)).await.unwrap();
        (c, r)
    });
    let a = pending(&h).await;
    assert_eq!(a["tool"], "onboarding/payment_transfer");
    assert_eq!(a["args_redacted"]["amount"], 5000, "the approver sees the arguments");
    assert_eq!(a["owner"], "alice@example.com");
    assert_eq!(a["required"], 1);
    assert!(a["reason"].as_str().unwrap().contains("payments above 1000"), "{a}");
    assert_eq!(h.upstream_calls(), 0, "nothing executed while held");
    let id = a["id"].as_str().unwrap();
    let out = h.cli(&["approvals", "approve", id, "--as", "bob", "--reason", "invoice 7 checked"]);
    assert!(out.contains("approved by operator:bob"), "{out}");
    let (mut c, r) = call.await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(h.upstream_calls(), 1);
    let ev = h.last_audit();
    assert_eq!(ev["event"]["decision"], "allow");
    assert!(ev["event"]["policies"].to_string().contains(&format!("approval#{id}")), "{ev}");
    assert!(ev["event"]["reason"].as_str().unwrap().contains("approved by operator:bob"), "{ev}");
    let out = h.cli_output(&["approvals", "deny", id, "--reason", "too late"]);
    assert!(!out.status.success(), "a decision is final");

    // Denied: the held call fails with the approver's reason.
    let call = tokio::spawn(async move {
        let r = c.call_tool("onboarding__payment_transfer", pay(3000)).await.unwrap();
        (c, r)
    });
    let id = pending(&h).await["id"].as_str().unwrap().to_string();
    h.cli(&["approvals", "deny", &id, "--as", "carol", "--reason", "unknown payee"]);
    let (mut c, r) = call.await.unwrap();
    assert_eq!(r.error_code(), Some(-32001), "{}", r.body);
    assert!(r.error_message().unwrap().contains("refused by operator:carol: unknown payee"), "{}", r.body);
    assert_eq!(h.upstream_calls(), 1);

    // Two-person rule: payments above 10,000 need two different approvers.
    let call = tokio::spawn(async move { c.call_tool("onboarding__payment_transfer", pay(20_000)).await.unwrap() });
    let a = pending(&h).await;
    assert_eq!(a["required"], 2, "{a}");
    let id = a["id"].as_str().unwrap();
    let out = h.cli(&["approvals", "approve", id, "--as", "bob"]);
    assert!(out.contains("1 more approver"), "{out}");
    let out = h.cli_output(&["approvals", "approve", id, "--as", "bob"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("different approver"), "the same person twice does not count");
    assert_eq!(h.upstream_calls(), 1, "one approval of two is not enough");
    h.cli(&["approvals", "approve", id, "--as", "dave"]);
    let r = call.await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(h.upstream_calls(), 2);
    assert_eq!(h.cli(&["audit", "query", "--kind", "approval_decided", "--json"]).lines().count(), 4);
    h.assert_audit_intact();
}

#[tokio::test]
async fn an_approval_covers_the_exact_arguments_once_and_expires() {
    let (h, mut c) = payer("[approvals]\nhold_secs = 1\nexpire_secs = 4\n").await;
    // The hold runs out: the agent is told the approval is pending.
    let r = c.call_tool("onboarding__payment_transfer", pay(5000)).await.unwrap();
    assert_eq!(r.error_code(), Some(-32002), "{}", r.body);
    assert!(r.error_message().unwrap().contains("repeat this exact call"), "{}", r.body);
    let id = pending(&h).await["id"].as_str().unwrap().to_string();
    h.cli(&["approvals", "approve", &id]);
    // Other arguments are not covered.
    let r = c.call_tool("onboarding__payment_transfer", pay(5001)).await.unwrap();
    assert_eq!(r.error_code(), Some(-32002), "{}", r.body);
    assert_eq!(h.upstream_calls(), 0);
    // The exact call goes through once.
    let r = c.call_tool("onboarding__payment_transfer", pay(5000)).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(h.upstream_calls(), 1);
    let r = c.call_tool("onboarding__payment_transfer", pay(5000)).await.unwrap();
    assert_eq!(r.error_code(), Some(-32002), "used once: {}", r.body);
    assert_eq!(h.upstream_calls(), 1);
    // Undecided approvals expire; deciding one afterwards is refused.
    let open: Vec<Value> = h.cli(&["approvals", "list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(open.len(), 2);
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let out = h.cli_output(&["approvals", "approve", open[0]["id"].as_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn no_decision_before_expiry_denies_the_held_call() {
    let (h, mut c) = payer("[approvals]\nhold_secs = 10\nexpire_secs = 1\n").await;
    let started = Instant::now();
    let r = c.call_tool("onboarding__payment_transfer", pay(5000)).await.unwrap();
    assert_eq!(r.error_code(), Some(-32001), "{}", r.body);
    assert!(r.error_message().unwrap().contains("timeout = deny"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5), "the hold ends at expiry");
    assert_eq!(h.upstream_calls(), 0);
    let all: Vec<Value> = h.cli(&["approvals", "list", "--all", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(all[0]["status"], "expired");
}

#[tokio::test]
async fn a_webhook_announces_each_request_signed_and_its_link_decides_it() {
    let (url, mut rx) = common::capture_posts("/hook").await;
    let cfg = format!("[approvals]\nhold_secs = 20\nexpire_secs = 60\nwebhook_url = \"{url}\"\nwebhook_secret_env = \"WARDEN_TEST_HOOK_SECRET\"\n");
    let h = Harness::start_with("", &cfg, &[("WARDEN_TEST_HOOK_SECRET", "s3cret-for-tests")]);
    h.approve_demo_tools();
    let (id, key) = h.register("payer", "onboarding/payment_transfer", 3, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let approver = h.cli(&["operator", "add", "pat", "--role", "approver"]).trim().to_string();

    let call = tokio::spawn(async move { c.call_tool("onboarding__payment_transfer", pay(2500)).await.unwrap() });
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("webhook delivered").unwrap();
    let sig = headers.get("x-warden-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(sig, warden_gateway::webhook::signature(b"s3cret-for-tests", body.as_bytes()), "signed with the configured secret");
    let hook: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hook["type"], "approval_requested");
    assert_eq!(hook["approval"]["args_redacted"]["amount"], 2500);
    let r = reqwest::Client::new()
        .post(hook["approve_url"].as_str().unwrap())
        .bearer_auth(&approver)
        .json(&json!({ "reason": "approved from chat" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done = call.await.unwrap();
    assert!(done.result().is_some(), "{}", done.body);
    assert_eq!(h.upstream_calls(), 1);
}

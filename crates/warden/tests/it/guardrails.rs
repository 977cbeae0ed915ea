//! The shipped guardrails through the real binary, on normalised facts:
//! recipient lists, traversal paths and negative amounts are refused before
//! they reach the upstream; and the configuration `warden init` writes is
//! coherent with the shipped approval rules (a payment the two-person rule
//! covers can reach it, the daily cap still holds).

use crate::common::{BIN, Harness};
use serde_json::{Value, json};
use warden_client::{AgentClient, Reply};

const TOOLS: &str = "onboarding/email_send,onboarding/file_read,onboarding/payment_transfer";

async fn agent() -> (Harness, AgentClient) {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("ops-bot", TOOLS, 3, None);
    let c = h.ready_client(&id, &key, None).await;
    (h, c)
}

/// The policies a refusal names.
fn refused_by(r: &Reply) -> Vec<String> {
    let p = r.body["error"]["data"]["policies"].as_array().cloned().unwrap_or_default();
    p.iter().filter_map(Value::as_str).map(String::from).collect()
}

/// Refused by `policy`, and the upstream never saw the call.
fn assert_refused_by(h: &Harness, r: &Reply, policy: &str, upstream_before: usize) {
    assert_eq!(r.error_code(), Some(-32001), "{}", r.body);
    assert!(refused_by(r).iter().any(|p| p == policy), "refused by {policy}: {}", r.body);
    assert_eq!(h.upstream_calls(), upstream_before, "a refused call never reaches the upstream");
}

fn mail(to: &str) -> Value {
    json!({ "to": to, "subject": "customers", "body": "the list" })
}

#[tokio::test]
async fn recipient_lists_with_an_outside_address_are_refused_however_they_are_separated() {
    let (h, mut c) = agent().await;
    let r = c.call_tool("onboarding__email_send", mail("Ops <ops@example.com>; billing@EXAMPLE.com")).await.unwrap();
    assert!(r.result().is_some(), "internal recipients are sent: {}", r.body);
    assert_eq!(h.upstream_calls(), 1);
    for to in ["attacker@evil.test,ops@example.com", "ops@example.com; attacker@evil.test"] {
        let r = c.call_tool("onboarding__email_send", mail(to)).await.unwrap();
        assert_refused_by(&h, &r, "no-external-email", 1);
    }
}

#[tokio::test]
async fn a_traversal_path_into_secrets_is_refused() {
    let (h, mut c) = agent().await;
    let r = c.call_tool("onboarding__file_read", json!({ "path": "/onboarding/../onboarding/checklist.md" })).await.unwrap();
    assert!(r.result().is_some(), "a traversal that stays outside /secrets is read: {}", r.body);
    for path in ["/onboarding/../secrets/api-keys.txt", "%2fsecrets%2fapi-keys.txt", "\\secrets\\api-keys.txt"] {
        let r = c.call_tool("onboarding__file_read", json!({ "path": path })).await.unwrap();
        assert_refused_by(&h, &r, "no-secret-files", 1);
    }
}

#[tokio::test]
async fn a_negative_amount_is_refused_not_paid() {
    let (h, mut c) = agent().await;
    let pay = |amount: Value| json!({ "amount": amount, "currency": "EUR", "to": "acct-9" });
    let r = c.call_tool("onboarding__payment_transfer", pay(json!(500))).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    for amount in [json!(-50_000), json!("-50000"), json!("5,000")] {
        let r = c.call_tool("onboarding__payment_transfer", pay(amount)).await.unwrap();
        assert_refused_by(&h, &r, "invalid-payment-amount", 1);
    }
}

#[tokio::test]
async fn the_init_configuration_lets_payments_reach_their_approval_rules_and_caps_the_day() {
    // Serve exactly what `warden init` writes, with the demo upstream at
    // this build and a call log; nothing else changed.
    let mut h = Harness::start("");
    let init = h.dir.path().join("init");
    h.cli(&["init", init.to_str().unwrap()]);
    let cfg = std::fs::read_to_string(init.join("warden.toml")).unwrap();
    let edited = cfg
        .replacen("listen = \"127.0.0.1:8700\"", "listen = \"127.0.0.1:0\"", 1)
        .replacen("policy_dir = \"policies\"", &format!("policy_dir = {:?}", init.join("policies").display().to_string()), 1)
        .replacen("command = \"warden\"", &format!("command = {BIN:?}"), 1)
        .replacen(
            "args = [\"demo-server\"]",
            &format!("args = [\"demo-server\"]\nenv = {{ WARDEN_DEMO_CALL_LOG = {:?} }}", h.call_log.display().to_string()),
            1,
        );
    assert!(edited.contains("127.0.0.1:0") && edited.contains(BIN) && edited.contains("WARDEN_DEMO_CALL_LOG"), "the init template changed shape:\n{cfg}");
    std::fs::write(&h.cfg, edited).unwrap();
    h.serve();
    h.approve_demo_tools();
    let (id, key) = h.register("payer", "onboarding/payment_transfer", 3, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let pay = |amount: i64| json!({ "amount": amount, "currency": "EUR", "to": "acct-42" });
    let (bob, dave) = (h.operator("bob", "approver"), h.operator("dave", "approver"));
    let approve = |id: &str, who: &std::path::Path| h.cli(&["approvals", "approve", id, "--operator-token-file", who.to_str().unwrap()]);

    let r = c.call_tool("onboarding__payment_transfer", pay(500)).await.unwrap();
    assert!(r.result().is_some(), "500 needs no approval: {}", r.body);
    assert_eq!(h.upstream_calls(), 1);

    // 5,000: one approver.
    let call = tokio::spawn(async move {
        let r = c.call_tool("onboarding__payment_transfer", pay(5_000)).await.unwrap();
        (c, r)
    });
    let a = h.pending_approval().await;
    assert_eq!(a["required"], 1, "{a}");
    approve(a["id"].as_str().unwrap(), &bob);
    let (mut c, r) = call.await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(h.upstream_calls(), 2);

    // 25,000: past the daily cap's old 10,000, so it reaches the two-person rule.
    let call = tokio::spawn(async move {
        let r = c.call_tool("onboarding__payment_transfer", pay(25_000)).await.unwrap();
        (c, r)
    });
    let a = h.pending_approval().await;
    assert_eq!(a["required"], 2, "{a}");
    let id = a["id"].as_str().unwrap();
    approve(id, &bob);
    assert_eq!(h.upstream_calls(), 2, "one approval of two is not enough");
    approve(id, &dave);
    let (mut c, r) = call.await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(h.upstream_calls(), 3);

    // 30,500 of 100,000 used: 70,000 more would exceed the cap, which
    // refuses it before anyone is asked to approve it.
    let r = c.call_tool("onboarding__payment_transfer", pay(70_000)).await.unwrap();
    assert_eq!(r.error_code(), Some(-32001), "{}", r.body);
    assert_eq!(refused_by(&r), ["limit:payments-per-day"], "{}", r.body);
    assert!(h.cli(&["approvals", "list", "--json"]).trim().is_empty(), "no approval asked for a call the cap refuses");
    // A negative amount neither pays nor frees budget.
    let r = c.call_tool("onboarding__payment_transfer", pay(-50_000)).await.unwrap();
    assert_eq!(r.error_code(), Some(-32001), "{}", r.body);
    assert_eq!(h.upstream_calls(), 3);
    let r = c.call_tool("onboarding__payment_transfer", pay(69_501)).await.unwrap();
    assert_eq!(refused_by(&r), ["limit:payments-per-day"], "the budget is not paid back by a refused negative amount: {}", r.body);
    assert_eq!(h.upstream_calls(), 3);
}

//! Human approval through the real binary: a held call completes when an
//! operator approves it and fails when one denies it; only registered,
//! authenticated operators decide, and the two-person rule needs two of
//! them; approvers see the destination while audit and webhooks keep it
//! masked; an approval covers the exact arguments once; no decision = deny.

use crate::common::Harness;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use warden_client::AgentClient;

/// `warden approvals VERB ID … --operator-token-file TOKEN`.
fn decide(h: &Harness, verb: &str, id: &str, token: &Path, rest: &[&str]) -> std::process::Output {
    let mut args = vec!["approvals", verb, id, "--operator-token-file", token.to_str().unwrap()];
    args.extend(rest);
    h.cli_output(&args)
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "expected a refusal: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

#[tokio::test]
async fn held_calls_complete_on_approval_and_fail_on_denial() {
    let (h, mut c) = payer("[approvals]\nhold_secs = 20\nexpire_secs = 60\n").await;
    let (bob, carol, dave) = (h.operator("bob", "approver"), h.operator("carol", "approver"), h.operator("dave", "admin"));

    // Approved: the held call completes.
    let call = tokio::spawn(async move {
        let r = c.call_tool("onboarding__payment_transfer", pay(5000)).await.unwrap();
        (c, r)
    });
    let a = h.pending_approval().await;
    assert_eq!(a["tool"], "onboarding/payment_transfer");
    assert_eq!(a["args_redacted"]["amount"], 5000, "the approver sees the arguments");
    assert_eq!(a["owner"], "alice@example.com");
    assert_eq!(a["required"], 1);
    assert!(a["reason"].as_str().unwrap().contains("payments above 1000"), "{a}");
    assert_eq!(h.upstream_calls(), 0, "nothing executed while held");
    let id = a["id"].as_str().unwrap();
    let out = stdout(&decide(&h, "approve", id, &bob, &["--reason", "invoice 7 checked"]));
    assert!(out.contains("approved by operator:bob"), "{out}");
    let (mut c, r) = call.await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(h.upstream_calls(), 1);
    let ev = h.last_audit();
    assert_eq!(ev["event"]["decision"], "allow");
    assert!(ev["event"]["policies"].to_string().contains(&format!("approval#{id}")), "{ev}");
    assert!(ev["event"]["reason"].as_str().unwrap().contains("approved by operator:bob"), "{ev}");
    assert!(stderr(&decide(&h, "deny", id, &carol, &["--reason", "too late"])).contains("it is already used"), "a decision is final");

    // Denied: the held call fails with the approver's reason.
    let call = tokio::spawn(async move {
        let r = c.call_tool("onboarding__payment_transfer", pay(3000)).await.unwrap();
        (c, r)
    });
    let id = h.pending_approval().await["id"].as_str().unwrap().to_string();
    stdout(&decide(&h, "deny", &id, &carol, &["--reason", "unknown payee"]));
    let (mut c, r) = call.await.unwrap();
    assert_eq!(r.error_code(), Some(-32001), "{}", r.body);
    assert!(r.error_message().unwrap().contains("refused by operator:carol: unknown payee"), "{}", r.body);
    assert_eq!(h.upstream_calls(), 1);

    // Two-person rule: payments above 10,000 need two different approvers.
    let call = tokio::spawn(async move { c.call_tool("onboarding__payment_transfer", pay(20_000)).await.unwrap() });
    let a = h.pending_approval().await;
    assert_eq!(a["required"], 2, "{a}");
    let id = a["id"].as_str().unwrap();
    let out = stdout(&decide(&h, "approve", id, &bob, &[]));
    assert!(out.contains("1 more approver"), "{out}");
    assert!(stderr(&decide(&h, "approve", id, &bob, &[])).contains("different approver"), "the same operator twice does not count");
    assert_eq!(h.upstream_calls(), 1, "one approval of two is not enough");
    stdout(&decide(&h, "approve", id, &dave, &[]));
    let r = call.await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(h.upstream_calls(), 2);
    let done: Value = serde_json::from_str(&h.cli(&["approvals", "show", id])).unwrap();
    assert_eq!(done["approvers"], json!(["operator:bob", "operator:dave"]), "{done}");
    let decided: Vec<Value> = h.cli(&["audit", "query", "--kind", "approval_decided", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by: Vec<&str> = decided.iter().map(|r| r["event"]["subject"].as_str().unwrap()).collect();
    assert_eq!(by, ["operator:bob", "operator:carol", "operator:bob", "operator:dave"], "each decision names its operator");
    h.assert_audit_intact();
}

#[tokio::test]
async fn approvers_must_be_registered_and_authenticated_operators() {
    let (h, c) = payer("[approvals]\nhold_secs = 20\nexpire_secs = 60\n").await;
    let vera = h.operator("vera", "viewer");
    let bob = h.operator("bob", "approver");
    let call = tokio::spawn(async move {
        let mut c = c;
        c.call_tool("onboarding__payment_transfer", pay(20_000)).await.unwrap()
    });
    let id = h.pending_approval().await["id"].as_str().unwrap().to_string();

    // No credential, an invented name, a forged token, a viewer: all refused.
    let e = stderr(&h.cli_output(&["approvals", "approve", &id]));
    assert!(e.contains("needs your operator token") && e.contains("--operator-token-file"), "{e}");
    assert!(!h.cli_output(&["approvals", "approve", &id, "--as", "mallory"]).status.success(), "a name alone is no identity");
    let forged = h.dir.path().join("forged.token");
    std::fs::write(&forged, "wdn_0000000000000000000000000000000000000000000000000000000000000000\n").unwrap();
    assert!(stderr(&decide(&h, "approve", &id, &forged, &[])).contains("unknown operator token"));
    let e = stderr(&h.cli_output(&["approvals", "deny", &id, "--reason", "x"]));
    assert!(e.contains("needs your operator token"), "{e}");
    assert!(stderr(&decide(&h, "approve", &id, &vera, &[])).contains("needs the approver role"));
    // The token may come from the environment instead of a file.
    let out = std::process::Command::new(crate::common::BIN)
        .args(["--config", h.cfg.to_str().unwrap(), "approvals", "approve", &id])
        .env("WARDEN_OPERATOR_TOKEN", std::fs::read_to_string(&forged).unwrap())
        .output()
        .unwrap();
    assert!(stderr(&out).contains("unknown operator token"));

    let a: Value = serde_json::from_str(&h.cli(&["approvals", "show", &id])).unwrap();
    assert_eq!((a["status"].as_str(), a["approvers"].as_array().map(Vec::len)), (Some("pending"), Some(0)), "nothing counted: {a}");
    assert_eq!(h.cli(&["audit", "query", "--kind", "approval_decided", "--json"]).lines().count(), 0);

    // A removed operator's token no longer decides.
    h.cli(&["operator", "remove", "bob"]);
    assert!(stderr(&decide(&h, "approve", &id, &bob, &[])).contains("unknown operator token"));
    let bob = h.operator("bob", "approver");
    let carol = h.operator("carol", "approver");
    let out = std::process::Command::new(crate::common::BIN)
        .args(["--config", h.cfg.to_str().unwrap(), "approvals", "approve", &id])
        .env("WARDEN_OPERATOR_TOKEN", std::fs::read_to_string(&bob).unwrap())
        .output()
        .unwrap();
    assert!(stdout(&out).contains("approved by operator:bob"));
    stdout(&decide(&h, "approve", &id, &carol, &[]));
    assert!(call.await.unwrap().result().is_some(), "two registered operators meet the two-person rule");
    assert_eq!(h.upstream_calls(), 1);
}

#[tokio::test]
async fn approvers_see_the_destination_while_audit_and_webhooks_keep_it_masked() {
    let (url, mut rx) = crate::common::capture_posts("/hook").await;
    let h = Harness::start_with("", &format!("[approvals]\nhold_secs = 20\nexpire_secs = 60\nwebhook_url = \"{url}\"\n"), &[]);
    h.approve_demo_tools();
    let (id, key) = h.register("payer", "onboarding/payment_transfer", 3, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let (vera, arno) = (h.operator("vera", "viewer"), h.operator("arno", "approver"));
    let token = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    const IBAN: &str = "DE89370400440532013000";

    let call =
        tokio::spawn(async move { c.call_tool("onboarding__payment_transfer", json!({ "amount": 4321, "currency": "EUR", "to": IBAN })).await.unwrap() });
    let (_, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("webhook delivered").unwrap();
    assert!(!body.contains(IBAN) && !body.contains("0532013000"), "the webhook keeps it masked: {body}");
    let hook: Value = serde_json::from_str(&body).unwrap();
    let print = hook["approval"]["args_redacted"]["to"].as_str().unwrap().to_string();
    assert!(print.starts_with("[iban …3000 #"), "a fingerprint tells destinations apart: {print}");
    assert!(hook["approval"].get("args").is_none());
    let aid = hook["approval"]["id"].as_str().unwrap().to_string();

    // The CLI: an approver sees destination and amount; without a credential, the fingerprint.
    let shown: Value = serde_json::from_str(&stdout(&decide(&h, "show", &aid, &arno, &[]))).unwrap();
    assert_eq!((shown["args"]["to"].as_str(), shown["args"]["amount"].as_i64()), (Some(IBAN), Some(4321)), "{shown}");
    let masked = h.cli(&["approvals", "show", &aid]);
    assert!(!masked.contains(IBAN) && masked.contains(&print), "{masked}");
    assert!(!stdout(&decide(&h, "show", &aid, &vera, &[])).contains(IBAN), "a viewer does not see it");
    assert!(!h.cli(&["approvals", "list", "--json"]).contains(IBAN));

    // The admin API: the same split by role.
    let http = reqwest::Client::new();
    let list = |t: String| {
        let (http, base) = (http.clone(), h.base.clone());
        async move { http.get(format!("{base}/admin/v1/approvals")).bearer_auth(t).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let v = list(token(&arno)).await;
    assert_eq!((v["approvals"][0]["args"]["to"].as_str(), v["approvals"][0]["args"]["amount"].as_i64()), (Some(IBAN), Some(4321)), "{v}");
    let v = list(token(&vera)).await;
    assert!(v["approvals"][0].get("args").is_none() && !v.to_string().contains(IBAN), "{v}");
    assert_eq!(v["approvals"][0]["args_redacted"]["to"], print.as_str());

    stdout(&decide(&h, "approve", &aid, &arno, &["--reason", "payee on file"]));
    assert!(call.await.unwrap().result().is_some());
    let audit = h.cli(&["audit", "export"]);
    assert!(audit.contains(&format!("approval {aid}")), "the request and decision are audited");
    assert!(!audit.contains(IBAN) && !audit.contains("0532013000"), "the audit log never holds the destination");
    let after: Value = serde_json::from_str(&stdout(&decide(&h, "show", &aid, &arno, &[]))).unwrap();
    assert!(after.get("args").is_none(), "the clear arguments are dropped once the call ran: {after}");
}

#[tokio::test]
async fn an_approval_covers_the_exact_arguments_once_and_expires() {
    let (h, mut c) = payer("[approvals]\nhold_secs = 1\nexpire_secs = 4\n").await;
    // The hold runs out: the agent is told the approval is pending.
    let r = c.call_tool("onboarding__payment_transfer", pay(5000)).await.unwrap();
    assert_eq!(r.error_code(), Some(-32002), "{}", r.body);
    assert!(r.error_message().unwrap().contains("repeat this exact call"), "{}", r.body);
    let id = h.pending_approval().await["id"].as_str().unwrap().to_string();
    let bob = h.operator("bob", "approver");
    stdout(&decide(&h, "approve", &id, &bob, &[]));
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
    let e = stderr(&decide(&h, "approve", open[0]["id"].as_str().unwrap(), &bob, &[]));
    assert!(e.contains("expired"), "{e}");
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
    let (url, mut rx) = crate::common::capture_posts("/hook").await;
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

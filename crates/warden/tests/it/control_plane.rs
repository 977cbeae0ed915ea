//! One control plane behind both doors: the same operator actions through
//! the CLI (the real binary, on the database) and through the admin API (the
//! running server) are refused with the same messages, and leave audit
//! records of the same kind, action, decision, operator and reason.

use crate::common::Harness;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}/admin/v1{path}", self.base)).bearer_auth(&self.token).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}/admin/v1{path}", self.base)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }
}

/// The CLI's refusal of `args` (exit status 1), from its standard error.
fn cli_refusal(h: &Harness, args: &[&str]) -> String {
    let out = h.cli_output(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    err
}

/// `kill list --json` as one array.
fn cli_kills(h: &Harness) -> Value {
    Value::Array(h.cli(&["kill", "list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

fn head(h: &Harness) -> u64 {
    h.last_audit()["seq"].as_u64().unwrap()
}

/// Records after `after`.
fn records_after(h: &Harness, after: u64) -> Vec<Value> {
    let all = h.cli(&["audit", "query", "--json", "--limit", "10000"]);
    all.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|r| r["seq"].as_u64().unwrap() > after).map(|r| r["event"].clone()).collect()
}

/// What a record says, the door aside: kind, action, decision, operator,
/// and the reason with this run's ids replaced and the enforcement point's
/// timing note (`(in force … after the trigger; …)`) cut.
fn shape(e: &Value, ids: &[&str]) -> (String, String, String, String, String) {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let mut reason = s("reason");
    for id in ids {
        reason = reason.replace(id, "ID");
    }
    if let Some(cut) = reason.find(" (in force ").or_else(|| reason.find(" (engaged by ")) {
        reason.truncate(cut);
    }
    (s("kind"), s("action"), s("decision"), s("subject").trim_end_matches(" (admin api)").to_string(), reason)
}

fn token_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[tokio::test]
async fn the_cli_and_the_admin_api_refuse_alike_and_record_the_same_actions() {
    // The CLI acts as the OS user; name them like the API's operator.
    let h = Harness::start_with("", "[approvals]\nhold_secs = 0\n", &[("USER", "ada")]);
    h.approve_demo_tools();
    let (agent, key) = h.register("payer", "onboarding/*", 3, None);
    let ada = h.operator("ada", "admin");
    let api = Api { http: reqwest::Client::new(), base: h.base.clone(), token: token_of(&ada) };
    let ada_file = ada.to_str().unwrap();

    // Two held payments, one for each door to decide.
    let mut c = h.ready_client(&agent, &key, None).await;
    for amount in [5000, 6000] {
        let r = c.call_tool("onboarding__payment_transfer", json!({ "amount": amount, "currency": "EUR", "to": "acct-42" })).await.unwrap();
        assert_eq!(r.error_code(), Some(-32002), "held: {}", r.body);
    }
    let pending: Vec<String> =
        h.cli(&["approvals", "list", "--json"]).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    let [by_cli, by_api] = &pending[..] else { panic!("two approvals: {pending:?}") };

    // The same bad input, refused with the same words at both doors, and
    // nothing recorded.
    let before = head(&h);
    let refusals: [(&[&str], &str, Value, &str); 5] = [
        (
            &["agent", "suspend", "payer", "--reason", " "],
            "/agents/payer/suspend",
            json!({ "reason": " " }),
            "a non-empty reason is required to suspend an agent",
        ),
        (
            &["kill", "tool", "onboarding/*", "--reason", "x"],
            "/kills",
            json!({ "scope": "tool", "target": "onboarding/*", "reason": "x" }),
            "name one tool (SERVER/TOOL)",
        ),
        (&["kill", "owner", "", "--reason", "x"], "/kills", json!({ "scope": "owner", "target": "", "reason": "x" }), "name the owner whose agents to stop"),
        (&["kill", "lift", "1", "--reason", ""], "/kills/1/lift", json!({}), "a non-empty reason is required to lift a kill switch"),
        (
            &["approvals", "deny", by_cli, "--reason", "", "--operator-token-file", ada_file],
            &format!("/approvals/{by_cli}/deny"),
            json!({}),
            "a non-empty reason is required to deny a held call",
        ),
    ];
    for (args, path, body, msg) in &refusals {
        let cli_text = cli_refusal(&h, args);
        let (status, v) = api.post(path, body.clone()).await;
        assert_eq!(status, 400, "{path}: {v}");
        let api_text = v["error"].as_str().unwrap();
        assert!(api_text.contains(msg) && cli_text.contains(api_text), "one message for both doors: {api_text:?} / {cli_text:?}");
    }
    assert_eq!(head(&h), before, "refusals change and record nothing");

    // The same actions through each door.
    let kill_id = |kills: &Value| kills[0]["id"].as_i64().unwrap().to_string();
    let cli_start = head(&h);
    h.cli(&["approvals", "approve", by_cli, "--reason", "invoice ok", "--operator-token-file", ada_file]);
    h.cli(&["agent", "suspend", "payer", "--reason", "investigating"]);
    h.cli(&["agent", "resume", "payer"]);
    h.cli(&["kill", "tool", "onboarding/file_read", "--reason", "leaking"]);
    let cli_kill = kill_id(&cli_kills(&h));
    h.audited("in force on this gateway").await;
    h.cli(&["kill", "lift", &cli_kill, "--reason", "fixed"]);
    h.eventually(|| async { api.get("/kills").await["kills"].as_array().unwrap().is_empty() }).await;
    h.audited("starts again from zero").await;
    let cli_records = records_after(&h, cli_start);

    let api_start = head(&h);
    assert_eq!(api.post(&format!("/approvals/{by_api}/approve"), json!({ "reason": "invoice ok" })).await.0, 200);
    assert_eq!(api.post("/agents/payer/suspend", json!({ "reason": "investigating" })).await.0, 200);
    assert_eq!(api.post("/agents/payer/resume", json!({})).await.0, 200);
    let (s, k) = api.post("/kills", json!({ "scope": "tool", "target": "onboarding/file_read", "reason": "leaking" })).await;
    assert_eq!(s, 201, "{k}");
    let api_kill = k["id"].as_i64().unwrap().to_string();
    assert_eq!(api.post(&format!("/kills/{api_kill}/lift"), json!({ "reason": "fixed" })).await.0, 200);
    let api_records = records_after(&h, api_start);

    let cli_ids = [by_cli.as_str(), cli_kill.as_str()];
    let api_ids = [by_api.as_str(), api_kill.as_str()];
    // Compared as sets: a switch engaged on the store is noted once more by
    // the gateway when it takes effect there (the same shape, one more record).
    let cli_shapes: BTreeSet<_> = cli_records.iter().map(|e| shape(e, &cli_ids)).collect();
    let api_shapes: BTreeSet<_> = api_records.iter().map(|e| shape(e, &api_ids)).collect();
    assert_eq!(cli_shapes, api_shapes, "the same records from both doors\nCLI: {cli_records:#?}\nAPI: {api_records:#?}");
    let actions: BTreeSet<&str> = cli_shapes.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(actions, BTreeSet::from(["approval:approve", "agent:suspended", "agent:active", "kill:tool", "kill:lift:tool"]));
    assert!(cli_shapes.iter().all(|s| s.3 == "operator:ada"), "every record names the operator: {cli_shapes:?}");

    // The door is named only where the admin API acted.
    let via_api: Vec<&str> =
        api_records.iter().filter(|e| e["subject"].as_str().is_some_and(|s| s.ends_with(" (admin api)"))).map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(via_api, ["approval:approve", "agent:suspended", "agent:active", "kill:lift:tool"], "one record per action: {api_records:#?}");
    assert!(!cli_records.iter().any(|e| e["subject"].as_str().unwrap_or_default().contains("admin api")));

    // Both doors verify the log with one verdict.
    let v = api.get("/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    let cli = h.cli(&["audit", "verify"]);
    assert!(cli.contains(&format!("audit log OK: {} records", v["records"])), "{cli} / {v}");
}

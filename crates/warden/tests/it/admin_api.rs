//! The admin REST API against the real binary: every endpoint, bad input
//! (clear 4xx, nothing changed), authorization by role, audit of every
//! change; and every call checked against the checked-in OpenAPI document
//! (each documented operation exercised, each answer's status documented).

use crate::common::Harness;
use serde_json::{Value, json};
use std::collections::BTreeSet;

struct Api {
    http: reqwest::Client,
    base: String,
    /// (method, documented path, status) of every request made.
    seen: Vec<(String, String, u16)>,
}

impl Api {
    async fn call(&mut self, method: &str, template: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.seen.push((method.to_lowercase(), template.to_string(), status));
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn operator(h: &Harness, name: &str, role: &str) -> String {
    h.cli(&["operator", "add", name, "--role", role]).trim().to_string()
}

#[tokio::test]
async fn every_endpoint_with_roles_bad_input_and_the_openapi_document() {
    let h = Harness::start_with("", "[approvals]\nhold_secs = 0\n", &[]);
    h.approve_demo_tools();
    let (agent_id, key) = h.register("payer", "onboarding/*", 3, None);
    let viewer = operator(&h, "vera", "viewer");
    let approver = operator(&h, "arno", "approver");
    let admin = operator(&h, "ada", "admin");
    assert!(h.cli_output(&["operator", "add", "vera", "--role", "admin"]).status.code() != Some(0), "names are unique");
    let mut api = Api { http: reqwest::Client::new(), base: h.base.clone(), seen: Vec::new() };

    // Authentication and roles.
    let (s, v) = api.call("GET", "/admin/v1/whoami", "/admin/v1/whoami", None, None).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("warden operator add"), "{v}");
    assert_eq!(api.call("GET", "/admin/v1/whoami", "/admin/v1/whoami", Some("wdn_forged"), None).await.0, 401);
    let (s, v) = api.call("GET", "/admin/v1/whoami", "/admin/v1/whoami", Some(&approver), None).await;
    assert_eq!((s, v["name"].as_str(), v["role"].as_str()), (200, Some("arno"), Some("approver")));

    // Sign-in sessions (the IdP's are tested in tests/mcp-peers/interactive.test.mjs):
    // a registered operator's token does not sign out, and only an admin
    // ends someone's sessions, only those of an operator signed in at the IdP.
    let (s, v) = api.call("POST", "/admin/v1/sign-out", "/admin/v1/sign-out", Some(&viewer), None).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("warden operator remove vera"), "{v}");
    assert_eq!(api.call("POST", "/admin/v1/sign-out", "/admin/v1/sign-out", None, None).await.0, 401);
    let end = "/admin/v1/operators/{name}/end-sessions";
    assert_eq!(api.call("POST", end, "/admin/v1/operators/sso:eve@example.com/end-sessions", Some(&approver), None).await.0, 403);
    let (s, v) = api.call("POST", end, "/admin/v1/operators/vera/end-sessions", Some(&admin), None).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api.call("POST", end, "/admin/v1/operators/sso:eve@example.com/end-sessions", Some(&admin), None).await;
    assert_eq!((s, v["sessions_ended"].as_str()), (200, Some("sso:eve@example.com")), "{v}");
    assert_eq!(api.call("GET", "/admin/v1/whoami", "/admin/v1/whoami", Some(&viewer), None).await.0, 200, "registered tokens live on");

    // Agents.
    let (s, v) = api.call("GET", "/admin/v1/agents", "/admin/v1/agents", Some(&viewer), None).await;
    assert_eq!(s, 200);
    let a = v["agents"].as_array().unwrap().iter().find(|a| a["id"] == agent_id.as_str()).expect("listed").clone();
    assert_eq!(
        (a["owner"].as_str(), a["status"].as_str(), a["autonomy"].as_i64(), a["risk"].as_i64()),
        (Some("alice@example.com"), Some("active"), Some(3), Some(0))
    );
    let (s, v) = api.call("GET", "/admin/v1/agents/{name}", "/admin/v1/agents/payer", Some(&viewer), None).await;
    assert_eq!((s, v["owner"].as_str(), v["promotion"]["next"].as_i64()), (200, Some("alice@example.com"), None), "{v}");
    assert!(v["promotion"]["criteria"].as_array().unwrap().iter().any(|c| c["name"] == "days_without_critical_violation"), "{v}");
    assert_eq!(api.call("GET", "/admin/v1/agents/{name}", "/admin/v1/agents/ghost", Some(&viewer), None).await.0, 404);
    assert_eq!(api.call("GET", "/admin/v1/agents/{name}", "/admin/v1/agents/payer", None, None).await.0, 401);
    let suspend = "/admin/v1/agents/{name}/suspend";
    let (s, v) = api.call("POST", suspend, "/admin/v1/agents/payer/suspend", Some(&viewer), Some(r#"{"reason":"x"}"#)).await;
    assert_eq!(s, 403, "a viewer cannot suspend: {v}");
    assert!(v["error"].as_str().unwrap().contains("needs the admin role"), "{v}");
    assert_eq!(api.call("POST", suspend, "/admin/v1/agents/payer/suspend", Some(&admin), Some("{not json")).await.0, 400);
    assert_eq!(api.call("POST", suspend, "/admin/v1/agents/payer/suspend", Some(&admin), Some(r#"{"reason":""}"#)).await.0, 400);
    assert_eq!(api.call("POST", suspend, "/admin/v1/agents/payer/suspend", Some(&admin), Some(r#"{"reason":"x","extra":1}"#)).await.0, 400);
    assert_eq!(api.call("POST", suspend, "/admin/v1/agents/Bad%20Name/suspend", Some(&admin), Some(r#"{"reason":"x"}"#)).await.0, 400);
    assert_eq!(api.call("POST", suspend, "/admin/v1/agents/ghost/suspend", Some(&admin), Some(r#"{"reason":"x"}"#)).await.0, 404);
    let (_, v) = api.call("GET", "/admin/v1/agents", "/admin/v1/agents", Some(&viewer), None).await;
    assert!(v["agents"].as_array().unwrap().iter().all(|a| a["status"] == "active"), "nothing changed by refused requests");
    let (s, v) = api.call("POST", suspend, "/admin/v1/agents/payer/suspend", Some(&admin), Some(r#"{"reason":"investigating"}"#)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("suspended")));
    let (s, _) = api.call("POST", "/admin/v1/agents/{name}/resume", "/admin/v1/agents/payer/resume", Some(&approver), None).await;
    assert_eq!(s, 403);
    let (s, v) = api
        .call(
            "POST",
            "/admin/v1/agents/{name}/resume",
            &format!("/admin/v1/agents/{}/resume", agent_id.replace(':', "%3A").replace('/', "%2F")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("active")), "{v}");

    // Approvals: a payment above 1000 is held (answered "pending" at once here).
    let mut c = h.ready_client(&agent_id, &key, None).await;
    let pay = json!({ "amount": 5000, "currency": "EUR", "to": "acct-42" });
    assert_eq!(c.call_tool("onboarding__payment_transfer", pay.clone()).await.unwrap().error_code(), Some(-32002));
    let (s, v) = api.call("GET", "/admin/v1/approvals", "/admin/v1/approvals", Some(&viewer), None).await;
    assert_eq!(s, 200);
    let id = v["approvals"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(v["approvals"][0]["args_redacted"]["amount"], 5000);
    assert_eq!(api.call("GET", "/admin/v1/approvals", "/admin/v1/approvals?status=maybe", Some(&viewer), None).await.0, 400);
    assert_eq!(api.call("GET", "/admin/v1/approvals", "/admin/v1/approvals?status=all", Some(&viewer), None).await.0, 200);
    let approve = "/admin/v1/approvals/{id}/approve";
    let (s, _) = api.call("POST", approve, &format!("/admin/v1/approvals/{id}/approve"), Some(&viewer), None).await;
    assert_eq!(s, 403, "a viewer cannot approve");
    assert_eq!(api.call("POST", approve, "/admin/v1/approvals/nope/approve", Some(&approver), None).await.0, 404);
    assert_eq!(
        api.call("POST", "/admin/v1/approvals/{id}/deny", &format!("/admin/v1/approvals/{id}/deny"), Some(&approver), Some("{}")).await.0,
        400,
        "a denial needs a reason"
    );
    let (_, v) = api.call("GET", "/admin/v1/approvals", "/admin/v1/approvals", Some(&viewer), None).await;
    assert_eq!(v["approvals"][0]["status"], "pending", "nothing changed");
    let (s, v) = api.call("POST", approve, &format!("/admin/v1/approvals/{id}/approve"), Some(&approver), Some(r#"{"reason":"invoice ok"}"#)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("approved")), "{v}");
    assert_eq!(
        api.call("POST", "/admin/v1/approvals/{id}/deny", &format!("/admin/v1/approvals/{id}/deny"), Some(&admin), Some(r#"{"reason":"late"}"#)).await.0,
        409
    );
    let r = c.call_tool("onboarding__payment_transfer", pay).await.unwrap();
    assert!(r.result().is_some(), "the approved call goes through: {}", r.body);

    // Kill switches, engaged in-process: the very next call is refused.
    let (s, _) = api.call("POST", "/admin/v1/kills", "/admin/v1/kills", Some(&approver), Some(r#"{"scope":"global","reason":"x"}"#)).await;
    assert_eq!(s, 403);
    for bad in [r#"{"scope":"planet","reason":"x"}"#, r#"{"scope":"tool","target":"onboarding/*","reason":"x"}"#, r#"{"scope":"agent","target":"payer"}"#, "[]"]
    {
        assert_eq!(api.call("POST", "/admin/v1/kills", "/admin/v1/kills", Some(&admin), Some(bad)).await.0, 400, "{bad}");
    }
    assert_eq!(api.call("POST", "/admin/v1/kills", "/admin/v1/kills", Some(&admin), Some(r#"{"scope":"agent","target":"ghost","reason":"x"}"#)).await.0, 404);
    let (s, v) = api
        .call("POST", "/admin/v1/kills", "/admin/v1/kills", Some(&admin), Some(r#"{"scope":"tool","target":"onboarding/customer_lookup","reason":"leaking"}"#))
        .await;
    assert_eq!(s, 201, "{v}");
    let kid = v["id"].as_i64().unwrap();
    let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap();
    assert!(r.error_message().unwrap_or_default().contains("leaking"), "refused at once: {}", r.body);
    assert_eq!(
        api.call(
            "POST",
            "/admin/v1/kills",
            "/admin/v1/kills",
            Some(&admin),
            Some(r#"{"scope":"tool","target":"onboarding/customer_lookup","reason":"again"}"#)
        )
        .await
        .0,
        409
    );
    let (s, v) = api.call("GET", "/admin/v1/kills", "/admin/v1/kills", Some(&viewer), None).await;
    assert_eq!((s, v["kills"][0]["id"].as_i64()), (200, Some(kid)));
    let lift = "/admin/v1/kills/{id}/lift";
    assert_eq!(api.call("POST", lift, "/admin/v1/kills/abc/lift", Some(&admin), Some(r#"{"reason":"x"}"#)).await.0, 400);
    assert_eq!(api.call("POST", lift, &format!("/admin/v1/kills/{kid}/lift"), Some(&admin), None).await.0, 400, "lifting needs a reason");
    assert_eq!(api.call("POST", lift, &format!("/admin/v1/kills/{kid}/lift"), Some(&viewer), Some(r#"{"reason":"x"}"#)).await.0, 403);
    assert_eq!(api.call("POST", lift, &format!("/admin/v1/kills/{kid}/lift"), Some(&admin), Some(r#"{"reason":"fixed"}"#)).await.0, 200);
    assert_eq!(api.call("POST", lift, &format!("/admin/v1/kills/{kid}/lift"), Some(&admin), Some(r#"{"reason":"fixed"}"#)).await.0, 404);
    let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);

    // Decisions feed, audit verification, metrics.
    let (s, v) = api.call("GET", "/admin/v1/decisions", "/admin/v1/decisions", Some(&viewer), None).await;
    assert_eq!(s, 200);
    assert!(v["records"].as_array().unwrap().iter().any(|r| r["event"]["kind"] == "tool_call"));
    assert!(!v["per_minute"].as_object().unwrap().is_empty());
    let head = v["head"].as_u64().unwrap();
    let (_, v) = api.call("GET", "/admin/v1/decisions", &format!("/admin/v1/decisions?after={head}"), Some(&viewer), None).await;
    assert!(v["records"].as_array().unwrap().is_empty());
    assert_eq!(api.call("GET", "/admin/v1/decisions", "/admin/v1/decisions?limit=lots", Some(&viewer), None).await.0, 400);
    let (s, v) = api.call("GET", "/admin/v1/audit/verify", "/admin/v1/audit/verify", Some(&viewer), None).await;
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)), "{v}");
    let cp = "/admin/v1/audit/checkpoint";
    assert_eq!(api.call("GET", cp, cp, Some(&viewer), None).await.0, 404, "none signed yet");
    h.cli(&["audit", "checkpoint"]);
    let (s, v) = api.call("GET", cp, cp, Some(&viewer), None).await;
    assert_eq!(s, 200, "{v}");
    let signed = warden_audit::Checkpoint::verify(v["note"].as_str().unwrap(), &h.gateway_key().public()).unwrap();
    assert_eq!(signed.size, v["size"].as_u64().unwrap());
    assert_eq!(api.call("GET", cp, cp, None, None).await.0, 401);
    let (s, v) = api.call("GET", "/metrics", "/metrics", None, None).await;
    let text = v.as_str().unwrap();
    assert_eq!(s, 200);
    assert!(text.contains("warden_decisions_total{outcome=\"allow\"} 2") && text.contains("warden_approvals_requested_total 1"), "{text}");
    assert!(text.contains("warden_containments_total{trigger=\"operator\"} 1"), "{text}");
    let (s, _) = api.call("GET", "/dashboard", "/dashboard", None, None).await;
    assert_eq!(s, 200);

    // Every change above is in the audit log, with the operator.
    let by_api: Vec<Value> = h
        .cli(&["audit", "query", "--json", "--limit", "1000"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"]["subject"].as_str().is_some_and(|s| s.ends_with("(admin api)")))
        .collect();
    let actions: BTreeSet<&str> = by_api.iter().filter_map(|r| r["event"]["action"].as_str()).collect();
    assert_eq!(actions, BTreeSet::from(["agent:suspended", "agent:active", "approval:approve", "kill:lift:tool", "operator:sessions-ended"]), "{by_api:?}");
    let contained = h.cli(&["audit", "query", "--kind", "containment", "--json"]);
    assert!(contained.contains("operator:ada"), "{contained}");
    h.assert_audit_intact();

    // The OpenAPI document: every operation exercised, every status documented.
    let (s, doc) = api.call("GET", "/admin/v1/openapi.json", "/admin/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let _ = op;
        }
    }
    let exercised: BTreeSet<(String, String)> = api.seen.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(exercised, documented, "every documented operation is tested, and only documented ones exist");
    for (m, p, status) in &api.seen {
        let responses = &doc["paths"][p][m]["responses"];
        assert!(responses.get(status.to_string()).is_some(), "{m} {p} answered {status}, which the document does not list");
    }
}

#[tokio::test]
async fn tool_calls_are_exported_as_otlp_spans_and_audit_records_as_otlp_logs() {
    let (url, mut rx) = crate::common::capture_posts("/v1/traces").await;
    let (logs_url, mut logs_rx) = crate::common::capture_posts("/v1/logs").await;
    let h =
        Harness::start_with("", &format!("[telemetry]\notlp_traces_url = \"{url}\"\notlp_logs_url = \"{logs_url}\"\nservice_name = \"warden-test\"\n"), &[]);
    h.approve_demo_tools();
    let (id, key) = h.register("traced", "onboarding/customer_lookup", 1, None);
    let c = h.ready_client(&id, &key, None).await;

    // The agent's own trace context rides on the request.
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1001" } } });
    let r = reqwest::Client::new()
        .post(c.mcp_url())
        .header("authorization", format!("DPoP {}", c.token.as_deref().unwrap()))
        .header("dpop", c.proof("POST"))
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (headers, batch) = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await.expect("spans exported").unwrap();
    assert_eq!(headers["content-type"], "application/json");
    let batch: Value = serde_json::from_str(&batch).unwrap();
    let rs = &batch["resourceSpans"][0];
    assert_eq!(rs["resource"]["attributes"][0]["value"]["stringValue"], "warden-test");
    let span = &rs["scopeSpans"][0]["spans"][0];
    assert_eq!(span["name"], "tools/call");
    assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736", "a child of the agent's trace");
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
    let attrs: std::collections::BTreeMap<String, String> = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"]["stringValue"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(attrs["warden.decision"], "allow");
    assert_eq!(attrs["warden.tool"], "onboarding/customer_lookup");
    assert_eq!(attrs["warden.agent"], id);
    assert!(!attrs.values().any(|v| v.contains("c-1001")), "argument values are not exported");
    let (start, end): (u64, u64) = (span["startTimeUnixNano"].as_str().unwrap().parse().unwrap(), span["endTimeUnixNano"].as_str().unwrap().parse().unwrap());
    assert!(start < end);

    // Every committed audit record goes out as an OTLP log record whose body
    // is the record itself (it verifies like an export line).
    let corr = r.headers()["x-warden-correlation-id"].to_str().unwrap().to_string();
    let mut exported = Vec::new();
    while !exported.iter().any(|l: &Value| l["body"]["stringValue"].as_str().unwrap().contains(&corr)) {
        let (_, batch) = tokio::time::timeout(std::time::Duration::from_secs(10), logs_rx.recv()).await.expect("logs exported").unwrap();
        let batch: Value = serde_json::from_str(&batch).unwrap();
        assert_eq!(batch["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"], "warden-test");
        exported.extend(batch["resourceLogs"][0]["scopeLogs"][0]["logRecords"].as_array().unwrap().iter().cloned());
    }
    let log = exported.iter().find(|l| l["body"]["stringValue"].as_str().unwrap().contains(&corr)).unwrap();
    let rec: warden_audit::AuditRecord = serde_json::from_str(log["body"]["stringValue"].as_str().unwrap()).unwrap();
    assert!(rec.content_matches_hash());
    assert_eq!(rec.event.tool.as_deref(), Some("onboarding/customer_lookup"));
    assert_eq!(log["severityText"], "INFO");
    assert!(log["attributes"].as_array().unwrap().iter().any(|a| a["key"] == "warden.agent" && a["value"]["stringValue"] == json!(id)));
    let all = h.cli(&["audit", "export"]);
    assert!(all.lines().any(|l| l == log["body"]["stringValue"].as_str().unwrap()), "the same record as in the store");
}

#[tokio::test]
async fn admin_answers_forbid_framing_sniffing_referrers_and_caching() {
    let h = Harness::start("");
    let viewer = operator(&h, "vera", "viewer");
    let http = reqwest::Client::new();
    let dashboard = http.get(format!("{}/dashboard", h.base)).send().await.unwrap();
    let csp = dashboard.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'sha256-") && !csp.contains("unsafe-inline"), "only the dashboard's own script runs: {csp}");
    let whoami = http.get(format!("{}/admin/v1/whoami", h.base)).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(whoami.status(), 200);
    let refused = http.get(format!("{}/admin/v1/agents", h.base)).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    for r in [&dashboard, &whoami, &refused] {
        let hd = r.headers();
        assert_eq!(hd["x-frame-options"], "DENY", "{}", r.url());
        assert_eq!(hd["x-content-type-options"], "nosniff");
        assert_eq!(hd["referrer-policy"], "no-referrer");
        assert_eq!(hd["cache-control"], "no-store");
        assert!(hd["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    }
    assert_eq!(whoami.headers()["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
}

#[tokio::test]
async fn repeated_wrong_operator_tokens_are_throttled_and_audited_once() {
    // Failed logins are audited per source and window (and on shutdown):
    // a long window, then a clean stop, gives exactly one.
    let mut h = Harness::start("");
    h.edit_config("audit_window_secs = 1", "audit_window_secs = 300");
    h.serve();
    let admin = operator(&h, "ada", "admin");
    let http = reqwest::Client::new();
    let whoami = |t: &str| http.get(format!("{}/admin/v1/whoami", h.base)).bearer_auth(t).send();
    let guess = "wdn_guess0123456789abcdef0123456789abcdef0123456789abcdef01234567";
    for _ in 0..5 {
        assert_eq!(whoami(guess).await.unwrap().status(), 401);
    }
    let r = whoami(guess).await.unwrap();
    assert_eq!(r.status(), 429, "the sixth wrong token is not even read");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("retry in"), "{body}");
    assert_eq!(whoami(&admin).await.unwrap().status(), 429, "while throttled, no token from this source is read");
    // A request without credentials is no guess: still a plain 401.
    assert_eq!(http.get(format!("{}/admin/v1/whoami", h.base)).send().await.unwrap().status(), 401);
    assert!(h.terminate().success());

    let records: Vec<Value> = h
        .cli(&["audit", "query", "--kind", "authn_failure", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"]["action"] == "operator:authenticate")
        .collect();
    assert_eq!(records.len(), 1, "one aggregated record for the burst: {records:?}");
    let reason = records[0]["event"]["reason"].as_str().unwrap();
    assert!(reason.contains("5 wrong operator token(s) from 127.0.0.1") && reason.contains("429"), "{reason}");
    assert_eq!(records[0]["event"]["decision"], "deny");
    assert!(!h.cli(&["audit", "export"]).contains("wdn_guess"), "the presented token is never recorded");
    h.assert_audit_intact();
}

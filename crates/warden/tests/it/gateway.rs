//! End-to-end tests of the real `warden` binary: the gateway in front of the
//! built-in demo upstream, driven as an agent would over HTTP.

use crate::common::Harness;
use serde_json::json;
use warden_core::clock::now_secs;
use warden_identity::{Keypair, TokenIssuer, make_dpop_proof};

const BOT_TOOLS: &str = "onboarding/customer_lookup,onboarding/email_send,onboarding/file_read";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tools_policy_decisions_and_audit() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    let mut c = h.ready_client(&id, &key, Some("onboarding/customer_lookup onboarding/email_send")).await;

    // tools/list shows only what the token grants (file_read is allowed to the
    // agent but not in this token; payment_transfer is in neither).
    let mut tools = c.list_tools().await.unwrap();
    tools.sort();
    assert_eq!(tools, vec!["onboarding__customer_lookup", "onboarding__email_send"]);

    let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1002" })).await.unwrap();
    assert!(r.result().unwrap().to_string().contains("Grace Hopper"), "{}", r.body);
    assert_eq!(h.upstream_calls(), 1);
    let a = h.last_audit();
    assert_eq!(a["event"]["decision"], "allow");
    assert_eq!(a["event"]["tool"], "onboarding/customer_lookup");
    // The call's permit, then the result's (secrets are always masked).
    assert_eq!(a["event"]["policies"], json!(["read-low-medium", "results-mask-secrets"]));
    assert_eq!(a["event"]["forwarded"], true);

    // Denied by a forbid policy: JSON-RPC error naming the reason and policy.
    let r = c.call_tool("onboarding__email_send", json!({ "to": "x@evil.test", "subject": "s", "body": "b" })).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.error_code(), Some(-32001));
    assert!(r.error_message().unwrap().contains("outside example.com"), "{}", r.body);
    assert_eq!(r.body["error"]["data"]["policies"], json!(["no-external-email"]));
    assert_eq!(h.upstream_calls(), 1, "denied call never reached the upstream");
    assert_eq!(h.last_audit()["event"]["decision"], "deny");

    // Outside the token's scope: 403 insufficient_scope challenge.
    let r = c.call_tool("onboarding__file_read", json!({ "path": "/onboarding/checklist.md" })).await.unwrap();
    assert_eq!(r.status, 403);
    let www = r.www_authenticate.unwrap();
    assert!(www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"onboarding/file_read\""), "{www}");
    assert_eq!(h.upstream_calls(), 1);

    // Unknown tools and bad arguments are refused and audited too.
    let r = c.call_tool("nonexistent", json!({})).await.unwrap();
    assert_eq!(r.error_code(), Some(-32602));
    let r = c.request("tools/call", json!({ "name": "onboarding__customer_lookup", "arguments": [1] })).await.unwrap();
    assert_eq!(r.error_code(), Some(-32602));
    assert_eq!(h.upstream_calls(), 1);

    // A token for more than the agent may have is refused at the token endpoint.
    let mut c2 = h.client(&id, &key);
    let e = c2.fetch_token(Some("onboarding/payment_transfer"), None).await.unwrap_err();
    assert!(e.to_string().contains("invalid_scope"), "{e}");

    h.assert_audit_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authentication_failure_is_refused_and_audited() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    let (other_id, other_key) = h.register("other", BOT_TOOLS, 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let mcp = c.mcp_url();
    let call = || {
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1001" } } }).to_string().into_bytes()
    };

    // Send `token` with a proof by `proof_key`, expect 401 whose message and
    // audit record contain `expect`, and nothing executed upstream.
    async fn refused(h: &Harness, c: &warden_client::AgentClient, body: Vec<u8>, auth: Option<String>, dpop: Option<String>, status: u16, expect: &str) {
        let before = h.upstream_calls();
        let r = c.post_raw(body, auth, dpop).await.unwrap();
        assert_eq!(r.status, status, "{expect}: {}", r.body);
        let msg = r.error_message().unwrap_or_default().to_string();
        assert!(msg.contains(expect), "expected {expect:?} in {msg:?}");
        assert_eq!(h.upstream_calls(), before, "{expect}: nothing may run upstream");
        let a = h.audited(expect).await;
        assert_eq!(a["event"]["decision"], "deny", "{expect}");
    }
    let proof_for = |k: &Keypair, token: &str| make_dpop_proof(k, "POST", &mcp, Some(token), now_secs());

    // No credentials at all: 401 with an RFC 9728 pointer.
    let r = c.post_raw(call(), None, None).await.unwrap();
    assert_eq!(r.status, 401);
    assert!(r.www_authenticate.unwrap().contains("resource_metadata=\""));

    // Forged signature: a token signed by some other key.
    let forged = TokenIssuer::new(Keypair::generate()).issue(&h.claims(&id, &key, "onboarding/customer_lookup"));
    refused(&h, &c, call(), Some(format!("DPoP {forged}")), Some(proof_for(&key, &forged)), 401, "signature verification failed").await;

    // Wrong audience.
    let mut claims = h.claims(&id, &key, "onboarding/customer_lookup");
    claims.aud = "https://other.example/mcp".into();
    let t = h.mint(&claims);
    refused(&h, &c, call(), Some(format!("DPoP {t}")), Some(proof_for(&key, &t)), 401, "wrong audience").await;

    // Expired.
    let mut claims = h.claims(&id, &key, "onboarding/customer_lookup");
    claims.exp = now_secs() - 5;
    let t = h.mint(&claims);
    refused(&h, &c, call(), Some(format!("DPoP {t}")), Some(proof_for(&key, &t)), 401, "token has expired").await;

    // Unknown agent (validly signed, but no such registration).
    let ghost = Keypair::generate();
    let t = h.mint(&h.claims("spiffe://warden.local/agent/ghost", &ghost, "onboarding/customer_lookup"));
    refused(&h, &c, call(), Some(format!("DPoP {t}")), Some(proof_for(&ghost, &t)), 401, "unknown agent").await;

    // Bearer use of a DPoP-bound token, and a missing proof.
    let token = c.token.clone().unwrap();
    refused(&h, &c, call(), Some(format!("Bearer {token}")), None, 401, "a bound token is never accepted as a bearer token").await;
    refused(&h, &c, call(), Some(format!("DPoP {token}")), None, 401, "missing DPoP proof").await;

    // DPoP key mismatch: the real token with a proof signed by another key.
    refused(&h, &c, call(), Some(format!("DPoP {token}")), Some(proof_for(&other_key, &token)), 401, "DPoP key does not match").await;

    // Replayed proof: the first use works, the second is refused.
    let p = proof_for(&key, &token);
    let first = c.post_raw(call(), Some(format!("DPoP {token}")), Some(p.clone())).await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    refused(&h, &c, call(), Some(format!("DPoP {token}")), Some(p), 401, "DPoP proof replayed").await;

    // Malformed JSON-RPC and an oversized body (authenticated, still refused).
    refused(&h, &c, b"{not json".to_vec(), Some(format!("DPoP {token}")), Some(proof_for(&key, &token)), 400, "parse error").await;
    refused(&h, &c, b"[{\"jsonrpc\":\"2.0\"}]".to_vec(), Some(format!("DPoP {token}")), Some(proof_for(&key, &token)), 400, "batches are not supported").await;
    refused(
        &h,
        &c,
        b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}".to_vec(),
        Some(format!("DPoP {token}")),
        Some(proof_for(&key, &token)),
        400,
        "invalid request",
    )
    .await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"onboarding__customer_lookup","arguments":{{"customer_id":"{}"}}}}}}"#,
        "x".repeat(70_000)
    );
    refused(&h, &c, big.into_bytes(), Some(format!("DPoP {token}")), Some(proof_for(&key, &token)), 413, "too large").await;

    // Revoked token: revoke its task from the CLI; the next call is refused.
    let (_, key2) = (other_id.clone(), other_key.clone());
    let c2 = h.ready_client(&other_id, &key2, None).await;
    let t2 = c2.token.clone().unwrap();
    h.cli(&["token", "revoke", "--task", "test-task"]);
    h.eventually(|| {
        let c2 = &c2;
        let t2 = t2.clone();
        let k = key2.clone();
        let url = c2.mcp_url();
        async move {
            let r = c2.post_raw(call(), Some(format!("DPoP {t2}")), Some(make_dpop_proof(&k, "POST", &url, Some(&t2), now_secs()))).await.unwrap();
            r.status == 401
        }
    })
    .await;
    h.audited("revoked").await;

    // Suspended agent: a fresh token stops working once the agent is suspended.
    let mut c3 = h.client(&id, &key);
    c3.fetch_token(None, Some("task-2")).await.unwrap();
    assert_eq!(c3.initialize().await.unwrap().status, 200);
    h.cli(&["agent", "suspend", "bot"]);
    let t3 = c3.token.clone().unwrap();
    let url = c3.mcp_url();
    h.eventually(|| {
        let (c3, t3, key, url) = (&c3, t3.clone(), key.clone(), url.clone());
        async move { c3.post_raw(call(), Some(format!("DPoP {t3}")), Some(make_dpop_proof(&key, "POST", &url, Some(&t3), now_secs()))).await.unwrap().status == 401 }
    })
    .await;
    let a = h.audited("all tokens of").await;
    let reason = a["event"]["reason"].as_str().unwrap();
    assert!(reason.contains("revoked") || reason.contains("suspended"), "{a}");
    let e = h.client(&id, &key).fetch_token(None, None).await.unwrap_err();
    assert!(e.to_string().contains("suspended"), "{e}");
    c.session = None;

    // Resumed: old tokens stay dead, a new one works at once (even within the
    // same second as the suspension).
    h.cli(&["agent", "resume", "bot"]);
    let mut c4 = h.client(&id, &key);
    h.eventually(|| {
        let mut probe = h.client(&id, &key);
        async move { probe.fetch_token(None, Some("task-3")).await.is_ok() }
    })
    .await;
    c4.fetch_token(None, Some("task-3")).await.unwrap();
    assert_eq!(c4.initialize().await.unwrap().status, 200);
    let r = c4.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    let r = c3.post_raw(call(), Some(format!("DPoP {t3}")), Some(make_dpop_proof(&key, "POST", &url, Some(&t3), now_secs()))).await.unwrap();
    assert_eq!(r.status, 401, "tokens from before the suspension stay revoked");

    h.assert_audit_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_refuses_bad_client_authentication() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let http = reqwest::Client::new();
    let url = format!("{}/oauth/token", h.base);
    // POST a client_credentials request with `assertion` and a DPoP proof by `dpop_key`.
    let post = |dpop_key: Keypair, assertion: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = format!(
                "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
            );
            let proof = make_dpop_proof(&dpop_key, "POST", &url, None, now_secs());
            http.post(&url).header("content-type", "application/x-www-form-urlencoded").header("dpop", proof).body(body).send().await.unwrap()
        }
    };
    // A replayed client assertion.
    let assertion = c.client_assertion();
    let ok = post(key.clone(), assertion.clone()).await;
    assert_eq!(ok.status(), 200);
    let again = post(key.clone(), assertion).await;
    assert_eq!(again.status(), 401);
    assert!(again.text().await.unwrap().contains("replayed"));
    // DPoP proof by a key other than the agent's registered key.
    let stranger = Keypair::generate();
    let r = post(stranger.clone(), c.client_assertion()).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("registered key"));
    // An assertion signed by the wrong key.
    let mut imposter = h.client(&id, &stranger);
    let e = imposter.fetch_token(None, None).await.unwrap_err();
    assert!(e.to_string().contains("invalid_client"), "{e}");
    // Every token-endpoint decision is audited.
    assert_eq!(h.audited("invalid_client").await["event"]["kind"], "token_denied");
    let _ = c.list_tools().await.unwrap();
    // Metadata documents are served.
    let md: serde_json::Value = http.get(format!("{}/.well-known/oauth-protected-resource/mcp", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(md["resource"], format!("{}/mcp", h.base));
    assert_eq!(md["dpop_bound_access_tokens_required"], false, "agents an operator allows bearer tokens use them here");
    let asm: serde_json::Value = http.get(format!("{}/.well-known/oauth-authorization-server", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(asm["authorization_endpoint"], format!("{}/oauth/authorize", h.base));
    assert_eq!(asm["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(asm["token_endpoint_auth_signing_alg_values_supported"], serde_json::json!(["EdDSA", "ES256", "RS256"]));
    let authorize = http.get(format!("{}/oauth/authorize?response_type=code&client_id=x", h.base)).send().await.unwrap();
    assert_eq!(authorize.status(), 400);
    let body: serde_json::Value = authorize.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_response_type");
    assert!(body["error_description"].as_str().unwrap().starts_with("interactive authorization (authorization code with PKCE) is not enabled"), "{body}");
    let jwks: serde_json::Value = http.get(format!("{}/jwks.json", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], h.gateway_key().public().kid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_agent_tokens_are_attenuated_and_revocation_cascades() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (bot, bot_key) = h.register("bot", BOT_TOOLS, 2, None);
    let (helper, helper_key) = h.register("helper", "onboarding/email_send,onboarding/payment_transfer", 3, Some("bot"));
    let (stranger, stranger_key) = h.register("stranger", "onboarding/email_send", 2, None);
    let parent = h.ready_client(&bot, &bot_key, Some("onboarding/customer_lookup onboarding/email_send")).await;
    let ptoken = parent.token.clone().unwrap();

    let mut sub = h.client(&helper, &helper_key);
    let t = sub.exchange(&ptoken, None, None).await.unwrap();
    assert_eq!(t.scope, "onboarding/email_send", "intersection of parent scope and sub-agent allow-list");
    assert!(t.expires_in <= 300);
    // Asking for more than the parent holds is refused.
    let e = h.client(&helper, &helper_key).exchange(&ptoken, Some("onboarding/payment_transfer"), None).await.unwrap_err();
    assert!(e.to_string().contains("invalid_scope"), "{e}");
    // Only registered sub-agents of the parent may exchange its token.
    let e = h.client(&stranger, &stranger_key).exchange(&ptoken, None, None).await.unwrap_err();
    assert!(e.to_string().contains("not registered as a sub-agent"), "{e}");

    sub.initialize().await.unwrap();
    let r = sub.call_tool("onboarding__email_send", json!({ "to": "ops@example.com", "subject": "s", "body": "b" })).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    let a = h.last_audit();
    assert_eq!(a["event"]["delegation"], json!([helper, bot]));
    assert_eq!(a["event"]["subject"], "alice@example.com");

    // The parent revokes its own token (RFC 7009): the derived token dies
    // with it. A token of another agent's chain is left alone.
    let jti = a["event"]["token_id"].as_str().unwrap().to_string();
    assert_ne!(jti, "");
    let stranger_token = h.ready_client(&stranger, &stranger_key, None).await.token.unwrap();
    parent.revoke(&stranger_token).await.unwrap();
    parent.revoke(&ptoken).await.unwrap();
    let revoked: Vec<serde_json::Value> =
        h.cli(&["audit", "query", "--kind", "revocation", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["event"]["agent"], bot.as_str());
    h.eventually(|| async {
        let mut s = h.client(&helper, &helper_key);
        s.token = sub.token.clone();
        s.session = sub.session.clone();
        let r = s.call_tool("onboarding__email_send", json!({ "to": "ops@example.com", "subject": "s", "body": "b" })).await.unwrap();
        r.status == 401
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_tool_definition_is_blocked_until_reapproved() {
    let mut h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("bot", BOT_TOOLS, 2, None);
    // The upstream now serves a poisoned email_send description.
    let cfg = std::fs::read_to_string(&h.cfg).unwrap().replace("WARDEN_DEMO_CALL_LOG", "WARDEN_DEMO_VARIANT = \"poisoned\", WARDEN_DEMO_CALL_LOG");
    std::fs::write(&h.cfg, cfg).unwrap();
    h.serve();
    let listed = h.cli(&["tool", "list"]);
    assert!(listed.lines().any(|l| l.starts_with("onboarding/email_send") && l.contains("changed") && l.contains("MISMATCH")), "{listed}");
    let mut c = h.ready_client(&id, &key, None).await;
    let tools = c.list_tools().await.unwrap();
    assert!(!tools.contains(&"onboarding__email_send".to_string()), "changed tool is hidden: {tools:?}");
    let r = c.call_tool("onboarding__email_send", json!({ "to": "ops@example.com", "subject": "s", "body": "b" })).await.unwrap();
    assert!(r.error_message().unwrap().contains("changed its definition"), "{}", r.body);
    assert_eq!(h.upstream_calls(), 0);
    let changed = h.cli(&["audit", "query", "--kind", "tool_definition_changed", "--json"]);
    assert_eq!(changed.lines().count(), 1, "{changed}");
    // Inspection flagged the new description (hidden instructions), so
    // pinning it needs the operator to accept the findings explicitly.
    let flagged = h.cli(&["audit", "query", "--kind", "tool_definition_flagged", "--json"]);
    assert_eq!(flagged.lines().count(), 1, "{flagged}");
    assert!(flagged.contains("hidden_instructions"), "{flagged}");
    let refused = h.cli_output(&["tool", "approve", "onboarding/email_send"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("possible tool poisoning"));
    assert!(h.cli(&["tool", "show", "onboarding/email_send"]).contains("inspection findings"));
    // The operator reviews and re-approves: calls work again.
    h.cli(&["tool", "approve", "onboarding/email_send", "--accept-findings"]);
    let admin = h.cli(&["audit", "query", "--kind", "tool_changed", "--tool", "onboarding/email_send", "--json"]);
    assert_eq!(admin.matches("tool:approve").count(), 2, "both approvals are audited: {admin}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = c.call_tool("onboarding__email_send", json!({ "to": "ops@example.com", "subject": "s", "body": "b" })).await.unwrap();
        if r.result().is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "re-approval not picked up: {}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(h.upstream_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_redacts_withholds_and_refuses() {
    let h = Harness::start("");
    h.approve_demo_tools();
    // Autonomy 1: personal data in results reaches it only as tokens.
    let (id, key) = h.register("copilot", BOT_TOOLS, 1, None);
    let mut c = h.ready_client(&id, &key, None).await;

    let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1002" })).await.unwrap();
    let text = r.result().unwrap()["content"][0]["text"].as_str().unwrap().to_string();
    let record: serde_json::Value = serde_json::from_str(&text).expect("redaction keeps the tool's JSON text valid");
    assert_eq!(record["name"], "Grace Hopper");
    let email = record["email"].as_str().unwrap();
    assert_ne!(email, "grace@cobol.example", "e-mail tokenized");
    assert_eq!(email.len(), "grace@cobol.example".len());
    assert_eq!(email.find('@'), Some(5), "format kept: {email}");
    let a = h.last_audit();
    assert_eq!(a["event"]["decision"], "allow");
    assert_eq!(a["event"]["redacted"], 1);
    assert!(a["event"]["findings"].as_array().unwrap().contains(&json!("result.pii.email")), "{a}");
    assert!(!a.to_string().contains("grace@cobol.example"), "the audit record holds kinds, never values");

    // An indirect prompt injection in a file: the call ran upstream, the
    // result is withheld from the agent.
    let before = h.upstream_calls();
    let r = c.call_tool("onboarding__file_read", json!({ "path": "/onboarding/partner-notes.md" })).await.unwrap();
    assert_eq!(r.error_code(), Some(-32001));
    assert!(r.error_message().unwrap().contains("result withheld"), "{}", r.body);
    assert!(!r.body.to_string().contains("evil.test"), "nothing of the result leaks: {}", r.body);
    assert_eq!(r.body["error"]["data"]["policies"], json!(["injected-result"]));
    assert_eq!(h.upstream_calls(), before + 1);
    let a = h.last_audit();
    assert_eq!(a["event"]["decision"], "deny");
    assert_eq!(a["event"]["forwarded"], true);
    assert!(a["event"]["findings"].as_array().unwrap().contains(&json!("result.injection.instruction_override")), "{a}");

    // A credential in the arguments never leaves the gateway.
    let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "ghp_Z3MNQ7RXW4PVBC5DKp4Qx7Rm2Sn5Tb8Vw3Yz" })).await.unwrap();
    assert_eq!(r.error_code(), Some(-32001));
    assert_eq!(r.body["error"]["data"]["policies"], json!(["no-secrets-in-arguments"]));
    assert_eq!(h.upstream_calls(), before + 1, "refused before the upstream");
    let a = h.last_audit();
    assert!(a["event"]["findings"].as_array().unwrap().contains(&json!("args.secrets.github_token")), "{a}");
    assert!(!a.to_string().contains("ghp_Z3MN"), "no secret in the audit log");
    h.assert_audit_intact();
}

/// A gateway whose registry copy cannot be refreshed (here: a row it cannot
/// read, so every reload fails while the audit log still works) stops
/// serving after `stale_after_ms` instead of enforcing an old copy that may
/// miss a revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_cannot_refresh_its_registry_fails_closed() {
    let mut h = Harness::start("");
    h.edit_config("refresh_ms = 20", "refresh_ms = 50\nstale_after_ms = 1500");
    h.serve();
    h.approve_demo_tools();
    let (id, key) = h.register("steady", "onboarding/customer_lookup", 1, None);
    h.register("broken", "onboarding/customer_lookup", 1, None);
    let mut c = h.ready_client(&id, &key, None).await;
    assert!(c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap().result().is_some());

    let db = h.dir.path().join("warden-data/warden.db");
    let corrupt = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE agents SET tools='not json' WHERE id LIKE '%/broken'\"); \
                   c.execute(\"UPDATE meta SET value=CAST(CAST(value AS INTEGER)+1 AS TEXT) WHERE key='change_seq'\"); c.commit()";
    let out = std::process::Command::new("python3").args(["-c", corrupt, db.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = std::time::Instant::now();
    let refused = loop {
        let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap();
        if r.status == 503 {
            break r;
        }
        assert!(r.result().is_some(), "{}", r.body);
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "never failed closed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let waited = t.elapsed();
    assert!(waited >= std::time::Duration::from_millis(1400), "served from its copy up to the bound: {waited:?}");
    assert!(refused.error_message().unwrap().contains("fail closed"), "{}", refused.body);
    let err = c.fetch_token(None, Some("t")).await.unwrap_err().to_string();
    assert!(err.contains("503") || err.contains("temporarily_unavailable"), "{err}");
    // The refusals are audited: the log itself is still writable.
    assert!(h.cli(&["audit", "tail", "-n", "5"]).contains("fail closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_is_refused_before_authentication_and_allowed_names_are_configurable() {
    let mut h = Harness::start("");
    let http = reqwest::Client::new();
    let url = format!("{}/mcp", h.base);
    let post = |host: Option<&str>, origin: Option<&str>| {
        let mut r = http.post(&url).header("content-type", "application/json").body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        if let Some(v) = host {
            r = r.header("host", v);
        }
        if let Some(v) = origin {
            r = r.header("origin", v);
        }
        r.send()
    };
    // The gateway's own name and origin reach authentication (401).
    assert_eq!(post(None, Some(&h.base)).await.unwrap().status(), 401);
    let port = h.base.rsplit(':').next().unwrap().to_string();
    assert_eq!(post(Some(&format!("localhost:{port}")), None).await.unwrap().status(), 401);
    // A rebound name, or a page of another origin: 403, saying what to allow.
    let r = post(Some(&format!("evil.example:{port}")), None).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("allowed_hosts"));
    let r = post(None, Some("http://evil.example")).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("allowed_origins"));
    let r = http.get(&url).header("host", "evil.example").send().await.unwrap();
    assert_eq!(r.status(), 403, "the GET stream too");

    // An operator allows a console's origin and an internal name.
    h.edit_config("refresh_ms = 20", "refresh_ms = 20\n[http]\nallowed_origins = [\"https://console.example.com\"]\nallowed_hosts = [\"warden.internal\"]");
    h.serve();
    let url = format!("{}/mcp", h.base);
    let r = http.post(&url).header("origin", "https://console.example.com").header("host", "warden.internal").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_session_has_its_own_upstream_session_and_a_kill_ends_it() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (a, ka) = h.register("alpha", "onboarding/customer_lookup", 2, None);
    let (b, kb) = h.register("beta", "onboarding/customer_lookup", 2, None);
    let mut ca = h.ready_client(&a, &ka, None).await;
    let mut cb = h.ready_client(&b, &kb, None).await;
    for alpha in [true, false, true] {
        let c = if alpha { &mut ca } else { &mut cb };
        let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap();
        assert!(r.result().is_some(), "{}", r.body);
    }
    let pids = h.serving_pids();
    assert_eq!(pids.len(), 3);
    assert_eq!(pids[0], pids[2], "one agent session keeps its upstream session");
    assert_ne!(pids[0], pids[1], "another agent's calls run in another upstream session (process)");

    // A new session of the same agent starts clean too.
    let mut ca2 = h.ready_client(&a, &ka, None).await;
    ca2.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap();
    let fourth = h.serving_pids()[3];
    assert!(fourth != pids[0] && fourth != pids[1]);

    // Containing alpha ends its upstream sessions (their processes exit);
    // beta's stays.
    h.cli(&["kill", "agent", &a, "--reason", "isolation test"]);
    h.eventually(|| async { !process_alive(pids[0]) && !process_alive(fourth) }).await;
    assert!(process_alive(pids[1]), "beta's upstream session is untouched");
    let r = cb.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await.unwrap();
    assert!(r.result().is_some(), "{}", r.body);
    assert_eq!(*h.serving_pids().last().unwrap(), pids[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_split_across_arguments_or_across_calls_is_found_before_it_leaves() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let send = |subject: &str, body: &str| json!({ "to": "ops@example.com", "subject": subject, "body": body });
    // Over two arguments of one call: the critical guardrail contains the agent.
    let (id, key) = h.register("splitter", "onboarding/email_send", 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let (first, second) = ("ghp_4fT9kQ2mZx7LpW1s", "V8bN3cR6yH0dJ5aE2gUu");
    let r = c.call_tool("onboarding__email_send", send(second, first)).await.unwrap();
    assert_eq!(r.body["error"]["data"]["policies"], json!(["credential-exfiltration", "no-secrets-in-arguments"]), "{}", r.body);
    // Over two calls: the first half goes, the second is refused.
    let (id, key) = h.register("trickler", "onboarding/email_send", 2, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let calls = h.upstream_calls();
    let r = c.call_tool("onboarding__email_send", send("notes", first)).await.unwrap();
    assert!(r.result().is_some(), "half a key is nothing yet: {}", r.body);
    let r = c.call_tool("onboarding__email_send", send("more notes", second)).await.unwrap();
    assert_eq!(r.body["error"]["data"]["policies"], json!(["credential-exfiltration", "no-secrets-in-arguments"]), "{}", r.body);
    assert_eq!(h.upstream_calls(), calls + 1, "the second half never left");
}

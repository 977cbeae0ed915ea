//! Upstream faults that must neither hang the gateway nor outlive their
//! cause: a server hung on `initialize` (at start-up and after), a restarted
//! server whose MCP session is gone, a breaker probe the agent abandons, and
//! a server answering with another request's id. The upstream is a fake MCP
//! server in the test whose faults are switched on and off; every call it
//! executes must have an audit record, and the log must verify.

use crate::common::Harness;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The fake upstream's switches and what it saw.
#[derive(Default)]
struct Fake {
    /// Bumped by a "restart": sessions of earlier generations are unknown.
    generation: AtomicU64,
    /// `initialize` is never answered.
    hang_initialize: AtomicBool,
    /// `tools/call` is executed but never answered.
    hang_calls: AtomicBool,
    /// `tools/call` fails with HTTP 500 before executing.
    fail_calls: AtomicBool,
    /// `tools/call` is answered under another id (0 off, 1 JSON, 2 SSE).
    wrong_id: AtomicU64,
    /// Answers come as SSE streams rather than JSON bodies.
    sse: AtomicBool,
    initializes: AtomicU64,
    /// Arguments of every `tools/call` the server executed.
    executed: Mutex<Vec<Value>>,
}

impl Fake {
    fn session(&self) -> String {
        format!("session-gen-{}", self.generation.load(Ordering::SeqCst))
    }

    fn executed(&self) -> Vec<Value> {
        self.executed.lock().clone()
    }
}

async fn mcp(axum::extract::State(fake): axum::extract::State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    let msg: Value = serde_json::from_str(&body).unwrap();
    let method = msg["method"].as_str().unwrap_or_default().to_string();
    if method != "initialize" {
        match headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            None => return (StatusCode::BAD_REQUEST, "missing Mcp-Session-Id").into_response(),
            // The spec's answer for a session this server does not know.
            Some(s) if s != fake.session() => return (StatusCode::NOT_FOUND, "unknown session").into_response(),
            Some(_) => {}
        }
    }
    let Some(id) = msg.get("id").cloned() else { return StatusCode::ACCEPTED.into_response() };
    let result = match method.as_str() {
        "initialize" => {
            if fake.hang_initialize.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            fake.initializes.fetch_add(1, Ordering::SeqCst);
            json!({ "protocolVersion": "2025-06-18", "capabilities": { "tools": {} }, "serverInfo": { "name": "fake", "version": "1" } })
        }
        "tools/list" => json!({ "tools": [{ "name": "echo", "description": "Echo the arguments", "inputSchema": { "type": "object" } }] }),
        "tools/call" => {
            if fake.fail_calls.load(Ordering::SeqCst) {
                return (StatusCode::INTERNAL_SERVER_ERROR, "broken").into_response();
            }
            fake.executed.lock().push(msg["params"]["arguments"].clone());
            if fake.hang_calls.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            match fake.wrong_id.load(Ordering::SeqCst) {
                0 => json!({ "content": [{ "type": "text", "text": format!("echo {}", msg["params"]["arguments"]) }] }),
                mode => {
                    // The answer to some other request.
                    let foreign =
                        json!({ "jsonrpc": "2.0", "id": id.as_i64().unwrap() + 1000, "result": { "content": [{ "type": "text", "text": "FOREIGN result" }] } });
                    return if mode == 1 {
                        ([("mcp-session-id", fake.session())], axum::Json(foreign)).into_response()
                    } else {
                        let sse = format!("event: message\ndata: {foreign}\n\n");
                        ([("content-type", "text/event-stream"), ("mcp-session-id", fake.session().as_str())], sse).into_response()
                    };
                }
            }
        }
        _ => json!({}),
    };
    let reply = json!({ "jsonrpc": "2.0", "id": id, "result": result });
    if fake.sse.load(Ordering::SeqCst) {
        // A notification first, as a server may stream one before the answer.
        let sse = format!("event: message\ndata: {}\n\nevent: message\ndata: {reply}\n\n", json!({ "jsonrpc": "2.0", "method": "notifications/message" }));
        return ([("content-type", "text/event-stream"), ("mcp-session-id", fake.session().as_str())], sse).into_response();
    }
    ([("mcp-session-id", fake.session())], axum::Json(reply)).into_response()
}

/// Start the fake upstream; returns its switches and its URL.
async fn fake_upstream() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/mcp", post(mcp)).with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, url)
}

/// A gateway with the demo upstream and the fake one (as `flaky`), the
/// fake's tool approved; `extra` is appended to the configuration.
fn gateway(url: &str, timeout_secs: u64, extra: &str) -> Harness {
    let cfg = format!("[[upstream]]\nname = \"flaky\"\ntransport = \"http\"\nurl = {url:?}\ntimeout_secs = {timeout_secs}\n{extra}");
    let h = Harness::start_with("", &cfg, &[]);
    h.approve("flaky/echo", "low", "read", false);
    h.approve("onboarding/customer_lookup", "medium", "read", false);
    h
}

/// The SHA-256 the audit log records for these arguments.
fn args_hash(args: &Value) -> String {
    warden_core::sha256_hex(warden_core::canonical_json(args).as_bytes())
}

/// Every call the fake executed has a forwarded, allowed audit record (by
/// its arguments' hash), and the log verifies.
fn assert_every_execution_audited(h: &Harness, fake: &Fake) {
    let out = h.cli(&["audit", "query", "--tool", "flaky/echo", "--limit", "1000", "--json"]);
    let records: Vec<Value> = out.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    for args in fake.executed() {
        let hash = args_hash(&args);
        assert!(
            records.iter().any(|r| r["event"]["args_sha256"] == hash.as_str() && r["event"]["forwarded"] == true),
            "the upstream executed {args} but no forwarded call with those arguments is audited: {out}"
        );
    }
    h.assert_audit_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_hung_on_initialize_neither_blocks_start_up_nor_holds_calls_and_is_used_again_once_it_answers() {
    let (fake, url) = fake_upstream().await;
    let mut h = gateway(&url, 2, "");
    let (id, key) = h.register("bot", "flaky/echo,onboarding/customer_lookup", 1, None);

    // The upstream wedges (and forgets its sessions); the gateway restarts.
    fake.hang_initialize.store(true, Ordering::SeqCst);
    fake.generation.fetch_add(1, Ordering::SeqCst);
    let started = Instant::now();
    h.serve();
    assert!(started.elapsed() < Duration::from_secs(8), "start-up waited {:?} on a hung upstream", started.elapsed());

    let mut c = h.ready_client(&id, &key, None).await;
    let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "C-1001" })).await.unwrap();
    assert!(r.result().is_some(), "the healthy upstream is served: {}", r.body);
    for n in 0..3 {
        let asked = Instant::now();
        let r = c.call_tool("flaky__echo", json!({ "n": n })).await.unwrap();
        let took = asked.elapsed();
        let msg = r.error_message().unwrap_or_default();
        assert!(msg.contains("did not answer initialize within 2 s"), "{}", r.body);
        assert!(took < Duration::from_millis(3500), "refused after {took:?}, past timeout_secs = 2");
    }

    // It recovers: the next call connects, without a gateway restart.
    fake.hang_initialize.store(false, Ordering::SeqCst);
    let r = c.call_tool("flaky__echo", json!({ "n": "after recovery" })).await.unwrap();
    assert_eq!(r.result().unwrap()["content"][0]["text"], "echo {\"n\":\"after recovery\"}", "{}", r.body);
    assert_eq!(fake.executed().len(), 1, "only the call after recovery ran");
    assert_every_execution_audited(&h, &fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_check_against_a_hung_upstream_does_not_hold_up_calls_after_it_recovers() {
    let (fake, url) = fake_upstream().await;
    let mut h = gateway(&url, 3, "");
    h.edit_config("refresh_ms = 20", "refresh_ms = 20\npin_check_secs = 1");
    let (id, key) = h.register("bot", "flaky/echo", 1, None);
    fake.hang_initialize.store(true, Ordering::SeqCst);
    fake.generation.fetch_add(1, Ordering::SeqCst);
    h.serve();
    let mut c = h.ready_client(&id, &key, None).await;
    // Background listings keep trying (and hanging) meanwhile.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    fake.hang_initialize.store(false, Ordering::SeqCst);
    for n in 0..3 {
        let asked = Instant::now();
        let r = c.call_tool("flaky__echo", json!({ "n": n })).await.unwrap();
        assert!(r.result().is_some(), "call {n} after recovery: {}", r.body);
        assert!(asked.elapsed() < Duration::from_secs(3), "call {n} waited {:?}", asked.elapsed());
    }
    // Its tools are listed again too.
    h.eventually(|| {
        let mut c = h.client(&id, &key);
        async move {
            c.fetch_token(None, Some("t")).await.unwrap();
            c.initialize().await.unwrap();
            c.list_tools().await.unwrap().contains(&"flaky__echo".to_string())
        }
    })
    .await;
    assert_eq!(fake.executed().len(), 3);
    assert_every_execution_audited(&h, &fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_http_upstream_gets_a_new_session_and_the_refused_call_is_sent_once_more() {
    let (fake, url) = fake_upstream().await;
    let h = gateway(&url, 5, "");
    let (id, key) = h.register("bot", "flaky/echo", 1, None);
    let mut c = h.ready_client(&id, &key, None).await;
    assert!(c.call_tool("flaky__echo", json!({ "n": 1 })).await.unwrap().result().is_some());
    let before = fake.initializes.load(Ordering::SeqCst);

    // A new process: the gateway's session is unknown (HTTP 404) to it.
    fake.generation.fetch_add(1, Ordering::SeqCst);
    for n in 2..4 {
        let r = c.call_tool("flaky__echo", json!({ "n": n })).await.unwrap();
        assert!(r.result().is_some(), "call {n} after the restart: {}", r.body);
    }
    assert_eq!(fake.initializes.load(Ordering::SeqCst), before + 1, "re-initialized once");
    let executed = fake.executed();
    assert_eq!(executed, vec![json!({ "n": 1 }), json!({ "n": 2 }), json!({ "n": 3 })], "each call ran exactly once");
    assert_every_execution_audited(&h, &fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_probe_the_agent_abandons_does_not_keep_the_breaker_open() {
    let (fake, url) = fake_upstream().await;
    let h = gateway(&url, 2, "[monitor.breaker]\nfailures = 2\nfailure_ratio = 0.5\nwindow_secs = 60\ncooldown_secs = 1\n");
    let (id, key) = h.register("bot", "flaky/echo", 1, None);
    let mut c = h.ready_client(&id, &key, None).await;

    fake.fail_calls.store(true, Ordering::SeqCst);
    for n in 0..2 {
        let r = c.call_tool("flaky__echo", json!({ "fail": n })).await.unwrap();
        assert!(r.error_message().unwrap_or_default().contains("HTTP 500"), "{}", r.body);
    }
    let r = c.call_tool("flaky__echo", json!({ "fail": 2 })).await.unwrap();
    assert!(r.error_message().unwrap_or_default().contains("circuit breaker"), "open: {}", r.body);
    fake.fail_calls.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The probe hangs upstream and the agent gives up on it mid-call.
    fake.hang_calls.store(true, Ordering::SeqCst);
    let mut prober = h.ready_client(&id, &key, None).await;
    let abandoned = tokio::time::timeout(Duration::from_millis(500), prober.call_tool("flaky__echo", json!({ "probe": true }))).await;
    assert!(abandoned.is_err(), "the probe was still in flight");
    fake.hang_calls.store(false, Ordering::SeqCst);

    // Healthy again: the breaker closes within the probe's bound (2 s) and a
    // cool-down (1 s). Each refusal raises the agent's risk, so few polls.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut n = 0;
    loop {
        n += 1;
        let r = c.call_tool("flaky__echo", json!({ "after": n })).await.unwrap();
        if r.result().is_some() {
            break;
        }
        assert!(r.error_message().unwrap_or_default().contains("circuit breaker"), "{}", r.body);
        assert!(Instant::now() < deadline, "the breaker stayed open after the upstream recovered");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    for m in 0..3 {
        assert!(c.call_tool("flaky__echo", json!({ "closed": m })).await.unwrap().result().is_some(), "closed again");
    }
    // The abandoned probe ran upstream, so it is audited too.
    assert!(fake.executed().contains(&json!({ "probe": true })));
    h.eventually(|| {
        let out = h.cli(&["audit", "query", "--tool", "flaky/echo", "--limit", "1000", "--json"]);
        let hash = args_hash(&json!({ "probe": true }));
        async move { out.contains(&hash) }
    })
    .await;
    assert_every_execution_audited(&h, &fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_under_another_requests_id_fails_the_call_and_never_reaches_the_agent() {
    let (fake, url) = fake_upstream().await;
    let h = gateway(&url, 5, "");
    let (id, key) = h.register("bot", "flaky/echo", 1, None);
    let mut c = h.ready_client(&id, &key, None).await;
    for (mode, how) in [(1, "JSON"), (2, "SSE")] {
        fake.wrong_id.store(mode, Ordering::SeqCst);
        let r = c.call_tool("flaky__echo", json!({ "mode": mode })).await.unwrap();
        assert!(r.result().is_none(), "{how}: a foreign response became the result: {}", r.body);
        assert!(!r.body.to_string().contains("FOREIGN"), "{how}: {}", r.body);
        assert!(r.error_message().unwrap_or_default().contains("with a message for id"), "{how}: {}", r.body);
        let a = h.last_audit();
        assert!(a["event"]["reason"].as_str().unwrap_or_default().contains("refused"), "{how}: {a}");
    }
    fake.wrong_id.store(0, Ordering::SeqCst);
    assert!(c.call_tool("flaky__echo", json!({ "mode": 0 })).await.unwrap().result().is_some(), "the next call is matched again");
    fake.sse.store(true, Ordering::SeqCst);
    let r = c.call_tool("flaky__echo", json!({ "mode": "sse" })).await.unwrap();
    assert!(r.result().is_some(), "a streamed answer under the right id is the result: {}", r.body);
    assert_eq!(fake.executed().len(), 4);
    assert_every_execution_audited(&h, &fake);
}

/// Resumes stopped processes however the test ends, so a failed assertion
/// does not leave the test database frozen.
struct Frozen(Vec<String>);

impl Frozen {
    /// Stop (SIGSTOP) every PostgreSQL backend serving database `db`,
    /// found by their process titles (`postgres: USER DB …`).
    #[cfg(target_os = "linux")]
    fn backends_of(db: &str) -> Self {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let title = String::from_utf8_lossy(&cmdline);
            if title.starts_with("postgres: ") && title.split_whitespace().nth(2) == Some(db) {
                pids.push(name);
            }
        }
        assert!(!pids.is_empty(), "no PostgreSQL backend serves {db}");
        let status = std::process::Command::new("kill").arg("-STOP").args(&pids).status().unwrap();
        assert!(status.success(), "cannot stop the backends {pids:?}");
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-CONT").args(&self.0).status();
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_fails_calls_closed_within_the_audit_bound_and_they_succeed_once_it_answers() {
    let Some(url) = warden_test_support::fresh_postgres_url().await.expect("test PostgreSQL") else { return };
    let db = url.rsplit('/').next().unwrap().to_string();
    let h = Harness::start_with("", "", &[("WARDEN_DATABASE_URL", url.as_str())]);
    h.approve("onboarding/customer_lookup", "medium", "read", false);
    let (id, key) = h.register("bot", "onboarding/customer_lookup", 1, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let args = json!({ "customer_id": "C-1001" });
    assert!(c.call_tool("onboarding__customer_lookup", args.clone()).await.unwrap().result().is_some());

    let frozen = Frozen::backends_of(&db);
    let asked = Instant::now();
    let r = c.call_tool("onboarding__customer_lookup", args.clone()).await.unwrap();
    let took = asked.elapsed();
    assert_eq!(r.status, 503, "fails closed: {}", r.body);
    // Whichever database wait comes first: the request's one-time id, or its audit record.
    let msg = r.error_message().unwrap_or_default();
    assert!(msg.contains("within 5 s") || msg.contains("one-time id cannot be recorded"), "{}", r.body);
    assert!(took < Duration::from_secs(7), "answered after {took:?}; the audit bound is 5 s");
    drop(frozen);

    // Answering again: calls succeed without a restart.
    h.eventually(|| {
        let mut c = h.client(&id, &key);
        let args = args.clone();
        async move {
            c.fetch_token(None, Some("t")).await.is_ok()
                && c.initialize().await.is_ok_and(|r| r.status == 200)
                && c.call_tool("onboarding__customer_lookup", args).await.is_ok_and(|r| r.result().is_some())
        }
    })
    .await;
    // The call the upstream ran during the freeze is audited too: its
    // record commits once the database answers.
    h.eventually(|| {
        let out = h.cli(&["audit", "query", "--tool", "onboarding/customer_lookup", "--limit", "1000", "--json"]);
        let forwarded = out.lines().filter(|l| l.contains("\"forwarded\":true")).count();
        let ran = h.upstream_calls();
        async move { forwarded >= ran }
    })
    .await;
    h.assert_audit_intact();
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_upstream_that_exited_is_restarted_on_the_next_call() {
    let h = Harness::start("");
    h.approve("onboarding/customer_lookup", "medium", "read", false);
    let (id, key) = h.register("bot", "onboarding/customer_lookup", 1, None);
    let mut c = h.ready_client(&id, &key, None).await;
    let args = json!({ "customer_id": "C-1001" });
    assert!(c.call_tool("onboarding__customer_lookup", args.clone()).await.unwrap().result().is_some());

    // The demo server of this agent's upstream session: the one that ran the call.
    let pid = h.serving_pids()[0];
    assert!(std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let r = c.call_tool("onboarding__customer_lookup", args).await.unwrap();
    assert!(r.result().is_some(), "restarted: {}", r.body);
    assert_eq!(h.upstream_calls(), 2);
    assert_ne!(h.serving_pids()[1], pid, "by a new process");
    let out = h.cli(&["audit", "query", "--tool", "onboarding/customer_lookup", "--json"]);
    assert_eq!(out.lines().filter(|l| l.contains("\"forwarded\":true")).count(), 2, "{out}");
    h.assert_audit_intact();
}

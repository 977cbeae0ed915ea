//! Two `warden serve` replicas on one PostgreSQL database: registry changes
//! made through one replica reach the other by LISTEN/NOTIFY, well before
//! the (deliberately slow) periodic resync.

use crate::common::Harness;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The periodic resync is 30 s here, so anything faster is the notification.
const SLOW_RESYNC: &str = "refresh_ms = 30000";

async fn postgres_replicas() -> Option<(Harness, Harness)> {
    let url = warden_test_support::fresh_postgres_url().await.expect("test PostgreSQL")?;
    let mut a = Harness::start_with("", "", &[("WARDEN_DATABASE_URL", &url)]);
    a.edit_config("refresh_ms = 20", SLOW_RESYNC);
    a.serve();
    let b = a.replica();
    Some((a, b))
}

fn lookup() -> Value {
    json!({ "customer_id": "c-1001" })
}

/// Call through `c` until the call is refused; the time from `since`.
async fn until_refused(c: &mut warden_client::AgentClient, since: Instant) -> Duration {
    loop {
        let r = c.call_tool("onboarding__customer_lookup", lookup()).await.unwrap();
        if r.result().is_none() {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(10), "the change never reached the other replica");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_on_one_replica_stops_the_agent_on_the_other() {
    let Some((a, b)) = postgres_replicas().await else { return };
    assert_ne!(a.base, b.base);
    a.approve_demo_tools();
    let admin = a.cli(&["operator", "add", "ops", "--role", "admin"]).trim().to_string();
    let (id, key) = a.register("shared", "onboarding/*", 2, None);
    let (id2, key2) = a.register("other", "onboarding/*", 2, None);

    // Registered through the shared database, the agent works on replica B
    // (the registration itself reached B by notification: its resync is 30 s).
    let t = Instant::now();
    let mut on_b = b.ready_client(&id, &key, None).await;
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(on_b.call_tool("onboarding__customer_lookup", lookup()).await.unwrap().result().is_some());

    // Kill switch engaged through replica A's admin API.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/admin/v1/kills", a.base))
        .bearer_auth(&admin)
        .json(&json!({ "scope": "agent", "target": id, "reason": "replica test" }))
        .send()
        .await
        .unwrap();
    let engaged = Instant::now();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let took = until_refused(&mut on_b, engaged).await;
    eprintln!("kill on replica A -> call refused on replica B after {} ms", took.as_millis());

    // B audited when the switch came into force there, timed from when A
    // engaged it.
    let out = b.cli(&["audit", "tail", "-n", "50", "--json"]);
    let in_force: Vec<Value> = out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|r| r["event"]["kind"] == "containment").collect();
    let ms: Vec<u64> =
        in_force.iter().filter_map(|r| r["event"]["reason"].as_str()?.split("in force on this gateway ").nth(1)?.split(' ').next()?.parse().ok()).collect();
    assert_eq!(ms.len(), 1, "exactly one replica picked the switch up from the database: {in_force:?}");
    eprintln!("replica B: kill in force {} ms after replica A engaged it (target < 100 ms)", ms[0]);
    assert!(ms[0] < 5_000, "propagated by notification, not by the 30 s resync");

    // A suspension through replica B's CLI (the store) stops the other agent on A.
    let mut other_on_a = a.ready_client(&id2, &key2, None).await;
    assert!(other_on_a.call_tool("onboarding__customer_lookup", lookup()).await.unwrap().result().is_some());
    let t = Instant::now();
    b.cli(&["agent", "suspend", "other", "--reason", "replica test"]);
    let took = until_refused(&mut other_on_a, t).await;
    eprintln!("suspension via the CLI -> call refused on replica A after {} ms", took.as_millis());
    assert!(took < Duration::from_secs(5));

    // A policy bundle pushed through replica A's CLI is in force on both.
    let (id3, key3) = a.register("third", "onboarding/*", 2, None);
    let mut third_on_b = b.ready_client(&id3, &key3, None).await;
    assert!(third_on_b.call_tool("onboarding__customer_lookup", lookup()).await.unwrap().result().is_some());
    let dir = a.dir.path().join("policies-v2");
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    let src = crate::common::policies_dir();
    for f in ["schema.cedarschema", "base.cedar", "guardrails.cedar", "tests/guardrails.toml"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("freeze.cedar"),
        "@id(\"freeze-third\")\n@reason(\"agent third is frozen pending review\")\nforbid(principal, action, resource) when { principal.name == \"third\" };\n",
    )
    .unwrap();
    let t = Instant::now();
    let out = a.cli(&["policy", "push", dir.to_str().unwrap(), "--reason", "freeze third"]);
    assert!(out.contains("policy bundle v1"), "{out}");
    let took = until_refused(&mut third_on_b, t).await;
    eprintln!("policy push via the CLI -> call refused on replica B after {} ms", took.as_millis());
    let r = third_on_b.call_tool("onboarding__customer_lookup", lookup()).await.unwrap();
    assert!(r.error_message().unwrap_or_default().contains("frozen pending review"), "{}", r.body);
    // A bundle whose tests fail is not pushed.
    std::fs::write(
        dir.join("tests/wrong.toml"),
        "[[case]]\nname = \"wrong\"\nagent = \"a\"\ntool = \"onboarding/file_read\"\nargs = { path = \"/secrets/x\" }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let out = a.cli_output(&["policy", "push", dir.to_str().unwrap(), "--reason", "x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing pushed"));
    assert!(b.cli(&["audit", "tail", "-n", "20"]).contains("policy:push v1"));

    // Both replicas extended one audit chain; it verifies.
    a.assert_audit_intact();
}

/// A free loopback port (for a server that must keep or share an address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `tools/call` exactly as the client sends it, kept for replaying.
#[derive(Clone)]
struct CapturedCall {
    authorization: String,
    proof: String,
    session: String,
    body: Vec<u8>,
}

fn captured_call(c: &warden_client::AgentClient) -> CapturedCall {
    let body = json!({ "jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": { "name": "onboarding__customer_lookup", "arguments": lookup() } });
    CapturedCall {
        authorization: format!("DPoP {}", c.token.as_deref().unwrap()),
        proof: c.proof("POST"),
        session: c.session.clone().unwrap(),
        body: body.to_string().into_bytes(),
    }
}

/// POST a captured request to the MCP endpoint at `base`; (status, body).
async fn send_mcp(base: &str, call: &CapturedCall) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", &call.authorization)
        .header("dpop", &call.proof)
        .header("mcp-session-id", &call.session)
        .body(call.body.clone())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A token request (client assertion and DPoP proof for the token endpoint
/// of `public`), kept for replaying: (DPoP proof, form body).
fn captured_token_request(public: &str, id: &str, key: &warden_identity::Keypair) -> (String, String) {
    let c = warden_client::AgentClient::new(public, id, key.clone());
    let url = format!("{public}/oauth/token");
    let proof = warden_identity::make_dpop_proof(key, "POST", &url, None, warden_core::clock::now_secs());
    let form = format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}",
        c.client_assertion()
    );
    (proof, form)
}

/// POST a captured token request to `base`; (status, body).
async fn send_token(base: &str, (proof, form): &(String, String)) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("dpop", proof)
        .body(form.clone())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn is_replay_refusal((status, body): &(u16, Value)) -> bool {
    *status == 401 && body.to_string().contains("replayed")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_proof_or_client_assertion_used_on_one_replica_is_refused_on_the_other() {
    let Some(url) = warden_test_support::fresh_postgres_url().await.expect("test PostgreSQL") else { return };
    let a = Harness::start_with("", "", &[("WARDEN_DATABASE_URL", &url)]);
    // Behind one load balancer both replicas serve one public URL (proofs
    // name it as htu, tokens as issuer): replica B listens elsewhere but
    // calls itself A's URL.
    let b_addr = format!("http://127.0.0.1:{}", free_port());
    a.edit_config("listen = \"127.0.0.1:0\"", &format!("listen = {:?}\npublic_url = {:?}", b_addr.trim_start_matches("http://"), a.base));
    let _b = a.replica();
    a.approve_demo_tools();
    let (id, key) = a.register("replayed", "onboarding/*", 2, None);
    let c = a.ready_client(&id, &key, None).await;

    let call = captured_call(&c);
    let (status, body) = send_mcp(&a.base, &call).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].is_object(), "{body}");
    let replayed = send_mcp(&b_addr, &call).await;
    assert!(is_replay_refusal(&replayed), "the proof used on A is refused on B: {replayed:?}");
    // B itself serves the agent: a fresh proof with the same token
    // authenticates (B holds no MCP session of A's, so it asks for one).
    let fresh = CapturedCall { proof: c.proof("POST"), ..call.clone() };
    let (status, body) = send_mcp(&b_addr, &fresh).await;
    assert!(status == 404 && body.to_string().contains("unknown or expired session"), "{status} {body}");

    // The token endpoint: a client assertion and proof used on A, replayed on B.
    let req = captured_token_request(&a.base, &id, &key);
    let (status, body) = send_token(&a.base, &req).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send_token(&b_addr, &req).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("client assertion replayed"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_proof_or_client_assertion_used_before_a_restart_is_refused_after_it() {
    let mut h = Harness::start("");
    h.approve_demo_tools();
    let (id, key) = h.register("restarted", "onboarding/*", 2, None);
    let c = h.ready_client(&id, &key, None).await;
    let call = captured_call(&c);
    let (status, body) = send_mcp(&h.base, &call).await;
    assert!(status == 200 && body["result"].is_object(), "{status} {body}");
    let req = captured_token_request(&h.base, &id, &key);
    assert_eq!(send_token(&h.base, &req).await.0, 200);

    // Same data directory, same address (proofs name it), new process.
    let port = h.base.rsplit(':').next().unwrap().to_string();
    h.edit_config("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    h.serve();
    let replayed = send_mcp(&h.base, &call).await;
    assert!(is_replay_refusal(&replayed), "the proof used before the restart is refused: {replayed:?}");
    let (status, body) = send_token(&h.base, &req).await;
    assert!(status == 401 && body["error_description"].as_str().unwrap().contains("replayed"), "{status} {body}");
    // The token still works with a fresh proof: the refusal was the replay.
    let mut c = c;
    let r = c.initialize().await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

//! `warden connect`, the agent-side bridge, driven as an MCP host drives
//! it: the real binary on stdio (and on loopback HTTP) in front of the real
//! server, with no OAuth or DPoP on the host's side.

use crate::common::{BIN, Harness};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What the tests' hosts send the loopback listener.
const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// A host's end of a `warden connect` process on stdio.
pub(crate) struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Host {
    /// With the agent's key file, as the harness names it.
    fn launch(h: &Harness, agent: &str, extra: &[&str]) -> Self {
        let key = h.dir.path().join(format!("{}.pem", agent.rsplit('/').next().unwrap()));
        Self::spawn(h, agent, &[&["--key", key.to_str().unwrap()], extra].concat())
    }

    pub(crate) fn spawn(h: &Harness, agent: &str, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["connect", "--gateway", &h.base, "--agent", agent])
            .args(args)
            .env("WARDEN_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { stdin: child.stdin.take(), child, lines }
    }

    fn send(&mut self, msg: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
    }

    /// The answer to request `id`, skipping notifications in between.
    fn answer(&self, id: i64) -> Value {
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no answer to request {id} from warden connect"));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON message per line ({e}): {line}"));
            if v["id"] == id {
                return v;
            }
        }
    }

    pub(crate) fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        self.answer(id)
    }

    pub(crate) fn initialize(&mut self) -> Value {
        let r = self.request(
            1,
            "initialize",
            json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "test-host", "version": "1" } }),
        );
        self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
        r
    }

    /// Close the host's side; the bridge must finish and exit cleanly.
    pub(crate) fn close(mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "warden connect exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("warden connect did not exit when its input closed");
    }
}

fn token_records(h: &Harness, agent: &str) -> Vec<Value> {
    h.cli(&["audit", "query", "--agent", agent, "--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"]["kind"] == "token_issued")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_host_reaches_tools_through_the_bridge_across_token_expiry_and_sees_refusals() {
    let mut h = Harness::start("");
    h.edit_config("refresh_ms = 20", "refresh_ms = 20\ntoken_ttl_secs = 5");
    h.serve();
    h.approve_demo_tools();
    let (id, _key) = h.register("host-bot", "onboarding/customer_lookup,onboarding/file_read", 2, None);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut host = Host::launch(&h, &id, &["--task", "ticket-42", "--scope", "onboarding/customer_lookup"]);
    let init = host.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "warden-gateway", "{init}");
    let tools = host.request(2, "tools/list", json!({}));
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 1, "the token's scope, not all the agent may use: {tools}");
    let r = host.request(3, "tools/call", json!({ "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1002" } }));
    assert!(r["result"].to_string().contains("Grace Hopper"), "{r}");

    // Past the first token's expiry (5 s): the bridge has renewed it, for
    // the same task, and the host noticed nothing.
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    let r = host.request(4, "tools/call", json!({ "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1001" } }));
    assert!(r["result"].is_object(), "a call after the first token expired: {r}");
    let issued = token_records(&h, &id);
    assert!(issued.len() >= 2, "renewed: {issued:?}");
    assert!(issued.iter().all(|r| r["event"]["task"] == "ticket-42"), "{issued:?}");

    // An operator revokes the token in use: the gateway refuses it, and the
    // bridge gets a new one with the agent's key and sends the call again.
    let jti = token_records(&h, &id).last().unwrap()["event"]["token_id"].as_str().unwrap().to_string();
    h.cli(&["token", "revoke", "--jti", &jti]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = host.request(5, "tools/call", json!({ "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1001" } }));
    assert!(r["result"].is_object(), "after a token revocation: {r}");
    assert_eq!(token_records(&h, &id).len(), issued.len() + 1, "one renewal for the revoked token");

    // A tool outside the token's scope: the gateway's 403 reaches the host
    // as a JSON-RPC error saying what the gateway said.
    let r = host.request(6, "tools/call", json!({ "name": "onboarding__file_read", "arguments": { "path": "/onboarding/checklist.md" } }));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("onboarding/file_read"), "{r}");

    // Suspended: no token is issued, and the host is told why and by whom
    // it can be fixed.
    h.cli(&["agent", "suspend", &id, "--reason", "off-boarded"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = host.request(7, "tools/list", json!({}));
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(r["error"]["code"], -32004, "{r}");
    assert!(msg.contains("refused agent") && msg.contains("suspended") && msg.contains("operator"), "{msg}");

    // Resumed: the bridge works again without a restart.
    h.cli(&["agent", "resume", &id]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = host.request(8, "tools/list", json!({}));
    assert!(r["result"].is_object(), "{r}");

    // The agent is contained: the host sees why.
    h.cli(&["kill", "agent", &id, "--reason", "suspected exfiltration"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = host.request(9, "tools/call", json!({ "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1001" } }));
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("contained: suspected exfiltration"), "{r}");

    // Garbage from the host is answered, not fatal.
    let stdin = host.stdin.as_mut().unwrap();
    writeln!(stdin, "this is not JSON").unwrap();
    let line = host.lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["error"]["code"], -32700, "{line}");
    host.close();
    h.assert_audit_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_bridge_says_why_to_the_host_or_at_launch() {
    let h = Harness::start("");
    let (id, _key) = h.register("real-bot", "onboarding/customer_lookup", 2, None);
    let key = h.dir.path().join("real-bot.pem");

    // A name that is not registered: the bridge starts, and the host's
    // first request is answered with the reason.
    std::fs::copy(&key, h.dir.path().join("nobody.pem")).unwrap();
    let mut host = Host::launch(&h, &id.replace("real-bot", "nobody"), &[]);
    let r = host.initialize();
    assert_eq!(r["error"]["code"], -32004, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("unknown agent") && msg.contains("nobody"), "{msg}");
    host.close();

    // An authorization server other than the one expected gets nothing:
    // no assertion reaches Warden's token endpoint.
    let records = || h.cli(&["audit", "query", "--agent", "real-bot", "--json"]).lines().count();
    let before = records();
    let mut host = Host::launch(&h, &id, &["--issuer", "https://login.example.com"]);
    let r = host.initialize();
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("not the --issuer https://login.example.com given"), "{r}");
    host.close();
    assert_eq!(records(), before, "nothing reached Warden's token endpoint");

    // A key others may read is refused, as ssh refuses one.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN).args(["connect", "--gateway", &h.base, "--agent", &id, "--key", key.to_str().unwrap()]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loopback_listener_relays_streamable_http_and_refuses_other_hosts() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let (id, _key) = h.register("http-bot", "onboarding/customer_lookup", 2, None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key = h.dir.path().join("http-bot.pem");
    let mut child = Command::new(BIN)
        .args(["connect", "--gateway", &h.base, "--agent", &id, "--key", key.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("WARDEN_CONNECT_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(" at ").nth(1) {
                let _ = tx.send(rest.split(' ').next().unwrap().to_string());
            }
            eprintln!("[connect] {line}");
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("the bridge listens");
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {SECRET}"))
            .body(body.to_string());
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r
    };
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let r = post(init.clone(), None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let session = r.headers().get("mcp-session-id").expect("the gateway's session id passes through").to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["serverInfo"]["name"], "warden-gateway");
    let r = post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }), Some(&session)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1002" } } });
    let r: Value = post(call.clone(), Some(&session)).send().await.unwrap().json().await.unwrap();
    assert!(r["result"].to_string().contains("Grace Hopper"), "{r}");

    // Another user or process of this machine, without the secret.
    let r = http.post(&url).header("content-type", "application/json").body(init.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http.post(&url).header("authorization", "Bearer wrong").body(init.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // DNS rebinding: a page of another site, or a name that resolves here.
    let r = post(init.clone(), None).header("origin", "http://evil.example").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = post(init, None).header("host", "evil.example").send().await.unwrap();
    assert_eq!(r.status(), 403);

    // The agent is suspended: a JSON-RPC error, not a 401 the host would
    // answer with an OAuth flow the bridge has no server for.
    h.cli(&["agent", "suspend", &id, "--reason", "off-boarded"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = post(call, Some(&session)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["error"]["code"], -32004, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("suspended"), "{r}");

    let _ = child.kill();
    let _ = child.wait();

    // Only loopback addresses, and only with a secret.
    let listen = |addr: &str, secret: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["connect", "--gateway", &h.base, "--agent", &id, "--key", key.to_str().unwrap(), "--listen", addr]).env_remove("WARDEN_CONNECT_SECRET");
        if let Some(s) = secret {
            c.env("WARDEN_CONNECT_SECRET", s);
        }
        c.output().unwrap()
    };
    let out = listen("127.0.0.1:0", None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARDEN_CONNECT_SECRET"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = listen("127.0.0.1:0", Some("short"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = listen("0.0.0.0:0", Some(SECRET));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_signs_with_p256_and_rsa_agent_keys_too() {
    let h = Harness::start("");
    h.approve_demo_tools();
    for (name, alg) in [("p256-bot", "es256"), ("rsa-bot", "rs256")] {
        let id = h.register_agent(name, "onboarding/customer_lookup", &["--key-alg", alg]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut host = Host::launch(&h, &id, &[]);
        assert!(host.initialize()["result"].is_object());
        let r = host.request(2, "tools/call", json!({ "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1002" } }));
        assert!(r["result"].to_string().contains("Grace Hopper"), "{alg}: {r}");
        host.close();
    }
}

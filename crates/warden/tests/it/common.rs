//! Test harness: runs the real `warden` binary (server and CLI) in a
//! temporary directory with the built-in demo upstream.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use warden_client::AgentClient;
use warden_identity::{AccessClaims, Actor, Confirmation, Keypair, TokenIssuer};

pub const BIN: &str = env!("CARGO_BIN_EXE_warden");

pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub base: String,
    pub call_log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Harness {
    /// Start with the demo upstream; `upstream_env` goes into its environment.
    pub fn start(upstream_env: &str) -> Self {
        Self::start_with(upstream_env, "", &[])
    }

    /// As [`Harness::start`], with more config appended and environment
    /// variables for the server process.
    pub fn start_with(upstream_env: &str, extra_config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let call_log = dir.path().join("calls.log");
        let cfg = dir.path().join("warden.toml");
        let text = format!(
            r#"listen = "127.0.0.1:0"
policy_dir = {policies:?}
max_body_bytes = 65536
refresh_ms = 20
[unauthenticated]
audit_window_secs = 1
[[upstream]]
name = "onboarding"
transport = "stdio"
command = {bin:?}
args = ["demo-server"]
env = {{ WARDEN_DEMO_CALL_LOG = {log:?} {upstream_env} }}
{extra_config}
"#,
            policies = policies_dir().display().to_string(),
            bin = BIN,
            log = call_log.display().to_string(),
        );
        std::fs::write(&cfg, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut h = Self { dir, cfg, base: String::new(), call_log, env, child: None };
        h.serve();
        h
    }

    /// (Re)start the server process and wait for its address.
    pub fn serve(&mut self) {
        self.stop();
        let mut child = Command::new(BIN)
            .args(["--config", self.cfg.to_str().unwrap(), "serve"])
            .env("WARDEN_LOG", "warn")
            .envs(self.env.iter().cloned())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("serving MCP on ").nth(1) {
                    let _ = tx.send(rest.split("/mcp").next().unwrap().to_string());
                }
                eprintln!("[warden] {line}");
            }
        });
        self.base = rx.recv_timeout(Duration::from_secs(60)).expect("server started");
        self.child = Some(child);
    }

    /// Ask the server to stop (SIGTERM) and wait for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("the server is running");
        let ok = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM failed");
        c.wait().unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cli_output(&self, args: &[&str]) -> Output {
        Command::new(BIN).arg("--config").arg(&self.cfg).args(args).envs(self.env.iter().cloned()).output().unwrap()
    }

    /// Edit the config file (restart with [`Harness::serve`] to apply).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.cfg).unwrap();
        assert!(text.contains(from), "config has no {from:?}");
        std::fs::write(&self.cfg, text.replacen(from, to, 1)).unwrap();
    }

    /// A second server sharing this one's data directory (the gateway key),
    /// configuration and environment (so the same shared database).
    pub fn replica(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("warden.toml");
        let data_dir = self.dir.path().join("warden-data");
        let text = std::fs::read_to_string(&self.cfg).unwrap();
        std::fs::write(&cfg, format!("data_dir = {:?}\n{text}", data_dir.display().to_string())).unwrap();
        let mut h = Self { call_log: self.call_log.clone(), dir, cfg, base: String::new(), env: self.env.clone(), child: None };
        h.serve();
        h
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(out.status.success(), "warden {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Classify and approve a demo tool.
    pub fn approve(&self, tool: &str, sensitivity: &str, action: &str, exfil: bool) {
        let mut args = vec!["tool", "set", tool, "--sensitivity", sensitivity, "--action-class", action];
        if exfil {
            args.push("--exfil");
        }
        self.cli(&args);
        self.cli(&["tool", "approve", tool]);
    }

    pub fn approve_demo_tools(&self) {
        self.approve("onboarding/customer_lookup", "medium", "read", false);
        self.approve("onboarding/email_send", "medium", "write", true);
        self.approve("onboarding/file_read", "medium", "read", false);
        self.approve("onboarding/payment_transfer", "high", "financial", false);
    }

    /// Register an operator; their token goes into a file, as an operator
    /// would keep it. Returns the file.
    pub fn operator(&self, name: &str, role: &str) -> PathBuf {
        let token = self.cli(&["operator", "add", name, "--role", role]);
        let path = self.dir.path().join(format!("{name}.token"));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// The newest pending approval, once the gateway has stored it.
    pub async fn pending_approval(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.cli(&["approvals", "list", "--json"]).lines().next() {
                return serde_json::from_str(l).unwrap();
            }
            assert!(Instant::now() < deadline, "no approval was requested");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Register an agent with a generated key (`NAME.pem` in the test
    /// directory), the test owner and purpose, and `extra` arguments
    /// (`--key-alg`, `--token-binding`, `--parent`…); returns its SPIFFE id.
    pub fn register_agent(&self, name: &str, tools: &str, extra: &[&str]) -> String {
        let key_path = self.dir.path().join(format!("{name}.pem"));
        let args = ["agent", "register", name, "--owner", "alice@example.com", "--purpose", "integration test", "--tools", tools];
        let args: Vec<&str> = args.into_iter().chain(["--generate-key", key_path.to_str().unwrap()]).chain(extra.iter().copied()).collect();
        self.cli(&args).trim().to_string()
    }

    /// Register an agent with a generated Ed25519 key; returns (SPIFFE id, key).
    pub fn register(&self, name: &str, tools: &str, autonomy: u8, parent: Option<&str>) -> (String, Keypair) {
        let autonomy = autonomy.to_string();
        let mut extra = vec!["--autonomy", &autonomy];
        if let Some(p) = parent {
            extra.extend(["--parent", p]);
        }
        let id = self.register_agent(name, tools, &extra);
        let key = Keypair::from_pkcs8_pem(&std::fs::read_to_string(self.dir.path().join(format!("{name}.pem"))).unwrap()).unwrap();
        (id, key)
    }

    pub fn client(&self, id: &str, key: &Keypair) -> AgentClient {
        AgentClient::new(&self.base, id, key.clone())
    }

    /// Client with a token and an initialized session, waiting for the
    /// server's registry refresh to see a just-registered agent.
    pub async fn ready_client(&self, id: &str, key: &Keypair, scope: Option<&str>) -> AgentClient {
        let mut c = self.client(id, key);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Most often the refresh (every 20 ms) has seen the agent by then.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut refused = false;
        loop {
            match c.fetch_token(scope, Some("test-task")).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline && e.to_string().contains("unknown agent") => {
                    refused = true;
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("token: {e}"),
            }
        }
        if refused {
            // Those refusals are audited in aggregate when their window
            // closes: wait for it, so no record of them lands in the middle
            // of what the test does next.
            self.audited(&format!("unknown agent \"{id}\"")).await;
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
        let r = c.initialize().await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        c
    }

    /// Which demo-server process (upstream session) executed each call, in order.
    pub fn serving_pids(&self) -> Vec<u32> {
        std::fs::read_to_string(&self.call_log).unwrap_or_default().lines().map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).collect()
    }

    /// Tool calls the upstream actually executed.
    pub fn upstream_calls(&self) -> usize {
        std::fs::read_to_string(&self.call_log).map(|s| s.lines().count()).unwrap_or(0)
    }

    /// The newest audit record.
    pub fn last_audit(&self) -> Value {
        let out = self.cli(&["audit", "tail", "-n", "1", "--json"]);
        serde_json::from_str(out.lines().last().expect("an audit record")).unwrap()
    }

    /// The newest of the recent audit records whose reason contains
    /// `needle`, waiting for it: failed authentications are audited in
    /// aggregate, per source and reason, when their window closes (1 s here).
    pub async fn audited(&self, needle: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let recent = self.cli(&["audit", "tail", "-n", "30", "--json"]);
            let found = recent
                .lines()
                .rev()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .find(|a| a["event"]["reason"].as_str().unwrap_or_default().contains(needle));
            match found {
                Some(a) => return a,
                None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                None => panic!("no recent audit record mentions {needle:?}: {recent}"),
            }
        }
    }

    /// The stored audit log verifies against the gateway key.
    pub fn assert_audit_intact(&self) {
        let out = self.cli(&["audit", "verify"]);
        assert!(out.contains("audit log OK"), "{out}");
    }

    pub fn gateway_key(&self) -> Keypair {
        Keypair::from_pkcs8_pem(&std::fs::read_to_string(self.dir.path().join("warden-data/gateway-key.pem")).unwrap()).unwrap()
    }

    /// Claims like the server would issue for `agent` (to mint edge cases).
    pub fn claims(&self, agent: &str, key: &Keypair, scope: &str) -> AccessClaims {
        let now = warden_core::clock::now_secs();
        AccessClaims {
            iss: self.base.clone(),
            sub: "alice@example.com".into(),
            aud: format!("{}/mcp", self.base),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: format!("minted-{now}-{}", rand_suffix()),
            client_id: agent.into(),
            scope: scope.into(),
            act: Actor { sub: agent.into(), act: None },
            cnf: Some(Confirmation::key(key.public().kid())),
            task: "minted-task".into(),
            chain: vec![],
            fed: None,
            auth_time: None,
        }
    }

    pub fn mint(&self, claims: &AccessClaims) -> String {
        TokenIssuer::new(self.gateway_key()).issue(claims)
    }

    /// Wait until the server has picked up a registry change (polling `probe`).
    pub async fn eventually<F, Fut>(&self, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !probe().await {
            assert!(Instant::now() < deadline, "condition not reached within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local HTTP endpoint recording every POST to `path` (headers and body);
/// returns its URL.
pub async fn capture_posts(path: &str) -> (String, tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, String)>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        path,
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

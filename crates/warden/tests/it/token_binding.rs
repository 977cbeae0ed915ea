//! Token binding per agent: DPoP-bound tokens for `dpop` agents (the
//! default), bearer tokens for agents an operator allowed them, re-checked
//! on every request; ES256 and RS256 agent keys for client assertions and
//! DPoP proofs, the algorithm fixed by the registered key.

use crate::common::Harness;
use serde_json::{Value, json};
use warden_client::{AgentClient, Reply};
use warden_core::clock::now_secs;
use warden_identity::{AccessClaims, AgentSigner, JwsAlg, b64url, b64url_decode, make_dpop_proof, sign_jws};

/// An agent registered by the CLI with a generated key of type `alg` and
/// the given `--token-binding`.
struct KeyAgent {
    id: String,
    name: String,
    key: AgentSigner,
    base: String,
}

fn register(h: &Harness, name: &str, alg: &str, binding: &str) -> KeyAgent {
    let id = h.register_agent(name, "onboarding/*", &["--autonomy", "2", "--key-alg", alg, "--token-binding", binding]);
    let key = AgentSigner::from_pkcs8_pem(&std::fs::read_to_string(h.dir.path().join(format!("{name}.pem"))).unwrap()).unwrap();
    KeyAgent { id, name: name.into(), key, base: h.base.clone() }
}

fn jti() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).unwrap();
    b64url(&b)
}

impl KeyAgent {
    fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base)
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// A client assertion signed by `key` (the agent's own unless a test
    /// signs with another).
    fn assertion_by(&self, key: &AgentSigner) -> String {
        let now = now_secs();
        let claims = json!({ "iss": self.id, "sub": self.id, "aud": self.token_url(), "iat": now, "exp": now + 60, "jti": jti() });
        sign_jws(key, serde_json::Map::new(), &claims)
    }

    /// `client_credentials` with `assertion`, with a DPoP proof or without.
    async fn token_with(&self, assertion: &str, dpop: bool) -> (u16, Value) {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
        ];
        // Every value is base64url, dots and colons: nothing to percent-encode.
        let body = form.map(|(k, v)| format!("{k}={v}")).join("&");
        let mut req = reqwest::Client::new().post(self.token_url()).header("content-type", "application/x-www-form-urlencoded").body(body);
        if dpop {
            req = req.header("dpop", make_dpop_proof(&self.key, "POST", &self.token_url(), None, now_secs()));
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn token(&self, dpop: bool) -> (u16, Value) {
        self.token_with(&self.assertion_by(&self.key), dpop).await
    }

    /// Ready to call: retries while the server's refresh has not seen the
    /// just-registered agent.
    async fn ready_token(&self, dpop: bool) -> Value {
        for _ in 0..100 {
            let (status, body) = self.token(dpop).await;
            if status == 200 {
                return body;
            }
            assert!(body["error_description"].as_str().unwrap().contains("unknown agent"), "{body}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the agent never became known");
    }

    /// The MCP session of `token`, sent with `scheme` (`Bearer` or `DPoP`,
    /// with a proof by the agent's key for the latter).
    fn session(&self, token: &str, scheme: &'static str) -> Session<'_> {
        // The transport only: credentials are set on each request here.
        let transport = AgentClient::new(&self.base, &self.id, warden_identity::Keypair::generate());
        Session { transport, token: token.into(), scheme, agent: self, next: 1 }
    }
}

struct Session<'a> {
    transport: AgentClient,
    token: String,
    scheme: &'static str,
    agent: &'a KeyAgent,
    next: i64,
}

impl Session<'_> {
    async fn request(&mut self, method: &str, params: Value) -> Reply {
        let msg = json!({ "jsonrpc": "2.0", "id": self.next, "method": method, "params": params });
        self.next += 1;
        let proof = (self.scheme == "DPoP").then(|| make_dpop_proof(&self.agent.key, "POST", &self.agent.mcp_url(), Some(&self.token), now_secs()));
        let reply = self.transport.post_raw(msg.to_string().into_bytes(), Some(format!("{} {}", self.scheme, self.token)), proof).await.unwrap();
        if method == "initialize" {
            self.transport.session = reply.session.clone();
        }
        reply
    }

    async fn initialize(&mut self) -> Reply {
        self.request("initialize", json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "it", "version": "1" } })).await
    }

    async fn lookup(&mut self) -> Reply {
        self.request("tools/call", json!({ "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1001" } })).await
    }
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&b64url_decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn refusal(r: &Reply) -> String {
    assert_eq!(r.status, 401, "{}", r.body);
    r.www_authenticate.clone().unwrap_or_default()
}

#[tokio::test]
async fn es256_and_rs256_agents_get_dpop_bound_tokens_with_their_own_keys_and_call_tools() {
    let h = Harness::start("");
    h.approve_demo_tools();
    for (name, alg) in [("ec-bot", "es256"), ("rsa-bot", "rs256")] {
        let a = register(&h, name, alg, "dpop");
        let t = a.ready_token(true).await;
        assert_eq!(t["token_type"], "DPoP");
        let token = t["access_token"].as_str().unwrap();
        assert_eq!(claims_of(token)["cnf"]["jkt"], a.key.public().thumbprint(), "bound to the registered {alg} key");
        let mut s = a.session(token, "DPoP");
        assert_eq!(s.initialize().await.status, 200);
        let r = s.lookup().await;
        assert!(r.result().is_some(), "{alg}: {}", r.body);
        let shown = h.cli(&["agent", "show", name]);
        assert!(shown.contains(&format!("key: {}", JwsAlg::ALL.iter().find(|x| x.as_str().eq_ignore_ascii_case(alg)).unwrap().as_str())), "{shown}");
        assert!(shown.contains("token binding: dpop"), "{shown}");
    }
}

#[tokio::test]
async fn an_assertion_under_another_algorithm_than_the_registered_keys_is_refused() {
    let h = Harness::start("");
    let a = register(&h, "ec-bot", "es256", "dpop");
    a.ready_token(true).await;
    // Signed by an RSA key: its header says RS256, the agent's key is P-256.
    let (status, body) = a.token_with(&a.assertion_by(&AgentSigner::generate(JwsAlg::Rs256).unwrap()), true).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    assert_eq!(
        body["error_description"],
        "client assertion invalid: JWS algorithm RS256 does not match the key, which verifies only ES256 signatures (its type decides)"
    );
    // HMAC keyed with the public key (the classic confusion): refused unread.
    let header = b64url(br#"{"alg":"HS256"}"#);
    let claims = b64url(json!({ "iss": a.id, "sub": a.id, "aud": a.token_url(), "exp": now_secs() + 60, "jti": jti() }).to_string().as_bytes());
    let (status, body) = a.token_with(&format!("{header}.{claims}.c2ln"), true).await;
    assert_eq!(status, 401);
    assert_eq!(body["error_description"], r#"client assertion invalid: unsupported JWS algorithm "HS256": only EdDSA, ES256 and RS256 are accepted"#);
}

#[tokio::test]
async fn a_dpop_agent_gets_no_bearer_token_and_the_refusal_says_how_an_operator_allows_one() {
    let h = Harness::start("");
    let a = register(&h, "strict-bot", "es256", "dpop");
    a.ready_token(true).await;
    let (status, body) = a.token(false).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{body}");
    assert_eq!(
        body["error_description"],
        format!(
            "a DPoP proof header is required: agent {} requires DPoP-bound tokens (token binding dpop): use a client that sends DPoP proofs (RFC 9449), or have an operator allow bearer tokens with `warden agent set-binding strict-bot bearer`",
            a.id
        )
    );
    // An unbound token (as one issued while it was a bearer agent) is refused at /mcp.
    let unbound = h.mint(&AccessClaims { cnf: None, ..h.claims(&a.id, &warden_identity::Keypair::generate(), "onboarding/*") });
    let www = refusal(&a.session(&unbound, "Bearer").initialize().await);
    assert!(www.starts_with(r#"Bearer resource_metadata=""#), "{www}");
    assert!(www.contains("requires DPoP-bound tokens (token binding dpop)"), "{www}");
}

#[tokio::test]
async fn a_bearer_agent_uses_bearer_tokens_until_an_operator_switches_it_back_to_dpop() {
    let h = Harness::start("");
    h.approve_demo_tools();
    let a = register(&h, "sdk-bot", "rs256", "bearer");
    let t = a.ready_token(false).await;
    assert_eq!(t["token_type"], "Bearer");
    let bearer = t["access_token"].as_str().unwrap().to_string();
    assert!(claims_of(&bearer).get("cnf").is_none(), "unbound");
    let records = h.cli(&["audit", "query", "--agent", &a.name, "--json"]);
    let issued: Value = records.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|r| r["event"]["kind"] == "token_issued").unwrap();
    assert_eq!(issued["event"]["token_binding"], "bearer", "{issued}");

    let mut s = a.session(&bearer, "Bearer");
    assert_eq!(s.initialize().await.status, 200);
    let r = s.lookup().await;
    assert!(r.result().is_some(), "{}", r.body);
    // Policy sees the binding: the guardrail keeps money to bound tokens.
    let r = s
        .request(
            "tools/call",
            json!({ "name": "onboarding__payment_transfer", "arguments": { "amount": 5, "currency": "EUR", "to": "DE89370400440532013000" } }),
        )
        .await;
    assert!(r.error_message().unwrap_or_default().contains("this needs a DPoP-bound token"), "{}", r.body);
    let denied = h.audited("this needs a DPoP-bound token").await;
    assert_eq!((denied["event"]["decision"].as_str(), denied["event"]["token_binding"].as_str()), (Some("deny"), Some("bearer")), "calls record the binding");

    // An unbound token with the DPoP scheme is refused.
    let www = refusal(&a.session(&bearer, "DPoP").initialize().await);
    assert!(www.contains("this token is not DPoP-bound"), "{www}");

    // With a proof the same agent gets a bound token, which is never accepted as a bearer token.
    let t = a.token(true).await.1;
    assert_eq!(t["token_type"], "DPoP");
    let bound = t["access_token"].as_str().unwrap();
    let mut d = a.session(bound, "DPoP");
    assert_eq!(d.initialize().await.status, 200);
    let www = refusal(&a.session(bound, "Bearer").initialize().await);
    assert!(www.contains("this token is DPoP-bound"), "{www}");

    // Back to dpop: the live bearer token stops working.
    let out = h.cli(&["agent", "set-binding", &a.name, "dpop", "--reason", "SDK now signs proofs"]);
    assert_eq!(out.trim(), format!("{}: token binding dpop", a.id));
    h.eventually(|| async { a.session(&bearer, "Bearer").initialize().await.status == 401 }).await;
    let www = refusal(&a.session(&bearer, "Bearer").initialize().await);
    assert!(www.contains("set-binding sdk-bot bearer"), "{www}");
    assert_eq!(h.audited("token binding bearer -> dpop: SDK now signs proofs").await["event"]["action"], "agent:token-binding");
    assert_eq!(d.lookup().await.status, 200, "the bound token still works");
}

#[tokio::test]
async fn a_public_jwk_file_registers_an_rsa_agent_and_a_weak_or_private_key_is_refused_with_the_reason() {
    let h = Harness::start("");
    let key = AgentSigner::generate(JwsAlg::Rs256).unwrap();
    let file = h.dir.path().join("rsa.jwk");
    std::fs::write(&file, key.public().jwk().to_string()).unwrap();
    let register = |name: &str, file: &std::path::Path| {
        h.cli_output(&[
            "agent",
            "register",
            name,
            "--owner",
            "alice@example.com",
            "--purpose",
            "p",
            "--tools",
            "onboarding/*",
            "--public-key",
            file.to_str().unwrap(),
        ])
    };
    let out = register("jwk-bot", &file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = KeyAgent { id: String::from_utf8(out.stdout).unwrap().trim().into(), name: "jwk-bot".into(), key, base: h.base.clone() };
    assert_eq!(a.ready_token(true).await["token_type"], "DPoP");

    let weak = h.dir.path().join("weak.jwk");
    std::fs::write(&weak, json!({ "kty": "RSA", "n": b64url(&[0xc5; 128]), "e": "AQAB" }).to_string()).unwrap();
    let out = register("weak-bot", &weak);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RSA modulus has 1024 bits: 2048 to 8192 are accepted"), "{}", String::from_utf8_lossy(&out.stderr));
    let private = h.dir.path().join("private.pem");
    std::fs::write(&private, AgentSigner::generate(JwsAlg::Es256).unwrap().to_pkcs8_pem()).unwrap();
    let out = register("leaky-bot", &private);
    assert!(String::from_utf8_lossy(&out.stderr).contains("register the public key only"), "{}", String::from_utf8_lossy(&out.stderr));
}

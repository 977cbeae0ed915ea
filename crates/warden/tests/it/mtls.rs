//! Mutual TLS with X.509-SVIDs: the gateway's TLS listener requires a
//! client certificate from Warden's CA (`warden agent issue-cert`); an agent
//! with one calls a tool, and a certificate of another trust domain, an
//! expired one, none at all, or another agent's are refused.

use crate::common::Harness;
use serde_json::json;
use std::sync::Arc;
use warden_client::AgentClient;
use warden_core::clock::now_secs;
use warden_identity::{Authority, Keypair};

fn client(ca_pem: &str, identity: Option<String>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn issue(h: &Harness, agent: &str) -> String {
    let out = h.cli(&["agent", "issue-cert", agent, "--out", h.dir.path().to_str().unwrap()]);
    let mut paths = out.lines();
    let (cert, key) = (paths.next().unwrap(), paths.next().unwrap());
    format!("{}{}", std::fs::read_to_string(cert).unwrap(), std::fs::read_to_string(key).unwrap())
}

async fn call(h: &Harness, http: reqwest::Client, id: &str, key: &Keypair) -> Result<warden_client::Reply, String> {
    let mut c = AgentClient::with_http(&h.base, id, Arc::new(key.clone().into()), http);
    c.fetch_token(None, Some("mtls")).await.map_err(|e| e.to_string())?;
    let r = c.initialize().await.map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Ok(r);
    }
    c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1002" })).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_their_svid_get_through_and_other_certificates_do_not() {
    let mut h = Harness::start("");
    // Another trust domain's bundle: it anchors SVIDs of its own domain only.
    let foreign = Authority::generate("other.example", now_secs()).unwrap();
    std::fs::write(h.dir.path().join("other-ca.pem"), foreign.cert_pem()).unwrap();
    h.edit_config("refresh_ms = 20", "refresh_ms = 20\n[tls]\nrequire_client_cert = true\n[tls.trust_bundles]\n\"other.example\" = \"other-ca.pem\"");
    h.serve();
    assert!(h.base.starts_with("https://"), "{}", h.base);
    h.approve_demo_tools();
    let (bot, bot_key) = h.register("bot", "onboarding/customer_lookup", 2, None);
    let (other, _) = h.register("other", "onboarding/customer_lookup", 2, None);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let ca = h.cli(&["agent", "trust-bundle"]);

    // Its own certificate: the call goes through.
    let r = call(&h, client(&ca, Some(issue(&h, "bot"))), &bot, &bot_key).await.unwrap();
    assert!(r.result().unwrap().to_string().contains("Grace Hopper"), "{}", r.body);
    let issued = h.audited("X.509-SVID issued").await;
    assert_eq!(issued["event"]["agent"], bot.as_str());

    // No certificate: refused at the handshake.
    let e = call(&h, client(&ca, None), &bot, &bot_key).await.unwrap_err();
    assert!(e.contains("error sending request"), "{e}");

    // A CA nobody configured.
    let stranger = Authority::generate("stranger.example", now_secs()).unwrap();
    let f = stranger.issue_agent("spiffe://stranger.example/agent/bot", now_secs() - 60, now_secs() + 600).unwrap();
    let e = call(&h, client(&ca, Some(format!("{}{}", f.cert_pem, f.key_pem))), &bot, &bot_key).await.unwrap_err();
    assert!(e.contains("error sending request"), "{e}");

    // The other trust domain's CA vouching for an id of Warden's own trust
    // domain: refused at the handshake, though its bundle is configured.
    let forged = Authority::from_pem("warden.local", foreign.cert_pem(), &foreign.key_pem()).unwrap();
    let f = forged.issue_agent(&bot, now_secs() - 60, now_secs() + 600).unwrap();
    let e = call(&h, client(&ca, Some(format!("{}{}", f.cert_pem, f.key_pem))), &bot, &bot_key).await.unwrap_err();
    assert!(e.contains("error sending request"), "{e}");
    // Its own domain's SVID gets through TLS, and is no Warden agent.
    let f = foreign.issue_agent("spiffe://other.example/agent/bot", now_secs() - 60, now_secs() + 600).unwrap();
    let r = call(&h, client(&ca, Some(format!("{}{}", f.cert_pem, f.key_pem))), &bot, &bot_key).await.unwrap();
    assert_eq!(r.status, 401, "{}", r.body);

    // Warden's own CA, but expired.
    let data = h.dir.path().join("warden-data");
    let own =
        Authority::from_pem("warden.local", &std::fs::read_to_string(data.join("ca.pem")).unwrap(), &std::fs::read_to_string(data.join("ca.key.pem")).unwrap())
            .unwrap();
    let old = own.issue_agent(&bot, now_secs() - 7200, now_secs() - 3600).unwrap();
    let e = call(&h, client(&ca, Some(format!("{}{}", old.cert_pem, old.key_pem))), &bot, &bot_key).await.unwrap_err();
    assert!(e.contains("error sending request"), "{e}");

    // Another agent's certificate with this agent's token: 401.
    let r = call(&h, client(&ca, Some(issue(&h, "other"))), &bot, &bot_key).await.unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("the client certificate is {other}'s")), "{msg}");

    // Suspended agents get no certificate.
    h.cli(&["agent", "suspend", "bot"]);
    let out = h.cli_output(&["agent", "issue-cert", "bot", "--out", h.dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only to active agents"), "{}", String::from_utf8_lossy(&out.stderr));
    h.assert_audit_intact();
}

/// `Authorization: Bearer` with no proof: how an RFC 8705 client presents a
/// certificate-bound token.
async fn bearer_call(c: &mut AgentClient, token: &str) -> warden_client::Reply {
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let r = c.post_raw(init.to_string().into_bytes(), Some(format!("Bearer {token}")), None).await.unwrap();
    if r.status != 200 {
        return r;
    }
    c.session = r.session.clone();
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1002" } } });
    c.post_raw(call.to_string().into_bytes(), Some(format!("Bearer {token}")), None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_bound_tokens_work_only_with_their_certificate() {
    let mut h = Harness::start("");
    h.edit_config("refresh_ms = 20", "refresh_ms = 20\n[tls]");
    h.serve();
    h.approve_demo_tools();
    h.register_agent("pinned", "onboarding/customer_lookup", &["--token-binding", "mtls"]);
    let key_path = h.dir.path().join("pinned.pem");
    let key = Keypair::from_pkcs8_pem(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    let id = "spiffe://warden.local/agent/pinned";
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let ca = h.cli(&["agent", "trust-bundle"]);
    let md: serde_json::Value = client(&ca, None).get(format!("{}/.well-known/oauth-authorization-server", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(md["tls_client_certificate_bound_access_tokens"], true);

    // Without its certificate (TLS, but no client certificate): no token.
    let mut c = AgentClient::with_http(&h.base, id, Arc::new(key.clone().into()), client(&ca, None));
    let e = c.fetch_token(None, None).await.unwrap_err().to_string();
    assert!(e.contains("requires certificate-bound tokens") && e.contains("issue-cert pinned"), "{e}");

    // With it: a token bound to the certificate (cnf.x5t#S256), used as a
    // bearer token on that connection only.
    let mut c = AgentClient::with_http(&h.base, id, Arc::new(key.clone().into()), client(&ca, Some(issue(&h, "pinned"))));
    let t = c.fetch_token(None, Some("mtls-task")).await.unwrap();
    assert_eq!(t.token_type, "Bearer");
    let r = bearer_call(&mut c, &t.access_token).await;
    assert!(r.result().unwrap().to_string().contains("Grace Hopper"), "{}", r.body);
    let rec = h.last_audit();
    assert_eq!(rec["event"]["token_binding"], "mtls", "{rec}");

    // The same token with a DPoP scheme, or on a connection with another
    // certificate of the same agent: refused.
    let r = c.post_raw(b"{}".to_vec(), Some(format!("DPoP {}", t.access_token)), Some(c.proof("POST"))).await.unwrap();
    assert_eq!(r.status, 401);
    std::fs::remove_file(h.dir.path().join("pinned.key.pem")).unwrap();
    let mut other = AgentClient::with_http(&h.base, id, Arc::new(key.into()), client(&ca, Some(issue(&h, "pinned"))));
    let r = bearer_call(&mut other, &t.access_token).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("bound to a client certificate"), "{}", r.body);
    h.assert_audit_intact();
}

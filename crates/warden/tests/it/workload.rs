//! Workload identity federation: an agent in a cluster presents the
//! service-account token its platform projected (here signed by a test
//! issuer's RS256 key, published as a JWKS), and gets a task token bound to
//! a key of its own for the session, through the token endpoint or through
//! `warden connect --workload-token`. No registered key is used.

use crate::common::Harness;
use crate::connect::Host;
use serde_json::{Value, json};
use std::sync::Arc;
use warden_client::AgentClient;
use warden_core::clock::now_secs;
use warden_identity::{AgentSigner, JwsAlg, JwsSigner, sign_jws};

const ISS: &str = "https://kubernetes.default.svc.cluster.local";
const SUB: &str = "system:serviceaccount:prod:wl-bot";

fn sa_token(issuer: &AgentSigner, claims: Value) -> String {
    let mut h = serde_json::Map::new();
    h.insert("kid".into(), json!("cluster-key-1"));
    h.insert("typ".into(), json!("JWT"));
    sign_jws(issuer, h, &claims)
}

fn claims(iss: &str, sub: &str, aud: &str, exp: i64) -> Value {
    json!({ "iss": iss, "sub": sub, "aud": [aud], "exp": exp, "iat": now_secs() - 5, "nbf": now_secs() - 5,
            "kubernetes.io": { "namespace": "prod", "serviceaccount": { "name": "wl-bot" } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projected_service_account_token_maps_to_its_agent_and_nothing_else_does() {
    let mut h = Harness::start("");
    let cluster = AgentSigner::generate(JwsAlg::Rs256).unwrap();
    let mut jwk = cluster.public_jwk();
    jwk["kid"] = json!("cluster-key-1");
    jwk["use"] = json!("sig");
    std::fs::write(h.dir.path().join("cluster-jwks.json"), json!({ "keys": [jwk] }).to_string()).unwrap();
    h.edit_config(
        "refresh_ms = 20",
        &format!(
            "refresh_ms = 20\n[[workload_issuer]]\nissuer = \"{ISS}\"\naudience = \"warden\"\njwks_file = \"cluster-jwks.json\"\n[workload_issuer.agents]\n\"{SUB}\" = \"wl-bot\""
        ),
    );
    h.serve();
    h.approve_demo_tools();
    let (id, _registered_key) = h.register("wl-bot", "onboarding/customer_lookup", 2, None);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let md: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", h.base)).await.unwrap().json().await.unwrap();
    assert!(md["grant_types_supported"].to_string().contains("jwt-bearer"), "{md}");

    // A session key of the workload's own: not the registered one.
    let session = || AgentClient::with_http(&h.base, &id, Arc::new(AgentSigner::generate(JwsAlg::EdDSA).unwrap()), reqwest::Client::new());
    let mut c = session();
    let t = c.fetch_token_on_workload(&sa_token(&cluster, claims(ISS, SUB, "warden", now_secs() + 600)), None, Some("wl-task")).await.unwrap();
    assert_eq!(t.token_type, "DPoP");
    assert_eq!(c.initialize().await.unwrap().status, 200);
    let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1002" })).await.unwrap();
    assert!(r.result().unwrap().to_string().contains("Grace Hopper"), "{}", r.body);
    assert_eq!(h.last_audit()["event"]["agent"], id.as_str());

    let refused = |claims: Value, signer: &AgentSigner| {
        let token = sa_token(signer, claims);
        let mut c = session();
        async move { c.fetch_token_on_workload(&token, None, None).await.unwrap_err().to_string() }
    };
    let e = refused(claims(ISS, SUB, "kubernetes", now_secs() + 600), &cluster).await;
    assert!(e.contains("invalid_grant") && e.contains("audience"), "{e}");
    let e = refused(claims("https://evil.example", SUB, "warden", now_secs() + 600), &cluster).await;
    assert!(e.contains("not a configured workload issuer"), "{e}");
    let e = refused(claims(ISS, SUB, "warden", now_secs() - 120), &cluster).await;
    assert!(e.contains("expired"), "{e}");
    let e = refused(claims(ISS, "system:serviceaccount:prod:other", "warden", now_secs() + 600), &cluster).await;
    assert!(e.contains("not mapped to an agent"), "{e}");
    let forger = AgentSigner::generate(JwsAlg::Rs256).unwrap();
    let e = refused(claims(ISS, SUB, "warden", now_secs() + 600), &forger).await;
    assert!(e.contains("verifies its signature"), "{e}");

    // The bridge with the projected token file and no key on disk.
    let file = h.dir.path().join("sa-token");
    std::fs::write(&file, sa_token(&cluster, claims(ISS, SUB, "warden", now_secs() + 600))).unwrap();
    let mut host = Host::spawn(&h, &id, &["--workload-token", file.to_str().unwrap()]);
    assert!(host.initialize()["result"].is_object());
    let r = host.request(2, "tools/call", json!({ "name": "onboarding__customer_lookup", "arguments": { "customer_id": "c-1002" } }));
    assert!(r["result"].to_string().contains("Grace Hopper"), "{r}");
    host.close();

    // Suspending the agent stops its workload too.
    h.cli(&["agent", "suspend", "wl-bot"]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let e = refused(claims(ISS, SUB, "warden", now_secs() + 600), &cluster).await;
    assert!(e.contains("suspended"), "{e}");
    h.assert_audit_intact();
}

#![no_main]
//! The JOSE parsers of untrusted bytes: access tokens, DPoP proofs and
//! client assertions, as raw text and as validly signed JWS over fuzzed
//! headers and claims (so claim validation runs, not only the signature
//! check), workload credentials (the same, signed by a trusted issuer's
//! key), and X.509-SVIDs as raw DER. No panic; an accepted DPoP proof names
//! the key that signed it, a fresh `iat` and a bounded `jti`; an accepted
//! token is unexpired; an accepted workload token is for Warden's audience,
//! unexpired, with a subject; an SVID names one SPIFFE id.

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use warden_identity::{
    Keypair, TokenIssuer, TrustedIssuer, WORKLOAD_SKEW_SECS, assertion_client_id, read_svid, sign_jws, verify_client_assertion, verify_dpop_proof,
    verify_workload_jwt,
};

const NOW: i64 = 1_800_000_000;
const URL: &str = "https://gw.example/mcp";
static KEY: LazyLock<Keypair> = LazyLock::new(Keypair::generate);
static ISSUER: LazyLock<TrustedIssuer> = LazyLock::new(|| {
    let jwks = serde_json::json!({ "keys": [KEY.public().jwk()] });
    TrustedIssuer::from_jwks("https://k8s.example", "warden", &jwks.to_string()).expect("a JWKS of one key")
});

fn check(text: &str) {
    let key = &*KEY;
    if let Ok(c) = TokenIssuer::new(key.clone()).verifier("https://gw.example", URL).verify(text, NOW) {
        assert!(c.exp > NOW && c.nbf <= NOW + 5 && c.iat <= NOW + 5, "accepted an expired or future token");
    }
    if let Ok(p) = verify_dpop_proof(text, "POST", URL, None, NOW, 60) {
        assert!((p.iat - NOW).abs() <= 60 && !p.jti.is_empty() && p.jti.len() <= 256, "accepted a stale or unbounded proof");
        assert_eq!(p.jkt, p.public_key.thumbprint(), "the proof's key is the one that signed it");
    }
    if let Ok(w) = verify_workload_jwt(text, std::slice::from_ref(&*ISSUER), NOW) {
        assert!(
            w.iss == "https://k8s.example" && w.exp + WORKLOAD_SKEW_SECS > NOW && !w.sub.is_empty(),
            "accepted a foreign, expired or anonymous workload token"
        );
    }
    let _ = assertion_client_id(text);
    let _ = verify_client_assertion(text, &key.public().into(), &["https://gw.example/oauth/token"], NOW);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(svid) = read_svid(data) {
        assert!(svid.spiffe_id.starts_with(&format!("spiffe://{}/", svid.trust_domain)), "an SVID names one SPIFFE id");
    }
    check(&String::from_utf8_lossy(data));
    // Header and claims split at the first 0xff byte, signed by KEY.
    let (h, c) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => return,
    };
    let (Ok(serde_json::Value::Object(mut header)), Ok(claims)) = (serde_json::from_slice(h), serde_json::from_slice::<serde_json::Value>(c)) else { return };
    header.entry("jwk").or_insert_with(|| serde_json::to_value(KEY.public().jwk()).expect("jwk"));
    check(&sign_jws(KEY.signing_key(), header, &claims));
});

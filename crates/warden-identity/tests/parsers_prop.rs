//! Property tests: the credential parsers never panic on arbitrary input,
//! and any change to a valid token or proof is refused.

use proptest::prelude::*;
use warden_identity::{
    AccessClaims, Actor, Authority, Confirmation, Keypair, TokenIssuer, TrustedIssuer, b64url, make_dpop_proof, pem_to_der, read_svid, verify_client_assertion,
    verify_dpop_proof, verify_workload_jwt,
};

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "https://gw".into(),
        sub: "alice".into(),
        aud: "https://gw/mcp".into(),
        exp: 2_000,
        iat: 1_000,
        nbf: 1_000,
        jti: "j".into(),
        client_id: "spiffe://td/agent/a".into(),
        scope: "crm/lookup".into(),
        act: Actor { sub: "spiffe://td/agent/a".into(), act: None },
        cnf: Some(Confirmation::key("k")),
        task: "t".into(),
        chain: vec![],
        fed: None,
        auth_time: None,
    }
}

/// A trusted workload issuer whose key is `key`.
fn workload_issuer(key: &Keypair) -> TrustedIssuer {
    let mut jwk = serde_json::to_value(key.public().jwk()).unwrap();
    jwk["kid"] = "k".into();
    TrustedIssuer::from_jwks("https://k8s", "warden", &serde_json::json!({ "keys": [jwk] }).to_string()).unwrap()
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_no_svid(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(read_svid(&b).is_err());
    }

    #[test]
    fn any_change_to_a_certificate_either_breaks_it_or_keeps_one_spiffe_id(pos in 0usize..10_000, byte in any::<u8>()) {
        // read_svid reads before any chain check (it picks the trust
        // domain's bundle), so it must survive any bytes a client sends.
        let ca = Authority::generate("td.example", 1_800_000_000).unwrap();
        let mut der = pem_to_der(&ca.issue_agent("spiffe://td.example/agent/a", 1_800_000_000, 1_800_003_600).unwrap().cert_pem).unwrap();
        let pos = pos % der.len();
        der[pos] = byte;
        if let Ok(svid) = read_svid(&der) {
            let prefix = format!("spiffe://{}/", svid.trust_domain);
            prop_assert!(svid.spiffe_id.starts_with(&prefix), "{}", svid.spiffe_id);
        }
    }

    #[test]
    fn workload_tokens_signed_over_arbitrary_claims_are_accepted_only_when_valid(claims in proptest::collection::btree_map("[a-z]{1,4}", any::<i64>(), 0..6), exp in any::<i64>(), aud in "warden|other") {
        let key = Keypair::generate();
        let mut c = serde_json::to_value(&claims).unwrap();
        c["iss"] = "https://k8s".into();
        c["sub"] = "system:serviceaccount:a:b".into();
        c["aud"] = aud.clone().into();
        c["exp"] = exp.into();
        let mut h = serde_json::Map::new();
        h.insert("kid".into(), "k".into());
        let token = warden_identity::sign_jws(key.signing_key(), h, &c);
        match verify_workload_jwt(&token, &[workload_issuer(&key)], 1_800_000_000) {
            Ok(w) => prop_assert!(aud == "warden" && w.exp.saturating_add(60) > 1_800_000_000),
            Err(_) => prop_assert!(aud != "warden" || exp.saturating_add(60) <= 1_800_000_000 || claims.contains_key("nbf")),
        }
    }

    #[test]
    fn arbitrary_strings_are_refused_without_panic(s in ".{0,400}") {
        prop_assert!(verify_workload_jwt(&s, &[workload_issuer(&Keypair::generate())], 1_500).is_err());
        let key = Keypair::generate();
        let v = TokenIssuer::new(key.clone()).verifier("https://gw", "https://gw/mcp");
        prop_assert!(v.verify(&s, 1_500).is_err());
        prop_assert!(verify_dpop_proof(&s, "POST", "https://gw/mcp", None, 1_500, 60).is_err());
        prop_assert!(verify_client_assertion(&s, &key.public().into(), &["https://gw"], 1_500).is_err());
    }

    #[test]
    fn jws_shaped_garbage_is_refused(h in proptest::collection::vec(any::<u8>(), 0..120), p in proptest::collection::vec(any::<u8>(), 0..300), sig in proptest::collection::vec(any::<u8>(), 0..80)) {
        let token = format!("{}.{}.{}", b64url(&h), b64url(&p), b64url(&sig));
        let key = Keypair::generate();
        let v = TokenIssuer::new(key).verifier("https://gw", "https://gw/mcp");
        prop_assert!(v.verify(&token, 1_500).is_err());
        prop_assert!(verify_dpop_proof(&token, "POST", "https://gw/mcp", None, 1_500, 60).is_err());
    }

    #[test]
    fn any_single_character_change_to_a_token_is_refused(pos in 0usize..10_000, replacement in "[A-Za-z0-9_-]") {
        let issuer = TokenIssuer::new(Keypair::generate());
        let token = issuer.issue(&claims());
        let pos = pos % token.len();
        prop_assume!(&token[pos..pos + 1] != "." && token[pos..pos + 1] != replacement);
        let mut t = token.clone();
        t.replace_range(pos..pos + 1, &replacement);
        let v = issuer.verifier("https://gw", "https://gw/mcp");
        // A flip in the last character may only touch padding bits of the
        // signature's base64; anything else must fail.
        if pos != token.len() - 1 {
            prop_assert!(v.verify(&t, 1_500).is_err());
        }
    }

    #[test]
    fn any_single_character_change_to_a_proof_is_refused(pos in 0usize..10_000, replacement in "[A-Za-z0-9_-]") {
        let key = Keypair::generate();
        let proof = make_dpop_proof(&key, "POST", "https://gw/mcp", Some("tok"), 1_000);
        let pos = pos % proof.len();
        prop_assume!(&proof[pos..pos + 1] != "." && proof[pos..pos + 1] != replacement && pos != proof.len() - 1);
        let mut t = proof.clone();
        t.replace_range(pos..pos + 1, &replacement);
        prop_assert!(verify_dpop_proof(&t, "POST", "https://gw/mcp", Some("tok"), 1_000, 60).is_err());
    }
}

//! Property tests: the credential parsers never panic on arbitrary input,
//! and any change to a valid token or proof is refused.

use proptest::prelude::*;
use warden_identity::{AccessClaims, Actor, Confirmation, Keypair, TokenIssuer, b64url, make_dpop_proof, verify_client_assertion, verify_dpop_proof};

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
    }
}

proptest! {
    #[test]
    fn arbitrary_strings_are_refused_without_panic(s in ".{0,400}") {
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

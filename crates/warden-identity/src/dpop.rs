use crate::IdentityError;
use crate::agent_key::AgentKey;
use crate::jose::{b64url, sign_jws, split_jws};
use crate::signer::JwsSigner;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[derive(Debug, Serialize, Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    /// A nonce the server supplied (RFC 9449 §8, §9); Warden issues none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

/// A verified DPoP proof: the key it proves possession of and its jti, which
/// the caller must check against a [`ReplayCache`].
#[derive(Debug, Clone)]
pub struct DpopProof {
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    pub public_key: AgentKey,
}

/// Create a DPoP proof (client side; used by the demo agent and tests).
pub fn make_dpop_proof(key: &impl JwsSigner, method: &str, url: &str, access_token: Option<&str>, now: i64) -> String {
    make_dpop_proof_with_nonce(key, method, url, access_token, None, now)
}

/// A DPoP proof carrying the `nonce` a server asked for with a
/// `use_dpop_nonce` error (RFC 9449 §8 at a token endpoint, §9 at a resource).
pub fn make_dpop_proof_with_nonce(key: &impl JwsSigner, method: &str, url: &str, access_token: Option<&str>, nonce: Option<&str>, now: i64) -> String {
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).expect("OS random source available");
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), "dpop+jwt".into());
    header.insert("jwk".into(), key.public_jwk());
    let claims = ProofClaims {
        jti: b64url(&jti),
        htm: method.to_string(),
        htu: strip_query(url).to_string(),
        iat: now,
        ath: access_token.map(|t| b64url(&Sha256::digest(t.as_bytes()))),
        nonce: nonce.map(str::to_string),
    };
    sign_jws(key, header, &claims)
}

fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// `htu` names the request's URL (RFC 9449 §4.3): scheme and authority
/// compare case-insensitively (RFC 3986 §6.2.2.1), the path exactly.
fn same_target(htu: &str, url: &str) -> bool {
    fn split(u: &str) -> Option<(&str, &str)> {
        let (scheme, rest) = u.split_once("://")?;
        let at = rest.find('/').unwrap_or(rest.len());
        Some((&u[..scheme.len() + 3 + at], &rest[at..]))
    }
    match (split(htu), split(url)) {
        (Some((a, ap)), Some((b, bp))) => a.eq_ignore_ascii_case(b) && ap == bp,
        _ => false,
    }
}

/// Verify a DPoP proof (RFC 9449 §4.3) for a request `method url`. With
/// `access_token`, the proof must carry its hash (`ath`). `max_skew` bounds
/// how far `iat` may be from `now`, which also bounds the replay window.
pub fn verify_dpop_proof(proof: &str, method: &str, url: &str, access_token: Option<&str>, now: i64, max_skew: i64) -> Result<DpopProof, IdentityError> {
    let bad = |m: &str| IdentityError::Dpop(m.to_string());
    let jws = split_jws(proof).map_err(|e| IdentityError::Dpop(e.to_string()))?;
    jws.expect_typ("dpop+jwt").map_err(|e| IdentityError::Dpop(e.to_string()))?;
    let jwk = jws.header.get("jwk").ok_or_else(|| bad("missing jwk header"))?;
    // RFC 9449 §4.3: the header carries the public key only (a proof that
    // ships private parameters comes from a client that leaks its key);
    // its type fixes the algorithm the proof must use.
    let key = AgentKey::from_jwk(jwk).map_err(|e| IdentityError::Dpop(format!("jwk header: {e}")))?;
    let c: ProofClaims = jws.verify(&key).map_err(|e| match e {
        IdentityError::Signature => bad("signature does not verify with the embedded jwk"),
        other => IdentityError::Dpop(other.to_string()),
    })?;
    if !c.htm.eq(method) {
        return Err(bad(&format!("htm {:?} does not match the request method {method}", c.htm)));
    }
    if !same_target(strip_query(&c.htu), strip_query(url)) {
        return Err(bad(&format!("htu {:?} does not match the request URL {:?}", c.htu, strip_query(url))));
    }
    if (c.iat - now).abs() > max_skew {
        return Err(bad("iat is outside the accepted window; check the client clock"));
    }
    if c.jti.is_empty() || c.jti.len() > 256 {
        return Err(bad("jti must be 1-256 characters"));
    }
    if let Some(token) = access_token {
        let expected = b64url(&Sha256::digest(token.as_bytes()));
        if c.ath.as_deref() != Some(expected.as_str()) {
            return Err(bad("ath does not match the access token"));
        }
    }
    Ok(DpopProof { jkt: key.thumbprint(), jti: c.jti, iat: c.iat, public_key: key })
}

/// What a [`ReplayCache`] knows of a one-time identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// Not seen before; now remembered until it expires.
    First,
    /// Seen before and not yet expired: a replay.
    Replay,
    /// Not seen, but the cache is full and did not remember it: the caller
    /// must decide from a durable record (or refuse).
    Full,
}

/// Remembers one-time identifiers (DPoP and assertion `jti`) until they
/// expire, in memory: the fast path that refuses a replay on the same
/// process without a database round trip. Bounded; when full after pruning
/// it remembers nothing more and says so ([`ReplayCheck::Full`]).
#[derive(Debug)]
pub struct ReplayCache {
    seen: HashMap<String, i64>,
    capacity: usize,
    last_prune: i64,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self { seen: HashMap::new(), capacity, last_prune: 0 }
    }

    /// Record `id` until `expires_at`, unless it was already seen.
    pub fn check_and_insert(&mut self, id: &str, expires_at: i64, now: i64) -> ReplayCheck {
        if self.seen.len() >= self.capacity || now - self.last_prune > 5 {
            self.seen.retain(|_, exp| *exp > now);
            self.last_prune = now;
        }
        if self.seen.get(id).is_some_and(|exp| *exp > now) {
            return ReplayCheck::Replay;
        }
        if self.seen.len() >= self.capacity {
            return ReplayCheck::Full;
        }
        self.seen.insert(id.to_string(), expires_at);
        ReplayCheck::First
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_key::PRIVATE_JWK_MEMBERS;
    use crate::{AgentSigner, JwsAlg, Keypair};

    const URL: &str = "https://gw.example/mcp";

    #[test]
    fn valid_proof_binds_key_method_url_and_token() {
        let k = Keypair::generate();
        let p = make_dpop_proof(&k, "POST", URL, Some("tok"), 1000);
        let v = verify_dpop_proof(&p, "POST", URL, Some("tok"), 1010, 60).unwrap();
        assert_eq!(v.jkt, k.public().kid());
        assert!(verify_dpop_proof(&p, "GET", URL, Some("tok"), 1000, 60).is_err());
        assert!(verify_dpop_proof(&p, "POST", "https://other/mcp", Some("tok"), 1000, 60).is_err());
        assert!(verify_dpop_proof(&p, "POST", URL, Some("other"), 1000, 60).is_err());
        assert!(verify_dpop_proof(&p, "POST", URL, Some("tok"), 2000, 60).is_err());
    }

    #[test]
    fn htu_path_is_case_sensitive_while_scheme_and_host_are_not() {
        let k = Keypair::generate();
        let p = make_dpop_proof(&k, "POST", "HTTPS://GW.Example/mcp", None, 1000);
        assert!(verify_dpop_proof(&p, "POST", URL, None, 1000, 60).is_ok());
        let p = make_dpop_proof(&k, "POST", "https://gw.example/MCP", None, 1000);
        assert!(verify_dpop_proof(&p, "POST", URL, None, 1000, 60).is_err(), "another path is another resource");
        let p = make_dpop_proof(&k, "POST", "https://gw.example.evil/mcp", None, 1000);
        assert!(verify_dpop_proof(&p, "POST", URL, None, 1000, 60).is_err());
        let p = make_dpop_proof(&k, "POST", "gw.example/mcp", None, 1000);
        assert!(verify_dpop_proof(&p, "POST", URL, None, 1000, 60).is_err(), "not a URL");
    }

    #[test]
    fn a_proof_carrying_private_key_material_is_refused() {
        let k = Keypair::generate();
        for member in PRIVATE_JWK_MEMBERS {
            let mut jwk = k.public_jwk();
            jwk[*member] = "AAAA".into();
            let mut header = serde_json::Map::new();
            header.insert("typ".into(), "dpop+jwt".into());
            header.insert("jwk".into(), jwk);
            let claims = ProofClaims { jti: "j".into(), htm: "POST".into(), htu: URL.into(), iat: 1000, ath: None, nonce: None };
            let proof = sign_jws(&k, header, &claims);
            let e = verify_dpop_proof(&proof, "POST", URL, None, 1000, 60).unwrap_err();
            assert!(e.to_string().contains("private key material"), "{member}: {e}");
        }
    }

    #[test]
    fn proofs_by_p256_and_rsa_keys_verify_and_a_header_alg_other_than_the_keys_is_refused() {
        for alg in [JwsAlg::Es256, JwsAlg::Rs256] {
            let k = AgentSigner::generate(alg).unwrap();
            let p = make_dpop_proof(&k, "POST", URL, Some("tok"), 1000);
            assert_eq!(verify_dpop_proof(&p, "POST", URL, Some("tok"), 1000, 60).unwrap().jkt, k.public().thumbprint());
            // The same signature under a header claiming EdDSA: the key's type decides.
            let (h, rest) = p.split_once('.').unwrap();
            let mut header: serde_json::Value = serde_json::from_slice(&crate::b64url_decode(h).unwrap()).unwrap();
            header["alg"] = "EdDSA".into();
            let forged = format!("{}.{rest}", b64url(header.to_string().as_bytes()));
            let e = verify_dpop_proof(&forged, "POST", URL, Some("tok"), 1000, 60).unwrap_err();
            assert!(e.to_string().contains(&format!("which verifies only {} signatures", alg.as_str())), "{e}");
        }
    }

    #[test]
    fn tampered_proof_fails() {
        let k = Keypair::generate();
        let p = make_dpop_proof(&k, "POST", URL, None, 1000);
        let other = Keypair::generate();
        // Swap in another key's jwk: signature no longer verifies.
        let parts: Vec<&str> = p.split('.').collect();
        let q = make_dpop_proof(&other, "POST", URL, None, 1000);
        let forged = format!("{}.{}.{}", q.split('.').next().unwrap(), parts[1], parts[2]);
        assert!(matches!(verify_dpop_proof(&forged, "POST", URL, None, 1000, 60), Err(IdentityError::Dpop(_))));
    }

    #[test]
    fn replay_cache_detects_reuse_and_expires() {
        let mut c = ReplayCache::new(2);
        assert_eq!(c.check_and_insert("a", 10, 0), ReplayCheck::First);
        assert_eq!(c.check_and_insert("a", 10, 1), ReplayCheck::Replay);
        assert_eq!(c.check_and_insert("b", 10, 1), ReplayCheck::First);
        assert_eq!(c.check_and_insert("c", 10, 1), ReplayCheck::Full, "a full cache remembers nothing more and says so");
        assert_eq!(c.check_and_insert("a", 10, 1), ReplayCheck::Replay, "a full cache still knows what it holds");
        assert_eq!(c.check_and_insert("c", 30, 11), ReplayCheck::First, "expired entries are pruned");
        assert_eq!(c.check_and_insert("a", 30, 11), ReplayCheck::First);
    }
}

//! Workload identity federation: a JWT that a workload platform issued to
//! an agent's workload (a Kubernetes projected service-account token, a
//! SPIFFE JWT-SVID) is verified against the issuer's keys an operator
//! configured (a JWKS), so an agent in a cluster proves who it is with the
//! credential its platform rotates, and no long-lived secret sits on disk.
//! It is the assertion of an RFC 7523 §2.1 `jwt-bearer` grant. Pure: the
//! JWKS text and `now` come from the caller.

use crate::IdentityError;
use crate::agent_key::AgentKey;
use crate::jose::split_jws;
use serde::Deserialize;
use serde_json::Value;

/// Clock difference accepted on `exp` and `nbf` of a workload token.
pub const WORKLOAD_SKEW_SECS: i64 = 60;

/// One issuer of workload credentials Warden trusts, with its keys.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub issuer: String,
    /// The audience its tokens must name for Warden (never accepted
    /// without one: a token for another service is not Warden's).
    pub audience: String,
    keys: Vec<(Option<String>, AgentKey)>,
}

/// The claims of a verified workload token that Warden reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkloadClaims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
}

#[derive(Deserialize)]
struct Unverified {
    iss: String,
    sub: String,
    exp: i64,
}

/// What [`verify_issued`] checks of any issuer's JWT.
#[derive(Deserialize)]
struct Times {
    aud: Value,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

fn bad(why: impl Into<String>) -> IdentityError {
    IdentityError::Assertion(format!("workload token: {}", why.into()))
}

impl TrustedIssuer {
    /// From the issuer's JWKS (`{"keys": [...]}`); keys of types Warden does
    /// not verify (or `use: enc`) are skipped, and a JWKS with none left is
    /// an error.
    pub fn from_jwks(issuer: &str, audience: &str, jwks: &str) -> Result<Self, IdentityError> {
        let v: Value = serde_json::from_str(jwks).map_err(|e| IdentityError::Key(format!("JWKS of {issuer}: {e}")))?;
        let list = v.get("keys").and_then(Value::as_array).ok_or_else(|| IdentityError::Key(format!("JWKS of {issuer}: no \"keys\" array")))?;
        let keys: Vec<_> = list
            .iter()
            .filter(|k| k.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig"))
            .filter_map(|k| Some((k.get("kid").and_then(Value::as_str).map(str::to_string), AgentKey::from_jwk(&strip(k)).ok()?)))
            .collect();
        if keys.is_empty() {
            return Err(IdentityError::Key(format!("JWKS of {issuer}: no EdDSA, ES256 or RS256 signing key")));
        }
        if audience.is_empty() {
            return Err(IdentityError::Key(format!("workload issuer {issuer}: an audience is required")));
        }
        Ok(Self { issuer: issuer.into(), audience: audience.into(), keys })
    }
}

/// The public members of a JWK, without `kid`/`use`/`alg` bookkeeping that
/// the key parser does not take.
fn strip(jwk: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for m in ["kty", "crv", "x", "y", "n", "e"] {
        if let Some(v) = jwk.get(m) {
            out.insert(m.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// Verify `jwt` against the issuer it names among `trusted`: a key of that
/// issuer (the one its `kid` names, or any when it names none) verifies the
/// signature by the key's own algorithm, the audience is the issuer's
/// configured one, and it is unexpired and already valid (within
/// [`WORKLOAD_SKEW_SECS`]).
pub fn verify_workload_jwt<'a>(jwt: &str, trusted: impl IntoIterator<Item = &'a TrustedIssuer>, now: i64) -> Result<WorkloadClaims, IdentityError> {
    let jws = split_jws(jwt).map_err(|e| bad(e.to_string()))?;
    let claimed: Unverified = serde_json::from_value(jws.unverified_claims()?).map_err(|e| bad(format!("claims: {e}")))?;
    let issuer = trusted
        .into_iter()
        .find(|t| t.issuer == claimed.iss)
        .ok_or_else(|| bad(format!("issuer {} is not a configured workload issuer", warden_core::untrusted_text(&claimed.iss, 120))))?;
    let verified: Unverified = verify_issued(&jws, issuer, now).map_err(|e| bad(e.to_string()))?;
    if verified.sub.is_empty() {
        return Err(bad("no subject"));
    }
    Ok(WorkloadClaims { iss: verified.iss, sub: verified.sub, exp: verified.exp })
}

/// Verify an OpenID Connect ID token (OIDC Core §3.1.3.7) that `issuer` (an
/// IdP with Warden as its client: `audience` is Warden's client id there)
/// issued for the sign-in whose nonce is `nonce`. Returns all its claims.
pub fn verify_id_token(jwt: &str, issuer: &TrustedIssuer, nonce: &str, now: i64) -> Result<Value, IdentityError> {
    let refused = |why: String| IdentityError::Assertion(format!("ID token: {why}"));
    let jws = split_jws(jwt).map_err(|e| refused(e.to_string()))?;
    let claims: Value = verify_issued(&jws, issuer, now).map_err(|e| refused(e.to_string()))?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    if iss != issuer.issuer {
        return Err(refused(format!("issued by {}, not by {}", warden_core::untrusted_text(iss, 120), issuer.issuer)));
    }
    // With several audiences the authorized party must be Warden (§2);
    // an `azp` present must be Warden in any case (§3.1.3.7).
    let several = matches!(claims.get("aud"), Some(Value::Array(aud)) if aud.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != issuer.audience => return Err(refused(format!("its azp is not {}", issuer.audience))),
        None if several => return Err(refused(format!("it has several audiences and no azp naming {}", issuer.audience))),
        _ => {}
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(refused("its nonce is not this sign-in's (a replayed or injected token)".into()));
    }
    if claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(refused("no subject".into()));
    }
    Ok(claims)
}

/// The checks every JWT of a trusted issuer passes: a key of the issuer
/// (the one its `kid` names; when none does, or it names none, every key is
/// tried and the signature decides) verifies it by that key's own
/// algorithm, its audience is the issuer's configured one, and it is
/// unexpired and already valid (within [`WORKLOAD_SKEW_SECS`]).
fn verify_issued<T: serde::de::DeserializeOwned>(jws: &crate::jose::Jws<'_>, issuer: &TrustedIssuer, now: i64) -> Result<T, String> {
    let kid = jws.header.get("kid").and_then(Value::as_str);
    let named: Vec<&AgentKey> = issuer.keys.iter().filter(|(k, _)| kid.is_some() && k.as_deref() == kid).map(|(_, key)| key).collect();
    let candidates = if named.is_empty() { issuer.keys.iter().map(|(_, key)| key).collect() } else { named };
    let claims: Value =
        candidates.into_iter().find_map(|key| jws.verify::<Value>(key).ok()).ok_or_else(|| format!("no key of {} verifies its signature", issuer.issuer))?;
    let times: Times = serde_json::from_value(claims.clone()).map_err(|e| format!("claims: {e}"))?;
    let aud_ok = match &times.aud {
        Value::String(a) => *a == issuer.audience,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(issuer.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(format!("its audience is not {}", issuer.audience));
    }
    if times.exp + WORKLOAD_SKEW_SECS <= now {
        return Err("expired".into());
    }
    if times.nbf.is_some_and(|nbf| nbf > now + WORKLOAD_SKEW_SECS) {
        return Err("not yet valid".into());
    }
    serde_json::from_value(claims).map_err(|e| format!("claims: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_key::JwsAlg;
    use crate::jose::sign_jws;
    use crate::signer::{AgentSigner, JwsSigner};
    use serde_json::json;

    const ISS: &str = "https://kubernetes.default.svc.cluster.local";
    const NOW: i64 = 1_800_000_000;

    fn jwks(signers: &[(&str, &AgentSigner)]) -> String {
        let keys: Vec<Value> = signers
            .iter()
            .map(|(kid, s)| {
                let mut k = s.public_jwk();
                k["kid"] = json!(kid);
                k["use"] = json!("sig");
                k
            })
            .collect();
        json!({ "keys": keys }).to_string()
    }

    fn token(s: &AgentSigner, kid: &str, claims: Value) -> String {
        let mut h = serde_json::Map::new();
        h.insert("kid".into(), json!(kid));
        h.insert("typ".into(), json!("JWT"));
        sign_jws(s, h, &claims)
    }

    fn sa(aud: Value, exp: i64) -> Value {
        json!({ "iss": ISS, "sub": "system:serviceaccount:prod:support-bot", "aud": aud, "exp": exp, "iat": NOW - 10, "nbf": NOW - 10 })
    }

    #[test]
    fn a_service_account_token_of_a_configured_issuer_verifies_with_each_key_type() {
        for alg in [JwsAlg::Rs256, JwsAlg::Es256, JwsAlg::EdDSA] {
            let s = AgentSigner::generate(alg).unwrap();
            let trusted = [TrustedIssuer::from_jwks(ISS, "warden", &jwks(&[("k1", &s)])).unwrap()];
            let c = verify_workload_jwt(&token(&s, "k1", sa(json!(["warden", "api"]), NOW + 600)), &trusted, NOW).unwrap();
            assert_eq!(c.sub, "system:serviceaccount:prod:support-bot", "{alg:?}");
            assert_eq!(c.iss, ISS);
        }
    }

    #[test]
    fn wrong_issuer_audience_key_or_time_is_refused() {
        let s = AgentSigner::generate(JwsAlg::Rs256).unwrap();
        let other = AgentSigner::generate(JwsAlg::Rs256).unwrap();
        let trusted = [TrustedIssuer::from_jwks(ISS, "warden", &jwks(&[("k1", &s)])).unwrap()];
        let refused = |t: String, why: &str| {
            let e = verify_workload_jwt(&t, &trusted, NOW).unwrap_err().to_string();
            assert!(e.contains(why), "{e} (expected {why})");
        };
        refused(token(&s, "k1", sa(json!("kubernetes"), NOW + 600)), "audience");
        refused(token(&s, "k1", sa(json!("warden"), NOW - 61)), "expired");
        refused(token(&other, "k1", sa(json!("warden"), NOW + 600)), "verifies its signature");
        let mut c = sa(json!("warden"), NOW + 600);
        c["iss"] = json!("https://evil.example");
        refused(token(&s, "k1", c), "not a configured workload issuer");
        let mut c = sa(json!("warden"), NOW + 600);
        c["nbf"] = json!(NOW + 3600);
        refused(token(&s, "k1", c), "not yet valid");
    }

    #[test]
    fn an_id_token_verifies_only_for_its_issuer_audience_and_nonce() {
        const IDP: &str = "https://idp.example";
        let s = AgentSigner::generate(JwsAlg::Rs256).unwrap();
        let idp = TrustedIssuer::from_jwks(IDP, "warden", &jwks(&[("k1", &s)])).unwrap();
        let id = |f: &dyn Fn(&mut Value)| {
            let mut c = json!({ "iss": IDP, "sub": "u-1", "aud": "warden", "exp": NOW + 300, "iat": NOW, "nonce": "n1", "email": "alice@example.com" });
            f(&mut c);
            token(&s, "k1", c)
        };
        let claims = verify_id_token(&id(&|_| {}), &idp, "n1", NOW).unwrap();
        assert_eq!(claims["email"], "alice@example.com");
        let refused = |t: String, why: &str| {
            let e = verify_id_token(&t, &idp, "n1", NOW).unwrap_err().to_string();
            assert!(e.contains(why), "{e} (expected {why})");
        };
        refused(id(&|c| c["nonce"] = json!("n2")), "nonce");
        refused(
            id(&|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            "nonce",
        );
        refused(id(&|c| c["iss"] = json!("https://evil.example")), "issued by");
        refused(id(&|c| c["aud"] = json!("someone-else")), "audience");
        refused(id(&|c| c["aud"] = json!(["warden", "other"])), "azp");
        refused(id(&|c| c["azp"] = json!("other")), "azp");
        refused(id(&|c| c["exp"] = json!(NOW - 120)), "expired");
        refused(id(&|c| c["sub"] = json!("")), "no subject");
        let other = AgentSigner::generate(JwsAlg::Rs256).unwrap();
        let forged = token(&other, "k1", json!({ "iss": IDP, "sub": "u-1", "aud": "warden", "exp": NOW + 300, "nonce": "n1" }));
        refused(forged, "verifies its signature");
        let several = json!({ "iss": IDP, "sub": "u-1", "aud": ["warden", "other"], "azp": "warden", "exp": NOW + 300, "nonce": "n1" });
        assert!(verify_id_token(&token(&s, "k1", several), &idp, "n1", NOW).is_ok());
    }

    #[test]
    fn a_jwks_without_usable_keys_or_an_issuer_without_audience_is_a_configuration_error() {
        assert!(TrustedIssuer::from_jwks(ISS, "warden", r#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#).is_err());
        assert!(TrustedIssuer::from_jwks(ISS, "warden", "not json").is_err());
        let s = AgentSigner::generate(JwsAlg::Es256).unwrap();
        assert!(TrustedIssuer::from_jwks(ISS, "", &jwks(&[("k", &s)])).is_err());
    }
}

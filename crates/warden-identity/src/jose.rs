use crate::IdentityError;
use crate::agent_key::{AgentKey, JwsAlg};
use crate::signer::JwsSigner;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(s: &str) -> Result<Vec<u8>, IdentityError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| IdentityError::Malformed("invalid base64url".into()))
}

/// Sign `claims` as a compact JWS with the key's algorithm and the given header fields.
pub fn sign_jws(key: &impl JwsSigner, mut header: serde_json::Map<String, Value>, claims: &impl Serialize) -> String {
    header.insert("alg".into(), key.alg().as_str().into());
    let h = b64url(&serde_json::to_vec(&header).expect("header serializes"));
    let c = b64url(&serde_json::to_vec(claims).expect("claims serialize"));
    let input = format!("{h}.{c}");
    let sig = key.sign_bytes(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

/// A parsed but not yet verified compact JWS.
pub struct Jws<'a> {
    alg: JwsAlg,
    pub header: serde_json::Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

/// Split and decode a compact JWS. Refuses any algorithm but EdDSA, ES256
/// and RS256 before any signature work (`alg: none`, HMAC); which of them
/// verifies is the key's to say ([`Jws::verify`]).
pub fn split_jws(token: &str) -> Result<Jws<'_>, IdentityError> {
    if token.len() > 16 * 1024 {
        return Err(IdentityError::Malformed("longer than 16 KiB".into()));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(IdentityError::Malformed("expected three dot-separated parts".into()));
    };
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&b64url_decode(h)?).map_err(|_| IdentityError::Malformed("header is not a JSON object".into()))?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some(a) => JwsAlg::from_header(a).ok_or_else(|| IdentityError::Algorithm(a.into()))?,
        None => return Err(IdentityError::Algorithm("missing".into())),
    };
    if header.contains_key("crit") {
        return Err(IdentityError::Malformed("unsupported crit header".into()));
    }
    Ok(Jws { alg, header, signing_input: &token[..h.len() + 1 + p.len()], signature: b64url_decode(s)?, payload: b64url_decode(p)? })
}

impl Jws<'_> {
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    pub fn expect_typ(&self, expected: &'static str) -> Result<(), IdentityError> {
        match self.typ() {
            Some(t) if t.eq_ignore_ascii_case(expected) => Ok(()),
            other => Err(IdentityError::Type { expected, found: other.unwrap_or("none").into() }),
        }
    }

    /// Verify the signature with `key`, by the one algorithm its type
    /// allows (a header naming another is refused), and decode the claims.
    pub fn verify<T: DeserializeOwned>(&self, key: &AgentKey) -> Result<T, IdentityError> {
        key.verify(self.alg, self.signing_input.as_bytes(), &self.signature)?;
        serde_json::from_slice(&self.payload).map_err(|e| IdentityError::Malformed(format!("claims: {e}")))
    }

    /// Claims without verification, only to find which key must verify them.
    pub fn unverified_claims(&self) -> Result<Value, IdentityError> {
        serde_json::from_slice(&self.payload).map_err(|e| IdentityError::Malformed(format!("claims: {e}")))
    }
}

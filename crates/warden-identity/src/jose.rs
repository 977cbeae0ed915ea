use crate::{IdentityError, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(s: &str) -> Result<Vec<u8>, IdentityError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| IdentityError::Malformed("invalid base64url".into()))
}

/// Sign `claims` as a compact JWS with `alg: EdDSA` and the given header fields.
pub fn sign_jws(key: &SigningKey, mut header: serde_json::Map<String, Value>, claims: &impl Serialize) -> String {
    header.insert("alg".into(), "EdDSA".into());
    let h = b64url(&serde_json::to_vec(&header).expect("header serializes"));
    let c = b64url(&serde_json::to_vec(claims).expect("claims serialize"));
    let input = format!("{h}.{c}");
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig.to_bytes()))
}

/// A parsed but not yet verified compact JWS.
pub struct Jws<'a> {
    pub header: serde_json::Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

/// Split and decode a compact JWS. Refuses anything but EdDSA before any
/// signature work, so `alg: none` and algorithm confusion are impossible.
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
    match header.get("alg").and_then(Value::as_str) {
        Some("EdDSA") => {}
        other => return Err(IdentityError::Algorithm(other.unwrap_or("missing").into())),
    }
    if header.contains_key("crit") {
        return Err(IdentityError::Malformed("unsupported crit header".into()));
    }
    Ok(Jws { header, signing_input: &token[..h.len() + 1 + p.len()], signature: b64url_decode(s)?, payload: b64url_decode(p)? })
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

    /// Verify the signature with `key` and decode the claims.
    pub fn verify<T: DeserializeOwned>(&self, key: &PublicKey) -> Result<T, IdentityError> {
        key.verify(self.signing_input.as_bytes(), &self.signature)?;
        serde_json::from_slice(&self.payload).map_err(|e| IdentityError::Malformed(format!("claims: {e}")))
    }

    /// Claims without verification, only to find which key must verify them.
    pub fn unverified_claims(&self) -> Result<Value, IdentityError> {
        serde_json::from_slice(&self.payload).map_err(|e| IdentityError::Malformed(format!("claims: {e}")))
    }
}

use crate::IdentityError;
use crate::jose::{b64url, b64url_decode};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// An Ed25519 key pair (agent identity or the gateway's signing key).
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair(kid={})", self.public().kid())
    }
}

impl Keypair {
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("OS random source available");
        Self(SigningKey::from_bytes(&seed))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, IdentityError> {
        SigningKey::from_pkcs8_pem(pem).map(Self).map_err(|e| IdentityError::Key(format!("not an Ed25519 PKCS#8 private key: {e}")))
    }

    /// PKCS#8 v1 (RFC 8410) PEM: the form OpenSSL, Node and Go all read.
    pub fn to_pkcs8_pem(&self) -> String {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes { secret_key: self.0.to_bytes(), public_key: None };
        bytes.to_pkcs8_pem(Default::default()).expect("Ed25519 key encodes").to_string()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(msg).to_bytes()
    }
}

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub(crate) VerifyingKey);

impl PublicKey {
    /// From the base64url `x` of an OKP JWK (how the registry stores keys).
    pub fn from_b64(x: &str) -> Result<Self, IdentityError> {
        let bytes: [u8; 32] = b64url_decode(x)?.try_into().map_err(|_| IdentityError::Key("Ed25519 public key must be 32 bytes".into()))?;
        VerifyingKey::from_bytes(&bytes).map(Self).map_err(|_| IdentityError::Key("not a valid Ed25519 point".into()))
    }

    /// From SPKI PEM (`-----BEGIN PUBLIC KEY-----`) or a raw base64url key.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let t = text.trim();
        if t.starts_with("-----BEGIN PUBLIC KEY") {
            VerifyingKey::from_public_key_pem(t).map(Self).map_err(|e| IdentityError::Key(format!("not an Ed25519 SPKI public key: {e}")))
        } else if t.starts_with("-----BEGIN PRIVATE KEY") {
            Err(IdentityError::Key("this is a private key; register the public key only".into()))
        } else {
            Self::from_b64(t)
        }
    }

    pub fn to_b64(&self) -> String {
        b64url(self.0.as_bytes())
    }

    /// The raw 32-byte key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn to_spki_pem(&self) -> String {
        self.0.to_public_key_pem(Default::default()).expect("Ed25519 key encodes")
    }

    pub fn jwk(&self) -> Jwk {
        Jwk { kty: "OKP".into(), crv: "Ed25519".into(), x: self.to_b64(), kid: None, alg: None, r#use: None }
    }

    /// RFC 7638 thumbprint, used as `kid` and as DPoP `cnf.jkt`.
    pub fn kid(&self) -> String {
        crate::AgentKey::Ed25519(*self).thumbprint()
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), IdentityError> {
        let sig = Signature::from_slice(sig).map_err(|_| IdentityError::Signature)?;
        self.0.verify_strict(msg, &sig).map_err(|_| IdentityError::Signature)
    }
}

/// The gateway's public JWK as its JWKS publishes it (OKP / Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "use")]
    pub r#use: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let k = Keypair::generate();
        let back = Keypair::from_pkcs8_pem(&k.to_pkcs8_pem()).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(PublicKey::parse(&k.public().to_spki_pem()).unwrap(), k.public());
        assert!(PublicKey::parse(&k.to_pkcs8_pem()).is_err());
    }
}

//! Signing JWS with an agent's private key of any accepted type (client
//! side: `warden agent register --generate-key`, the demo, tests).

use crate::IdentityError;
use crate::agent_key::{AgentKey, JwsAlg};
use crate::keys::Keypair;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::{self, LineEnding};
use serde_json::Value;

/// Something that signs a JWS: the algorithm and public JWK go in the
/// header, the signature over the signing input at the end.
pub trait JwsSigner {
    fn alg(&self) -> JwsAlg;
    fn public_jwk(&self) -> Value;
    fn sign_bytes(&self, msg: &[u8]) -> Vec<u8>;
}

impl JwsSigner for SigningKey {
    fn alg(&self) -> JwsAlg {
        JwsAlg::EdDSA
    }
    fn public_jwk(&self) -> Value {
        AgentKey::Ed25519(crate::PublicKey(self.verifying_key())).jwk()
    }
    fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        ed25519_dalek::Signer::sign(self, msg).to_bytes().to_vec()
    }
}

impl JwsSigner for Keypair {
    fn alg(&self) -> JwsAlg {
        JwsAlg::EdDSA
    }
    fn public_jwk(&self) -> Value {
        AgentKey::from(self.public()).jwk()
    }
    fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        self.sign(msg).to_vec()
    }
}

/// An agent's private key: Ed25519, P-256 or RSA (2048 bits when generated).
pub enum AgentSigner {
    Ed25519(Keypair),
    P256(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for AgentSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentSigner({}, kid={})", self.alg().as_str(), self.public().thumbprint())
    }
}

fn key_err(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Key(e.to_string())
}

impl From<Keypair> for AgentSigner {
    fn from(k: Keypair) -> Self {
        AgentSigner::Ed25519(k)
    }
}

impl AgentSigner {
    pub fn generate(alg: JwsAlg) -> Result<Self, IdentityError> {
        Ok(match alg {
            JwsAlg::EdDSA => AgentSigner::Ed25519(Keypair::generate()),
            JwsAlg::Es256 => AgentSigner::P256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(key_err)?),
            JwsAlg::Rs256 => AgentSigner::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(key_err)?),
        })
    }

    /// An unencrypted PKCS#8 PEM private key of any accepted type.
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, IdentityError> {
        if let Ok(k) = Keypair::from_pkcs8_pem(text) {
            return Ok(AgentSigner::Ed25519(k));
        }
        let (_, der) = pem::decode_vec(text.trim().as_bytes()).map_err(|e| key_err(format!("not a PEM private key: {e}")))?;
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
            return Ok(AgentSigner::P256(k));
        }
        RsaKeyPair::from_pkcs8(&der).map(AgentSigner::Rsa).map_err(|_| key_err("not an unencrypted PKCS#8 Ed25519, P-256 or RSA private key"))
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): what OpenSSL, Node's
    /// `crypto`, `jose` and Python's `cryptography` read.
    pub fn to_pkcs8_pem(&self) -> String {
        let der = match self {
            AgentSigner::Ed25519(k) => return k.to_pkcs8_pem(),
            AgentSigner::P256(k) => k.to_pkcs8v1().expect("P-256 key encodes").as_ref().to_vec(),
            AgentSigner::Rsa(k) => AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(k).expect("RSA key encodes").as_ref().to_vec(),
        };
        pem::encode_string("PRIVATE KEY", LineEnding::LF, &der).expect("PEM encodes")
    }

    pub fn public(&self) -> AgentKey {
        match self {
            AgentSigner::Ed25519(k) => k.public().into(),
            AgentSigner::P256(k) => AgentKey::parse_uncompressed_p256(k.public_key().as_ref()).expect("own P-256 key"),
            AgentSigner::Rsa(k) => {
                let p = k.public_key();
                AgentKey::Rsa { n: p.modulus().big_endian_without_leading_zero().to_vec(), e: p.exponent().big_endian_without_leading_zero().to_vec() }
            }
        }
    }
}

impl JwsSigner for AgentSigner {
    fn alg(&self) -> JwsAlg {
        match self {
            AgentSigner::Ed25519(_) => JwsAlg::EdDSA,
            AgentSigner::P256(_) => JwsAlg::Es256,
            AgentSigner::Rsa(_) => JwsAlg::Rs256,
        }
    }
    fn public_jwk(&self) -> Value {
        self.public().jwk()
    }
    fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            AgentSigner::Ed25519(k) => k.sign(msg).to_vec(),
            AgentSigner::P256(k) => k.sign(&rng, msg).expect("P-256 signs").as_ref().to_vec(),
            AgentSigner::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).expect("RSA signs");
                sig
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_round_trips_through_pem_and_signs_what_its_public_key_verifies() {
        for alg in JwsAlg::ALL {
            let k = AgentSigner::generate(alg).unwrap();
            let back = AgentSigner::from_pkcs8_pem(&k.to_pkcs8_pem()).unwrap();
            assert_eq!(back.public(), k.public());
            let sig = k.sign_bytes(b"msg");
            assert!(k.public().verify(alg, b"msg", &sig).is_ok(), "{alg:?}");
            assert_eq!(AgentKey::from_registry(&k.public().to_registry()).unwrap(), k.public());
        }
    }
}

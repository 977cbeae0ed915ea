//! Agent public keys of every accepted type: Ed25519 (`EdDSA`), P-256
//! (`ES256`) and RSA of 2048 to 8192 bits (`RS256`), as the registry stores
//! them and as DPoP proofs carry them.
//!
//! The key decides the algorithm: a JWS is verified with the one algorithm
//! its key's type allows, and a header naming another one is refused before
//! any signature work, so `alg: none`, HMAC-with-the-public-key and other
//! algorithm confusions cannot happen.
//!
//! ES256 and RS256 are verified with `aws-lc-rs`, the provider rustls
//! already uses in this workspace: one native crypto library, FIPS-capable,
//! instead of a second pure-Rust stack (RustCrypto `p256`/`rsa`, whose RSA
//! crate carries an unfixed timing advisory for private-key operations).
//! Ed25519 stays on `ed25519-dalek` (`verify_strict`), which the audit log's
//! signatures use too. SPKI PEM is parsed with the `spki` crate that
//! `ed25519-dalek`'s PKCS#8 support already brings.

use crate::IdentityError;
use crate::jose::{b64url, b64url_decode};
use crate::keys::PublicKey;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use ed25519_dalek::pkcs8::spki::der::{Decode, pem};
use ed25519_dalek::pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A JWS algorithm Warden accepts: each belongs to one key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlg {
    EdDSA,
    Es256,
    Rs256,
}

impl JwsAlg {
    pub const ALL: [JwsAlg; 3] = [JwsAlg::EdDSA, JwsAlg::Es256, JwsAlg::Rs256];

    /// The JWS `alg` value (RFC 7518, RFC 8037).
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::EdDSA => "EdDSA",
            JwsAlg::Es256 => "ES256",
            JwsAlg::Rs256 => "RS256",
        }
    }

    /// The `alg` header value, exactly as RFC 7518 spells it.
    pub fn from_header(alg: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == alg)
    }
}

impl std::str::FromStr for JwsAlg {
    type Err = IdentityError;
    /// Case-insensitive, for command lines (`--key-alg es256`).
    fn from_str(s: &str) -> Result<Self, IdentityError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| IdentityError::Key(format!("unknown key algorithm {s:?}: use eddsa, es256 or rs256")))
    }
}

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
pub(crate) const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// An agent's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKey {
    Ed25519(PublicKey),
    /// An uncompressed P-256 point, checked to be on the curve.
    P256 {
        x: [u8; 32],
        y: [u8; 32],
    },
    /// Big-endian modulus and exponent without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl From<PublicKey> for AgentKey {
    fn from(k: PublicKey) -> Self {
        AgentKey::Ed25519(k)
    }
}

fn bad(m: impl Into<String>) -> IdentityError {
    IdentityError::Key(m.into())
}

const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

impl AgentKey {
    /// The one algorithm this key signs with.
    pub fn alg(&self) -> JwsAlg {
        match self {
            AgentKey::Ed25519(_) => JwsAlg::EdDSA,
            AgentKey::P256 { .. } => JwsAlg::Es256,
            AgentKey::Rsa { .. } => JwsAlg::Rs256,
        }
    }

    /// What an operator registers: SPKI PEM (Ed25519, P-256 or RSA), a
    /// public JWK, or the raw base64url Ed25519 key.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let t = text.trim();
        if t.starts_with('{') {
            let v: Value = serde_json::from_str(t).map_err(|e| bad(format!("not a JWK: {e}")))?;
            Self::from_jwk(&v)
        } else if t.starts_with("-----BEGIN PUBLIC KEY") {
            let (_, der) = pem::decode_vec(t.as_bytes()).map_err(|e| bad(format!("not a PEM public key: {e}")))?;
            Self::from_spki_der(&der)
        } else if t.starts_with("-----BEGIN") {
            Err(bad("expected a public key (-----BEGIN PUBLIC KEY-----, SPKI); register the public key only, never a private one"))
        } else {
            PublicKey::from_b64(t).map(AgentKey::Ed25519)
        }
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, IdentityError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| bad(format!("not an SPKI public key: {e}")))?;
        let bits = spki.subject_public_key.as_bytes().ok_or_else(|| bad("SPKI key bits are not whole bytes"))?;
        let oid = spki.algorithm.oid;
        if oid == OID_ED25519 {
            let x = b64url(bits);
            PublicKey::from_b64(&x).map(AgentKey::Ed25519)
        } else if oid == OID_EC_PUBLIC_KEY {
            let curve = spki.algorithm.parameters_oid().map_err(|_| bad("EC key without a named curve"))?;
            if curve != OID_P256 {
                return Err(bad(format!("unsupported EC curve {curve}: only P-256 (ES256) is accepted")));
            }
            Self::parse_uncompressed_p256(bits)
        } else if oid == OID_RSA {
            let k = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|e| bad(format!("not a valid RSA public key: {e}")))?;
            Self::rsa(k.modulus().big_endian_without_leading_zero(), k.exponent().big_endian_without_leading_zero())
        } else {
            Err(bad(format!("unsupported key algorithm {oid}: register an Ed25519, P-256 or RSA key")))
        }
    }

    /// A SEC1 uncompressed point (`04 || x || y`).
    pub(crate) fn parse_uncompressed_p256(bits: &[u8]) -> Result<Self, IdentityError> {
        match bits {
            [4, point @ ..] if point.len() == 64 => Self::p256(&point[..32], &point[32..]),
            _ => Err(bad("P-256 key must be an uncompressed point")),
        }
    }

    fn p256(x: &[u8], y: &[u8]) -> Result<Self, IdentityError> {
        let (Ok(x), Ok(y)) = (<[u8; 32]>::try_from(x), <[u8; 32]>::try_from(y)) else {
            return Err(bad("P-256 coordinates must be 32 bytes each"));
        };
        p256_parsed(&x, &y)?;
        Ok(AgentKey::P256 { x, y })
    }

    fn rsa(n: &[u8], e: &[u8]) -> Result<Self, IdentityError> {
        // One key, one stored form and one thumbprint (RFC 7638 uses the
        // minimal big-endian encoding): leading zero bytes go.
        let minimal = |b: &[u8]| b[b.iter().position(|x| *x != 0).unwrap_or(b.len())..].to_vec();
        let (n, e) = (&minimal(n)[..], &minimal(e)[..]);
        let bits = n.first().map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(bad(format!("RSA modulus has {bits} bits: {RSA_MIN_BITS} to {RSA_MAX_BITS} are accepted")));
        }
        rsa_parsed(n, e)?;
        Ok(AgentKey::Rsa { n: n.to_vec(), e: e.to_vec() })
    }

    /// From a public JWK (a DPoP header's `jwk`, a registered JWK). A JWK
    /// with private members is refused: whoever sent it leaks its key.
    pub fn from_jwk(jwk: &Value) -> Result<Self, IdentityError> {
        let o = jwk.as_object().ok_or_else(|| bad("a JWK must be a JSON object"))?;
        if PRIVATE_JWK_MEMBERS.iter().any(|m| o.contains_key(*m)) {
            return Err(bad("the JWK contains private key material"));
        }
        let s = |m: &str| o.get(m).and_then(Value::as_str).ok_or_else(|| bad(format!("JWK member {m:?} missing")));
        let key = match (s("kty")?, o.get("crv").and_then(Value::as_str)) {
            ("OKP", Some("Ed25519")) => AgentKey::Ed25519(PublicKey::from_b64(s("x")?)?),
            ("EC", Some("P-256")) => Self::p256(&b64url_decode(s("x")?)?, &b64url_decode(s("y")?)?)?,
            ("RSA", _) => Self::rsa(&b64url_decode(s("n")?)?, &b64url_decode(s("e")?)?)?,
            (kty, crv) => return Err(bad(format!("unsupported JWK {kty}/{}: use OKP/Ed25519, EC/P-256 or RSA", crv.unwrap_or("-")))),
        };
        if let Some(alg) = o.get("alg").and_then(Value::as_str)
            && alg != key.alg().as_str()
        {
            return Err(bad(format!("JWK alg {alg:?} does not fit its key, which signs with {}", key.alg().as_str())));
        }
        Ok(key)
    }

    /// The RFC 7638 canonical JWK: the required members in lexicographic
    /// order, no whitespace. It is what the registry stores and what the
    /// thumbprint hashes, so one key has exactly one stored form.
    pub fn to_registry(&self) -> String {
        match self {
            AgentKey::Ed25519(k) => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, k.to_b64()),
            AgentKey::P256 { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64url(x), b64url(y)),
            AgentKey::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64url(e), b64url(n)),
        }
    }

    /// The stored form read back ([`Self::to_registry`]).
    pub fn from_registry(stored: &str) -> Result<Self, IdentityError> {
        let v: Value = serde_json::from_str(stored).map_err(|e| bad(format!("stored key is not a JWK: {e}")))?;
        Self::from_jwk(&v)
    }

    /// The public JWK (for a DPoP proof's header).
    pub fn jwk(&self) -> Value {
        serde_json::from_str(&self.to_registry()).expect("canonical JWK is JSON")
    }

    /// RFC 7638 thumbprint: the DPoP `cnf.jkt` and the key's id.
    pub fn thumbprint(&self) -> String {
        b64url(&Sha256::digest(self.to_registry().as_bytes()))
    }

    /// Verify `sig` over `msg` for a JWS whose header says `alg`: only this
    /// key's own algorithm is tried.
    pub fn verify(&self, alg: JwsAlg, msg: &[u8], sig: &[u8]) -> Result<(), IdentityError> {
        if alg != self.alg() {
            return Err(IdentityError::AlgorithmMismatch { header: alg.as_str(), key: self.alg().as_str() });
        }
        let parsed = match self {
            AgentKey::Ed25519(k) => return k.verify(msg, sig),
            AgentKey::P256 { x, y } => p256_parsed(x, y)?,
            AgentKey::Rsa { n, e } => rsa_parsed(n, e)?,
        };
        parsed.verify_sig(msg, sig).map_err(|_| IdentityError::Signature)
    }
}

fn p256_parsed(x: &[u8; 32], y: &[u8; 32]) -> Result<ParsedPublicKey, IdentityError> {
    let mut point = [4u8; 65];
    point[1..33].copy_from_slice(x);
    point[33..].copy_from_slice(y);
    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(|_| bad("not a valid P-256 point"))
}

fn rsa_parsed(n: &[u8], e: &[u8]) -> Result<ParsedPublicKey, IdentityError> {
    RsaPublicKeyComponents { n, e }.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256).map_err(|_| bad("not a valid RSA public key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    #[test]
    fn rfc7638_rsa_thumbprint_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = serde_json::json!({ "kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29" });
        let key = AgentKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(AgentKey::from_registry(&key.to_registry()).unwrap(), key);
    }

    /// RFC 7515 Appendix A.3: the ES256 example verifies with its key, and
    /// the same bytes under another header algorithm do not.
    #[test]
    fn rfc7515_es256_example_verifies() {
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        });
        let key = AgentKey::from_jwk(&jwk).unwrap();
        let input = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = b64url_decode("DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q").unwrap();
        assert!(key.verify(JwsAlg::Es256, input.as_bytes(), &sig).is_ok());
        assert_eq!(key.verify(JwsAlg::EdDSA, input.as_bytes(), &sig), Err(IdentityError::AlgorithmMismatch { header: "EdDSA", key: "ES256" }));
        assert_eq!(key.verify(JwsAlg::Es256, b"other", &sig), Err(IdentityError::Signature));
    }

    #[test]
    fn ed25519_keys_keep_their_rfc8037_thumbprint() {
        let jwk = serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" });
        assert_eq!(AgentKey::from_jwk(&jwk).unwrap().thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        let k = Keypair::generate();
        assert_eq!(AgentKey::from(k.public()).thumbprint(), k.public().kid());
        assert_eq!(AgentKey::parse(&k.public().to_spki_pem()).unwrap(), AgentKey::from(k.public()));
    }

    #[test]
    fn spki_pem_of_p256_and_rsa_keys_parses_to_the_same_key() {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        use aws_lc_rs::signature::KeyPair as _;
        for alg in [JwsAlg::Es256, JwsAlg::Rs256] {
            let signer = crate::AgentSigner::generate(alg).unwrap();
            let der: PublicKeyX509Der<'_> = match &signer {
                crate::AgentSigner::P256(k) => k.public_key().as_der().unwrap(),
                crate::AgentSigner::Rsa(k) => k.public_key().as_der().unwrap(),
                crate::AgentSigner::Ed25519(_) => unreachable!(),
            };
            let pem = pem::encode_string("PUBLIC KEY", pem::LineEnding::LF, der.as_ref()).unwrap();
            assert_eq!(AgentKey::parse(&pem).unwrap(), signer.public(), "{alg:?}");
        }
    }

    #[test]
    fn private_keys_weak_rsa_and_mismatched_alg_members_are_refused() {
        let e = AgentKey::parse(&Keypair::generate().to_pkcs8_pem()).unwrap_err();
        assert!(e.to_string().contains("register the public key only"), "{e}");
        let mut jwk = AgentKey::from(Keypair::generate().public()).jwk();
        jwk["d"] = "AAAA".into();
        assert!(AgentKey::from_jwk(&jwk).unwrap_err().to_string().contains("private key material"));
        let small = serde_json::json!({ "kty": "RSA", "n": b64url(&[0xc5; 128]), "e": "AQAB" });
        assert_eq!(AgentKey::from_jwk(&small).unwrap_err().to_string(), "invalid key: RSA modulus has 1024 bits: 2048 to 8192 are accepted");
        let mut jwk = AgentKey::from(Keypair::generate().public()).jwk();
        jwk["alg"] = "ES256".into();
        assert!(AgentKey::from_jwk(&jwk).unwrap_err().to_string().contains("does not fit its key"));
        let off_curve = serde_json::json!({ "kty": "EC", "crv": "P-256", "x": b64url(&[1; 32]), "y": b64url(&[2; 32]) });
        assert_eq!(AgentKey::from_jwk(&off_curve).unwrap_err().to_string(), "invalid key: not a valid P-256 point");
    }
}

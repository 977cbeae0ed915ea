//! Cryptographic identity for agents and the gateway: agent keys (Ed25519,
//! P-256, RSA; each verifies only its own JWS algorithm), the gateway's
//! Ed25519 key, compact JWS, RFC 9068 access tokens bound to a key by DPoP
//! (RFC 9449) or, for agents an operator allows it, bearer tokens,
//! `private_key_jwt` client assertions (RFC 7523), RFC 8693 attenuation and
//! the revocation set, X.509-SVIDs from Warden's CA (`x509`), and the pure
//! parts of interactive authorization code grants (`interactive`). Pure:
//! every check takes `now` from the caller.

mod agent_key;
mod assertion;
mod dpop;
mod federation;
mod interactive;
mod jose;
mod keys;
mod revocation;
mod signer;
mod token;
mod x509;

pub use agent_key::{AgentKey, JwsAlg};
pub use assertion::{ClientAssertion, MAX_ASSERTION_LIFETIME, assertion_client_id, verify_client_assertion};
pub use dpop::{DpopProof, ReplayCache, ReplayCheck, make_dpop_proof, make_dpop_proof_with_nonce, verify_dpop_proof};
pub use federation::{TrustedIssuer, WORKLOAD_SKEW_SECS, WorkloadClaims, verify_id_token, verify_workload_jwt};
pub use interactive::{ClientMetadata, MAX_METADATA_BYTES, Sealer, is_s256_challenge, pkce_challenge, pkce_matches};
pub use jose::{b64url, b64url_decode, sign_jws, split_jws};
pub use keys::{Jwk, Keypair, PublicKey};
pub use revocation::{RevocationSet, operator_session_id};
pub use signer::{AgentSigner, JwsSigner};
pub use token::{AccessClaims, Actor, Confirmation, SubAgent, TokenIssuer, TokenVerifier, attenuate};
pub use x509::{Authority, Issued, MAX_AGENT_CERT_SECS, Svid, pem_to_der, read_svid, x5t_s256};

/// Why a credential was refused. Messages are safe to return to callers: they
/// never contain the token itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("malformed JWT: {0}")]
    Malformed(String),
    #[error("unsupported JWS algorithm {0:?}: only EdDSA, ES256 and RS256 are accepted")]
    Algorithm(String),
    #[error("JWS algorithm {header} does not match the key, which verifies only {key} signatures (its type decides)")]
    AlgorithmMismatch { header: &'static str, key: &'static str },
    #[error("wrong JWT type {found:?}: expected {expected:?}")]
    Type { expected: &'static str, found: String },
    #[error("signature verification failed")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("wrong audience: token is for {found:?}, this resource is {expected:?}")]
    Audience { expected: String, found: String },
    #[error("wrong issuer {0:?}")]
    Issuer(String),
    #[error("token has been revoked ({0})")]
    Revoked(String),
    #[error("DPoP proof invalid: {0}")]
    Dpop(String),
    #[error("DPoP proof replayed: its jti was already used")]
    DpopReplay,
    #[error("DPoP key does not match the key the token is bound to")]
    DpopKeyMismatch,
    #[error("client assertion invalid: {0}")]
    Assertion(String),
    #[error("invalid key: {0}")]
    Key(String),
    #[error("requested scope {0:?} exceeds what may be granted")]
    Scope(String),
    #[error("authorization refused: {0}")]
    Grant(String),
}

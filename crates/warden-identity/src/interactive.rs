//! The pure parts of interactive authorization: an MCP host acting for a
//! human gets a token by the OAuth 2.1 authorization code grant with PKCE
//! (RFC 7636, S256 only), identifies itself by a Client ID Metadata Document
//! (CIMD: its `client_id` is the HTTPS URL of its metadata), and the human
//! signs in at the enterprise's OpenID Connect provider.
//!
//! What travels through the browser between the steps (the pending request
//! as the IdP's `state`, the authorization code) is sealed: JSON with an
//! expiry and an HMAC-SHA256 under a key only the server holds, so any
//! replica can open it and nobody can forge or alter it. Sealed values are
//! readable (they hold nothing secret: a PKCE challenge, a redirect URI, the
//! human's identifier); what must stay secret, the PKCE verifier and nonce
//! Warden uses at the IdP, is derived from the key and never sent. One-time
//! use is the caller's (a store of used ids), since it needs IO.

use crate::IdentityError;
use crate::jose::{b64url, b64url_decode};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn bad(why: impl Into<String>) -> IdentityError {
    IdentityError::Grant(why.into())
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is a well-formed RFC 7636 §4.1 verifier (43 to 128
/// unreserved characters) whose S256 challenge is `challenge`. Compared in
/// constant time: the challenge is public, but nothing is lost by it.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len()) && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    well_formed && constant_time_eq(pkce_challenge(verifier).as_bytes(), challenge.as_bytes())
}

/// Whether `challenge` can be an S256 challenge: 43 base64url characters.
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A host's Client ID Metadata Document, as far as Warden reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
}

/// Largest metadata document read (the CIMD draft suggests 5 KiB; hosts
/// that list many redirect URIs get some room).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

impl ClientMetadata {
    /// Parse the document fetched from `url`. Its `client_id` must be `url`
    /// exactly (a document names the host it describes, so one host cannot
    /// serve another's), it lists its redirect URIs, and it is a public
    /// client: Warden does not yet verify `private_key_jwt` for CIMD hosts,
    /// so a document asking for another method is refused rather than
    /// treated as weaker.
    pub fn parse(url: &str, body: &[u8]) -> Result<Self, IdentityError> {
        if body.len() > MAX_METADATA_BYTES {
            return Err(bad(format!("the client metadata document is larger than {MAX_METADATA_BYTES} bytes")));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the client metadata document is not JSON: {e}")))?;
        let client_id = v.get("client_id").and_then(Value::as_str).unwrap_or_default();
        if client_id != url {
            return Err(bad(format!("the client metadata document's client_id ({}) is not its URL ({url})", warden_core::untrusted_text(client_id, 200))));
        }
        let redirect_uris: Vec<String> = match v.get("redirect_uris") {
            Some(Value::Array(list)) => list.iter().map(|u| u.as_str().map(str::to_string)).collect::<Option<_>>().unwrap_or_default(),
            _ => Vec::new(),
        };
        if redirect_uris.is_empty() {
            return Err(bad("the client metadata document lists no redirect_uris (an array of strings)"));
        }
        match v.get("token_endpoint_auth_method").and_then(Value::as_str) {
            None | Some("none") => {}
            Some(other) => {
                return Err(bad(format!(
                    "the client metadata document asks for token_endpoint_auth_method {}: Warden accepts CIMD hosts only as public clients (\"none\") with PKCE",
                    warden_core::untrusted_text(other, 60)
                )));
            }
        }
        let client_name = v.get("client_name").and_then(Value::as_str).map(|n| warden_core::untrusted_text(n, 120));
        Ok(Self { client_id: client_id.to_string(), client_name, redirect_uris })
    }

    /// Exact string match (OAuth 2.1 §2.3.1), except that a loopback
    /// redirect's port may differ (RFC 8252 §7.3: a native host picks a free
    /// port each time).
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri || same_but_loopback_port(r, uri))
    }
}

fn same_but_loopback_port(registered: &str, uri: &str) -> bool {
    let strip = |u: &str| -> Option<(String, String)> {
        let rest = u.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        matches!(host, "127.0.0.1" | "[::1]").then(|| (host.to_string(), path.to_string()))
    };
    matches!((strip(registered), strip(uri)), (Some(a), Some(b)) if a == b)
}

/// Seals and opens values that travel through a browser between the steps
/// of an authorization, and derives the secrets that must not.
pub struct Sealer {
    key: [u8; 32],
}

impl Sealer {
    /// From a server secret; `key` is derived from it for this use only.
    pub fn new(secret: &[u8]) -> Self {
        Self { key: Sha256::new().chain_update(b"warden interactive authorization v1\n").chain_update(secret).finalize().into() }
    }

    fn mac(&self, purpose: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(purpose.as_bytes());
        m.update(b"\n");
        m.update(payload);
        m
    }

    /// `value` for `purpose` (a sealed value opens only for its own), valid
    /// until `exp`.
    pub fn seal(&self, purpose: &str, exp: i64, value: &impl Serialize) -> String {
        let payload = serde_json::to_vec(&serde_json::json!({ "exp": exp, "v": value })).expect("serializes");
        let tag = self.mac(purpose, &payload).finalize().into_bytes();
        format!("{}.{}", b64url(&payload), b64url(&tag))
    }

    /// The value sealed for `purpose`, if untampered and unexpired at `now`.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str, now: i64) -> Result<T, IdentityError> {
        let (payload, tag) = sealed.split_once('.').ok_or_else(|| bad(format!("the {purpose} is malformed")))?;
        let payload = b64url_decode(payload).map_err(|_| bad(format!("the {purpose} is malformed")))?;
        let tag = b64url_decode(tag).map_err(|_| bad(format!("the {purpose} is malformed")))?;
        self.mac(purpose, &payload).verify_slice(&tag).map_err(|_| bad(format!("the {purpose} was not issued by this server or was altered")))?;
        #[derive(serde::Deserialize)]
        struct Envelope<T> {
            exp: i64,
            v: T,
        }
        let e: Envelope<T> = serde_json::from_slice(&payload).map_err(|_| bad(format!("the {purpose} is malformed")))?;
        if e.exp <= now {
            return Err(bad(format!("the {purpose} has expired")));
        }
        Ok(e.v)
    }

    /// A secret for `purpose` and `id` (a PKCE verifier, a nonce): the same
    /// on every replica, never sent anywhere it would have to come back from.
    pub fn derive(&self, purpose: &str, id: &str) -> String {
        b64url(&self.mac(purpose, id.as_bytes()).finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn pkce_s256_matches_the_rfc_7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(pkce_challenge(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        // Too short to be a verifier, whatever it hashes to.
        let short = "abc";
        assert!(!pkce_matches(short, &pkce_challenge(short)));
        assert!(!is_s256_challenge("plain-challenge"));
    }

    const URL: &str = "https://host.example/oauth/client.json";

    #[test]
    fn a_metadata_document_names_its_own_url_lists_redirects_and_is_public() {
        let doc = |v: Value| serde_json::to_vec(&v).unwrap();
        let ok = ClientMetadata::parse(
            URL,
            &doc(serde_json::json!({ "client_id": URL, "client_name": "Desk", "redirect_uris": ["http://127.0.0.1:3000/cb", "https://host.example/cb"] })),
        )
        .unwrap();
        assert_eq!(ok.client_name.as_deref(), Some("Desk"));
        assert!(ok.allows_redirect("https://host.example/cb"));
        assert!(ok.allows_redirect("http://127.0.0.1:49152/cb"), "a loopback redirect may use any port");
        assert!(!ok.allows_redirect("http://127.0.0.1:3000/other"));
        assert!(!ok.allows_redirect("https://host.example/cb/../evil"));
        assert!(!ok.allows_redirect("https://evil.example/cb"));
        let refused = |v: Value, why: &str| {
            let e = ClientMetadata::parse(URL, &doc(v)).unwrap_err().to_string();
            assert!(e.contains(why), "{e} (expected {why})");
        };
        refused(serde_json::json!({ "client_id": "https://other.example/c.json", "redirect_uris": ["https://x/cb"] }), "is not its URL");
        refused(serde_json::json!({ "client_id": URL }), "no redirect_uris");
        refused(serde_json::json!({ "client_id": URL, "redirect_uris": ["https://x/cb", 7] }), "no redirect_uris");
        refused(
            serde_json::json!({ "client_id": URL, "redirect_uris": ["https://x/cb"], "token_endpoint_auth_method": "client_secret_basic" }),
            "public clients",
        );
        assert!(ClientMetadata::parse(URL, b"<html>").is_err());
        assert!(ClientMetadata::parse(URL, &vec![b' '; MAX_METADATA_BYTES + 1]).is_err());
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Pending {
        agent: String,
    }

    #[test]
    fn a_sealed_value_opens_only_untampered_unexpired_and_for_its_purpose() {
        let s = Sealer::new(b"server secret");
        let sealed = s.seal("code", 1_000, &Pending { agent: "a".into() });
        assert_eq!(s.open::<Pending>("code", &sealed, 999).unwrap(), Pending { agent: "a".into() });
        assert!(s.open::<Pending>("code", &sealed, 1_000).unwrap_err().to_string().contains("expired"));
        assert!(s.open::<Pending>("state", &sealed, 999).unwrap_err().to_string().contains("not issued by this server"));
        assert!(Sealer::new(b"another").open::<Pending>("code", &sealed, 999).is_err());
        // A payload with a later expiry under the old tag.
        let (_, tag) = sealed.split_once('.').unwrap();
        let forged = format!("{}.{tag}", b64url(br#"{"exp":99999,"v":{"agent":"a"}}"#));
        assert!(s.open::<Pending>("code", &forged, 999).is_err());
        assert!(s.open::<Pending>("code", "garbage", 999).is_err());
        assert_ne!(s.derive("nonce", "id1"), s.derive("nonce", "id2"));
        assert_ne!(s.derive("nonce", "id1"), s.derive("verifier", "id1"));
        assert_eq!(s.derive("nonce", "id1"), Sealer::new(b"server secret").derive("nonce", "id1"), "every replica derives the same");
    }
}

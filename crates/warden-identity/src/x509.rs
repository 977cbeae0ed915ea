//! X.509-SVIDs (the SPIFFE X.509 identity document) for agents: Warden's
//! certificate authority for a trust domain issues short-lived agent
//! certificates with exactly one URI SAN, `spiffe://TD/agent/NAME`, and the
//! gateway's own TLS certificate; a certificate a client presented is read
//! back into the SPIFFE id it proves. The chain itself is verified by rustls
//! against the trust bundle before anything here reads it. Pure: keys come
//! from rcgen on aws-lc-rs (the workspace's one crypto provider), times and
//! names from the caller.

use crate::IdentityError;
use crate::jose::b64url;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use sha2::{Digest, Sha256};

/// Longest life an agent certificate may be issued for: short-lived
/// credentials are the point (SPIFFE suggests an hour; a day is the bound).
pub const MAX_AGENT_CERT_SECS: i64 = 24 * 3600;

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a verified client certificate proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svid {
    /// The SPIFFE id: its one URI SAN.
    pub spiffe_id: String,
    pub trust_domain: String,
    pub not_after: i64,
    /// RFC 8705 `x5t#S256`: the base64url SHA-256 of the certificate's DER.
    pub x5t_s256: String,
}

/// Warden's certificate authority for one trust domain.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    trust_domain: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authority(spiffe://{})", self.trust_domain)
    }
}

fn x509_err(what: &str, e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Key(format!("{what}: {e}"))
}

fn time(secs: i64) -> Result<time::OffsetDateTime, IdentityError> {
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| x509_err("certificate time", e))
}

fn random_serial() -> rcgen::SerialNumber {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS random source available");
    b[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&b)
}

impl Authority {
    /// A new CA for `trust_domain`, valid for ten years from `now`.
    pub fn generate(trust_domain: &str, now: i64) -> Result<Self, IdentityError> {
        let key = KeyPair::generate().map_err(|e| x509_err("generating the CA key", e))?;
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, format!("Warden CA for {trust_domain}"));
        p.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into().map_err(|e| x509_err("trust domain", e))?)];
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        p.not_before = time(now - 60)?;
        p.not_after = time(now + 10 * 365 * 86_400)?;
        p.serial_number = Some(random_serial());
        let cert = p.self_signed(&key).map_err(|e| x509_err("signing the CA certificate", e))?;
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(p, key), trust_domain: trust_domain.into() })
    }

    /// The CA stored as `cert_pem` and `key_pem` (PKCS#8).
    pub fn from_pem(trust_domain: &str, cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| x509_err("the CA key", e))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| x509_err("the CA certificate", e))?;
        Ok(Self { issuer, cert_pem: cert_pem.into(), trust_domain: trust_domain.into() })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// An X.509-SVID for `spiffe_id` (which must be in this trust domain),
    /// valid from `not_before` to `not_after` (at most a day), with a new key.
    pub fn issue_agent(&self, spiffe_id: &str, not_before: i64, not_after: i64) -> Result<Issued, IdentityError> {
        let in_domain =
            spiffe_id.strip_prefix("spiffe://").and_then(|r| r.split_once('/')).is_some_and(|(td, path)| td == self.trust_domain && !path.is_empty());
        if !in_domain {
            return Err(IdentityError::Key(format!("{spiffe_id} is not an id in trust domain {}", self.trust_domain)));
        }
        if not_after <= not_before || not_after - not_before > MAX_AGENT_CERT_SECS {
            return Err(IdentityError::Key(format!("an agent certificate lives at most {} hours", MAX_AGENT_CERT_SECS / 3600)));
        }
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().map_err(|e| x509_err("SPIFFE id", e))?)];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf(p, not_before, not_after)
    }

    /// The gateway's TLS certificate for `names` (DNS names or IP addresses).
    pub fn issue_server(&self, names: &[String], not_before: i64, not_after: i64) -> Result<Issued, IdentityError> {
        let mut p = CertificateParams::new(names.to_vec()).map_err(|e| x509_err("server names", e))?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "Warden gateway");
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.leaf(p, not_before, not_after)
    }

    fn leaf(&self, mut p: CertificateParams, not_before: i64, not_after: i64) -> Result<Issued, IdentityError> {
        let key = KeyPair::generate().map_err(|e| x509_err("generating a key", e))?;
        p.not_before = time(not_before)?;
        p.not_after = time(not_after)?;
        p.serial_number = Some(random_serial());
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer).map_err(|e| x509_err("signing the certificate", e))?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// RFC 8705 §3.1 `x5t#S256` of a certificate's DER.
pub fn x5t_s256(der: &[u8]) -> String {
    b64url(&Sha256::digest(der))
}

/// The SPIFFE id a (chain-verified) leaf certificate proves: exactly one URI
/// SAN, `spiffe://` with a trust domain and a path, in a certificate that is
/// not a CA (X.509-SVID §4, §5).
pub fn read_svid(der: &[u8]) -> Result<Svid, IdentityError> {
    let bad = |why: &str| IdentityError::Key(format!("not an X.509-SVID: {why}"));
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(&e.to_string()))?;
    if cert.is_ca() {
        return Err(bad("a CA certificate cannot identify an agent"));
    }
    let san = cert.subject_alternative_name().map_err(|e| bad(&e.to_string()))?.ok_or_else(|| bad("no subject alternative name"))?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else { return Err(bad(&format!("{} URI SANs; exactly one is required", uris.len()))) };
    let Some((td, path)) = uri.strip_prefix("spiffe://").and_then(|r| r.split_once('/')) else {
        return Err(bad("the URI SAN is not a SPIFFE id with a path"));
    };
    if td.is_empty() || path.is_empty() || uri.contains(['?', '#']) {
        return Err(bad("the URI SAN is not a SPIFFE id with a path"));
    }
    Ok(Svid { spiffe_id: uri.to_string(), trust_domain: td.to_string(), not_after: cert.validity().not_after.timestamp(), x5t_s256: x5t_s256(der) })
}

/// The DER of the certificate in `pem` (its first block, which must be one).
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, IdentityError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| x509_err("certificate PEM", e))?;
    if block.label != "CERTIFICATE" {
        return Err(IdentityError::Key(format!("certificate PEM: a {} block, not a CERTIFICATE", block.label)));
    }
    Ok(block.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn an_agent_certificate_is_an_svid_with_one_spiffe_id() {
        let ca = Authority::generate("corp.example", NOW).unwrap();
        let issued = ca.issue_agent("spiffe://corp.example/agent/bot", NOW, NOW + 3600).unwrap();
        let der = pem_to_der(&issued.cert_pem).unwrap();
        let svid = read_svid(&der).unwrap();
        assert_eq!(svid.spiffe_id, "spiffe://corp.example/agent/bot");
        assert_eq!(svid.trust_domain, "corp.example");
        assert_eq!(svid.not_after, NOW + 3600);
        assert_eq!(svid.x5t_s256, x5t_s256(&der));
        assert_eq!(svid.x5t_s256.len(), 43);
        // The CA itself is no agent.
        assert!(read_svid(&pem_to_der(ca.cert_pem()).unwrap()).is_err());
        // Stored and loaded again, it issues under the same name.
        let again = Authority::from_pem("corp.example", ca.cert_pem(), &ca.key_pem()).unwrap();
        assert!(again.issue_agent("spiffe://corp.example/agent/x", NOW, NOW + 60).is_ok());
    }

    #[test]
    fn ids_outside_the_trust_domain_and_long_lives_are_refused() {
        let ca = Authority::generate("corp.example", NOW).unwrap();
        for id in ["spiffe://other.example/agent/bot", "spiffe://corp.example", "spiffe://corp.example/", "https://corp.example/agent/bot"] {
            assert!(ca.issue_agent(id, NOW, NOW + 60).is_err(), "{id}");
        }
        assert!(ca.issue_agent("spiffe://corp.example/agent/bot", NOW, NOW + MAX_AGENT_CERT_SECS + 1).is_err());
        assert!(ca.issue_agent("spiffe://corp.example/agent/bot", NOW, NOW).is_err());
    }

    #[test]
    fn a_server_certificate_proves_no_agent() {
        let ca = Authority::generate("corp.example", NOW).unwrap();
        let s = ca.issue_server(&["localhost".into(), "127.0.0.1".into()], NOW, NOW + 86_400).unwrap();
        let e = read_svid(&pem_to_der(&s.cert_pem).unwrap()).unwrap_err();
        assert!(e.to_string().contains("URI SANs"), "{e}");
    }
}

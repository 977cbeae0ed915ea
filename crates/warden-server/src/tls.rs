//! The gateway's TLS listener (`[tls]`), with mutual TLS for agents: a
//! client certificate is verified by rustls against Warden's CA and the
//! configured SPIFFE trust bundles, then read as an X.509-SVID; its SPIFFE id
//! travels with each request of the connection ([`PeerCertificate`]), and
//! `/mcp` refuses a token of another agent than the certificate names. With
//! `require_client_cert` a connection without one is refused at the
//! handshake. The CA lives in the data directory (`ca.pem`, `ca.key.pem`,
//! mode 0600), made on first use; `warden agent issue-cert` issues from it.

use crate::app::{StartError, write_private};
use rustls::RootCertStore;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::clock::now_secs;
use warden_gateway::PeerCertificate;
use warden_identity::Authority;

/// `[tls]` in warden.toml.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The gateway's certificate chain (PEM). Without it the gateway uses a
    /// certificate from Warden's CA for its public URL's host, its listen
    /// address and `localhost`, issued at each start (clients then trust
    /// `warden agent trust-bundle`).
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file` (PKCS#8 PEM).
    pub key_file: Option<PathBuf>,
    /// SPIFFE trust bundles (PEM) of other trust domains, by trust domain,
    /// whose X.509-SVIDs are accepted besides the ones Warden's CA issues. A
    /// bundle anchors only SVIDs of its own trust domain (SPIFFE): it cannot
    /// vouch for an id of Warden's trust domain or of another bundle's.
    #[serde(default)]
    pub trust_bundles: std::collections::BTreeMap<String, PathBuf>,
    /// Refuse connections without a client certificate: mutual TLS for every agent.
    #[serde(default)]
    pub require_client_cert: bool,
}

/// Lifetime of the certificate the gateway issues itself at start.
const SERVER_CERT_SECS: i64 = 30 * 86_400;

fn read(path: &Path, what: &str) -> Result<String, StartError> {
    std::fs::read_to_string(path).map_err(|e| StartError::Config(format!("{what} {}: {e}", path.display())))
}

/// Warden's CA for `trust_domain`, made (and stored, key mode 0600) on first use.
pub fn load_or_create_ca(data_dir: &Path, trust_domain: &str) -> Result<Authority, StartError> {
    let (cert, key) = (data_dir.join("ca.pem"), data_dir.join("ca.key.pem"));
    let data_err = |e: std::io::Error| StartError::DataDir { path: data_dir.display().to_string(), message: format!("the CA: {e}") };
    if cert.exists() {
        return Authority::from_pem(trust_domain, &read(&cert, "the CA certificate")?, &read(&key, "the CA key")?)
            .map_err(|e| StartError::Config(format!("the CA in {}: {e}", data_dir.display())));
    }
    crate::app::ensure_data_dir(data_dir)?;
    let ca = Authority::generate(trust_domain, now_secs()).map_err(|e| StartError::Config(e.to_string()))?;
    write_private(&key, &ca.key_pem()).map_err(data_err)?;
    std::fs::write(&cert, ca.cert_pem()).map_err(data_err)?;
    Ok(ca)
}

/// The rustls configuration for the listener at `addr`, reached as
/// `public_host` (the public URL's host) when one is configured.
pub fn server_config(cfg: &TlsConfig, ca: &Authority, addr: SocketAddr, public_host: Option<&str>) -> Result<Arc<rustls::ServerConfig>, StartError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| StartError::Config(format!("[tls] {what}: {e}"));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (chain_pem, key_pem) = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => (read(c, "[tls] cert_file")?, read(k, "[tls] key_file")?),
        (None, None) => {
            let now = now_secs();
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            names.extend(public_host.map(str::to_string));
            if !addr.ip().is_unspecified() {
                names.push(addr.ip().to_string());
            }
            names.dedup();
            let issued = ca.issue_server(&names, now - 60, now + SERVER_CERT_SECS).map_err(|e| bad("the gateway certificate", &e))?;
            (format!("{}{}", issued.cert_pem, ca.cert_pem()), issued.key_pem)
        }
        _ => return Err(StartError::Config("[tls] cert_file and key_file go together".into())),
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| bad("the certificate chain", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad("the key", &e))?;
    let mut bundles = vec![(ca.trust_domain().to_string(), ca.cert_pem().to_string())];
    for (td, f) in &cfg.trust_bundles {
        if td == ca.trust_domain() {
            return Err(StartError::Config(format!("[tls] trust_bundles: {td} is Warden's own trust domain; only Warden's CA anchors its SVIDs")));
        }
        bundles.push((td.clone(), read(f, "[tls] trust_bundles")?));
    }
    let mut by_domain = std::collections::HashMap::new();
    for (td, pem) in bundles {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(c.map_err(|e| bad("a trust bundle", &e))?).map_err(|e| bad("a trust bundle", &e))?;
        }
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(|e| bad("client certificates", &e))?;
        by_domain.insert(td, v);
    }
    let verifier = Arc::new(PerTrustDomain { by_domain, required: cfg.require_client_cert, schemes: provider.signature_verification_algorithms });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocol versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("the certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The X.509-SVID a verified client presented; `Err` when it presented a
/// certificate that chains to the bundle but is no SVID (the connection is
/// closed: a client that offers an identity must offer a valid one).
pub fn peer_certificate(conn: &rustls::ServerConnection) -> Result<Option<PeerCertificate>, warden_identity::IdentityError> {
    let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else { return Ok(None) };
    let svid = warden_identity::read_svid(leaf)?;
    Ok(Some(PeerCertificate { spiffe_id: svid.spiffe_id, x5t_s256: svid.x5t_s256, not_after: svid.not_after }))
}

/// Client certificates verified against the bundle of the trust domain the
/// leaf's SPIFFE id names, and only that one: with one root store for all,
/// a CA of another trust domain could issue an SVID naming one of Warden's
/// agents. A leaf that is no SVID, or of a trust domain without a bundle,
/// is refused at the handshake.
#[derive(Debug)]
struct PerTrustDomain {
    by_domain: std::collections::HashMap<String, Arc<dyn ClientCertVerifier>>,
    required: bool,
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PerTrustDomain {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let svid = warden_identity::read_svid(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        let verifier = self.by_domain.get(&svid.trust_domain).ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))?;
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

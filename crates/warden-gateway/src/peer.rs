//! What the TLS listener learned about the client of a connection, as a
//! request extension: the X.509-SVID it presented, already verified against
//! the trust bundle (`warden-server`'s `tls`).

/// A client certificate that proved a SPIFFE id on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    pub spiffe_id: String,
    /// RFC 8705 `x5t#S256` of the certificate.
    pub x5t_s256: String,
    /// When it expires: rustls checks validity at the handshake only, and a
    /// keep-alive connection can outlive a short-lived SVID.
    pub not_after: i64,
}

impl PeerCertificate {
    /// The certificate, if it is still valid at `now`.
    pub fn valid_at(&self, now: i64) -> Option<&Self> {
        (now < self.not_after).then_some(self)
    }
}

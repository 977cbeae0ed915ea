//! Approval webhooks: each new approval request is POSTed to the configured
//! URL (chat bots, ticketing, paging) with the admin-API links that decide
//! it, signed with HMAC-SHA256 when a secret is configured. Delivery runs in
//! the background with a few retries; the held call never waits on it.

use crate::state::Gateway;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;
use warden_core::Approval;

const ATTEMPTS: u32 = 3;

/// `sha256=HEX` of the body under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Gateway {
    pub(crate) fn notify_approval(&self, a: &Approval) {
        let Some(url) = self.config.approvals.webhook_url.clone() else { return };
        let base = self.config.issuer.clone();
        let body = json!({
            "type": "approval_requested",
            "approval": a,
            "approve_url": format!("{base}/admin/v1/approvals/{}/approve", a.id),
            "deny_url": format!("{base}/admin/v1/approvals/{}/deny", a.id),
            "dashboard_url": format!("{base}/dashboard"),
        })
        .to_string();
        let secret = self.config.approvals.webhook_secret_env.as_ref().and_then(|v| std::env::var(v).ok());
        let http = self.webhook_http.clone();
        let id = a.id.clone();
        tokio::spawn(async move {
            for attempt in 1..=ATTEMPTS {
                let mut req = http.post(&url).header("content-type", "application/json").body(body.clone());
                if let Some(s) = &secret {
                    req = req.header("x-warden-signature", signature(s.as_bytes(), body.as_bytes()));
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!("approval webhook for {id}: HTTP {} (attempt {attempt} of {ATTEMPTS})", r.status()),
                    Err(e) => tracing::warn!("approval webhook for {id}: {e} (attempt {attempt} of {ATTEMPTS})"),
                }
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            tracing::error!("approval webhook for {id} was not delivered; the request is still in `warden approvals list`");
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(super::signature(b"Jefe", b"what do ya want for nothing?"), "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}

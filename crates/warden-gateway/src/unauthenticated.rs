//! The gateway's side of [`warden_monitor::Strangers`]: requests that fail
//! authentication (at `/mcp`, the token endpoint and the admin API) are
//! throttled per source and audited as one aggregated record per source,
//! door, reason and window, written in the background, instead of one
//! signed, fsync'd record each.

use crate::state::Gateway;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use warden_monitor::{Claimed, Door, Source, Throttled};

impl Gateway {
    /// Before authenticating a request from `source`: a 429 for a source
    /// that used up its failed attempts (nothing is written for it but a
    /// count in the next aggregated record).
    pub fn admit_stranger(&self, source: IpAddr, door: Door) -> Result<(), Throttled> {
        let r = self.strangers.lock().admit(Source::of(source), door, warden_core::clock::now_ms());
        if r.is_err() {
            self.metrics.observe_unauthenticated(true);
        }
        r
    }

    /// A request from `source` failed authentication: `reason` (and who it
    /// claimed to be) go into the window's tally.
    pub fn stranger_failed(&self, source: IpAddr, door: Door, reason: &str, claimed: Claimed<'_>) {
        self.metrics.observe_unauthenticated(false);
        self.strangers.lock().failed(Source::of(source), door, reason, claimed, warden_core::clock::now_ms());
    }

    /// Write each window's aggregated records.
    pub(crate) fn spawn_stranger_audit(self: &Arc<Self>) {
        let gw = self.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs(gw.strangers.lock().window_secs());
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                gw.flush_strangers().await;
            }
        });
    }

    /// Audit the tallies of unauthenticated failures so far (also on shutdown).
    pub async fn flush_strangers(&self) {
        let events = self.strangers.lock().drain();
        for ev in events {
            if let Err(e) = self.audit.record(ev).await {
                tracing::error!(error = %e, "recording aggregated authentication failures failed");
            }
        }
    }
}

/// The answer to a throttled source: 429 with `Retry-After`.
pub fn throttled_response(t: Throttled, body: String) -> Response {
    let mut r = (StatusCode::TOO_MANY_REQUESTS, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(t.retry_after_secs));
    r
}

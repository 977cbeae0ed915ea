//! Optional OpenTelemetry export with OTLP/HTTP in its JSON encoding,
//! batched in the background: traces (`POST …/v1/traces`, one SERVER span
//! per `tools/call`; a W3C `traceparent` header on the agent's request makes
//! it a child of the agent's trace) and logs (`POST …/v1/logs`, one log
//! record per committed audit record, the record itself as the body). The
//! hot path only formats an item and tries a bounded channel; when the
//! collector is slow, items are dropped (and counted), calls never wait. The
//! audit log in the store stays the record of truth.

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// `[telemetry]` in `warden.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`; off when unset.
    pub otlp_traces_url: Option<String>,
    /// OTLP/HTTP logs endpoint for audit records, e.g. `http://otel-collector:4318/v1/logs`; off when unset.
    pub otlp_logs_url: Option<String>,
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { otlp_traces_url: None, otlp_logs_url: None, service_name: "warden".into() }
    }
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub error: bool,
    pub attributes: Vec<(&'static str, String)>,
}

/// Trace context from a W3C `traceparent` header (version 00).
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, _flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    let mut t = [0u8; 16];
    let mut p = [0u8; 8];
    hex::decode_to_slice(trace, &mut t).ok()?;
    hex::decode_to_slice(parent, &mut p).ok()?;
    (t != [0; 16] && p != [0; 8]).then_some((t, p))
}

/// Export a tool call's SERVER span, when tracing is configured: the
/// record's fields that say what was decided, never argument values (like
/// the audit record), as a child of the agent's `trace` when it sent one.
pub(crate) fn export_call_span(gw: &crate::Gateway, ev: &warden_core::AuditEvent, latency_us: u64, trace: Option<([u8; 16], [u8; 8])>) {
    let Some(t) = &gw.traces else { return };
    let (random_trace, span_id) = random_ids();
    let end = u64::try_from(warden_core::clock::since_epoch().as_nanos()).unwrap_or(u64::MAX);
    let opt = |k: &'static str, v: &Option<String>| v.as_ref().map(|v| (k, v.clone()));
    let mut attributes: Vec<(&'static str, String)> =
        [opt("warden.agent", &ev.agent), opt("warden.tool", &ev.tool), opt("warden.task", &ev.task), opt("warden.reason", &ev.reason)]
            .into_iter()
            .flatten()
            .collect();
    attributes.push(("warden.decision", ev.decision.to_string()));
    attributes.push(("warden.correlation_id", ev.correlation_id.clone().unwrap_or_default()));
    attributes.push(("warden.policies", ev.policies.join(",")));
    if let Some(r) = ev.risk {
        attributes.push(("warden.risk", r.to_string()));
    }
    t.record(Span {
        trace_id: trace.map(|(t, _)| t).unwrap_or(random_trace),
        span_id,
        parent_span_id: trace.map(|(_, p)| p),
        name: "tools/call".into(),
        start_unix_nanos: end.saturating_sub(latency_us * 1000),
        end_unix_nanos: end,
        error: ev.decision != warden_core::Verdict::Allow,
        attributes,
    });
}

pub fn random_ids() -> ([u8; 16], [u8; 8]) {
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    getrandom::fill(&mut t).expect("OS random source available");
    getrandom::fill(&mut s).expect("OS random source available");
    (t, s)
}

fn resource(service: &str) -> Value {
    json!({ "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] })
}

fn str_attr(k: &str, v: &str) -> Value {
    json!({ "key": k, "value": { "stringValue": v } })
}

/// The OTLP JSON body for a batch of audit records as log records.
pub fn otlp_logs_json(service: &str, records: &[warden_audit::AuditRecord]) -> Value {
    let logs: Vec<Value> = records
        .iter()
        .map(|r| {
            let e = &r.event;
            let warn = matches!(e.decision, warden_core::Verdict::Deny | warden_core::Verdict::Error) || e.kind == Some(warden_core::EventKind::Containment);
            let kind = e.kind.and_then(|k| serde_json::to_value(k).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let mut attrs = vec![
                json!({ "key": "warden.seq", "value": { "intValue": r.seq.to_string() } }),
                str_attr("warden.kind", &kind),
                str_attr("warden.decision", e.decision.as_str()),
                str_attr("warden.hash", &r.hash),
            ];
            for (k, v) in [("warden.agent", &e.agent), ("warden.tool", &e.tool), ("warden.correlation_id", &e.correlation_id)] {
                if let Some(v) = v {
                    attrs.push(str_attr(k, v));
                }
            }
            let nanos = (r.ts_ms.max(0) as u64 * 1_000_000).to_string();
            json!({
                "timeUnixNano": nanos,
                "observedTimeUnixNano": nanos,
                "severityNumber": if warn { 13 } else { 9 },
                "severityText": if warn { "WARN" } else { "INFO" },
                "body": { "stringValue": serde_json::to_string(r).expect("record serializes") },
                "attributes": attrs,
            })
        })
        .collect();
    json!({ "resourceLogs": [{
        "resource": resource(service),
        "scopeLogs": [{ "scope": { "name": "warden-audit", "version": env!("CARGO_PKG_VERSION") }, "logRecords": logs }],
    }] })
}

/// The OTLP JSON body for a batch of spans.
pub fn otlp_json(service: &str, spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut v = json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "name": s.name,
                "kind": 2,
                "startTimeUnixNano": s.start_unix_nanos.to_string(),
                "endTimeUnixNano": s.end_unix_nanos.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| json!({ "key": k, "value": { "stringValue": v } })).collect::<Vec<_>>(),
                "status": { "code": if s.error { 2 } else { 1 } },
            });
            if let Some(p) = s.parent_span_id {
                v["parentSpanId"] = hex::encode(p).into();
            }
            v
        })
        .collect();
    json!({ "resourceSpans": [{
        "resource": resource(service),
        "scopeSpans": [{ "scope": { "name": "warden-gateway", "version": env!("CARGO_PKG_VERSION") }, "spans": spans }],
    }] })
}

const QUEUE: usize = 10_000;
const BATCH: usize = 512;

/// Sends items (spans, audit records) to the collector in the background.
#[derive(Debug)]
pub struct Exporter<T> {
    tx: mpsc::Sender<T>,
    pub dropped: AtomicU64,
}

impl<T: Send + 'static> Exporter<T> {
    /// Start the batching task (needs a Tokio runtime); `render` makes the
    /// OTLP JSON body of a batch.
    pub fn start(service: String, url: String, http: reqwest::Client, render: fn(&str, &[T]) -> Value) -> Self {
        let (tx, mut rx) = mpsc::channel::<T>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let first = rx.recv().await;
                let Some(first) = first else { return };
                batch.push(first);
                // Gather what else arrives within a second, up to a batch.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                while batch.len() < BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(s)) => batch.push(s),
                        _ => break,
                    }
                }
                let body = render(&service, &batch).to_string();
                match http.post(&url).header("content-type", "application/json").body(body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!("OTLP export: HTTP {} from {url}; {} items dropped", r.status(), batch.len()),
                    Err(e) => tracing::warn!("OTLP export to {url}: {e}; {} items dropped", batch.len()),
                }
                batch.clear();
            }
        });
        Self { tx, dropped: AtomicU64::new(0) }
    }

    pub fn record(&self, item: T) {
        if self.tx.try_send(item).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let (t, p) = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(p), "00f067aa0ba902b7");
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn otlp_json_has_the_protocol_shape() {
        let s = Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            name: "tools/call".into(),
            start_unix_nanos: 10,
            end_unix_nanos: 20,
            error: true,
            attributes: vec![("warden.decision", "deny".into())],
        };
        let v = otlp_json("warden", &[s]);
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "01010101010101010101010101010101");
        assert_eq!(span["parentSpanId"], "0303030303030303");
        assert_eq!(span["startTimeUnixNano"], "10");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["attributes"][0]["value"]["stringValue"], "deny");
        assert_eq!(v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "warden");
    }
}

//! Audit records as OCSF events for SIEMs (OCSF 1.3 schema names):
//! tool calls and MCP requests are API Activity (6003), token issuance and
//! exchange are Authorize Session (3003), failed agent authentication is
//! Authentication (3002), and registry, kill-switch and approval changes are
//! Entity Management (3004). Warden-specific facts (risk, findings,
//! delegation chain, the record's chain hash) go in `unmapped`, so nothing
//! the log holds is lost in the mapping.

use crate::AuditRecord;
use serde_json::{Value, json};
use warden_core::EventKind;

pub const OCSF_VERSION: &str = "1.3.0";

/// OCSF class and activity for an event kind: (category, class, class name,
/// activity id, activity name).
fn class_of(kind: Option<EventKind>) -> (u32, u32, &'static str, u32, &'static str) {
    use EventKind::*;
    match kind {
        Some(ToolCall) => (6, 6003, "API Activity", 99, "Call Tool"),
        // Written before forwarding; the `Call Tool` event has the outcome.
        Some(ToolCallIntent) => (6, 6003, "API Activity", 99, "Forward Tool Call"),
        Some(EgressConnection) => (4, 4001, "Network Activity", 1, "Open"),
        Some(ToolList) => (6, 6003, "API Activity", 2, "Read"),
        Some(McpRequest) | None => (6, 6003, "API Activity", 99, "Other"),
        Some(TokenIssued) | Some(TokenExchanged) | Some(TokenDenied) => (3, 3003, "Authorize Session", 1, "Assign Privileges"),
        Some(AuthnFailure) => (3, 3002, "Authentication", 1, "Logon"),
        Some(Revocation)
        | Some(AgentChanged)
        | Some(ToolChanged)
        | Some(ToolDefinitionChanged)
        | Some(ToolDefinitionFlagged)
        | Some(Containment)
        | Some(ContainmentLifted)
        | Some(ApprovalRequested)
        | Some(ApprovalDecided)
        | Some(OperatorChanged)
        | Some(PolicyChanged) => (3, 3004, "Entity Management", 3, "Update"),
    }
}

fn kind_name(kind: Option<EventKind>) -> String {
    kind.and_then(|k| serde_json::to_value(k).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "event".into())
}

/// One record as an OCSF event.
pub fn ocsf(r: &AuditRecord, product_version: &str) -> Value {
    let e = &r.event;
    let (category_uid, class_uid, class_name, activity_id, activity_name) = class_of(e.kind);
    let failed = matches!(e.decision.as_str(), "deny" | "error" | "needs_approval");
    let severity_id = match (e.kind, failed) {
        (Some(EventKind::Containment), _) => 4,
        (_, true) => 3,
        _ => 1,
    };
    let agent_name = e.agent.as_deref().and_then(|a| a.rsplit("/agent/").next());
    let mut ev = json!({
        "category_uid": category_uid,
        "class_uid": class_uid,
        "class_name": class_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": r.ts_ms,
        "severity_id": severity_id,
        "status_id": if failed { 2 } else { 1 },
        "status": if failed { "Failure" } else { "Success" },
        "message": format!("{} {}", kind_name(e.kind), e.decision),
        "metadata": {
            "version": OCSF_VERSION,
            "product": { "name": "Warden", "vendor_name": "Warden", "version": product_version },
            "log_name": "warden-audit",
            "uid": r.hash,
            "sequence": r.seq,
        },
        "actor": {
            "user": { "uid": e.agent, "name": agent_name, "type": "AI agent", "type_id": 99 },
            "invoked_by": e.subject,
            "authorizations": [{ "decision": e.decision, "policy": { "name": e.policies.join(",") } }],
        },
        "unmapped": {
            "warden_kind": kind_name(e.kind),
            "delegation": e.delegation,
            "task": e.task,
            "findings": e.findings,
            "redacted": e.redacted,
            "risk": e.risk,
            "anomaly": e.anomaly,
            "args_sha256": e.args_sha256,
            "forwarded": e.forwarded,
            "remediation": e.remediation,
            "prev_hash": r.prev,
        },
    });
    let m = ev.as_object_mut().expect("object");
    if let Some(reason) = &e.reason {
        m.insert("status_detail".into(), json!(reason));
    }
    if let Some(c) = &e.correlation_id {
        m["metadata"]["correlation_uid"] = json!(c);
    }
    if let Some(l) = e.latency_us {
        m.insert("duration".into(), json!(l / 1000));
    }
    match class_uid {
        6003 => {
            let (service, _) = e.tool.as_deref().and_then(|t| t.split_once('/')).unwrap_or(("", ""));
            m.insert(
                "api".into(),
                json!({ "operation": e.action.clone().unwrap_or_else(|| kind_name(e.kind)), "service": { "name": service }, "request": { "uid": e.correlation_id } }),
            );
            m.insert("src_endpoint".into(), json!({ "name": e.agent }));
            if let Some(t) = &e.tool {
                m.insert("resources".into(), json!([{ "name": t, "type": "MCP tool" }]));
            }
        }
        3003 => {
            m.insert("user".into(), json!({ "uid": e.agent, "name": agent_name }));
            m.insert("session".into(), json!({ "uid": e.token_id }));
            if let Some(a) = &e.action {
                m.insert("privileges".into(), json!([a]));
            }
        }
        3002 => {
            m.insert("user".into(), json!({ "uid": e.agent, "name": agent_name }));
            m.insert("auth_protocol".into(), json!("OAuth 2.0 (DPoP)"));
        }
        _ => {
            let target = e.tool.clone().or_else(|| e.agent.clone()).or_else(|| e.action.clone());
            m.insert("entity".into(), json!({ "name": target, "type": kind_name(e.kind) }));
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, ChainHead};
    use warden_core::AuditEvent;
    use warden_identity::Keypair;

    #[test]
    fn tool_calls_tokens_and_containment_map_to_their_classes() {
        let mut chain = Chain::new(Keypair::generate(), ChainHead::default());
        let call = AuditEvent {
            kind: Some(EventKind::ToolCall),
            agent: Some("spiffe://td/agent/billing".into()),
            subject: Some("alice@example.com".into()),
            tool: Some("pay/transfer".into()),
            action: Some("call_tool".into()),
            decision: warden_core::Verdict::Deny,
            reason: Some("over the limit".into()),
            policies: vec!["large-payment".into()],
            correlation_id: Some("c1".into()),
            latency_us: Some(2500),
            risk: Some(40),
            findings: vec!["args.pii.iban".into()],
            ..Default::default()
        };
        let token = AuditEvent {
            kind: Some(EventKind::TokenIssued),
            agent: call.agent.clone(),
            token_id: Some("j1".into()),
            decision: warden_core::Verdict::Allow,
            ..Default::default()
        };
        let kill = AuditEvent { kind: Some(EventKind::Containment), agent: call.agent.clone(), decision: warden_core::Verdict::Contain, ..Default::default() };
        let recs = chain.seal_batch(vec![(call, 1_000), (token, 2_000), (kill, 3_000)]);

        let c = ocsf(&recs[0], "0.1.0");
        assert_eq!((c["class_uid"].as_u64(), c["type_uid"].as_u64(), c["category_uid"].as_u64()), (Some(6003), Some(600399), Some(6)));
        assert_eq!(c["status_id"], 2);
        assert_eq!(c["severity_id"], 3);
        assert_eq!(c["status_detail"], "over the limit");
        assert_eq!(c["actor"]["user"]["name"], "billing");
        assert_eq!(c["actor"]["invoked_by"], "alice@example.com");
        assert_eq!(c["actor"]["authorizations"][0]["policy"]["name"], "large-payment");
        assert_eq!(c["api"]["service"]["name"], "pay");
        assert_eq!(c["resources"][0]["name"], "pay/transfer");
        assert_eq!(c["metadata"]["correlation_uid"], "c1");
        assert_eq!(c["metadata"]["sequence"], 1);
        assert_eq!(c["metadata"]["uid"], recs[0].hash);
        assert_eq!(c["duration"], 2);
        assert_eq!(c["unmapped"]["risk"], 40);
        assert_eq!(c["unmapped"]["findings"][0], "args.pii.iban");
        assert_eq!(c["time"], 1_000);

        let t = ocsf(&recs[1], "0.1.0");
        assert_eq!((t["class_uid"].as_u64(), t["status_id"].as_u64()), (Some(3003), Some(1)));
        assert_eq!(t["session"]["uid"], "j1");
        let k = ocsf(&recs[2], "0.1.0");
        assert_eq!((k["class_uid"].as_u64(), k["severity_id"].as_u64()), (Some(3004), Some(4)));
        assert_eq!(k["entity"]["type"], "containment");
    }
}

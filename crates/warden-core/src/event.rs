use serde::{Deserialize, Serialize};

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ToolCall,
    /// A call the gateway is about to forward upstream, written durably
    /// before the upstream sees it (write-ahead): nothing executes
    /// unrecorded. The call's `tool_call` record with its outcome follows
    /// under the same correlation id.
    ToolCallIntent,
    ToolList,
    McpRequest,
    TokenIssued,
    TokenExchanged,
    TokenDenied,
    AuthnFailure,
    Revocation,
    AgentChanged,
    ToolChanged,
    ToolDefinitionChanged,
    /// Inspection flagged a tool definition (possible tool poisoning).
    ToolDefinitionFlagged,
    /// A kill switch was engaged (by an operator or automatically) or took
    /// effect on a gateway.
    Containment,
    /// An operator lifted a kill switch.
    ContainmentLifted,
    /// A call was held for human approval.
    ApprovalRequested,
    /// An approver approved or denied a held call.
    ApprovalDecided,
    /// An operator of the admin API was added or removed.
    OperatorChanged,
    /// A policy bundle was pushed to the store for every gateway.
    PolicyChanged,
    /// A connection through the egress proxy was admitted or refused.
    EgressConnection,
}

/// What an audit record says was decided. Serialized as the strings stored
/// records have always carried (`allow`, `deny`, `needs_approval`, `error`,
/// `contain`), so the hash chain of an existing log keeps its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    /// Refused. The default, so a record that says nothing else records a
    /// refusal (fail closed).
    #[default]
    Deny,
    /// Held for a human's approval.
    NeedsApproval,
    /// Not decided: the gateway failed (e.g. the write-ahead record could
    /// not be written) and did nothing.
    Error,
    /// A kill switch was engaged.
    Contain,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::NeedsApproval => "needs_approval",
            Self::Error => "error",
            Self::Contain => "contain",
        }
    }

    /// Did the request not go ahead as asked?
    pub fn is_refusal(self) -> bool {
        matches!(self, Self::Deny | Self::NeedsApproval | Self::Error)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audited decision. Arguments are recorded as a digest, never raw, and
/// no token or secret ever appears here.
///
/// Fields are in alphabetical order and none is a map: serialized as is,
/// the event is already canonical JSON, which lets the audit chain hash
/// records without building a JSON tree (see `warden-audit`). A test keeps
/// the order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Agent SPIFFE id (the actor), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The call's anomaly score (0-100) against the agent's baseline.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub anomaly: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub decision: Verdict,
    /// Delegation chain, outermost actor first, for sub-agent tokens.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub delegation: Vec<String>,
    /// What inspection found, as kinds only (`args.pii.email`,
    /// `result.injection.instruction_override`); never the values.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub findings: Vec<String>,
    /// Whether the request reached an upstream server.
    #[serde(default)]
    pub forwarded: bool,
    pub kind: Option<EventKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub policies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many spans the gateway redacted in the arguments and result.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub redacted: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// The agent's risk score (0-100) when the call was decided.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub risk: Option<u8>,
    /// Human owner on whose behalf the agent acts (token `sub`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// How the caller held its token (a call), or how the issued token is
    /// bound (a token record): `dpop` or `bearer`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_binding: Option<crate::TokenBinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_event_serializes_in_canonical_key_order() {
        let full = AuditEvent {
            kind: Some(EventKind::ToolCall),
            agent: Some("a".into()),
            subject: Some("s".into()),
            delegation: vec!["d".into()],
            tool: Some("t".into()),
            action: Some("x".into()),
            task: Some("k".into()),
            decision: Verdict::Allow,
            reason: Some("r".into()),
            policies: vec!["p".into()],
            token_id: Some("j".into()),
            token_binding: Some(crate::TokenBinding::Bearer),
            args_sha256: Some("h".into()),
            correlation_id: Some("c".into()),
            latency_us: Some(1),
            forwarded: true,
            remediation: Some("m".into()),
            findings: vec!["f".into()],
            redacted: 1,
            risk: Some(2),
            anomaly: Some(3),
        };
        let direct = serde_json::to_string(&full).unwrap();
        assert_eq!(direct, crate::canonical_json(&serde_json::to_value(&full).unwrap()));
        let v: serde_json::Value = serde_json::from_str(&direct).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "keep AuditEvent's fields in alphabetical order");
        assert_eq!(keys.len(), 21, "every field is set above");
    }

    #[test]
    fn verdicts_serialize_to_the_strings_stored_records_carry() {
        for (v, s) in [
            (Verdict::Allow, "allow"),
            (Verdict::Deny, "deny"),
            (Verdict::NeedsApproval, "needs_approval"),
            (Verdict::Error, "error"),
            (Verdict::Contain, "contain"),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Verdict>(&format!("\"{s}\"")).unwrap(), v);
            assert_eq!(v.to_string(), s);
        }
        assert!(serde_json::from_str::<Verdict>("\"maybe\"").is_err(), "an unknown verdict is not read as any of these");
    }
}

use serde::{Deserialize, Serialize};

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ToolCall,
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
}

/// One audited decision. Arguments are recorded as a digest, never raw, and
/// no token or secret ever appears here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub kind: Option<EventKind>,
    /// Agent SPIFFE id (the actor), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Human owner on whose behalf the agent acts (token `sub`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Delegation chain, outermost actor first, for sub-agent tokens.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub delegation: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// allow | deny | needs_approval | error
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub policies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Whether the request reached an upstream server.
    #[serde(default)]
    pub forwarded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// What inspection found, as kinds only (`args.pii.email`,
    /// `result.injection.instruction_override`); never the values.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub findings: Vec<String>,
    /// How many spans the gateway redacted in the arguments and result.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub redacted: u32,
    /// The agent's risk score (0-100) when the call was decided.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub risk: Option<u8>,
    /// The call's anomaly score (0-100) against the agent's baseline.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub anomaly: Option<u8>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

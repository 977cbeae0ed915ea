use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use warden_core::Findings;
use warden_core::TargetKind;

/// What the policy sees of the calling agent (`principal`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentFacts {
    /// SPIFFE id; the Cedar entity id.
    pub id: String,
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub purpose: String,
    pub autonomy: i64,
    /// Rolling risk score 0-100 from the monitor.
    #[serde(default)]
    pub risk_score: i64,
}

/// What the policy sees of the tool, resource or prompt (`resource`). A
/// resource or prompt has a tool's classification (its upstream's, from the
/// configuration) so that policies written for tools apply to it as well.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolFacts {
    /// A tool (`Warden::Tool`), a resource (`Warden::Resource`) or a prompt
    /// (`Warden::Prompt`).
    #[serde(default = "tool_kind")]
    pub kind: TargetKind,
    pub server: String,
    /// The tool's or prompt's name; a resource's URI.
    pub name: String,
    pub sensitivity: String,
    pub sensitivity_level: i64,
    pub action_class: String,
    #[serde(default)]
    pub exfil_capable: bool,
    /// Its results carry content from outside the trust boundary.
    #[serde(default)]
    pub untrusted_content: bool,
}

/// What the monitor knows about the call (`context.monitor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorFacts {
    /// Anomaly score 0-100 of this call against the agent's baseline.
    #[serde(default)]
    pub anomaly: i64,
    /// The agent's baseline is still being learned.
    #[serde(default)]
    pub learning: bool,
    /// Calls by this agent in the current minute, this one included.
    #[serde(default)]
    pub calls_this_minute: i64,
    /// Session taint: `untrusted` (read untrusted content), `sensitive`
    /// (read sensitive data).
    #[serde(default)]
    pub taint: std::collections::BTreeSet<String>,
}

/// Per-request context (`context`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestFacts {
    pub task: String,
    /// The tool is within the token's scope.
    pub in_scope: bool,
    /// 0 for the agent's own grant, 1+ for sub-agent tokens.
    #[serde(default)]
    pub delegation_depth: i64,
    /// How the caller proved it holds its token: `dpop` (a proof of the
    /// token's key) or `bearer` (the token alone).
    #[serde(default = "dpop")]
    pub token_binding: String,
    /// The human the agent acts for, signed in at the IdP (an MCP host's
    /// interactive sign-in); empty for an agent's own credentials.
    #[serde(default)]
    pub human: String,
    /// Unix seconds; `hour` and `weekday` (0 = Monday) derive from it in UTC.
    pub now: i64,
    /// Arguments of the call (a JSON object); `{}` when listing tools.
    #[serde(default = "empty_object")]
    pub args: Value,
    /// True when deciding whether to show the tool in `tools/list`.
    #[serde(default)]
    pub listing: bool,
    /// What inspection found in the arguments (for `call_tool`) or in the
    /// upstream's result (for `receive_result`).
    #[serde(default)]
    pub findings: Findings,
    /// Deciding on a tool's result (`receive_result`) rather than the call.
    #[serde(default)]
    pub result: bool,
    #[serde(default)]
    pub monitor: MonitorFacts,
    /// Deciding a request the upstream makes of the agent's client while it
    /// serves this call (`relay_request`): its method
    /// (`sampling/createMessage`, `elicitation/create`, `roots/list`);
    /// `findings` are then those of the server's request.
    #[serde(default)]
    pub relayed: Option<String>,
    /// That request asks the user for a credential (an elicitation whose
    /// fields ask for a password, token, key or code).
    #[serde(default)]
    pub asks_for_credentials: bool,
}

pub(crate) fn tool_kind() -> TargetKind {
    TargetKind::Tool
}

pub(crate) fn dpop() -> String {
    "dpop".into()
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Everything one decision is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallFacts {
    pub agent: AgentFacts,
    pub tool: ToolFacts,
    pub request: RequestFacts,
}

impl RequestFacts {
    pub fn hour(&self) -> i64 {
        self.now.rem_euclid(86_400) / 3600
    }

    pub fn weekday(&self) -> i64 {
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        (self.now.div_euclid(86_400) + 3).rem_euclid(7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_and_weekday_utc() {
        // 2026-11-23T14:30:00Z is a Monday.
        let r = RequestFacts {
            task: "t".into(),
            in_scope: true,
            delegation_depth: 0,
            now: 1_795_444_200,
            args: empty_object(),
            listing: false,
            ..Default::default()
        };
        assert_eq!(r.hour(), 14);
        assert_eq!(r.weekday(), 0);
    }
}

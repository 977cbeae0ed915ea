//! Tools: classification, approval (pinning the observed definition) and
//! disabling.

use crate::{Actor, ControlError, ControlPlane};
use warden_core::{ActionClass, AuditEvent, EventKind, Sensitivity, Tool, ToolRef, ToolStatus};
use warden_store::StoreError;

/// How sensitive a tool is and what it can do, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub sensitivity: Sensitivity,
    pub action_class: ActionClass,
    pub exfil_capable: bool,
    pub untrusted_content: bool,
}

impl Classification {
    /// From an operator's words (`low|medium|high`, `read|write|…`).
    pub fn parse(sensitivity: &str, action_class: &str, exfil_capable: bool, untrusted_content: bool) -> Result<Self, ControlError> {
        Ok(Self { sensitivity: sensitivity.parse()?, action_class: action_class.parse()?, exfil_capable, untrusted_content })
    }
}

impl std::fmt::Display for Classification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {} / exfil={} / untrusted={}", self.sensitivity, self.action_class, self.exfil_capable, self.untrusted_content)
    }
}

impl ControlPlane {
    /// Classify one tool; a tool not seen yet is recorded as pending.
    pub async fn classify_tool(&self, actor: &Actor, tool: &str, class: &Classification) -> Result<Tool, ControlError> {
        let tref: ToolRef = tool.parse()?;
        if tref.is_wildcard() {
            return Err(ControlError::WildcardTool(tref));
        }
        let mut t = match self.store.get_tool(&tref).await {
            Ok(t) => t,
            // Until observed and approved, the most cautious defaults.
            Err(StoreError::NotFound(_)) => Tool {
                tool: tref.clone(),
                sensitivity: Sensitivity::High,
                action_class: ActionClass::Exec,
                exfil_capable: true,
                untrusted_content: true,
                pinned_hash: None,
                observed_hash: None,
                status: ToolStatus::Pending,
            },
            Err(e) => return Err(e.into()),
        };
        t.sensitivity = class.sensitivity;
        t.action_class = class.action_class;
        t.exfil_capable = class.exfil_capable;
        t.untrusted_content = class.untrusted_content;
        self.store.upsert_tool(&t).await?;
        self.settle().await;
        self.record(actor, EventKind::ToolChanged, "tool:set", tool_event(&tref, class.to_string())).await?;
        Ok(t)
    }

    /// Approve a tool, pinning its observed definition. A definition that
    /// inspection flagged is approved only with `accept_findings`, and the
    /// findings accepted are recorded.
    pub async fn approve_tool(&self, actor: &Actor, tool: &str, accept_findings: bool) -> Result<Tool, ControlError> {
        let tref: ToolRef = tool.parse()?;
        let flagged = self.store.observed_findings(&tref).await?;
        let t = self.store.approve_tool(&tref, accept_findings).await?;
        self.settle().await;
        let mut what = format!("pinned definition {}", t.pinned_hash.as_deref().unwrap_or_default());
        if let Some(f) = flagged {
            what.push_str(&format!("; operator accepted inspection findings {f}"));
        }
        self.record(actor, EventKind::ToolChanged, "tool:approve", tool_event(&t.tool, what)).await?;
        Ok(t)
    }

    /// Disable a tool: every call to it is refused.
    pub async fn disable_tool(&self, actor: &Actor, tool: &str) -> Result<ToolRef, ControlError> {
        let tref: ToolRef = tool.parse()?;
        self.store.set_tool_status(&tref, ToolStatus::Disabled).await?;
        self.settle().await;
        self.record(actor, EventKind::ToolChanged, "tool:disable", tool_event(&tref, "disabled by an operator".into())).await?;
        Ok(tref)
    }
}

fn tool_event(tool: &ToolRef, reason: String) -> AuditEvent {
    AuditEvent { tool: Some(tool.to_string()), ..crate::change(reason) }
}

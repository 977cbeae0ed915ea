use crate::{CoreError, validate_name};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `SERVER/TOOL`, or `SERVER/*` in an allow-list. Tool names come from
/// upstream servers, so only `/` and control characters are refused in them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ToolRef {
    pub server: String,
    pub tool: String,
}

impl ToolRef {
    pub fn new(server: &str, tool: &str) -> Result<Self, CoreError> {
        let full = format!("{server}/{tool}");
        validate_name(server).map_err(|_| CoreError::ToolRef(full.clone()))?;
        if tool.is_empty() || tool.len() > 128 || tool.contains('/') || tool.chars().any(char::is_control) || tool.contains(' ') {
            return Err(CoreError::ToolRef(full));
        }
        Ok(Self { server: server.into(), tool: tool.into() })
    }

    pub fn is_wildcard(&self) -> bool {
        self.tool == "*"
    }

    /// Whether this allow-list entry grants `other`.
    pub fn covers(&self, other: &ToolRef) -> bool {
        self.server == other.server && (self.tool == "*" || self.tool == other.tool)
    }

    /// Name exposed to MCP clients by the federating gateway.
    pub fn federated_name(&self) -> String {
        format!("{}__{}", self.server, self.tool)
    }

    /// Inverse of [`ToolRef::federated_name`]; server names never contain `__`.
    pub fn from_federated_name(name: &str) -> Option<Self> {
        let (server, tool) = name.split_once("__")?;
        Self::new(server, tool).ok().filter(|t| !t.is_wildcard())
    }
}

impl FromStr for ToolRef {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let (server, tool) = s.split_once('/').ok_or_else(|| CoreError::ToolRef(s.into()))?;
        Self::new(server, tool)
    }
}

impl TryFrom<String> for ToolRef {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        s.parse()
    }
}

impl From<ToolRef> for String {
    fn from(t: ToolRef) -> String {
        t.to_string()
    }
}

impl fmt::Display for ToolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.tool)
    }
}

string_enum!(Sensitivity, "sensitivity", "low, medium, high, critical", {
    Low => "low", Medium => "medium", High => "high", Critical => "critical",
});

impl Sensitivity {
    /// Numeric rank for policy comparisons (`resource.sensitivity_level >= 3`).
    pub fn level(self) -> i64 {
        self as i64 + 1
    }
}

string_enum!(ActionClass, "action class", "read, write, delete, exec, financial", {
    Read => "read", Write => "write", Delete => "delete", Exec => "exec", Financial => "financial",
});

string_enum!(
    /// What an enforced MCP request asks for: a tool call, a resource read
    /// or a prompt. Cedar sees each as its own action on its own entity type.
    TargetKind, "target kind", "tool, resource, prompt", {
    Tool => "tool", Resource => "resource", Prompt => "prompt",
});

impl TargetKind {
    /// The name under which a server's resources or prompts are granted in
    /// a token's scope and an agent's registered tools (`SERVER/:resources`,
    /// `SERVER/:prompts`; `SERVER/*` grants them with every tool). MCP
    /// allows no colon in tool names, and the gateway registers no tool
    /// whose name starts with one, so no tool can be mistaken for them.
    pub fn grant(self, server: &str) -> Option<ToolRef> {
        let name = match self {
            Self::Tool => return None,
            Self::Resource => ":resources",
            Self::Prompt => ":prompts",
        };
        Some(ToolRef { server: server.into(), tool: name.into() })
    }
}

string_enum!(ToolStatus, "tool status", "pending, approved, changed, disabled", {
    Pending => "pending", Approved => "approved", Changed => "changed", Disabled => "disabled",
});

/// A registered upstream tool with its pinned definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub tool: ToolRef,
    pub sensitivity: Sensitivity,
    pub action_class: ActionClass,
    /// Can move data out of the organisation (email, HTTP fetch, upload).
    pub exfil_capable: bool,
    /// Its results carry content from outside the trust boundary (web
    /// pages, inbound e-mail, shared files): reading them taints the session.
    #[serde(default)]
    pub untrusted_content: bool,
    /// SHA-256 of the canonical definition approved by an operator.
    pub pinned_hash: Option<String>,
    /// SHA-256 of the definition the gateway last saw upstream.
    pub observed_hash: Option<String>,
    pub status: ToolStatus,
}

impl Tool {
    /// Callable only when approved and the upstream definition still matches the pin.
    pub fn is_callable(&self) -> bool {
        self.status == ToolStatus::Approved && self.pinned_hash.is_some() && self.pinned_hash == self.observed_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_ref_parse_cover_and_federated_names() {
        let t: ToolRef = "crm/lookup".parse().unwrap();
        let all: ToolRef = "crm/*".parse().unwrap();
        assert!(all.covers(&t));
        assert!(!ToolRef::new("db", "lookup").unwrap().covers(&t));
        assert_eq!(t.federated_name(), "crm__lookup");
        assert_eq!(ToolRef::from_federated_name("crm__lookup"), Some(t));
        assert_eq!(ToolRef::from_federated_name("crm__get__thing").unwrap().tool, "get__thing");
        assert!(ToolRef::from_federated_name("crm__*").is_none());
        assert!("nocolon".parse::<ToolRef>().is_err());
        assert!("Bad/x".parse::<ToolRef>().is_err());
    }

    #[test]
    fn callable_needs_matching_pin() {
        let mut t = Tool {
            tool: "a/b".parse().unwrap(),
            sensitivity: Sensitivity::Low,
            action_class: ActionClass::Read,
            exfil_capable: false,
            untrusted_content: false,
            pinned_hash: Some("h1".into()),
            observed_hash: Some("h1".into()),
            status: ToolStatus::Approved,
        };
        assert!(t.is_callable());
        t.observed_hash = Some("h2".into());
        assert!(!t.is_callable());
        assert_eq!("financial".parse::<ActionClass>().unwrap(), ActionClass::Financial);
        assert_eq!(Sensitivity::Critical.level(), 4);
    }
}

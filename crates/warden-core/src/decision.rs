use serde::{Deserialize, Serialize};

/// An obligation the enforcement point must fulfil before releasing a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Obligation {
    /// Redact findings of the given class in the result (`mask`, `hash`, `token`).
    Redact { class: String, method: String },
}

/// Outcome of the policy engine for one request. `policies` lists the ids of
/// the policies that determined it, which are the reasons given to callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Decision {
    Allow { policies: Vec<String>, obligations: Vec<Obligation> },
    Deny { policies: Vec<String>, reason: String },
    NeedsApproval { policies: Vec<String>, reason: String },
}

impl Decision {
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny { policies: Vec::new(), reason: reason.into() }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }

    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Allow { .. } => "allow",
            Self::Deny { .. } => "deny",
            Self::NeedsApproval { .. } => "needs_approval",
        }
    }

    pub fn policies(&self) -> &[String] {
        match self {
            Self::Allow { policies, .. } | Self::Deny { policies, .. } | Self::NeedsApproval { policies, .. } => policies,
        }
    }
}

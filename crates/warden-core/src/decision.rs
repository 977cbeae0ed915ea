use serde::{Deserialize, Serialize};

/// An obligation the enforcement point must fulfil before releasing a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Obligation {
    /// Redact findings of the given class in the result (`mask`, `hash`, `token`).
    Redact { class: String, method: String },
}

impl Obligation {
    /// Parse redaction rules `CLASS:METHOD, …` (the `@redact` annotation):
    /// CLASS is `pii`, `secrets` or a finding kind such as `email`; METHOD is
    /// `mask`, `hash` or `token`.
    pub fn parse_redactions(text: &str) -> Result<Vec<Obligation>, crate::CoreError> {
        let bad = |why: String| crate::CoreError::Redaction { rule: text.to_string(), why };
        text.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|part| {
                let (class, method) =
                    part.trim().split_once(':').ok_or_else(|| bad(format!("{:?} must look like CLASS:METHOD, e.g. pii:mask", part.trim())))?;
                let (class, method) = (class.trim(), method.trim());
                if !matches!(method, "mask" | "hash" | "token") {
                    return Err(bad(format!("method {method:?} is not one of mask, hash, token")));
                }
                if class.is_empty() || !class.bytes().all(|c| c.is_ascii_lowercase() || c == b'_') || matches!(class, "injection" | "poisoning") {
                    return Err(bad(format!("class {class:?} must be pii, secrets or a finding kind such as email")));
                }
                Ok(Obligation::Redact { class: class.to_string(), method: method.to_string() })
            })
            .collect()
    }
}

/// Outcome of the policy engine for one request. `policies` lists the ids of
/// the policies that determined it, which are the reasons given to callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Decision {
    Allow {
        policies: Vec<String>,
        obligations: Vec<Obligation>,
    },
    Deny {
        policies: Vec<String>,
        reason: String,
    },
    /// Permitted once a human approves; `obligations` apply then.
    NeedsApproval {
        policies: Vec<String>,
        reason: String,
        obligations: Vec<Obligation>,
    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_rules_parse_with_clear_errors() {
        let r = Obligation::parse_redactions("pii:mask, email:token").unwrap();
        assert_eq!(r[1], Obligation::Redact { class: "email".into(), method: "token".into() });
        for bad in ["pii", "pii:erase", "injection:mask", "PII:mask", ":mask"] {
            assert!(Obligation::parse_redactions(bad).is_err(), "{bad}");
        }
    }
}

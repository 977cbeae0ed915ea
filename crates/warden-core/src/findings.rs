use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What inspection found in a value (tool arguments, a tool result), as the
/// policy context sees it (`context.findings`): kinds and counts, never the
/// values themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Findings {
    /// PII kinds: email, phone, credit_card, iban, us_ssn, ip_address, …
    pub pii: BTreeSet<String>,
    pub pii_count: i64,
    /// Secret kinds: github_token, private_key, generic_secret, …
    pub secrets: BTreeSet<String>,
    pub secret_count: i64,
    /// 0..100; 50 and above counts as an injection attempt.
    pub injection_score: i64,
    /// instruction_override, role_spoofing, hidden_text, exfil_link, …
    pub injection_signals: BTreeSet<String>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.pii_count == 0 && self.secret_count == 0 && self.injection_signals.is_empty()
    }
}

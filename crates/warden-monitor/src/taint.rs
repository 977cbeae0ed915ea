//! Session taint for the "lethal trifecta": a session that has read
//! untrusted content and sensitive data must not reach an exfiltration-
//! capable tool unsupervised. Labels only accumulate; a session starts clean.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Read content from outside the trust boundary (a tool marked
    /// `untrusted`, or a result carrying an injection attempt).
    pub untrusted: bool,
    /// Read sensitive data (PII or secrets in a result, or a high or
    /// critical sensitivity tool's output).
    pub sensitive: bool,
}

impl Taint {
    /// Labels as Cedar sees them (`context.monitor.taint`).
    pub fn labels(self) -> Vec<&'static str> {
        let mut v = Vec::with_capacity(2);
        if self.untrusted {
            v.push("untrusted");
        }
        if self.sensitive {
            v.push("sensitive");
        }
        v
    }

    /// Both legs of the trifecta are present; the third is the tool.
    pub fn both(self) -> bool {
        self.untrusted && self.sensitive
    }

    pub fn merge(&mut self, other: Taint) {
        self.untrusted |= other.untrusted;
        self.sensitive |= other.sensitive;
    }
}

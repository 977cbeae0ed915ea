//! Autonomy promotion criteria, computed from an agent's history: time
//! without critical violations, how often humans agreed with the calls the
//! guardrails held (a high rate means the holds were false positives), the
//! current risk, the calls seen, and whether the audit log verifies.
//! Promotion stays an operator's decision; demotion on a critical violation
//! is automatic (the gateway does it).

use serde::{Deserialize, Serialize};

/// What is known of an agent's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub autonomy: u8,
    pub registered_ms: i64,
    pub now_ms: i64,
    /// Calls the monitor has seen.
    pub calls: u64,
    /// Last critical violation (contained by a `@critical` policy).
    pub last_critical_ms: Option<i64>,
    /// Held calls that humans approved, and that they denied.
    pub approvals_granted: u64,
    pub approvals_refused: u64,
    pub risk: u8,
    pub audit_verified: bool,
}

/// Thresholds for recommending a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromotionPolicy {
    pub days_without_critical: u32,
    pub min_calls: u64,
    /// At least this many held calls decided by humans...
    pub min_decided_approvals: u64,
    /// ...of which at least this share approved.
    pub min_approval_rate: f64,
    pub max_risk: u8,
}

impl Default for PromotionPolicy {
    fn default() -> Self {
        Self { days_without_critical: 14, min_calls: 200, min_decided_approvals: 10, min_approval_rate: 0.9, max_risk: 20 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Criterion {
    pub name: &'static str,
    pub met: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Promotion {
    pub autonomy: u8,
    /// The level a promotion would give; none at 3.
    pub next: Option<u8>,
    pub eligible: bool,
    pub criteria: Vec<Criterion>,
}

const DAY_MS: i64 = 86_400_000;

pub fn promotion(h: &History, p: &PromotionPolicy) -> Promotion {
    let clean_since = h.last_critical_ms.unwrap_or(h.registered_ms);
    let clean_days = (h.now_ms - clean_since).max(0) / DAY_MS;
    let decided = h.approvals_granted + h.approvals_refused;
    let rate = if decided == 0 { 0.0 } else { h.approvals_granted as f64 / decided as f64 };
    let criteria = vec![
        Criterion {
            name: "days_without_critical_violation",
            met: clean_days >= i64::from(p.days_without_critical),
            detail: format!(
                "{clean_days} days {} (needs {})",
                if h.last_critical_ms.is_some() { "since the last critical violation" } else { "since registration, none so far" },
                p.days_without_critical
            ),
        },
        Criterion { name: "calls", met: h.calls >= p.min_calls, detail: format!("{} calls seen (needs {})", h.calls, p.min_calls) },
        Criterion {
            name: "held_calls_approved",
            met: decided >= p.min_decided_approvals && rate >= p.min_approval_rate,
            detail: format!(
                "humans approved {} of {decided} held calls ({:.0}%; needs {:.0}% of at least {}): the holds were false positives",
                h.approvals_granted,
                rate * 100.0,
                p.min_approval_rate * 100.0,
                p.min_decided_approvals
            ),
        },
        Criterion { name: "risk", met: h.risk <= p.max_risk, detail: format!("risk {} (needs {} or less)", h.risk, p.max_risk) },
        Criterion {
            name: "audit_verified",
            met: h.audit_verified,
            detail: if h.audit_verified { "the audit log verifies".into() } else { "the audit log does not verify".into() },
        },
    ];
    let next = (h.autonomy < 3).then_some(h.autonomy + 1);
    Promotion { autonomy: h.autonomy, next, eligible: next.is_some() && criteria.iter().all(|c| c.met), criteria }
}

/// The level after a critical violation: one lower, at least 0.
pub fn demoted(autonomy: u8) -> u8 {
    autonomy.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> History {
        History {
            autonomy: 1,
            registered_ms: 0,
            now_ms: 30 * DAY_MS,
            calls: 5_000,
            last_critical_ms: None,
            approvals_granted: 19,
            approvals_refused: 1,
            risk: 5,
            audit_verified: true,
        }
    }

    #[test]
    fn a_clean_record_is_eligible_and_each_gap_blocks_it() {
        let p = PromotionPolicy::default();
        let r = promotion(&good(), &p);
        assert!(r.eligible && r.next == Some(2), "{r:?}");
        let blockers: [(&str, History); 5] = [
            ("days_without_critical_violation", History { last_critical_ms: Some(25 * DAY_MS), ..good() }),
            ("calls", History { calls: 10, ..good() }),
            ("held_calls_approved", History { approvals_granted: 5, approvals_refused: 5, ..good() }),
            ("risk", History { risk: 60, ..good() }),
            ("audit_verified", History { audit_verified: false, ..good() }),
        ];
        for (name, h) in blockers {
            let r = promotion(&h, &p);
            assert!(!r.eligible, "{name}");
            assert_eq!(r.criteria.iter().filter(|c| !c.met).map(|c| c.name).collect::<Vec<_>>(), vec![name]);
        }
        assert!(!promotion(&History { autonomy: 3, ..good() }, &p).eligible, "3 is the top");
        assert!(!promotion(&History { approvals_granted: 0, approvals_refused: 0, ..good() }, &p).eligible, "no evidence, no promotion");
        assert_eq!((demoted(3), demoted(0)), (2, 0));
    }
}

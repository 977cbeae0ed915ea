//! The rolling risk score (0-100): events add points and the total decays
//! with a half-life, so a burst of trouble raises it fast and a quiet agent
//! drifts back to zero.

use serde::{Deserialize, Serialize};

/// Something that raises an agent's risk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RiskEvent {
    /// The call's anomaly score (0-100).
    Anomaly(u8),
    /// A policy denied the call.
    Denied,
    /// A rate limit or impact cap refused the call.
    LimitHit,
    /// The arguments carried a prompt injection (score 50+).
    InjectionInArguments,
    /// The arguments carried a credential.
    SecretInArguments,
    /// An exfiltration-capable tool was called from a session that read
    /// untrusted content and sensitive data.
    LethalTrifecta,
    /// A policy marked `@critical` matched: contain at once.
    Critical,
}

impl RiskEvent {
    /// Points added to the score.
    pub fn points(self) -> f64 {
        match self {
            // Only clearly unusual calls count; routine noise adds nothing.
            RiskEvent::Anomaly(a) => (f64::from(a) - 25.0).max(0.0) * 0.4,
            RiskEvent::Denied => 6.0,
            RiskEvent::LimitHit => 10.0,
            RiskEvent::InjectionInArguments => 15.0,
            RiskEvent::SecretInArguments => 10.0,
            RiskEvent::LethalTrifecta => 25.0,
            RiskEvent::Critical => 100.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    value: f64,
    at_ms: i64,
}

impl Risk {
    pub fn value(&self, now_ms: i64, half_life_ms: f64) -> f64 {
        let dt = (now_ms - self.at_ms).max(0) as f64;
        self.value * 0.5f64.powf(dt / half_life_ms)
    }

    pub fn score(&self, now_ms: i64, half_life_ms: f64) -> u8 {
        self.value(now_ms, half_life_ms).round().clamp(0.0, 100.0) as u8
    }

    pub fn add(&mut self, e: RiskEvent, now_ms: i64, half_life_ms: f64) {
        let points = e.points();
        if points > 0.0 {
            self.value = (self.value(now_ms, half_life_ms) + points).min(100.0);
            self.at_ms = now_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_caps_and_decays() {
        let hl = 600_000.0;
        let mut r = Risk::default();
        r.add(RiskEvent::Anomaly(20), 0, hl);
        assert_eq!(r.score(0, hl), 0, "routine anomaly adds nothing");
        r.add(RiskEvent::LethalTrifecta, 0, hl);
        r.add(RiskEvent::Denied, 0, hl);
        assert_eq!(r.score(0, hl), 31);
        assert_eq!(r.score(600_000, hl), 16, "one half-life later");
        r.add(RiskEvent::Critical, 600_000, hl);
        assert_eq!(r.score(600_000, hl), 100);
    }
}

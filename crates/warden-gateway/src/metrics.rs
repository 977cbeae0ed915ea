//! Prometheus metrics of the enforcement point: tool-call decisions by
//! outcome, their latency, containments and approval requests. Lock-free
//! counters on the hot path; the text exposition is rendered on scrape.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use warden_core::Verdict;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];
const OUTCOMES: [Verdict; 4] = [Verdict::Allow, Verdict::Deny, Verdict::NeedsApproval, Verdict::Error];

#[derive(Debug, Default)]
pub struct Metrics {
    decisions: [AtomicU64; 4],
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    containments: [AtomicU64; 2],
    approvals_requested: AtomicU64,
    /// Requests that failed authentication, and those answered 429 for it.
    unauthenticated: [AtomicU64; 2],
}

/// Values read at scrape time from elsewhere.
#[derive(Debug, Default)]
pub struct Gauges {
    pub approvals_pending: u64,
    pub kill_switches_engaged: u64,
    pub agents_active: u64,
    pub agents_suspended: u64,
}

impl Metrics {
    /// A `tools/call` decided with `outcome`, answered after `latency_us`.
    pub fn observe_call(&self, outcome: Verdict, latency_us: u64) {
        // A tool call's record is never `contain`; were it, it is not an allow.
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(3);
        self.decisions[i].fetch_add(1, Relaxed);
        let secs = latency_us as f64 / 1e6;
        if let Some(b) = BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[b].fetch_add(1, Relaxed);
        }
        self.latency_sum_us.fetch_add(latency_us, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
    }

    /// An agent, owner, tool, server or everything was contained;
    /// `automatic` when the monitor did it.
    pub fn observe_containment(&self, automatic: bool) {
        self.containments[usize::from(automatic)].fetch_add(1, Relaxed);
    }

    /// A request failed authentication, or (`throttled`) was refused
    /// because its source failed too often.
    pub fn observe_unauthenticated(&self, throttled: bool) {
        self.unauthenticated[usize::from(throttled)].fetch_add(1, Relaxed);
    }

    pub fn observe_approval_request(&self) {
        self.approvals_requested.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        let mut s = String::with_capacity(2048);
        s.push_str("# HELP warden_decisions_total Tool calls decided by the gateway, by outcome.\n# TYPE warden_decisions_total counter\n");
        for (o, c) in OUTCOMES.iter().zip(&self.decisions) {
            let _ = writeln!(s, "warden_decisions_total{{outcome=\"{o}\"}} {}", c.load(Relaxed));
        }
        s.push_str(
            "# HELP warden_call_duration_seconds Time from request to answer of a tools/call at the gateway.\n# TYPE warden_call_duration_seconds histogram\n",
        );
        let mut cum = 0;
        for (b, c) in BUCKETS.iter().zip(&self.latency_buckets) {
            cum += c.load(Relaxed);
            let _ = writeln!(s, "warden_call_duration_seconds_bucket{{le=\"{b}\"}} {cum}");
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(s, "warden_call_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(s, "warden_call_duration_seconds_sum {}", self.latency_sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(s, "warden_call_duration_seconds_count {count}");
        s.push_str("# HELP warden_containments_total Kill switches engaged through this gateway (automatic: by the monitor).\n# TYPE warden_containments_total counter\n");
        for (t, c) in ["operator", "automatic"].iter().zip(&self.containments) {
            let _ = writeln!(s, "warden_containments_total{{trigger=\"{t}\"}} {}", c.load(Relaxed));
        }
        s.push_str("# HELP warden_approvals_requested_total Calls held for human approval.\n# TYPE warden_approvals_requested_total counter\n");
        let _ = writeln!(s, "warden_approvals_requested_total {}", self.approvals_requested.load(Relaxed));
        s.push_str(
            "# HELP warden_unauthenticated_requests_total Requests that failed authentication (throttled: answered 429 because their source failed too often).
# TYPE warden_unauthenticated_requests_total counter
",
        );
        for (o, c) in ["failed", "throttled"].iter().zip(&self.unauthenticated) {
            let _ = writeln!(s, "warden_unauthenticated_requests_total{{outcome=\"{o}\"}} {}", c.load(Relaxed));
        }
        for (name, help, v) in [
            ("warden_approvals_pending", "Approval requests waiting for a decision.", g.approvals_pending),
            ("warden_kill_switches_engaged", "Kill switches in force.", g.kill_switches_engaged),
        ] {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        }
        s.push_str("# HELP warden_agents Registered agents by status.\n# TYPE warden_agents gauge\n");
        let _ = writeln!(s, "warden_agents{{status=\"active\"}} {}", g.agents_active);
        let _ = writeln!(s, "warden_agents{{status=\"suspended\"}} {}", g.agents_suspended);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.observe_call(Verdict::Allow, 400);
        m.observe_call(Verdict::Deny, 3_000);
        m.observe_call(Verdict::Contain, 9_000_000);
        m.observe_containment(true);
        let t = m.render(&Gauges { approvals_pending: 2, ..Default::default() });
        assert!(t.contains("warden_decisions_total{outcome=\"allow\"} 1\n"), "{t}");
        assert!(t.contains("warden_decisions_total{outcome=\"error\"} 1\n"));
        assert!(t.contains("warden_call_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(t.contains("warden_call_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(t.contains("warden_call_duration_seconds_bucket{le=\"5\"} 2\n"), "9 s is above the last bucket");
        assert!(t.contains("warden_call_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(t.contains("warden_containments_total{trigger=\"automatic\"} 1\n"));
        assert!(t.contains("warden_approvals_pending 2\n"));
    }
}

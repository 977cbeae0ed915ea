//! The last stage: the monitor learns a call's outcome, and an agent whose
//! assessment or outcome takes it over the threshold is contained (a
//! `@critical` violation also demotes it).

use crate::state::Gateway;
use std::time::Instant;
use warden_core::clock::now_ms;
use warden_core::{Kill, KillScope};
use warden_monitor::{Assessment, Outcome};

/// After a call's decision, before its answer leaves (so no later call gets
/// in): record the outcome with the monitor, contain the agent when the
/// assessment (made at `assessed`) or the outcome takes it over the
/// threshold, and demote it after a `@critical` violation.
pub(crate) async fn settle(gw: &Gateway, call: &warden_monitor::Call<'_>, seen: &Assessment, assessed: Instant, outcome: &Outcome) {
    let (cause, trigger) = match &seen.contain {
        Some(c) => (Some(c.clone()), assessed),
        None => (gw.monitor.finish(call, outcome), Instant::now()),
    };
    if let Some(cause) = cause {
        contain_agent(gw, call.agent, cause, trigger).await;
    }
    if let Some(p) = &outcome.critical {
        gw.demote(call.agent, p).await;
    }
}

/// Contain an agent automatically (the monitor's verdict at `trigger`).
pub(crate) async fn contain_agent(gw: &Gateway, agent: &str, cause: String, trigger: Instant) {
    let kill = Kill { id: 0, scope: KillScope::Agent, target: agent.to_string(), reason: cause, by: "monitor".into(), at_ms: now_ms() };
    match gw.contain_since(kill, trigger).await {
        Ok(_) | Err(warden_store::StoreError::Conflict(_)) => {}
        Err(e) => tracing::error!("automatic containment of {agent}: {e}"),
    }
}

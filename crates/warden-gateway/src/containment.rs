//! Containment at the enforcement point: the kill switches in force (those
//! in the store plus those this process engaged and has not yet seen come
//! back from it), engaging one so that it holds before the next call is
//! checked, closing the sessions it covers, and auditing every engagement
//! and lift with its cause and timing.

use crate::state::Gateway;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use warden_core::clock::now_ms;
use warden_core::{AuditEvent, EventKind, Kill, KillScope};
use warden_monitor::KillSet;
use warden_store::StoreError;

#[derive(Default)]
pub(crate) struct Containment {
    /// What the per-call check reads.
    pub(crate) in_force: ArcSwap<KillSet>,
    /// Kills engaged here, with the store's change counter once persisted;
    /// kept until a snapshot at least that new holds them.
    local: Mutex<Vec<(Kill, Option<i64>)>>,
    /// Store kills already known here (audited), by id.
    known: tokio::sync::Mutex<HashMap<i64, Kill>>,
    /// Kills engaged here whose first refused call is still to come.
    awaiting_refusal: Mutex<HashMap<(KillScope, String), Instant>>,
    timings: Mutex<Timings>,
}

/// Recent time-to-contain samples (microseconds), newest last.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Trigger to the kill being in force for the per-call check.
    pub in_force_us: VecDeque<u64>,
    /// Trigger to the first call refused because of it.
    pub first_refusal_us: VecDeque<u64>,
}

const TIMING_SAMPLES: usize = 1024;

fn push(q: &mut VecDeque<u64>, v: u64) {
    if q.len() == TIMING_SAMPLES {
        q.pop_front();
    }
    q.push_back(v);
}

impl Gateway {
    /// The kill switches in force now.
    pub fn kills(&self) -> Arc<KillSet> {
        self.containment.in_force.load_full()
    }

    /// The kill switch that stops this caller (its agent, an ancestor, its
    /// owner, or everyone) or, when given, this tool; its refusal is noted.
    pub(crate) fn kill_covering(&self, auth: &crate::Authenticated, tool: Option<&warden_core::ToolRef>) -> Option<Kill> {
        let kills = self.kills();
        let k = kills.for_caller(auth.claims.delegation(), &auth.agent.owner).or_else(|| tool.and_then(|t| kills.for_tool(t)))?;
        self.note_refusal(k);
        Some(k.clone())
    }

    /// Recent time-to-contain measurements of kills engaged by this process.
    pub fn containment_timings(&self) -> Timings {
        self.containment.timings.lock().clone()
    }

    /// A call was refused because of `k`: the first such refusal after an
    /// engagement here completes its time-to-contain measurement.
    fn note_refusal(&self, k: &Kill) {
        let mut waiting = self.containment.awaiting_refusal.lock();
        if waiting.is_empty() {
            return;
        }
        if let Some(start) = waiting.remove(&(k.scope, k.target.clone())) {
            let us = start.elapsed().as_micros() as u64;
            drop(waiting);
            push(&mut self.containment.timings.lock().first_refusal_us, us);
            tracing::info!("{} {} contained: first call refused {us} µs after the trigger", k.scope, k.target);
        }
    }

    fn rebuild_kills(&self) {
        let snap = self.snapshot();
        let local = self.containment.local.lock();
        let set = KillSet::new(snap.kills.iter().cloned().chain(local.iter().map(|(k, _)| k.clone())));
        self.containment.in_force.store(Arc::new(set));
    }

    /// Drop the MCP sessions a kill covers: their next request must start
    /// over (and is refused while the kill holds).
    /// Their upstream sessions end with them (a stdio server's process
    /// exits): nothing the contained agent left there is used again.
    fn close_sessions(&self, k: &Kill) -> usize {
        let snap = self.snapshot();
        // An agent kill stops its sub-agents too: each caller's registered
        // lineage (itself alone when the registry holds none valid).
        let covers = |agent: &str| {
            let lineage = crate::authn::registered_lineage(&snap.agents, agent).unwrap_or_else(|_| vec![agent]);
            match k.scope {
                KillScope::Global => true,
                KillScope::Agent => lineage.contains(&k.target.as_str()),
                KillScope::Owner => lineage.iter().any(|id| snap.agents.get(*id).is_some_and(|a| a.owner == k.target)),
                KillScope::Server | KillScope::Tool => false,
            }
        };
        let closed = self.sessions.lock().close_where(|s| covers(&s.agent));
        self.listeners.lock().close_where(|l| covers(&l.agent));
        for up in self.upstreams.values() {
            up.close_sessions(|c| matches!(c, crate::upstream::Caller::Session { agent, .. } if covers(agent)));
        }
        closed
    }

    /// Engage a kill switch. It is in force for every call checked after
    /// the in-memory update (before this returns, and before the store write);
    /// then it is persisted (an agent kill also suspends the agent and revokes
    /// its tokens) and audited with its cause and timing. If the store write
    /// fails the kill stays in force in this process and the error is
    /// returned.
    pub async fn contain(&self, kill: Kill) -> Result<Kill, StoreError> {
        self.contain_since(kill, Instant::now()).await
    }

    /// As [`Gateway::contain`], timed from `start` (when the trigger fired).
    pub(crate) async fn contain_since(&self, kill: Kill, start: Instant) -> Result<Kill, StoreError> {
        {
            let mut local = self.containment.local.lock();
            let dup = local.iter().any(|(k, _)| k.same_switch(&kill)) || self.kills().iter().any(|k| k.same_switch(&kill));
            if dup {
                return Err(StoreError::Conflict(format!("a kill switch for {} {} is already engaged", kill.scope, kill.target)));
            }
            local.push((kill.clone(), None));
            self.containment.awaiting_refusal.lock().insert((kill.scope, kill.target.clone()), start);
        }
        self.rebuild_kills();
        let effect_us = start.elapsed().as_micros() as u64;
        push(&mut self.containment.timings.lock().in_force_us, effect_us);
        let closed = self.close_sessions(&kill);
        let persisted = {
            let mut known = self.containment.known.lock().await;
            let r = self.store.engage_kill(&kill).await;
            if let Ok(e) = &r {
                known.insert(e.kill.id, e.kill.clone());
            }
            r
        };
        if matches!(persisted, Err(StoreError::NotFound(_))) {
            // Nothing to contain (an unknown agent): take it back.
            self.containment.local.lock().retain(|(k, _)| !k.same_switch(&kill));
            self.containment.awaiting_refusal.lock().remove(&(kill.scope, kill.target.clone()));
            self.rebuild_kills();
            return persisted.map(|e| e.kill);
        }
        let seq = match &persisted {
            Ok(e) => Some(e.change_seq),
            // Engaged elsewhere meanwhile: the store's copy takes over.
            Err(StoreError::Conflict(_)) => self.store.change_seq().await.ok(),
            Err(e) => {
                tracing::error!("kill switch {} {} is in force on this gateway but could not be stored: {e}", kill.scope, kill.target);
                None
            }
        };
        if let Some(seq) = seq {
            let mut local = self.containment.local.lock();
            if let Some(e) = local.iter_mut().find(|(k, _)| k.same_switch(&kill)) {
                e.1 = Some(seq);
                if let Ok(stored) = &persisted {
                    e.0.id = stored.kill.id;
                }
            }
        }
        self.rebuild_kills();
        self.metrics.observe_containment(kill.by == "monitor");
        let engaged = persisted.as_ref().map(|e| e.kill.clone()).unwrap_or_else(|_| kill.clone());
        let mut ev = engaged.audit_event(EventKind::Containment);
        ev.reason = Some(format!("{} (in force {effect_us} µs after the trigger; {closed} sessions closed)", engaged.describe()));
        ev.latency_us = Some(effect_us);
        if let Err(e) = self.audit.record(ev).await {
            tracing::error!("containment of {} {} could not be audited: {e}", kill.scope, kill.target);
        }
        persisted.map(|e| e.kill)
    }

    /// After a snapshot refresh: forget local kills the store now holds,
    /// rebuild the set in force, and audit kills engaged or lifted elsewhere
    /// (an operator's CLI, another replica). A lifted agent kill resets the
    /// agent's risk so it does not trip again at once.
    pub(crate) async fn sync_kills(&self) {
        let snap = self.snapshot();
        self.containment.local.lock().retain(|(_, seq)| seq.is_none_or(|s| s > snap.seq));
        self.rebuild_kills();
        let mut known = self.containment.known.lock().await;
        let now = now_ms();
        let mut events = Vec::new();
        for k in snap.kills.iter() {
            if let std::collections::hash_map::Entry::Vacant(e) = known.entry(k.id) {
                e.insert(k.clone());
                self.metrics.observe_containment(false);
                self.close_sessions(k);
                let mut ev = k.audit_event(EventKind::Containment);
                let after_ms = (now - k.at_ms).max(0);
                ev.reason = Some(format!("{} (engaged by {}; in force on this gateway {after_ms} ms later)", k.describe(), k.by));
                ev.latency_us = Some(after_ms as u64 * 1000);
                events.push(ev);
            }
        }
        let lifted: Vec<i64> = known.keys().filter(|id| !snap.kills.iter().any(|k| k.id == **id)).copied().collect();
        for id in lifted {
            let k = known.remove(&id).expect("listed");
            if k.scope == KillScope::Agent {
                self.monitor.reset_risk(&k.target);
            }
            let mut ev = k.audit_event(EventKind::ContainmentLifted);
            ev.reason = Some(format!("kill switch #{} ({} {}) lifted; the risk score starts again from zero", k.id, k.scope, k.target));
            events.push(ev);
        }
        drop(known);
        for ev in events {
            if let Err(e) = self.audit.record(ev).await {
                tracing::error!("containment change could not be audited: {e}");
            }
        }
    }

    /// Demote an agent one autonomy level after a critical violation
    /// (promotion is left to an operator), and audit it.
    pub(crate) async fn demote(&self, agent: &str, policy: &str) {
        let snap = self.snapshot();
        let Some(a) = snap.agents.get(agent) else { return };
        let (from, to) = (a.autonomy.level(), warden_monitor::demoted(a.autonomy.level()));
        if from == to {
            return;
        }
        let level = warden_core::Autonomy::try_from(i64::from(to)).expect("one below a valid level");
        if let Err(e) = self.store.set_autonomy(&a.id, level).await {
            tracing::error!("demoting {agent} after a critical violation: {e}");
            return;
        }
        let ev = AuditEvent {
            kind: Some(EventKind::AgentChanged),
            agent: Some(agent.to_string()),
            subject: Some("monitor".into()),
            action: Some("agent:demote".into()),
            decision: warden_core::Verdict::Allow,
            policies: vec![policy.to_string()],
            reason: Some(format!("autonomy demoted from {from} to {to} after a critical violation ({policy}); an operator may promote it again")),
            ..Default::default()
        };
        if let Err(e) = self.audit.record(ev).await {
            tracing::error!("demotion of {agent} could not be audited: {e}");
        }
    }

    /// Load the kills in force at start-up without auditing them again.
    pub(crate) async fn init_kills(&self) {
        let snap = self.snapshot();
        let mut known = self.containment.known.lock().await;
        for k in snap.kills.iter() {
            known.insert(k.id, k.clone());
        }
        drop(known);
        self.rebuild_kills();
    }
}

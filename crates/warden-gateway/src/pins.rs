//! Tool definition pinning: the gateway lists each upstream's tools, hashes
//! each definition canonically and records it; a definition that differs from
//! the operator-approved pin makes the tool uncallable (rug-pull defence).
//! Each new definition is also inspected for poisoning (hidden
//! instructions, sensitive file references, shadowing of other servers'
//! tools); a flagged definition is recorded and audited, and pinning it
//! needs the operator's explicit acceptance.
//!
//! Listing never holds up the gateway: all upstreams are listed at once,
//! each within its own timeout; start-up serves after the first round or a
//! bounded wait, whichever comes first; an upstream that did not answer is
//! listed again every few seconds until it does.

use crate::state::Gateway;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use warden_core::{AuditEvent, EventKind, ToolRef, ToolStatus, canonical_json, sha256_hex};
use warden_inspect::ToolDefinition;

/// How long start-up waits for the first listing of every upstream before
/// it serves anyway (each listing is also bounded by its upstream's
/// `timeout_secs`): a hung upstream must not keep the healthy ones offline.
pub const STARTUP_LISTING_WAIT: Duration = Duration::from_secs(5);

/// How often an upstream that could not be listed is tried again (at most;
/// never less often than the regular definition check).
const RELIST_UNANSWERED: Duration = Duration::from_secs(2);

impl Gateway {
    /// Start the definition checks: the first round now, then every
    /// `pin_check_interval`, and upstreams that did not answer again every
    /// [`RELIST_UNANSWERED`]. Returns after the first round or `wait`,
    /// whichever comes first; the round goes on in the background.
    pub async fn start_definition_checks(self: &Arc<Self>, wait: Duration) {
        let (first_done, first) = tokio::sync::oneshot::channel();
        let gw = self.clone();
        tokio::spawn(async move {
            let mut unanswered = gw.check_definitions(None).await;
            let _ = first_done.send(());
            let period = gw.config.pin_check_interval;
            let mut last_full = tokio::time::Instant::now();
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period.min(RELIST_UNANSWERED), period.min(RELIST_UNANSWERED));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if last_full.elapsed() >= period {
                    last_full = tokio::time::Instant::now();
                    unanswered = gw.check_definitions(None).await;
                } else if !unanswered.is_empty() {
                    unanswered = gw.check_definitions(Some(&unanswered)).await;
                }
            }
        });
        if tokio::time::timeout(wait, first).await.is_err() {
            tracing::warn!(
                "not every upstream listed its tools within {} s of start-up; serving now, the others are listed in the background as they answer",
                wait.as_secs()
            );
        }
    }

    /// List the tools of every upstream (or those in `only`), concurrently,
    /// and record what changed. Errors are logged per server so one
    /// unreachable server does not hide the others; returns the servers
    /// that could not be listed.
    pub async fn check_definitions(&self, only: Option<&BTreeSet<String>>) -> BTreeSet<String> {
        let wanted = self.upstreams.iter().filter(|(name, _)| only.is_none_or(|o| o.contains(*name)));
        let results = futures_util::future::join_all(wanted.map(|(name, up)| async move { (name.clone(), up.list_tools().await) })).await;
        let mut listed = Vec::new();
        let mut unanswered = BTreeSet::new();
        for (name, result) in results {
            match result {
                Ok(t) => listed.push((name, t)),
                Err(e) => {
                    tracing::warn!(upstream = %name, "cannot list tools (retried in the background): {e}");
                    unanswered.insert(name);
                }
            }
        }
        // Every server's tools, for spotting descriptions that talk about
        // another server's tools (shadowing): those listed now, and the last
        // listing of the others.
        let mut all: Vec<ToolDefinition> = listed
            .iter()
            .flat_map(|(server, tools)| {
                tools.iter().filter_map(|d| d.get("name").and_then(Value::as_str)).map(|n| ToolDefinition { server: server.clone(), name: n.to_string() })
            })
            .collect();
        {
            let defs = self.definitions.read();
            let fresh: BTreeSet<&str> = listed.iter().map(|(s, _)| s.as_str()).collect();
            all.extend(defs.keys().filter(|t| !fresh.contains(t.server.as_str())).map(|t| ToolDefinition { server: t.server.clone(), name: t.tool.clone() }));
        }
        let mut changed = BTreeSet::new();
        for (name, tools) in listed {
            let mut seen = Vec::new();
            for def in tools {
                let Some(tool_name) = def.get("name").and_then(Value::as_str) else { continue };
                // A leading colon names a server's resources or prompts in
                // grants (`SERVER/:resources`); no tool may take one.
                if tool_name.starts_with(':') {
                    tracing::warn!(upstream = %name, "skipping tool {tool_name:?}: a name starting with ':' is reserved for grants");
                    continue;
                }
                let tref = match ToolRef::new(&name, tool_name) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(upstream = %name, "skipping tool with an unusable name: {e}");
                        continue;
                    }
                };
                let canonical = canonical_json(&def);
                let hash = sha256_hex(canonical.as_bytes());
                let scan = self.inspector.scan_tool_definition(&def, &name, &all);
                let flagged: Vec<_> = scan.significant().collect();
                let findings_json = (!flagged.is_empty()).then(|| serde_json::to_string(&flagged).expect("findings serialize"));
                let before = self.snapshot().tools.get(&tref).map(|t| (t.status, t.observed_hash.clone()));
                match self.store.observe_tool(&tref, &hash, &canonical, findings_json.as_deref()).await {
                    Ok(after) => {
                        let new_definition = before.as_ref().map(|(_, h)| h.as_deref()) != Some(Some(hash.as_str()));
                        if after.status == ToolStatus::Changed && before.as_ref().map(|(s, _)| *s) != Some(ToolStatus::Changed) {
                            tracing::warn!(tool = %tref, "tool definition changed upstream; blocked until re-approved");
                            let ev = AuditEvent {
                                kind: Some(EventKind::ToolDefinitionChanged),
                                tool: Some(tref.to_string()),
                                decision: warden_core::Verdict::Deny,
                                reason: Some(format!("definition hash {hash} differs from the pinned {}", after.pinned_hash.as_deref().unwrap_or("-"))),
                                remediation: Some(format!("review the new definition, then `warden tool approve {tref}`")),
                                ..Default::default()
                            };
                            self.record(ev).await;
                        }
                        if new_definition && !flagged.is_empty() {
                            tracing::warn!(tool = %tref, "tool definition flagged by inspection (possible tool poisoning)");
                            let ev = AuditEvent {
                                kind: Some(EventKind::ToolDefinitionFlagged),
                                tool: Some(tref.to_string()),
                                decision: warden_core::Verdict::Deny,
                                reason: Some(flagged.iter().map(|f| format!("{} at {}: {}", f.kind, f.path, f.detail)).collect::<Vec<_>>().join("; ")),
                                findings: flagged.iter().map(|f| format!("definition.poisoning.{}", f.kind)).collect(),
                                remediation: Some(format!(
                                    "read `warden tool show {tref}`; approve only with `warden tool approve {tref} --accept-findings` if the definition is safe"
                                )),
                                ..Default::default()
                            };
                            self.record(ev).await;
                        }
                    }
                    Err(e) => tracing::error!(tool = %tref, "cannot record definition: {e}"),
                }
                seen.push((tref, def));
            }
            // A name listed twice counts once (its first definition).
            seen.sort_by(|a, b| a.0.cmp(&b.0));
            seen.dedup_by(|a, b| a.0 == b.0);
            let mut defs = self.definitions.write();
            let before: Vec<(&ToolRef, &Value)> = defs.iter().filter(|(t, _)| t.server == name).collect();
            if before.len() != seen.len() || before.iter().zip(&seen).any(|((t, d), (u, e))| *t != u || *d != e) {
                changed.insert(name.clone());
            }
            defs.retain(|t, _| t.server != name);
            defs.extend(seen);
        }
        // A new or changed definition is also a registry change, which the
        // refresh tells itself; a tool gone, or one whose definition
        // changed back, only shows here.
        match self.refresh_telling().await {
            Ok((_, told)) => {
                let rest: BTreeSet<String> = changed.difference(&told).cloned().collect();
                if !rest.is_empty() {
                    self.tools_changed(&rest);
                }
            }
            Err(e) => tracing::error!("registry refresh failed: {e}"),
        }
        unanswered
    }

    async fn record(&self, ev: AuditEvent) {
        if let Err(e) = self.audit.record(ev).await {
            tracing::error!("{e}");
        }
    }
}

//! Tool definition pinning: the gateway lists each upstream's tools, hashes
//! each definition canonically and records it; a definition that differs from
//! the operator-approved pin makes the tool uncallable (rug-pull defence).
//! Each new definition is also inspected for poisoning (hidden
//! instructions, sensitive file references, shadowing of other servers'
//! tools); a flagged definition is recorded and audited, and pinning it
//! needs the operator's explicit acceptance.

use crate::state::Gateway;
use serde_json::Value;
use warden_core::{AuditEvent, EventKind, ToolRef, ToolStatus, canonical_json, sha256_hex};
use warden_inspect::ToolDefinition;

impl Gateway {
    /// List every upstream's tools and record what changed. Errors are logged
    /// per server so one unreachable server does not hide the others.
    pub async fn check_definitions(&self) {
        let mut listed = Vec::new();
        for (name, up) in &self.upstreams {
            match up.list_tools().await {
                Ok(t) => listed.push((name.clone(), t)),
                Err(e) => tracing::warn!(upstream = %name, "cannot list tools: {e}"),
            }
        }
        // Every server's tools, for spotting descriptions that talk about
        // another server's tools (shadowing).
        let all: Vec<ToolDefinition> = listed
            .iter()
            .flat_map(|(server, tools)| {
                tools.iter().filter_map(|d| d.get("name").and_then(Value::as_str)).map(|n| ToolDefinition { server: server.clone(), name: n.to_string() })
            })
            .collect();
        for (name, tools) in listed {
            let mut seen = Vec::new();
            for def in tools {
                let Some(tool_name) = def.get("name").and_then(Value::as_str) else { continue };
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
                                decision: "deny".into(),
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
                                decision: "deny".into(),
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
            let mut defs = self.definitions.write().expect("definitions lock");
            defs.retain(|t, _| t.server != name);
            defs.extend(seen);
        }
        if let Err(e) = self.refresh().await {
            tracing::error!("registry refresh failed: {e}");
        }
    }

    async fn record(&self, ev: AuditEvent) {
        if let Err(e) = self.audit.record(ev).await {
            tracing::error!("{e}");
        }
    }
}

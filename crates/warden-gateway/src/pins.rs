//! Tool definition pinning: the gateway lists each upstream's tools, hashes
//! each definition canonically and records it; a definition that differs from
//! the operator-approved pin makes the tool uncallable (rug-pull defence).

use crate::state::Gateway;
use serde_json::Value;
use warden_core::{AuditEvent, EventKind, ToolRef, ToolStatus, canonical_json, sha256_hex};

impl Gateway {
    /// List every upstream's tools and record what changed. Errors are logged
    /// per server so one unreachable server does not hide the others.
    pub async fn check_definitions(&self) {
        for (name, up) in &self.upstreams {
            let tools = match up.list_tools().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(upstream = %name, "cannot list tools: {e}");
                    continue;
                }
            };
            let mut seen = Vec::new();
            for def in tools {
                let Some(tool_name) = def.get("name").and_then(Value::as_str) else { continue };
                let tref = match ToolRef::new(name, tool_name) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(upstream = %name, "skipping tool with an unusable name: {e}");
                        continue;
                    }
                };
                let canonical = canonical_json(&def);
                let hash = sha256_hex(canonical.as_bytes());
                let before = self.snapshot().tools.get(&tref).map(|t| t.status);
                match self.store.observe_tool(&tref, &hash, &canonical).await {
                    Ok(after) => {
                        if after.status == ToolStatus::Changed && before != Some(ToolStatus::Changed) {
                            tracing::warn!(tool = %tref, "tool definition changed upstream; blocked until re-approved");
                            let ev = AuditEvent {
                                kind: Some(EventKind::ToolDefinitionChanged),
                                tool: Some(tref.to_string()),
                                decision: "deny".into(),
                                reason: Some(format!("definition hash {hash} differs from the pinned {}", after.pinned_hash.as_deref().unwrap_or("-"))),
                                remediation: Some(format!("review the new definition, then `warden tool approve {tref}`")),
                                ..Default::default()
                            };
                            if let Err(e) = self.audit.record(ev).await {
                                tracing::error!("{e}");
                            }
                        }
                    }
                    Err(e) => tracing::error!(tool = %tref, "cannot record definition: {e}"),
                }
                seen.push((tref, def));
            }
            let mut defs = self.definitions.write().expect("definitions lock");
            defs.retain(|t, _| &t.server != name);
            defs.extend(seen);
        }
        if let Err(e) = self.refresh().await {
            tracing::error!("registry refresh failed: {e}");
        }
    }
}

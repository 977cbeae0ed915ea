//! `warden tool …`: classification and definition pinning.

use crate::agent_cmd::{admin_event, audit_admin};
use crate::cli::ToolCmd;
use crate::open_store;
use anyhow::{Result, bail};
use warden_core::{EventKind, ToolRef, ToolStatus};
use warden_server::ServerConfig;

async fn audit_tool(cfg: &ServerConfig, store: &warden_store::Store, tool: &ToolRef, action: &str, reason: &str) -> Result<()> {
    let mut ev = admin_event(EventKind::ToolChanged, None, action, reason);
    ev.tool = Some(tool.to_string());
    audit_admin(store, cfg, ev).await
}

pub async fn run(cfg: &ServerConfig, cmd: &ToolCmd) -> Result<()> {
    let store = open_store(cfg).await?;
    match cmd {
        ToolCmd::List => {
            println!("{:<40} {:<9} {:<9} {:<10} {:<6} {:<9} PIN", "TOOL", "STATUS", "SENSITIV.", "ACTION", "EXFIL", "UNTRUSTED");
            for t in store.list_tools().await? {
                let pin = match (&t.pinned_hash, &t.observed_hash) {
                    (Some(p), Some(o)) if p == o => format!("pinned {}", &p[..12]),
                    (Some(p), Some(o)) => format!("MISMATCH pinned {} observed {}", &p[..12], &o[..12]),
                    (None, Some(o)) => format!("unpinned, observed {}", &o[..12]),
                    _ => "not observed".into(),
                };
                println!(
                    "{:<40} {:<9} {:<9} {:<10} {:<6} {:<9} {pin}",
                    t.tool.to_string(),
                    t.status.as_str(),
                    t.sensitivity.as_str(),
                    t.action_class.as_str(),
                    t.exfil_capable,
                    t.untrusted_content
                );
            }
            Ok(())
        }
        ToolCmd::Show { tool } => {
            let tref: ToolRef = tool.parse()?;
            let t = store.get_tool(&tref).await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
            if let Some(def) = store.observed_definition(&tref).await? {
                let v: serde_json::Value = serde_json::from_str(&def)?;
                println!("observed definition:\n{}", serde_json::to_string_pretty(&v)?);
            }
            if let Some(f) = store.observed_findings(&tref).await? {
                let v: serde_json::Value = serde_json::from_str(&f)?;
                println!("inspection findings (possible tool poisoning; approving needs --accept-findings):\n{}", serde_json::to_string_pretty(&v)?);
            }
            Ok(())
        }
        ToolCmd::Set { tool, sensitivity, action_class, exfil, untrusted } => {
            let tref: ToolRef = tool.parse()?;
            if tref.is_wildcard() {
                bail!("classify one tool at a time (SERVER/TOOL)");
            }
            let mut t = match store.get_tool(&tref).await {
                Ok(t) => t,
                Err(warden_store::StoreError::NotFound(_)) => warden_core::Tool {
                    tool: tref.clone(),
                    sensitivity: warden_core::Sensitivity::High,
                    action_class: warden_core::ActionClass::Exec,
                    exfil_capable: true,
                    untrusted_content: true,
                    pinned_hash: None,
                    observed_hash: None,
                    status: ToolStatus::Pending,
                },
                Err(e) => return Err(e.into()),
            };
            t.sensitivity = sensitivity.parse()?;
            t.action_class = action_class.parse()?;
            t.exfil_capable = *exfil;
            t.untrusted_content = *untrusted;
            store.upsert_tool(&t).await?;
            let what = format!("{} / {} / exfil={} / untrusted={}", t.sensitivity, t.action_class, t.exfil_capable, t.untrusted_content);
            audit_tool(cfg, &store, &tref, "tool:set", &what).await?;
            println!("{tref}: {what}");
            Ok(())
        }
        ToolCmd::Approve { tool, accept_findings } => {
            let tref: ToolRef = tool.parse()?;
            let flagged = store.observed_findings(&tref).await?;
            let t = store.approve_tool(&tref, *accept_findings).await?;
            let mut what = format!("pinned definition {}", t.pinned_hash.as_deref().unwrap_or_default());
            if let Some(f) = flagged {
                what.push_str(&format!("; operator accepted inspection findings {f}"));
            }
            audit_tool(cfg, &store, &t.tool, "tool:approve", &what).await?;
            println!("{} approved; pinned definition {}", t.tool, t.pinned_hash.unwrap_or_default());
            Ok(())
        }
        ToolCmd::Disable { tool } => {
            let tref: ToolRef = tool.parse()?;
            store.set_tool_status(&tref, ToolStatus::Disabled).await?;
            audit_tool(cfg, &store, &tref, "tool:disable", "disabled by an operator").await?;
            println!("{tool} disabled");
            Ok(())
        }
    }
}

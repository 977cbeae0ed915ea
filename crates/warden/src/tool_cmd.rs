//! `warden tool …`: classification and definition pinning; listings from
//! the store, changes through the control plane.

use crate::cli::ToolCmd;
use crate::{control_plane, open_store};
use anyhow::Result;
use warden_control::{Actor, Classification};
use warden_core::ToolRef;
use warden_server::ServerConfig;

pub async fn run(cfg: &ServerConfig, cmd: &ToolCmd) -> Result<()> {
    let me = Actor::local_user();
    match cmd {
        ToolCmd::List => {
            let store = open_store(cfg).await?;
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
            let store = open_store(cfg).await?;
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
            let class = Classification::parse(sensitivity, action_class, *exfil, *untrusted)?;
            let t = control_plane(cfg).await?.classify_tool(&me, tool, &class).await?;
            println!("{}: {class}", t.tool);
            Ok(())
        }
        ToolCmd::Approve { tool, accept_findings } => {
            let t = control_plane(cfg).await?.approve_tool(&me, tool, *accept_findings).await?;
            println!("{} approved; pinned definition {}", t.tool, t.pinned_hash.unwrap_or_default());
            Ok(())
        }
        ToolCmd::Disable { tool } => {
            control_plane(cfg).await?.disable_tool(&me, tool).await?;
            println!("{tool} disabled");
            Ok(())
        }
    }
}

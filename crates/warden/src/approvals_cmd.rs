//! `warden approvals …`: the human side of calls held for approval (a held
//! call waits in the gateway, `[approvals] hold_secs`, and sees the decision
//! within 50 ms; every decision is audited), and `warden operator …`: the
//! people who may use the admin API and dashboard.

use crate::agent_cmd::{admin_event, audit_admin};
use crate::cli::{ApprovalsCmd, OperatorCmd};
use crate::open_store;
use anyhow::Result;
use sha2::{Digest, Sha256};
use warden_core::{Approval, EventKind, Role};
use warden_server::ServerConfig;

fn approver(name: &Option<String>) -> String {
    format!("operator:{}", name.clone().unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "unknown".into())))
}

fn line(a: &Approval) -> String {
    let approvers = if a.required > 1 { format!(" {}/{} approvals", a.approvers.len(), a.required) } else { String::new() };
    format!("{:<17} {:<9} {:<40} {:<28} risk {:>3}{approvers}  {}", a.id, a.status.as_str(), a.agent, a.tool.to_string(), a.risk, a.reason)
}

pub async fn run(cfg: &ServerConfig, cmd: &ApprovalsCmd) -> Result<()> {
    let store = open_store(cfg).await?;
    let now = chrono::Utc::now().timestamp_millis();
    match cmd {
        ApprovalsCmd::List { all, json } => {
            let list = store.list_approvals(!all, 500).await?;
            for a in &list {
                if *json {
                    println!("{}", serde_json::to_string(a)?);
                } else {
                    println!("{}", line(a));
                }
            }
            if list.is_empty() && !json {
                println!("no {}approvals", if *all { "" } else { "pending " });
            }
        }
        ApprovalsCmd::Show { id } => {
            let a = store.get_approval(id).await?;
            println!("{}", serde_json::to_string_pretty(&a)?);
        }
        ApprovalsCmd::Approve { id, reason, approver: who } | ApprovalsCmd::Deny { id, reason, approver: who } => {
            let approve = matches!(cmd, ApprovalsCmd::Approve { .. });
            let by = approver(who);
            let a = store.decide_approval(id, &by, approve, reason, now).await?;
            audit_admin(&store, cfg, a.decision_event(&by, approve, reason)).await?;
            match a.status {
                warden_core::ApprovalStatus::Pending => {
                    println!("{id}: approved by {by}; {} more approver(s) needed (two-person rule)", usize::from(a.required) - a.approvers.len())
                }
                s => println!("{id}: {s} by {by}"),
            }
        }
    }
    Ok(())
}

pub async fn operator(cfg: &ServerConfig, cmd: &OperatorCmd) -> Result<()> {
    let store = open_store(cfg).await?;
    match cmd {
        OperatorCmd::Add { name, role } => {
            warden_core::validate_name(name)?;
            let role: Role = role.parse()?;
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
            let token = format!("wdn_{}", hex::encode(secret));
            store.add_operator(name, role, &hex::encode(Sha256::digest(token.as_bytes())), chrono::Utc::now().timestamp_millis()).await?;
            audit_admin(&store, cfg, admin_event(EventKind::OperatorChanged, None, "operator:add", &format!("operator {name} added as {role}"))).await?;
            eprintln!("operator {name} added as {role}; their token (shown once, keep it secret):");
            println!("{token}");
        }
        OperatorCmd::List => {
            for (name, role, at) in store.list_operators().await? {
                println!("{name:<24} {role:<9} added {}", chrono::DateTime::from_timestamp_millis(at).map(|t| t.to_rfc3339()).unwrap_or_default());
            }
        }
        OperatorCmd::Remove { name } => {
            store.remove_operator(name).await?;
            audit_admin(&store, cfg, admin_event(EventKind::OperatorChanged, None, "operator:remove", &format!("operator {name} removed"))).await?;
            println!("operator {name} removed");
        }
    }
    Ok(())
}

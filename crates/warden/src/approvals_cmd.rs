//! `warden approvals …`: the human side of calls held for approval (a held
//! call waits in the gateway, `[approvals] hold_secs`, and sees the decision
//! within 50 ms; every decision is audited), and `warden operator …`: the
//! people who may use the admin API and dashboard.

use crate::cli::{ApprovalsCmd, OperatorCmd, OperatorCredential};
use crate::{control_plane, open_store};
use anyhow::{Context, Result, anyhow, bail};
use warden_control::{Actor, Via};
use warden_core::{Approval, Operator, Role, sha256_hex};
use warden_server::ServerConfig;
use warden_store::Store;

const TOKEN_ENV: &str = "WARDEN_OPERATOR_TOKEN";

/// The registered operator whose token was presented (checked against the
/// stored digest, as the admin API does), or None when none was presented.
async fn presented(store: &Store, c: &OperatorCredential) -> Result<Option<Operator>> {
    let token = match (&c.operator_token_file, std::env::var(TOKEN_ENV)) {
        (Some(f), _) => std::fs::read_to_string(f).with_context(|| format!("reading the operator token file {}", f.display()))?,
        (None, Ok(t)) => t,
        (None, Err(_)) => return Ok(None),
    };
    if token.trim().is_empty() {
        bail!("the operator token presented is empty; put the token `warden operator add` printed in the file or in ${TOKEN_ENV}");
    }
    let op = store.operator_by_token(&sha256_hex(token.trim().as_bytes())).await?;
    op.map(Some).ok_or_else(|| anyhow!("unknown operator token: it matches no registered operator (see `warden operator list`; an admin issues tokens with `warden operator add NAME --role approver`)"))
}

/// One approval as a terminal line, its text escaped like `audit tail`'s.
fn line(a: &Approval) -> String {
    let approvers = if a.required > 1 { format!(" {}/{} approvals", a.approvers.len(), a.required) } else { String::new() };
    let esc = crate::printable;
    format!("{:<17} {:<9} {:<40} {:<28} risk {:>3}{approvers}  {}", esc(&a.id), a.status.as_str(), esc(&a.agent), a.tool.to_string(), a.risk, esc(&a.reason))
}

pub async fn run(cfg: &ServerConfig, cmd: &ApprovalsCmd) -> Result<()> {
    let store = open_store(cfg).await?;
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
        ApprovalsCmd::Show { id, operator } => {
            let role = presented(&store, operator).await?.map(|op| op.role);
            let a = store.get_approval(id).await?;
            if role < Some(Role::Approver) && a.args.is_some() {
                eprintln!(
                    "arguments shown as audit records keep them; present an approver's token (--operator-token-file or ${TOKEN_ENV}) to see them in clear"
                );
            }
            println!("{}", serde_json::to_string_pretty(&a.view(role.unwrap_or(Role::Viewer)))?);
        }
        ApprovalsCmd::Approve { id, reason, operator } | ApprovalsCmd::Deny { id, reason, operator } => {
            let approve = matches!(cmd, ApprovalsCmd::Approve { .. });
            let op = presented(&store, operator).await?.ok_or_else(|| {
                anyhow!("deciding an approval needs your operator token, so the decision is yours: --operator-token-file FILE or ${TOKEN_ENV} (an admin issues one with `warden operator add NAME --role approver`)")
            })?;
            let a = control_plane(cfg).await?.decide_approval(&op, Via::Cli, id, approve, reason).await?;
            let by = op.subject();
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
    let me = Actor::local_user();
    match cmd {
        OperatorCmd::Add { name, role } => {
            let (role, token) = control_plane(cfg).await?.add_operator(&me, name, role).await?;
            eprintln!("operator {name} added as {role}; their token (shown once, keep it secret):");
            println!("{token}");
        }
        OperatorCmd::List => {
            for warden_store::StoredOperator { name, role, created_ms: at } in open_store(cfg).await?.list_operators().await? {
                println!("{name:<24} {role:<9} added {}", chrono::DateTime::from_timestamp_millis(at).map(|t| t.to_rfc3339()).unwrap_or_default());
            }
        }
        OperatorCmd::Remove { name } => {
            control_plane(cfg).await?.remove_operator(&me, name).await?;
            println!("operator {name} removed");
        }
        OperatorCmd::EndSessions { name } => {
            control_plane(cfg).await?.end_operator_sessions(&me, name).await?;
            println!("every sign-in session of operator {name} ended");
        }
    }
    Ok(())
}

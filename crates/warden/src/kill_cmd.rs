//! `warden kill …` (kill switches) and `warden monitor …` (learned state).
//! Both work on the store: a running gateway picks a new kill switch up at
//! its next registry refresh (`refresh_ms`, default 100 ms), audits when it
//! took effect, and refuses the next call.

use crate::agent_cmd::agent_id;
use crate::cli::{KillCmd, MonitorCmd};
use crate::{control_plane, open_store};
use anyhow::{Context, Result, bail};
use warden_control::Actor;
use warden_core::KillScope;
use warden_monitor::AgentState;
use warden_server::ServerConfig;

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| ms.to_string())
}

pub async fn kill(cfg: &ServerConfig, cmd: &KillCmd) -> Result<()> {
    let (scope, target, reason) = match cmd {
        KillCmd::Agent { agent, reason } => (KillScope::Agent, agent.as_str(), reason),
        KillCmd::Owner { owner, reason } => (KillScope::Owner, owner.as_str(), reason),
        KillCmd::Server { server, reason } => (KillScope::Server, server.as_str(), reason),
        KillCmd::Tool { tool, reason } => (KillScope::Tool, tool.as_str(), reason),
        KillCmd::Global { reason } => (KillScope::Global, "", reason),
        KillCmd::List { all, json } => return list(&open_store(cfg).await?, *all, *json).await,
        KillCmd::Lift { id, reason } => {
            let k = control_plane(cfg).await?.lift_kill(&Actor::local_user(), *id, reason).await?;
            println!("kill switch #{} ({} {}) lifted", k.id, k.scope, k.target);
            if k.scope == KillScope::Agent {
                println!("the agent is active again; its earlier tokens stay revoked, so it must request new ones");
            }
            return Ok(());
        }
    };
    let k = control_plane(cfg).await?.engage_kill(&Actor::local_user(), scope, target, reason).await?;
    println!("kill switch #{} engaged: {}", k.id, k.describe());
    println!("running gateways enforce it at their next refresh (within {} ms); lift it with `warden kill lift {} --reason ...`", cfg.refresh_ms, k.id);
    Ok(())
}

async fn list(store: &warden_store::Store, all: bool, json: bool) -> Result<()> {
    let kills = store.list_kills(all).await?;
    if json {
        for stored in &kills {
            let mut v = serde_json::to_value(&stored.kill)?;
            if let Some(lifted) = &stored.lifted {
                v["lifted_at_ms"] = lifted.at_ms.into();
                v["lifted_by"] = lifted.by.clone().into();
            }
            println!("{v}");
        }
        return Ok(());
    }
    if kills.is_empty() {
        println!("no kill switch is engaged");
        return Ok(());
    }
    println!("{:<5} {:<7} {:<45} {:<21} {:<20} REASON", "ID", "SCOPE", "TARGET", "ENGAGED", "BY");
    for warden_store::StoredKill { kill: k, lifted } in kills {
        let state = lifted.map(|l| format!(" [lifted {} by {}]", when(l.at_ms), l.by)).unwrap_or_default();
        println!("{:<5} {:<7} {:<45} {:<21} {:<20} {}{state}", k.id, k.scope.as_str(), k.target, when(k.at_ms), k.by, k.reason);
    }
    Ok(())
}

pub async fn monitor(cfg: &ServerConfig, cmd: &MonitorCmd) -> Result<()> {
    let MonitorCmd::Show { agent, json } = cmd;
    let store = open_store(cfg).await?;
    let want = agent.as_deref().map(|a| agent_id(cfg, a)).transpose()?;
    let now = warden_core::clock::now_ms();
    let mut shown = 0;
    for warden_store::StoredMonitorState { agent: id, state, updated_ms: saved } in store.monitor_states().await? {
        if want.as_ref().is_some_and(|w| w.as_str() != id) {
            continue;
        }
        let st: AgentState = serde_json::from_str(&state).with_context(|| format!("monitor state of {id} is unreadable"))?;
        let s = st.summary(&cfg.monitor, now);
        shown += 1;
        if *json {
            println!("{}", serde_json::json!({ "agent": id, "saved_ms": saved, "summary": s }));
            continue;
        }
        let tools: Vec<String> = s.top_tools.iter().map(|(t, p)| format!("{t} {:.0}%", p * 100.0)).collect();
        println!(
            "{id}\n  calls {}  {}  risk {}  {:.1} calls/active minute  error rate {:.1}%  last call {}\n  usual tools: {}",
            s.calls,
            if s.learning { "LEARNING" } else { "baseline trusted" },
            s.risk,
            s.calls_per_active_minute,
            s.error_rate * 100.0,
            when(s.last_seen_ms),
            if tools.is_empty() { "-".into() } else { tools.join(", ") }
        );
    }
    if shown == 0 {
        match want {
            Some(w) => bail!("no monitor state saved for {w} yet: the gateway saves it every {} s once the agent has made calls", cfg.monitor.flush_secs),
            None => println!("no monitor state saved yet"),
        }
    }
    Ok(())
}

//! `warden-contain-bench`: time-to-contain in one process. The gateway runs
//! in this process (real HTTP listener, DPoP authn, Cedar, inspection,
//! monitor, audit, the built-in demo upstream over stdio) while agent
//! workers call a tool in a loop over loopback; then a kill switch is
//! engaged through the gateway's API and three times are taken from the
//! moment of the kill:
//! - in force: the kill is in the set the per-call check reads (gateway's
//!   own measurement);
//! - first refused call: the gateway refuses the first call because of it
//!   (gateway's own measurement, at the check);
//! - first refused response: the refusal reaches a worker (client-side; the
//!   rest of that request's round trip and its durable audit commit added).
//!
//! Each round alternates an agent kill (fresh agent; the kill suspends it
//! and revokes its tokens, as automatic containment does) and a tool kill.

use anyhow::{Context, Result, ensure};
use clap::Parser;
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use warden_client::AgentClient;
use warden_core::clock::now_ms;
use warden_core::{ActionClass, Agent, AgentId, AgentStatus, Autonomy, Kill, KillScope, Sensitivity, ToolRef};
use warden_identity::Keypair;

#[derive(Parser)]
struct Args {
    /// The `warden` binary (its `demo-server` is the upstream).
    #[arg(long, default_value = "target/release/warden")]
    warden: std::path::PathBuf,
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    policies: std::path::PathBuf,
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// Concurrent workers calling the tool.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let dir = tempfile::tempdir()?;
    let warden = std::fs::canonicalize(&a.warden).with_context(|| format!("{} (build it: cargo build --release -p warden)", a.warden.display()))?;
    let policies = std::fs::canonicalize(&a.policies)?;
    let cfg_text = format!(
        r#"listen = "127.0.0.1:0"
data_dir = {data:?}
policy_dir = {policies:?}
refresh_ms = 100
[monitor.learning]
cold_calls_per_minute = 1000000
[[upstream]]
name = "onboarding"
transport = "stdio"
command = {warden:?}
args = ["demo-server"]
"#,
        data = dir.path().join("data").display().to_string(),
        policies = policies.display().to_string(),
        warden = warden.display().to_string(),
    );
    let cfg: warden_server::ServerConfig = toml::from_str(&cfg_text)?;
    let running = warden_server::start(cfg).await?;
    let gw = running.gateway.clone();
    let store = gw.store.clone();
    let tool = ToolRef::new("onboarding", "customer_lookup")?;
    let mut t = store.get_tool(&tool).await?;
    (t.sensitivity, t.action_class, t.exfil_capable, t.untrusted_content) = (Sensitivity::Low, ActionClass::Read, false, false);
    store.upsert_tool(&t).await?;
    store.approve_tool(&tool, false).await?;

    let mut first_denied = Vec::new();
    for round in 0..a.rounds {
        let key = Keypair::generate();
        let id = AgentId::new("warden.local", &format!("bench-{round}"))?;
        store
            .insert_agent(&Agent {
                id: id.clone(),
                owner: "bench@example.com".into(),
                purpose: "time-to-contain benchmark".into(),
                tools: vec![tool.clone()],
                autonomy: Autonomy::try_from(1)?,
                status: AgentStatus::Active,
                public_key: warden_identity::AgentKey::from(key.public()).to_registry(),
                token_binding: warden_core::TokenBinding::Dpop,
                parent: None,
                created_at: now_ms() / 1000,
            })
            .await?;
        gw.refresh().await?;
        let agent_kill = round % 2 == 0;
        let stop = Arc::new(AtomicBool::new(false));
        let denied_at: Arc<Mutex<Option<Instant>>> = Arc::default();
        let mut tasks = Vec::new();
        for _ in 0..a.workers {
            let mut c = AgentClient::new(&running.public_url, id.as_str(), key.clone());
            c.fetch_token(None, Some("bench")).await?;
            ensure!(c.initialize().await?.status == 200, "initialize failed");
            let (stop, denied_at) = (stop.clone(), denied_at.clone());
            tasks.push(tokio::spawn(async move {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = c.call_tool("onboarding__customer_lookup", json!({ "customer_id": "c-1001" })).await?;
                    calls += 1;
                    if r.result().is_none() {
                        let at = Instant::now();
                        let m = r.error_message().unwrap_or_default().to_string();
                        // Refused by the kill, or (once the background refresh
                        // saw the agent kill) by the revocation it implies.
                        let revoked = r.status == 401 && m.contains("revoked");
                        ensure!(m.contains("contained") || m.contains("kill switch") || revoked, "unexpected refusal: {}", r.body);
                        let mut d = denied_at.lock();
                        if d.is_none_or(|x| at < x) {
                            *d = Some(at);
                        }
                        break;
                    }
                }
                anyhow::Ok(calls)
            }));
        }
        // Let the load settle, then kill.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let kill = if agent_kill {
            Kill { id: 0, scope: KillScope::Agent, target: id.to_string(), reason: "benchmark".into(), by: "bench".into(), at_ms: now_ms() }
        } else {
            Kill { id: 0, scope: KillScope::Tool, target: tool.to_string(), reason: "benchmark".into(), by: "bench".into(), at_ms: now_ms() }
        };
        let t0 = Instant::now();
        let engaged = gw.contain(kill).await?;
        let mut calls = 0;
        for t in tasks {
            calls += t.await??;
        }
        stop.store(true, Ordering::Relaxed);
        let denied = denied_at.lock().context("no call was denied")?;
        first_denied.push(denied.saturating_duration_since(t0).as_secs_f64() * 1e6);
        ensure!(calls > a.workers as u64, "workers made no calls before the kill");
        store.lift_kill(engaged.id, "bench", now_ms()).await?;
        gw.refresh().await?;
    }
    let timings = gw.containment_timings();
    let mut in_force: Vec<f64> = timings.in_force_us.iter().map(|&v| v as f64).collect();
    let mut first_refusal: Vec<f64> = timings.first_refusal_us.iter().map(|&v| v as f64).collect();
    ensure!(first_refusal.len() == a.rounds, "{} of {} kills measured a first refusal", first_refusal.len(), a.rounds);
    let n = first_denied.len();
    println!("time to contain, {n} kills ({} agent, {} tool), {} workers calling through the gateway:", n.div_ceil(2), n / 2, a.workers);
    let line = |what: &str, v: &mut Vec<f64>| println!("  {what:<58} p50 {:>7.1} us  p99 {:>7.1} us  max {:>7.1} us", pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
    line("in force (kill -> in the set the per-call check reads)", &mut in_force);
    line("first refused call (kill -> the gateway refuses a call)", &mut first_refusal);
    line("first refused response (kill -> refusal arrives at a worker)", &mut first_denied);
    running.task.abort();
    Ok(())
}

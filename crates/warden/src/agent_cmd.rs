//! `warden agent …` and `warden token revoke`.

use crate::cli::{AgentCmd, KeyArgs, RegisterArgs, TokenCmd};
use crate::open_store;
use anyhow::{Context, Result, bail};
use warden_core::clock::now_secs;
use warden_core::{Agent, AgentId, AgentStatus, AuditEvent, Autonomy, EventKind, ToolRef};
use warden_identity::{Keypair, PublicKey};
use warden_server::ServerConfig;
use warden_store::{RevocationKind, Store};

/// Accept `NAME` or a full SPIFFE id.
pub fn agent_id(cfg: &ServerConfig, s: &str) -> Result<AgentId> {
    if s.starts_with("spiffe://") { Ok(s.parse()?) } else { Ok(AgentId::new(&cfg.trust_domain, s)?) }
}

/// The public key to register: read from a file, or generated with the
/// private half written to a new 0600 file.
fn public_key(k: &KeyArgs) -> Result<String> {
    match (&k.public_key, &k.generate_key) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(PublicKey::parse(&text)?.to_b64())
        }
        (None, Some(out)) => {
            let key = Keypair::generate();
            warden_server::write_private(out, &key.to_pkcs8_pem())
                .with_context(|| format!("writing the private key to {} (it must not exist yet)", out.display()))?;
            eprintln!("private key written to {} (keep it secret; Warden keeps only the public key)", out.display());
            Ok(key.public().to_b64())
        }
        (None, None) => bail!("give --public-key FILE or --generate-key OUT.pem"),
    }
}

/// Registry changes by operators are audited like every other decision.
pub async fn audit_admin(store: &Store, cfg: &ServerConfig, ev: AuditEvent) -> Result<()> {
    // Same chain and key as the server; the store serializes the writers.
    let key = warden_server::load_or_create_key(&cfg.key_path())?;
    let mut w = store.audit_appender(key).await?;
    w.append(vec![(ev, warden_core::clock::now_ms())]).await.context("appending the audit record")?;
    Ok(())
}

pub fn admin_event(kind: EventKind, agent: Option<&AgentId>, action: &str, reason: &str) -> AuditEvent {
    AuditEvent {
        kind: Some(kind),
        agent: agent.map(ToString::to_string),
        subject: Some(format!("operator:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))),
        action: Some(action.into()),
        decision: warden_core::Verdict::Allow,
        reason: Some(reason.into()),
        ..Default::default()
    }
}

async fn register(cfg: &ServerConfig, store: &Store, a: &RegisterArgs) -> Result<()> {
    let id = AgentId::new(&cfg.trust_domain, &a.name)?;
    let tools = a.tools.iter().map(|t| t.trim().parse::<ToolRef>()).collect::<Result<Vec<_>, _>>()?;
    let autonomy = Autonomy::try_from(a.autonomy)?;
    let parent = a.parent.as_deref().map(|p| agent_id(cfg, p)).transpose()?;
    if a.owner.trim().is_empty() || a.purpose.trim().is_empty() {
        bail!("--owner and --purpose must not be empty: every agent needs an accountable human and a stated purpose");
    }
    // Validate everything before a key file is written.
    if let Some(p) = &parent {
        store.get_agent(p).await.context("--parent must name a registered agent")?;
    }
    let public_key = public_key(&a.key)?;
    let agent = Agent {
        id: id.clone(),
        owner: a.owner.clone(),
        purpose: a.purpose.clone(),
        tools,
        autonomy,
        status: AgentStatus::Active,
        public_key,
        parent,
        created_at: now_secs(),
    };
    store.insert_agent(&agent).await?;
    audit_admin(store, cfg, admin_event(EventKind::AgentChanged, Some(&id), "agent:register", &format!("owner {}, tools {}", a.owner, a.tools.join(","))))
        .await?;
    println!("{id}");
    Ok(())
}

fn print_agent(a: &Agent) {
    let tools: Vec<String> = a.tools.iter().map(ToString::to_string).collect();
    println!(
        "{}\n  owner: {}\n  purpose: {}\n  status: {}\n  autonomy: {}\n  tools: {}\n  key thumbprint: {}{}",
        a.id,
        a.owner,
        a.purpose,
        a.status.as_str(),
        a.autonomy.level(),
        tools.join(", "),
        warden_identity::thumbprint(&a.public_key),
        a.parent.as_ref().map(|p| format!("\n  parent: {p}")).unwrap_or_default()
    );
}

pub async fn run(cfg: &ServerConfig, cmd: &AgentCmd) -> Result<()> {
    let store = open_store(cfg).await?;
    match cmd {
        AgentCmd::Register(a) => register(cfg, &store, a).await,
        AgentCmd::List => {
            println!("{:<48} {:<10} {:<3} {:<24} TOOLS", "AGENT", "STATUS", "AUT", "OWNER");
            for a in store.list_agents().await? {
                let tools: Vec<String> = a.tools.iter().map(ToString::to_string).collect();
                println!("{:<48} {:<10} {:<3} {:<24} {}", a.id, a.status.as_str(), a.autonomy.level(), a.owner, tools.join(","));
            }
            Ok(())
        }
        AgentCmd::Show { agent } => {
            let a = store.get_agent(&agent_id(cfg, agent)?).await?;
            print_agent(&a);
            // The monitor's calls and risk as the gateway last saved them.
            let now = warden_core::clock::now_ms();
            let state = store.monitor_states().await?.into_iter().find(|s| s.agent == a.id.as_str());
            let summary = state.and_then(|s| serde_json::from_str::<warden_monitor::AgentState>(&s.state).ok()).map(|s| s.summary(&cfg.monitor, now));
            let (calls, risk) = summary.map(|s| (s.calls, s.risk)).unwrap_or_default();
            let key = warden_server::load_or_create_key(&cfg.key_path())?.public();
            let p = warden_server::promotion_report(&store, &a, calls, risk, &key, &cfg.promotion).await?;
            match p.next {
                Some(next) => println!("promotion to autonomy {next}: {}", if p.eligible { "recommended (an operator decides)" } else { "not yet" }),
                None => println!("autonomy 3 is the highest level"),
            }
            for c in &p.criteria {
                println!("  [{}] {}", if c.met { "x" } else { " " }, c.detail);
            }
            Ok(())
        }
        AgentCmd::Suspend { agent, reason } => set_status(cfg, &store, agent, AgentStatus::Suspended, reason).await,
        AgentCmd::Resume { agent } => set_status(cfg, &store, agent, AgentStatus::Active, "resumed by an operator").await,
        AgentCmd::Revoke { agent, reason } => set_status(cfg, &store, agent, AgentStatus::Revoked, reason).await,
        AgentCmd::Autonomy { agent, level, reason } => {
            let id = agent_id(cfg, agent)?;
            let level = Autonomy::try_from(*level)?;
            if reason.trim().is_empty() {
                bail!("--reason must say why (it is recorded in the audit log)");
            }
            let before = store.get_agent(&id).await?.autonomy.level();
            store.set_autonomy(&id, level).await?;
            let what = format!("autonomy {before} -> {}: {reason}", level.level());
            audit_admin(&store, cfg, admin_event(EventKind::AgentChanged, Some(&id), "agent:autonomy", &what)).await?;
            println!("{id}: {what}");
            Ok(())
        }
        AgentCmd::RotateKey { agent, key } => {
            let id = agent_id(cfg, agent)?;
            store.get_agent(&id).await?;
            let pk = public_key(key)?;
            store.rotate_key(&id, &pk, now_secs()).await?;
            audit_admin(&store, cfg, admin_event(EventKind::AgentChanged, Some(&id), "agent:rotate-key", "key rotated; earlier tokens revoked")).await?;
            println!("rotated key of {id}; new thumbprint {}", warden_identity::thumbprint(&pk));
            Ok(())
        }
    }
}

async fn set_status(cfg: &ServerConfig, store: &Store, agent: &str, status: AgentStatus, reason: &str) -> Result<()> {
    let id = agent_id(cfg, agent)?;
    store.set_agent_status(&id, status, reason, now_secs()).await?;
    audit_admin(store, cfg, admin_event(EventKind::AgentChanged, Some(&id), &format!("agent:{}", status.as_str()), reason)).await?;
    println!("{id} is now {}", status.as_str());
    Ok(())
}

pub async fn token(cfg: &ServerConfig, cmd: &TokenCmd) -> Result<()> {
    let store = open_store(cfg).await?;
    let TokenCmd::Revoke { jti, task, agent, reason } = cmd;
    let (kind, value) = match (jti, task, agent) {
        (Some(j), _, _) => (RevocationKind::Token, j.clone()),
        (_, Some(t), _) => (RevocationKind::Task, t.clone()),
        (_, _, Some(a)) => {
            let id = agent_id(cfg, a)?;
            store.get_agent(&id).await?;
            (RevocationKind::Agent, id.to_string())
        }
        _ => bail!("give one of --jti, --task or --agent"),
    };
    store.revoke(kind, &value, reason, now_secs()).await?;
    let mut ev = admin_event(EventKind::Revocation, None, "token:revoke", reason);
    match kind {
        RevocationKind::Token => ev.token_id = Some(value.clone()),
        RevocationKind::Task => ev.task = Some(value.clone()),
        RevocationKind::Agent => ev.agent = Some(value.clone()),
    }
    audit_admin(&store, cfg, ev).await?;
    println!("revoked {value}");
    Ok(())
}

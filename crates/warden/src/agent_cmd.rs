//! `warden agent …` and `warden token revoke`: reads from the store,
//! changes through the control plane.

use crate::cli::{AgentCmd, BindingArg, KeyAlgArg, KeyArgs, RegisterArgs, TokenCmd};
use crate::{control_plane, open_store};
use anyhow::{Context, Result, bail};
use warden_control::{Actor, ControlPlane, NewAgent, Revocation};
use warden_core::{Agent, AgentId, AgentStatus, TokenBinding};
use warden_identity::{AgentKey, AgentSigner, JwsAlg};
use warden_server::ServerConfig;
use warden_store::Store;

/// Accept `NAME` or a full SPIFFE id.
pub fn agent_id(cfg: &ServerConfig, s: &str) -> Result<AgentId> {
    Ok(warden_control::agent_id(&cfg.trust_domain, s)?)
}

fn binding(b: BindingArg) -> TokenBinding {
    match b {
        BindingArg::Dpop => TokenBinding::Dpop,
        BindingArg::Bearer => TokenBinding::Bearer,
        BindingArg::Mtls => TokenBinding::Mtls,
    }
}

/// The public key to register: read from a file, or generated with the
/// private half written to a new 0600 file.
fn public_key(k: &KeyArgs) -> Result<AgentKey> {
    match (&k.public_key, &k.generate_key) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(AgentKey::parse(&text).with_context(|| format!("reading the public key in {}", p.display()))?)
        }
        (None, Some(out)) => {
            let alg = match k.key_alg {
                KeyAlgArg::Eddsa => JwsAlg::EdDSA,
                KeyAlgArg::Es256 => JwsAlg::Es256,
                KeyAlgArg::Rs256 => JwsAlg::Rs256,
            };
            let key = AgentSigner::generate(alg)?;
            warden_server::write_private(out, &key.to_pkcs8_pem())
                .with_context(|| format!("writing the private key to {} (it must not exist yet)", out.display()))?;
            eprintln!("{} private key written to {} (keep it secret; Warden keeps only the public key)", alg.as_str(), out.display());
            Ok(key.public())
        }
        (None, None) => bail!("give --public-key FILE or --generate-key OUT.pem"),
    }
}

async fn register(cp: &ControlPlane, a: &RegisterArgs) -> Result<()> {
    let new = NewAgent {
        name: &a.name,
        owner: &a.owner,
        purpose: &a.purpose,
        tools: &a.tools,
        autonomy: a.autonomy,
        parent: a.parent.as_deref(),
        token_binding: binding(a.token_binding),
    };
    // Everything is checked before a key file is written.
    let valid = cp.check_registration(&new).await?;
    let id = cp.register_agent(&Actor::local_user(), valid, &public_key(&a.key)?).await?;
    println!("{id}");
    Ok(())
}

fn print_agent(a: &Agent) {
    let tools: Vec<String> = a.tools.iter().map(ToString::to_string).collect();
    println!(
        "{}\n  owner: {}\n  purpose: {}\n  status: {}\n  autonomy: {}\n  tools: {}\n  key: {}\n  token binding: {}{}",
        a.id,
        a.owner,
        a.purpose,
        a.status.as_str(),
        a.autonomy.level(),
        tools.join(", "),
        AgentKey::from_registry(&a.public_key)
            .map_or_else(|e| format!("unreadable ({e})"), |k| format!("{} (thumbprint {})", k.alg().as_str(), k.thumbprint())),
        a.token_binding,
        a.parent.as_ref().map(|p| format!("\n  parent: {p}")).unwrap_or_default()
    );
}

pub async fn run(cfg: &ServerConfig, cmd: &AgentCmd) -> Result<()> {
    let me = Actor::local_user();
    match cmd {
        AgentCmd::List => list(&open_store(cfg).await?).await,
        AgentCmd::Show { agent } => show(cfg, &open_store(cfg).await?, agent).await,
        AgentCmd::Register(a) => register(&control_plane(cfg).await?, a).await,
        AgentCmd::Suspend { agent, reason } => set_status(cfg, agent, AgentStatus::Suspended, reason).await,
        AgentCmd::Resume { agent } => set_status(cfg, agent, AgentStatus::Active, "").await,
        AgentCmd::Revoke { agent, reason } => set_status(cfg, agent, AgentStatus::Revoked, reason).await,
        AgentCmd::Autonomy { agent, level, reason } => {
            let change = control_plane(cfg).await?.set_autonomy(&me, agent, *level, reason).await?;
            println!("{}: {change}", change.agent);
            Ok(())
        }
        AgentCmd::IssueCert { agent, out, hours } => {
            let cp = control_plane(cfg).await?;
            let ca = warden_server::load_or_create_ca(&cfg.data_dir, &cfg.trust_domain)?;
            let issued = cp.issue_certificate(&me, agent, &ca, hours.saturating_mul(3600)).await?;
            let name = agent.rsplit('/').next().unwrap_or(agent);
            let (cert, key) = (out.join(format!("{name}.crt.pem")), out.join(format!("{name}.key.pem")));
            warden_server::write_private(&key, &issued.key_pem).with_context(|| format!("writing {} (it must not exist yet)", key.display()))?;
            std::fs::write(&cert, format!("{}{}", issued.cert_pem, ca.cert_pem())).with_context(|| format!("writing {}", cert.display()))?;
            println!("{}\n{}", cert.display(), key.display());
            Ok(())
        }
        AgentCmd::TrustBundle => {
            print!("{}", warden_server::load_or_create_ca(&cfg.data_dir, &cfg.trust_domain)?.cert_pem());
            Ok(())
        }
        AgentCmd::RotateKey { agent, key } => {
            let cp = control_plane(cfg).await?;
            // The agent must exist before a key file is written.
            cp.agent(agent).await?;
            let pk = public_key(key)?;
            let id = cp.rotate_key(&me, agent, &pk).await?;
            println!("rotated key of {id}; new thumbprint {}", pk.thumbprint());
            Ok(())
        }
        AgentCmd::SetBinding { agent, binding: b, reason } => {
            let id = control_plane(cfg).await?.set_token_binding(&me, agent, binding(*b), reason).await?;
            println!("{id}: token binding {}", binding(*b));
            Ok(())
        }
    }
}

async fn list(store: &Store) -> Result<()> {
    println!("{:<48} {:<10} {:<3} {:<24} TOOLS", "AGENT", "STATUS", "AUT", "OWNER");
    for a in store.list_agents().await? {
        let tools: Vec<String> = a.tools.iter().map(ToString::to_string).collect();
        println!("{:<48} {:<10} {:<3} {:<24} {}", a.id, a.status.as_str(), a.autonomy.level(), a.owner, tools.join(","));
    }
    Ok(())
}

/// One agent, with the monitor's calls and risk as the gateway last saved
/// them and its promotion criteria.
async fn show(cfg: &ServerConfig, store: &Store, agent: &str) -> Result<()> {
    let a = store.get_agent(&agent_id(cfg, agent)?).await?;
    print_agent(&a);
    let now = warden_core::clock::now_ms();
    let state = store.monitor_states().await?.into_iter().find(|s| s.agent == a.id.as_str());
    let summary = state.and_then(|s| serde_json::from_str::<warden_monitor::AgentState>(&s.state).ok()).map(|s| s.summary(&cfg.monitor, now));
    let (calls, risk) = summary.map(|s| (s.calls, s.risk)).unwrap_or_default();
    let key = warden_server::load_or_create_key(&cfg.key_path())?.public();
    let p = warden_server::promotion_report(store, &a, calls, risk, &key, &cfg.promotion).await?;
    match p.next {
        Some(next) => println!("promotion to autonomy {next}: {}", if p.eligible { "recommended (an operator decides)" } else { "not yet" }),
        None => println!("autonomy 3 is the highest level"),
    }
    for c in &p.criteria {
        println!("  [{}] {}", if c.met { "x" } else { " " }, c.detail);
    }
    Ok(())
}

async fn set_status(cfg: &ServerConfig, agent: &str, status: AgentStatus, reason: &str) -> Result<()> {
    let id = control_plane(cfg).await?.set_agent_status(&Actor::local_user(), agent, status, reason).await?;
    println!("{id} is now {}", status.as_str());
    Ok(())
}

pub async fn token(cfg: &ServerConfig, cmd: &TokenCmd) -> Result<()> {
    let TokenCmd::Revoke { jti, task, agent, reason } = cmd;
    let what = match (jti, task, agent) {
        (Some(j), _, _) => Revocation::Token(j),
        (_, Some(t), _) => Revocation::Task(t),
        (_, _, Some(a)) => Revocation::Agent(a),
        _ => bail!("give one of --jti, --task or --agent"),
    };
    let value = control_plane(cfg).await?.revoke(&Actor::local_user(), what, reason).await?;
    println!("revoked {value}");
    Ok(())
}

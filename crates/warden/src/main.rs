//! `warden`: the single binary — server, operator CLI, demo.

mod agent_cmd;
mod approvals_cmd;
mod audit_cmd;
mod cli;
mod connect_cmd;
mod demo;
mod demo_server;
mod export_cmd;
mod inspect_cmd;
mod kill_cmd;
mod policy_cmd;
mod report_cmd;
mod tool_cmd;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command};
use warden_server::ServerConfig;

/// jemalloc rather than glibc's malloc: under load allocation was a fifth
/// of the gateway's CPU, and jemalloc cut CPU per call by 10-18 % (issue 19).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Stored text (a record's reason, an agent name) as a terminal shows it:
/// escaped, so text that came from a caller or an insider cannot forge a
/// line or steer the terminal, and at most 2,000 bytes a field (`--json`
/// prints records whole).
pub(crate) fn printable(s: &str) -> String {
    warden_core::untrusted_text(s, 2_000)
}

/// How long a stopping server lets requests in flight finish.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(20);

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::DemoServer = cli.command {
        // The stdio MCP server must keep stdout for JSON-RPC only.
        return demo_server::run();
    }
    if let Command::SandboxExec { spec, command } = &cli.command {
        // Single-threaded and before anything else: confine, then exec.
        let err = sandbox_exec(spec, command);
        eprintln!("warden sandbox-exec: {err:#}");
        std::process::exit(126);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(cli))
}

/// Apply the sandbox and replace this process with the server; returns only
/// on failure.
fn sandbox_exec(spec: &str, command: &[String]) -> anyhow::Error {
    let run = || -> Result<std::convert::Infallible> {
        let cfg: warden_gateway::sandbox::SandboxConfig = serde_json::from_str(spec).context("--spec is not a sandbox configuration")?;
        cfg.apply()?;
        let (program, args) = command.split_first().context("no command to run")?;
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            Err(std::process::Command::new(program).args(args).exec()).with_context(|| format!("cannot run {program:?} in the sandbox"))
        }
        #[cfg(not(unix))]
        anyhow::bail!("sandboxes need Linux ({program:?} {args:?})")
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Load the config file, or the defaults relative to the current directory
/// when it does not exist and was not named explicitly.
pub fn load_config(cli: &Cli) -> Result<ServerConfig> {
    let path = &cli.config;
    if !path.exists() && !cli.config_explicit() {
        return Ok(ServerConfig::default());
    }
    ServerConfig::load(path).with_context(|| "loading the configuration (see `warden init`)")
}

pub async fn open_store(cfg: &ServerConfig) -> Result<warden_store::Store> {
    let at = match cfg.database_url() {
        Some(_) => "the database named by database_url / WARDEN_DATABASE_URL".to_string(),
        None => cfg.db_path().display().to_string(),
    };
    warden_server::open_store(cfg).await.with_context(|| format!("opening the registry at {at}"))
}

/// The control plane over the configured store. Its audit records join the
/// server's chain under the gateway key (the store serializes the writers).
pub async fn control_plane(cfg: &ServerConfig) -> Result<warden_control::ControlPlane> {
    let store = open_store(cfg).await?;
    let key = warden_server::load_or_create_key(&cfg.key_path())?;
    let audit = warden_gateway::AuditSink::start(store.clone(), key, None);
    Ok(warden_control::ControlPlane::standalone(store, audit, &cfg.trust_domain))
}

/// Ctrl-C, or SIGTERM from a service manager.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Serve => {
            let cfg = load_config(&cli)?;
            let mut running = warden_server::start(cfg).await?;
            eprintln!("warden: serving MCP on {}/mcp (issuer {})", running.public_url, running.public_url);
            if let Some(a) = running.egress_addr {
                eprintln!("warden: egress proxy on http://{a} (tokens for {}/egress)", running.public_url);
            }
            tokio::select! {
                r = &mut running.task => {
                    r?.context("server stopped")?;
                    return Ok(());
                }
                _ = shutdown_signal() => eprintln!("warden: shutting down: draining requests in flight (up to {} s)", SHUTDOWN_DRAIN.as_secs()),
            }
            // In-flight calls finish and record their outcome; learned
            // baselines and risk survive a restart.
            let left = running.shut_down(SHUTDOWN_DRAIN).await;
            if left > 0 {
                eprintln!("warden: {left} requests were still running after {} s and are cut off", SHUTDOWN_DRAIN.as_secs());
            }
            Ok(())
        }
        Command::Init { dir } => demo::init(dir),
        Command::Agent(cmd) => agent_cmd::run(&load_config(&cli)?, cmd).await,
        Command::Tool(cmd) => tool_cmd::run(&load_config(&cli)?, cmd).await,
        Command::Token(cmd) => agent_cmd::token(&load_config(&cli)?, cmd).await,
        Command::Policy(cmd) => policy_cmd::run(&cli, cmd).await,
        Command::Audit(cmd) => audit_cmd::run(&cli, cmd).await,
        Command::Inspect(cmd) => inspect_cmd::run(cmd),
        Command::Operator(cmd) => approvals_cmd::operator(&load_config(&cli)?, cmd).await,
        Command::Approvals(cmd) => approvals_cmd::run(&load_config(&cli)?, cmd).await,
        Command::Kill(cmd) => kill_cmd::kill(&load_config(&cli)?, cmd).await,
        Command::Monitor(cmd) => kill_cmd::monitor(&load_config(&cli)?, cmd).await,
        Command::Export(cmd) => export_cmd::run(&cli, cmd).await,
        Command::Report { out } => report_cmd::run(&load_config(&cli)?, out).await,
        Command::Connect(args) => connect_cmd::run(args).await,
        Command::Demo { dir } => demo::run(dir.clone()).await,
        Command::DemoServer | Command::SandboxExec { .. } => unreachable!("handled before the runtime starts"),
    }
}

//! `warden connect`: the agent-side bridge (see `warden_client::relay`).
//! Here only what the binary owns: the key file, the arguments, which front.

use crate::cli::ConnectArgs;
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use warden_client::relay::{Identity, Relay};
use warden_identity::AgentSigner;

/// The agent's key: refused when others may read it, as ssh refuses one.
fn load_key(path: &std::path::Path) -> Result<AgentSigner> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).with_context(|| format!("reading the agent key {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!("the agent key {} is readable by other users (mode {:o}); restrict it with `chmod 600 {}`", path.display(), mode & 0o777, path.display());
        }
    }
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading the agent key {}", path.display()))?;
    AgentSigner::from_pkcs8_pem(&pem).with_context(|| format!("the agent key {}", path.display()))
}

/// The secret a host must present to the loopback listener.
const LISTEN_SECRET_ENV: &str = "WARDEN_CONNECT_SECRET";

fn task_id() -> String {
    let mut b = [0u8; 9];
    getrandom::fill(&mut b).expect("OS random source available");
    format!("connect-{}", warden_identity::b64url(&b))
}

pub async fn run(args: &ConnectArgs) -> Result<()> {
    let key = match &args.key {
        Some(path) => load_key(path)?,
        // No key on disk: one for this session only, which the tokens the
        // workload credential buys are bound to.
        None => AgentSigner::generate(warden_identity::JwsAlg::EdDSA)?,
    };
    let scope = args.scope.as_deref().map(|s| s.split([' ', ',']).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" "));
    let task = args.task.clone().unwrap_or_else(task_id);
    let relay = Arc::new(Relay::new(Identity {
        gateway: args.gateway.clone(),
        agent: args.agent.clone(),
        key: Arc::new(key),
        scope,
        task,
        workload_token: args.workload_token.clone(),
    }));
    // A first token now, so a misconfiguration shows at launch; the bridge
    // still starts, and answers each request with the reason, so the host
    // shows it where its user looks.
    if let Err(e) = relay.token(None).await {
        eprintln!("warden connect: {e}");
    }
    match args.listen {
        Some(addr) => {
            let secret = std::env::var(LISTEN_SECRET_ENV).map_err(|_| {
                anyhow::anyhow!(
                    "--listen needs a secret the host will send: set {LISTEN_SECRET_ENV} to a random value (e.g. `openssl rand -hex 32`) and configure the host to send `Authorization: Bearer <it>`"
                )
            })?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            eprintln!("warden connect: agent {} at http://{}/mcp (gateway {})", args.agent, listener.local_addr()?, relay.gateway());
            warden_client::listen::serve(relay, listener, &secret).await.context("serving streamable HTTP")
        }
        None => warden_client::stdio::serve(relay, tokio::io::stdin(), tokio::io::stdout()).await.context("relaying stdio"),
    }
}

//! `warden connect`: the agent-side bridge (see `warden_client::relay`).
//! Here only what the binary owns: the key file, the arguments, which front.

use crate::cli::ConnectArgs;
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use warden_client::relay::{Grant, Identity, Relay, Secret};
use warden_client::signin::SignIn;
use warden_identity::AgentSigner;

/// A secret file (`what`): refused when others may read it, as ssh refuses a key.
fn read_private(path: &std::path::Path, what: &str) -> Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).with_context(|| format!("reading the {what} {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!("the {what} {} is readable by other users (mode {:o}); restrict it with `chmod 600 {}`", path.display(), mode & 0o777, path.display());
        }
    }
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

fn load_key(path: &std::path::Path) -> Result<AgentSigner> {
    AgentSigner::from_pkcs8_pem(&read_private(path, "agent key")?).with_context(|| format!("the agent key {}", path.display()))
}

fn read_secret(path: &std::path::Path) -> Result<String> {
    Ok(read_private(path, "client secret")?.trim().to_string())
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
        // workload credential buys are bound to. A human's sign-in or a
        // client secret is for any server: P-256, the algorithm DPoP
        // servers list most.
        None if args.sign_in || args.client_secret_file.is_some() => AgentSigner::generate(warden_identity::JwsAlg::Es256)?,
        None => AgentSigner::generate(warden_identity::JwsAlg::EdDSA)?,
    };
    let scope = args.scope.as_deref().map(|s| s.split([' ', ',']).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" "));
    let task = args.task.clone().unwrap_or_else(task_id);
    let secret = args.client_secret_file.as_deref().map(read_secret).transpose()?;
    if secret.is_some() && args.sign_in && args.client_id.is_none() {
        bail!("--client-secret-file with --sign-in is the secret of a registered host: give its --client-id too");
    }
    let grant = match (&args.workload_token, args.sign_in, secret) {
        (_, true, client_secret) => Grant::SignIn(SignIn { client_id: args.client_id.clone(), client_secret, browser: args.browser.clone() }),
        (_, false, Some(secret)) => Grant::Secret(Secret(secret)),
        (Some(path), false, None) => Grant::Workload(path.clone()),
        (None, false, None) => Grant::Agent,
    };
    // Clap requires --agent unless --sign-in; a signed-in host is named by
    // its client id in messages.
    let agent = args.agent.clone().or_else(|| args.client_id.clone()).unwrap_or_else(|| "signed-in host".into());
    if args.issuer.is_none() && args.client_secret_file.is_some() {
        eprintln!(
            "warden connect: the client secret goes to whichever authorization server {} names; give --issuer to allow only the one you expect",
            args.gateway
        );
    }
    // The listener first: a missing secret or a taken port must not wait
    // on a sign-in.
    let listening = match args.listen {
        Some(addr) => {
            let secret = std::env::var(LISTEN_SECRET_ENV).map_err(|_| {
                anyhow::anyhow!(
                    "--listen needs a secret the host will send: set {LISTEN_SECRET_ENV} to a random value (e.g. `openssl rand -hex 32`) and configure the host to send `Authorization: Bearer <it>`"
                )
            })?;
            Some((tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?, secret))
        }
        None => None,
    };
    let relay = Arc::new(Relay::new(Identity { gateway: args.gateway.clone(), agent, key: Arc::new(key), scope, task, grant, issuer: args.issuer.clone() }));
    // A first token now, so a misconfiguration shows at launch (and a
    // sign-in opens at once), while the fronts already take the host's
    // messages: those wait for it, and are answered with the reason when
    // there is none, so the host shows it where its user looks.
    let first = relay.clone();
    tokio::spawn(async move {
        if let Err(e) = first.token(None).await {
            eprintln!("warden connect: {e}");
        }
    });
    match listening {
        Some((listener, secret)) => {
            eprintln!("warden connect: agent {} at http://{}/mcp (gateway {})", relay.agent(), listener.local_addr()?, relay.gateway());
            warden_client::listen::serve(relay, listener, &secret).await.context("serving streamable HTTP")
        }
        None => warden_client::stdio::serve(relay, tokio::io::stdin(), tokio::io::stdout()).await.context("relaying stdio"),
    }
}

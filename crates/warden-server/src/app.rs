//! Start-up: data directory, gateway key, store, policies, audit writer,
//! upstreams, and the HTTP listener.

use crate::config::ServerConfig;
use crate::oauth::{self, OAuth};
use crate::policy_files::load_policy_dir;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use warden_gateway::{AuditSink, Gateway, GatewayConfig, Upstream};
use warden_identity::{Keypair, TokenIssuer};
use warden_store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("data directory {path}: {message}")]
    DataDir { path: String, message: String },
    #[error(transparent)]
    Store(#[from] warden_store::StoreError),
    #[error("policies in {dir}: {source}")]
    Policy { dir: String, source: warden_policy::PolicyError },
    #[error(transparent)]
    Upstream(#[from] warden_gateway::UpstreamError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    /// The egress proxy's address, when it runs.
    pub egress_addr: Option<SocketAddr>,
    pub public_url: String,
    pub gateway: Arc<Gateway>,
    pub issuer: TokenIssuer,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: Arc<tokio::sync::Notify>,
}

impl Running {
    /// Graceful shutdown: stop accepting, let requests in flight finish
    /// (each records its outcome) for up to `bound`, then write what is only
    /// in memory. Returns how many requests were still running at the bound
    /// (their connections are closed with the process).
    pub async fn shut_down(self, bound: Duration) -> usize {
        self.shutdown.notify_one();
        // Notification streams never end by themselves: ended now, so that
        // their connections close within the bound.
        self.gateway.end_listening();
        let started = tokio::time::Instant::now();
        let _ = tokio::time::timeout(bound, self.task).await;
        self.gateway.drain(bound.saturating_sub(started.elapsed())).await
    }
}

/// Load the gateway key from the data directory, creating it (mode 0600) on
/// first start.
pub fn load_or_create_key(path: &Path) -> Result<Keypair, StartError> {
    let dd = |message: String| StartError::DataDir { path: path.display().to_string(), message };
    match std::fs::read_to_string(path) {
        Ok(pem) => Keypair::from_pkcs8_pem(&pem).map_err(|e| dd(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate();
            match write_private(path, &key.to_pkcs8_pem()) {
                Ok(()) => Ok(key),
                // Another replica sharing the data directory created it first.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(dd(e.to_string())),
            }
        }
        Err(e) => Err(dd(e.to_string())),
    }
}

/// Write a secret file readable by the owner only, refusing to overwrite.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

pub fn ensure_data_dir(dir: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(dir).map_err(|e| StartError::DataDir { path: dir.display().to_string(), message: e.to_string() })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// The registry: the shared PostgreSQL when one is configured, else the
/// embedded SQLite in the data directory.
pub async fn open_store(cfg: &ServerConfig) -> Result<Store, StartError> {
    match cfg.database_url() {
        Some(url) => Ok(Store::connect(&url).await?),
        None => {
            ensure_data_dir(&cfg.data_dir)?;
            Ok(Store::open(&cfg.db_path()).await?)
        }
    }
}

/// How long a client may take to send a whole request head to the main
/// listener (slowloris: axum::serve sets no bound).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The main listener: the router on hyper's HTTP/1.1 connections, as
/// `axum::serve` does, with a bound on the time to receive a request head
/// (and, with TLS, to finish the handshake), the peer address for the
/// handlers (unauthenticated traffic is throttled per source), the client's
/// X.509-SVID when it presented one, and a graceful stop: once `stop` is
/// notified no connection is accepted, idle ones close, and requests in
/// flight finish.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: Arc<tokio::sync::Notify>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like pass; keep serving.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.notified() => break,
        };
        let (app, builder, watcher, tls) = (app.clone(), builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(&builder, watcher, stream, app, peer, None).await;
            };
            let handshake = match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, "TLS handshake refused: {e}"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            match crate::tls::peer_certificate(handshake.get_ref().1) {
                Ok(cert) => serve_connection(&builder, watcher, handshake, app, peer, cert).await,
                Err(e) => tracing::info!(%peer, "client certificate refused: {e}"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn serve_connection<IO>(
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: IO,
    app: axum::Router,
    peer: SocketAddr,
    cert: Option<warden_gateway::PeerCertificate>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let with_peer = tower::util::MapRequest::new(app, move |mut req: axum::http::Request<_>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        if let Some(c) = &cert {
            req.extensions_mut().insert(c.clone());
        }
        req
    });
    let service = hyper_util::service::TowerToHyperService::new(with_peer);
    let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!("connection ended: {e}");
    }
}

/// A `[[workload_issuer]]`: its JWKS read and its agents named by SPIFFE id.
fn load_workload_issuer(w: &crate::config::WorkloadIssuerConfig, trust_domain: &str) -> Result<oauth::Workload, StartError> {
    let bad = |m: String| StartError::Config(format!("[[workload_issuer]] {}: {m}", w.issuer));
    let jwks = std::fs::read_to_string(&w.jwks_file).map_err(|e| bad(format!("jwks_file {}: {e}", w.jwks_file.display())))?;
    let issuer = warden_identity::TrustedIssuer::from_jwks(&w.issuer, &w.audience, &jwks).map_err(|e| bad(e.to_string()))?;
    let agents = w
        .agents
        .iter()
        .map(|(sub, a)| warden_control::agent_id(trust_domain, a).map(|id| (sub.clone(), id.to_string())).map_err(|e| bad(format!("agent {a}: {e}"))))
        .collect::<Result<_, _>>()?;
    Ok(oauth::Workload { issuer, agents })
}

/// The secret in environment variable `var`, which the setting `setting`
/// names: secrets come from the environment of the server process only,
/// never from its configuration file.
fn secret_from_env(setting: &str, var: &str) -> Result<String, StartError> {
    std::env::var(var).ok().filter(|s| !s.is_empty()).ok_or_else(|| StartError::Config(format!("{setting} names {var}, which is not set in the environment")))
}

/// `[interactive]`: each host's agent named by SPIFFE id, the IdP secret read.
fn load_interactive(i: &crate::config::InteractiveConfig, trust_domain: &str, secret: &str) -> Result<crate::interactive::Interactive, StartError> {
    let agents = i
        .hosts
        .iter()
        .map(|h| {
            warden_control::agent_id(trust_domain, &h.agent)
                .map(|id| (h.client_id.clone(), id.to_string()))
                .map_err(|e| StartError::Config(format!("[[interactive.host]] {}: agent {}: {e}", h.client_id, h.agent)))
        })
        .collect::<Result<_, _>>()?;
    let idp_secret = secret_from_env("interactive.idp_client_secret_env", &i.idp_client_secret_env)?;
    crate::interactive::Interactive::new(i.clone(), agents, idp_secret, secret.as_bytes()).map_err(StartError::Config)
}

/// Listen on `addr`; returns the listener and the address it got.
async fn bind(addr: &str) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind { addr: addr.to_string(), source };
    let l = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let a = l.local_addr().map_err(err)?;
    Ok((l, a))
}

/// Sign an audit checkpoint every `audit.checkpoint_secs` when the log grew,
/// and publish the newest to `audit.publish_checkpoints_to` (again each
/// period: one that failed to publish is retried).
fn spawn_checkpoints(cfg: &ServerConfig, store: Store, key: Keypair) {
    if cfg.audit.checkpoint_secs == 0 {
        return;
    }
    let (period, origin, publish_to) = (Duration::from_secs(cfg.audit.checkpoint_secs), cfg.audit_origin(), cfg.audit.publish_checkpoints_to.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.make_checkpoint(&key, &origin, warden_core::clock::now_ms()).await {
                Ok(Some(cp)) => {
                    if let Some(dir) = &publish_to
                        && let Err(e) = warden_audit::publish(dir, cp.size, &cp.note)
                    {
                        tracing::error!("publishing the audit checkpoint at tree size {} failed (retried next period): {e}", cp.size);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!("signing an audit checkpoint failed: {e}"),
            }
        }
    });
}

/// Start the server: bind, observe upstream tool definitions (waiting a
/// bounded time for them), then serve.
pub async fn start(cfg: ServerConfig) -> Result<Running, StartError> {
    cfg.validate().map_err(StartError::Config)?;
    if let Some(v) = &cfg.approvals.webhook_secret_env {
        secret_from_env("approvals.webhook_secret_env", v)?;
    }
    ensure_data_dir(&cfg.data_dir)?;
    if let Some(dir) = &cfg.audit.publish_checkpoints_to {
        std::fs::create_dir_all(dir)
            .map_err(|e| StartError::DataDir { path: dir.display().to_string(), message: format!("audit.publish_checkpoints_to: {e}") })?;
    }
    let key = load_or_create_key(&cfg.key_path())?;
    // Redaction tokens and hashes are keyed by a value derived from the
    // gateway key, so every replica sharing the key produces the same ones.
    let redaction_key: [u8; 32] = Sha256::new().chain_update(b"warden redaction key v1\n").chain_update(key.to_pkcs8_pem().as_bytes()).finalize().into();
    // So are authorization codes and sign-in states, which any replica redeems.
    let sealing_secret = key.to_pkcs8_pem();
    let store = open_store(&cfg).await?;
    let policy = load_policy_dir(&cfg.policy_dir).map_err(|source| StartError::Policy { dir: cfg.policy_dir.display().to_string(), source })?;
    // Upstreams, webhooks and exporters get no redirects followed: a
    // server must not send the gateway (and its injected credentials) elsewhere.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let logs = cfg.telemetry.otlp_logs_url.clone().map(|url| {
        warden_gateway::telemetry::Exporter::start(cfg.telemetry.service_name.clone(), url, http.clone(), warden_gateway::telemetry::otlp_logs_json)
    });
    let audit = AuditSink::start(store.clone(), key.clone(), logs);
    let upstreams = cfg.upstreams.iter().cloned().map(|u| Upstream::new(u, http.clone())).collect::<Result<Vec<_>, _>>()?;

    let (listener, addr) = bind(&cfg.listen).await?;
    let tls = match &cfg.tls {
        Some(t) => {
            let ca = crate::tls::load_or_create_ca(&cfg.data_dir, &cfg.trust_domain)?;
            let public_host = cfg.public_url.as_deref().and_then(|u| url::Url::parse(u).ok()).and_then(|u| {
                u.host().map(|h| match h {
                    url::Host::Domain(d) => d.to_string(),
                    url::Host::Ipv4(ip) => ip.to_string(),
                    url::Host::Ipv6(ip) => ip.to_string(),
                })
            });
            Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(t, &ca, addr, public_host.as_deref())?))
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = cfg.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    spawn_checkpoints(&cfg, store.clone(), key.clone());
    let issuer = TokenIssuer::new(key);
    let egress_resource = cfg.egress.listen.is_some().then(|| format!("{public_url}/egress"));
    let gw_cfg = GatewayConfig {
        issuer: public_url.clone(),
        resource: format!("{public_url}/mcp"),
        resource_metadata: format!("{public_url}/.well-known/oauth-protected-resource/mcp"),
        max_body_bytes: cfg.max_body_bytes,
        origins: warden_gateway::origin::OriginPolicy::new(&public_url, addr, &cfg.http),
        dpop_skew_secs: cfg.dpop_skew_secs,
        refresh_interval: Duration::from_millis(cfg.refresh_ms.max(10)),
        stale_after: cfg.stale_after(),
        egress: cfg.egress.clone(),
        egress_verifier: egress_resource.as_ref().map(|r| issuer.verifier(&public_url, r)),
        egress_resource,
        pin_check_interval: Duration::from_secs(cfg.pin_check_secs.max(1)),
        monitor: cfg.monitor.clone(),
        unauthenticated: cfg.unauthenticated.clone(),
        approvals: cfg.approvals.clone(),
        telemetry: cfg.telemetry.clone(),
    };
    let verifier = issuer.verifier(&public_url, &gw_cfg.resource);
    let gateway = Gateway::new(gw_cfg, store, audit, policy, verifier, upstreams, redaction_key).await?;
    gateway.spawn_background();
    // A hung upstream delays serving by STARTUP_LISTING_WAIT at most.
    gateway.start_definition_checks(warden_gateway::STARTUP_LISTING_WAIT).await;

    let workload = cfg.workload_issuers.iter().map(|w| load_workload_issuer(w, &cfg.trust_domain)).collect::<Result<_, _>>()?;
    let interactive = cfg.interactive.as_ref().map(|i| load_interactive(i, &cfg.trust_domain, &sealing_secret).map(Arc::new)).transpose()?;
    let oauth = Arc::new(OAuth {
        gw: gateway.clone(),
        issuer: issuer.clone(),
        issuer_url: public_url.clone(),
        ttl: cfg.token_ttl_secs,
        mtls: tls.is_some(),
        workload,
        interactive: interactive.clone(),
    });
    let admin = Arc::new(crate::admin::Admin {
        gw: gateway.clone(),
        control: warden_control::ControlPlane::in_gateway(gateway.clone(), &cfg.trust_domain),
        promotion: cfg.promotion.clone(),
        audit_key: issuer.public_key(),
        publish_checkpoints_to: cfg.audit.publish_checkpoints_to.clone(),
        audit_origin: cfg.audit_origin(),
        sso: interactive,
    });
    let app = warden_gateway::router(gateway.clone()).merge(oauth::router(oauth)).merge(crate::admin::router(admin));
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(serve_http(listener, app, tls, shutdown.clone()));
    let egress_addr = match &cfg.egress.listen {
        Some(listen) => {
            let (l, a) = bind(listen).await?;
            tokio::spawn(warden_gateway::egress::serve(gateway.clone(), l));
            Some(a)
        }
        None => None,
    };
    Ok(Running { addr, egress_addr, public_url, gateway, issuer, task, shutdown })
}

//! Gateway state: the in-memory registry snapshot (refreshed from the store
//! when its change counter moves), the policy bundle, the replay cache, MCP
//! sessions, the upstream connections, the monitor and the kill switches.

use crate::audit_sink::AuditSink;
use crate::containment::Containment;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use warden_core::clock::{now_ms, now_secs};
use warden_core::{Agent, Kill, Tool, ToolRef};
use warden_identity::{AccessClaims, ReplayCache, ReplayCheck, RevocationSet, TokenVerifier};
use warden_inspect::{Inspector, Redactor};
use warden_monitor::{Monitor, MonitorConfig};
use warden_policy::PolicyBundle;
use warden_store::{OneTimeIds, OneTimeIdsUnavailable, Store, StoreError};

/// The servers of the tools that are in one registry copy and not the
/// other, or differ.
fn servers_whose_tools_differ(a: &HashMap<ToolRef, Tool>, b: &HashMap<ToolRef, Tool>) -> BTreeSet<String> {
    let changed = a.iter().filter(|(t, v)| b.get(*t) != Some(*v)).map(|(t, _)| t);
    changed.chain(b.keys().filter(|t| !a.contains_key(*t))).map(|t| t.server.clone()).collect()
}

/// Everything the hot path reads, swapped atomically on refresh.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub seq: i64,
    /// By SPIFFE id.
    pub agents: HashMap<String, Agent>,
    pub tools: HashMap<ToolRef, Tool>,
    pub revocations: RevocationSet,
    /// Kill switches engaged in the store.
    pub kills: Vec<Kill>,
}

impl Snapshot {
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let seq = store.change_seq().await?;
        let agents = store.list_agents().await?.into_iter().map(|a| (a.id.to_string(), a)).collect();
        let tools = store.list_tools().await?.into_iter().map(|t| (t.tool.clone(), t)).collect();
        let revocations = store.revocation_set().await?;
        let kills = store.active_kills().await?;
        Ok(Self { seq, agents, tools, revocations, kills })
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Token issuer (the server's public base URL).
    pub issuer: String,
    /// This resource's identifier: the public URL of the MCP endpoint; tokens
    /// must name it as their audience and DPoP proofs as their `htu`.
    pub resource: String,
    /// RFC 9728 metadata URL advertised in `WWW-Authenticate`.
    pub resource_metadata: String,
    pub max_body_bytes: usize,
    /// Which `Host` and `Origin` headers `/mcp` answers (DNS rebinding).
    pub origins: crate::origin::OriginPolicy,
    /// Accepted clock difference for DPoP proofs (seconds).
    pub dpop_skew_secs: i64,
    pub refresh_interval: Duration,
    /// A gateway that could not read the registry for this long refuses
    /// calls and tokens: a revocation or kill switch may be missing from
    /// its copy (fail closed).
    pub stale_after: Duration,
    pub pin_check_interval: Duration,
    /// The egress proxy's allowlist; its resource (`PUBLIC_URL/egress`, the
    /// audience of tokens for it) and their verifier when it runs.
    pub egress: crate::egress::EgressConfig,
    pub egress_resource: Option<String>,
    pub egress_verifier: Option<warden_identity::TokenVerifier>,
    pub monitor: MonitorConfig,
    /// Throttling and aggregated audit of requests that fail authentication.
    pub unauthenticated: warden_monitor::StrangersConfig,
    pub approvals: ApprovalsConfig,
    pub telemetry: crate::telemetry::TelemetryConfig,
}

/// `[approvals]`: how long a call needing approval is held, and how long an
/// approval request lives (no decision by then = deny).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Seconds the agent's request waits for a decision; after that it is
    /// answered "pending" and the agent may repeat the exact call once approved.
    pub hold_secs: u64,
    /// Seconds an approval request can be decided (and an approval used).
    pub expire_secs: u64,
    /// Where to POST each new approval request (JSON: the approval and the
    /// URLs to approve or deny it through the admin API).
    pub webhook_url: Option<String>,
    /// Environment variable holding a secret: when set, each webhook carries
    /// `X-Warden-Signature: sha256=HEX` (HMAC-SHA256 of the body).
    pub webhook_secret_env: Option<String>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self { hold_secs: 55, expire_secs: 900, webhook_url: None, webhook_secret_env: None }
    }
}

/// The enforcement point's shared state.
pub struct Gateway {
    pub config: GatewayConfig,
    pub store: Store,
    pub audit: AuditSink,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub(crate) policy: ArcSwap<PolicyBundle>,
    /// Version of the pushed bundle in force (0: the policy directory's).
    policy_version: std::sync::atomic::AtomicI64,
    /// When the registry was last read successfully (Unix ms).
    last_sync_ms: std::sync::atomic::AtomicI64,
    pub(crate) verifier: TokenVerifier,
    /// One-time ids seen by this process: refuses a local replay without
    /// the database.
    replay: Mutex<ReplayCache>,
    /// One-time ids recorded in the store, shared by every replica and kept
    /// across restarts.
    one_time_ids: OneTimeIds,
    /// Claims of tokens whose signature was already verified, by SHA-256 of
    /// the whole token: agents reuse a token for many calls, and the
    /// signature check is the most expensive step of authentication.
    pub(crate) verified: Mutex<HashMap<[u8; 32], AccessClaims>>,
    pub(crate) upstreams: BTreeMap<String, Arc<Upstream>>,
    /// Tool definitions as last listed upstream, by tool.
    pub(crate) definitions: RwLock<BTreeMap<ToolRef, Value>>,
    pub(crate) sessions: Mutex<crate::sessions::Sessions>,
    /// Stateless clients' notification streams (`subscriptions/listen`).
    pub(crate) listeners: Mutex<crate::listeners::Listeners>,
    /// Upstreams whose tools are being listed again because they said their
    /// tools changed (one listing at a time each), and whether they said so
    /// again meanwhile.
    pub(crate) relisting: Mutex<BTreeMap<String, bool>>,
    /// Requests in flight that their client can cancel.
    pub(crate) cancels: crate::sessions::Cancels,
    /// Keys the listing cursors given to clients (derived from the
    /// redaction key, so every replica sharing the gateway key accepts them).
    pub(crate) cursor_key: [u8; 32],
    /// Upstreams' notifications about no request, for the session streams
    /// (taken by the task that delivers them).
    notices: Mutex<Option<tokio::sync::mpsc::Receiver<crate::upstream::Notice>>>,
    /// What each agent recently sent out through exfiltration-capable tools,
    /// so that a value split over calls is found.
    exfil: Mutex<HashMap<String, warden_inspect::ExfilWindow>>,
    /// Upstreams' requests relayed to clients, waiting for their answers.
    pub(crate) awaiting: crate::sessions::Awaiting,
    /// Scans arguments, results and tool definitions.
    pub(crate) inspector: Inspector,
    /// The inspector for texts written for a model or a recipient, which
    /// the word model would flag for being just that: an agent's arguments
    /// and egress requests, a prompt's messages, a server's request of the
    /// client's model. They are judged by the rules alone.
    pub(crate) rules_only: Inspector,
    /// Applies `@redact` obligations; keyed so tokens and hashes are stable
    /// per deployment.
    pub(crate) redactor: Redactor,
    /// Baselines, risk, taint, limits and breakers.
    pub monitor: Monitor,
    pub(crate) containment: Containment,
    pub(crate) strangers: Mutex<warden_monitor::Strangers>,
    /// Requests in flight, for the shutdown drain; closed once it begins.
    inflight: tokio_util::task::TaskTracker,
    pub metrics: crate::metrics::Metrics,
    pub(crate) webhook_http: reqwest::Client,
    /// OTLP trace export, when configured.
    pub traces: Option<crate::telemetry::Exporter<crate::telemetry::Span>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gateway({})", self.config.resource)
    }
}

impl Gateway {
    pub async fn new(
        config: GatewayConfig,
        store: Store,
        audit: AuditSink,
        policy: PolicyBundle,
        verifier: TokenVerifier,
        upstreams: Vec<Upstream>,
        redaction_key: [u8; 32],
    ) -> Result<Arc<Self>, StoreError> {
        let snapshot = Snapshot::load(&store).await?;
        let monitor = Monitor::new(config.monitor.clone());
        let (notices, notices_rx) = tokio::sync::mpsc::channel(NOTICES_BUFFER);
        for u in &upstreams {
            u.send_notices_to(notices.clone());
        }
        for saved in store.monitor_states().await? {
            if let Err(e) = monitor.restore(&saved.agent, &saved.state) {
                tracing::warn!("{e}");
            }
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client with default TLS settings");
        let service = config.telemetry.service_name.clone();
        let traces =
            config.telemetry.otlp_traces_url.clone().map(|url| crate::telemetry::Exporter::start(service, url, http.clone(), crate::telemetry::otlp_json));
        let strangers = Mutex::new(warden_monitor::Strangers::new(config.unauthenticated.clone()));
        let one_time_ids = audit.one_time_ids(&store, config.dpop_skew_secs);
        let gw = Arc::new(Self {
            config,
            store,
            audit,
            snapshot: ArcSwap::from_pointee(snapshot),
            policy: ArcSwap::from_pointee(policy),
            policy_version: Default::default(),
            last_sync_ms: std::sync::atomic::AtomicI64::new(now_ms()),
            verifier,
            replay: Mutex::new(ReplayCache::new(1_000_000)),
            one_time_ids,
            verified: Mutex::new(HashMap::new()),
            upstreams: upstreams.into_iter().map(|u| (u.config.name.clone(), Arc::new(u))).collect(),
            definitions: RwLock::new(BTreeMap::new()),
            sessions: Default::default(),
            listeners: Default::default(),
            relisting: Default::default(),
            cancels: Default::default(),
            awaiting: Default::default(),
            exfil: Default::default(),
            rules_only: Inspector::default().rules_only(),
            inspector: Inspector::default(),
            redactor: Redactor::new(redaction_key),
            notices: Mutex::new(Some(notices_rx)),
            cursor_key: Sha256::new().chain_update(b"warden listing cursor key v1\n").chain_update(redaction_key).finalize().into(),
            monitor,
            containment: Containment::default(),
            strangers,
            inflight: tokio_util::task::TaskTracker::new(),
            metrics: crate::metrics::Metrics::default(),
            webhook_http: http,
            traces,
        });
        gw.init_kills().await;
        gw.sync_policy().await?;
        Ok(gw)
    }

    /// Switch to the policy bundle pushed to the store (`warden policy
    /// push`) when it is newer than the one in force. A bundle that does
    /// not load (it was validated and tested before it was pushed, so only
    /// a newer schema feature could cause this) leaves the one in force.
    pub async fn sync_policy(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self.store.policy_version().await? <= self.policy_version.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(warden_store::StoredPolicy { version, sha256: sha, sources }) = self.store.latest_policy().await? else { return Ok(()) };
        let loaded =
            serde_json::from_str::<warden_policy::BundleSources>(&sources).map_err(|e| e.to_string()).and_then(|s| s.load().map_err(|e| e.to_string()));
        match loaded {
            Ok(bundle) => {
                self.set_policy(bundle);
                tracing::info!("policy bundle v{version} (sha256 {sha}) in force");
            }
            Err(e) => tracing::error!("policy bundle v{version} (sha256 {sha}) does not load; the previous policy stays in force: {e}"),
        }
        self.policy_version.store(version, Ordering::Release);
        Ok(())
    }

    /// Version of the pushed policy bundle in force (0: the policy directory's).
    pub fn policy_version(&self) -> i64 {
        self.policy_version.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn policy(&self) -> Arc<PolicyBundle> {
        self.policy.load_full()
    }

    pub fn set_policy(&self, bundle: PolicyBundle) {
        self.policy.store(Arc::new(bundle));
    }

    /// Record a one-time id (DPoP proof or client assertion `jti`) until
    /// `expires_at`; `false` means it was used before and the request is a
    /// replay: on this process (the in-memory cache answers at once), or on
    /// another replica or before a restart (the store's record, which every
    /// first use waits for). An id the store cannot record is an error: the
    /// request must be refused.
    pub async fn first_use(&self, id: &str, expires_at: i64) -> Result<bool, OneTimeIdsUnavailable> {
        let local = self.replay.lock().check_and_insert(id, expires_at, now_secs());
        match local {
            ReplayCheck::Replay => Ok(false),
            // A full cache only loses the fast path: the store still decides.
            ReplayCheck::First | ReplayCheck::Full => self.one_time_ids.claim(id.to_string(), expires_at).await,
        }
    }

    /// Reload the snapshot now if the store changed.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        self.refresh_telling().await.map(|(changed, _)| changed)
    }

    /// As [`Gateway::refresh`]; also the servers whose registered tools
    /// changed, whose clients were told (see [`Gateway::tools_changed`]).
    pub(crate) async fn refresh_telling(&self) -> Result<(bool, BTreeSet<String>), StoreError> {
        let seq = self.store.change_seq().await?;
        let changed = seq != self.snapshot.load().seq;
        let mut told = BTreeSet::new();
        if changed {
            let fresh = Arc::new(Snapshot::load(&self.store).await?);
            let before = self.snapshot.swap(fresh.clone());
            self.sync_kills().await;
            self.sync_policy().await?;
            told = servers_whose_tools_differ(&before.tools, &fresh.tools);
            if !told.is_empty() {
                self.tools_changed(&told);
            }
        }
        self.last_sync_ms.store(now_ms(), std::sync::atomic::Ordering::Release);
        Ok((changed, told))
    }

    /// Why this gateway must refuse calls now, if its registry copy is
    /// older than `stale_after` (the database has been unreachable).
    pub fn registry_stale(&self) -> Option<String> {
        let age = stale_for(self.last_sync_ms.load(std::sync::atomic::Ordering::Acquire), now_ms(), self.config.stale_after)?;
        Some(format!(
            "this gateway has not been able to read the registry for {:.1} s, so a revocation or kill switch may be missing from its copy; refusing until it can (fail closed)",
            age.as_secs_f64()
        ))
    }

    /// Write the monitor's changed state to the store (also on shutdown).
    pub async fn flush_monitor(&self) -> Result<usize, StoreError> {
        let dirty = self.monitor.take_dirty();
        if dirty.is_empty() {
            return Ok(0);
        }
        match self.store.save_monitor_states(&dirty, now_ms()).await {
            Ok(()) => Ok(dirty.len()),
            Err(e) => {
                self.monitor.mark_dirty(&dirty.into_iter().map(|(a, _)| a).collect::<Vec<_>>());
                Err(e)
            }
        }
    }

    /// Background tasks: snapshot refresh and monitor persistence (upstream
    /// definition checks: `start_definition_checks`).
    pub fn spawn_background(self: &Arc<Self>) {
        self.spawn_stranger_audit();
        if let Some(rx) = self.notices.lock().take() {
            tokio::spawn(crate::mcp::deliver_notices(self.clone(), rx));
        }
        let gw = self.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs(gw.config.monitor.flush_secs);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = gw.flush_monitor().await {
                    tracing::error!("saving monitor state failed (kept in memory, retried): {e}");
                }
            }
        });
        let gw = self.clone();
        tokio::spawn(async move {
            // Changes announced by any replica (PostgreSQL) refresh at once;
            // the periodic poll is the resync for notifications lost while
            // the listener reconnects, and the only path on SQLite.
            let mut listener = None;
            let mut tick = tokio::time::interval(gw.config.refresh_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if listener.is_none() {
                    listener = match gw.store.change_listener().await {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("listening for registry changes failed (polling meanwhile): {e}");
                            None
                        }
                    };
                }
                match listener.as_mut() {
                    Some(l) => tokio::select! {
                        _ = tick.tick() => {}
                        r = l.recv() => if let Err(e) = r {
                            tracing::error!("registry change listener dropped (reconnecting): {e}");
                            listener = None;
                        },
                    },
                    None => {
                        tick.tick().await;
                    }
                }
                if let Err(e) = gw.refresh().await {
                    tracing::error!("registry refresh failed: {e}");
                }
            }
        });
    }

    /// Run a request to its end in a task of its own; `None` once the
    /// shutdown drain has begun (the request must be refused).
    pub(crate) fn track<F>(&self, request: F) -> Option<tokio::task::JoinHandle<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        (!self.inflight.is_closed()).then(|| self.inflight.spawn(request))
    }

    /// The tools the gateway lists of `servers` may have changed (an
    /// upstream's definitions, an approval, a block): the notification
    /// streams that asked, of callers granted something of one of them,
    /// and every session's stream are told, and list again. (A session
    /// keeps no grant; its client learns no more than that some listing
    /// changed, and sees only its own when it lists.)
    pub(crate) fn tools_changed(&self, servers: &BTreeSet<String>) {
        let told = self.listeners.lock().deliver(crate::listeners::Change::Tools { servers });
        let sessions = self.sessions.lock().broadcast(&serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }));
        tracing::debug!("tools changed: told {told} notification streams and {sessions} sessions");
    }

    /// End every notification stream (the shutdown begins): each gets the
    /// graceful closing response and may listen again on another replica.
    pub fn end_listening(&self) {
        self.listeners.lock().end();
    }

    /// The shutdown drain has begun: held calls stop waiting.
    pub(crate) fn shutting_down(&self) -> bool {
        self.inflight.is_closed()
    }

    /// Shutdown: refuse new requests, wait up to `bound` for those in
    /// flight (each writes its own audit record), then write what is only
    /// in memory (aggregated authentication failures, monitor state).
    /// Returns how many requests were still running at the bound.
    pub async fn drain(&self, bound: Duration) -> usize {
        self.inflight.close();
        let left = match tokio::time::timeout(bound, self.inflight.wait()).await {
            Ok(()) => 0,
            Err(_) => self.inflight.len(),
        };
        self.flush_strangers().await;
        if let Err(e) = self.flush_monitor().await {
            tracing::error!(error = %e, "saving monitor state on shutdown failed");
        }
        left
    }

    pub(crate) fn upstream(&self, server: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(server)
    }

    /// What `args` reveal joined with what `agent` recently sent out.
    pub(crate) fn exfil_check(&self, agent: &str, args: &Value) -> Vec<warden_inspect::JsonFinding> {
        // Checked outside the lock every agent's window shares.
        let window = self.exfil.lock().get(agent).cloned();
        window.map(|w| w.check(&self.inspector, args)).unwrap_or_default()
    }

    /// Keep what `agent` sends out through an exfiltration-capable tool.
    pub(crate) fn exfil_record(&self, agent: &str, args: &Value) {
        let mut windows = self.exfil.lock();
        // One window per agent; the registry bounds the agents, this bounds
        // the memory if it is huge.
        if windows.len() >= MAX_EXFIL_WINDOWS && !windows.contains_key(agent) {
            windows.clear();
        }
        windows.entry(agent.to_string()).or_insert_with(|| warden_inspect::ExfilWindow::new(warden_inspect::EXFIL_WINDOW_BYTES)).record(args);
    }

    /// Each upstream's tool naming.
    fn names(&self) -> impl Iterator<Item = crate::catalog::Names<'_>> {
        self.upstreams.values().map(|u| crate::catalog::Names { server: &u.config.name, naming: u.config.naming, aliases: &u.config.aliases })
    }

    /// The name clients call a tool by.
    pub(crate) fn exposed_name(&self, tool: &ToolRef) -> String {
        match self.names().find(|n| n.server == tool.server) {
            Some(n) => crate::catalog::exposed_name(n, tool),
            None => tool.federated_name(),
        }
    }

    /// The server and upstream name of a client's resource URI or prompt
    /// name (see [`crate::catalog`]), among the upstreams that may offer such.
    pub(crate) fn resolve_item(&self, name: &str, kind: warden_core::TargetKind) -> Result<(String, String), crate::catalog::NameError> {
        let capability = crate::catalog::capability(kind);
        let offering: Vec<(&str, crate::catalog::Naming)> =
            self.upstreams.values().filter(|u| u.offers(capability) != Some(false)).map(|u| (u.config.name.as_str(), u.config.naming)).collect();
        crate::catalog::resolve_item(name, kind, &offering)
    }

    /// The tool a client's name stands for (see [`crate::catalog`]).
    pub(crate) fn resolve_tool_name(&self, name: &str) -> Result<ToolRef, crate::catalog::NameError> {
        let snap = self.snapshot();
        crate::catalog::resolve_tool(name, self.names(), |t| snap.tools.contains_key(t))
    }
}

/// Agents whose recent outgoing values are kept at once.
const MAX_EXFIL_WINDOWS: usize = 100_000;

/// Upstreams' notifications about no request waiting to be delivered to
/// session streams; beyond it they are dropped (notifications are best
/// effort, and a stream that reconnects gets the kept ones).
const NOTICES_BUFFER: usize = 1024;

/// How long past `bound` the last sync at `last_ms` is at `now_ms`, if it is.
fn stale_for(last_ms: i64, now_ms: i64, bound: Duration) -> Option<Duration> {
    let age = Duration::from_millis(now_ms.saturating_sub(last_ms).max(0) as u64);
    (age > bound).then_some(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_copy_is_stale_only_past_the_bound() {
        let bound = Duration::from_secs(10);
        assert_eq!(stale_for(1_000, 11_000, bound), None, "exactly at the bound");
        assert_eq!(stale_for(1_000, 11_001, bound), Some(Duration::from_millis(10_001)));
        assert_eq!(stale_for(5_000, 1_000, bound), None, "a clock step backwards is not staleness");
    }
}

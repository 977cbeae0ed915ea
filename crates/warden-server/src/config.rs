use serde::Deserialize;
use std::path::{Path, PathBuf};
use warden_gateway::UpstreamConfig;

/// `warden.toml`. Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "d_data_dir")]
    pub data_dir: PathBuf,
    /// Shared PostgreSQL for several replicas (`postgres://USER@HOST/DB`);
    /// the embedded SQLite in `data_dir` when absent. `WARDEN_DATABASE_URL`
    /// overrides it; passwords belong in that variable, `PGPASSWORD` or a
    /// pgpass file, never in this file.
    pub database_url: Option<String>,
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Public base URL clients use; the token issuer and the base of the
    /// resource `PUBLIC_URL/mcp`. Defaults to `http://LISTEN`.
    pub public_url: Option<String>,
    #[serde(default = "d_td")]
    pub trust_domain: String,
    #[serde(default = "d_policy_dir")]
    pub policy_dir: PathBuf,
    /// Lifetime of issued access tokens. As short as 5 s: a token only
    /// has to outlive one renewal (clients such as `warden connect` renew at
    /// three quarters of it), and shorter is stricter.
    #[serde(default = "d_ttl")]
    pub token_ttl_secs: i64,
    #[serde(default = "d_body")]
    pub max_body_bytes: usize,
    #[serde(default = "d_skew")]
    pub dpop_skew_secs: i64,
    #[serde(default = "d_refresh")]
    pub refresh_ms: u64,
    /// Refuse calls and tokens when the registry could not be read for this
    /// long (default: the larger of 10 s and three refresh periods).
    pub stale_after_ms: Option<u64>,
    #[serde(default = "d_pin")]
    pub pin_check_secs: u64,
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// Baselines, risk, containment, rate limits and impact caps.
    #[serde(default)]
    pub monitor: warden_monitor::MonitorConfig,
    /// Requests that fail authentication: per-source throttling (429) and
    /// one aggregated audit record per source and reason per window.
    #[serde(default)]
    pub unauthenticated: warden_monitor::StrangersConfig,
    /// Human approval of held calls.
    #[serde(default)]
    pub approvals: warden_gateway::ApprovalsConfig,
    /// When an agent's record recommends a higher autonomy level.
    #[serde(default)]
    pub promotion: warden_monitor::PromotionPolicy,
    /// Optional OpenTelemetry trace export.
    #[serde(default)]
    pub telemetry: warden_gateway::telemetry::TelemetryConfig,
    /// Signed Merkle checkpoints of the audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The egress proxy for agents' direct HTTP(S) calls.
    #[serde(default)]
    pub egress: warden_gateway::egress::EgressConfig,
    /// Which `Host` and `Origin` headers `/mcp` answers (DNS rebinding).
    #[serde(default)]
    pub http: warden_gateway::origin::HttpConfig,
    /// HTTPS on the main listener, with client certificates (mutual TLS).
    pub tls: Option<crate::tls::TlsConfig>,
    /// Issuers of workload credentials (Kubernetes service-account tokens,
    /// SPIFFE JWT-SVIDs) that agents may present for tokens (`jwt-bearer`).
    #[serde(default, rename = "workload_issuer")]
    pub workload_issuers: Vec<WorkloadIssuerConfig>,
    /// MCP hosts (desktop apps, IDEs) acting for a human who signs in at
    /// the enterprise's OpenID Connect provider: the authorization code
    /// grant with PKCE. Off without this table.
    pub interactive: Option<InteractiveConfig>,
}

/// `[interactive]`: which IdP humans sign in at, and which hosts may act
/// for whom (an operator's decision, as registering an agent is).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractiveConfig {
    /// The OpenID Connect issuer (its discovery document is read from
    /// `ISSUER/.well-known/openid-configuration`). HTTPS, or HTTP on a
    /// loopback address only.
    pub idp_issuer: String,
    /// Warden's client id at the IdP, registered there with the redirect
    /// URI `PUBLIC_URL/oauth/callback`.
    pub idp_client_id: String,
    /// Environment variable holding Warden's client secret at the IdP.
    pub idp_client_secret_env: String,
    /// The ID token claim that names the human: `sub` (default) or, for
    /// IdPs where owners are written as addresses, `email` (then only a
    /// verified address counts). Never a name users can edit
    /// (`preferred_username` is not unique, OIDC Core §5.7).
    #[serde(default = "d_human_claim")]
    pub human_claim: String,
    /// How long a sign-in lasts without the human signing in again: the
    /// host refreshes its access tokens with one-time refresh tokens
    /// (rotated; a reused one revokes the whole sign-in) until then. 0: no
    /// refresh tokens. At most 30 days.
    #[serde(default = "d_refresh_secs")]
    pub refresh_token_secs: i64,
    /// CA certificates (PEM) trusted, besides the system's, when fetching
    /// hosts' client metadata documents (an internal CA).
    pub metadata_ca_file: Option<PathBuf>,
    /// Host names whose metadata documents may be fetched even though they
    /// resolve to private or loopback addresses (refused otherwise: SSRF).
    #[serde(default)]
    pub private_metadata_hosts: Vec<String>,
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostConfig>,
    /// Operators sign in to the dashboard and admin API at the same IdP,
    /// with the role a claim gives them.
    pub operators: Option<OperatorsConfig>,
}

/// `[interactive.operators]`: which values of which claim make an operator
/// a viewer, an approver or an admin (the highest one listed wins).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorsConfig {
    /// The claim with the operator's groups or roles (a string or an array of strings).
    #[serde(default = "d_roles_claim")]
    pub roles_claim: String,
    /// An extra scope to ask the IdP for so that it releases the claim (e.g. `groups`).
    pub scope: Option<String>,
    #[serde(default)]
    pub admin: Vec<String>,
    #[serde(default)]
    pub approver: Vec<String>,
    #[serde(default)]
    pub viewer: Vec<String>,
    /// How long a dashboard sign-in lasts (it cannot be revoked before:
    /// keep it short). At most 12 h.
    #[serde(default = "d_session_secs")]
    pub session_secs: i64,
}

impl OperatorsConfig {
    /// The highest role `claims` give, if any.
    pub fn role(&self, claims: &serde_json::Value) -> Option<warden_core::Role> {
        let values: Vec<&str> = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::String(v)) => vec![v.as_str()],
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(serde_json::Value::as_str).collect(),
            _ => vec![],
        };
        let has = |groups: &[String]| groups.iter().any(|g| values.contains(&g.as_str()));
        use warden_core::Role;
        [(Role::Admin, &self.admin), (Role::Approver, &self.approver), (Role::Viewer, &self.viewer)].into_iter().find(|(_, g)| has(g)).map(|(r, _)| r)
    }
}

/// `[[interactive.host]]`: one MCP host, known by its Client ID Metadata
/// Document URL, as a registered agent, and who may use it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The HTTPS URL of the host's client metadata document (its `client_id`).
    pub client_id: String,
    /// The registered agent the host acts as (its tools, limits, policies).
    pub agent: String,
    /// The humans (values of `human_claim`) who may sign in through it;
    /// only the agent's registered owner when empty.
    #[serde(default)]
    pub humans: Vec<String>,
}

/// `[[workload_issuer]]`: whose workload tokens are trusted, and which
/// workload is which agent (an operator's decision, as registering is).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIssuerConfig {
    /// The tokens' `iss` (a cluster's service-account issuer, a SPIFFE trust domain's JWT issuer).
    pub issuer: String,
    /// The audience the tokens name for Warden (e.g. the projected token's `audience`).
    pub audience: String,
    /// The issuer's JWKS (JSON), e.g. a cluster's `/openid/v1/jwks`.
    pub jwks_file: PathBuf,
    /// Workload subject (`system:serviceaccount:NS:SA`, a SPIFFE id) to agent name.
    pub agents: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Sign a checkpoint (C2SP signed note) this often when the log grew;
    /// 0 turns the periodic checkpoints off (`warden audit checkpoint`
    /// still makes one on demand).
    #[serde(default = "d_checkpoint")]
    pub checkpoint_secs: u64,
    /// A directory outside the database (another mount, an append-only or
    /// object-locked store) where every signed checkpoint is also written,
    /// once, as its own file; `warden audit verify` then requires the log
    /// to reach the newest one there. Without it, a database writer can
    /// cut the log back to the newest checkpoint stored in the database.
    pub publish_checkpoints_to: Option<PathBuf>,
}

/// Whether `u` names this machine (a loopback address or `localhost`).
pub(crate) fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl InteractiveConfig {
    fn validate(&self) -> Result<(), String> {
        let idp = url::Url::parse(&self.idp_issuer).map_err(|e| format!("interactive.idp_issuer {}: {e}", self.idp_issuer))?;
        if idp.scheme() != "https" && !(idp.scheme() == "http" && is_loopback(&idp)) {
            return Err(format!("interactive.idp_issuer {} must be an https URL (http only on a loopback address)", self.idp_issuer));
        }
        if !(0..=30 * 86400).contains(&self.refresh_token_secs) {
            return Err("interactive.refresh_token_secs must be between 0 and 2592000 (30 days)".into());
        }
        if !matches!(self.human_claim.as_str(), "sub" | "email") {
            return Err(format!("interactive.human_claim {} must be sub or email (a stable, unique claim)", self.human_claim));
        }
        if let Some(o) = &self.operators {
            if !(60..=12 * 3600).contains(&o.session_secs) {
                return Err("interactive.operators.session_secs must be between 60 and 43200 (12 h)".into());
            }
            if o.admin.is_empty() && o.approver.is_empty() && o.viewer.is_empty() {
                return Err("[interactive.operators] names no groups for admin, approver or viewer: nobody could sign in".into());
            }
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if self.hosts[..i].iter().any(|o| o.client_id == h.client_id) {
                return Err(format!("[[interactive.host]] {} is configured twice: give each host one entry", h.client_id));
            }
            let u = url::Url::parse(&h.client_id).map_err(|e| format!("[[interactive.host]] client_id {}: {e}", h.client_id))?;
            if u.scheme() != "https" || u.path() == "/" || u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
                return Err(format!(
                    "[[interactive.host]] client_id {} must be the https URL of a client metadata document, with a path, without fragment or credentials",
                    h.client_id
                ));
            }
        }
        Ok(())
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { checkpoint_secs: d_checkpoint(), publish_checkpoints_to: None }
    }
}

fn d_roles_claim() -> String {
    "groups".into()
}

fn d_session_secs() -> i64 {
    3600
}

fn d_refresh_secs() -> i64 {
    8 * 3600
}

fn d_human_claim() -> String {
    "sub".into()
}

fn d_checkpoint() -> u64 {
    60
}

/// Environment variable that names the shared database (may hold a password).
pub const DATABASE_URL_ENV: &str = "WARDEN_DATABASE_URL";

fn d_data_dir() -> PathBuf {
    "warden-data".into()
}
fn d_listen() -> String {
    "127.0.0.1:8700".into()
}
fn d_td() -> String {
    "warden.local".into()
}
fn d_policy_dir() -> PathBuf {
    "policies".into()
}
fn d_ttl() -> i64 {
    300
}
fn d_body() -> usize {
    1024 * 1024
}
fn d_skew() -> i64 {
    60
}
fn d_refresh() -> u64 {
    100
}
fn d_pin() -> u64 {
    30
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.data_dir = base.join(&cfg.data_dir);
        cfg.policy_dir = base.join(&cfg.policy_dir);
        if let Some(p) = &mut cfg.audit.publish_checkpoints_to {
            *p = base.join(&*p);
        }
        for w in &mut cfg.workload_issuers {
            w.jwks_file = base.join(&w.jwks_file);
        }
        if let Some(p) = cfg.interactive.as_mut().and_then(|i| i.metadata_ca_file.as_mut()) {
            *p = base.join(&*p);
        }
        if let Some(t) = &mut cfg.tls {
            for p in t.cert_file.iter_mut().chain(t.key_file.iter_mut()).chain(t.trust_bundles.values_mut()) {
                *p = base.join(&*p);
            }
        }
        for u in &mut cfg.upstreams {
            if let warden_gateway::Transport::Http { headers_from_file, .. } = &mut u.transport {
                headers_from_file.values_mut().for_each(|p| *p = base.join(&*p));
            }
        }
        cfg.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(5..=3600).contains(&self.token_ttl_secs) {
            return Err("token_ttl_secs must be between 5 and 3600".into());
        }
        for (i, w) in self.workload_issuers.iter().enumerate() {
            if self.workload_issuers[..i].iter().any(|o| o.issuer == w.issuer) {
                return Err(format!("[[workload_issuer]] {} is configured twice: give each issuer one entry", w.issuer));
            }
        }
        if let Some(i) = &self.interactive {
            i.validate()?;
        }
        if !(5..=300).contains(&self.dpop_skew_secs) {
            return Err("dpop_skew_secs must be between 5 and 300".into());
        }
        if self.trust_domain.is_empty() || self.trust_domain.contains(|c: char| c.is_whitespace() || c == '+' || c == '/') {
            return Err("trust_domain must be a name without spaces, '/' or '+'".into());
        }
        if self.stale_after_ms.is_some_and(|s| s <= self.refresh_ms) {
            return Err("stale_after_ms must be larger than refresh_ms".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        self.monitor.validate().map_err(|e| e.to_string())?;
        self.egress.validate()?;
        let u = &self.unauthenticated;
        let sane = u.burst >= 1.0 && u.burst.is_finite() && u.per_sec >= 0.0 && u.per_sec.is_finite() && (1..=3600).contains(&u.audit_window_secs);
        if !sane {
            return Err("unauthenticated: burst must be at least 1, per_sec at least 0, audit_window_secs between 1 and 3600".into());
        }
        if self.approvals.expire_secs == 0 {
            return Err("approvals.expire_secs must be at least 1".into());
        }
        for (what, u) in [
            ("approvals.webhook_url", &self.approvals.webhook_url),
            ("telemetry.otlp_traces_url", &self.telemetry.otlp_traces_url),
            ("telemetry.otlp_logs_url", &self.telemetry.otlp_logs_url),
        ] {
            if let Some(u) = u
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(format!("{what} must be an http(s) URL"));
            }
        }

        if let Some(u) = &self.database_url {
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err("database_url must be a postgres:// URL (leave it out for the embedded SQLite)".into());
            }
            let authority = u.split_once("://").map(|(_, r)| r.split(['/', '?']).next().unwrap_or("")).unwrap_or("");
            if authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':')) || u.contains("password=") {
                return Err(format!(
                    "database_url must not contain a password; set it in PGPASSWORD or a pgpass file, or give the whole URL in {DATABASE_URL_ENV}"
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for u in &self.upstreams {
            warden_core::validate_name(&u.name).map_err(|e| format!("upstream name: {e}"))?;
            if !names.insert(&u.name) {
                return Err(format!("upstream {:?} is configured twice", u.name));
            }
        }
        // Each alias names one tool: unique across upstreams, a usable name.
        let mut aliases = std::collections::BTreeMap::new();
        for u in &self.upstreams {
            for (alias, tool) in &u.aliases {
                warden_core::ToolRef::new(&u.name, alias).map_err(|_| format!("upstream {:?}: alias {alias:?} is not a usable tool name", u.name))?;
                warden_core::ToolRef::new(&u.name, tool)
                    .map_err(|_| format!("upstream {:?}: alias {alias:?} names {tool:?}, which is not a tool name", u.name))?;
                if let Some(other) = aliases.insert(alias.as_str(), u.name.as_str()) {
                    return Err(format!("alias {alias:?} is given by upstreams {other:?} and {:?}: an alias must name one tool", u.name));
                }
            }
        }
        if let Some(u) = &self.public_url
            && (!(u.starts_with("http://") || u.starts_with("https://")) || u.ends_with('/'))
        {
            return Err("public_url must be an http(s) URL without a trailing slash".into());
        }
        Ok(())
    }

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// The shared database, if any: `WARDEN_DATABASE_URL`, else `database_url`.
    pub fn database_url(&self) -> Option<String> {
        std::env::var(DATABASE_URL_ENV).ok().filter(|u| !u.is_empty()).or_else(|| self.database_url.clone())
    }

    /// The origin line of audit checkpoints (the log's name).
    pub fn audit_origin(&self) -> String {
        format!("{}/audit", self.trust_domain)
    }

    /// See `stale_after_ms`.
    pub fn stale_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stale_after_ms.unwrap_or((3 * self.refresh_ms).max(10_000)))
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("warden.db")
    }

    pub fn key_path(&self) -> PathBuf {
        self.data_dir.join("gateway-key.pem")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactive_sign_in_needs_an_https_idp_and_https_metadata_urls_each_configured_once() {
        let cfg = |idp: &str, hosts: &str| {
            let text = format!("[interactive]\nidp_issuer = \"{idp}\"\nidp_client_id = \"warden\"\nidp_client_secret_env = \"S\"\n{hosts}");
            toml::from_str::<ServerConfig>(&text).unwrap().validate()
        };
        let host = |url: &str| format!("[[interactive.host]]\nclient_id = \"{url}\"\nagent = \"desk\"\n");
        assert_eq!(cfg("https://idp.example", &host("https://desk.example/client.json")), Ok(()));
        assert_eq!(cfg("http://127.0.0.1:8080", ""), Ok(()), "a local IdP may use http");
        assert!(cfg("http://idp.example", "").unwrap_err().contains("https"));
        assert!(cfg("https://idp.example", &host("http://desk.example/client.json")).unwrap_err().contains("https URL of a client metadata document"));
        assert!(cfg("https://idp.example", &host("https://desk.example/")).unwrap_err().contains("with a path"));
        let twice = format!("{}{}", host("https://desk.example/c.json"), host("https://desk.example/c.json"));
        assert!(cfg("https://idp.example", &twice).unwrap_err().contains("configured twice"));
    }

    #[test]
    fn an_operators_role_is_the_highest_its_groups_give() {
        let ops: OperatorsConfig = toml::from_str("admin = [\"root\"]\napprover = [\"oncall\"]\nviewer = [\"staff\"]").unwrap();
        let role = |c: serde_json::Value| ops.role(&c);
        assert_eq!(role(serde_json::json!({ "groups": ["staff", "oncall"] })), Some(warden_core::Role::Approver));
        assert_eq!(role(serde_json::json!({ "groups": "root" })), Some(warden_core::Role::Admin));
        assert_eq!(role(serde_json::json!({ "groups": ["Root", "other"] })), None, "groups compare exactly");
        assert_eq!(role(serde_json::json!({ "roles": ["root"] })), None, "only the configured claim counts");
    }

    #[test]
    fn an_issuer_configured_twice_is_refused() {
        let one = "[[workload_issuer]]\nissuer = \"https://k8s\"\naudience = \"warden\"\njwks_file = \"j.json\"\n[workload_issuer.agents]\n";
        let cfg: ServerConfig = toml::from_str(one).unwrap();
        assert_eq!(cfg.validate(), Ok(()));
        let cfg: ServerConfig = toml::from_str(&format!("{one}{one}")).unwrap();
        assert!(cfg.validate().unwrap_err().contains("https://k8s is configured twice"));
    }

    #[test]
    fn an_alias_names_one_tool() {
        let up = |name: &str, alias: &str| {
            format!("[[upstream]]\nname = {name:?}\ntransport = \"stdio\"\ncommand = \"x\"\naliases = {{ {alias} = \"customer_lookup\" }}\n")
        };
        let cfg: ServerConfig = toml::from_str(&up("crm", "lookup")).unwrap();
        assert_eq!(cfg.validate(), Ok(()));
        let cfg: ServerConfig = toml::from_str(&format!("{}{}", up("crm", "lookup"), up("crm2", "lookup"))).unwrap();
        assert!(cfg.validate().unwrap_err().contains("alias \"lookup\" is given by upstreams \"crm\" and \"crm2\""));
        let cfg: ServerConfig = toml::from_str(&up("crm", "\"has space\"")).unwrap();
        assert!(cfg.validate().unwrap_err().contains("is not a usable tool name"));
    }
}

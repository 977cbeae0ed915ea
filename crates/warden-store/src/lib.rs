//! Persistence for the registry (agents, tools and their pinned definitions),
//! revocations, kill switches, approvals, operators, the audit log and the
//! one-time ids (DPoP proofs, client assertions) already used.
//!
//! One implementation over sqlx's `Any` driver serves both backends: SQLite
//! in a data directory (the embedded default) and PostgreSQL (several
//! replicas sharing one database). Queries are written once in the dialect
//! both accept (`$N` placeholders, `ON CONFLICT`, `RETURNING`, `IS DISTINCT
//! FROM`, integers for flags), and so is the schema (PostgreSQL gets it with
//! 64-bit integer and identity types); only the write lock and change
//! notification differ per backend.
//!
//! Every registry write bumps a change counter that gateways poll to refresh
//! their in-memory snapshot; on PostgreSQL the bump also sends a
//! `NOTIFY warden_changes` so every replica refreshes at once.

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Row, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use warden_audit::merkle::Frontier;
use warden_audit::{AuditError, AuditRecord, Chain, ChainHead, Checkpoint, VerifyReport};
use warden_core::{Agent, AgentId, AgentStatus, Approval, ApprovalStatus, AuditEvent, Autonomy, Operator, Role, Tool, ToolRef, ToolStatus};
use warden_identity::{Keypair, RevocationSet};
use warden_monitor::{Kill, KillScope};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error while {context}: {source}")]
    Db { context: &'static str, source: sqlx::Error },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("stored data is corrupt ({0}); restore the data directory from a backup")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, StoreError>;

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Db { context, source }
}

/// The schema, one entry per version, in SQLite's dialect; PostgreSQL runs
/// the same statements through [`postgres_ddl`].
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    tools TEXT NOT NULL,
    autonomy INTEGER NOT NULL CHECK (autonomy BETWEEN 0 AND 3),
    status TEXT NOT NULL CHECK (status IN ('active','suspended','revoked')),
    public_key TEXT NOT NULL UNIQUE,
    parent TEXT REFERENCES agents(id),
    created_at INTEGER NOT NULL
);
CREATE TABLE tools (
    tool TEXT PRIMARY KEY,
    sensitivity TEXT NOT NULL,
    action_class TEXT NOT NULL,
    exfil_capable INTEGER NOT NULL,
    pinned_hash TEXT,
    observed_hash TEXT,
    observed_definition TEXT,
    status TEXT NOT NULL
);
CREATE TABLE revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('token','task','agent')),
    value TEXT NOT NULL,
    cutoff INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE audit (seq INTEGER PRIMARY KEY, record TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('change_seq', '0');
"#,
    // Inspection findings on the observed tool definition (JSON array; NULL when clean).
    r#"ALTER TABLE tools ADD COLUMN observed_findings TEXT;"#,
    // Monitoring: untrusted-content tools, kill switches, learned baselines.
    r#"
ALTER TABLE tools ADD COLUMN untrusted_content INTEGER NOT NULL DEFAULT 0;
CREATE TABLE kills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL CHECK (scope IN ('global','agent','owner','server','tool')),
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    by TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    lifted_at_ms INTEGER,
    lifted_by TEXT
);
CREATE UNIQUE INDEX kills_engaged ON kills (scope, target) WHERE lifted_at_ms IS NULL;
CREATE TABLE monitor_state (agent TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL);
"#,
    // Calls held for human approval; `record` is the whole approval as JSON.
    r#"
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    args_sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending','approved','denied','expired','used')),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX approvals_lookup ON approvals (agent, tool, args_sha256, status);
"#,
    // Operators of the admin API and dashboard; only a digest of each token is kept.
    r#"
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('viewer','approver','admin')),
    token_sha256 TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);
"#,
    CHECKPOINTS_TABLE,
    POLICY_TABLE,
    // Held calls' arguments as approvers see them (personal data in clear),
    // apart from `record` so only approvers are shown them; NULL once final.
    r#"ALTER TABLE approvals ADD COLUMN approver_args TEXT;"#,
    ONE_TIME_IDS_TABLE,
];

/// One-time ids (DPoP proof and client assertion `jti`s) already used, until
/// `expires_at` (Unix seconds): the primary key makes a second use on any
/// replica, or after a restart, a conflict.
const ONE_TIME_IDS_TABLE: &str = r#"
CREATE TABLE one_time_ids (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
"#;

/// Policy bundles pushed for every gateway (`sources`: schema and policy
/// files as JSON); the highest version is in force.
const POLICY_TABLE: &str = r#"
CREATE TABLE policy_bundles (
    version BIGINT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    sources TEXT NOT NULL,
    pushed_by TEXT NOT NULL,
    pushed_ms BIGINT NOT NULL
);
"#;

/// Signed Merkle checkpoints of the audit log:
/// the note, the chain head it covers and the tree frontier to extend.
const CHECKPOINTS_TABLE: &str = r#"
CREATE TABLE checkpoints (
    size BIGINT PRIMARY KEY,
    head_hash TEXT NOT NULL,
    frontier TEXT NOT NULL,
    note TEXT NOT NULL,
    ts_ms BIGINT NOT NULL
);
"#;

/// A migration in PostgreSQL's dialect: 64-bit integers throughout (the
/// queries bind `i64`) and identity columns for SQLite's AUTOINCREMENT.
fn postgres_ddl(sqlite: &str) -> String {
    sqlite.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY").replace("INTEGER", "BIGINT")
}

/// The PostgreSQL channel a registry change is announced on.
pub const CHANGE_CHANNEL: &str = "warden_changes";

/// The longest a request waits for the database: for a pooled connection,
/// and for one statement (PostgreSQL `statement_timeout`, SQLite
/// `busy_timeout`). A database that does not answer in time fails the
/// request closed rather than holding it.
pub const DB_WAIT: Duration = Duration::from_secs(5);

/// Settings of every SQLite connection (`busy_timeout` is [`DB_WAIT`]).
const SQLITE_SESSION: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// Settings of every PostgreSQL connection (`statement_timeout` is [`DB_WAIT`]).
const POSTGRES_SESSION: &str = "SET statement_timeout = 5000";

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Kind of revocation entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    /// One token id (and every token derived from it).
    Token,
    /// Every token for a task.
    Task,
    /// Every token an agent (or its sub-agents) got up to the cut-off.
    Agent,
}

impl RevocationKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Task => "task",
            Self::Agent => "agent",
        }
    }
}

/// The registry store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The connection URL (PostgreSQL), for change listeners.
    url: Option<String>,
}

impl Store {
    /// Open (creating if needed) the SQLite database at `path` and migrate it.
    pub async fn open(path: &Path) -> Result<Self> {
        let url = SqliteConnectOptions::new().filename(path).create_if_missing(true).to_url_lossy();
        Self::connect_with(AnyConnectOptions::from_url(&url).map_err(db("opening the database"))?, Backend::Sqlite, None).await
    }

    /// Connect to the database at `url`: `postgres://…` (or `postgresql://…`)
    /// for a shared PostgreSQL, `sqlite://PATH` for a file. Migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Config("database_url must start with postgres://, postgresql:// or sqlite:".into()));
        };
        let opts = AnyConnectOptions::from_str(url).map_err(|e| StoreError::Config(format!("database_url is not valid: {e}")))?;
        Self::connect_with(opts, backend, (backend == Backend::Postgres).then(|| url.to_string())).await
    }

    async fn connect_with(opts: AnyConnectOptions, backend: Backend, url: Option<String>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = match backend {
            Backend::Sqlite => AnyPoolOptions::new().max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers never block the writer; NORMAL sync is durable
                    // in WAL mode except for the last commits on power loss.
                    conn.execute(SQLITE_SESSION).await.map(|_| ())
                })
            }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(16).after_connect(|conn, _| {
                // The server ends a statement (a lock wait included) that
                // runs longer than the bound; a server that stops answering
                // altogether is bounded by the callers' own deadlines.
                Box::pin(async move { conn.execute(POSTGRES_SESSION).await.map(|_| ()) })
            }),
        }
        .acquire_timeout(DB_WAIT)
        .connect_with(opts)
        .await
        .map_err(db("connecting to the database"))?;
        let store = Self { pool, backend, url };
        if backend == Backend::Postgres {
            // The audit appender writes string literals; they are only
            // quoted correctly with standard-conforming strings.
            let scs: String =
                sqlx::query_scalar("SELECT current_setting('standard_conforming_strings')").fetch_one(&store.pool).await.map_err(db("checking the server"))?;
            if scs != "on" {
                return Err(StoreError::Config("PostgreSQL must run with standard_conforming_strings = on (its default)".into()));
            }
        }
        store.migrate().await?;
        Ok(store)
    }

    /// The backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Write transactions serialize on one lock taken up front. SQLite:
    /// `BEGIN IMMEDIATE` (a deferred transaction that later upgrades fails at
    /// once with "database is locked" instead of waiting). PostgreSQL: a
    /// transaction-scoped advisory lock, so read-modify-write sequences
    /// (approvals, kill switches) stay atomic across replicas.
    async fn write_tx(&self, context: &'static str) -> Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db(context)),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await.map_err(db(context))?;
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(7031)) AS l")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db(context))?;
                Ok(tx)
            }
        }
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.write_tx("starting migration").await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)").execute(&mut *tx).await.map_err(db("migrating"))?;
        let version: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_version").fetch_optional(&mut *tx).await.map_err(db("migrating"))?;
        let version = version.unwrap_or(0) as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!("database schema version {version} is newer than this warden ({}); upgrade warden", MIGRATIONS.len())));
        }
        for m in &MIGRATIONS[version..] {
            let ddl = match self.backend {
                Backend::Sqlite => m.to_string(),
                Backend::Postgres => postgres_ddl(m),
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&mut *tx).await.map_err(db("migrating"))?;
        }
        sqlx::query("DELETE FROM schema_version").execute(&mut *tx).await.map_err(db("migrating"))?;
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)").bind(MIGRATIONS.len() as i64).execute(&mut *tx).await.map_err(db("migrating"))?;
        tx.commit().await.map_err(db("migrating"))
    }

    /// Count a registry change; on PostgreSQL also announce it (delivered to
    /// listeners when the transaction commits).
    async fn bump(&self, tx: &mut Transaction<'_, Any>) -> Result<()> {
        sqlx::query("UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'change_seq'")
            .execute(&mut **tx)
            .await
            .map_err(db("recording a change"))?;
        if self.backend == Backend::Postgres {
            sqlx::query("NOTIFY warden_changes").execute(&mut **tx).await.map_err(db("announcing a change"))?;
        }
        Ok(())
    }

    /// A listener for registry changes made by any replica (PostgreSQL);
    /// `None` on SQLite, where polling the change counter is the only way.
    pub async fn change_listener(&self) -> Result<Option<ChangeListener>> {
        let Some(url) = &self.url else { return Ok(None) };
        let mut l = sqlx::postgres::PgListener::connect(url).await.map_err(db("listening for changes"))?;
        l.listen(CHANGE_CHANNEL).await.map_err(db("listening for changes"))?;
        Ok(Some(ChangeListener(l)))
    }

    /// Counter bumped by every registry or revocation write.
    pub async fn change_seq(&self) -> Result<i64> {
        let v: String =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'change_seq'").fetch_one(&self.pool).await.map_err(db("reading the change counter"))?;
        v.parse().map_err(|_| StoreError::Corrupt("change counter".into()))
    }

    // ---- agents ----

    pub async fn insert_agent(&self, a: &Agent) -> Result<()> {
        let mut tx = self.write_tx("registering an agent").await?;
        if let Some(p) = &a.parent {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM agents WHERE id = $1")
                .bind(p.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("registering an agent"))?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("parent agent {p}")));
            }
        }
        let r =
            sqlx::query("INSERT INTO agents (id, owner, purpose, tools, autonomy, status, public_key, parent, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)")
                .bind(a.id.as_str())
                .bind(&a.owner)
                .bind(&a.purpose)
                .bind(serde_json::to_string(&a.tools).expect("tool refs serialize"))
                .bind(i64::from(a.autonomy))
                .bind(a.status.as_str())
                .bind(&a.public_key)
                .bind(a.parent.as_ref().map(AgentId::as_str))
                .bind(a.created_at)
                .execute(&mut *tx)
                .await;
        match r {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("agent {} already exists or its public key is already registered to another agent", a.id)));
            }
            other => other.map_err(db("registering an agent"))?,
        };
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("registering an agent"))
    }

    pub async fn get_agent(&self, id: &AgentId) -> Result<Agent> {
        let row = sqlx::query("SELECT * FROM agents WHERE id = $1").bind(id.as_str()).fetch_optional(&self.pool).await.map_err(db("reading an agent"))?;
        row.map(|r| agent_from_row(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("agent {id}")))
    }

    pub async fn list_agents(&self) -> Result<Vec<Agent>> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY id").fetch_all(&self.pool).await.map_err(db("listing agents"))?;
        rows.iter().map(agent_from_row).collect()
    }

    /// Change an agent's status. Suspending or revoking also revokes every
    /// token it (and its sub-agents) holds; a revoked agent cannot come back.
    /// Resuming lifts the agent's kill switches.
    pub async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, reason: &str, now: i64) -> Result<()> {
        let mut tx = self.write_tx("changing agent status").await?;
        Self::agent_status_tx(&mut tx, id, status, reason, now).await?;
        if status == AgentStatus::Active {
            sqlx::query("UPDATE kills SET lifted_at_ms = $1, lifted_by = $2 WHERE scope = 'agent' AND target = $3 AND lifted_at_ms IS NULL")
                .bind(now.saturating_mul(1000))
                .bind("operator (agent resume)")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("changing agent status"))?;
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("changing agent status"))
    }

    async fn agent_status_tx(tx: &mut Transaction<'_, Any>, id: &AgentId, status: AgentStatus, reason: &str, now: i64) -> Result<()> {
        let cur: Option<String> = sqlx::query_scalar("SELECT status FROM agents WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("changing agent status"))?;
        let cur = cur.ok_or_else(|| StoreError::NotFound(format!("agent {id}")))?;
        if cur == "revoked" && status != AgentStatus::Revoked {
            return Err(StoreError::Conflict(format!("agent {id} is revoked for good; register a new agent instead")));
        }
        sqlx::query("UPDATE agents SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id.as_str())
            .execute(&mut **tx)
            .await
            .map_err(db("changing agent status"))?;
        if status != AgentStatus::Active {
            Self::insert_revocation(tx, RevocationKind::Agent, id.as_str(), now, reason, now).await?;
        }
        Ok(())
    }

    /// Change an agent's autonomy level.
    pub async fn set_autonomy(&self, id: &AgentId, autonomy: Autonomy) -> Result<()> {
        let mut tx = self.write_tx("changing autonomy").await?;
        let r = sqlx::query("UPDATE agents SET autonomy = $1 WHERE id = $2")
            .bind(i64::from(autonomy))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("changing autonomy"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent {id}")));
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("changing autonomy"))
    }

    /// From the stored history of an agent: when it was last contained for
    /// a critical violation, and how many of its held calls humans approved
    /// and refused.
    pub async fn autonomy_record(&self, id: &AgentId) -> Result<(Option<i64>, u64, u64)> {
        let mut last_critical = None;
        for r in self.audit_records().await?.into_iter().flatten() {
            let e = &r.event;
            if e.kind == Some(warden_core::EventKind::Containment)
                && e.agent.as_deref() == Some(id.as_str())
                && e.reason.as_deref().is_some_and(|x| x.contains("critical policy violation"))
            {
                last_critical = Some(r.ts_ms);
            }
        }
        let (mut granted, mut refused) = (0, 0);
        for a in self.list_approvals(false, u32::MAX).await?.into_iter().filter(|a| a.agent == id.as_str()) {
            match a.status {
                ApprovalStatus::Approved | ApprovalStatus::Used => granted += 1,
                ApprovalStatus::Denied => refused += 1,
                ApprovalStatus::Pending | ApprovalStatus::Expired => {}
            }
        }
        Ok((last_critical, granted, refused))
    }

    /// Replace an agent's key; tokens bound to the old key are revoked.
    pub async fn rotate_key(&self, id: &AgentId, public_key: &str, now: i64) -> Result<()> {
        let mut tx = self.write_tx("rotating a key").await?;
        let r = sqlx::query("UPDATE agents SET public_key = $1 WHERE id = $2").bind(public_key).bind(id.as_str()).execute(&mut *tx).await;
        let r = match r {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("that public key is already registered".into())),
            other => other.map_err(db("rotating a key"))?,
        };
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent {id}")));
        }
        Self::insert_revocation(&mut tx, RevocationKind::Agent, id.as_str(), now, "key rotated", now).await?;
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("rotating a key"))
    }

    // ---- tools ----

    /// Register or update a tool's classification (keeps pins and observations).
    pub async fn upsert_tool(&self, t: &Tool) -> Result<()> {
        let mut tx = self.write_tx("registering a tool").await?;
        sqlx::query(
            "INSERT INTO tools (tool, sensitivity, action_class, exfil_capable, untrusted_content, pinned_hash, observed_hash, status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
             ON CONFLICT(tool) DO UPDATE SET sensitivity = excluded.sensitivity, action_class = excluded.action_class,
             exfil_capable = excluded.exfil_capable, untrusted_content = excluded.untrusted_content, status = excluded.status,
             pinned_hash = excluded.pinned_hash",
        )
        .bind(t.tool.to_string())
        .bind(t.sensitivity.as_str())
        .bind(t.action_class.as_str())
        .bind(i64::from(t.exfil_capable))
        .bind(i64::from(t.untrusted_content))
        .bind(&t.pinned_hash)
        .bind(&t.observed_hash)
        .bind(t.status.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db("registering a tool"))?;
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("registering a tool"))
    }

    pub async fn get_tool(&self, tool: &ToolRef) -> Result<Tool> {
        let row = sqlx::query("SELECT * FROM tools WHERE tool = $1").bind(tool.to_string()).fetch_optional(&self.pool).await.map_err(db("reading a tool"))?;
        row.map(|r| tool_from_row(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("tool {tool}")))
    }

    pub async fn list_tools(&self) -> Result<Vec<Tool>> {
        let rows = sqlx::query("SELECT * FROM tools ORDER BY tool").fetch_all(&self.pool).await.map_err(db("listing tools"))?;
        rows.iter().map(tool_from_row).collect()
    }

    /// The definition last observed upstream (canonical JSON), if any.
    pub async fn observed_definition(&self, tool: &ToolRef) -> Result<Option<String>> {
        self.observed(tool, "SELECT observed_definition FROM tools WHERE tool = $1").await
    }

    /// Inspection findings on the observed definition (JSON array), if any.
    pub async fn observed_findings(&self, tool: &ToolRef) -> Result<Option<String>> {
        self.observed(tool, "SELECT observed_findings FROM tools WHERE tool = $1").await
    }

    /// One nullable text column of a tool's row, by a constant query.
    async fn observed(&self, tool: &ToolRef, query: &'static str) -> Result<Option<String>> {
        let v: Option<Option<String>> =
            sqlx::query_scalar(query).bind(tool.to_string()).fetch_optional(&self.pool).await.map_err(db("reading a tool's observed definition"))?;
        Ok(v.flatten())
    }

    /// Record what the gateway saw upstream. A tool seen for the first time is
    /// added as `pending`; an approved tool whose definition moved away from its
    /// pin becomes `changed`. Returns the tool after the update.
    /// Record a definition seen upstream, with what inspection found in it
    /// (a JSON array; `None` when clean).
    pub async fn observe_tool(&self, tool: &ToolRef, hash: &str, definition: &str, findings: Option<&str>) -> Result<Tool> {
        let mut tx = self.write_tx("recording a tool definition").await?;
        let before: Option<(Option<String>, String)> = sqlx::query_as("SELECT observed_hash, status FROM tools WHERE tool = $1")
            .bind(tool.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("recording a tool definition"))?;
        sqlx::query(
            "INSERT INTO tools (tool, sensitivity, action_class, exfil_capable, untrusted_content, observed_hash, observed_definition, observed_findings, status)
             VALUES ($1, 'high', 'exec', 1, 1, $2, $3, $4, 'pending')
             ON CONFLICT(tool) DO UPDATE SET observed_hash = excluded.observed_hash, observed_definition = excluded.observed_definition,
             observed_findings = excluded.observed_findings,
             status = CASE WHEN tools.status = 'approved' AND tools.pinned_hash IS DISTINCT FROM excluded.observed_hash THEN 'changed'
                           WHEN tools.status = 'changed' AND tools.pinned_hash IS NOT DISTINCT FROM excluded.observed_hash THEN 'approved'
                           ELSE tools.status END",
        )
        .bind(tool.to_string())
        .bind(hash)
        .bind(definition)
        .bind(findings)
        .execute(&mut *tx)
        .await
        .map_err(db("recording a tool definition"))?;
        let row =
            sqlx::query("SELECT * FROM tools WHERE tool = $1").bind(tool.to_string()).fetch_one(&mut *tx).await.map_err(db("recording a tool definition"))?;
        let after = tool_from_row(&row)?;
        if before.as_ref().map(|(h, s)| (h.as_deref(), s.as_str())) != Some((after.observed_hash.as_deref(), after.status.as_str())) {
            self.bump(&mut tx).await?;
        }
        tx.commit().await.map_err(db("recording a tool definition"))?;
        Ok(after)
    }

    /// Pin the observed definition: the tool becomes callable as it is now.
    /// A definition that inspection flagged (possible tool poisoning) is
    /// pinned only when the operator accepts the findings explicitly.
    pub async fn approve_tool(&self, tool: &ToolRef, accept_findings: bool) -> Result<Tool> {
        let mut tx = self.write_tx("approving a tool").await?;
        let flagged: Option<Option<String>> = sqlx::query_scalar("SELECT observed_findings FROM tools WHERE tool = $1")
            .bind(tool.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("approving a tool"))?;
        if let Some(Some(f)) = flagged.filter(|_| !accept_findings) {
            return Err(StoreError::Conflict(format!(
                "the observed definition of {tool} was flagged by inspection (possible tool poisoning): {f}; review it with `warden tool show {tool}` and approve with --accept-findings only if it is safe"
            )));
        }
        let r = sqlx::query("UPDATE tools SET pinned_hash = observed_hash, status = 'approved' WHERE tool = $1 AND observed_hash IS NOT NULL")
            .bind(tool.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db("approving a tool"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tool {tool} with an observed definition (start `warden serve` so the gateway can see it upstream)")));
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("approving a tool"))?;
        self.get_tool(tool).await
    }

    pub async fn set_tool_status(&self, tool: &ToolRef, status: ToolStatus) -> Result<()> {
        let mut tx = self.write_tx("changing a tool").await?;
        let r = sqlx::query("UPDATE tools SET status = $1 WHERE tool = $2")
            .bind(status.as_str())
            .bind(tool.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db("changing a tool"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tool {tool}")));
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("changing a tool"))
    }

    // ---- revocations ----

    async fn insert_revocation(tx: &mut Transaction<'_, Any>, kind: RevocationKind, value: &str, cutoff: i64, reason: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO revocations (kind, value, cutoff, reason, at) VALUES ($1,$2,$3,$4,$5)")
            .bind(kind.as_str())
            .bind(value)
            .bind(cutoff)
            .bind(reason)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db("recording a revocation"))?;
        Ok(())
    }

    pub async fn revoke(&self, kind: RevocationKind, value: &str, reason: &str, now: i64) -> Result<()> {
        let mut tx = self.write_tx("revoking").await?;
        Self::insert_revocation(&mut tx, kind, value, now, reason, now).await?;
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("revoking"))
    }

    pub async fn revocation_set(&self) -> Result<RevocationSet> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT kind, value, cutoff FROM revocations").fetch_all(&self.pool).await.map_err(db("reading revocations"))?;
        let mut set = RevocationSet::default();
        for (kind, value, cutoff) in rows {
            match kind.as_str() {
                "token" => {
                    set.token_ids.insert(value);
                }
                "task" => {
                    set.tasks.insert(value);
                }
                _ => {
                    let e = set.agents_before.entry(value).or_insert(cutoff);
                    *e = (*e).max(cutoff);
                }
            }
        }
        Ok(set)
    }

    // ---- kill switches and monitor state ----

    /// Engage a kill switch; returns it with its id and the change counter
    /// after the write. An agent kill also suspends the agent and revokes
    /// every token it and its sub-agents hold. One switch per scope and
    /// target can be engaged at a time.
    pub async fn engage_kill(&self, k: &Kill) -> Result<(Kill, i64)> {
        let mut tx = self.write_tx("engaging a kill switch").await?;
        if k.scope == KillScope::Agent {
            let id = AgentId::from_str(&k.target).map_err(|e| StoreError::NotFound(e.to_string()))?;
            Self::agent_status_tx(&mut tx, &id, AgentStatus::Suspended, &k.reason, k.at_ms.div_euclid(1000)).await?;
        }
        let r = sqlx::query_scalar("INSERT INTO kills (scope, target, reason, by, at_ms) VALUES ($1,$2,$3,$4,$5) RETURNING id")
            .bind(k.scope.as_str())
            .bind(&k.target)
            .bind(&k.reason)
            .bind(&k.by)
            .bind(k.at_ms)
            .fetch_one(&mut *tx)
            .await;
        let id: i64 = match r {
            Ok(id) => id,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("a kill switch for {} {} is already engaged", k.scope, k.target)));
            }
            Err(e) => return Err(StoreError::Db { context: "engaging a kill switch", source: e }),
        };
        self.bump(&mut tx).await?;
        let seq: String =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'change_seq'").fetch_one(&mut *tx).await.map_err(db("engaging a kill switch"))?;
        tx.commit().await.map_err(db("engaging a kill switch"))?;
        Ok((Kill { id, ..k.clone() }, seq.parse().map_err(|_| StoreError::Corrupt("change counter".into()))?))
    }

    /// Lift an engaged kill switch. Lifting an agent kill re-activates the
    /// agent (unless it was revoked for good); its old tokens stay revoked.
    pub async fn lift_kill(&self, id: i64, by: &str, now_ms: i64) -> Result<Kill> {
        let mut tx = self.write_tx("lifting a kill switch").await?;
        let row = sqlx::query("SELECT * FROM kills WHERE id = $1 AND lifted_at_ms IS NULL")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("lifting a kill switch"))?;
        let kill = kill_from_row(&row.ok_or_else(|| StoreError::NotFound(format!("engaged kill switch #{id} (see `warden kill list`)")))?)?;
        sqlx::query("UPDATE kills SET lifted_at_ms = $1, lifted_by = $2 WHERE id = $3")
            .bind(now_ms)
            .bind(by)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("lifting a kill switch"))?;
        if kill.scope == KillScope::Agent {
            sqlx::query("UPDATE agents SET status = 'active' WHERE id = $1 AND status = 'suspended'")
                .bind(&kill.target)
                .execute(&mut *tx)
                .await
                .map_err(db("lifting a kill switch"))?;
        }
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("lifting a kill switch"))?;
        Ok(kill)
    }

    /// Kill switches, newest first: engaged only, or the history too (with
    /// when and by whom each was lifted).
    pub async fn list_kills(&self, include_lifted: bool) -> Result<Vec<(Kill, Option<(i64, String)>)>> {
        let rows = sqlx::query("SELECT * FROM kills WHERE lifted_at_ms IS NULL OR $1 ORDER BY id DESC")
            .bind(include_lifted)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing kill switches"))?;
        rows.iter()
            .map(|r| {
                let lifted =
                    col::<Option<i64>>(r, "lifted_at_ms")?.map(|at| Ok::<_, StoreError>((at, col::<Option<String>>(r, "lifted_by")?.unwrap_or_default())));
                Ok((kill_from_row(r)?, lifted.transpose()?))
            })
            .collect()
    }

    pub async fn active_kills(&self) -> Result<Vec<Kill>> {
        Ok(self.list_kills(false).await?.into_iter().map(|(k, _)| k).collect())
    }

    /// Save learned monitor state (JSON per agent) in one transaction.
    pub async fn save_monitor_states(&self, states: &[(String, String)], now_ms: i64) -> Result<()> {
        let mut tx = self.write_tx("saving monitor state").await?;
        for (agent, state) in states {
            sqlx::query(
                "INSERT INTO monitor_state (agent, state, updated_ms) VALUES ($1,$2,$3)
                 ON CONFLICT(agent) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
            )
            .bind(agent)
            .bind(state)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db("saving monitor state"))?;
        }
        tx.commit().await.map_err(db("saving monitor state"))
    }

    /// Every agent's saved monitor state (agent, JSON, saved at ms).
    pub async fn monitor_states(&self) -> Result<Vec<(String, String, i64)>> {
        sqlx::query_as("SELECT agent, state, updated_ms FROM monitor_state ORDER BY agent").fetch_all(&self.pool).await.map_err(db("reading monitor state"))
    }

    // ---- operators ----

    /// Register an operator by the SHA-256 of their API token.
    pub async fn add_operator(&self, name: &str, role: Role, token_sha256: &str, now_ms: i64) -> Result<()> {
        let mut tx = self.write_tx("adding an operator").await?;
        let r = sqlx::query("INSERT INTO operators (name, role, token_sha256, created_ms) VALUES ($1,$2,$3,$4)")
            .bind(name)
            .bind(role.as_str())
            .bind(token_sha256)
            .bind(now_ms)
            .execute(&mut *tx)
            .await;
        match r {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("operator {name} exists; remove it first to issue a new token")));
            }
            other => other.map_err(db("adding an operator"))?,
        };
        tx.commit().await.map_err(db("adding an operator"))
    }

    pub async fn remove_operator(&self, name: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM operators WHERE name = $1").bind(name).execute(&self.pool).await.map_err(db("removing an operator"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("operator {name}")));
        }
        Ok(())
    }

    /// The operator holding the token with this digest.
    pub async fn operator_by_token(&self, token_sha256: &str) -> Result<Option<Operator>> {
        let row: Option<(String, String)> = sqlx::query_as("SELECT name, role FROM operators WHERE token_sha256 = $1")
            .bind(token_sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("authenticating an operator"))?;
        row.map(|(name, r)| Ok(Operator { name, role: r.parse().map_err(corrupt("operator role"))? })).transpose()
    }

    pub async fn list_operators(&self) -> Result<Vec<(String, Role, i64)>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, role, created_ms FROM operators ORDER BY name").fetch_all(&self.pool).await.map_err(db("listing operators"))?;
        rows.into_iter().map(|(n, r, at)| Ok((n, r.parse().map_err(corrupt("operator role"))?, at))).collect()
    }

    // ---- approvals ----

    pub async fn insert_approval(&self, a: &Approval) -> Result<()> {
        let mut tx = self.write_tx("holding a call for approval").await?;
        Self::write_approval(&mut tx, a, true).await?;
        tx.commit().await.map_err(db("holding a call for approval"))
    }

    async fn write_approval(tx: &mut Transaction<'_, Any>, a: &Approval, insert: bool) -> Result<()> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("approval {}: {e}", a.id));
        let record = serde_json::to_string(a).map_err(corrupt)?;
        // The clear arguments are kept only while someone may still decide or
        // the call may still run on them.
        let open = matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::Approved);
        let args = a.args.as_ref().filter(|_| open).map(serde_json::to_string).transpose().map_err(corrupt)?;
        // An update never replaces the stored clear arguments, only drops them.
        let q = match (insert, open) {
            (true, _) => {
                "INSERT INTO approvals (status, record, id, agent, tool, args_sha256, created_ms, expires_ms, approver_args) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
            }
            (false, true) => {
                "UPDATE approvals SET status = $1, record = $2 WHERE id = $3 AND agent = $4 AND tool = $5 AND args_sha256 = $6 AND created_ms = $7 AND expires_ms = $8"
            }
            (false, false) => {
                "UPDATE approvals SET status = $1, record = $2, approver_args = NULL \
                 WHERE id = $3 AND agent = $4 AND tool = $5 AND args_sha256 = $6 AND created_ms = $7 AND expires_ms = $8"
            }
        };
        let mut query = sqlx::query(q)
            .bind(a.status.as_str())
            .bind(record)
            .bind(&a.id)
            .bind(&a.agent)
            .bind(a.tool.to_string())
            .bind(&a.args_sha256)
            .bind(a.created_ms)
            .bind(a.expires_ms);
        if insert {
            query = query.bind(args);
        }
        query.execute(&mut **tx).await.map_err(db("recording an approval"))?;
        Ok(())
    }

    /// An approval from its stored `record` and clear arguments.
    fn parse_approval(id: &str, (record, args): (String, Option<String>)) -> Result<Approval> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("approval {id}: {e}"));
        let mut a: Approval = serde_json::from_str(&record).map_err(corrupt)?;
        a.args = args.map(|t| serde_json::from_str(&t)).transpose().map_err(corrupt)?;
        Ok(a)
    }

    async fn read_approval(tx: &mut Transaction<'_, Any>, id: &str) -> Result<Approval> {
        let row: Option<(String, Option<String>)> = sqlx::query_as("SELECT record, approver_args FROM approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("reading an approval"))?;
        Self::parse_approval(id, row.ok_or_else(|| StoreError::NotFound(format!("approval {id} (see `warden approvals list`)")))?)
    }

    pub async fn get_approval(&self, id: &str) -> Result<Approval> {
        let mut tx = self.pool.begin().await.map_err(db("reading an approval"))?;
        Self::read_approval(&mut tx, id).await
    }

    /// Approvals, newest first: pending only, or all (at most `limit`).
    pub async fn list_approvals(&self, pending_only: bool, limit: u32) -> Result<Vec<Approval>> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT record, approver_args FROM approvals WHERE status = 'pending' OR NOT $1 ORDER BY created_ms DESC LIMIT $2")
                .bind(pending_only)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing approvals"))?;
        rows.into_iter().map(|r| Self::parse_approval("in the list", r)).collect()
    }

    /// One authenticated operator's decision (see `Approval::decide`); an
    /// approval found expired is marked so and the decision refused.
    pub async fn decide_approval(&self, id: &str, approver: &Operator, approve: bool, reason: &str, now_ms: i64) -> Result<Approval> {
        let mut tx = self.write_tx("deciding an approval").await?;
        let mut a = Self::read_approval(&mut tx, id).await?;
        let decided = a.decide(approver, approve, reason, now_ms);
        Self::write_approval(&mut tx, &a, false).await?;
        tx.commit().await.map_err(db("deciding an approval"))?;
        decided.map_err(|e| StoreError::Conflict(e.to_string()))?;
        Ok(a)
    }

    /// Mark a still-pending approval expired (its call timed out).
    pub async fn expire_approval(&self, id: &str) -> Result<Approval> {
        self.transition_approval(id, ApprovalStatus::Pending, ApprovalStatus::Expired, i64::MIN).await
    }

    /// Use an approved, unexpired approval for its call: once only.
    pub async fn use_approval(&self, id: &str, now_ms: i64) -> Result<Approval> {
        self.transition_approval(id, ApprovalStatus::Approved, ApprovalStatus::Used, now_ms).await
    }

    async fn transition_approval(&self, id: &str, from: ApprovalStatus, to: ApprovalStatus, now_ms: i64) -> Result<Approval> {
        let mut tx = self.write_tx("updating an approval").await?;
        let mut a = Self::read_approval(&mut tx, id).await?;
        if a.status != from || now_ms > a.expires_ms {
            return Err(StoreError::Conflict(format!("approval {id} is {}, not {from}", if now_ms > a.expires_ms { "expired" } else { a.status.as_str() })));
        }
        a.status = to;
        Self::write_approval(&mut tx, &a, false).await?;
        tx.commit().await.map_err(db("updating an approval"))?;
        Ok(a)
    }

    /// The approved, unexpired approval for exactly this call, if any.
    pub async fn approved_for(&self, agent: &str, tool: &ToolRef, args_sha256: &str, now_ms: i64) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT id FROM approvals WHERE agent = $1 AND tool = $2 AND args_sha256 = $3 AND status = 'approved' AND expires_ms >= $4 ORDER BY created_ms LIMIT 1",
        )
        .bind(agent)
        .bind(tool.to_string())
        .bind(args_sha256)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("looking up approvals"))
    }

    // ---- audit ----

    /// The whole stored log in order; unreadable rows come back as parse
    /// errors in their place (verification reports them).
    pub async fn audit_records(&self) -> Result<Vec<std::result::Result<AuditRecord, AuditError>>> {
        Ok(self.audit_lines().await?.iter().enumerate().map(|(i, l)| warden_audit::parse_line(i, l)).collect())
    }

    /// Every record's stored JSON text (its export line), in order.
    async fn audit_lines(&self) -> Result<Vec<String>> {
        const PAGE: u32 = 10_000;
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.read_audit_texts(after, PAGE).await?;
            let n = page.len();
            if let Some((seq, _)) = page.last() {
                after = *seq as u64;
            }
            out.extend(page.into_iter().map(|(_, text)| text));
            if n < PAGE as usize {
                return Ok(out);
            }
        }
    }

    /// Verify the stored log against the gateway key, the stored head and
    /// every signed checkpoint.
    pub async fn verify_audit(&self, key: &warden_identity::PublicKey) -> Result<std::result::Result<VerifyReport, AuditError>> {
        self.verify_audit_with(key, &[]).await
    }

    /// As [`Store::verify_audit`], and against checkpoints kept outside the
    /// database (already signature-checked): the stored head and checkpoint
    /// rows are the database writer's to rewrite, those are not.
    pub async fn verify_audit_with(&self, key: &warden_identity::PublicKey, published: &[Checkpoint]) -> Result<std::result::Result<VerifyReport, AuditError>> {
        let mut checkpoints = published.to_vec();
        for c in self.checkpoints().await? {
            match Checkpoint::verify(&c.note, key) {
                Ok(cp) if cp.size == c.size => checkpoints.push(cp),
                _ => return Ok(Err(AuditError::Checkpoint { size: c.size })),
            }
        }
        let lines = self.audit_lines().await?;
        let head = self.audit_head().await?;
        Ok(warden_audit::verify_lines(lines.iter().map(String::as_str), key, ChainHead::default(), Some(&head), &checkpoints))
    }

    /// A writer for the audit log, holding its own connection.
    pub async fn audit_appender(&self, key: Keypair) -> Result<AuditAppender> {
        let mut conn = self.pool.acquire().await.map_err(db("opening the audit writer"))?;
        if self.backend == Backend::Sqlite {
            // The answer to a call waits for its record: the record must
            // survive a power loss too, not only a crash of this process
            // (which WAL with NORMAL already survives). One fsync per batch.
            conn.execute("PRAGMA synchronous = FULL").await.map_err(db("opening the audit writer"))?;
        }
        Ok(AuditAppender { store: self.clone(), conn, key, head: None })
    }

    /// The head recorded with the last append.
    pub async fn audit_head(&self) -> Result<ChainHead> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'audit_head'").fetch_optional(&self.pool).await.map_err(db("reading the audit head"))?;
        match v {
            None => Ok(ChainHead::default()),
            Some(s) => serde_json::from_str(&s).map_err(|_| StoreError::Corrupt("audit head".into())),
        }
    }

    /// Records with `seq > after`, in order, at most `limit`. Rows that do not
    /// parse are returned as errors so verification reports them.
    pub async fn read_audit(&self, after: u64, limit: u32) -> Result<Vec<std::result::Result<AuditRecord, String>>> {
        let rows = self.read_audit_texts(after, limit).await?;
        Ok(rows.into_iter().map(|(seq, text)| serde_json::from_str(&text).map_err(|e| format!("row {seq}: {e}"))).collect())
    }

    /// `(seq, record text)` with `seq > after`, in order, at most `limit`.
    async fn read_audit_texts(&self, after: u64, limit: u32) -> Result<Vec<(i64, String)>> {
        sqlx::query_as("SELECT seq, record FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the audit log"))
    }

    // ---- policy bundles ----

    /// Store a validated, tested bundle as the next version; every gateway
    /// loads it at its next refresh (at once on PostgreSQL). Returns the
    /// version.
    pub async fn push_policy(&self, sources_json: &str, sha256: &str, by: &str, now_ms: i64) -> Result<i64> {
        let mut tx = self.write_tx("pushing a policy bundle").await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM policy_bundles").fetch_one(&mut *tx).await.map_err(db("pushing a policy bundle"))?;
        let version = last.unwrap_or(0) + 1;
        sqlx::query("INSERT INTO policy_bundles (version, sha256, sources, pushed_by, pushed_ms) VALUES ($1,$2,$3,$4,$5)")
            .bind(version)
            .bind(sha256)
            .bind(sources_json)
            .bind(by)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db("pushing a policy bundle"))?;
        self.bump(&mut tx).await?;
        tx.commit().await.map_err(db("pushing a policy bundle"))?;
        Ok(version)
    }

    /// The version in force (0: none pushed; gateways use their policy_dir).
    pub async fn policy_version(&self) -> Result<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM policy_bundles").fetch_one(&self.pool).await.map_err(db("reading the policy version"))?;
        Ok(v.unwrap_or(0))
    }

    /// The bundle in force: (version, sha256, sources JSON).
    pub async fn latest_policy(&self) -> Result<Option<(i64, String, String)>> {
        sqlx::query_as("SELECT version, sha256, sources FROM policy_bundles ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading the policy bundle"))
    }

    /// The newest signed checkpoint, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let row: Option<(i64, String, String, String, i64)> =
            sqlx::query_as("SELECT size, head_hash, frontier, note, ts_ms FROM checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading checkpoints"))?;
        row.map(StoredCheckpoint::from_row).transpose()
    }

    /// Every signed checkpoint, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as("SELECT size, head_hash, frontier, note, ts_ms FROM checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading checkpoints"))?;
        rows.into_iter().map(StoredCheckpoint::from_row).collect()
    }

    /// Sign a checkpoint of the log as it stands, if it grew since the last
    /// one. Only records that verify (chain, hashes, batch signatures) from
    /// the last checkpoint on are covered: a checkpoint never vouches for a
    /// log that was already tampered with. Replicas racing to checkpoint the
    /// same size produce the same note (Ed25519 is deterministic); the first
    /// one stored wins. Returns the newest checkpoint.
    pub async fn make_checkpoint(&self, key: &Keypair, origin: &str, now_ms: i64) -> Result<Option<StoredCheckpoint>> {
        let last = self.latest_checkpoint().await?;
        let (mut head, mut tree) = match &last {
            Some(c) => (ChainHead { seq: c.size, hash: c.head_hash.clone() }, c.frontier.clone()),
            None => (ChainHead::default(), Frontier::default()),
        };
        let start = head.seq;
        const PAGE: u32 = 10_000;
        loop {
            let page = self.read_audit(head.seq, PAGE).await?;
            let n = page.len();
            let records: Vec<AuditRecord> =
                page.into_iter().collect::<std::result::Result<_, _>>().map_err(|e| StoreError::Corrupt(format!("audit log: {e}")))?;
            let Some(last_rec) = records.last() else { break };
            let next = ChainHead { seq: last_rec.seq, hash: last_rec.hash.clone() };
            for r in &records {
                tree.push(r.leaf_hash().map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
            // A page may end inside a batch: its signature, further on,
            // covers these records through the chain.
            match warden_audit::verify(records.into_iter().map(Ok), &key.public(), head, None) {
                Ok(_) => {}
                Err(AuditError::Unsealed { .. }) if n == PAGE as usize => {}
                Err(e) => return Err(StoreError::Corrupt(format!("audit log does not verify, no checkpoint signed: {e}"))),
            }
            head = next;
            if n < PAGE as usize {
                break;
            }
        }
        if head.seq == start {
            return Ok(last);
        }
        let note = Checkpoint { origin: origin.to_string(), size: tree.size(), root: tree.root() }.sign(key);
        sqlx::query("INSERT INTO checkpoints (size, head_hash, frontier, note, ts_ms) VALUES ($1,$2,$3,$4,$5) ON CONFLICT (size) DO NOTHING")
            .bind(tree.size() as i64)
            .bind(&head.hash)
            .bind(serde_json::to_string(&tree).expect("frontier serializes"))
            .bind(&note)
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(db("storing a checkpoint"))?;
        self.latest_checkpoint().await
    }

    /// Raw access for tamper demonstrations and repair tooling.
    pub async fn overwrite_audit_row(&self, seq: u64, record_json: &str) -> Result<()> {
        let r = sqlx::query("UPDATE audit SET record = $1 WHERE seq = $2")
            .bind(record_json)
            .bind(seq as i64)
            .execute(&self.pool)
            .await
            .map_err(db("editing the audit log"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("audit record {seq}")));
        }
        Ok(())
    }
}

// ---- one-time ids ----

impl Store {
    /// Record one-time ids with the time each stops being acceptable, in one
    /// statement (one round trip for the batch). Per id: `true` when this
    /// call recorded it first, `false` when it was already recorded (by any
    /// replica, before or after a restart) or repeats earlier in `ids`.
    pub async fn claim_one_time_ids(&self, ids: &[(String, i64)]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = String::from("INSERT INTO one_time_ids (id, expires_at) VALUES ");
        for i in 0..ids.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
        }
        sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for (id, expires_at) in ids {
            q = q.bind(id.as_str()).bind(*expires_at);
        }
        let inserted: std::collections::HashSet<String> = q.fetch_all(&self.pool).await.map_err(db("recording one-time ids"))?.into_iter().collect();
        let mut first = std::collections::HashSet::new();
        Ok(ids.iter().map(|(id, _)| inserted.contains(id) && first.insert(id.as_str())).collect())
    }

    /// Forget one-time ids that expired before `before` (Unix seconds).
    pub async fn prune_one_time_ids(&self, before: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM one_time_ids WHERE expires_at < $1").bind(before).execute(&self.pool).await.map_err(db("pruning one-time ids"))?;
        Ok(r.rows_affected())
    }

    /// Start the group-commit writer for one-time ids (needs a Tokio
    /// runtime). Expired ids are pruned every minute once they are
    /// `prune_grace_secs` past their expiry: the grace covers clocks that
    /// differ between replicas, so a replica running ahead does not forget
    /// an id another one would still accept.
    pub fn one_time_ids(&self, prune_grace_secs: i64) -> OneTimeIds {
        let (tx, rx) = tokio::sync::mpsc::channel(8192);
        tokio::spawn(claim_batches(self.clone(), rx, prune_grace_secs));
        OneTimeIds { tx }
    }
}

type ClaimReply = tokio::sync::oneshot::Sender<std::result::Result<bool, OneTimeIdsUnavailable>>;

/// Records one-time ids through one writer: each caller waits for the
/// statement holding its id, and ids arriving while one is in flight go in
/// the next (group commit without a timer: a lone request waits one round
/// trip, a busy gateway one round trip per batch).
#[derive(Debug, Clone)]
pub struct OneTimeIds {
    tx: tokio::sync::mpsc::Sender<(String, i64, ClaimReply)>,
}

/// The one-time id could not be recorded; the request must be refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the one-time id cannot be recorded in the database ({0}); refusing the request (fail closed): retry when the database is reachable")]
pub struct OneTimeIdsUnavailable(String);

/// Ids per statement (two parameters each).
const MAX_CLAIM_BATCH: usize = 128;

impl OneTimeIds {
    /// `true` when `id` is used for the first time anywhere; it is then
    /// recorded until `expires_at` (Unix seconds).
    pub async fn claim(&self, id: String, expires_at: i64) -> std::result::Result<bool, OneTimeIdsUnavailable> {
        let stopped = || OneTimeIdsUnavailable("the one-time id writer stopped".into());
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send((id, expires_at, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn claim_batches(store: Store, mut rx: tokio::sync::mpsc::Receiver<(String, i64, ClaimReply)>, prune_grace_secs: i64) {
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(MAX_CLAIM_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_CLAIM_BATCH) => if n == 0 { return },
            _ = prune.tick() => {
                let now = warden_core::clock::now_secs();
                if let Err(e) = store.prune_one_time_ids(now - prune_grace_secs).await {
                    tracing::warn!("pruning expired one-time ids failed (retried in a minute): {e}");
                }
                continue;
            }
        }
        let (ids, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|(id, exp, reply)| ((id, exp), reply)).unzip();
        match store.claim_one_time_ids(&ids).await {
            Ok(first) => first.into_iter().zip(replies).for_each(|(f, reply)| drop(reply.send(Ok(f)))),
            Err(e) => {
                let e = OneTimeIdsUnavailable(e.to_string());
                replies.into_iter().for_each(|reply| drop(reply.send(Err(e.clone()))));
            }
        }
    }
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size = the last record's `seq`.
    pub size: u64,
    /// Chain hash of record `size`.
    pub head_hash: String,
    pub frontier: Frontier,
    /// The C2SP signed note.
    pub note: String,
    pub ts_ms: i64,
}

impl StoredCheckpoint {
    fn from_row((size, head_hash, frontier, note, ts_ms): (i64, String, String, String, i64)) -> Result<Self> {
        let frontier: Frontier = serde_json::from_str(&frontier).map_err(|e| StoreError::Corrupt(format!("checkpoint {size}: {e}")))?;
        if !frontier.is_valid() || frontier.size() != size as u64 {
            return Err(StoreError::Corrupt(format!("checkpoint {size}: frontier does not match its size")));
        }
        Ok(Self { size: size as u64, head_hash, frontier, note, ts_ms })
    }
}

/// Change notifications from PostgreSQL (see [`Store::change_listener`]).
pub struct ChangeListener(sqlx::postgres::PgListener);

impl ChangeListener {
    /// Wait for the next change announced by any replica. An error means the
    /// connection dropped; the listener reconnects on the next call, and
    /// notifications sent meanwhile are lost (callers resync by polling).
    pub async fn recv(&mut self) -> Result<()> {
        self.0.recv().await.map(|_| ()).map_err(db("listening for changes"))
    }
}

/// Appends to the audit log over a dedicated connection (no pool checkout
/// or health check per append on the hot path).
pub struct AuditAppender {
    store: Store,
    conn: sqlx::pool::PoolConnection<Any>,
    key: Keypair,
    head: Option<ChainHead>,
}

impl AuditAppender {
    /// Seal `events` onto the chain and append them atomically.
    ///
    /// The writer remembers the head it last wrote: with it the whole append is
    /// one statement batch (a single round trip to the database worker, on
    /// the hot path of every call). If another writer (a CLI command, another
    /// process) extended the chain meanwhile, the sequence number collides,
    /// nothing is written, and the append is redone from the stored head, so
    /// writers never fork the chain.
    pub async fn append(&mut self, events: Vec<(AuditEvent, i64)>) -> Result<Vec<AuditRecord>> {
        // Replicas sharing PostgreSQL extend one chain; under contention a
        // writer may lose the race a few times in a row.
        for _ in 0..50 {
            let head = match self.head.take() {
                Some(h) => h,
                None => self.store.audit_head().await?,
            };
            let records = Chain::new(self.key.clone(), head).seal_batch(events.clone());
            let Some(last) = records.last() else { return Ok(records) };
            let new_head = ChainHead { seq: last.seq, hash: last.hash.clone() };
            let begin = match self.store.backend {
                Backend::Sqlite => "BEGIN IMMEDIATE",
                Backend::Postgres => "BEGIN",
            };
            let mut sql = format!("{begin};\nINSERT INTO audit (seq, record) VALUES ");
            for (i, r) in records.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("({}, {})", r.seq, sql_text(&serde_json::to_string(r).expect("record serializes"))));
            }
            sql.push_str(&format!(
                ";\nINSERT INTO meta (key, value) VALUES ('audit_head', {}) ON CONFLICT(key) DO UPDATE SET value = excluded.value;\nCOMMIT;",
                sql_text(&serde_json::to_string(&new_head).expect("head serializes"))
            ));
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *self.conn).await {
                Ok(_) => {
                    self.head = Some(new_head);
                    return Ok(records);
                }
                Err(e) => {
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await;
                    match e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => continue,
                        other => return Err(StoreError::Db { context: "appending to the audit log", source: other }),
                    }
                }
            }
        }
        Err(StoreError::Conflict("the audit log is being extended by another writer too quickly; retry".into()))
    }
}

/// An SQL string literal. SQLite, and PostgreSQL with standard-conforming
/// strings (checked on connect), have no backslash escapes: doubling single
/// quotes is complete, and serde_json never emits a raw NUL.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn corrupt(what: &str) -> impl Fn(warden_core::CoreError) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

fn col<'r, T: sqlx::Decode<'r, Any> + sqlx::Type<Any>>(r: &'r AnyRow, name: &str) -> Result<T> {
    r.try_get(name).map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

fn agent_from_row(r: &AnyRow) -> Result<Agent> {
    let tools: String = col(r, "tools")?;
    Ok(Agent {
        id: AgentId::from_str(&col::<String>(r, "id")?).map_err(corrupt("agent id"))?,
        owner: col(r, "owner")?,
        purpose: col(r, "purpose")?,
        tools: serde_json::from_str(&tools).map_err(|e| StoreError::Corrupt(format!("agent tools: {e}")))?,
        autonomy: Autonomy::try_from(col::<i64>(r, "autonomy")?).map_err(corrupt("autonomy"))?,
        status: AgentStatus::from_str(&col::<String>(r, "status")?).map_err(corrupt("status"))?,
        public_key: col(r, "public_key")?,
        parent: col::<Option<String>>(r, "parent")?.map(|p| AgentId::from_str(&p)).transpose().map_err(corrupt("parent"))?,
        created_at: col(r, "created_at")?,
    })
}

fn kill_from_row(r: &AnyRow) -> Result<Kill> {
    Ok(Kill {
        id: col(r, "id")?,
        scope: col::<String>(r, "scope")?.parse().map_err(|e: warden_monitor::MonitorError| StoreError::Corrupt(e.to_string()))?,
        target: col(r, "target")?,
        reason: col(r, "reason")?,
        by: col(r, "by")?,
        at_ms: col(r, "at_ms")?,
    })
}

fn tool_from_row(r: &AnyRow) -> Result<Tool> {
    Ok(Tool {
        tool: ToolRef::from_str(&col::<String>(r, "tool")?).map_err(corrupt("tool"))?,
        sensitivity: col::<String>(r, "sensitivity")?.parse().map_err(corrupt("sensitivity"))?,
        action_class: col::<String>(r, "action_class")?.parse().map_err(corrupt("action class"))?,
        exfil_capable: col::<i64>(r, "exfil_capable")? != 0,
        untrusted_content: col::<i64>(r, "untrusted_content")? != 0,
        pinned_hash: col(r, "pinned_hash")?,
        observed_hash: col(r, "observed_hash")?,
        status: col::<String>(r, "status")?.parse().map_err(corrupt("tool status"))?,
    })
}

#[cfg(test)]
mod db_wait_tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_waits_for_the_database_at_most_db_wait() {
        let dir = tempfile::tempdir().unwrap();
        for s in testing::every_backend(dir.path()).await {
            assert_eq!(s.pool.options().get_acquire_timeout(), DB_WAIT);
            let (query, expected) = match s.backend {
                Backend::Sqlite => ("PRAGMA busy_timeout", DB_WAIT.as_millis().to_string()),
                Backend::Postgres => ("SELECT current_setting('statement_timeout')", format!("{}s", DB_WAIT.as_secs())),
            };
            // Every pooled connection, not only the first.
            let mut conns = Vec::new();
            for _ in 0..3 {
                let mut c = s.pool.acquire().await.unwrap();
                let got: String = match s.backend {
                    Backend::Sqlite => sqlx::query_scalar::<_, i64>(query).fetch_one(&mut *c).await.unwrap().to_string(),
                    Backend::Postgres => sqlx::query_scalar(query).fetch_one(&mut *c).await.unwrap(),
                };
                assert_eq!(got, expected, "{:?}", s.backend);
                conns.push(c);
            }
        }
    }
}

/// Scratch databases for tests that run against both backends.
pub mod testing {
    use super::{Store, StoreError};

    /// The PostgreSQL server tests use (`scripts/pg-throwaway` starts one).
    pub const URL_ENV: &str = "WARDEN_TEST_POSTGRES_URL";

    /// A new, empty database on the test PostgreSQL server, as a URL; `None`
    /// when no server is configured. With `WARDEN_REQUIRE_POSTGRES=1` (set by
    /// `scripts/test`) a missing server is an error rather than a skip.
    pub async fn fresh_postgres_url() -> Result<Option<String>, StoreError> {
        let Ok(base) = std::env::var(URL_ENV) else {
            if std::env::var("WARDEN_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                return Err(StoreError::Config(format!("{URL_ENV} is not set; start one with scripts/pg-throwaway")));
            }
            eprintln!("note: {URL_ENV} is not set; PostgreSQL backend not tested here");
            return Ok(None);
        };
        let name = format!("warden_t_{}_{}", std::process::id(), warden_core::clock::since_epoch().as_nanos());
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&base).await.map_err(super::db("creating a test database"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.map_err(super::db("creating a test database"))?;
        let (head, _) = base.rsplit_once('/').ok_or_else(|| StoreError::Config(format!("{URL_ENV} has no database name")))?;
        Ok(Some(format!("{head}/{name}")))
    }

    /// A fresh store on every backend available: SQLite in `dir`, and
    /// PostgreSQL when a test server is configured.
    pub async fn every_backend(dir: &std::path::Path) -> Vec<Store> {
        let mut out = vec![Store::open(&dir.join("w.db")).await.expect("sqlite store")];
        if let Some(url) = fresh_postgres_url().await.expect("test PostgreSQL") {
            out.push(Store::connect(&url).await.expect("postgres store"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::{ActionClass, Sensitivity};

    fn agent(name: &str, key: &str) -> Agent {
        Agent {
            id: AgentId::new("td", name).unwrap(),
            owner: "alice".into(),
            purpose: "p".into(),
            tools: vec!["crm/*".parse().unwrap()],
            autonomy: Autonomy::try_from(1).unwrap(),
            status: AgentStatus::Active,
            public_key: key.into(),
            parent: None,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn agents_tools_revocations_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for s in testing::every_backend(dir.path()).await {
            let seq0 = s.change_seq().await.unwrap();
            let a = agent("a", "k1");
            s.insert_agent(&a).await.unwrap();
            assert!(matches!(s.insert_agent(&a).await, Err(StoreError::Conflict(_))));
            assert!(matches!(s.insert_agent(&agent("b", "k1")).await, Err(StoreError::Conflict(_))), "keys are unique");
            let mut child = agent("c", "k3");
            child.parent = Some(AgentId::new("td", "nope").unwrap());
            assert!(matches!(s.insert_agent(&child).await, Err(StoreError::NotFound(_))));
            assert_eq!(s.get_agent(&a.id).await.unwrap(), a);
            s.set_agent_status(&a.id, AgentStatus::Suspended, "test", 50).await.unwrap();
            assert_eq!(s.revocation_set().await.unwrap().agents_before.get(a.id.as_str()), Some(&50));
            s.set_agent_status(&a.id, AgentStatus::Revoked, "test", 60).await.unwrap();
            assert!(matches!(s.set_agent_status(&a.id, AgentStatus::Active, "x", 70).await, Err(StoreError::Conflict(_))));
            assert!(s.change_seq().await.unwrap() > seq0);

            let t: ToolRef = "crm/lookup".parse().unwrap();
            let seen = s.observe_tool(&t, "h1", "{}", None).await.unwrap();
            assert_eq!(seen.status, ToolStatus::Pending);
            assert!(!seen.is_callable());
            assert!(seen.untrusted_content, "unclassified tools are treated as untrusted sources");
            s.upsert_tool(&Tool { sensitivity: Sensitivity::Low, action_class: ActionClass::Read, exfil_capable: false, untrusted_content: false, ..seen })
                .await
                .unwrap();
            assert!(s.approve_tool(&t, false).await.unwrap().is_callable());
            let changed = s.observe_tool(&t, "h2", "{\"x\":1}", Some("[\"hidden_instructions\"]")).await.unwrap();
            assert_eq!(changed.status, ToolStatus::Changed);
            assert!(!changed.is_callable());
            assert_eq!(s.get_tool(&t).await.unwrap().sensitivity, Sensitivity::Low, "observation keeps the classification");
            assert!(matches!(s.approve_tool(&t, false).await, Err(StoreError::Conflict(m)) if m.contains("tool poisoning")), "flagged needs acceptance");
            assert_eq!(s.observed_findings(&t).await.unwrap().as_deref(), Some("[\"hidden_instructions\"]"));
            assert_eq!(s.observe_tool(&t, "h1", "{}", None).await.unwrap().status, ToolStatus::Approved, "reverting restores it");
        }
    }

    #[tokio::test]
    async fn kill_switches_and_monitor_state() {
        let dir = tempfile::tempdir().unwrap();
        for s in testing::every_backend(dir.path()).await {
            let a = agent("a", "k1");
            s.insert_agent(&a).await.unwrap();
            let k = Kill { id: 0, scope: KillScope::Agent, target: a.id.to_string(), reason: "risk 93".into(), by: "monitor".into(), at_ms: 5_000 };
            let (engaged, seq) = s.engage_kill(&k).await.unwrap();
            assert!(engaged.id > 0);
            assert_eq!(seq, s.change_seq().await.unwrap());
            assert_eq!(s.get_agent(&a.id).await.unwrap().status, AgentStatus::Suspended, "an agent kill suspends");
            assert_eq!(s.revocation_set().await.unwrap().agents_before.get(a.id.as_str()), Some(&5), "and revokes its tokens");
            assert!(matches!(s.engage_kill(&k).await, Err(StoreError::Conflict(_))), "one engaged switch per target");
            let ghost = Kill { target: "spiffe://td/agent/ghost".into(), ..k.clone() };
            assert!(matches!(s.engage_kill(&ghost).await, Err(StoreError::NotFound(_))));
            let global = Kill { scope: KillScope::Global, target: String::new(), ..k.clone() };
            s.engage_kill(&global).await.unwrap();
            assert_eq!(s.active_kills().await.unwrap().len(), 2);
            s.lift_kill(engaged.id, "operator:alice", 9_000).await.unwrap();
            assert_eq!(s.get_agent(&a.id).await.unwrap().status, AgentStatus::Active, "lifting resumes the agent");
            assert!(matches!(s.lift_kill(engaged.id, "x", 9_000).await, Err(StoreError::NotFound(_))));
            let all = s.list_kills(true).await.unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(all[1].1, Some((9_000, "operator:alice".to_string())));
            // Re-engaging after a lift works; resuming the agent lifts it too.
            s.engage_kill(&k).await.unwrap();
            s.set_agent_status(&a.id, AgentStatus::Active, "", 10).await.unwrap();
            assert_eq!(s.active_kills().await.unwrap().len(), 1, "only the global one");

            s.save_monitor_states(&[("a".into(), "{\"x\":1}".into())], 7).await.unwrap();
            s.save_monitor_states(&[("a".into(), "{\"x\":2}".into())], 8).await.unwrap();
            assert_eq!(s.monitor_states().await.unwrap(), vec![("a".to_string(), "{\"x\":2}".to_string(), 8)]);
        }
    }

    #[tokio::test]
    async fn approvals_are_decided_once_and_used_once() {
        let dir = tempfile::tempdir().unwrap();
        for s in testing::every_backend(dir.path()).await {
            let tool: ToolRef = "pay/transfer".parse().unwrap();
            let a = Approval {
                id: "ap1".into(),
                agent: "spiffe://td/agent/a".into(),
                owner: "alice".into(),
                task: "t".into(),
                tool: tool.clone(),
                args_sha256: "h1".into(),
                args_redacted: serde_json::json!({"amount": 5000, "to": "[iban …3000 #00]"}),
                args: Some(serde_json::json!({"amount": 5000, "to": "DE89370400440532013000"})),
                reason: "big".into(),
                policies: vec!["large-payment-approval".into()],
                risk: 3,
                required: 2,
                approvers: vec![],
                status: ApprovalStatus::Pending,
                decided_by: None,
                decision_reason: None,
                created_ms: 100,
                expires_ms: 10_000,
            };
            let (bob, carol) = (Operator { name: "bob".into(), role: Role::Approver }, Operator { name: "carol".into(), role: Role::Admin });
            s.insert_approval(&a).await.unwrap();
            assert_eq!(s.list_approvals(true, 10).await.unwrap(), vec![a.clone()], "with the clear arguments");
            s.decide_approval("ap1", &bob, true, "", 200).await.unwrap();
            assert!(matches!(s.decide_approval("ap1", &bob, true, "", 201).await, Err(StoreError::Conflict(m)) if m.contains("different approver")));
            assert_eq!(s.approved_for(&a.agent, &tool, "h1", 300).await.unwrap(), None, "one of two approvals is not enough");
            let done = s.decide_approval("ap1", &carol, true, "fine", 300).await.unwrap();
            assert_eq!((done.status, &done.args), (ApprovalStatus::Approved, &a.args), "kept until the call runs");
            assert_eq!(s.approved_for(&a.agent, &tool, "h2", 300).await.unwrap(), None, "bound to the argument hash");
            assert_eq!(s.approved_for(&a.agent, &tool, "h1", 300).await.unwrap().as_deref(), Some("ap1"));
            assert_eq!(s.use_approval("ap1", 400).await.unwrap().status, ApprovalStatus::Used);
            assert_eq!(s.get_approval("ap1").await.unwrap().args, None, "the clear arguments are dropped once used");
            assert!(matches!(s.use_approval("ap1", 401).await, Err(StoreError::Conflict(_))), "used once");
            assert!(s.list_approvals(true, 10).await.unwrap().is_empty());

            let late = Approval { id: "ap2".into(), required: 1, ..a.clone() };
            s.insert_approval(&late).await.unwrap();
            assert!(matches!(s.decide_approval("ap2", &bob, true, "", 20_000).await, Err(StoreError::Conflict(m)) if m.contains("expired")));
            let expired = s.get_approval("ap2").await.unwrap();
            assert_eq!((expired.status, expired.args), (ApprovalStatus::Expired, None), "the expiry is recorded, the clear arguments dropped");
            assert_eq!(expired.args_redacted, a.args_redacted, "the masked form stays");
            assert!(matches!(s.get_approval("nope").await, Err(StoreError::NotFound(_))));
        }
    }

    #[tokio::test]
    async fn operators_by_token_digest() {
        let dir = tempfile::tempdir().unwrap();
        for s in testing::every_backend(dir.path()).await {
            s.add_operator("alice", Role::Admin, "d1", 1).await.unwrap();
            assert!(matches!(s.add_operator("alice", Role::Viewer, "d2", 2).await, Err(StoreError::Conflict(_))));
            assert_eq!(s.operator_by_token("d1").await.unwrap(), Some(Operator { name: "alice".into(), role: Role::Admin }));
            assert_eq!(s.operator_by_token("d2").await.unwrap(), None);
            s.remove_operator("alice").await.unwrap();
            assert_eq!(s.operator_by_token("d1").await.unwrap(), None);
            assert!(matches!(s.remove_operator("alice").await, Err(StoreError::NotFound(_))));
        }
    }

    #[tokio::test]
    async fn audit_appends_survive_hostile_text_and_concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        for s in testing::every_backend(dir.path()).await {
            let key = Keypair::generate();
            let nasty = "x'); DROP TABLE audit; --\u{0}'' \\ ünïcødé \"q\"";
            let ev = |r: &str| AuditEvent { decision: "deny".into(), reason: Some(r.into()), ..Default::default() };
            let mut w = s.audit_appender(key.clone()).await.unwrap();
            w.append(vec![(ev(nasty), 1), (ev("second"), 2)]).await.unwrap();
            // Another writer appends behind this writer's back.
            s.audit_appender(key.clone()).await.unwrap().append(vec![(ev("other writer"), 3)]).await.unwrap();
            // The stale head collides, and the append is redone on the real head.
            let recs = w.append(vec![(ev("after"), 4)]).await.unwrap();
            assert_eq!(recs[0].seq, 4);
            let all: Vec<_> = s.read_audit(0, 100).await.unwrap().into_iter().map(|r| r.unwrap()).collect();
            assert_eq!(all.len(), 4);
            assert_eq!(all[0].event.reason.as_deref(), Some(nasty));
            let head = s.audit_head().await.unwrap();
            let report = warden_audit::verify(all.into_iter().map(Ok), &key.public(), ChainHead::default(), Some(&head)).unwrap();
            assert_eq!(report.records, 4);

            // Checkpoints: signed over what verifies, extended incrementally.
            let c1 = s.make_checkpoint(&key, "td/audit", 10).await.unwrap().unwrap();
            assert_eq!(c1.size, 4);
            assert_eq!(Checkpoint::verify(&c1.note, &key.public()).unwrap().root, c1.frontier.root());
            assert_eq!(hex::encode(c1.frontier.root()), report.root);
            assert_eq!(s.make_checkpoint(&key, "td/audit", 11).await.unwrap().unwrap(), c1, "no growth, no new checkpoint");
            w.append(vec![(ev("more"), 5), (ev("and more"), 6)]).await.unwrap();
            let c2 = s.make_checkpoint(&key, "td/audit", 12).await.unwrap().unwrap();
            assert_eq!(c2.size, 6);
            let all: Vec<_> = s.read_audit(0, 100).await.unwrap().into_iter().map(|r| r.unwrap()).collect();
            let leaves: Vec<_> = all.iter().map(|r| r.leaf_hash().unwrap()).collect();
            assert_eq!(c2.frontier.root(), warden_audit::merkle::root(&leaves));
            assert_eq!(s.checkpoints().await.unwrap().len(), 2);
            // A record already covered and edited is caught by verifying
            // against the checkpoints, not here; an edit after the last
            // checkpoint stops the next one.
            w.append(vec![(ev("late"), 7)]).await.unwrap();
            let mut edited = all[5].clone();
            edited.event.decision = "allow".into();
            s.overwrite_audit_row(7, &serde_json::to_string(&edited).unwrap()).await.unwrap();
            assert!(matches!(s.make_checkpoint(&key, "td/audit", 13).await, Err(StoreError::Corrupt(m)) if m.contains("does not verify")));
        }
    }

    #[tokio::test]
    async fn a_one_time_id_is_first_only_once_across_stores_restarts_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        // Two handles on one database stand for two replicas; a third opened
        // after the first closes, for a restart.
        let pg = testing::fresh_postgres_url().await.unwrap();
        let mut pairs = vec![(Store::open(&path).await.unwrap(), Store::open(&path).await.unwrap())];
        if let Some(url) = &pg {
            pairs.push((Store::connect(url).await.unwrap(), Store::connect(url).await.unwrap()));
        }
        // Unexpired now: the writer prunes what expired when it starts.
        let exp = warden_core::clock::now_secs() + 1000;
        for (a, b) in pairs {
            let ids = |v: &[&str]| v.iter().map(|i| (i.to_string(), exp)).collect::<Vec<_>>();
            assert_eq!(a.claim_one_time_ids(&ids(&["x", "y"])).await.unwrap(), [true, true]);
            assert_eq!(b.claim_one_time_ids(&ids(&["y", "z", "z"])).await.unwrap(), [false, true, false], "the other replica sees y; z repeats in its batch");
            let restarted = match a.backend() {
                Backend::Sqlite => Store::open(&path).await.unwrap(),
                Backend::Postgres => Store::connect(pg.as_deref().unwrap()).await.unwrap(),
            };
            drop(a);
            assert_eq!(restarted.claim_one_time_ids(&ids(&["x"])).await.unwrap(), [false], "recorded before the restart");

            // Through the group-commit writer, concurrently: each id is first once.
            let w = restarted.one_time_ids(0);
            let claims: Vec<_> = (0..50)
                .map(|i| {
                    let w = w.clone();
                    tokio::spawn(async move { w.claim(format!("c{}", i % 25), exp).await.unwrap() })
                })
                .collect();
            let mut first = 0;
            for c in claims {
                first += usize::from(c.await.unwrap());
            }
            assert_eq!(first, 25);
            assert!(!w.claim("x".into(), exp).await.unwrap());

            assert_eq!(restarted.prune_one_time_ids(exp).await.unwrap(), 0, "none expired before exp");
            assert_eq!(restarted.prune_one_time_ids(exp + 1).await.unwrap(), 28);
            assert_eq!(restarted.claim_one_time_ids(&ids(&["x"])).await.unwrap(), [true], "an expired id is forgotten");
        }
    }
}

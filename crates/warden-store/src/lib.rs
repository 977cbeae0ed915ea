//! Persistence for the registry (agents, tools and their pinned definitions),
//! revocations, kill switches, monitor state, approvals, operators, policy
//! bundles, the audit log with its checkpoints and the one-time ids (DPoP
//! proofs, client assertions) already used.
//!
//! One implementation over sqlx's `Any` driver serves both backends: SQLite
//! in a data directory (the embedded default) and PostgreSQL (several
//! replicas sharing one database). Queries are written once in the dialect
//! both accept (`$N` placeholders, `ON CONFLICT`, `RETURNING`, `IS DISTINCT
//! FROM`, integers for flags), and so is the schema (PostgreSQL gets it with
//! 64-bit integer and identity types); only the write lock and change
//! notification differ per backend.
//!
//! The exception is SQLite's hot path: one-time ids and audit records are
//! written by [`SqliteWriter`], one connection (rusqlite) on a thread of
//! its own, so that the two never contend for SQLite's one write lock and
//! each commit covers both (see `writer` for why not sqlx there).
//!
//! Every registry write bumps a change counter that gateways poll to refresh
//! their in-memory snapshot; on PostgreSQL the bump also sends a
//! `NOTIFY warden_changes` so every replica refreshes at once.
//!
//! This module owns the connection (pool, session settings, the write
//! lock; `writer` owns SQLite's writer thread), the schema and its migrations, the change counter and the error
//! type; each table's queries live in the module of their domain, as
//! `impl Store` blocks: `agents`, `tools`, `tokens` (revocations and
//! one-time ids), `kills`, `monitor`, `operators`, `approvals`, `audit`
//! (records and checkpoints) and `policy`. What is not a domain type comes
//! back as a named struct (`StoredKill`, `StoredPolicy`, …), never a tuple.

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Row, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

mod agents;
mod approvals;
mod audit;
mod kills;
mod monitor;
mod operators;
mod policy;
mod tokens;
mod tools;
mod writer;

pub use agents::AutonomyRecord;
pub use audit::{AuditAppender, StoredCheckpoint};
pub use kills::{EngagedKill, KillLift, StoredKill};
pub use monitor::StoredMonitorState;
pub use operators::StoredOperator;
pub use policy::StoredPolicy;
pub use tokens::{OneTimeIds, OneTimeIdsUnavailable, RevocationKind};
pub use writer::{SqliteWriter, WriteFailed};

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
    AGENT_KEYS_AND_BINDING,
    OPERATOR_REVOCATIONS,
];

/// Revocations may end operators' sign-in sessions too (`operator`: every
/// session of the operator named up to the cut-off). SQLite cannot change a
/// CHECK in place: the table is rebuilt, its rows kept in order.
const OPERATOR_REVOCATIONS: &str = r#"
CREATE TABLE revocations_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('token','task','agent','operator')),
    value TEXT NOT NULL,
    cutoff INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
INSERT INTO revocations_v2 (kind, value, cutoff, reason, at) SELECT kind, value, cutoff, reason, at FROM revocations ORDER BY id;
DROP TABLE revocations;
ALTER TABLE revocations_v2 RENAME TO revocations;
"#;

/// Agent keys of every type are stored as their RFC 7638 canonical JWK (a
/// raw Ed25519 `x` written before becomes the same JWK, so a key has one
/// stored form and stays unique); each agent gets its token binding, `dpop`
/// for every existing one. No CHECK on the binding: another one (`mtls`)
/// must not need a table rebuild on SQLite; the reader refuses what it does
/// not know.
const AGENT_KEYS_AND_BINDING: &str = r#"
UPDATE agents SET public_key = '{"crv":"Ed25519","kty":"OKP","x":"' || public_key || '"}' WHERE public_key NOT LIKE '{%';
ALTER TABLE agents ADD COLUMN token_binding TEXT NOT NULL DEFAULT 'dpop';
"#;

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
pub(crate) const SQLITE_SESSION: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// Settings of every PostgreSQL connection (`statement_timeout` is [`DB_WAIT`]).
const POSTGRES_SESSION: &str = "SET statement_timeout = 5000";

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The registry store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The connection URL (PostgreSQL), for change listeners.
    url: Option<String>,
    /// The database file (SQLite), for its hot-path writer.
    file: Option<std::path::PathBuf>,
}

impl Store {
    /// Open (creating if needed) the SQLite database at `path` and migrate it.
    pub async fn open(path: &Path) -> Result<Self> {
        let url = SqliteConnectOptions::new().filename(path).create_if_missing(true).to_url_lossy();
        Self::connect_with(AnyConnectOptions::from_url(&url).map_err(db("opening the database"))?, Backend::Sqlite, None, Some(path.to_path_buf())).await
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
        let file = match backend {
            Backend::Sqlite => {
                let o = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Config(format!("database_url is not valid: {e}")))?;
                Some(o.get_filename().to_path_buf())
            }
            Backend::Postgres => None,
        };
        Self::connect_with(opts, backend, (backend == Backend::Postgres).then(|| url.to_string()), file).await
    }

    async fn connect_with(opts: AnyConnectOptions, backend: Backend, url: Option<String>, file: Option<std::path::PathBuf>) -> Result<Self> {
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
        let store = Self { pool, backend, url, file };
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

    /// On SQLite, the writer for the hot path: one-time ids and audit
    /// records, sealed with `key`, committed together by one connection
    /// (see [`SqliteWriter`]). `None` on PostgreSQL, whose pooled writers
    /// ([`Store::one_time_ids`], [`Store::audit_appender`]) serve instead.
    pub fn sqlite_writer(&self, key: warden_identity::Keypair) -> Option<SqliteWriter> {
        self.file.clone().map(|f| SqliteWriter::start(f, key))
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

fn corrupt(what: &str) -> impl Fn(warden_core::CoreError) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

fn col<'r, T: sqlx::Decode<'r, Any> + sqlx::Type<Any>>(r: &'r AnyRow, name: &str) -> Result<T> {
    r.try_get(name).map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

#[cfg(test)]
mod db_wait_tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_waits_for_the_database_at_most_db_wait() {
        let dir = tempfile::tempdir().unwrap();
        // Not `warden_test_support::every_backend`: its stores are this
        // crate as a dependency, whose pool a unit test cannot see.
        let mut stores = vec![Store::open(&dir.path().join("w.db")).await.unwrap()];
        if let Some(url) = warden_test_support::fresh_postgres_url().await.unwrap() {
            stores.push(Store::connect(&url).await.unwrap());
        }
        for s in stores {
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

#[cfg(test)]
mod migration_tests {
    use super::*;
    use warden_core::{Agent, AgentId, AgentStatus, Autonomy, TokenBinding};

    /// A database from before agent keys were JWKs: its Ed25519 key becomes
    /// the canonical JWK, and its agent DPoP-bound.
    #[tokio::test]
    async fn a_raw_ed25519_key_becomes_its_canonical_jwk_and_the_agent_stays_dpop_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        Store::open(&path).await.unwrap();
        let mut urls = vec![format!("sqlite://{}", path.display())];
        urls.extend(warden_test_support::fresh_postgres_url().await.unwrap());
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        for url in urls {
            let s = Store::connect(&url).await.unwrap();
            let a = Agent {
                id: AgentId::new("td", "old").unwrap(),
                owner: "alice".into(),
                purpose: "p".into(),
                tools: vec![],
                autonomy: Autonomy::try_from(1).unwrap(),
                status: AgentStatus::Active,
                public_key: "placeholder".into(),
                token_binding: TokenBinding::Bearer,
                parent: None,
                created_at: 1,
            };
            s.insert_agent(&a).await.unwrap();
            // Back to the previous schema version, with the key as it was stored then.
            for q in [
                format!("UPDATE agents SET public_key = '{x}'"),
                "ALTER TABLE agents DROP COLUMN token_binding".into(),
                format!("UPDATE schema_version SET version = {}", MIGRATIONS.iter().position(|m| *m == AGENT_KEYS_AND_BINDING).unwrap()),
            ] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(q)).execute(&s.pool).await.unwrap();
            }
            // A new process opens it (cached statements know the old columns).
            drop(s);
            let s = Store::connect(&url).await.unwrap();
            let back = s.get_agent(&a.id).await.unwrap();
            assert_eq!(back.public_key, format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#), "{:?}", s.backend);
            assert_eq!(back.token_binding, TokenBinding::Dpop);
        }
    }
}

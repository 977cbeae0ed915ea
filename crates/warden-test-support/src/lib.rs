//! Helpers shared by Warden's tests and benchmarks, kept out of the
//! production crates (a dev-dependency only): scratch databases for tests
//! that run against both store backends. Does IO (creates databases).

use warden_store::{Store, StoreError};

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
    let db = |source| StoreError::Db { context: "creating a test database", source };
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&base).await.map_err(db)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.map_err(db)?;
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

//! Versioned schema migrations of the PostgreSQL store. Each runs once, in its own transaction,
//! recorded in `dps_schema_migrations`; replicas starting together take an advisory lock so only
//! one applies them. A database migrated by a newer server (a version this one does not know) is
//! refused, as the embedded store refuses a newer schema.

use deadpool_postgres::Pool;

use super::names::pg_err;
use crate::records::StoreError;

/// Advisory lock key held while migrating (any constant that no other lock uses).
const MIGRATION_LOCK: i64 = 0x0064_7073_5f6d_6967;

/// The migrations, in order; a version is never reused or edited once released.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1)];

/// Version 1: the embedded store's tables. Keys sort in byte order (`COLLATE "C"`), as redb's
/// do, so paging through records returns the same order on both stores.
const V1: &str = r#"
CREATE TABLE groups (id text COLLATE "C" PRIMARY KEY, value text NOT NULL);
CREATE TABLE tpm_groups (id text COLLATE "C" PRIMARY KEY, value text NOT NULL);
CREATE TABLE hubs (id text COLLATE "C" PRIMARY KEY, value text NOT NULL);
CREATE TABLE tpm_enrollments (id text COLLATE "C" PRIMARY KEY, value text NOT NULL);
CREATE TABLE records (key text COLLATE "C" PRIMARY KEY, value text NOT NULL);
CREATE TABLE devices (device_id text COLLATE "C" PRIMARY KEY, key text NOT NULL);
CREATE TABLE identities (device_id text COLLATE "C" PRIMARY KEY, holders text NOT NULL);
"#;

/// Bring the schema up to date; returns the versions applied now.
pub(crate) async fn apply(pool: &Pool) -> Result<Vec<i32>, StoreError> {
    let mut client = pool.get().await.map_err(pg_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS dps_schema_migrations (\
         version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(pg_err)?;
    let done: Vec<i32> = tx
        .query(
            "SELECT version FROM dps_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(pg_err)?;
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if let Some(newer) = done.iter().find(|v| **v > known) {
        return Err(pg_err(format!(
            "unsupported store schema version {newer} (this server knows up to {known})"
        )));
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !done.contains(v)) {
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO dps_schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(pg_err)?;
        applied.push(*version);
    }
    tx.commit().await.map_err(pg_err)?;
    if !applied.is_empty() {
        tracing::info!(versions = ?applied, "PostgreSQL store schema migrated");
    }
    Ok(applied)
}

//! The schema, created and brought up to date at open by versioned
//! migrations shipped in the binary (`migrations/NNNN_name.sql`). The
//! `schema_version` table lists those applied. Every replica runs this at
//! start: one transaction holding a PostgreSQL advisory lock, so replicas
//! starting together apply each migration once, the others waiting and then
//! finding nothing left to do. A database migrated by a newer vigile (a
//! version this binary does not know) is refused rather than used.

use deadpool_postgres::GenericClient;

use crate::store::{StoreError, StoreResult};

/// One migration: its version (1, 2, ... in order, never renumbered) and SQL.
pub(super) struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "attempts",
        sql: include_str!("migrations/0002_attempts.sql"),
    },
    Migration {
        version: 3,
        name: "signing_keys",
        sql: include_str!("migrations/0003_signing_keys.sql"),
    },
    Migration {
        version: 4,
        name: "legacy_tokens",
        sql: include_str!("migrations/0004_legacy_tokens.sql"),
    },
];

/// The advisory lock taken while migrating ("vigile" in ASCII).
const LOCK: i64 = 0x7669_6769_6c65;

/// Applies the migrations the database lacks; the version it is at after.
pub(super) async fn apply(client: &mut deadpool_postgres::Client) -> StoreResult<i32> {
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .try_get(0)?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(StoreError::Db(format!(
            "the database's schema is at version {current}, newer than this vigile knows \
             ({latest}): run a vigile at least as recent as the one that migrated it"
        )));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        txn.batch_execute(migration.sql).await?;
        txn.execute(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "store: schema migrated"
        );
    }
    txn.commit().await?;
    Ok(latest)
}

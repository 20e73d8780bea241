//! The `signing_keys` table (migration 3): one row per `StoredKey`.
//!
//! Every change runs under `KEYS_LOCK`, a transaction-level advisory lock:
//! two rotations on two replicas at once happen one after the other (the
//! second sees the first's key and sets it aside), and the `version`s they
//! write grow in commit order, so a replica that saw `max(version)` has
//! seen every change up to it.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::{execute, int, opt_uint, query, query_opt};
use crate::store::{KeysChange, StoreError, StoreResult};
use crate::tokens::{KeyState, StoredKey};

/// The advisory lock changes of the signing keys take ("vigile" + 2).
const KEYS_LOCK: i64 = 0x0076_6967_696c_6502;

fn key_of(row: &Row) -> StoreResult<StoredKey> {
    let state: String = row.try_get("state")?;
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        algorithm: row.try_get("algorithm")?,
        state: KeyState::parse(&state)
            .ok_or_else(|| StoreError::Db(format!("signing_keys.state is {state}")))?,
        created_at: opt_uint(row, "created_at")?,
        deactivated_at: opt_uint(row, "deactivated_at")?,
        retired_at: opt_uint(row, "retired_at")?,
        material: row.try_get("material")?,
    })
}

const COLUMNS: &str = "kid, algorithm, state, created_at, deactivated_at, retired_at, material";

pub(super) async fn list(c: &impl GenericClient) -> StoreResult<Vec<StoredKey>> {
    query(
        c,
        &format!("SELECT {COLUMNS} FROM signing_keys ORDER BY kid"),
        &[],
    )
    .await?
    .iter()
    .map(key_of)
    .collect()
}

pub(super) async fn version(c: &impl GenericClient) -> StoreResult<u64> {
    let row = query_opt(c, "SELECT max(version) AS v FROM signing_keys", &[]).await?;
    Ok(match row {
        Some(row) => opt_uint(&row, "v")?.unwrap_or(0),
        None => 0,
    })
}

fn opt_int(value: Option<u64>) -> StoreResult<Option<i64>> {
    value.map(int).transpose()
}

pub(super) async fn update(
    txn: &Transaction<'_>,
    change: KeysChange<'_>,
) -> StoreResult<Vec<StoredKey>> {
    execute(txn, "SELECT pg_advisory_xact_lock($1)", &[&KEYS_LOCK]).await?;
    let before = list(txn).await?;
    let mut keys = before.clone();
    change(&mut keys);
    // Keys leaving `active` first: the unique index allows one at a time.
    keys.sort_by_key(|k| k.state == KeyState::Active);
    for key in &keys {
        if before.iter().any(|b| b == key) {
            continue;
        }
        execute(
            txn,
            "INSERT INTO signing_keys
                 (kid, algorithm, state, created_at, deactivated_at, retired_at, material, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, nextval('signing_keys_version'))
             ON CONFLICT (kid) DO UPDATE SET
                 algorithm = excluded.algorithm, state = excluded.state,
                 created_at = excluded.created_at, deactivated_at = excluded.deactivated_at,
                 retired_at = excluded.retired_at, material = excluded.material,
                 version = excluded.version",
            &[
                &key.kid,
                &key.algorithm,
                &key.state.as_str(),
                &opt_int(key.created_at)?,
                &opt_int(key.deactivated_at)?,
                &opt_int(key.retired_at)?,
                &key.material,
            ],
        )
        .await?;
    }
    list(txn).await
}

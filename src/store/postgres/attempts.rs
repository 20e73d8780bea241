//! The `attempts` table: throttle counters every replica shares (the login
//! limit per account, the reset limit per email), so that an attacker who
//! spreads attempts over replicas gets no more of them.
//!
//! An attempt is taken (counted) before its check runs and given back when
//! the check passes, as the in-memory `Throttle` does; a replica that dies
//! between the two leaves it counted, which errs on the side of refusing.
//! Windows are measured on the database's clock (`clock_timestamp()`), so
//! replicas whose clocks differ count one window.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};

use super::{execute, query_opt};
use crate::store::{StoreError, StoreResult};

/// The database's clock, in milliseconds.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The row's key: the SHA-256 of the throttled key.
fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn millis(window: Duration) -> StoreResult<i64> {
    i64::try_from(window.as_millis())
        .map_err(|_| StoreError::Db(format!("window {window:?} is out of range")))
}

/// Takes one attempt of `key` under `scope`: `None` when taken, or the
/// seconds until the window ends when `limit` attempts are counted already.
///
/// Each statement runs on its own (no transaction): a full row is left
/// alone by the `UPDATE`'s condition, which PostgreSQL checks again on the
/// row's latest version, so concurrent takers on any replica never count
/// past the limit.
pub(super) async fn take(
    c: &impl GenericClient,
    scope: &str,
    key: &str,
    limit: u32,
    window: Duration,
) -> StoreResult<Option<u64>> {
    let key = digest(key);
    let window = millis(window)?;
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    // Twice at most: a row another replica inserted between our UPDATE and
    // our INSERT is counted on the second pass.
    for _ in 0..2 {
        let taken = query_opt(
            c,
            &format!(
                "UPDATE attempts SET \
                   count = CASE WHEN expires_ms <= {NOW_MS} THEN 1 ELSE count + 1 END, \
                   expires_ms = CASE WHEN expires_ms <= {NOW_MS} THEN {NOW_MS} + $3 \
                                ELSE expires_ms END \
                 WHERE scope = $1 AND key = $2 AND (count < $4 OR expires_ms <= {NOW_MS}) \
                 RETURNING count"
            ),
            &[&scope, &key, &window, &limit],
        )
        .await?;
        if taken.is_some() {
            return Ok(None);
        }
        if limit == 0 {
            return Ok(Some(1));
        }
        let inserted = execute(
            c,
            &format!(
                "INSERT INTO attempts (scope, key, expires_ms, count) \
                 VALUES ($1, $2, {NOW_MS} + $3, 1) ON CONFLICT (scope, key) DO NOTHING"
            ),
            &[&scope, &key, &window],
        )
        .await?;
        if inserted == 1 {
            return Ok(None);
        }
        let full = query_opt(
            c,
            &format!(
                "SELECT expires_ms - {NOW_MS} AS wait_ms FROM attempts \
                 WHERE scope = $1 AND key = $2 AND count >= $3 AND expires_ms > {NOW_MS}"
            ),
            &[&scope, &key, &limit],
        )
        .await?;
        if let Some(row) = full {
            let wait_ms: i64 = row.try_get("wait_ms")?;
            let wait = u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000);
            return Ok(Some(wait.max(1)));
        }
    }
    // Still changing under us: another replica is counting this key right
    // now. Refusing for a second is the safe answer.
    Ok(Some(1))
}

/// Gives back an attempt taken by `take` (its check passed, or never ran).
pub(super) async fn give_back(c: &impl GenericClient, scope: &str, key: &str) -> StoreResult<()> {
    execute(
        c,
        "UPDATE attempts SET count = count - 1 WHERE scope = $1 AND key = $2 AND count > 0",
        &[&scope, &digest(key)],
    )
    .await?;
    Ok(())
}

/// Drops the rows whose window has ended.
pub(super) async fn purge(c: &impl GenericClient) -> StoreResult<u64> {
    execute(
        c,
        &format!("DELETE FROM attempts WHERE expires_ms <= {NOW_MS}"),
        &[],
    )
    .await
}

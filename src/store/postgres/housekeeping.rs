//! Row counts and the purge of what has expired, across the tables.

use deadpool_postgres::GenericClient;

use super::{execute, int, query_opt};
use crate::store::{StoreCounts, StoreError, StoreResult};

/// The rows of `table` (a name of this module's choosing, never input).
pub(super) async fn rows(c: &impl GenericClient, table: &'static str) -> StoreResult<u64> {
    let row = query_opt(c, &format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .ok_or_else(|| StoreError::Db("count(*) returned no row".into()))?;
    super::uint(&row, "count")
}

pub(super) async fn counts(c: &impl GenericClient) -> StoreResult<StoreCounts> {
    let row = query_opt(
        c,
        "SELECT (SELECT count(*) FROM accounts) AS accounts, \
                (SELECT count(*) FROM sessions) AS sessions, \
                (SELECT count(*) FROM revocations) AS revocations, \
                (SELECT count(*) FROM reset_tokens) AS reset_tokens",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Db("counts returned no row".into()))?;
    Ok(StoreCounts {
        accounts: super::uint(&row, "accounts")?,
        sessions: super::uint(&row, "sessions")?,
        revocations: super::uint(&row, "revocations")?,
        reset_tokens: super::uint(&row, "reset_tokens")?,
    })
}

/// Drops expired sessions, revocations and reset tokens; how many of each.
pub(super) async fn purge_expired(
    c: &impl GenericClient,
    now: u64,
) -> StoreResult<(usize, usize, usize)> {
    let now = int(now)?;
    let mut gone = [0; 3];
    for (n, sql) in gone.iter_mut().zip([
        // Sessions whose last refresh token has expired.
        "DELETE FROM sessions WHERE expires_at < $1",
        // Revocations no token can outlive any more.
        "DELETE FROM revocations WHERE until < $1",
        "DELETE FROM reset_tokens WHERE expires_at < $1",
    ]) {
        *n = execute(c, sql, &[&now]).await? as usize;
    }
    // The other system's refresh tokens, expired anyway.
    execute(
        c,
        "DELETE FROM legacy_tokens WHERE expires_at < $1",
        &[&now],
    )
    .await?;
    Ok((gone[0], gone[1], gone[2]))
}

//! Row counts and the purge of what has expired, across the tables.

use deadpool_postgres::GenericClient;

use super::{query_opt, reset_tokens, revocations, sessions};
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
    Ok((
        sessions::purge(c, now).await?,
        revocations::purge(c, now).await?,
        reset_tokens::purge(c, now).await?,
    ))
}

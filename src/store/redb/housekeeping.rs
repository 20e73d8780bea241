//! Row counts and the purge of what has expired, across the tables.

use redb::{Key, ReadTransaction, ReadableTableMetadata, TableDefinition, Value, WriteTransaction};

use super::{
    import, reset_tokens, revocations, sessions, ACCOUNTS, RESET_TOKENS, REVOKED, SESSIONS,
};
use crate::store::{StoreCounts, StoreResult};

pub(super) fn rows<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> StoreResult<u64> {
    Ok(txn.open_table(table)?.len()?)
}

pub(super) fn counts(txn: &ReadTransaction) -> StoreResult<StoreCounts> {
    Ok(StoreCounts {
        accounts: rows(txn, ACCOUNTS)?,
        sessions: rows(txn, SESSIONS)?,
        revocations: rows(txn, REVOKED)?,
        reset_tokens: rows(txn, RESET_TOKENS)?,
    })
}

/// Drops expired sessions, revocations and reset tokens (how many of
/// each), and the rows of expired legacy refresh tokens.
pub(super) fn purge_expired(
    txn: &WriteTransaction,
    now: u64,
) -> StoreResult<(usize, usize, usize)> {
    import::purge(txn, now)?;
    Ok((
        sessions::purge(txn, now)?,
        revocations::purge(txn, now)?,
        reset_tokens::purge(txn, now)?,
    ))
}

//! The `revoked` table: session id -> the unix time after which no token of
//! the session can be valid any more.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::REVOKED;
use crate::store::{Revocation, StoreResult};
use crate::tokens::SessionId;

pub(super) fn insert(txn: &WriteTransaction, revocations: &[Revocation]) -> StoreResult<()> {
    let mut table = txn.open_table(REVOKED)?;
    for (session, until) in revocations {
        table.insert(session.0, *until)?;
    }
    Ok(())
}

/// Revocations still in force at `now`.
pub(super) fn in_force(txn: &ReadTransaction, now: u64) -> StoreResult<Vec<Revocation>> {
    let table = txn.open_table(REVOKED)?;
    let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
    for row in table.iter()? {
        let (k, v) = row?;
        if v.value() >= now {
            out.push((SessionId(k.value()), v.value()));
        }
    }
    Ok(out)
}

/// Drops the revocations no token can outlive at `now`; how many went.
pub(super) fn purge(txn: &WriteTransaction, now: u64) -> StoreResult<usize> {
    let mut table = txn.open_table(REVOKED)?;
    let mut stale = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        if v.value() < now {
            stale.push(k.value());
        }
    }
    for id in &stale {
        table.remove(*id)?;
    }
    Ok(stale.len())
}

//! The `roles` table: role name -> creation time.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::ROLES;
use crate::store::StoreResult;

/// Creates the role; `false` when it already existed.
pub(super) fn create(txn: &WriteTransaction, name: &str, now: u64) -> StoreResult<bool> {
    let mut roles = txn.open_table(ROLES)?;
    if roles.get(name)?.is_some() {
        return Ok(false);
    }
    roles.insert(name, now)?;
    Ok(true)
}

pub(super) fn list(txn: &ReadTransaction) -> StoreResult<Vec<String>> {
    let mut out = Vec::new();
    for row in txn.open_table(ROLES)?.iter()? {
        let (k, _) = row?;
        out.push(k.value().to_string());
    }
    Ok(out)
}

pub(super) fn exists(txn: &ReadTransaction, name: &str) -> StoreResult<bool> {
    Ok(txn.open_table(ROLES)?.get(name)?.is_some())
}

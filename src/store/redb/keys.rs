//! The `signing_keys` table: kid -> JSON `StoredKey`, and the version a
//! change of it bumps (`META`, "signing_keys_version").

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::{each, get, put, META, SIGNING_KEYS};
use crate::store::{KeysChange, StoreResult};
use crate::tokens::StoredKey;

const VERSION: &str = "signing_keys_version";

pub(super) fn list(txn: &ReadTransaction) -> StoreResult<Vec<StoredKey>> {
    let mut out = Vec::new();
    each(&txn.open_table(SIGNING_KEYS)?, |_, key: StoredKey| {
        out.push(key)
    })?;
    Ok(out)
}

pub(super) fn version(txn: &ReadTransaction) -> StoreResult<u64> {
    Ok(txn.open_table(META)?.get(VERSION)?.map_or(0, |v| v.value()))
}

/// Applies `change` to every key; writes the rows it added or changed.
pub(super) fn update(
    txn: &WriteTransaction,
    change: KeysChange<'_>,
) -> StoreResult<Vec<StoredKey>> {
    let mut table = txn.open_table(SIGNING_KEYS)?;
    let mut keys = Vec::new();
    each(&table, |_, key: StoredKey| keys.push(key))?;
    let before = keys.clone();
    change(&mut keys);
    let mut changed = false;
    for key in &keys {
        let old: Option<StoredKey> = get(&table, key.kid.as_str())?;
        if old.as_ref() != Some(key) {
            put(&mut table, key.kid.as_str(), key)?;
            changed = true;
        }
    }
    drop(table);
    if changed {
        let mut meta = txn.open_table(META)?;
        let next = meta.get(VERSION)?.map_or(0, |v| v.value()) + 1;
        meta.insert(VERSION, next)?;
    }
    // Rows the change dropped from the list are kept: never deleted.
    let mut after = before;
    for key in keys {
        match after.iter_mut().find(|k| k.kid == key.kid) {
            Some(slot) => *slot = key,
            None => after.push(key),
        }
    }
    after.sort_by(|a, b| a.kid.cmp(&b.kid));
    Ok(after)
}

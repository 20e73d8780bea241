//! The revocation list the request path consults: memory only, O(1) per
//! lookup. The store holds the durable copy; this list is loaded from it at
//! start and updated by every revocation as it is committed.
//!
//! An entry lives until no token of its session can be valid any more (the
//! revocation time plus the access-token lifetime); `purge` drops the rest, so
//! the list never grows without bound.
//!
//! With a store shared by several replicas, the list also follows what the
//! others revoke (`store::Follow`), and `sync` says whether it is current:
//! past `store.max_staleness` without the database, a revoked token might
//! pass, and protected routes refuse instead (`is_stale`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::store::{Revocation, SyncStatus};
use crate::tokens::SessionId;

/// Session ids are 128 random bits: folding them is already a good hash.
#[derive(Default)]
struct RandomIdHasher(u64);

impl Hasher for RandomIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(buf);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}

/// A session id as two halves: a `u128` key would align each slot to 16 bytes
/// (32 bytes with its expiry instead of 24: a third more memory per entry).
type Key = (u64, u64);

fn key(session: SessionId) -> Key {
    ((session.0 >> 64) as u64, session.0 as u64)
}

type IdMap = HashMap<Key, u64, BuildHasherDefault<RandomIdHasher>>;

#[derive(Default)]
pub struct RevocationList {
    entries: RwLock<IdMap>,
    /// How current the list is (always, with a single-process store).
    pub sync: Arc<SyncStatus>,
}

impl RevocationList {
    pub fn new(initial: Vec<Revocation>) -> RevocationList {
        RevocationList::following(initial, Arc::default())
    }

    /// A list whose currency `sync` tracks (a store shared by replicas).
    pub fn following(initial: Vec<Revocation>, sync: Arc<SyncStatus>) -> RevocationList {
        let list = RevocationList {
            entries: RwLock::default(),
            sync,
        };
        list.insert_all(&initial);
        list
    }

    pub fn is_revoked(&self, session: SessionId) -> bool {
        self.entries.read().contains_key(&key(session))
    }

    /// Past `store.max_staleness` without the database (one atomic load).
    #[inline]
    pub fn is_stale(&self) -> bool {
        self.sync.is_stale()
    }

    pub fn insert_all(&self, revocations: &[Revocation]) {
        self.insert_each(revocations.iter().copied(), |_| {});
    }

    /// Inserts every revocation; `fresh(i)` for the `i`th when it was not
    /// in the list yet (one this replica did not know of).
    pub fn insert_each(
        &self,
        revocations: impl ExactSizeIterator<Item = Revocation>,
        mut fresh: impl FnMut(usize),
    ) {
        if revocations.len() == 0 {
            return;
        }
        let mut map = self.entries.write();
        // One allocation for the lot (a growing table holds two at once).
        map.reserve(revocations.len());
        for (i, (session, until)) in revocations.enumerate() {
            match map.entry(key(session)) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let entry = e.get_mut();
                    *entry = (*entry).max(until);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(until);
                    fresh(i);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the entries no token can outlive any more; returns how many.
    pub fn purge(&self, now: u64) -> usize {
        let mut map = self.entries.write();
        let before = map.len();
        map.retain(|_, until| *until >= now);
        before - map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_sessions_are_found_until_purged() {
        let list = RevocationList::new(vec![(SessionId(1), 100)]);
        list.insert_all(&[(SessionId(2), 200)]);
        assert!(list.is_revoked(SessionId(1)));
        assert!(list.is_revoked(SessionId(2)));
        assert!(!list.is_revoked(SessionId(3)));
        assert_eq!(list.purge(150), 1);
        assert!(!list.is_revoked(SessionId(1)));
        assert!(list.is_revoked(SessionId(2)));
        assert_eq!(list.len(), 1);
    }
}

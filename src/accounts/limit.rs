//! The limits the account endpoints apply, each counted where it must be:
//! in this process (`Throttle`), or in the store when the store is shared by
//! several replicas and the limit must hold across them (the login limit per
//! account and the reset limit per email on PostgreSQL: an attacker who
//! spreads attempts over replicas gets no more of them). Limits per client
//! address stay per process: an address reaches the replicas a load balancer
//! picks for it, and the README says so.
//!
//! `Attempts` reserves one attempt on several limits at once, all or none.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::throttle::{Attempt, Throttle};
use crate::store::{Store, StoreError};

/// One limit: at most `max` attempts per key and window.
pub enum Limit {
    Local(Throttle),
    Shared(Shared),
}

/// A limit counted in the store (`StoreBackend::take_attempt`).
pub struct Shared {
    store: Arc<Store>,
    /// The limit's name in the store (`login_account`, `reset_email`).
    scope: &'static str,
    /// Changed by a reload (`Limit::set`).
    max: AtomicU32,
    /// In milliseconds.
    window_ms: AtomicU64,
}

/// Why an attempt was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// The limit is reached: seconds to wait.
    Wait(u64),
    /// The shared counter could not be read or written.
    Store(StoreError),
}

impl Limit {
    /// A limit counted in the store when the store counts for every replica
    /// that uses it, in this process otherwise.
    pub fn new(store: &Arc<Store>, scope: &'static str, max: u32, window: Duration) -> Limit {
        if store.shares_attempts() {
            Limit::Shared(Shared {
                store: store.clone(),
                scope,
                max: AtomicU32::new(max),
                window_ms: AtomicU64::new(millis(window)),
            })
        } else {
            Limit::Local(Throttle::new(max, window))
        }
    }

    /// New limits (a reload): what is counted so far stays counted.
    pub fn set(&self, max: u32, window: Duration) {
        match self {
            Limit::Local(throttle) => throttle.set(max, window),
            Limit::Shared(shared) => {
                shared.max.store(max, Ordering::Relaxed);
                shared.window_ms.store(millis(window), Ordering::Relaxed);
            }
        }
    }

    fn reserve<'a>(&'a self, key: &str) -> Result<Held<'a>, Refusal> {
        match self {
            Limit::Local(throttle) => throttle
                .reserve(key)
                .map(Held::Local)
                .map_err(Refusal::Wait),
            Limit::Shared(shared) => {
                let max = shared.max.load(Ordering::Relaxed);
                let window = Duration::from_millis(shared.window_ms.load(Ordering::Relaxed));
                match shared.store.take_attempt(shared.scope, key, max, window) {
                    Ok(None) => Ok(Held::Shared {
                        shared,
                        key: key.to_string(),
                    }),
                    Ok(Some(wait)) => Err(Refusal::Wait(wait)),
                    Err(e) => Err(Refusal::Store(e)),
                }
            }
        }
    }
}

fn millis(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

/// One attempt taken on one limit.
enum Held<'a> {
    Local(Attempt<'a>),
    /// Counted in the store from the start: dropped unsettled (a failed
    /// check), it stays counted; given back when the check passes.
    Shared {
        shared: &'a Shared,
        key: String,
    },
}

impl Held<'_> {
    /// The check passed (or never ran): the attempt is given back; with
    /// `clear`, the failures of a local key are forgotten too.
    fn give_back(self, clear: bool) {
        match self {
            Held::Local(attempt) => attempt.success(clear),
            Held::Shared { shared, key } => {
                if let Err(e) = shared.store.give_back_attempt(shared.scope, &key) {
                    // Left counted: the limit errs towards refusing.
                    tracing::warn!(scope = shared.scope, error = %e, "throttle: attempt not given back");
                }
            }
        }
    }
}

/// Attempts reserved on several limits at once: all of them, or none.
/// Dropped unsettled, they all count as failures.
pub struct Attempts<'a> {
    held: Vec<Held<'a>>,
}

impl<'a> Attempts<'a> {
    /// Reserves each `(limit, key)` in turn; on the first refusal, gives
    /// back what was taken. Put shared limits last: a local refusal then
    /// costs no call to the store.
    pub fn reserve(keys: &[(&'a Limit, &str)]) -> Result<Attempts<'a>, Refusal> {
        let mut held = Vec::with_capacity(keys.len());
        for (limit, key) in keys {
            match limit.reserve(key) {
                Ok(attempt) => held.push(attempt),
                Err(refusal) => {
                    held.into_iter().for_each(|h| h.give_back(false));
                    return Err(refusal);
                }
            }
        }
        Ok(Attempts { held })
    }

    /// The check failed: counted on every limit.
    pub fn failure(self) {}

    /// The check passed: every attempt is given back, and the failures of the
    /// first limit (the narrowest key: one account from one address) are
    /// forgotten.
    pub fn success(self) {
        for (i, attempt) in self.held.into_iter().enumerate() {
            attempt.give_back(i == 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(max: u32, window: Duration) -> Limit {
        Limit::Local(Throttle::new(max, window))
    }

    fn reserve<'a>(keys: &[(&'a Limit, &str)]) -> Option<Attempts<'a>> {
        Attempts::reserve(keys).ok()
    }

    #[test]
    fn a_refusal_on_one_key_gives_the_others_back() {
        let pair = local(5, Duration::from_secs(60));
        let ip = local(1, Duration::from_secs(60));
        let first = reserve(&[(&pair, "a|ip"), (&ip, "ip")]).expect("first");
        assert!(matches!(
            Attempts::reserve(&[(&pair, "a|ip"), (&ip, "ip")]),
            Err(Refusal::Wait(_))
        ));
        first.failure();
        // The refused attempt was not counted on the pair: 4 slots remain.
        for _ in 0..4 {
            reserve(&[(&pair, "a|ip")]).expect("slot").failure();
        }
        assert!(reserve(&[(&pair, "a|ip")]).is_none());
    }

    #[test]
    fn an_attempt_dropped_on_an_error_path_counts_and_does_not_stay_in_flight() {
        let t = local(2, Duration::from_millis(100));
        let attempts = reserve(&[(&t, "k")]).expect("slot");
        drop(attempts);
        reserve(&[(&t, "k")]).expect("second").failure();
        assert!(reserve(&[(&t, "k")]).is_none());
        std::thread::sleep(Duration::from_millis(150));
        assert!(reserve(&[(&t, "k")]).is_some(), "nothing left in flight");
    }

    #[test]
    fn a_redb_store_keeps_its_limits_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<Store> = Arc::new(
            crate::store::redb::RedbStore::open(&dir.path().join("s.redb"), 300).expect("open"),
        );
        let limit = Limit::new(&store, "login_account", 1, Duration::from_secs(60));
        assert!(matches!(limit, Limit::Local(_)));
    }
}

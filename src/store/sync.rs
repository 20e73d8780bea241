//! Replicas on one shared store: what a replica follows of the revocations
//! the others write (`StoreBackend::follow`), and how current its view is
//! (`SyncStatus`).
//!
//! A single-process store (redb) has nothing to follow: every revocation is
//! written by this process, which puts it in its own list as it commits.
//! Its status is always current.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Revocation;

/// A revocation as the shared store numbered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedRevocation {
    /// Grows with every revocation written, in commit order.
    pub seq: u64,
    pub revocation: Revocation,
    /// When it was written on the origin (the database's clock), unix
    /// microseconds.
    pub recorded_at_us: u64,
}

/// Receives the revocations written by every replica, in `seq` order (this
/// replica's own included, again: applying one twice changes nothing).
pub type ApplyRevocations = Box<dyn Fn(&[SequencedRevocation]) + Send + Sync>;

/// What `StoreBackend::follow` needs.
pub struct Follow {
    /// The newest sequence number already applied (`revocation_seq` read
    /// before the revocations were loaded).
    pub from_seq: u64,
    /// `store.sync_interval`: a catch-up poll besides the notifications.
    pub sync_interval: Duration,
    pub apply: ApplyRevocations,
    pub status: std::sync::Arc<SyncStatus>,
}

/// How current this replica's view of the shared store is. Written by the
/// follower; read by the request path (`is_stale`, one atomic load),
/// `/readyz` and the metrics.
pub struct SyncStatus {
    /// `store.max_staleness`.
    max_staleness: Duration,
    start: Instant,
    /// Milliseconds since `start` of the last successful sync.
    last_ok_ms: AtomicU64,
    up: AtomicBool,
    stale: AtomicBool,
    /// Why the last sync failed, for `/readyz` and the logs.
    last_error: Mutex<Option<String>>,
}

impl Default for SyncStatus {
    /// Never stale (a single-process store).
    fn default() -> SyncStatus {
        SyncStatus::new(Duration::MAX)
    }
}

impl SyncStatus {
    /// Up and current as of now (the store was just read).
    pub fn new(max_staleness: Duration) -> SyncStatus {
        SyncStatus {
            max_staleness,
            start: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
            up: AtomicBool::new(true),
            stale: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A sync succeeded: the view is current.
    pub fn synced(&self) {
        self.last_ok_ms.store(self.elapsed_ms(), Ordering::Release);
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("store: the database is reachable again; revocations caught up");
        }
        self.stale.store(false, Ordering::Release);
        *self.last_error.lock() = None;
    }

    /// A sync failed (the database unreachable, the connection lost).
    pub fn failed(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = why, "store: lost the database; retrying");
        }
        *self.last_error.lock() = Some(why.to_string());
        self.check();
    }

    /// Marks the view stale once no sync has succeeded for longer than
    /// `max_staleness`. Called often by a timer of the follower's own, so
    /// that a hung call cannot keep a stale view looking current.
    pub fn check(&self) {
        let since = self
            .elapsed_ms()
            .saturating_sub(self.last_ok_ms.load(Ordering::Acquire));
        if Duration::from_millis(since) > self.max_staleness
            && !self.stale.swap(true, Ordering::AcqRel)
        {
            tracing::error!(
                max_staleness = ?self.max_staleness,
                "store: no sync with the database for longer than store.max_staleness: \
                 protected routes answer 503 until it returns"
            );
        }
    }

    /// Past `max_staleness` without a sync: a revoked token might pass, so
    /// protected routes refuse. One atomic load (the request path).
    #[inline]
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Whether the last sync succeeded (`vigile_store_up`).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Why the last sync failed, while it is failing.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// How often `check` should run: often enough that the view turns stale
    /// within a tenth of `max_staleness` of the deadline (at most every
    /// 250 ms).
    pub fn check_every(&self) -> Duration {
        (self.max_staleness / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_goes_stale_past_max_staleness_and_recovers_on_sync() {
        let status = SyncStatus::new(Duration::from_millis(30));
        status.check();
        assert!(!status.is_stale() && status.is_up());
        status.failed("down");
        assert!(!status.is_up());
        std::thread::sleep(Duration::from_millis(50));
        status.check();
        assert!(status.is_stale());
        assert_eq!(status.last_error().as_deref(), Some("down"));
        status.synced();
        assert!(!status.is_stale() && status.is_up() && status.last_error().is_none());
        assert!(!SyncStatus::default().is_stale());
    }
}

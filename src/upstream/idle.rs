//! Idle connections of the direct path (`proxy/forward.rs`), per target
//! and per thread, and their counters.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::Stream;
use prometheus::{IntCounter, IntCounterVec};

/// Most idle connections kept per target.
const MAX_IDLE: usize = 128;
/// Longest a connection stays idle in the pool, unless the upstream's
/// `Keep-Alive: timeout=N` says less.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Given up on an upstream's keep-alive timeout, so that the connection is
/// not reused just as the upstream closes it.
const IDLE_MARGIN: Duration = Duration::from_millis(500);
/// The `vigile_upstream_connections_total` counters of one upstream,
/// resolved once.
#[derive(Clone)]
pub struct ConnectionEvents {
    pub opened: IntCounter,
    pub reused: IntCounter,
    pub stale: IntCounter,
}

impl ConnectionEvents {
    pub fn new(counters: &IntCounterVec, upstream: &str) -> ConnectionEvents {
        let event = |name| counters.with_label_values(&[upstream, name]);
        ConnectionEvents {
            opened: event("opened"),
            reused: event("reused"),
            stale: event("stale"),
        }
    }
}

/// Idle connections to one target, kept per thread, the most recently used
/// last. Under Pingora's default runtime (one per thread, no work stealing) a
/// connection belongs to the I/O driver of the thread that opened it: used
/// from another thread, each of its events would first wake that thread.
pub struct IdleConnections {
    /// Index of this target's list in each thread's `IDLE`.
    id: usize,
}

/// An idle connection: Pingora's stream, a duplicate of its socket (to
/// look at it without reading), and when it expires.
pub struct Pooled {
    pub stream: Stream,
    pub socket: OwnedFd,
    pub expires: Instant,
}

type Idle = VecDeque<Pooled>;

/// Whether nothing waits on an idle connection: no unsolicited byte (a
/// late answer, a body after a HEAD answer, bytes past a Content-Length),
/// no end of stream, no error. Anything read from it now could only be
/// taken for the next request's answer, so such a connection is closed.
/// One `recv(MSG_PEEK)` on the non-blocking socket.
fn is_quiet(socket: &OwnedFd) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit()];
    match socket2::SockRef::from(socket).peek(&mut byte) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

thread_local! {
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl Default for IdleConnections {
    fn default() -> Self {
        IdleConnections {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl IdleConnections {
    /// Runs `f` on this thread's idle list of this target; what it returns
    /// is dropped (connections closed) after the list is released.
    fn with<R>(&self, f: impl FnOnce(&mut Idle) -> R) -> R {
        IDLE.with_borrow_mut(|lists| {
            if lists.len() <= self.id {
                lists.resize_with(self.id + 1, VecDeque::new);
            }
            match lists.get_mut(self.id) {
                Some(idle) => f(idle),
                None => f(&mut VecDeque::new()),
            }
        })
    }

    /// The most recently used idle connection that has not expired and on
    /// which nothing waits; the others met on the way are closed (counted
    /// as stale).
    pub fn take(&self, stale: &IntCounter) -> Option<Pooled> {
        let now = Instant::now();
        let mut closed = Vec::new();
        let found = self.with(|idle| {
            while let Some(pooled) = idle.pop_back() {
                if pooled.expires <= now {
                    // The others are older still (expiry times come in
                    // order unless the upstream changes its keep-alive
                    // timeout).
                    closed.push(pooled);
                    closed.extend(std::mem::take(idle));
                    return None;
                }
                if is_quiet(&pooled.socket) {
                    return Some(pooled);
                }
                stale.inc();
                closed.push(pooled);
            }
            None
        });
        drop(closed);
        found
    }

    pub fn put(&self, pooled: Pooled) {
        let now = Instant::now();
        let _evicted = self.with(|idle| {
            let mut evicted = Vec::new();
            while idle
                .front()
                .is_some_and(|p| p.expires <= now || idle.len() >= MAX_IDLE)
            {
                evicted.extend(idle.pop_front());
            }
            idle.push_back(pooled);
            evicted
        });
    }

    /// Drops this thread's idle connections: one was found closed by the
    /// upstream (a restart, or its keep-alive timeout), so the older ones are
    /// too.
    pub fn clear(&self) {
        let _all = self.with(std::mem::take);
    }
}

/// How long a connection may stay idle after this answer: the upstream's
/// `Keep-Alive: timeout=N` less a margin, at most `IDLE_LIMIT`.
pub fn idle_time(upstream: &UpstreamSession) -> Duration {
    let announced = upstream
        .get_header("keep-alive")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("timeout"))
                .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        });
    match announced {
        Some(seconds) => Duration::from_secs(seconds)
            .saturating_sub(IDLE_MARGIN)
            .min(IDLE_LIMIT),
        None => IDLE_LIMIT,
    }
}

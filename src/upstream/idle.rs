//! Idle connections of the direct path (`proxy/forward.rs`), per target
//! and per thread, their count across the process, and their counters.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{recv, MsgFlags};

use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::Stream;
use prometheus::{IntCounter, IntCounterVec};

/// Most idle connections kept per target and thread.
const MAX_IDLE: usize = 128;
/// Idle connections open now in the whole process, and how many may be
/// (`set_process_limit`, from the open-file budget; unlimited until set).
static IDLE_OPEN: AtomicUsize = AtomicUsize::new(0);
static IDLE_LIMIT_TOTAL: AtomicUsize = AtomicUsize::new(usize::MAX);
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
///
/// Each thread has its own slot (`THREAD_SLOT`), so its lock is never
/// contended (past `SLOTS` threads, two threads share one). The lists
/// belong to the target's pool: when a reload drops the pool, its idle
/// connections close with it.
pub struct IdleConnections {
    slots: Box<[parking_lot::Mutex<Idle>]>,
}

/// Slots per target: one per thread, up to this many threads.
const SLOTS: usize = 64;

/// An idle connection: Pingora's stream, the number of its socket (to look
/// at it without reading; the stream owns the socket, so the number names
/// it as long as the stream lives), and when it expires.
pub struct Pooled {
    pub stream: Stream,
    pub fd: RawFd,
    pub expires: Instant,
}

/// A pooled connection, counted in `IDLE_OPEN` until it leaves the pool.
struct Entry {
    pooled: Pooled,
    _slot: IdleSlot,
}

struct IdleSlot;

impl IdleSlot {
    fn take() -> Option<IdleSlot> {
        let limit = IDLE_LIMIT_TOTAL.load(Ordering::Relaxed);
        IDLE_OPEN
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| IdleSlot)
    }
}

impl Drop for IdleSlot {
    fn drop(&mut self) {
        IDLE_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sets how many idle connections the direct path may keep in the whole
/// process (all targets and threads): they hold descriptors that no client
/// connection accounts for, so the open-file budget counts them.
pub fn set_process_limit(limit: usize) {
    IDLE_LIMIT_TOTAL.store(limit, Ordering::Relaxed);
}

type Idle = VecDeque<Entry>;

/// Whether nothing waits on an idle connection: no unsolicited byte (a
/// late answer, a body after a HEAD answer, bytes past a Content-Length),
/// no end of stream, no error. Anything read from it now could only be
/// taken for the next request's answer, so such a connection is closed.
/// One `recv(MSG_PEEK | MSG_DONTWAIT)` on the socket: the kernel's queue as
/// it is now. (The runtime's readiness flag would spare that system call,
/// but it is only as fresh as the reactor's last turn: bytes that came
/// just after the previous answer, on the connection most recently pooled,
/// would not show yet, and a task out of budget reads nothing. The direct
/// path's connections are plain TCP with no read buffer above the socket,
/// so the socket is all there is to look at.)
fn is_quiet(fd: RawFd) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
        Err(nix::errno::Errno::EAGAIN)
    )
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot in every target's lists.
    static THREAD_SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

impl Default for IdleConnections {
    fn default() -> Self {
        IdleConnections {
            slots: (0..SLOTS)
                .map(|_| parking_lot::Mutex::new(VecDeque::new()))
                .collect(),
        }
    }
}

impl IdleConnections {
    /// Runs `f` on this thread's idle list of this target; what it returns
    /// is dropped (connections closed) after the list is released.
    fn with<R>(&self, f: impl FnOnce(&mut Idle) -> R) -> R {
        let slot = THREAD_SLOT.with(|slot| *slot);
        match self.slots.get(slot) {
            Some(idle) => f(&mut idle.lock()),
            None => f(&mut VecDeque::new()),
        }
    }

    /// The most recently used idle connection that has not expired and on
    /// which nothing waits; the others met on the way are closed (counted
    /// as stale).
    pub fn take(&self, stale: &IntCounter) -> Option<Pooled> {
        let now = Instant::now();
        let mut closed = Vec::new();
        let found = self.with(|idle| {
            while let Some(entry) = idle.pop_back() {
                if entry.pooled.expires <= now {
                    // The others are older still (expiry times come in
                    // order unless the upstream changes its keep-alive
                    // timeout).
                    closed.push(entry);
                    closed.extend(std::mem::take(idle));
                    return None;
                }
                if is_quiet(entry.pooled.fd) {
                    return Some(entry.pooled);
                }
                stale.inc();
                closed.push(entry);
            }
            None
        });
        drop(closed);
        found
    }

    /// Keeps `pooled` for a later request; closes it instead when the
    /// process already keeps as many idle connections as it may.
    pub fn put(&self, pooled: Pooled) {
        let Some(slot) = IdleSlot::take() else {
            return;
        };
        let entry = Entry {
            pooled,
            _slot: slot,
        };
        let now = Instant::now();
        let _evicted = self.with(|idle| {
            let mut evicted = Vec::new();
            while idle
                .front()
                .is_some_and(|e| e.pooled.expires <= now || idle.len() >= MAX_IDLE)
            {
                evicted.extend(idle.pop_front());
            }
            idle.push_back(entry);
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connection to a peer on loopback, and the peer's end.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (ours.expect("connect"), theirs.expect("accept").0)
    }

    /// Whether `is_quiet` says no within half a second, asked again every
    /// 5 ms without yielding to the reactor: what the kernel holds, not
    /// what the runtime last heard of.
    fn soon_not_quiet(fd: RawFd) -> bool {
        (0..100).any(|_| {
            let seen = !is_quiet(fd);
            if !seen {
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    }

    #[tokio::test]
    async fn a_connection_is_quiet_until_its_peer_sends_or_closes() {
        let (ours, mut peer) = pair().await;
        assert!(is_quiet(ours.as_raw_fd()), "nothing sent yet");
        assert!(is_quiet(ours.as_raw_fd()), "looking reads nothing");
        peer.write_all(b"HTTP/1.1 200 OK\r\n").await.expect("write");
        assert!(soon_not_quiet(ours.as_raw_fd()), "an unsolicited byte");

        let (ours, peer) = pair().await;
        drop(peer);
        assert!(soon_not_quiet(ours.as_raw_fd()), "the peer's close");
    }
}

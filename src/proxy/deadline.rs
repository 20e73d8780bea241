//! The answer-head deadline on Pingora's path.
//!
//! Pingora's `read_timeout` bounds each read, not the whole answer head: an
//! upstream that trickles its head a byte at a time, or sends `1xx` answers
//! one after the other, holds the request for as long as it likes. The direct
//! path (`forward.rs`) wraps the whole exchange in one timeout; Pingora's path
//! gives no such handle, only the connection's file descriptor
//! (`connected_to_upstream`). So once the request has been sent whole, a timer
//! starts; if the final answer head has not arrived when it fires, it shuts
//! the connection down, Pingora's read fails, and the request answers 504
//! `upstream_timeout` (not retried, the connection not reused).
//!
//! The deadline is the request's, not an attempt's: it is set once, and a
//! retry (on another connection) gets what is left of it.
//!
//! It must run from when the upstream has the whole request. Pingora gives no
//! hook after its last write to the upstream, only `request_body_filter` when
//! the last byte of the body is read from the client, which can be long
//! before a slow upstream has taken it all (a 4 MiB upload at 1 MiB/s). So
//! when the timer fires, it first looks at the socket's send queue
//! (`send_queue.rs`): while the kernel still holds bytes of the request that
//! the upstream has not acknowledged, the upstream is still receiving, and
//! the timer looks again every [`poll_every`] instead of cutting. Once the
//! queue is empty, the deadline runs again, whole, from then. An upstream
//! that takes nothing of what waits for a whole `read_timeout` (stalled) is
//! cut as late as any other.
//!
//! Pingora's own per-read `read_timeout` has the same fault: its read of the
//! answer head starts again after each write of the body, so it runs from
//! the last write, when the kernel took the last bytes. For a request with a
//! body it is turned off (`upstream_peer`), and the timer here bounds the
//! reads instead: the head as above, then (the answer watch) each wait for
//! answer bytes, `read_timeout` since the last ones went through, not
//! counting the time the client takes to read them (a write to the client
//! waits, or bytes wait unread in the upstream socket: the client's write
//! timeout bounds that).
//!
//! The descriptor is only a number: the timer acts on it only while the
//! request still holds the connection (it is disarmed when the head arrives,
//! the attempt fails or the request ends) and only if the socket still has
//! the local and peer addresses it had when the timer started, so that a
//! number reused by another connection is never touched.

use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{getpeername, getsockname, shutdown, Shutdown, SockaddrStorage};
use tokio::time::Instant;

use super::send_queue;

/// The connection a timer may shut down.
struct Armed {
    fd: RawFd,
    local: SocketAddr,
    peer: SocketAddr,
}

impl Armed {
    /// The connection `fd`, whose addresses are `known` (Pingora's digest
    /// of the connection keeps them: no system call per request), or asked.
    fn of(fd: RawFd, known: Option<(SocketAddr, SocketAddr)>) -> Option<Armed> {
        let (local, peer) = match known {
            Some(addresses) => addresses,
            None => (inet(getsockname(fd).ok()?)?, inet(getpeername(fd).ok()?)?),
        };
        Some(Armed { fd, local, peer })
    }

    /// Whether `fd` still names this connection.
    fn still_there(&self) -> bool {
        getsockname(self.fd).ok().and_then(inet) == Some(self.local)
            && getpeername(self.fd).ok().and_then(inet) == Some(self.peer)
    }
}

/// An IPv4 or IPv6 socket address.
fn inet(address: SockaddrStorage) -> Option<SocketAddr> {
    match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
        (Some(v4), _) => Some(SocketAddr::V4((*v4).into())),
        (_, Some(v6)) => Some(SocketAddr::V6((*v6).into())),
        _ => None,
    }
}

/// What one timer shares with the request: the connection it may shut down
/// (taken away when the timer is disarmed), the phase, when the head is due
/// (pushed back while the upstream still receives the request), when bytes
/// last went through (of the client's body, then of the answer), and
/// whether it cut.
struct Shared {
    armed: Mutex<Option<Armed>>,
    phase: AtomicU8,
    until: Mutex<Instant>,
    /// When bytes last went through, in ms since `base`.
    base: Instant,
    last_bytes_ms: AtomicU64,
    /// Whether a write to the client waits now (its connection's flag).
    client_writing: Option<Arc<AtomicBool>>,
    fired: AtomicBool,
}

/// The request is going out (its body arriving from the client).
const SENDING: u8 = 0;
/// The request went out whole: the head is due.
const HEAD: u8 = 1;
/// The head arrived: the answer's body comes.
const BODY: u8 = 2;

impl Shared {
    fn mark_bytes(&self) {
        let ms = self.base.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
        self.last_bytes_ms.store(ms, Ordering::Relaxed);
    }

    fn last_bytes(&self) -> Instant {
        self.base + Duration::from_millis(self.last_bytes_ms.load(Ordering::Relaxed))
    }

    fn until(&self) -> Instant {
        self.until.lock().map_or_else(|_| Instant::now(), |u| *u)
    }
}

/// How often a timer looks again at queues that are not empty: a quarter of
/// the limit, between 50 ms and 1 s.
fn poll_every(limit: Duration) -> Duration {
    (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Whether the upstream still takes the request: the send queue (`unsent`
/// bytes now) has changed within `limit`; `receiving` keeps the last look
/// and since when the queue has stood still.
fn still_moving(
    receiving: &mut Option<(u64, Instant)>,
    unsent: u64,
    now: Instant,
    limit: Duration,
) -> bool {
    let since = match *receiving {
        Some((before, since)) if unsent == before => since,
        _ => now,
    };
    *receiving = Some((unsent, since));
    now.saturating_duration_since(since) < limit
}

/// What a timer does when it wakes.
enum Next {
    Sleep(Instant),
    Cut,
}

/// The timer of one attempt, `limit` being `read_timeout`:
/// - while the request goes out (`SENDING`): as long as the upstream takes
///   what the kernel holds for it, or the client's body keeps coming (bytes
///   within `limit`), it waits;
/// - until the final head (`HEAD`): it sleeps until the head is due; then,
///   while the upstream is still taking the request, it waits, and restarts
///   the deadline once the upstream has it all;
/// - after the head (`BODY`, the answer watch): it sleeps until `limit` has
///   passed since answer bytes last went through; then waits while the
///   client, not the upstream, holds them up (a write to the client waits,
///   or bytes wait unread in the upstream socket).
///
/// Past that (an upstream that takes nothing of the request, or answers
/// nothing, for a whole `limit`), it shuts the connection down.
async fn run_timer(shared: Arc<Shared>, limit: Duration) {
    let mut due = shared.until();
    // The send queue at the last look, and since when it has not changed
    // (it goes down as the upstream takes bytes, up as Pingora writes more).
    let mut receiving: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep_until(due).await;
        let Ok(mut armed) = shared.armed.lock() else {
            return;
        };
        let Some(connection) = armed.as_ref() else {
            return;
        };
        if !connection.still_there() {
            armed.take();
            return;
        }
        let now = Instant::now();
        let queues = || {
            send_queue::queues(
                &SockaddrStorage::from(connection.local),
                &SockaddrStorage::from(connection.peer),
            )
        };
        let next = match shared.phase.load(Ordering::Acquire) {
            SENDING => match queues().map(|q| q.unsent) {
                Some(unsent) if unsent > 0 => {
                    if still_moving(&mut receiving, unsent, now, limit) {
                        Next::Sleep(now + poll_every(limit))
                    } else {
                        Next::Cut
                    }
                }
                // The upstream has what was written: the client's body is
                // what is missing.
                _ => {
                    receiving = None;
                    let quiet_until = shared.last_bytes() + limit;
                    if now < quiet_until {
                        Next::Sleep(quiet_until)
                    } else {
                        Next::Cut
                    }
                }
            },
            HEAD => {
                let until = shared.until();
                if now < until {
                    Next::Sleep(until)
                } else {
                    match (queues().map(|q| q.unsent), receiving) {
                        (Some(unsent), _) if unsent > 0 => {
                            if still_moving(&mut receiving, unsent, now, limit) {
                                Next::Sleep(now + poll_every(limit))
                            } else {
                                Next::Cut
                            }
                        }
                        // It has the whole request now: the deadline starts
                        // again.
                        (_, Some(_)) => {
                            receiving = None;
                            if let Ok(mut until) = shared.until.lock() {
                                *until = now + limit;
                            }
                            Next::Sleep(now + limit)
                        }
                        _ => Next::Cut,
                    }
                }
            }
            _ => {
                let idle_until = shared.last_bytes() + limit;
                let client_slow = || {
                    shared
                        .client_writing
                        .as_ref()
                        .is_some_and(|w| w.load(Ordering::Relaxed))
                };
                if now < idle_until {
                    Next::Sleep(idle_until)
                } else if client_slow() || queues().is_some_and(|q| q.unread > 0) {
                    Next::Sleep(now + poll_every(limit))
                } else {
                    Next::Cut
                }
            }
        };
        match next {
            Next::Sleep(at) => due = at,
            Next::Cut => {
                if let Some(connection) = armed.take() {
                    shared.fired.store(true, Ordering::Release);
                    // Pingora's pending read sees the end of the stream.
                    let _ = shutdown(connection.fd, Shutdown::Both);
                }
                return;
            }
        }
    }
}

/// One request's answer-head deadline (Pingora's path), and, for a request
/// with a body, whose per-read `read_timeout` Pingora does not apply
/// (`watch_answer`), the bounds on the waits before (the body going out)
/// and after it (each wait for answer bytes).
#[derive(Default)]
pub struct HeadDeadline {
    /// The upstream connection of the current attempt, and its addresses
    /// when known.
    fd: Option<(RawFd, Option<(SocketAddr, SocketAddr)>)>,
    /// When the answer head is due: set once, when the request first went
    /// out whole (pushed back while the upstream still received it).
    until: Option<Instant>,
    /// `read_timeout`, once known.
    limit: Duration,
    /// The whole exchange is watched (a request with a body), with the
    /// client connection's flag of a waiting write.
    answer_watch: Option<Option<Arc<AtomicBool>>>,
    /// The timer of the current attempt.
    shared: Option<Arc<Shared>>,
    timer: Option<tokio::task::AbortHandle>,
    /// A timer of an earlier attempt fired.
    fired: bool,
}

impl HeadDeadline {
    /// Pingora will not bound this request's reads from the upstream (its
    /// `read_timeout` is off, so that the wait for the head can start when
    /// the upstream has the whole request): the timer bounds them, from the
    /// connection on (see `run_timer`), not counting the time the client
    /// (whose connection flags its waiting writes in `client_writing`) takes
    /// to read the answer.
    pub fn watch_answer(&mut self, limit: Duration, client_writing: Option<Arc<AtomicBool>>) {
        self.limit = limit;
        self.answer_watch = Some(client_writing);
    }

    /// A connection to the upstream is in use. On a retry the deadline is
    /// already running: it goes on, on this connection. A request with a
    /// body is watched from now on, while its body goes out.
    pub fn connected(&mut self, fd: RawFd, addresses: Option<(SocketAddr, SocketAddr)>) {
        self.disarm();
        self.fd = Some((fd, addresses));
        if self.until.is_some() {
            self.arm(HEAD);
        } else if self.answer_watch.is_some() {
            self.arm(SENDING);
        }
    }

    /// Bytes of the client's body arrived (and go to the upstream).
    pub fn body_arrives(&self) {
        if let Some(shared) = &self.shared {
            if shared.phase.load(Ordering::Relaxed) == SENDING {
                shared.mark_bytes();
            }
        }
    }

    /// The request went out whole: the answer head must arrive within
    /// `limit`, from the first time only (a retry sends it again within
    /// what is left).
    pub fn start(&mut self, limit: Duration) {
        let until = *self.until.get_or_insert_with(|| Instant::now() + limit);
        self.limit = limit;
        match &self.shared {
            Some(shared) if shared.phase.load(Ordering::Acquire) == SENDING => {
                if let Ok(mut due) = shared.until.lock() {
                    *due = until;
                }
                shared.phase.store(HEAD, Ordering::Release);
            }
            _ => self.arm(HEAD),
        }
    }

    /// The final answer head arrived: the head's deadline is over; the
    /// answer's body is watched from now on, if it is to be.
    pub fn head_arrived(&mut self) {
        if self.answer_watch.is_none() {
            self.disarm();
            return;
        }
        match &self.shared {
            Some(shared) => {
                shared.mark_bytes();
                shared.phase.store(BODY, Ordering::Release);
            }
            None => self.arm(BODY),
        }
    }

    /// Answer bytes went through; the answer is over at its end.
    pub fn answer_bytes(&mut self, end: bool) {
        if end {
            self.disarm();
        } else if let Some(shared) = &self.shared {
            shared.mark_bytes();
        }
    }

    /// Time left before the head's deadline, once it is set.
    pub fn remaining(&self) -> Option<Duration> {
        self.until?;
        let current = self
            .shared
            .as_ref()
            .filter(|s| s.phase.load(Ordering::Acquire) == HEAD)
            .map(|s| s.until());
        current
            .or(self.until)
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// Starts the timer of the current connection in `phase`.
    fn arm(&mut self, phase: u8) {
        self.disarm();
        let now = Instant::now();
        let until = match (phase, self.until) {
            (HEAD, Some(until)) => until,
            (HEAD, None) => return,
            _ => now + self.limit,
        };
        let Some(armed) = self.fd.and_then(|(fd, known)| Armed::of(fd, known)) else {
            return;
        };
        let shared = Arc::new(Shared {
            armed: Mutex::new(Some(armed)),
            phase: AtomicU8::new(phase),
            until: Mutex::new(until),
            base: now,
            last_bytes_ms: AtomicU64::new(0),
            client_writing: self.answer_watch.clone().flatten(),
            fired: AtomicBool::new(false),
        });
        let task = tokio::spawn(run_timer(Arc::clone(&shared), self.limit));
        self.timer = Some(task.abort_handle());
        self.shared = Some(shared);
    }

    /// The answer is over, the attempt failed, or the request ended: the
    /// timer may no longer touch the connection.
    pub fn disarm(&mut self) {
        if let Some(shared) = self.shared.take() {
            if let Ok(mut armed) = shared.armed.lock() {
                armed.take();
            }
            if shared.phase.load(Ordering::Acquire) == HEAD {
                self.until = Some(shared.until());
            }
            self.fired |= shared.fired.load(Ordering::Acquire);
        }
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }

    /// Whether the deadline passed (a connection was shut down for it).
    pub fn expired(&self) -> bool {
        self.fired
            || self
                .shared
                .as_ref()
                .is_some_and(|s| s.fired.load(Ordering::Acquire))
    }
}

impl Drop for HeadDeadline {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::io::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn a_late_head_shuts_the_connection_down() {
        let (client, mut server) = pair();
        let mut deadline = HeadDeadline::default();
        // The addresses as Pingora's digest gives them.
        let known = (
            client.local_addr().expect("local"),
            client.peer_addr().expect("peer"),
        );
        deadline.connected(client.as_raw_fd(), Some(known));
        deadline.start(Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(deadline.expired());
        // The peer sees the end of the stream.
        let mut buf = [0u8; 1];
        assert_eq!(server.read(&mut buf).expect("read"), 0);
        drop(client);
    }

    #[tokio::test]
    async fn a_disarmed_deadline_leaves_the_connection_alone() {
        let (client, mut server) = pair();
        let mut deadline = HeadDeadline::default();
        deadline.connected(client.as_raw_fd(), None);
        deadline.start(Duration::from_millis(50));
        deadline.disarm();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!deadline.expired());
        (&client).write_all(b"x").expect("write");
        let mut buf = [0u8; 1];
        assert_eq!(server.read(&mut buf).expect("read"), 1);
    }

    #[tokio::test]
    async fn a_reused_descriptor_number_is_not_touched() {
        let (client, _server) = pair();
        let fd = client.as_raw_fd();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut deadline = HeadDeadline::default();
        let known = (
            client.local_addr().expect("local"),
            client.peer_addr().expect("peer"),
        );
        deadline.connected(fd, Some(known));
        deadline.start(Duration::from_millis(100));
        // The connection closes and its number goes to another one (the
        // lowest free number, unless a test running alongside takes it).
        drop(client);
        let other = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut other_server, _) = listener.accept().expect("accept");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!deadline.expired());
        (&other).write_all(b"y").expect("write");
        let mut buf = [0u8; 1];
        assert_eq!(other_server.read(&mut buf).expect("read"), 1);
    }

    #[tokio::test]
    async fn a_retry_gets_what_is_left_of_the_deadline() {
        let (first, _first_server) = pair();
        let mut deadline = HeadDeadline::default();
        deadline.connected(first.as_raw_fd(), None);
        deadline.start(Duration::from_millis(400));
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The attempt fails; the retry's connection gets the rest.
        deadline.disarm();
        let (second, mut second_server) = pair();
        deadline.connected(second.as_raw_fd(), None);
        deadline.start(Duration::from_millis(400));
        assert!(deadline.remaining().expect("set") <= Duration::from_millis(150));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(deadline.expired(), "not a new 400 ms");
        let mut buf = [0u8; 1];
        assert_eq!(second_server.read(&mut buf).expect("read"), 0);
        deadline.disarm();
        assert!(deadline.expired(), "it stays expired");
    }
}

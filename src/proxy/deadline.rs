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
//! The descriptor is only a number: the timer acts on it only while the
//! request still holds the connection (it is disarmed when the head arrives,
//! the attempt fails or the request ends) and only if the socket still has
//! the local and peer addresses it had when the timer started, so that a
//! number reused by another connection is never touched.

use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{getpeername, getsockname, shutdown, Shutdown, SockaddrStorage};
use tokio::time::Instant;

/// The connection a timer may shut down.
struct Armed {
    fd: RawFd,
    local: SockaddrStorage,
    peer: SockaddrStorage,
}

impl Armed {
    fn of(fd: RawFd) -> Option<Armed> {
        Some(Armed {
            fd,
            local: getsockname(fd).ok()?,
            peer: getpeername(fd).ok()?,
        })
    }

    /// Whether `fd` still names this connection.
    fn still_there(&self) -> bool {
        getsockname::<SockaddrStorage>(self.fd).is_ok_and(|a| a == self.local)
            && getpeername::<SockaddrStorage>(self.fd).is_ok_and(|a| a == self.peer)
    }
}

/// What one timer shares with the request: the connection it may shut down
/// (taken away when the timer is disarmed), and whether it did.
#[derive(Default)]
struct Shared {
    armed: Mutex<Option<Armed>>,
    fired: AtomicBool,
}

/// One request's answer-head deadline (Pingora's path).
#[derive(Default)]
pub struct HeadDeadline {
    /// The upstream connection of the current attempt.
    fd: Option<RawFd>,
    /// When the answer head is due: set once, when the request first went
    /// out whole.
    until: Option<Instant>,
    /// The timer of the current attempt.
    shared: Option<Arc<Shared>>,
    timer: Option<tokio::task::AbortHandle>,
    /// A timer of an earlier attempt fired.
    fired: bool,
}

impl HeadDeadline {
    /// A connection to the upstream is in use. On a retry the deadline is
    /// already running: it goes on, on this connection.
    pub fn connected(&mut self, fd: RawFd) {
        self.disarm();
        self.fd = Some(fd);
        if self.until.is_some() {
            self.arm();
        }
    }

    /// The request went out whole: the answer head must arrive within
    /// `limit`, from the first time only (a retry sends it again within
    /// what is left).
    pub fn start(&mut self, limit: Duration) {
        if self.until.is_none() {
            self.until = Some(Instant::now() + limit);
        }
        self.arm();
    }

    /// Time left before the deadline, once it is set.
    pub fn remaining(&self) -> Option<Duration> {
        self.until
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// Starts the timer of the current connection, for what is left.
    fn arm(&mut self) {
        self.disarm();
        let Some(until) = self.until else {
            return;
        };
        let Some(armed) = self.fd.and_then(Armed::of) else {
            return;
        };
        let shared = Arc::new(Shared {
            armed: Mutex::new(Some(armed)),
            fired: AtomicBool::new(false),
        });
        let timer = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            let Ok(mut armed) = timer.armed.lock() else {
                return;
            };
            if let Some(connection) = armed.take() {
                if connection.still_there() {
                    timer.fired.store(true, Ordering::Release);
                    // Pingora's pending read sees the end of the stream.
                    let _ = shutdown(connection.fd, Shutdown::Both);
                }
            }
        });
        self.timer = Some(task.abort_handle());
        self.shared = Some(shared);
    }

    /// The final answer head arrived, the attempt failed, or the request
    /// ended: the timer may no longer touch the connection.
    pub fn disarm(&mut self) {
        if let Some(shared) = self.shared.take() {
            if let Ok(mut armed) = shared.armed.lock() {
                armed.take();
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
        deadline.connected(client.as_raw_fd());
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
        deadline.connected(client.as_raw_fd());
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
        deadline.connected(fd);
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
        deadline.connected(first.as_raw_fd());
        deadline.start(Duration::from_millis(400));
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The attempt fails; the retry's connection gets the rest.
        deadline.disarm();
        let (second, mut second_server) = pair();
        deadline.connected(second.as_raw_fd());
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

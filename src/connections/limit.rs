//! The caps on open client connections (`server.max_connections` on the
//! proxy listener, [`ADMIN_MAX_CONNECTIONS`] on the admin listener) and the
//! open-file limit they need.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use pingora::protocols::Stream;
use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::answers::too_many_connections;

/// How long a refused connection is kept to read (and drop) what its client
/// sent, so that the close is a FIN after the 503 rather than a reset that
/// could destroy it.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// At most this many refused connections linger at once, in the whole
/// process (both listeners); past that they are closed at once without an
/// answer.
pub const MAX_LINGERING: usize = 256;
/// Refused connections lingering now (both listeners).
static LINGERING: AtomicUsize = AtomicUsize::new(0);
/// Connections the admin listener serves at once; past that, the same 503.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// Descriptors one client connection of the proxy accounts for: its socket,
/// the upstream connection its request uses, and one idle upstream
/// connection (the pools of both forwarding paths together keep at most
/// `max_connections` idle connections: `server/mod.rs`).
pub const FILES_PER_CONNECTION: u64 = 3;
/// Seconds between two warnings that connections are being refused.
const REFUSAL_WARNING_EVERY: u64 = 60;
/// Descriptors kept aside for what is not a client or upstream connection
/// (listeners, the store, logs, the runtime's, health checks, mail...).
const RESERVED_FILES: u64 = 256;

/// The count of open client connections and its cap. It lives as long as
/// the process (`leak`), so a connection's guard costs no reference count.
pub struct ConnectionLimit {
    open: AtomicUsize,
    max: usize,
    /// The setting named in the warning (`server.max_connections`...).
    setting: &'static str,
    refused: IntCounter,
    last_warning: AtomicU64,
}

impl ConnectionLimit {
    /// A limit of `max` connections, which `setting` names; each refusal
    /// counts in `refused`.
    pub fn leak(
        max: usize,
        setting: &'static str,
        refused: IntCounter,
    ) -> &'static ConnectionLimit {
        Box::leak(Box::new(ConnectionLimit {
            open: AtomicUsize::new(0),
            max: max.max(1),
            setting,
            refused,
            last_warning: AtomicU64::new(0),
        }))
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub(super) fn try_enter(&'static self) -> Option<ConnectionGuard> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before < self.max {
            return Some(ConnectionGuard(self));
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        None
    }

    /// Counts a refusal (and warns about it), without answering: what a TLS
    /// client before its handshake gets; the other refusals answer too.
    pub(super) fn refuse_silently(&self) {
        self.refused.inc();
        self.warn_refusal();
    }

    /// An HTTP/2 stream takes a place as a connection does (it holds what
    /// an HTTP/1.1 connection holds: an upstream connection, then an idle
    /// one): whether it got one. Each `true` is given back by
    /// [`Self::leave_stream`]; a refusal is counted and warned about as a
    /// connection's.
    pub fn enter_stream(&self) -> bool {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before < self.max {
            return true;
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.refuse_silently();
        false
    }

    /// Gives back the place of a stream that [`Self::enter_stream`] let in.
    pub fn leave_stream(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Answers 503 `too_many_connections` and closes, without disturbing
    /// the connections already served.
    pub(super) async fn refuse(&self, mut stream: Stream) {
        self.refuse_silently();
        if LINGERING.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            LINGERING.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let answer = async {
            stream.write_all(&too_many_connections()).await?;
            stream.flush().await?;
            AsyncWriteExt::shutdown(&mut stream).await?;
            let mut sink = [0u8; 2048];
            let mut drained = 0;
            while drained < 64 * 1024 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<_, io::Error>(())
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    }

    fn warn_refusal(&self) {
        let now = crate::unix_now();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + REFUSAL_WARNING_EVERY
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_connections = self.max,
                "{} reached: new connections are refused \
                 (vigile_connections_refused_total counts them)",
                self.setting
            );
        }
    }
}

/// One open client connection, counted until dropped.
pub(super) struct ConnectionGuard(&'static ConnectionLimit);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Descriptors the gateway needs for `max_connections` client connections:
/// [`FILES_PER_CONNECTION`] each, the refused connections that may linger,
/// the admin listener's connections, and a reserve for the rest.
pub fn files_needed(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(FILES_PER_CONNECTION)
        .saturating_add(fixed_files())
}

fn fixed_files() -> u64 {
    MAX_LINGERING as u64 + ADMIN_MAX_CONNECTIONS as u64 + RESERVED_FILES
}

/// How many client connections fit in `limit` descriptors (at least one).
fn connections_within(limit: u64) -> usize {
    (limit.saturating_sub(fixed_files()) / FILES_PER_CONNECTION).max(1) as usize
}

/// Raises the soft limit of open files to the hard limit, logs the result,
/// and returns how many client connections fit in it: `max_connections`, or
/// fewer (with a warning) when the limit cannot hold [`files_needed`].
/// Without this, a flood of connections, or requests waiting on a slow
/// upstream, exhausts the descriptors before the cap is reached: accept()
/// and connect() fail (EMFILE) for everyone, the admin listener included,
/// and no 503 is ever sent.
pub fn raise_open_file_limit(max_connections: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            // An unlimited hard limit still caps at the kernel's nr_open.
            let target = if hard == RLIM_INFINITY {
                std::fs::read_to_string("/proc/sys/fs/nr_open")
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(1_048_576)
            } else {
                hard
            };
            if soft < target {
                match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
                    Ok(()) => target,
                    Err(e) => {
                        tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
                        soft
                    }
                }
            } else {
                soft
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return max_connections;
        }
    };
    let needed = files_needed(max_connections);
    if limit >= needed {
        tracing::info!(
            open_files = limit,
            max_connections,
            needed,
            "open-file limit"
        );
        return max_connections;
    }
    let fits = connections_within(limit);
    tracing::warn!(
        open_files = limit,
        max_connections,
        needed,
        lowered_to = fits,
        "the open-file limit cannot hold server.max_connections ({FILES_PER_CONNECTION} \
         each: a client connection, the upstream connection it uses, an idle upstream \
         connection; plus {MAX_LINGERING} refused connections lingering, \
         {ADMIN_MAX_CONNECTIONS} admin connections and {RESERVED_FILES} for the rest): \
         connections are capped at {fits}; raise LimitNOFILE (systemd) or `ulimit -n`"
    );
    fits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_down_on_every_drop() {
        let refused = IntCounter::new("refused", "test").expect("counter");
        let limit = ConnectionLimit::leak(2, "server.max_connections", refused);
        let a = limit.try_enter().expect("first");
        let b = limit.try_enter().expect("second");
        assert!(limit.try_enter().is_none(), "a third is over the cap");
        assert_eq!(limit.open(), 2);
        drop(a);
        assert_eq!(limit.open(), 1);
        let c = limit.try_enter().expect("room again");
        drop(b);
        drop(c);
        assert_eq!(limit.open(), 0);
    }

    #[test]
    fn the_budget_holds_what_it_says() {
        let fixed = MAX_LINGERING as u64 + ADMIN_MAX_CONNECTIONS as u64 + RESERVED_FILES;
        assert_eq!(files_needed(100), 300 + fixed);
        // What fits in a limit needs no more than the limit.
        for limit in [700, 1024, 4096, 65_536] {
            let fits = connections_within(limit);
            assert!(files_needed(fits) <= limit, "{limit}: {fits}");
            assert!(
                files_needed(fits + 1) > limit,
                "{limit}: {fits} is the most"
            );
        }
        assert_eq!(connections_within(10), 1, "at least one");
    }
}

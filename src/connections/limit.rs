//! The cap on open client connections (`server.max_connections`) and the
//! open-file limit it needs.

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
/// At most this many refused connections linger at once; past that they are
/// closed at once without an answer.
const MAX_LINGERING: usize = 256;
/// Seconds between two warnings that connections are being refused.
const REFUSAL_WARNING_EVERY: u64 = 60;
/// Most file descriptors kept aside for what is not a client or upstream
/// connection (listeners, the store, logs...).
const RESERVED_FILES: u64 = 256;

/// The count of open client connections and its cap. It lives as long as
/// the process (`leak`), so a connection's guard costs no reference count.
pub struct ConnectionLimit {
    open: AtomicUsize,
    max: usize,
    lingering: AtomicUsize,
    refused: IntCounter,
    last_warning: AtomicU64,
}

impl ConnectionLimit {
    /// A limit of `max` connections; each refusal counts in `refused`.
    pub fn leak(max: usize, refused: IntCounter) -> &'static ConnectionLimit {
        Box::leak(Box::new(ConnectionLimit {
            open: AtomicUsize::new(0),
            max: max.max(1),
            lingering: AtomicUsize::new(0),
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

    /// Answers 503 `too_many_connections` and closes, without disturbing
    /// the connections already served.
    pub(super) async fn refuse(&self, mut stream: Stream) {
        self.refused.inc();
        self.warn_refusal();
        if self.lingering.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Ordering::Relaxed);
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
        self.lingering.fetch_sub(1, Ordering::Relaxed);
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
                "server.max_connections reached: new connections are refused \
                 (vigile_connections_refused_total counts them)"
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

/// Raises the soft limit of open files to the hard limit, logs the result,
/// and returns how many client connections fit in it: `max_connections`, or
/// fewer (with a warning) when the limit cannot hold a client and an upstream
/// connection for each, plus a reserve. Without this, a flood of connections
/// exhausts the descriptors and Pingora stops accepting for everyone.
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
    let needed = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(RESERVED_FILES);
    if limit >= needed {
        tracing::info!(open_files = limit, max_connections, "open-file limit");
        return max_connections;
    }
    let fits = (limit.saturating_sub(RESERVED_FILES) / 2).max(1) as usize;
    tracing::warn!(
        open_files = limit,
        max_connections,
        needed,
        lowered_to = fits,
        "the open-file limit cannot hold server.max_connections (a client and an \
         upstream connection each, plus {RESERVED_FILES}): connections are capped at \
         {fits}; raise LimitNOFILE (systemd) or `ulimit -n`"
    );
    fits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_down_on_every_drop() {
        let refused = IntCounter::new("refused", "test").expect("counter");
        let limit = ConnectionLimit::leak(2, refused);
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
}

//! The threads that hash passwords, apart from the proxy's event loops.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use crate::error::ApiError;

/// The threads that hash passwords (argon2 is CPU-heavy): `workers` of them,
/// at a lower scheduling priority than the proxy's threads, so that a login
/// storm takes the CPU the proxy leaves idle rather than the proxy's share.
/// At most `queue` jobs wait; past that, callers get 503 `overloaded` at once
/// instead of waiting without end.
pub struct HashPool {
    jobs: SyncSender<HashJob>,
}

type HashJob = Box<dyn FnOnce() + Send>;

impl HashPool {
    pub fn new(workers: usize, queue: usize) -> HashPool {
        let (jobs, rx) = sync_channel::<HashJob>(queue);
        let rx = Arc::new(parking_lot::Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vigile-hash-{i}"))
                .spawn(move || {
                    crate::lower_thread_priority();
                    loop {
                        let job = rx.lock().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        HashPool { jobs }
    }

    /// Runs `f` on a hashing thread; 503 `overloaded` when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|e| match e {
                TrySendError::Full(_) => ApiError::overloaded(),
                TrySendError::Disconnected(_) => ApiError::internal(),
            })?;
        rx.await.map_err(|_| ApiError::internal())
    }
}

//! Stopping: SIGTERM (and SIGQUIT) drain, SIGINT stops at once.
//!
//! On SIGTERM the listeners stop accepting (Pingora's graceful terminate);
//! requests in flight finish, up to `server.grace_period`; then the store is
//! closed cleanly and the process exits 0. Pingora alone would always wait the
//! whole grace period: here the wait ends as soon as nothing is in flight.
//! SIGINT ends the process within 2 s even if a Pingora runtime hangs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::state::InFlight;
use crate::store::Store;

pub struct Signals {
    pub in_flight: InFlight,
    pub grace: Duration,
    pub store: Arc<Store>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot watch signals; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                // Pingora's fast shutdown can hang on an accept loop that
                // spins while its runtime is going away: make sure the
                // process ends. Every commit is already durable.
                std::thread::spawn(|| {
                    std::thread::sleep(Duration::from_secs(2));
                    tracing::warn!("runtimes did not stop in 2 s: exiting");
                    std::process::exit(0);
                });
                ShutdownSignal::FastShutdown
            }
            _ = term.recv() => self.drain("SIGTERM"),
            _ = quit.recv() => self.drain("SIGQUIT"),
        }
    }
}

impl Signals {
    fn drain(&self, name: &str) -> ShutdownSignal {
        tracing::info!(in_flight = self.in_flight.count(), grace = ?self.grace, "{name}: draining");
        let in_flight = self.in_flight.clone();
        let grace = self.grace;
        let store = self.store.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + grace;
            // Idle twice in a row, so that a request just accepted gets counted.
            let mut idle_checks = 0;
            while Instant::now() < deadline && idle_checks < 2 {
                std::thread::sleep(Duration::from_millis(25));
                idle_checks = if in_flight.count() == 0 {
                    idle_checks + 1
                } else {
                    0
                };
            }
            let left = in_flight.count();
            if left > 0 {
                tracing::warn!(left, "grace period over with requests in flight");
            }
            store.close();
            tracing::info!("stopped");
            std::process::exit(0);
        });
        ShutdownSignal::GracefulTerminate
    }
}

//! Health checks that start and stop with their upstream. Each checked
//! upstream gets a task that probes its targets every `interval` for as
//! long as its pool exists: a reload that removes (or replaces) the
//! upstream drops the pool once the requests using it are done, and the
//! task ends at its next wake-up. A pool that a reload keeps keeps its task
//! and its targets' health.
//!
//! Tasks are spawned by the `HealthChecks` background service on Pingora's
//! runtime: pools built before the server runs (at start) and by reloads
//! (on any thread) are sent to it over a channel.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

/// One upstream to check: its balancer (held weakly) and how often.
struct Checked {
    name: String,
    balancer: Weak<LoadBalancer<RoundRobin>>,
    interval: Duration,
}

/// Where pools needing a health check are announced.
#[derive(Clone)]
pub struct HealthSender(mpsc::UnboundedSender<Checked>);

impl HealthSender {
    /// Starts checking `balancer` every `interval` while it exists.
    pub fn watch(&self, name: &str, balancer: &Arc<LoadBalancer<RoundRobin>>, interval: Duration) {
        let checked = Checked {
            name: name.to_string(),
            balancer: Arc::downgrade(balancer),
            interval,
        };
        // Closed only once the server has stopped: nothing left to check.
        let _ = self.0.send(checked);
    }
}

/// The background service that runs the checks.
pub struct HealthChecks {
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Checked>>>,
}

/// The service and the sender that feeds it.
pub fn health_checks() -> (HealthChecks, HealthSender) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        HealthChecks {
            receiver: Mutex::new(Some(receiver)),
        },
        HealthSender(sender),
    )
}

/// Probes the targets until the balancer is gone or the server stops.
async fn check(checked: Checked, mut shutdown: ShutdownWatch) {
    loop {
        {
            let Some(balancer) = checked.balancer.upgrade() else {
                tracing::debug!(upstream = %checked.name, "health check stopped: upstream gone");
                return;
            };
            tokio::select! {
                _ = balancer.backends().run_health_check(balancer.parallel_health_check) => {}
                _ = shutdown.changed() => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(checked.interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(mut receiver) = self.receiver.lock().take() else {
            return;
        };
        let mut watch = shutdown.clone();
        loop {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(checked) => {
                        tokio::spawn(check(checked, shutdown.clone()));
                    }
                    None => return,
                },
                _ = watch.changed() => return,
            }
        }
    }
}

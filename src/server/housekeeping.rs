//! Periodic upkeep: purging what nothing can use any more, refreshing gauges.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::proxy::Lives;
use crate::state::Gateway;

/// Periodic upkeep: drops revocations and sessions nothing can use any more,
/// and refreshes the gauges.
pub struct Housekeeping {
    pub gateway: Arc<Gateway>,
    /// The configuration in force: its upstreams' health is published.
    pub lives: Arc<Lives>,
    pub every: Duration,
}

impl Housekeeping {
    async fn tick(&self) {
        let now = crate::unix_now();
        let accounts = &self.gateway.accounts;
        accounts.revocations.purge(now);
        let store = accounts.store.clone();
        match tokio::task::spawn_blocking(move || store.purge_expired(now)).await {
            Ok(Ok((sessions, revocations, reset_tokens)))
                if sessions + revocations + reset_tokens > 0 =>
            {
                tracing::info!(
                    sessions,
                    revocations,
                    reset_tokens,
                    "housekeeping: expired entries purged"
                );
            }
            Ok(Err(e)) => tracing::error!(error = %e, "housekeeping failed"),
            _ => {}
        }
        let store = accounts.store.clone();
        if let Ok(Ok(counts)) = tokio::task::spawn_blocking(move || store.counts()).await {
            let rows = &self.gateway.metrics.store_rows;
            for (table, n) in [
                ("accounts", counts.accounts),
                ("sessions", counts.sessions),
                ("revocations", counts.revocations),
                ("reset_tokens", counts.reset_tokens),
            ] {
                rows.with_label_values(&[table]).set(n as i64);
            }
        }
        self.gateway.refresh_gauges(&self.lives.load().pools);
    }
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut interval = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => self.tick().await,
            }
        }
    }
}

//! Periodic upkeep: purging what nothing can use any more, refreshing gauges;
//! and, on a shorter timer, the signing keys: the changes other replicas
//! made (a shared store), and the retirement of verify-only keys.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::StoreKind;
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

    /// How often the signing keys are looked at: `store.sync_interval`,
    /// 250 ms at most, so that a key retired on one replica stops verifying
    /// on the others within about that.
    fn keys_every(&self) -> Duration {
        self.gateway
            .config
            .store
            .sync_interval
            .min(Duration::from_millis(250))
    }

    /// On a shared store, reloads the keys when their version moved (another
    /// replica, or the CLI on the database, rotated or retired one); then
    /// retires the verify-only keys that are due. `last` is the version
    /// seen, `failing` the last error logged (logged once).
    async fn keys_tick(&self, last: &mut Option<u64>, failing: &mut Option<String>) {
        let accounts = self.gateway.accounts.clone();
        let shared = self.gateway.config.store.kind == StoreKind::Postgres;
        let seen = *last;
        let work = move || -> Result<(Option<u64>, Vec<String>), String> {
            let store = accounts.store.as_ref();
            let tokens = &accounts.tokens;
            let mut version = seen;
            if shared {
                let now_at = store.signing_keys_version().map_err(|e| e.to_string())?;
                if Some(now_at) != seen {
                    if crate::accounts::keys::sync(tokens, store).map_err(|e| e.to_string())? {
                        tracing::info!(
                            signing = %tokens.signing_kid(),
                            "signing keys: the stored keys changed; the new set is in force"
                        );
                    }
                    version = Some(now_at);
                }
            }
            let retired = crate::accounts::keys::retire_expired(tokens, store, crate::unix_now())
                .map_err(|e| e.to_string())?;
            Ok((version, retired))
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok((version, retired))) => {
                *last = version;
                *failing = None;
                for kid in retired {
                    tracing::info!(
                        %kid,
                        "signing key retired: no token it signed can still be valid"
                    );
                    let entry = crate::audit::Entry::new(crate::audit::AuditEvent::KeyRetired);
                    let origin = &crate::audit::Origin::GATEWAY;
                    self.gateway
                        .accounts
                        .audit
                        .record(origin, entry.detail("kid", kid));
                }
            }
            Ok(Err(e)) => {
                if failing.as_ref() != Some(&e) {
                    tracing::error!(error = %e, "signing keys: cannot follow the stored keys");
                }
                *failing = Some(e);
            }
            Err(_) => {}
        }
    }
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut interval = tokio::time::interval(self.every);
        let mut keys = tokio::time::interval(self.keys_every());
        keys.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut version, mut failing) = (None, None);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => self.tick().await,
                _ = keys.tick() => self.keys_tick(&mut version, &mut failing).await,
            }
        }
    }
}

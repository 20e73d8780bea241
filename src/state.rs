//! The state every part of a running gateway shares, and how it is opened:
//! the store, the keys, the revocation list, the account service, metrics,
//! the hashing pool, the operator token, the connection count.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::accounts::password_reset::ResetWorker;
use crate::accounts::AccountService;
use crate::config::Config;
use crate::connections::{ConnectionLimit, ADMIN_MAX_CONNECTIONS};
use crate::mailer::{Mailer, MailerError};
use crate::metrics::Metrics;
use crate::passwords::pool::HashPool;
use crate::revocation::RevocationList;
use crate::store::{Store, StoreError};
use crate::tokens::TokenKeys;
use crate::upstream::UpstreamPool;

/// Why the gateway's state could not be opened; each message names what is
/// at fault.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{source} ({})", path.display())]
    Store { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Revocations(StoreError),
    /// The signing keys (whatever error `TokenKeys::from_config` gives).
    #[error("{0}")]
    Keys(Box<dyn std::error::Error + Send + Sync>),
    #[error("metrics: {0}")]
    Metrics(prometheus::Error),
    #[error(transparent)]
    Mailer(#[from] MailerError),
    #[error("cannot write {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Name of the operator credential file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The state every part of a running gateway shares.
pub struct Gateway {
    pub config: Config,
    pub accounts: Arc<AccountService>,
    pub metrics: Arc<Metrics>,
    pub hash_pool: HashPool,
    /// The operator channel's credential, also in `<data dir>/admin.token` (0600).
    pub admin_token: String,
    /// Client connections open on the proxy listener, and their cap.
    pub connections: &'static ConnectionLimit,
    /// Connections open on the admin listener, and their cap.
    pub admin_connections: &'static ConnectionLimit,
}

/// Opens the store of `config` and makes sure the default role exists.
/// Fails at once with `StoreError::Locked` when another process holds it.
pub fn try_open_store(config: &Config) -> Result<Arc<Store>, StoreError> {
    let window = config.tokens.access_ttl.as_secs() + config.tokens.leeway.as_secs();
    let store = crate::store::open(&config.store, window)?;
    store.create_role(&config.accounts.default_role, crate::unix_now())?;
    Ok(store)
}

/// `try_open_store`, waiting a little if another process (an operator
/// command) holds the store just now.
pub fn open_store(config: &Config) -> Result<Arc<Store>, StoreError> {
    let mut tries = 0;
    loop {
        match try_open_store(config) {
            Err(StoreError::Locked) if tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

impl Gateway {
    /// Everything but the network: store, keys, revocations, metrics.
    pub fn open(config: Config) -> Result<Gateway, OpenError> {
        let data_dir = config.store.data_dir();
        let store = open_store(&config).map_err(|source| OpenError::Store {
            path: config.store.path.clone(),
            source,
        })?;
        let tokens = TokenKeys::from_config(&config.tokens, &data_dir)
            .map_err(|e| OpenError::Keys(e.into()))?;
        let revocations = RevocationList::new(
            store
                .revocations(crate::unix_now())
                .map_err(OpenError::Revocations)?,
        );
        let metrics = Metrics::new().map_err(OpenError::Metrics)?;
        let reset_queue = ResetWorker {
            store: store.clone(),
            mailer: Mailer::from_config(&config.mailer)?,
            reset_url: config.mailer.reset_url.clone(),
            ttl: config.accounts.reset_ttl.as_secs(),
            outcomes: metrics.reset_mails.clone(),
        }
        .start();
        let accounts = AccountService::new(
            &config,
            store,
            Arc::new(tokens),
            Arc::new(revocations),
            metrics.password_hash_seconds.clone(),
            Some(reset_queue),
        );
        let admin_token = {
            use base64::Engine;
            let bytes: [u8; 32] = rand::random();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        let token_path = data_dir.join(ADMIN_TOKEN_FILE);
        crate::fsutil::write_private(&token_path, admin_token.as_bytes()).map_err(|source| {
            OpenError::TokenFile {
                path: token_path.clone(),
                source,
            }
        })?;
        let hash_pool = HashPool::new(config.accounts.hash_workers, config.accounts.hash_queue);
        let connections = ConnectionLimit::leak(
            config.server.max_connections,
            "server.max_connections",
            metrics
                .connections_refused
                .with_label_values(&["max_connections"]),
        );
        let admin_connections = ConnectionLimit::leak(
            ADMIN_MAX_CONNECTIONS,
            "the admin listener's connection cap",
            metrics
                .connections_refused
                .with_label_values(&["admin_max_connections"]),
        );
        Ok(Gateway {
            config,
            accounts: Arc::new(accounts),
            metrics: Arc::new(metrics),
            hash_pool,
            admin_token,
            connections,
            admin_connections,
        })
    }
}

impl Gateway {
    /// Sets the gauges that are read from state: revocations held in memory,
    /// open client connections, healthy targets per upstream. Called at each
    /// scrape and by housekeeping.
    pub fn refresh_gauges(&self, pools: &[UpstreamPool]) {
        let m = &self.metrics;
        m.revoked_sessions
            .set(self.accounts.revocations.len() as i64);
        m.client_connections.set(self.connections.open() as i64);
        crate::upstream::publish_health(pools, m);
    }
}

/// Counts requests in flight; each request holds one `InFlightGuard`, and a
/// draining gateway waits for the count to reach zero.
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

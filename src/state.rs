//! The state every part of a running gateway shares, and how it is opened:
//! the store, the keys, the revocation list, the account service, metrics,
//! the hashing pool, the operator token, the connection count.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::accounts::password_reset::{MailSettings, ResetWorker};
use crate::accounts::AccountService;
use crate::audit::Auditor;
use crate::config::{Config, KeySource, StoreKind};
use crate::connections::{ConnectionLimit, ADMIN_MAX_CONNECTIONS};
use crate::mailer::MailerError;
use crate::metrics::Metrics;
use crate::passwords::pool::HashPool;
use crate::revocation::RevocationList;
use crate::store::{Follow, SequencedRevocation, Store, StoreError, SyncStatus};
use crate::tokens::TokenKeys;
use crate::upstream::UpstreamPool;

/// Why the gateway's state could not be opened; each message names what is
/// at fault.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `store` names it (`StoreConfig::describe`: never the database URL).
    #[error("{source} ({store})")]
    Store { store: String, source: StoreError },
    #[error(transparent)]
    Revocations(StoreError),
    /// The signing keys (whatever error `TokenKeys::from_config` gives).
    #[error("{0}")]
    Keys(Box<dyn std::error::Error + Send + Sync>),
    #[error("metrics: {0}")]
    Metrics(prometheus::Error),
    #[error(transparent)]
    Mailer(#[from] MailerError),
    #[error("audit.file: cannot open {}: {source}", path.display())]
    AuditFile {
        path: PathBuf,
        source: std::io::Error,
    },
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
            store: config.store.describe(),
            source,
        })?;
        let tokens = TokenKeys::from_config(&config.tokens, &data_dir)
            .map_err(|e| OpenError::Keys(e.into()))?;
        warn_if_key_is_local(&config, &data_dir);
        let metrics = Metrics::new().map_err(OpenError::Metrics)?;
        let store = crate::store::Metered::wrap(store, metrics.store_errors.clone());
        // The rotated keys (`vigile keys`), kept current by housekeeping.
        crate::accounts::keys::sync(&tokens, store.as_ref())
            .map_err(|e| OpenError::Keys(e.into()))?;
        let revocations = load_revocations(&config, &store, &metrics)?;
        let reset_queue = ResetWorker {
            store: store.clone(),
            mail: MailSettings::of(&config)?,
            outcomes: metrics.reset_mails.clone(),
        }
        .start();
        let audit_file = open_audit_file(&config)?;
        let accounts = AccountService::new(
            &config,
            store,
            Arc::new(tokens),
            revocations,
            metrics.passwords(),
            Some(reset_queue),
            Arc::new(Auditor::new(
                metrics.audit_events.clone(),
                audit_file,
                false,
            )),
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

/// `audit.file`, open for appending (none without the key).
pub fn open_audit_file(config: &Config) -> Result<Option<std::fs::File>, OpenError> {
    config
        .audit
        .file
        .as_deref()
        .map(|path| {
            crate::audit::open_file(path).map_err(|source| OpenError::AuditFile {
                path: path.to_path_buf(),
                source,
            })
        })
        .transpose()
}

/// The revocation list, loaded from the store and (on a store shared by
/// replicas) following what every replica revokes from then on. The
/// sequence number is read first: a revocation committed while the list
/// loads is read again by the follower, never missed.
fn load_revocations(
    config: &Config,
    store: &Arc<Store>,
    metrics: &Metrics,
) -> Result<Arc<RevocationList>, OpenError> {
    let seq = store.revocation_seq().map_err(OpenError::Revocations)?;
    let initial = store
        .revocations(crate::unix_now())
        .map_err(OpenError::Revocations)?;
    if config.store.kind == StoreKind::Redb {
        return Ok(Arc::new(RevocationList::new(initial)));
    }
    let status = Arc::new(SyncStatus::new(config.store.max_staleness));
    let list = Arc::new(RevocationList::following(initial, status.clone()));
    let applied = Arc::downgrade(&list);
    let lag = metrics.revocation_lag_seconds.clone();
    let apply = Box::new(move |batch: &[SequencedRevocation]| {
        let Some(list) = applied.upgrade() else {
            return;
        };
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        // Lag is observed for the revocations this replica did not know:
        // its own are in the list already (put there as they committed).
        list.insert_each(batch.iter().map(|r| r.revocation), |i| {
            let lag_us = now_us.saturating_sub(batch[i].recorded_at_us);
            lag.observe(lag_us as f64 / 1e6);
        });
    });
    store
        .follow(Follow {
            from_seq: seq,
            sync_interval: config.store.sync_interval,
            apply,
            status,
        })
        .map_err(OpenError::Revocations)?;
    Ok(list)
}

/// Replicas on one database accept each other's tokens only if they sign
/// with the same key: a key generated in this replica's data directory is
/// this replica's alone.
fn warn_if_key_is_local(config: &Config, data_dir: &std::path::Path) {
    let generated = matches!(
        config.tokens.key,
        KeySource::GeneratedSecret | KeySource::GeneratedEd25519
    );
    if config.store.kind == StoreKind::Postgres && generated {
        tracing::warn!(
            data_dir = %data_dir.display(),
            "store.kind is postgres but the signing key is generated in this replica's data \
             directory: other replicas will refuse its tokens; give every replica the same key \
             (tokens.secret_env, tokens.secret_file or tokens.private_key_file)"
        );
    }
}

impl Gateway {
    /// Sets the gauges that are read from state: revocations held in memory,
    /// open client connections, healthy targets per upstream. Called at each
    /// scrape and by housekeeping.
    pub fn refresh_gauges(&self, pools: &[Arc<UpstreamPool>]) {
        let m = &self.metrics;
        m.revoked_sessions
            .set(self.accounts.revocations.len() as i64);
        m.client_connections.set(self.connections.open() as i64);
        m.store_up
            .set(i64::from(self.accounts.revocations.sync.is_up()));
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

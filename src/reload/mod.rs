//! Reloading the configuration on a running gateway (`SIGHUP`, `vigile
//! reload`): routes, upstreams, CORS, identity headers, the account policy
//! and throttles, the TLS listener's certificate, the mailer, token lifetimes and keys, log level and
//! format change without a restart; requests in flight finish on the
//! configuration they started with, and no connection is closed.
//!
//! A reload is all or nothing. The file is read and checked as `vigile
//! check-config` does; a key only a restart can change is refused by name
//! (`Config::restart_needed`); everything that can fail is built beside
//! what runs (the upstream pools, the mailer, the token keys) before
//! anything is swapped. A refused reload leaves the running configuration
//! as it was and says why, in the log and to `vigile reload`.
//!
//! Reloads run one at a time (a lock held across the whole reload).
//!
//! `command.rs` is `vigile reload`, which asks a running gateway through
//! its admin listener.

mod command;

pub use command::reload_command;

/// The admin listener's path of `vigile reload` (body: `{"config": PATH}`,
/// or `{}` for the file in force).
pub const RELOAD_PATH: &str = "/admin/v1/reload";

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::accounts::password_reset::MailSettings;
use crate::audit::{AuditEvent, Entry, Origin};
use crate::config::Config;
use crate::proxy::{Live, Lives};
use crate::state::Gateway;
use crate::tls::ServerCert;
use crate::tokens::TokenCache;
use crate::upstream::HealthSender;

/// The longest a reload waits for the first health check of a new upstream
/// before swapping it in anyway (its targets are then unhealthy until
/// checked).
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(5);

/// The file in force.
struct InForce {
    path: PathBuf,
    sha256: String,
}

/// A reload that took effect.
pub struct Reloaded {
    pub path: PathBuf,
    pub sha256: String,
}

pub struct Reloader {
    gateway: Arc<Gateway>,
    lives: Arc<Lives>,
    verified: Arc<TokenCache>,
    health: HealthSender,
    /// The TLS listener's certificate, re-read by each reload.
    server_cert: Option<Arc<ServerCert>>,
    in_force: tokio::sync::Mutex<InForce>,
}

impl Reloader {
    /// Builds the first `Live` from the configuration the gateway opened
    /// with, as read from `path` (whose bytes hash to `sha256`).
    pub fn start(
        gateway: Arc<Gateway>,
        loaded: Config,
        path: PathBuf,
        sha256: String,
        verified: Arc<TokenCache>,
        health: HealthSender,
        server_cert: Option<Arc<ServerCert>>,
    ) -> Result<Reloader, crate::upstream::UpstreamError> {
        let config = Arc::new(loaded);
        let (live, _) = Live::build(config, &gateway, verified.clone(), None, &health)?;
        gateway.metrics.config_in_force(&sha256);
        Ok(Reloader {
            gateway,
            lives: Arc::new(Lives::from_pointee(live)),
            verified,
            health,
            server_cert,
            in_force: tokio::sync::Mutex::new(InForce {
                path: absolute(&path),
                sha256,
            }),
        })
    }

    /// What the proxy services, the admin listener and housekeeping read.
    pub fn lives(&self) -> &Arc<Lives> {
        &self.lives
    }

    /// Reloads from `path` (the file in force when `None`); on success that
    /// file is the one in force from now on. The error is the message the
    /// operator sees (as `check-config` prints it, or the key that needs a
    /// restart); the running configuration is then unchanged.
    /// `origin` says who asked, for the audit line (`config_reloaded`).
    pub async fn reload(
        &self,
        path: Option<PathBuf>,
        origin: &Origin<'_>,
    ) -> Result<Reloaded, String> {
        let mut in_force = self.in_force.lock().await;
        let path = path.map_or_else(|| in_force.path.clone(), |p| absolute(&p));
        let outcome = self.try_reload(&path).await;
        let metrics = &self.gateway.metrics;
        match outcome {
            Ok(sha256) => {
                metrics.config_reloads.with_label_values(&["ok"]).inc();
                metrics.config_in_force(&sha256);
                tracing::info!(config = %path.display(), sha256 = %sha256, "configuration reloaded");
                let entry =
                    Entry::new(AuditEvent::ConfigReloaded).detail("sha256", sha256.as_str());
                self.gateway.accounts.audit.record(origin, entry);
                in_force.path.clone_from(&path);
                in_force.sha256.clone_from(&sha256);
                Ok(Reloaded { path, sha256 })
            }
            Err(message) => {
                metrics.config_reloads.with_label_values(&["error"]).inc();
                tracing::error!(
                    config = %path.display(),
                    "reload refused, the running configuration stays: {message}"
                );
                let entry = Entry::new(AuditEvent::ConfigReloaded).failure("reload_refused");
                self.gateway.accounts.audit.record(origin, entry);
                Err(message)
            }
        }
    }

    /// The SHA-256 of the file in force.
    pub async fn sha256(&self) -> String {
        self.in_force.lock().await.sha256.clone()
    }

    async fn try_reload(&self, path: &Path) -> Result<String, String> {
        // The file's bytes are read off the async threads.
        let read = path.to_path_buf();
        let (config, sha256) = tokio::task::spawn_blocking(move || Config::load_with_digest(&read))
            .await
            .map_err(|_| "the reload failed".to_string())?
            .map_err(|e| format!("invalid configuration {}: {e}", path.display()))?;
        let current = self.lives.load_full();
        if let Some(key) = current.config.restart_needed(&config) {
            return Err(format!(
                "{key}: cannot change on a running gateway; restart it to apply this change"
            ));
        }
        let config = Arc::new(config);
        // Everything that can fail, beside what runs.
        let mail = MailSettings::of(&config).map_err(|e| e.to_string())?;
        let audit_file = crate::state::open_audit_file(&config).map_err(|e| e.to_string())?;
        let (live, fresh) = Live::build(
            config.clone(),
            &self.gateway,
            self.verified.clone(),
            Some(&current),
            &self.health,
        )
        .map_err(|e| e.to_string())?;
        let store = self.gateway.accounts.store.clone();
        let role_config = config.clone();
        tokio::task::spawn_blocking(move || {
            store.create_role(&role_config.accounts.default_role, crate::unix_now())
        })
        .await
        .map_err(|_| "the reload failed".to_string())?
        .map_err(|e| format!("accounts.default_role: cannot create the role: {e}"))?;
        // New upstreams with a health check: their targets' state is known
        // before the first request reaches them.
        let first_checks = fresh.0.iter().map(|pool| {
            let balancer = pool.balancer.clone();
            async move {
                balancer
                    .backends()
                    .run_health_check(balancer.parallel_health_check)
                    .await;
            }
        });
        let checks = async {
            let running: Vec<_> = first_checks.map(tokio::spawn).collect();
            for check in running {
                let _ = check.await;
            }
        };
        if tokio::time::timeout(FIRST_CHECK_WAIT, checks)
            .await
            .is_err()
        {
            tracing::warn!("reload: the first health checks of new upstreams did not end in time");
        }
        // The token settings and the configuration's key: swapped at once
        // if they build (the last step that can fail), nothing changed if
        // not.
        let tokens = self.gateway.accounts.tokens.clone();
        let token_config = config.clone();
        tokio::task::spawn_blocking(move || {
            tokens.reconfigure(&token_config.tokens, &token_config.store.data_dir())
        })
        .await
        .map_err(|_| "the reload failed".to_string())?
        .map_err(|e| e.to_string())?;
        // The certificate pair as the files hold it now (a bad one refuses
        // the reload; the one in force stays).
        let pair = match (&self.server_cert, &config.server.tls) {
            (Some(_), Some(tls)) => Some(tls.load().map_err(|e| e.to_string())?),
            _ => None,
        };
        // From here on nothing fails: swap.
        if let (Some(cert), Some(pair)) = (&self.server_cert, pair) {
            cert.replace(pair);
        }
        self.gateway.accounts.reconfigure(&config, Some(mail));
        self.gateway.accounts.audit.set_file(audit_file);
        crate::logging::apply(config.server.log_format, &config.server.log_level);
        self.lives.store(Arc::new(live));
        self.forget_gone_upstreams(&current.config, &config);
        Ok(sha256)
    }

    /// Drops the gauges of upstreams the new configuration no longer has.
    fn forget_gone_upstreams(&self, old: &Config, new: &Config) {
        let healthy = &self.gateway.metrics.upstream_healthy;
        for up in &old.upstreams {
            if !new.upstreams.iter().any(|u| u.name == up.name) {
                let _ = healthy.remove_label_values(&[&up.name]);
            }
        }
    }
}

/// Reloads on every `SIGHUP`, from the file in force.
pub struct Hangups(pub Arc<Reloader>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Hangups {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot watch SIGHUP: reload with `vigile reload`");
            return;
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // The outcome is logged and counted by `reload`.
                    let _ = self.0.reload(None, &Origin::SIGNAL).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// `path` made absolute against the working directory (so that a reload
/// through the admin channel names the file the operator meant).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

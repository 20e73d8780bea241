//! `store:`, which backend holds the accounts, sessions and revocations, and
//! its upkeep.
//!
//! - `kind: redb` (the default): one embedded file at `path`.
//! - `kind: postgres`: a PostgreSQL database shared by every replica. The
//!   connection string comes from the variable named by `url_env`, else from
//!   `url`; it is read here, at load, and never printed (it holds the
//!   database password): errors name the key, not the value.
//!
//! Whatever the backend, `path`'s folder is the data directory: the files a
//! gateway generates (signing secret or key, operator token, pid file) go
//! there. With postgres, each replica has its own; replicas that must accept
//! each other's tokens need the same signing key (`tokens.secret_env`,
//! `secret_file` or `private_key_file`), not a generated one.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, err, ConfigError, Env};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One embedded file (`store.path`), one process at a time.
    #[default]
    Redb,
    /// A PostgreSQL database, shared by every replica.
    Postgres,
}

/// A PostgreSQL connection string. It holds a password: its `Debug` shows
/// nothing of it, and it has no `Display`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }

    /// The parsed connection settings (checked at load, so this succeeds on
    /// a loaded configuration). The error names the option at fault, never
    /// a value.
    pub fn settings(&self) -> Result<tokio_postgres::Config, String> {
        tokio_postgres::Config::from_str(&self.0).map_err(|e| {
            // "invalid connection string", then its cause.
            let mut text = e.to_string();
            if let Some(cause) = std::error::Error::source(&e) {
                text = format!("{text}: {cause}");
            }
            text
        })
    }
}

impl DatabaseUrl {
    /// A digest of the string, to tell two apart without showing either.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.0.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// redb: the store file. Every kind: its folder is the data directory.
    pub path: PathBuf,
    /// How often expired sessions, revocations and reset tokens are dropped.
    #[serde(deserialize_with = "duration::deserialize")]
    pub purge_interval: Duration,
    /// postgres: the variable holding the connection string (before `url`).
    pub url_env: String,
    /// postgres: the connection string, when `url_env`'s variable is unset.
    pub url: Option<DatabaseUrl>,
    /// postgres: connections open at most.
    pub pool_size: usize,
    /// postgres, with `sslmode=require`: PEM certificates of the authorities
    /// the server's certificate may chain to, besides Mozilla's roots.
    pub ca_file: Option<PathBuf>,
    /// postgres: how often a replica catches up on revocations besides
    /// LISTEN/NOTIFY (used by the replica sync).
    #[serde(deserialize_with = "duration::deserialize")]
    pub sync_interval: Duration,
    /// postgres: how long the proxy path may answer from memory without the
    /// database (used by the replica sync).
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_staleness: Duration,
    /// The connection string in force (`url_env`'s variable, else `url`),
    /// read at load; `None` for redb.
    #[serde(skip)]
    pub database_url: Option<DatabaseUrl>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Redb,
            path: PathBuf::from("data/vigile.redb"),
            purge_interval: Duration::from_secs(60),
            url_env: "VIGILE_DATABASE_URL".into(),
            url: None,
            pool_size: 16,
            ca_file: None,
            sync_interval: Duration::from_secs(1),
            max_staleness: Duration::from_secs(30),
            database_url: None,
        }
    }
}

impl StoreConfig {
    /// The folder that holds the redb store and the files the gateway
    /// generates (signing secret, operator token), whatever the backend.
    pub fn data_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The store, as logs and errors name it: the redb file, or the
    /// database's hosts and name (never the user or the password).
    pub fn describe(&self) -> String {
        match (self.kind, &self.database_url) {
            (StoreKind::Postgres, Some(url)) => match url.settings() {
                Ok(settings) => describe_database(&settings),
                Err(_) => "postgres".into(),
            },
            _ => self.path.display().to_string(),
        }
    }

    pub(super) fn check(&mut self, env: Env) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return err("store.path", "must not be empty");
        }
        if self.purge_interval < Duration::from_millis(100) {
            return err("store.purge_interval", "must be at least 100ms");
        }
        match self.kind {
            StoreKind::Redb => {
                if self.url.is_some() {
                    return err("store.url", "is for kind: postgres");
                }
                Ok(())
            }
            StoreKind::Postgres => self.check_postgres(env),
        }
    }

    fn check_postgres(&mut self, env: Env) -> Result<(), ConfigError> {
        if self.url_env.trim().is_empty() {
            return err("store.url_env", "must not be empty");
        }
        let from_env = env(&self.url_env).filter(|v| !v.trim().is_empty());
        let (key, url) = match (from_env, &self.url) {
            (Some(value), _) => ("store.url_env", DatabaseUrl(value.trim().to_string())),
            (None, Some(url)) => ("store.url", url.clone()),
            (None, None) => {
                return err(
                    "store.url",
                    format!(
                        "kind: postgres needs a connection string: set the variable {} \
                         (store.url_env) or store.url",
                        self.url_env
                    ),
                )
            }
        };
        // tokio-postgres names the option at fault, never its value.
        if let Err(e) = url.settings() {
            return err(
                key,
                format!(
                    "not a PostgreSQL connection string \
                     (postgres://user:password@host:port/database?sslmode=require): {e}"
                ),
            );
        }
        self.database_url = Some(url);
        if self.pool_size == 0 || self.pool_size > 1_000 {
            return err("store.pool_size", "must be between 1 and 1000");
        }
        if let Some(path) = &self.ca_file {
            if !path.is_file() {
                return err(
                    "store.ca_file",
                    format!("{} is not a readable file", path.display()),
                );
            }
        }
        if self.sync_interval < Duration::from_millis(10) {
            return err("store.sync_interval", "must be at least 10ms");
        }
        if self.max_staleness < Duration::from_secs(1) {
            return err("store.max_staleness", "must be at least 1s");
        }
        if self.sync_interval >= self.max_staleness {
            return err(
                "store.sync_interval",
                "must be shorter than store.max_staleness",
            );
        }
        Ok(())
    }
}

/// `postgres host:port[,host:port]/database`, from the parsed settings.
fn describe_database(settings: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = settings
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = settings
                .get_ports()
                .get(i)
                .or(settings.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    format!(
        "postgres {}/{}",
        hosts.join(","),
        settings.get_dbname().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    use super::StoreKind;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_yaml(yaml, &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn refusal(yaml: &str, env: &[(&str, &str)]) -> String {
        load(yaml, env).expect_err("refused").0
    }

    const URL: &str = "postgres://vigile:s3cr3t-pw@db.internal:5433/vigile?sslmode=require";

    #[test]
    fn redb_is_the_default_and_postgres_keys_have_defaults() {
        let config = load("", &[]).expect("loads");
        let store = &config.store;
        assert_eq!(store.kind, StoreKind::Redb);
        assert_eq!(store.url_env, "VIGILE_DATABASE_URL");
        assert_eq!(store.pool_size, 16);
        assert_eq!(store.sync_interval.as_secs(), 1);
        assert_eq!(store.max_staleness.as_secs(), 30);
        assert!(store.database_url.is_none());
        assert_eq!(store.describe(), "data/vigile.redb");
    }

    #[test]
    fn postgres_without_a_url_is_refused_naming_the_key() {
        let message = refusal("store: {kind: postgres}", &[]);
        assert!(message.starts_with("store.url: "), "{message}");
        assert!(message.contains("VIGILE_DATABASE_URL"), "{message}");
        let message = refusal(
            "store: {kind: postgres, url_env: DB}",
            &[("VIGILE_DATABASE_URL", URL), ("DB", " ")],
        );
        assert!(message.contains("variable DB"), "{message}");
    }

    #[test]
    fn the_url_comes_from_the_variable_first_then_the_key() {
        let config = load(
            "store: {kind: postgres, url: 'postgres://a@inline/one'}",
            &[("VIGILE_DATABASE_URL", URL)],
        )
        .expect("loads");
        assert_eq!(config.store.describe(), "postgres db.internal:5433/vigile");
        let config = load(
            "store: {kind: postgres, url: 'postgres://a@inline/one', pool_size: 4}",
            &[],
        )
        .expect("loads");
        assert_eq!(config.store.describe(), "postgres inline:5432/one");
        assert_eq!(config.store.pool_size, 4);
    }

    #[test]
    fn the_url_is_never_shown() {
        let config =
            load("store: {kind: postgres}", &[("VIGILE_DATABASE_URL", URL)]).expect("loads");
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t-pw"), "{debug}");
        assert!(!debug.contains("vigile:"), "{debug}");
        for bad in [
            "postgres://vigile:s3cr3t-pw@db/vigile?sslmode=sometimes",
            "postgres://vigile:s3cr3t-pw@db/vigile?colour=blue",
            "postgres://vigile:s3cr3t-pw@[db/vigile",
        ] {
            let message = refusal("store: {kind: postgres}", &[("VIGILE_DATABASE_URL", bad)]);
            assert!(message.starts_with("store.url_env: "), "{message}");
            assert!(!message.contains("s3cr3t-pw"), "{message}");
            let inline = format!("store: {{kind: postgres, url: '{bad}'}}");
            let message = refusal(&inline, &[]);
            assert!(message.starts_with("store.url: "), "{message}");
            assert!(!message.contains("s3cr3t-pw"), "{message}");
        }
    }

    #[test]
    fn postgres_values_are_checked() {
        let env = [("VIGILE_DATABASE_URL", URL)];
        for (yaml, key) in [
            ("store: {kind: postgres, pool_size: 0}", "store.pool_size"),
            (
                "store: {kind: postgres, sync_interval: 1ms}",
                "store.sync_interval",
            ),
            (
                "store: {kind: postgres, max_staleness: 500ms}",
                "store.max_staleness",
            ),
            (
                "store: {kind: postgres, sync_interval: 40s}",
                "store.sync_interval",
            ),
            ("store: {kind: postgres, url_env: ''}", "store.url_env"),
            (
                "store: {kind: postgres, ca_file: /nonexistent/ca.pem}",
                "store.ca_file",
            ),
            ("store: {kind: mysql}", "store.kind"),
            ("store: {url: 'postgres://a@b/c'}", "store.url"),
        ] {
            let message = refusal(yaml, &env);
            assert!(message.contains(key), "{yaml}: {message}");
        }
    }
}

//! `store:`, the redb file and its upkeep.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, err, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// How often expired sessions, revocations and reset tokens are dropped.
    #[serde(deserialize_with = "duration::deserialize")]
    pub purge_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("data/vigile.redb"),
            purge_interval: Duration::from_secs(60),
        }
    }
}

impl StoreConfig {
    /// The folder that holds the store and the files the gateway generates
    /// (signing secret, operator token).
    pub fn data_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return err("store.path", "must not be empty");
        }
        if self.purge_interval < Duration::from_millis(100) {
            return err("store.purge_interval", "must be at least 100ms");
        }
        Ok(())
    }
}

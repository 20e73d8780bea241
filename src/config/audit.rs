//! `audit:` where the audit log goes besides the log (`audit.rs`).

use std::path::PathBuf;

use serde::Deserialize;

use super::{err, ConfigError};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A file the audit lines are appended to (created mode 0600), besides
    /// the log's `vigile::audit` lines. Changes live: a reload opens it
    /// again (after a rotation too).
    pub file: Option<PathBuf>,
}

impl AuditConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if file.as_os_str().is_empty() {
            return err(
                "audit.file",
                "must not be empty (leave the key out for none)",
            );
        }
        if file.is_dir() {
            return err("audit.file", format!("{} is a folder", file.display()));
        }
        match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => err(
                "audit.file",
                format!("the folder {} does not exist", dir.display()),
            ),
            _ => Ok(()),
        }
    }
}

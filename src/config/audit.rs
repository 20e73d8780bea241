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

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn check(yaml: &str) -> Result<(), String> {
        Config::from_yaml(yaml, &|_| None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_needs_an_existing_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = format!(
            "audit:\n  file: {}\n",
            dir.path().join("audit.log").display()
        );
        assert_eq!(check(&ok), Ok(()));
        assert_eq!(check("audit: {}\n"), Ok(()));
        let missing = format!(
            "audit:\n  file: {}\n",
            dir.path().join("no/audit.log").display()
        );
        let e = check(&missing).expect_err("no such folder");
        assert!(e.starts_with("audit.file: the folder"), "{e}");
        let e = check(&format!("audit:\n  file: {}\n", dir.path().display())).expect_err("a dir");
        assert!(e.starts_with("audit.file:"), "{e}");
        let e = check("audit:\n  path: x\n").expect_err("unknown key");
        assert!(e.contains("unknown field"), "{e}");
    }
}

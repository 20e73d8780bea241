//! `migration:`, the cut-over from the system vigile replaces.
//! `migration.simplejwt`: its refresh tokens are exchanged once for a
//! vigile session at the refresh endpoint, and (with `accept_access`) its
//! access tokens pass the proxy path, until `until`.

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use serde::Deserialize;

use super::tokens::{read_secret_file, trim_secret, KeySource, TokenConfig};
use super::{err, ConfigError, Env};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationConfig {
    pub simplejwt: Option<SimpleJwtConfig>,
}

/// simplejwt's HMAC algorithms (its `ALGORITHM` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SimpleJwtAlgorithm {
    #[default]
    HS256,
    HS384,
    HS512,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleJwtConfig {
    /// The variable holding Django's `SIGNING_KEY` (its `SECRET_KEY` by default).
    #[serde(default = "default_key_env")]
    pub signing_key_env: String,
    /// Or a file holding it.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub algorithm: SimpleJwtAlgorithm,
    /// simplejwt's `USER_ID_CLAIM`: the claim holding the account id.
    #[serde(default = "default_user_id_claim")]
    pub user_id_claim: String,
    /// RFC 3339 (`2027-01-31T00:00:00Z`): from then on, refused.
    pub until: String,
    /// simplejwt access tokens pass the proxy path until they expire.
    #[serde(default)]
    pub accept_access: bool,
    /// The key, read at load.
    #[serde(skip)]
    pub key: Vec<u8>,
    /// `until` in unix seconds, at load.
    #[serde(skip)]
    pub until_unix: u64,
}

fn default_key_env() -> String {
    "DJANGO_SECRET_KEY".into()
}

fn default_user_id_claim() -> String {
    "user_id".into()
}

impl MigrationConfig {
    pub(super) fn check(&mut self, env: Env, tokens: &TokenConfig) -> Result<(), ConfigError> {
        let Some(jwt) = &mut self.simplejwt else {
            return Ok(());
        };
        let at = humantime::parse_rfc3339(jwt.until.trim()).or_else(|e| {
            err(
                "migration.simplejwt.until",
                format!("{e} (expected RFC 3339, as 2027-01-31T00:00:00Z)"),
            )
        })?;
        jwt.until_unix = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if jwt.user_id_claim.trim().is_empty() {
            return err("migration.simplejwt.user_id_claim", "is empty");
        }
        jwt.key = match (&jwt.signing_key_file, env(&jwt.signing_key_env)) {
            (Some(path), _) => read_secret_file("migration.simplejwt.signing_key_file", path)?,
            (None, Some(value)) => value.into_bytes(),
            (None, None) => {
                return err(
                    "migration.simplejwt.signing_key_env",
                    format!(
                        "the variable {} is not set (or give signing_key_file)",
                        jwt.signing_key_env
                    ),
                )
            }
        };
        // Django signs with its SECRET_KEY as is: no trimming of the value
        // from the environment; a file's final newline is not part of it.
        if jwt.signing_key_file.is_some() {
            jwt.key = trim_secret(std::mem::take(&mut jwt.key));
        }
        if jwt.key.is_empty() {
            return err("migration.simplejwt.signing_key_env", "the key is empty");
        }
        // Key separation: a token of one system must never pass for the other's.
        if matches!(&tokens.key, KeySource::Secret(ours) if *ours == jwt.key) {
            return err(
                "migration.simplejwt.signing_key_env",
                "is the same key as tokens.secret_env: give vigile a key of its own",
            );
        }
        Ok(())
    }
}

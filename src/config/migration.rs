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

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        Config::from_yaml(yaml, &lookup).map_err(|e| e.0)
    }

    const SECTION: &str = "migration:\n  simplejwt:\n    until: \"2027-01-31T00:00:00Z\"\n";

    #[test]
    fn the_section_is_read_and_checked_naming_its_keys() {
        let cfg = load(SECTION, &[("DJANGO_SECRET_KEY", "django-key")]).expect("valid");
        let jwt = cfg.migration.simplejwt.expect("section");
        assert_eq!(jwt.key, b"django-key");
        assert_eq!(jwt.until_unix, 1_801_353_600);
        assert_eq!(jwt.user_id_claim, "user_id");
        assert!(!jwt.accept_access);

        let unset = load(SECTION, &[]).expect_err("no key");
        assert!(
            unset.starts_with("migration.simplejwt.signing_key_env:"),
            "{unset}"
        );
        let bad_until = SECTION.replace("2027-01-31T00:00:00Z", "next year");
        let e = load(&bad_until, &[("DJANGO_SECRET_KEY", "k")]).expect_err("until");
        assert!(e.starts_with("migration.simplejwt.until:"), "{e}");
        let e = load("migration:\n  simplejwt: {}\n", &[]).expect_err("until is required");
        assert!(e.contains("until"), "{e}");
        let other_alg = format!("{SECTION}    algorithm: RS256\n");
        assert!(load(&other_alg, &[("DJANGO_SECRET_KEY", "k")]).is_err());
        // One key for both systems would let a token of one pass for the other's.
        let shared = format!("tokens: {{secret_env: VIGILE_KEY}}\n{SECTION}");
        let e = load(
            &shared,
            &[
                ("DJANGO_SECRET_KEY", "same-key-0123456789abcdef0123456789"),
                ("VIGILE_KEY", "same-key-0123456789abcdef0123456789"),
            ],
        )
        .expect_err("shared key");
        assert!(e.contains("a key of its own"), "{e}");
    }
}

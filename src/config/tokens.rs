//! `tokens:`, the JWTs: algorithm, signing material, lifetimes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{duration, err, ConfigError, Env};

/// JWT signing algorithm, pinned for issuing and verifying alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    HS256,
    EdDSA,
    RS256,
}

/// Where the signing material comes from.
#[derive(Debug, Clone, Default)]
pub enum KeySource {
    /// HS256 secret read from the environment or a file at load.
    Secret(Vec<u8>),
    /// HS256 secret generated on first start and kept in the data directory.
    #[default]
    GeneratedSecret,
    /// EdDSA/RS256 private key (PEM) read at load.
    PrivateKeyPem(Vec<u8>),
    /// EdDSA key generated on first start and kept in the data directory.
    GeneratedEd25519,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    pub algorithm: Algorithm,
    /// What `secret_env`, `secret_file` and `private_key_file` give, read at load.
    #[serde(skip)]
    pub key: KeySource,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub private_key_file: Option<PathBuf>,
    pub issuer: String,
    pub audience: String,
    #[serde(deserialize_with = "duration::deserialize")]
    pub access_ttl: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    pub refresh_ttl: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    pub reuse_grace: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    pub leeway: Duration,
    /// How many verified access tokens the proxy path remembers (0: none).
    pub verified_cache: usize,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            algorithm: Algorithm::HS256,
            key: KeySource::GeneratedSecret,
            secret_env: Some("VIGILE_JWT_SECRET".into()),
            secret_file: None,
            private_key_file: None,
            issuer: "vigile".into(),
            audience: "api".into(),
            access_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(86_400),
            reuse_grace: Duration::from_secs(10),
            leeway: Duration::ZERO,
            verified_cache: 16_384,
        }
    }
}

impl TokenConfig {
    /// Checks the values and reads the signing material into `key`.
    pub(super) fn check(&mut self, env: Env) -> Result<(), ConfigError> {
        self.key = self.key_source(env)?;
        if self.issuer.is_empty() {
            return err("tokens.issuer", "must not be empty");
        }
        if self.audience.is_empty() {
            return err("tokens.audience", "must not be empty");
        }
        if self.access_ttl < Duration::from_secs(1) {
            return err("tokens.access_ttl", "must be at least 1s");
        }
        if self.refresh_ttl < self.access_ttl {
            return err("tokens.refresh_ttl", "must be at least tokens.access_ttl");
        }
        if self.leeway > Duration::from_secs(300) {
            return err("tokens.leeway", "must be at most 5m");
        }
        if self.verified_cache > 10_000_000 {
            return err("tokens.verified_cache", "must be at most 10000000");
        }
        Ok(())
    }

    fn key_source(&self, env: Env) -> Result<KeySource, ConfigError> {
        match self.algorithm {
            Algorithm::HS256 => {
                if self.private_key_file.is_some() {
                    return err(
                        "tokens.private_key_file",
                        "is for EdDSA and RS256; HS256 uses secret_env or secret_file",
                    );
                }
                let from_env = self
                    .secret_env
                    .as_deref()
                    .and_then(|name| env(name).map(|v| (name, v)));
                match (from_env, &self.secret_file) {
                    (Some((name, value)), _) => {
                        if value.trim().is_empty() {
                            return err(
                                "tokens.secret_env",
                                format!("the variable {name} is empty"),
                            );
                        }
                        Ok(KeySource::Secret(trim_secret(value.into_bytes())))
                    }
                    (None, Some(path)) => {
                        let secret = trim_secret(read_secret_file("tokens.secret_file", path)?);
                        if secret.is_empty() {
                            return err(
                                "tokens.secret_file",
                                format!("{} is empty", path.display()),
                            );
                        }
                        Ok(KeySource::Secret(secret))
                    }
                    (None, None) => Ok(KeySource::GeneratedSecret),
                }
            }
            Algorithm::EdDSA | Algorithm::RS256 => {
                if self.secret_file.is_some() {
                    return err(
                        "tokens.secret_file",
                        "is for HS256; EdDSA and RS256 use private_key_file",
                    );
                }
                match &self.private_key_file {
                    Some(path) => Ok(KeySource::PrivateKeyPem(read_secret_file(
                        "tokens.private_key_file",
                        path,
                    )?)),
                    None if self.algorithm == Algorithm::EdDSA => Ok(KeySource::GeneratedEd25519),
                    None => err(
                        "tokens.private_key_file",
                        "RS256 needs a PEM private key file",
                    ),
                }
            }
        }
    }
}

pub(super) fn read_secret_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).or_else(|e| err(key, format!("cannot read {}: {e}", path.display())))
}

/// Trailing white space (a final newline) is not part of a secret.
pub(super) fn trim_secret(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

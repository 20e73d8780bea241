//! `TokenKeys`, what the rest of the gateway holds: the key set in force
//! (`keyset.rs`) behind an atomic pointer, swapped whole when the
//! configuration is reloaded (`reconfigure`) or the stored keys change
//! (`set_stored`: a rotation, a retirement, another replica's). A request
//! loads the pointer once (no lock, no allocation) and checks its token
//! against that set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::keyset::{KeyInfo, KeySet, Settings};
use super::material::{self, Material};
use super::StoredKey;
use crate::config::{Algorithm, KeySource, TokenConfig};
use crate::fsutil;

/// Why the keys could not be set up; each message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("tokens: cannot keep the generated {what} in {}: {source}", path.display())]
    Keep {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: not an {kind} private key in PEM: {reason}")]
    NotAKey {
        what: String,
        kind: &'static str,
        reason: String,
    },
    #[error("tokens: cannot derive the public key: {0}")]
    Derive(jsonwebtoken::errors::Error),
    #[error("tokens: cannot use the public key: {0}")]
    Public(jsonwebtoken::errors::Error),
    #[error("tokens: algorithm and key source do not match")]
    Mismatch,
    #[error("tokens: cannot encode the token header or the JWKS: {0}")]
    Json(#[from] serde_json::Error),
    #[error("tokens: the HS256 secret cannot key HMAC-SHA256")]
    Secret(#[from] hmac::digest::InvalidLength),
    #[error("tokens: cannot generate a key: {0}")]
    Generate(String),
    #[error(
        "the stored signing key {kid} has no private part (retire it: vigile keys retire {kid})"
    )]
    NoMaterial { kid: String },
    #[error("the stored signing key {kid} is not the key its kid names")]
    KidMismatch { kid: String },
    #[error(
        "the stored signing key {kid} is encrypted and {} is not set: give this process the \
         same value as the one that rotated it",
        material::ENCRYPTION_KEY_ENV
    )]
    NoSealingKey { kid: String },
    #[error(
        "the stored signing key {kid} cannot be decrypted (wrong {} or damaged row)",
        material::ENCRYPTION_KEY_ENV
    )]
    Unseal { kid: String },
}

pub struct TokenKeys {
    set: ArcSwap<KeySet>,
    generations: AtomicU64,
    /// Serializes the swaps, so that a reload and a rotation arriving
    /// together do not undo each other.
    writer: parking_lot::Mutex<()>,
}

const SECRET_FILE: &str = "jwt-secret";
const ED25519_FILE: &str = "jwt-ed25519.pem";

/// The key the configuration gives; a generated secret or key is read
/// from, or first written to, the data directory (mode 0600).
fn config_key(cfg: &TokenConfig, data_dir: &Path) -> Result<Material, KeyError> {
    let keep = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Keep { what, path, source }
    };
    match (&cfg.algorithm, &cfg.key) {
        (Algorithm::HS256, KeySource::Secret(secret)) => {
            material::parse(Algorithm::HS256, secret, "tokens.secret_env")
        }
        (Algorithm::HS256, KeySource::GeneratedSecret) => {
            let path = data_dir.join(SECRET_FILE);
            let secret = fsutil::read_or_create_private(&path, || {
                use base64::Engine;
                let bytes: [u8; 32] = rand::random();
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(bytes)
                    .into_bytes()
            })
            .map_err(keep("secret", &path))?;
            material::parse(Algorithm::HS256, &secret, "tokens")
        }
        (Algorithm::EdDSA | Algorithm::RS256, KeySource::PrivateKeyPem(pem)) => {
            material::parse(cfg.algorithm, pem, "tokens.private_key_file")
        }
        (Algorithm::EdDSA, KeySource::GeneratedEd25519) => {
            let path = data_dir.join(ED25519_FILE);
            let pem = fsutil::read_or_create_private(&path, material::generate_ed25519_pem)
                .map_err(keep("key", &path))?;
            material::parse(Algorithm::EdDSA, &pem, &path.display().to_string())
        }
        _ => Err(KeyError::Mismatch),
    }
}

impl TokenKeys {
    /// The keys of the configuration alone (`set_stored` adds the rotated ones).
    pub fn from_config(cfg: &TokenConfig, data_dir: &Path) -> Result<TokenKeys, KeyError> {
        let config = Arc::new(config_key(cfg, data_dir)?);
        let set = KeySet::build(0, Settings::from_config(cfg), config, Vec::new())?;
        Ok(TokenKeys {
            set: ArcSwap::from_pointee(set),
            generations: AtomicU64::new(0),
            writer: parking_lot::Mutex::new(()),
        })
    }

    /// Rebuilds the set from a new `tokens:` section (lifetimes, issuer,
    /// audience, leeway, the configuration's key), keeping the stored keys,
    /// and swaps it in at once. On error nothing changes.
    pub fn reconfigure(&self, cfg: &TokenConfig, data_dir: &Path) -> Result<(), KeyError> {
        let _writer = self.writer.lock();
        let current = self.set.load_full();
        let config = Arc::new(config_key(cfg, data_dir)?);
        let settings = Settings::from_config(cfg).after(&current.settings, crate::unix_now());
        let set = KeySet::build(
            self.next_generation(),
            settings,
            config,
            current.stored.clone(),
        )?;
        self.set.store(Arc::new(set));
        Ok(())
    }

    /// Takes the stored keys as they are now (all of them, whatever their
    /// state). `Ok(false)` when they are those in force already (nothing
    /// swapped). On error nothing changes.
    pub fn set_stored(&self, mut stored: Vec<StoredKey>) -> Result<bool, KeyError> {
        stored.sort_by(|a, b| a.kid.cmp(&b.kid));
        let _writer = self.writer.lock();
        let current = self.set.load_full();
        if current.stored == stored {
            return Ok(false);
        }
        let set = KeySet::build(
            self.next_generation(),
            current.settings.clone(),
            current.config.clone(),
            stored,
        )?;
        self.set.store(Arc::new(set));
        Ok(true)
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The set in force now: one atomic load, no lock.
    #[inline]
    pub fn current(&self) -> Guard<Arc<KeySet>> {
        self.set.load()
    }

    pub fn access_ttl(&self) -> u64 {
        self.current().settings.access_ttl
    }

    pub fn refresh_ttl(&self) -> u64 {
        self.current().settings.refresh_ttl
    }

    pub fn leeway(&self) -> u64 {
        self.current().settings.leeway
    }

    pub fn algorithm(&self) -> Algorithm {
        self.current().settings.algorithm
    }

    /// `{"keys": [...]}`: the public part of every key that verifies (none
    /// for HS256).
    pub fn jwks_json(&self) -> Arc<[u8]> {
        self.current().jwks.clone()
    }

    /// The `kid` of the configuration's key.
    pub fn config_kid(&self) -> String {
        self.current().config.kid.clone()
    }

    /// The `kid` of the key that signs now.
    pub fn signing_kid(&self) -> String {
        self.current().signer.kid.clone()
    }

    /// The stored keys in force (sorted by `kid`).
    pub fn stored(&self) -> Vec<StoredKey> {
        self.current().stored.clone()
    }

    /// Every key, as `vigile keys list` shows it.
    pub fn describe(&self) -> Vec<KeyInfo> {
        self.current().describe()
    }
}

#[cfg(test)]
mod tests;

//! The key set in force: which key signs, which keys verify, the settings
//! every check uses, and the JWKS. Built whole from the configuration's key
//! and the stored keys, never changed after: `TokenKeys` swaps in a new
//! one (`keys.rs`), so a request checks its token against one consistent set.
//!
//! Which key does what:
//! - the stored `active` key signs; without one (nothing rotated yet), the
//!   configuration's key does;
//! - the signing key, the stored `verify_only` keys and the configuration's
//!   key (unless it was recorded `retired`, or rotated keys sign and it was
//!   never recorded) verify;
//! - a token is checked against the key its `kid` names, by exact match, and
//!   with the algorithm of the configuration whatever its header says: an
//!   unknown or retired `kid` is refused. A token without `kid` (issued
//!   before key rotation existed) is accepted only while exactly one key
//!   could have signed it: the configuration's key, alone in the set (no
//!   rotation in force); it is refused once a rotation added a key.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Header, Validation};

use super::fast::FastHs256;
use super::material::{algorithm_name, parse, unseal, Material};
use super::{KeyError, KeyState, StoredKey};
use crate::config::{Algorithm, TokenConfig};

/// What every check uses besides the keys (the `tokens:` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub algorithm: Algorithm,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    pub leeway: u64,
    /// After a reload that shortened a lifetime: the longer one tokens
    /// issued before it may have, and until when such tokens can live.
    pub earlier_access: Option<(u64, u64)>,
    pub earlier_refresh: Option<(u64, u64)>,
}

impl Settings {
    pub fn from_config(cfg: &TokenConfig) -> Settings {
        Settings {
            algorithm: cfg.algorithm,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            access_ttl: cfg.access_ttl.as_secs(),
            refresh_ttl: cfg.refresh_ttl.as_secs(),
            leeway: cfg.leeway.as_secs(),
            earlier_access: None,
            earlier_refresh: None,
        }
    }

    /// These settings replacing `old` at `now` (a reload): tokens issued
    /// under `old`'s longer lifetimes keep passing the lifetime check until
    /// they expire, so that shortening a lifetime logs no one out.
    pub fn after(mut self, old: &Settings, now: u64) -> Settings {
        let access = old.access_limit(now);
        if access > self.access_ttl {
            self.earlier_access = Some((access, now + access + old.leeway));
        }
        let refresh = old.refresh_limit(now);
        if refresh > self.refresh_ttl {
            self.earlier_refresh = Some((refresh, now + refresh + old.leeway));
        }
        self
    }

    /// The longest lifetime an access token may have at `now`.
    pub fn access_limit(&self, now: u64) -> u64 {
        limit(self.access_ttl, self.earlier_access, now)
    }

    /// The longest lifetime a refresh token may have at `now`.
    pub fn refresh_limit(&self, now: u64) -> u64 {
        limit(self.refresh_ttl, self.earlier_refresh, now)
    }
}

fn limit(ttl: u64, earlier: Option<(u64, u64)>, now: u64) -> u64 {
    match earlier {
        Some((lifetime, until)) if now < until => ttl.max(lifetime),
        _ => ttl,
    }
}

/// One key as `vigile keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: String,
    /// `active`, `verify_only` or `retired`.
    pub state: String,
    /// `config` (tokens.secret_env, secret_file, private_key_file or the
    /// generated one in the data directory) or `store` (rotated).
    pub source: String,
    pub created_at: Option<u64>,
    pub deactivated_at: Option<u64>,
    pub retired_at: Option<u64>,
}

pub struct KeySet {
    /// Grows with every set swapped in: the cache of verified tokens checks
    /// its entries again when it differs.
    pub(super) generation: u64,
    pub(super) settings: Settings,
    /// jsonwebtoken's checks, the configured algorithm alone allowed.
    pub(super) validation: Validation,
    pub(super) signer: Arc<Material>,
    /// The keys that verify, the signing key first.
    pub(super) verifiers: Vec<Arc<Material>>,
    /// The key that checks tokens without `kid`: the configuration's, while
    /// it verifies.
    pub(super) legacy: Option<Arc<Material>>,
    /// HS256: the fast path of each verifying key (by its header), and of
    /// the tokens without `kid`.
    pub(super) fast: Vec<FastHs256>,
    pub(super) jwks: Arc<[u8]>,
    /// What the set was built from, to build the next one.
    pub(super) config: Arc<Material>,
    pub(super) stored: Vec<StoredKey>,
}

impl KeySet {
    pub(super) fn build(
        generation: u64,
        settings: Settings,
        config: Arc<Material>,
        stored: Vec<StoredKey>,
    ) -> Result<KeySet, KeyError> {
        let alg = settings.algorithm;
        let mut signer = None;
        let mut others = Vec::new();
        let mut config_state = None;
        for row in &stored {
            if row.algorithm != algorithm_name(alg) {
                tracing::warn!(
                    kid = %row.kid,
                    algorithm = %row.algorithm,
                    "a stored signing key of another algorithm than tokens.algorithm is ignored"
                );
                continue;
            }
            if row.kid == config.kid {
                config_state = Some(row.state);
                continue;
            }
            if row.state == KeyState::Retired {
                continue;
            }
            let Some(sealed) = &row.material else {
                return Err(KeyError::NoMaterial {
                    kid: row.kid.clone(),
                });
            };
            let bytes = unseal(&row.kid, sealed)?;
            let material = parse(alg, &bytes, &format!("the stored key {}", row.kid))?;
            if material.kid != row.kid {
                return Err(KeyError::KidMismatch {
                    kid: row.kid.clone(),
                });
            }
            let material = Arc::new(material);
            if row.state == KeyState::Active && signer.is_none() {
                signer = Some(material);
            } else {
                others.push(material);
            }
        }
        let config_verifies = match (config_state, &signer) {
            (Some(KeyState::Active | KeyState::VerifyOnly), _) => true,
            (Some(KeyState::Retired), _) => false,
            // Rotated keys sign, and this key was never one of the set
            // (the configuration changed after a rotation): it signed
            // nothing that could still be valid.
            (None, Some(_)) => false,
            (None, None) => true,
        };
        let signer = match signer {
            Some(signer) => signer,
            None => {
                if !config_verifies {
                    tracing::warn!(
                        kid = %config.kid,
                        "no stored key signs: the key of the configuration signs again, \
                         although it was retired"
                    );
                }
                config.clone()
            }
        };
        let mut verifiers = vec![signer.clone()];
        verifiers.extend(others);
        if config_verifies && !verifiers.iter().any(|k| Arc::ptr_eq(k, &config)) {
            verifiers.push(config.clone());
        }
        // A token without `kid` was issued before tokens carried one: by
        // the configuration's key (the only key there was). It verifies
        // with that key while the key verifies (active or verify_only), so
        // that a rotation right after the upgrade logs no one out; once the
        // key is retired, such tokens are refused like its own.
        let legacy = verifiers
            .iter()
            .any(|k| Arc::ptr_eq(k, &config))
            .then(|| config.clone());
        let mut fast = Vec::new();
        for key in &verifiers {
            if let Some(secret) = &key.secret {
                fast.push(FastHs256::new(&key.header, secret)?);
            }
        }
        if let Some(secret) = legacy.as_ref().and_then(|k| k.secret.as_ref()) {
            // The header of the tokens issued before `kid` existed.
            fast.push(FastHs256::new(&Header::new(signer.header.alg), secret)?);
        }
        let jwks = JwkSet {
            keys: verifiers.iter().filter_map(|k| k.jwk.clone()).collect(),
        };
        let mut validation = Validation::new(signer.header.alg);
        validation.leeway = settings.leeway;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = false;
        Ok(KeySet {
            generation,
            settings,
            validation,
            signer,
            verifiers,
            legacy,
            fast,
            jwks: serde_json::to_vec(&jwks)?.into(),
            config,
            stored,
        })
    }

    /// The key a token's `kid` names among those that verify (exact match,
    /// no allocation); `None` (no `kid`): the configuration's key while it
    /// verifies.
    pub(super) fn key_for(&self, kid: Option<&str>) -> Option<&Material> {
        match kid {
            None => self.legacy.as_deref(),
            Some(kid) => self.verifiers.iter().find(|k| k.kid == kid).map(|k| &**k),
        }
    }

    /// Every key, as `vigile keys list` shows it: the configuration's
    /// first, then the stored ones, oldest first.
    pub fn describe(&self) -> Vec<KeyInfo> {
        let alg = algorithm_name(self.settings.algorithm);
        let mut out = Vec::new();
        let recorded = self.stored.iter().any(|r| r.kid == self.config.kid);
        let verifies = self.verifiers.iter().any(|k| Arc::ptr_eq(k, &self.config));
        if !recorded && verifies {
            out.push(KeyInfo {
                kid: self.config.kid.clone(),
                algorithm: alg.to_string(),
                state: KeyState::Active.as_str().to_string(),
                source: "config".into(),
                created_at: None,
                deactivated_at: None,
                retired_at: None,
            });
        }
        let mut rows: Vec<&StoredKey> = self.stored.iter().collect();
        rows.sort_by_key(|r| (r.created_at.unwrap_or(0), r.kid.clone()));
        for row in rows {
            out.push(KeyInfo {
                kid: row.kid.clone(),
                algorithm: row.algorithm.clone(),
                state: row.state.as_str().to_string(),
                source: if row.kid == self.config.kid {
                    "config".into()
                } else {
                    "store".into()
                },
                created_at: row.created_at,
                deactivated_at: row.deactivated_at,
                retired_at: row.retired_at,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(access_ttl: u64, refresh_ttl: u64) -> Settings {
        Settings {
            algorithm: Algorithm::HS256,
            issuer: "vigile".into(),
            audience: "api".into(),
            access_ttl,
            refresh_ttl,
            leeway: 5,
            earlier_access: None,
            earlier_refresh: None,
        }
    }

    #[test]
    fn a_shortened_lifetime_spares_the_tokens_issued_before_until_they_expire() {
        let now = 1_000_000;
        let shorter = settings(60, 3_600).after(&settings(300, 86_400), now);
        assert_eq!(shorter.access_limit(now), 300);
        assert_eq!(shorter.refresh_limit(now + 3_599), 86_400);
        // Past the longest an earlier token can live (lifetime + leeway).
        assert_eq!(shorter.access_limit(now + 305), 60);
        assert_eq!(shorter.refresh_limit(now + 86_405), 3_600);
        // A longer lifetime needs nothing carried over; a second reload
        // carries what is still in force.
        let longer = settings(600, 86_400).after(&shorter, now + 10);
        assert_eq!(
            (longer.earlier_access, longer.access_limit(now + 10)),
            (None, 600)
        );
        let again = settings(30, 60).after(&shorter, now + 10);
        assert_eq!(again.access_limit(now + 10), 300);
        assert_eq!(again.access_limit(now + 10 + 305), 30);
    }
}

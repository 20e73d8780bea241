//! The signing keys over the store: `vigile keys list | rotate | retire
//! KID` (operator commands, in the gateway when one runs, else in the CLI),
//! the automatic retirement of verify-only keys, and the reloading of the
//! stored keys into the key set in force (`TokenKeys::set_stored`), here at
//! once after a change, on the other replicas by their housekeeping.
//!
//! The store's keys are changed in one serialized transaction
//! (`update_signing_keys`), so rotations on two replicas at once leave one
//! active key.

use super::{store_failed, AccountService};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::{ApiError, ErrorCode};
use crate::store::{Store, StoreError};
use crate::tokens::{generate_stored_key, KeyError, KeyInfo, KeyState, StoredKey, TokenKeys};

/// Why the stored keys could not be reloaded.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Reads the stored keys and swaps them in if they changed; `Ok(true)`
/// when they did.
pub fn sync(tokens: &TokenKeys, store: &Store) -> Result<bool, SyncError> {
    Ok(tokens.set_stored(store.signing_keys()?)?)
}

fn algorithm_name(tokens: &TokenKeys) -> String {
    format!("{:?}", tokens.algorithm())
}

/// The keys as `vigile keys list` prints them (fresh from the store).
pub fn list(service: &AccountService) -> Result<Vec<KeyInfo>, ApiError> {
    sync(&service.tokens, service.store.as_ref()).map_err(sync_failed)?;
    Ok(service.tokens.describe())
}

/// A new key of the configured algorithm becomes the active one; the one
/// that signed until now (the configuration's key on the first rotation)
/// verifies only.
/// What to tell the operator.
pub fn rotate(service: &AccountService, origin: &Origin, now: u64) -> Result<String, ApiError> {
    let tokens = &service.tokens;
    let new = generate_stored_key(tokens.algorithm(), now).map_err(|e| {
        ApiError::new(
            500,
            ErrorCode::InternalError,
            format!("Impossible de créer une clé : {e}"),
        )
    })?;
    let config_kid = tokens.config_kid();
    let algorithm = algorithm_name(tokens);
    let (keys, previous) = service
        .store
        .update_signing_keys(|keys| {
            let mut previous = Vec::new();
            for k in keys.iter_mut().filter(|k| k.state == KeyState::Active) {
                k.state = KeyState::VerifyOnly;
                k.deactivated_at = Some(now);
                previous.push(k.kid.clone());
            }
            if previous.is_empty() {
                // The configuration's key signed: it is set aside too.
                match keys.iter_mut().find(|k| k.kid == config_kid) {
                    Some(k) if k.state == KeyState::Retired => {}
                    Some(k) => {
                        k.state = KeyState::VerifyOnly;
                        k.deactivated_at = Some(now);
                        previous.push(k.kid.clone());
                    }
                    None => {
                        keys.push(StoredKey {
                            kid: config_kid.clone(),
                            algorithm: algorithm.clone(),
                            state: KeyState::VerifyOnly,
                            created_at: None,
                            deactivated_at: Some(now),
                            retired_at: None,
                            material: None,
                        });
                        previous.push(config_kid.clone());
                    }
                }
            }
            keys.push(new.clone());
            previous
        })
        .map_err(store_failed)?;
    tokens.set_stored(keys).map_err(sync_failed)?;
    tracing::info!(kid = %new.kid, previous = ?previous, "signing key rotated");
    let entry = Entry::new(AuditEvent::KeyRotated).detail("kid", new.kid.as_str());
    service.audit.record(origin, entry);
    let until = now + tokens.refresh_ttl() + tokens.leeway();
    Ok(format!(
        "key {} ({algorithm}) active; {} verify_only until {} at the latest, then retired",
        new.kid,
        if previous.is_empty() {
            "no key".to_string()
        } else {
            previous.join(", ")
        },
        crate::rfc3339(until)
    ))
}

enum Retire {
    Done,
    Already,
    Active,
    Unknown,
}

/// Key `kid` verifies nothing from now on; its private part is erased.
/// What to tell the operator.
pub fn retire(
    service: &AccountService,
    kid: &str,
    origin: &Origin,
    now: u64,
) -> Result<String, ApiError> {
    let tokens = &service.tokens;
    let config_kid = tokens.config_kid();
    let (keys, outcome) = service
        .store
        .update_signing_keys(|keys| {
            let rotated = keys.iter().any(|k| k.state == KeyState::Active);
            match keys.iter_mut().find(|k| k.kid == kid) {
                // The configuration's key, signing (nothing rotated yet).
                None if kid == config_kid && !rotated => Retire::Active,
                None => Retire::Unknown,
                Some(k) => match k.state {
                    KeyState::Active => Retire::Active,
                    KeyState::Retired => Retire::Already,
                    KeyState::VerifyOnly => {
                        retire_row(k, now);
                        Retire::Done
                    }
                },
            }
        })
        .map_err(store_failed)?;
    let shown: String = kid.chars().take(64).collect();
    match outcome {
        Retire::Unknown => Err(ApiError::new(
            404,
            ErrorCode::KeyNotFound,
            format!("Aucune clé de signature avec le kid {shown}"),
        )),
        Retire::Active => Err(ApiError::new(
            409,
            ErrorCode::KeyActive,
            format!(
                "La clé {shown} signe les jetons : faites d'abord « vigile keys rotate », \
                 puis retirez-la"
            ),
        )),
        Retire::Already => Ok(format!("key {shown} already retired")),
        Retire::Done => {
            tokens.set_stored(keys).map_err(sync_failed)?;
            tracing::info!(kid = %shown, "signing key retired");
            let entry = Entry::new(AuditEvent::KeyRetired).detail("kid", shown.as_str());
            service.audit.record(origin, entry);
            Ok(format!(
                "key {shown} retired: its tokens are refused from now on"
            ))
        }
    }
}

fn retire_row(k: &mut StoredKey, now: u64) {
    k.state = KeyState::Retired;
    k.retired_at = Some(now);
    k.material = None;
}

/// Retires the verify-only keys no token of which can still be valid: they
/// stopped signing more than the refresh lifetime plus the leeway ago. The
/// kids retired (none without a store call when none is due).
pub fn retire_expired(
    tokens: &TokenKeys,
    store: &Store,
    now: u64,
) -> Result<Vec<String>, SyncError> {
    let horizon = tokens.refresh_ttl() + tokens.leeway();
    let due = |k: &StoredKey| {
        k.state == KeyState::VerifyOnly
            && k.deactivated_at
                .is_some_and(|t| t.saturating_add(horizon) < now)
    };
    if !tokens.stored().iter().any(due) {
        return Ok(Vec::new());
    }
    let (keys, retired) = store.update_signing_keys(|keys| {
        let mut retired = Vec::new();
        for k in keys.iter_mut().filter(|k| due(k)) {
            retire_row(k, now);
            retired.push(k.kid.clone());
        }
        retired
    })?;
    tokens.set_stored(keys)?;
    Ok(retired)
}

fn sync_failed(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "signing keys: cannot load the stored keys");
    ApiError::new(
        500,
        ErrorCode::InternalError,
        format!("Les clés de signature enregistrées ne peuvent pas être chargées : {e}"),
    )
}

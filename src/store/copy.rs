//! `vigile store copy`: everything one store holds, read through the
//! interface in one transaction (`StoreBackend::contents`), written into
//! another with its keys and ids (`StoreBackend::copy_in`).
//!
//! A copy makes the target hold every row of the source as the source has
//! it: a row missing is added, a row that differs is overwritten, an equal
//! row is left alone (so a second copy changes nothing), and rows only the
//! target has stay. Account ids are kept, and the target's next id comes
//! after every id the source ever gave (deleted accounts' too).

use std::fmt;

use super::{
    AccountRecord, ResetRecord, Revocation, SessionRecord, StoreBackend, StoreError, StoreResult,
};
use crate::tokens::{KeyState, SessionId, StoredKey};

/// Everything a store holds, each table in key order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreContents {
    /// By increasing id.
    pub accounts: Vec<AccountRecord>,
    /// The id the next new account gets (ids are never reused).
    pub next_account_id: u64,
    /// Name and creation time, by name (byte order).
    pub roles: Vec<(String, u64)>,
    /// By session id.
    pub sessions: Vec<(SessionId, SessionRecord)>,
    /// Every revocation kept, expired or not, by session id.
    pub revocations: Vec<Revocation>,
    /// SHA-256 of the token and its record, by hash.
    pub reset_tokens: Vec<(Vec<u8>, ResetRecord)>,
    /// The accounts an import wrote: (id, date_joined, cut_off), by id.
    pub imported_accounts: Vec<(u64, u64, u64)>,
    /// The other system's refresh tokens known here, by jti.
    pub legacy_tokens: Vec<LegacyTokenRow>,
}

/// A row of the other system's refresh tokens (`vigile import django`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTokenRow {
    pub jti: String,
    pub expires_at: u64,
    /// Used here (exchanged, or spent by a logout); else blacklisted there.
    pub used: bool,
    /// The session it was exchanged for.
    pub session: Option<SessionId>,
}

/// What a copy did to one table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Copied {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl Copied {
    /// `total` rows given, of which `added` were new and `updated` differed.
    pub fn of(total: usize, added: u64, updated: u64) -> Copied {
        Copied {
            added,
            updated,
            unchanged: (total as u64).saturating_sub(added + updated),
        }
    }
}

/// What a copy did, table by table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyReport {
    pub accounts: Copied,
    pub roles: Copied,
    pub sessions: Copied,
    pub revocations: Copied,
    pub reset_tokens: Copied,
    /// The rotated signing keys (`vigile keys`), by kid.
    pub signing_keys: Copied,
    /// The accounts an import wrote, and the other system's refresh tokens.
    pub imported_accounts: Copied,
    pub legacy_tokens: Copied,
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tables = [
            ("accounts", self.accounts),
            ("roles", self.roles),
            ("sessions", self.sessions),
            ("revocations", self.revocations),
            ("reset_tokens", self.reset_tokens),
            ("signing_keys", self.signing_keys),
            ("imported", self.imported_accounts),
            ("legacy_tokens", self.legacy_tokens),
        ];
        for (name, c) in tables {
            writeln!(
                f,
                "{name:<13} {} added, {} updated, {} unchanged (skipped)",
                c.added, c.updated, c.unchanged
            )?;
        }
        Ok(())
    }
}

/// Copies everything `from` holds into `to`, the signing keys too (their
/// private parts as stored: sealed ones need the same
/// `VIGILE_KEY_ENCRYPTION_KEY`). Refused, before anything is written, when
/// both stores have an active signing key and they differ.
pub fn copy(from: &dyn StoreBackend, to: &dyn StoreBackend) -> StoreResult<CopyReport> {
    let keys = from.signing_keys()?;
    let active = |keys: &[StoredKey]| {
        keys.iter()
            .find(|k| k.state == KeyState::Active)
            .map(|k| k.kid.clone())
    };
    if let (Some(mine), Some(theirs)) = (active(&keys), active(&to.signing_keys()?)) {
        if mine != theirs {
            return Err(StoreError::Db(format!(
                "both stores have an active signing key ({mine} here, {theirs} in the target): \
                 nothing was copied"
            )));
        }
    }
    let mut report = to.copy_in(&from.contents()?)?;
    let ((added, updated), _) = to
        .update_signing_keys(|target| {
            let (mut added, mut updated) = (0, 0);
            for key in &keys {
                match target.iter_mut().find(|k| k.kid == key.kid) {
                    Some(same) if same == key => {}
                    Some(other) => {
                        *other = key.clone();
                        updated += 1;
                    }
                    None => {
                        target.push(key.clone());
                        added += 1;
                    }
                }
            }
            (added, updated)
        })
        .map(|(keys, counts)| (counts, keys))?;
    report.signing_keys = Copied::of(keys.len(), added, updated);
    Ok(report)
}

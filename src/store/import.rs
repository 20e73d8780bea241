//! What an import from another system (`vigile import django`) writes, and
//! the one rule that decides, account by account, what a second import may
//! change: `merge`. Both backends apply it inside their transaction, so a
//! login that upgrades a hash while an import runs is never undone.
//!
//! An imported account keeps its id. An account already here with that id
//! is the same account when it joined at the same time (ids and join times
//! come from the other system); any other account there makes the import
//! fail, as does an email another id holds.

use std::fmt;

use super::{AccountRecord, Revocation, StoreError};
use crate::tokens::SessionId;

/// Everything one import writes, in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportBatch {
    /// With their ids, in any order; emails trimmed.
    pub accounts: Vec<AccountRecord>,
    /// Roles to create when missing (those the accounts name are created too).
    pub roles: Vec<String>,
    /// Refresh tokens the other system had blacklisted: refused for good.
    pub blacklisted: Vec<LegacyToken>,
}

/// A refresh token of the other system, by its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyToken {
    pub jti: String,
    /// After this (unix seconds) the token is expired anyway and its row may go.
    pub expires_at: u64,
}

/// What presenting a legacy refresh token for exchange found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyUse {
    /// First presentation: it is now marked used (committed), with the
    /// session it is exchanged for.
    Fresh,
    /// Blacklisted by the other system before the import.
    Blacklisted,
    /// Used once already: for this session (none when a logout spent it).
    Used(Option<SessionId>),
}

/// An account an import wrote, as the store has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedAccount {
    pub account: AccountRecord,
    /// The other system's tokens issued at or before this time (unix
    /// seconds) are refused: set when the account's sessions were all
    /// revoked here (password changed or reset, logout of every session,
    /// deactivation). 0: never.
    pub cut_off: u64,
}

/// How many rows of each kind an import added, updated or left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub accounts_added: u64,
    pub accounts_updated: u64,
    pub accounts_unchanged: u64,
    pub roles_added: u64,
    pub blacklisted_added: u64,
    /// Sessions ended because the import deactivated their account.
    pub revoked: Vec<Revocation>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accounts      {} added, {} updated, {} unchanged",
            self.accounts_added, self.accounts_updated, self.accounts_unchanged
        )?;
        writeln!(f, "roles         {} added", self.roles_added)?;
        writeln!(
            f,
            "blacklisted   {} refresh tokens added",
            self.blacklisted_added
        )?;
        writeln!(
            f,
            "sessions      {} ended (accounts deactivated)",
            self.revoked.len()
        )
    }
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("account {id}: its email {email} belongs to account {other} here")]
    EmailTaken { id: u64, email: String, other: u64 },
    #[error(
        "account {id}: this store's account {id} is another one ({email}, joined at {joined})"
    )]
    IdTaken { id: u64, email: String, joined: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportReport {
    /// Counts what `merge` decided; the record to write, if any.
    pub fn count(&mut self, merge: Merge) -> Option<AccountRecord> {
        match merge {
            Merge::Unchanged => {
                self.accounts_unchanged += 1;
                None
            }
            Merge::Add(record) => {
                self.accounts_added += 1;
                Some(record)
            }
            Merge::Update(record) => {
                self.accounts_updated += 1;
                Some(record)
            }
        }
    }
}

/// What an import does to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    Add(AccountRecord),
    Update(AccountRecord),
    Unchanged,
}

/// A password hash vigile made itself (argon2id, PHC): the account has
/// logged in here (or changed its password) since it was imported.
pub fn is_own_hash(hash: &str) -> bool {
    hash.starts_with("$argon2")
}

/// The record `incoming` makes of `existing` (the account with its id here,
/// and whether an import wrote that id): the other system's fields, except
/// what vigile decided since, which wins: a password hash it made (the
/// user's password here is newer), a later `last_login`, a deactivation
/// (an import deactivates, never reactivates), a deletion (an imported
/// account deleted here is not brought back). An account vigile made
/// itself is never merged.
pub fn merge(
    existing: Option<&AccountRecord>,
    existing_imported: bool,
    incoming: &AccountRecord,
) -> Result<Merge, ImportError> {
    let Some(existing) = existing else {
        return Ok(if existing_imported {
            Merge::Unchanged
        } else {
            Merge::Add(incoming.clone())
        });
    };
    if !existing_imported || existing.date_joined != incoming.date_joined {
        return Err(ImportError::IdTaken {
            id: existing.id,
            email: existing.email.clone(),
            joined: existing.date_joined,
        });
    }
    let mut merged = incoming.clone();
    if is_own_hash(&existing.password_hash) {
        merged.password_hash = existing.password_hash.clone();
    }
    merged.last_login = existing.last_login.max(incoming.last_login);
    merged.is_active = existing.is_active && incoming.is_active;
    Ok(if &merged == existing {
        Merge::Unchanged
    } else {
        Merge::Update(merged)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn django(id: u64, email: &str) -> AccountRecord {
        AccountRecord {
            id,
            email: email.into(),
            password_hash: "pbkdf2_sha256$1000000$salt$hash".into(),
            first_name: "Jean".into(),
            last_name: "Dupont".into(),
            gender: None,
            phone: None,
            role: "Visiteur".into(),
            is_active: true,
            date_joined: 1_700_000_000,
            last_login: Some(1_700_000_100),
        }
    }

    #[test]
    fn a_second_import_keeps_an_upgraded_hash_and_a_later_login() {
        let incoming = django(7, "jean@example.com");
        assert_eq!(
            merge(None, false, &incoming).expect("merge"),
            Merge::Add(incoming.clone())
        );
        assert_eq!(
            merge(Some(&incoming), true, &incoming).expect("merge"),
            Merge::Unchanged
        );
        let mut here = incoming.clone();
        here.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$x$y".into();
        here.last_login = Some(1_800_000_000);
        assert_eq!(
            merge(Some(&here), true, &incoming).expect("merge"),
            Merge::Unchanged
        );
        let mut renamed = incoming.clone();
        renamed.last_name = "Durand".into();
        let Merge::Update(merged) = merge(Some(&here), true, &renamed).expect("merge") else {
            panic!("an update");
        };
        assert_eq!(merged.last_name, "Durand");
        assert_eq!(merged.password_hash, here.password_hash);
        assert_eq!(merged.last_login, Some(1_800_000_000));
    }

    #[test]
    fn what_vigile_decided_since_wins() {
        let incoming = django(7, "jean@example.com");
        let mut deactivated = incoming.clone();
        deactivated.is_active = false;
        assert_eq!(
            merge(Some(&deactivated), true, &incoming).expect("merge"),
            Merge::Unchanged,
            "not reactivated"
        );
        let Merge::Update(merged) = merge(Some(&incoming), true, &deactivated).expect("merge")
        else {
            panic!("an update");
        };
        assert!(!merged.is_active, "deactivated by the import");
        assert_eq!(
            merge(None, true, &incoming).expect("merge"),
            Merge::Unchanged,
            "deleted here: not brought back"
        );
    }

    #[test]
    fn another_account_under_the_same_id_is_refused() {
        let mut here = django(7, "native@example.com");
        here.date_joined += 1;
        assert!(matches!(
            merge(Some(&here), true, &django(7, "jean@example.com")),
            Err(ImportError::IdTaken { id: 7, .. })
        ));
        // Made here, even in the same second: not the other system's.
        let native = django(7, "native@example.com");
        assert!(matches!(
            merge(Some(&native), false, &django(7, "jean@example.com")),
            Err(ImportError::IdTaken { id: 7, .. })
        ));
    }
}

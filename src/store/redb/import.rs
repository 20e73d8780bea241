//! `vigile import django` into the file: accounts by `store::merge` with
//! their ids, roles, and the `legacy_tokens` table (the other system's
//! refresh tokens, by `jti`: blacklisted there, or exchanged here once).

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::{accounts, get, put, roles, sessions, ACCOUNTS, EMAILS, IMPORTED, LEGACY_TOKENS, META};
use crate::store::{
    merge, normalize_email, AccountRecord, ImportBatch, ImportError, ImportReport, LegacyToken,
    LegacyUse, Merge, StoreResult,
};

/// A row of `legacy_tokens`: `(expires_at, exchanged)`.
const BLACKLISTED: bool = false;
const EXCHANGED: bool = true;

pub(super) fn import(
    txn: &WriteTransaction,
    batch: &ImportBatch,
    now: u64,
    access_window: u64,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let mut highest = 0;
    {
        let mut table = txn.open_table(ACCOUNTS)?;
        let mut emails = txn.open_table(EMAILS)?;
        let mut imported = txn.open_table(IMPORTED)?;
        for incoming in &batch.accounts {
            highest = highest.max(incoming.id);
            let existing: Option<AccountRecord> = get(&table, incoming.id)?;
            let merged = merge(existing.as_ref(), incoming)?;
            imported.insert(incoming.id, incoming.date_joined)?;
            let record = match merged {
                Merge::Unchanged => {
                    report.accounts_unchanged += 1;
                    continue;
                }
                Merge::Add(record) => {
                    report.accounts_added += 1;
                    record
                }
                Merge::Update(record) => {
                    report.accounts_updated += 1;
                    record
                }
            };
            let key = normalize_email(&record.email);
            let holder = emails.get(key.as_str())?.map(|v| v.value());
            match holder {
                Some(other) if other != record.id => {
                    return Err(ImportError::EmailTaken {
                        id: record.id,
                        email: record.email,
                        other,
                    })
                }
                Some(_) => {}
                None => {
                    if let Some(old) = &existing {
                        emails.remove(normalize_email(&old.email).as_str())?;
                    }
                    emails.insert(key.as_str(), record.id)?;
                }
            }
            put(&mut table, record.id, &record)?;
            if existing.is_some_and(|old| old.is_active) && !record.is_active {
                report.revoked.extend(sessions::revoke_all(
                    txn,
                    record.id,
                    now,
                    None,
                    access_window,
                )?);
            }
        }
    }
    let mut meta = txn.open_table(META)?;
    let next = accounts::next_id(&meta)?.max(highest.saturating_add(1));
    meta.insert(accounts::NEXT_ACCOUNT_ID, next)?;
    let account_roles = batch.accounts.iter().map(|a| a.role.as_str());
    for role in batch.roles.iter().map(String::as_str).chain(account_roles) {
        if roles::create(txn, role, now)? {
            report.roles_added += 1;
        }
    }
    let mut tokens = txn.open_table(LEGACY_TOKENS)?;
    for token in &batch.blacklisted {
        if tokens.get(token.jti.as_str())?.is_none() {
            tokens.insert(token.jti.as_str(), (token.expires_at, BLACKLISTED))?;
            report.blacklisted_added += 1;
        }
    }
    Ok(report)
}

pub(super) fn imported_account(
    txn: &ReadTransaction,
    id: u64,
) -> StoreResult<Option<AccountRecord>> {
    let Some(joined) = txn.open_table(IMPORTED)?.get(id)?.map(|v| v.value()) else {
        return Ok(None);
    };
    let account: Option<AccountRecord> = get(&txn.open_table(ACCOUNTS)?, id)?;
    Ok(account.filter(|a| a.date_joined == joined))
}

pub(super) fn use_token(txn: &WriteTransaction, token: &LegacyToken) -> StoreResult<LegacyUse> {
    let mut tokens = txn.open_table(LEGACY_TOKENS)?;
    let known = tokens.get(token.jti.as_str())?.map(|v| v.value().1);
    Ok(match known {
        Some(EXCHANGED) => LegacyUse::Used,
        Some(BLACKLISTED) => LegacyUse::Blacklisted,
        None => {
            tokens.insert(token.jti.as_str(), (token.expires_at, EXCHANGED))?;
            LegacyUse::Fresh
        }
    })
}

/// Drops the rows of tokens expired anyway; how many.
pub(super) fn purge(txn: &WriteTransaction, now: u64) -> StoreResult<usize> {
    let mut tokens = txn.open_table(LEGACY_TOKENS)?;
    let before = tokens.len()?;
    tokens.retain(|_, (expires_at, _)| expires_at >= now)?;
    Ok((before - tokens.len()?) as usize)
}

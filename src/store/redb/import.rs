//! `vigile import django` into the file: accounts by `store::merge` with
//! their ids, roles, and the `legacy_tokens` table (the other system's
//! refresh tokens, by `jti`: blacklisted there, or exchanged here once).

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::{accounts, get, put, roles, sessions, ACCOUNTS, EMAILS, IMPORTED, LEGACY_TOKENS, META};
use crate::store::{
    merge, normalize_email, AccountRecord, ImportBatch, ImportError, ImportReport, ImportedAccount,
    LegacyToken, LegacyUse, StoreResult,
};
use crate::tokens::SessionId;

/// A row of `legacy_tokens`: `(expires_at, used, session)`.
const BLACKLISTED: bool = false;
const USED: bool = true;

pub(super) fn import(
    txn: &WriteTransaction,
    batch: &ImportBatch,
    now: u64,
    access_window: u64,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let mut highest = 0;
    let mut deactivated = Vec::new();
    {
        let mut table = txn.open_table(ACCOUNTS)?;
        let mut emails = txn.open_table(EMAILS)?;
        let mut imported = txn.open_table(IMPORTED)?;
        for incoming in &batch.accounts {
            highest = highest.max(incoming.id);
            let existing: Option<AccountRecord> = get(&table, incoming.id)?;
            let noted = imported.get(incoming.id)?.map(|v| v.value());
            let merged = merge(existing.as_ref(), noted.is_some(), incoming)?;
            let cut_off = noted.map_or(0, |(_, cut_off)| cut_off);
            imported.insert(incoming.id, (incoming.date_joined, cut_off))?;
            let Some(record) = report.count(merged) else {
                continue;
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
                deactivated.push(record.id);
            }
        }
    }
    // Once the tables above are closed (a revocation writes `imported_accounts` too).
    for id in deactivated {
        report
            .revoked
            .extend(sessions::revoke_all(txn, id, now, None, access_window)?);
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
            tokens.insert(token.jti.as_str(), (token.expires_at, BLACKLISTED, 0))?;
            report.blacklisted_added += 1;
        }
    }
    Ok(report)
}

pub(super) fn imported_account(
    txn: &ReadTransaction,
    id: u64,
) -> StoreResult<Option<ImportedAccount>> {
    let Some((joined, cut_off)) = txn.open_table(IMPORTED)?.get(id)?.map(|v| v.value()) else {
        return Ok(None);
    };
    let account: Option<AccountRecord> = get(&txn.open_table(ACCOUNTS)?, id)?;
    Ok(account
        .filter(|a| a.date_joined == joined)
        .map(|account| ImportedAccount { account, cut_off }))
}

/// From `now` on, the other system's tokens of account `id` (if imported)
/// issued until now are refused.
pub(super) fn cut_off(txn: &WriteTransaction, id: u64, now: u64) -> StoreResult<()> {
    let mut imported = txn.open_table(IMPORTED)?;
    let noted = imported.get(id)?.map(|v| v.value());
    if let Some((joined, before)) = noted {
        imported.insert(id, (joined, before.max(now)))?;
    }
    Ok(())
}

pub(super) fn use_token(
    txn: &WriteTransaction,
    token: &LegacyToken,
    session: Option<SessionId>,
) -> StoreResult<LegacyUse> {
    let mut tokens = txn.open_table(LEGACY_TOKENS)?;
    let known = tokens.get(token.jti.as_str())?.map(|v| v.value());
    Ok(match known {
        Some((_, USED, sid)) => LegacyUse::Used((sid != 0).then_some(SessionId(sid))),
        Some((_, BLACKLISTED, _)) => LegacyUse::Blacklisted,
        None => {
            let sid = session.map_or(0, |s| s.0);
            tokens.insert(token.jti.as_str(), (token.expires_at, USED, sid))?;
            LegacyUse::Fresh
        }
    })
}

/// Drops the rows of tokens expired anyway; how many.
pub(super) fn purge(txn: &WriteTransaction, now: u64) -> StoreResult<usize> {
    let mut tokens = txn.open_table(LEGACY_TOKENS)?;
    let before = tokens.len()?;
    tokens.retain(|_, (expires_at, _, _)| expires_at >= now)?;
    Ok((before - tokens.len()?) as usize)
}

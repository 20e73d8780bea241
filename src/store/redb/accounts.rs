//! The `accounts` table, the `emails` index that makes emails unique, and
//! the `next_account_id` counter in `meta`.

use redb::{ReadTransaction, ReadableTable, Table, WriteTransaction};

use super::{get, put, reset_tokens, roles, sessions, ACCOUNTS, EMAILS, META};
use crate::store::{
    email_names, normalize_email, AccountChange, AccountRecord, CreateAccountError,
    PasswordUpgrade, Revocation, StoreError, StoreResult,
};
use crate::tokens::SessionId;

pub(super) const NEXT_ACCOUNT_ID: &str = "next_account_id";

/// The id the next account gets.
pub(super) fn next_id(meta: &impl ReadableTable<&'static str, u64>) -> StoreResult<u64> {
    Ok(meta.get(NEXT_ACCOUNT_ID)?.map_or(1, |v| v.value()))
}

/// The tables new accounts go into, open in one write transaction, and the
/// id the next one gets.
struct NewAccounts<'t> {
    meta: Table<'t, &'static str, u64>,
    emails: Table<'t, &'static str, u64>,
    accounts: Table<'t, u64, &'static [u8]>,
    next_id: u64,
}

impl<'t> NewAccounts<'t> {
    fn open(txn: &'t WriteTransaction) -> StoreResult<NewAccounts<'t>> {
        let meta = txn.open_table(META)?;
        let next_id = next_id(&meta)?;
        Ok(NewAccounts {
            meta,
            emails: txn.open_table(EMAILS)?,
            accounts: txn.open_table(ACCOUNTS)?,
            next_id,
        })
    }

    /// Gives `account` the next id and stores it, unless its email is taken.
    fn add(&mut self, account: &mut AccountRecord) -> Result<(), CreateAccountError> {
        let key = normalize_email(&account.email);
        if self.emails.get(key.as_str())?.is_some() {
            return Err(CreateAccountError::EmailTaken);
        }
        account.id = self.next_id;
        self.next_id += 1;
        self.emails.insert(key.as_str(), account.id)?;
        put(&mut self.accounts, account.id, account)?;
        Ok(())
    }

    /// Saves the counter (ids are never reused).
    fn finish(mut self) -> StoreResult<()> {
        self.meta.insert(NEXT_ACCOUNT_ID, self.next_id)?;
        Ok(())
    }
}

pub(super) fn create(
    txn: &WriteTransaction,
    mut account: AccountRecord,
) -> Result<AccountRecord, CreateAccountError> {
    account.email = account.email.trim().to_string();
    let mut new = NewAccounts::open(txn)?;
    new.add(&mut account)?;
    new.finish()?;
    roles::create(txn, &account.role, account.date_joined)?;
    Ok(account)
}

pub(super) fn insert_many(
    txn: &WriteTransaction,
    accounts: Vec<AccountRecord>,
) -> Result<u64, CreateAccountError> {
    let count = accounts.len() as u64;
    let mut new = NewAccounts::open(txn)?;
    for mut account in accounts {
        new.add(&mut account)?;
    }
    new.finish()?;
    Ok(count)
}

pub(super) fn by_email(txn: &ReadTransaction, email: &str) -> StoreResult<Option<AccountRecord>> {
    let emails = txn.open_table(EMAILS)?;
    let Some(id) = emails
        .get(normalize_email(email).as_str())?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    let account: Option<AccountRecord> = get(&txn.open_table(ACCOUNTS)?, id)?;
    Ok(account.filter(|a| email_names(email, &a.email)))
}

/// Applies `change` to the stored account and saves it when `change` says
/// so. The saved account; `None` when there is none or it was not saved.
fn modify(
    txn: &WriteTransaction,
    id: u64,
    change: impl FnOnce(&mut AccountRecord) -> StoreResult<bool>,
) -> StoreResult<Option<AccountRecord>> {
    let mut table = txn.open_table(ACCOUNTS)?;
    let Some(mut account) = get::<_, AccountRecord>(&table, id)? else {
        return Ok(None);
    };
    if !change(&mut account)? {
        return Ok(None);
    }
    put(&mut table, id, &account)?;
    Ok(Some(account))
}

pub(super) fn update(
    txn: &WriteTransaction,
    id: u64,
    now: u64,
    change: AccountChange<'_>,
    access_window: u64,
) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
    let mut was_active = false;
    let updated = modify(txn, id, |account| {
        was_active = account.is_active;
        change(account);
        if account.id != id {
            return Err(StoreError::Db("an account's id cannot change".into()));
        }
        Ok(true)
    })?;
    let Some(account) = updated else {
        return Ok(None);
    };
    roles::create(txn, &account.role, now)?;
    let revoked = if was_active && !account.is_active {
        sessions::revoke_all(txn, id, now, None, access_window)?
    } else {
        Vec::new()
    };
    Ok(Some((account, revoked)))
}

pub(super) fn set_password(
    txn: &WriteTransaction,
    id: u64,
    password_hash: String,
    now: u64,
    keep: Option<SessionId>,
    access_window: u64,
) -> StoreResult<Option<Vec<Revocation>>> {
    let updated = modify(txn, id, |account| {
        account.password_hash = password_hash;
        Ok(true)
    })?;
    if updated.is_none() {
        return Ok(None);
    }
    sessions::revoke_all(txn, id, now, keep, access_window).map(Some)
}

/// Sets the password hash of an active account; `None` for an inactive or
/// missing one (nothing is saved then).
pub(super) fn reset_password(
    txn: &WriteTransaction,
    id: u64,
    password_hash: String,
) -> StoreResult<Option<AccountRecord>> {
    modify(txn, id, |account| {
        if account.is_active {
            account.password_hash = password_hash;
        }
        Ok(account.is_active)
    })
}

/// Sets `last_login`, and applies `upgrade` (see `PasswordUpgrade`);
/// whether the hash was replaced.
pub(super) fn set_last_login(
    txn: &WriteTransaction,
    id: u64,
    at: u64,
    upgrade: Option<PasswordUpgrade<'_>>,
) -> StoreResult<Option<bool>> {
    let mut upgraded = false;
    let saved = modify(txn, id, |account| {
        if let Some(u) = upgrade {
            if !account.is_active || account.password_hash != u.verified {
                return Ok(false);
            }
            if let Some(new_hash) = u.new_hash {
                account.password_hash = new_hash.to_string();
                upgraded = true;
            }
        }
        account.last_login = Some(at);
        Ok(true)
    })?;
    // Without a password verified, a missing account changes nothing (as before).
    Ok((saved.is_some() || upgrade.is_none()).then_some(upgraded))
}

/// Deletes the account, its email and reset tokens, and revokes its
/// sessions; `None` when there is no such account.
pub(super) fn delete(
    txn: &WriteTransaction,
    id: u64,
    now: u64,
    access_window: u64,
) -> StoreResult<Option<Vec<Revocation>>> {
    let mut accounts = txn.open_table(ACCOUNTS)?;
    let Some(account) = get::<_, AccountRecord>(&accounts, id)? else {
        return Ok(None);
    };
    accounts.remove(id)?;
    txn.open_table(EMAILS)?
        .remove(normalize_email(&account.email).as_str())?;
    reset_tokens::remove_all(txn, id)?;
    sessions::revoke_all(txn, id, now, None, access_window).map(Some)
}

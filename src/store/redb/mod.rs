//! The redb backend: one file holding every table, opened by one process at
//! a time. The tables and their key formats are all declared just below; the
//! records are JSON (`records.rs`), read and written by `get` and `put`.
//! One file per table holds what is done to it, as functions of a
//! transaction; `StoreBackend` below gives each method its transaction.
//!
//! Every write is one transaction committed durably (redb's default
//! `Durability::Immediate`, an fsync) before the call returns, and redb has
//! one writer at a time: a read-modify-write needs nothing more.

mod accounts;
mod copy;
mod housekeeping;
mod import;
mod keys;
mod reset_tokens;
mod revocations;
mod roles;
mod sessions;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::path::Path;

use parking_lot::RwLock;
use redb::{
    Database, Key, ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    AccountChange, AccountRecord, CreateAccountError, ImportBatch, ImportError, ImportReport,
    ImportedAccount, KeysChange, LegacyToken, LegacyUse, PasswordUpgrade, ResetRecord, Revocation,
    SessionChange, SessionRecord, StoreBackend, StoreContents, StoreCounts, StoreError,
    StoreResult,
};
use crate::tokens::{SessionId, StoredKey};

/// account id -> JSON `AccountRecord`
const ACCOUNTS: TableDefinition<u64, &[u8]> = TableDefinition::new("accounts");
/// lower-cased, trimmed email -> account id (uniqueness lives here)
const EMAILS: TableDefinition<&str, u64> = TableDefinition::new("emails");
/// role name -> creation time (unix seconds)
const ROLES: TableDefinition<&str, u64> = TableDefinition::new("roles");
/// session id -> JSON `SessionRecord`
const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
/// (account id, session id) -> (): the sessions of an account
const ACCOUNT_SESSIONS: TableDefinition<(u64, u128), ()> = TableDefinition::new("account_sessions");
/// revoked session id -> unix time after which no token of it can be valid
const REVOKED: TableDefinition<u128, u64> = TableDefinition::new("revoked");
/// SHA-256 of a password-reset token -> JSON `ResetRecord` (the token itself is never stored)
const RESET_TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("reset_tokens");
/// signing key id -> JSON `StoredKey` (`vigile keys`)
const SIGNING_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("signing_keys");
/// the other system's refresh token `jti` (`vigile import django`) ->
/// (unix time it expires, used here: else blacklisted there, the session it
/// was exchanged for: 0 for none)
const LEGACY_TOKENS: TableDefinition<&str, (u64, bool, u128)> =
    TableDefinition::new("legacy_tokens");
/// account id -> (its `date_joined` when `vigile import django` wrote it,
/// the cut-off of the other system's tokens: see `ImportedAccount`)
const IMPORTED: TableDefinition<u64, (u64, u64)> = TableDefinition::new("imported_accounts");
/// counters: "next_account_id", "signing_keys_version"
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::Db(e.to_string())
            }
        }
        impl From<$t> for CreateAccountError {
            fn from(e: $t) -> CreateAccountError {
                CreateAccountError::Store(e.into())
            }
        }
        impl From<$t> for ImportError {
            fn from(e: $t) -> ImportError {
                ImportError::Store(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> StoreError {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            other => StoreError::Db(other.to_string()),
        }
    }
}

/// The JSON record under `key`, decoded: the one place records are read.
fn get<'k, K: Key + 'static, T: DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
) -> StoreResult<Option<T>> {
    table
        .get(key)?
        .map(|v| Ok(serde_json::from_slice(v.value())?))
        .transpose()
}

/// Every record of a JSON table with its key, decoded, in key order.
fn each<K: Key + 'static, T: DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
    mut f: impl FnMut(K::SelfType<'_>, T),
) -> StoreResult<()> {
    for row in table.iter()? {
        let (k, v) = row?;
        f(k.value(), serde_json::from_slice(v.value())?);
    }
    Ok(())
}

/// Stores `record` as JSON under `key`: the one place records are written.
fn put<'k, K: Key + 'static, T: Serialize>(
    table: &mut Table<'_, K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
    record: &T,
) -> StoreResult<()> {
    table.insert(key, serde_json::to_vec(record)?.as_slice())?;
    Ok(())
}

pub struct RedbStore {
    /// `None` once closed (at shutdown): calls then fail with `Closed`.
    db: RwLock<Option<Database>>,
    /// How long after a revocation an access token of the session may still
    /// pass the signature check (access lifetime + leeway).
    access_window: u64,
}

impl RedbStore {
    /// Opens (or creates, mode 0600, with its folder) the store at `path`.
    /// Fails with `StoreError::Locked` when another process has it open.
    pub fn open(path: &Path, access_window: u64) -> StoreResult<RedbStore> {
        crate::fsutil::touch_private(path)?;
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(ACCOUNTS)?;
            txn.open_table(EMAILS)?;
            txn.open_table(ROLES)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(ACCOUNT_SESSIONS)?;
            txn.open_table(REVOKED)?;
            txn.open_table(RESET_TOKENS)?;
            txn.open_table(META)?;
            txn.open_table(SIGNING_KEYS)?;
            txn.open_table(LEGACY_TOKENS)?;
            txn.open_table(IMPORTED)?;
        }
        txn.commit()?;
        Ok(RedbStore {
            db: RwLock::new(Some(db)),
            access_window,
        })
    }

    /// Runs `f` in a read transaction.
    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> StoreResult<T>) -> StoreResult<T> {
        let txn = match self.db.read().as_ref() {
            Some(db) => db.begin_read()?,
            None => return Err(StoreError::Closed),
        };
        f(&txn)
    }

    /// Runs `f` in a write transaction, committed if `f` succeeds (whatever
    /// it returns) and abandoned if it fails.
    fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction(true, f)
    }

    /// Runs `f` in a write transaction, committed when `commit` and `f`
    /// succeeds, abandoned otherwise (`commit: false` is a dry run).
    fn transaction<T, E: From<StoreError>>(
        &self,
        commit: bool,
        f: impl FnOnce(&WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = match self.db.read().as_ref() {
            Some(db) => db.begin_write().map_err(StoreError::from)?,
            None => return Err(StoreError::Closed.into()),
        };
        match f(&txn) {
            Ok(out) if commit => {
                txn.commit().map_err(StoreError::from)?;
                Ok(out)
            }
            out => {
                txn.abort().map_err(StoreError::from)?;
                out
            }
        }
    }
}

impl StoreBackend for RedbStore {
    fn create_account(&self, account: AccountRecord) -> Result<AccountRecord, CreateAccountError> {
        self.write(|txn| accounts::create(txn, account))
    }

    fn insert_accounts(&self, accounts: Vec<AccountRecord>) -> Result<u64, CreateAccountError> {
        self.write(|txn| accounts::insert_many(txn, accounts))
    }

    fn account(&self, id: u64) -> StoreResult<Option<AccountRecord>> {
        self.read(|txn| get(&txn.open_table(ACCOUNTS)?, id))
    }

    fn account_by_email(&self, email: &str) -> StoreResult<Option<AccountRecord>> {
        self.read(|txn| accounts::by_email(txn, email))
    }

    fn accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.read(|txn| {
            let mut out = Vec::new();
            each(&txn.open_table(ACCOUNTS)?, |_, account| out.push(account))?;
            Ok(out)
        })
    }

    fn account_count(&self) -> StoreResult<u64> {
        self.read(|txn| housekeeping::rows(txn, ACCOUNTS))
    }

    fn update_account_dyn(
        &self,
        id: u64,
        now: u64,
        change: AccountChange<'_>,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        self.write(|txn| accounts::update(txn, id, now, change, self.access_window))
    }

    fn set_password(
        &self,
        id: u64,
        password_hash: String,
        now: u64,
        keep: Option<SessionId>,
    ) -> StoreResult<Option<Vec<Revocation>>> {
        self.write(|txn| {
            accounts::set_password(txn, id, password_hash, now, keep, self.access_window)
        })
    }

    fn delete_account(&self, id: u64, now: u64) -> StoreResult<Option<Vec<Revocation>>> {
        self.write(|txn| accounts::delete(txn, id, now, self.access_window))
    }

    fn create_role(&self, name: &str, now: u64) -> StoreResult<bool> {
        self.write(|txn| roles::create(txn, name, now))
    }

    fn roles(&self) -> StoreResult<Vec<String>> {
        self.read(roles::list)
    }

    fn role_exists(&self, name: &str) -> StoreResult<bool> {
        self.read(|txn| roles::exists(txn, name))
    }

    fn create_session_upgrading(
        &self,
        session: SessionId,
        record: &SessionRecord,
        upgrade: Option<PasswordUpgrade<'_>>,
    ) -> StoreResult<Option<bool>> {
        self.write(|txn| {
            let login =
                accounts::set_last_login(txn, record.account_id, record.created_at, upgrade)?;
            if login.is_some() {
                sessions::create(txn, session, record)?;
            }
            Ok(login)
        })
    }

    fn session(&self, session: SessionId) -> StoreResult<Option<SessionRecord>> {
        self.read(|txn| get(&txn.open_table(SESSIONS)?, session.0))
    }

    fn update_session_dyn(
        &self,
        session: SessionId,
        change: SessionChange<'_>,
    ) -> StoreResult<Option<Option<Revocation>>> {
        self.write(|txn| sessions::update(txn, session, change, self.access_window))
    }

    fn revoke_account_sessions(
        &self,
        account_id: u64,
        now: u64,
        except: Option<SessionId>,
    ) -> StoreResult<Vec<Revocation>> {
        self.write(|txn| sessions::revoke_all(txn, account_id, now, except, self.access_window))
    }

    fn insert_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        self.write(|txn| revocations::insert(txn, revocations))
    }

    fn revocations(&self, now: u64) -> StoreResult<Vec<Revocation>> {
        self.read(|txn| revocations::in_force(txn, now))
    }

    fn create_reset_token(&self, token_hash: &[u8], record: &ResetRecord) -> StoreResult<()> {
        self.write(|txn| put(&mut txn.open_table(RESET_TOKENS)?, token_hash, record))
    }

    fn reset_record(&self, token_hash: &[u8]) -> StoreResult<Option<ResetRecord>> {
        self.read(|txn| get(&txn.open_table(RESET_TOKENS)?, token_hash))
    }

    fn use_reset_token(
        &self,
        token_hash: &[u8],
        now: u64,
        password_hash: String,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        self.write(|txn| {
            reset_tokens::use_token(txn, token_hash, now, password_hash, self.access_window)
        })
    }

    fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.read(keys::list)
    }

    fn signing_keys_version(&self) -> StoreResult<u64> {
        self.read(keys::version)
    }

    fn update_signing_keys_dyn(&self, change: KeysChange<'_>) -> StoreResult<Vec<StoredKey>> {
        self.write(|txn| keys::update(txn, change))
    }

    fn contents(&self) -> StoreResult<StoreContents> {
        self.read(copy::contents)
    }

    fn import_accounts(
        &self,
        batch: &ImportBatch,
        now: u64,
        dry_run: bool,
    ) -> Result<ImportReport, ImportError> {
        self.transaction(!dry_run, |txn| {
            import::import(txn, batch, now, self.access_window)
        })
    }

    fn imported_account(&self, id: u64) -> StoreResult<Option<ImportedAccount>> {
        self.read(|txn| import::imported_account(txn, id))
    }

    fn use_legacy_token(
        &self,
        token: &LegacyToken,
        session: Option<SessionId>,
    ) -> StoreResult<LegacyUse> {
        self.write(|txn| import::use_token(txn, token, session))
    }

    fn counts(&self) -> StoreResult<StoreCounts> {
        self.read(housekeeping::counts)
    }

    fn purge_expired(&self, now: u64) -> StoreResult<(usize, usize, usize)> {
        self.write(|txn| housekeeping::purge_expired(txn, now))
    }

    fn close(&self) {
        self.db.write().take();
    }
}

//! The durable store: one redb file holding accounts, the email index, roles,
//! sessions and revocations. This is the only module that knows redb; the
//! tables and their key formats are all declared just below.
//!
//! Every write is one transaction committed durably (redb's default
//! `Durability::Immediate`, an fsync) before the caller answers its client.
//! Calls block: async callers run them on the blocking pool.

use std::path::Path;

use parking_lot::RwLock;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::tokens::SessionId;

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
/// counters: "next_account_id"
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is open in another process")]
    Locked,
    #[error("the store is closed (shutting down)")]
    Closed,
    #[error("store: {0}")]
    Db(String),
    #[error("store: cannot prepare the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: unreadable record: {0}")]
    Corrupt(#[from] serde_json::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::Db(e.to_string())
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

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub id: u64,
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub gender: Option<String>,
    pub phone: Option<String>,
    pub role: String,
    pub is_active: bool,
    pub date_joined: u64,
    pub last_login: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub account_id: u64,
    pub created_at: u64,
    /// Expiry of the newest refresh token; the record may go after it.
    pub expires_at: u64,
    /// `jti` of the refresh token that is current.
    pub refresh_jti: u128,
    /// `jti` of the refresh token retired by the last rotation, and when
    /// (unix seconds, as every record has it).
    pub previous_jti: Option<u128>,
    pub rotated_at: u64,
    pub revoked_at: Option<u64>,
    /// The same rotation time in unix milliseconds, for the reuse grace
    /// window (`tokens.reuse_grace` may be shorter than a second, and whole
    /// seconds would stretch it by up to one). Absent from records written
    /// before it existed: `rotated_at_millis()` falls back to `rotated_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at_ms: Option<u64>,
}

impl SessionRecord {
    /// When the last rotation happened, in unix milliseconds. For an old
    /// record (seconds only) this is the start of that second: the window it
    /// gives is never longer than configured.
    pub fn rotated_at_millis(&self) -> u64 {
        self.rotated_at_ms
            .unwrap_or_else(|| self.rotated_at.saturating_mul(1000))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRecord {
    pub account_id: u64,
    pub created_at: u64,
    pub expires_at: u64,
}

/// How many rows each table holds (for metrics and housekeeping checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreCounts {
    pub accounts: u64,
    pub sessions: u64,
    pub revocations: u64,
    pub reset_tokens: u64,
}

/// What a revocation produced: the session and the time after which no token
/// of it can be valid any more (when its entry may be dropped).
pub type Revocation = (SessionId, u64);

/// An account that could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateAccountError {
    #[error("email already used")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Store {
    /// `None` once closed (at shutdown): calls then fail with `Closed`.
    db: RwLock<Option<Database>>,
    /// How long after a revocation an access token of the session may still
    /// pass the signature check (access lifetime + leeway).
    access_window: u64,
}

/// Emails are unique without regard to case or surrounding spaces: this is
/// the key of the email index. New accounts have ASCII addresses only (see
/// `accounts::input::ascii_email`), whose key is their ASCII lower case;
/// accounts stored before that rule keep the key they were given, which this
/// same function still computes, so they are still found.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Whether an address typed by someone names the stored account that its key
/// found. A non-ASCII address never names an ASCII account: `to_lowercase`
/// folds some look-alikes into ASCII (the Kelvin sign U+212A into `k`), and
/// a Kelvin-sign `Kevin@example.com` must not reach `kevin@example.com`'s
/// account. Non-ASCII addresses only exist on accounts stored before the
/// ASCII rule; typed as stored (in any case), they are still found.
pub fn email_names(typed: &str, stored: &str) -> bool {
    typed.trim().is_ascii() || !stored.is_ascii()
}

fn decode<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> StoreResult<T> {
    Ok(serde_json::from_slice(bytes)?)
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

impl Store {
    /// Opens (or creates, mode 0600, with its folder) the store at `path`.
    /// Fails with `StoreError::Locked` when another process has it open.
    pub fn open(path: &Path, access_window: u64) -> StoreResult<Store> {
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
        }
        txn.commit()?;
        Ok(Store {
            db: RwLock::new(Some(db)),
            access_window,
        })
    }

    fn write_txn(&self) -> StoreResult<redb::WriteTransaction> {
        match self.db.read().as_ref() {
            Some(db) => Ok(db.begin_write()?),
            None => Err(StoreError::Closed),
        }
    }

    fn read_txn(&self) -> StoreResult<redb::ReadTransaction> {
        match self.db.read().as_ref() {
            Some(db) => Ok(db.begin_read()?),
            None => Err(StoreError::Closed),
        }
    }

    /// Closes the file cleanly (so the next start needs no recovery); later
    /// calls fail with `StoreError::Closed`.
    pub fn close(&self) {
        self.db.write().take();
    }

    // --- accounts ----------------------------------------------------------

    /// Inserts a new account (its `id` is assigned here) and creates its role
    /// if missing. Exactly one of two concurrent calls with the same email wins.
    pub fn create_account(
        &self,
        mut account: AccountRecord,
    ) -> Result<AccountRecord, CreateAccountError> {
        let key = normalize_email(&account.email);
        let txn = self.write_txn()?;
        {
            let mut emails = txn.open_table(EMAILS).map_err(StoreError::from)?;
            if emails
                .get(key.as_str())
                .map_err(StoreError::from)?
                .is_some()
            {
                return Err(CreateAccountError::EmailTaken);
            }
            let mut meta = txn.open_table(META).map_err(StoreError::from)?;
            let id = meta
                .get("next_account_id")
                .map_err(StoreError::from)?
                .map_or(1, |v| v.value());
            meta.insert("next_account_id", id + 1)
                .map_err(StoreError::from)?;
            account.id = id;
            account.email = account.email.trim().to_string();
            emails.insert(key.as_str(), id).map_err(StoreError::from)?;
            let mut accounts = txn.open_table(ACCOUNTS).map_err(StoreError::from)?;
            accounts
                .insert(id, encode(&account)?.as_slice())
                .map_err(StoreError::from)?;
            let mut roles = txn.open_table(ROLES).map_err(StoreError::from)?;
            if roles
                .get(account.role.as_str())
                .map_err(StoreError::from)?
                .is_none()
            {
                roles
                    .insert(account.role.as_str(), account.date_joined)
                    .map_err(StoreError::from)?;
            }
        }
        txn.commit().map_err(StoreError::from)?;
        Ok(account)
    }

    pub fn account(&self, id: u64) -> StoreResult<Option<AccountRecord>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ACCOUNTS)?;
        let found = table.get(id)?;
        found.map(|v| decode(v.value())).transpose()
    }

    /// The account an email names (see `normalize_email`, `email_names`).
    pub fn account_by_email(&self, email: &str) -> StoreResult<Option<AccountRecord>> {
        let txn = self.read_txn()?;
        let emails = txn.open_table(EMAILS)?;
        let Some(id) = emails
            .get(normalize_email(email).as_str())?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let accounts = txn.open_table(ACCOUNTS)?;
        let found = accounts.get(id)?;
        let account: Option<AccountRecord> = found.map(|v| decode(v.value())).transpose()?;
        Ok(account.filter(|a| email_names(email, &a.email)))
    }

    pub fn accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ACCOUNTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    pub fn account_count(&self) -> StoreResult<u64> {
        use redb::ReadableTableMetadata;
        let txn = self.read_txn()?;
        Ok(txn.open_table(ACCOUNTS)?.len()?)
    }

    /// Applies `change` to the account and saves it; `None` if there is no such
    /// account. When the change deactivates the account, all its sessions are
    /// revoked in the same transaction and returned.
    pub fn update_account(
        &self,
        id: u64,
        now: u64,
        change: impl FnOnce(&mut AccountRecord),
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        let txn = self.write_txn()?;
        let result = {
            let mut accounts = txn.open_table(ACCOUNTS)?;
            let current: Option<AccountRecord> =
                accounts.get(id)?.map(|v| decode(v.value())).transpose()?;
            match current {
                None => None,
                Some(mut account) => {
                    let was_active = account.is_active;
                    change(&mut account);
                    if account.id != id {
                        return Err(StoreError::Db("an account's id cannot change".into()));
                    }
                    accounts.insert(id, encode(&account)?.as_slice())?;
                    let mut roles = txn.open_table(ROLES)?;
                    if roles.get(account.role.as_str())?.is_none() {
                        roles.insert(account.role.as_str(), now)?;
                    }
                    drop(roles);
                    let revoked = if was_active && !account.is_active {
                        self.revoke_account_sessions_in(&txn, id, now, None)?
                    } else {
                        Vec::new()
                    };
                    Some((account, revoked))
                }
            }
        };
        txn.commit()?;
        Ok(result)
    }

    /// Sets a new password hash and revokes every live session of the
    /// account but `keep`. `None` when there is no such account.
    pub fn set_password(
        &self,
        id: u64,
        password_hash: String,
        now: u64,
        keep: Option<SessionId>,
    ) -> StoreResult<Option<Vec<Revocation>>> {
        let txn = self.write_txn()?;
        let revoked = {
            let mut accounts = txn.open_table(ACCOUNTS)?;
            let current: Option<AccountRecord> =
                accounts.get(id)?.map(|v| decode(v.value())).transpose()?;
            match current {
                None => None,
                Some(mut account) => {
                    account.password_hash = password_hash;
                    accounts.insert(id, encode(&account)?.as_slice())?;
                    drop(accounts);
                    Some(self.revoke_account_sessions_in(&txn, id, now, keep)?)
                }
            }
        };
        txn.commit()?;
        Ok(revoked)
    }

    /// Deletes the account, its email and reset tokens, and revokes its
    /// sessions. `None` when there is no such account.
    pub fn delete_account(&self, id: u64, now: u64) -> StoreResult<Option<Vec<Revocation>>> {
        let txn = self.write_txn()?;
        let revoked = {
            let mut accounts = txn.open_table(ACCOUNTS)?;
            let current: Option<AccountRecord> = accounts
                .remove(id)?
                .map(|v| decode(v.value()))
                .transpose()?;
            drop(accounts);
            match current {
                None => None,
                Some(account) => {
                    txn.open_table(EMAILS)?
                        .remove(normalize_email(&account.email).as_str())?;
                    Self::remove_reset_tokens_in(&txn, id)?;
                    Some(self.revoke_account_sessions_in(&txn, id, now, None)?)
                }
            }
        };
        txn.commit()?;
        Ok(revoked)
    }

    // --- password reset tokens ------------------------------------------------

    pub fn create_reset_token(&self, token_hash: &[u8], record: &ResetRecord) -> StoreResult<()> {
        let txn = self.write_txn()?;
        txn.open_table(RESET_TOKENS)?
            .insert(token_hash, encode(record)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn reset_record(&self, token_hash: &[u8]) -> StoreResult<Option<ResetRecord>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(RESET_TOKENS)?;
        let found = table.get(token_hash)?;
        found.map(|v| decode(v.value())).transpose()
    }

    /// Uses a reset token: if it exists and has not expired, sets the new
    /// password hash, drops every reset token of the account and revokes all
    /// its sessions, in one transaction. `None` for an unknown, used or
    /// expired token (and for an inactive account).
    pub fn use_reset_token(
        &self,
        token_hash: &[u8],
        now: u64,
        password_hash: impl FnOnce(&AccountRecord) -> Option<String>,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        let txn = self.write_txn()?;
        let outcome = {
            let mut tokens = txn.open_table(RESET_TOKENS)?;
            let record: Option<ResetRecord> = tokens
                .get(token_hash)?
                .map(|v| decode(v.value()))
                .transpose()?;
            match record {
                Some(r) if r.expires_at >= now => {
                    tokens.remove(token_hash)?;
                    drop(tokens);
                    let mut accounts = txn.open_table(ACCOUNTS)?;
                    let current: Option<AccountRecord> = accounts
                        .get(r.account_id)?
                        .map(|v| decode(v.value()))
                        .transpose()?;
                    match current {
                        Some(mut account) if account.is_active => match password_hash(&account) {
                            Some(hash) => {
                                account.password_hash = hash;
                                accounts.insert(account.id, encode(&account)?.as_slice())?;
                                drop(accounts);
                                Self::remove_reset_tokens_in(&txn, account.id)?;
                                let revoked =
                                    self.revoke_account_sessions_in(&txn, account.id, now, None)?;
                                Some((account, revoked))
                            }
                            None => None,
                        },
                        _ => None,
                    }
                }
                _ => None,
            }
        };
        txn.commit()?;
        Ok(outcome)
    }

    fn remove_reset_tokens_in(txn: &redb::WriteTransaction, account_id: u64) -> StoreResult<()> {
        let mut tokens = txn.open_table(RESET_TOKENS)?;
        let mut mine = Vec::new();
        for row in tokens.iter()? {
            let (k, v) = row?;
            let record: ResetRecord = decode(v.value())?;
            if record.account_id == account_id {
                mine.push(k.value().to_vec());
            }
        }
        for key in mine {
            tokens.remove(key.as_slice())?;
        }
        Ok(())
    }

    pub fn counts(&self) -> StoreResult<StoreCounts> {
        use redb::ReadableTableMetadata;
        let txn = self.read_txn()?;
        Ok(StoreCounts {
            accounts: txn.open_table(ACCOUNTS)?.len()?,
            sessions: txn.open_table(SESSIONS)?.len()?,
            revocations: txn.open_table(REVOKED)?.len()?,
            reset_tokens: txn.open_table(RESET_TOKENS)?.len()?,
        })
    }

    // --- roles -----------------------------------------------------------------

    /// Creates the role; `false` when it already existed.
    pub fn create_role(&self, name: &str, now: u64) -> StoreResult<bool> {
        let txn = self.write_txn()?;
        let created = {
            let mut roles = txn.open_table(ROLES)?;
            if roles.get(name)?.is_some() {
                false
            } else {
                roles.insert(name, now)?;
                true
            }
        };
        txn.commit()?;
        Ok(created)
    }

    pub fn roles(&self) -> StoreResult<Vec<String>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ROLES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, _) = row?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    pub fn role_exists(&self, name: &str) -> StoreResult<bool> {
        let txn = self.read_txn()?;
        Ok(txn.open_table(ROLES)?.get(name)?.is_some())
    }

    // --- sessions --------------------------------------------------------------

    /// Records a new session (a login) and the account's `last_login`.
    pub fn create_session(&self, session: SessionId, record: &SessionRecord) -> StoreResult<()> {
        let txn = self.write_txn()?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            sessions.insert(session.0, encode(record)?.as_slice())?;
            let mut index = txn.open_table(ACCOUNT_SESSIONS)?;
            index.insert((record.account_id, session.0), ())?;
            let mut accounts = txn.open_table(ACCOUNTS)?;
            let current: Option<AccountRecord> = accounts
                .get(record.account_id)?
                .map(|v| decode(v.value()))
                .transpose()?;
            if let Some(mut account) = current {
                account.last_login = Some(record.created_at);
                accounts.insert(record.account_id, encode(&account)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn session(&self, session: SessionId) -> StoreResult<Option<SessionRecord>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(SESSIONS)?;
        let found = table.get(session.0)?;
        found.map(|v| decode(v.value())).transpose()
    }

    /// Applies `change` to the session in one transaction and saves it. If the
    /// change revokes the session, the revocation is recorded too and returned.
    /// `None` when there is no such session.
    pub fn update_session<R>(
        &self,
        session: SessionId,
        change: impl FnOnce(&mut SessionRecord) -> R,
    ) -> StoreResult<Option<(R, Option<Revocation>)>> {
        let txn = self.write_txn()?;
        let result = {
            let mut sessions = txn.open_table(SESSIONS)?;
            let current: Option<SessionRecord> = sessions
                .get(session.0)?
                .map(|v| decode(v.value()))
                .transpose()?;
            match current {
                None => None,
                Some(mut record) => {
                    let was_revoked = record.revoked_at.is_some();
                    let out = change(&mut record);
                    sessions.insert(session.0, encode(&record)?.as_slice())?;
                    let revocation = match record.revoked_at {
                        Some(at) if !was_revoked => {
                            let until = at + self.access_window;
                            txn.open_table(REVOKED)?.insert(session.0, until)?;
                            Some((session, until))
                        }
                        _ => None,
                    };
                    Some((out, revocation))
                }
            }
        };
        txn.commit()?;
        Ok(result)
    }

    /// Revokes every live session of the account but `except`.
    pub fn revoke_account_sessions(
        &self,
        account_id: u64,
        now: u64,
        except: Option<SessionId>,
    ) -> StoreResult<Vec<Revocation>> {
        let txn = self.write_txn()?;
        let revoked = self.revoke_account_sessions_in(&txn, account_id, now, except)?;
        txn.commit()?;
        Ok(revoked)
    }

    fn revoke_account_sessions_in(
        &self,
        txn: &redb::WriteTransaction,
        account_id: u64,
        now: u64,
        except: Option<SessionId>,
    ) -> StoreResult<Vec<Revocation>> {
        let index = txn.open_table(ACCOUNT_SESSIONS)?;
        let mut ids = Vec::new();
        for row in index.range((account_id, 0u128)..=(account_id, u128::MAX))? {
            let (k, _) = row?;
            ids.push(k.value().1);
        }
        drop(index);
        let mut sessions = txn.open_table(SESSIONS)?;
        let mut revoked_table = txn.open_table(REVOKED)?;
        let mut out = Vec::new();
        for id in ids {
            if except.is_some_and(|e| e.0 == id) {
                continue;
            }
            let current: Option<SessionRecord> =
                sessions.get(id)?.map(|v| decode(v.value())).transpose()?;
            let Some(mut record) = current else { continue };
            if record.revoked_at.is_some() || record.expires_at < now {
                continue;
            }
            record.revoked_at = Some(now);
            sessions.insert(id, encode(&record)?.as_slice())?;
            let until = now + self.access_window;
            revoked_table.insert(id, until)?;
            out.push((SessionId(id), until));
        }
        Ok(out)
    }

    /// Records many revocations in one transaction (imports, benchmarks).
    pub fn insert_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        let txn = self.write_txn()?;
        {
            let mut table = txn.open_table(REVOKED)?;
            for (session, until) in revocations {
                table.insert(session.0, *until)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Inserts many accounts in one transaction (imports, benchmarks); ids
    /// are assigned here. An email already present fails the whole batch.
    pub fn insert_accounts(&self, accounts: Vec<AccountRecord>) -> Result<u64, CreateAccountError> {
        let txn = self.write_txn()?;
        let count = accounts.len() as u64;
        {
            let mut meta = txn.open_table(META).map_err(StoreError::from)?;
            let mut next = meta
                .get("next_account_id")
                .map_err(StoreError::from)?
                .map_or(1, |v| v.value());
            let mut emails = txn.open_table(EMAILS).map_err(StoreError::from)?;
            let mut table = txn.open_table(ACCOUNTS).map_err(StoreError::from)?;
            for mut account in accounts {
                let key = normalize_email(&account.email);
                if emails
                    .get(key.as_str())
                    .map_err(StoreError::from)?
                    .is_some()
                {
                    return Err(CreateAccountError::EmailTaken);
                }
                account.id = next;
                next += 1;
                emails
                    .insert(key.as_str(), account.id)
                    .map_err(StoreError::from)?;
                table
                    .insert(account.id, encode(&account)?.as_slice())
                    .map_err(StoreError::from)?;
            }
            meta.insert("next_account_id", next)
                .map_err(StoreError::from)?;
        }
        txn.commit().map_err(StoreError::from)?;
        Ok(count)
    }

    /// Revocations still in force at `now`, to load into memory at start.
    pub fn revocations(&self, now: u64) -> StoreResult<Vec<Revocation>> {
        let txn = self.read_txn()?;
        let table = txn.open_table(REVOKED)?;
        use redb::ReadableTableMetadata;
        let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
        for row in table.iter()? {
            let (k, v) = row?;
            if v.value() >= now {
                out.push((SessionId(k.value()), v.value()));
            }
        }
        Ok(out)
    }

    /// Drops sessions whose last refresh token has expired, revocations no
    /// token can outlive any more, and expired reset tokens. Returns how many
    /// of each were removed.
    pub fn purge_expired(&self, now: u64) -> StoreResult<(usize, usize, usize)> {
        let txn = self.write_txn()?;
        let counts = {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut expired = Vec::new();
            for row in sessions.iter()? {
                let (k, v) = row?;
                let record: SessionRecord = decode(v.value())?;
                if record.expires_at < now {
                    expired.push((record.account_id, k.value()));
                }
            }
            let mut index = txn.open_table(ACCOUNT_SESSIONS)?;
            for (account, id) in &expired {
                sessions.remove(*id)?;
                index.remove((*account, *id))?;
            }
            let mut revoked = txn.open_table(REVOKED)?;
            let mut stale = Vec::new();
            for row in revoked.iter()? {
                let (k, v) = row?;
                if v.value() < now {
                    stale.push(k.value());
                }
            }
            for id in &stale {
                revoked.remove(*id)?;
            }
            let mut tokens = txn.open_table(RESET_TOKENS)?;
            let mut old_tokens = Vec::new();
            for row in tokens.iter()? {
                let (k, v) = row?;
                let record: ResetRecord = decode(v.value())?;
                if record.expires_at < now {
                    old_tokens.push(k.value().to_vec());
                }
            }
            for key in &old_tokens {
                tokens.remove(key.as_slice())?;
            }
            (expired.len(), stale.len(), old_tokens.len())
        };
        txn.commit()?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(email: &str) -> AccountRecord {
        AccountRecord {
            id: 0,
            email: email.into(),
            password_hash: "x".into(),
            first_name: "Jean".into(),
            last_name: "Dupont".into(),
            gender: Some("H".into()),
            phone: None,
            role: "Visiteur".into(),
            is_active: true,
            date_joined: 1,
            last_login: None,
        }
    }

    fn session(account_id: u64, expires_at: u64) -> SessionRecord {
        SessionRecord {
            account_id,
            created_at: 10,
            expires_at,
            refresh_jti: 1,
            previous_jti: None,
            rotated_at: 10,
            revoked_at: None,
            rotated_at_ms: None,
        }
    }

    /// A new store in a temporary folder (kept alive by the returned guard).
    fn fresh() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s.redb"), 300).expect("open");
        (dir, store)
    }

    #[test]
    fn emails_are_unique_without_regard_to_case() {
        let (_dir, store) = fresh();
        let a = store
            .create_account(account("Dev@Example.com "))
            .expect("create");
        assert_eq!(a.id, 1);
        assert_eq!(a.email, "Dev@Example.com");
        assert!(matches!(
            store.create_account(account("dev@example.COM")),
            Err(CreateAccountError::EmailTaken)
        ));
        assert_eq!(
            store
                .account_by_email(" DEV@example.com")
                .expect("read")
                .map(|a| a.id),
            Some(1)
        );
        assert_eq!(
            store
                .create_account(account("b@example.com"))
                .expect("create")
                .id,
            2
        );
        assert!(store.role_exists("Visiteur").expect("roles"));
    }

    #[test]
    fn a_look_alike_address_does_not_name_an_ascii_account() {
        let (_dir, store) = fresh();
        let kevin = store
            .create_account(account("kevin@example.com"))
            .expect("create");
        // The Kelvin sign lower-cases into `k`: same key, but not the same address.
        assert_eq!(
            normalize_email("\u{212A}evin@example.com"),
            "kevin@example.com"
        );
        assert!(store
            .account_by_email("\u{212A}evin@example.com")
            .expect("read")
            .is_none());
        assert_eq!(
            store
                .account_by_email(" KEVIN@example.com")
                .expect("read")
                .map(|a| a.id),
            Some(kevin.id)
        );
        assert!(matches!(
            store.create_account(account("\u{212A}evin@example.com")),
            Err(CreateAccountError::EmailTaken)
        ));
    }

    #[test]
    fn accounts_stored_with_non_ascii_addresses_are_still_found() {
        // Written before the ASCII rule (the store itself never refused them).
        let (_dir, store) = fresh();
        let jose = store
            .create_account(account("Jos\u{E9}@example.com"))
            .expect("create");
        let kelvin = store
            .create_account(account("\u{212A}elvin@example.com"))
            .expect("create");
        for (typed, id) in [
            ("jos\u{E9}@example.com", jose.id),
            ("JOS\u{C9}@EXAMPLE.COM ", jose.id),
            ("\u{212A}elvin@example.com", kelvin.id),
            ("kelvin@example.com", kelvin.id),
        ] {
            assert_eq!(
                store.account_by_email(typed).expect("read").map(|a| a.id),
                Some(id),
                "{typed}"
            );
        }
    }

    #[test]
    fn a_session_record_written_in_whole_seconds_still_loads() {
        let (_dir, store) = fresh();
        let old = br#"{"account_id":1,"created_at":10,"expires_at":5000,"refresh_jti":2,"previous_jti":1,"rotated_at":100,"revoked_at":null}"#;
        {
            let txn = store.write_txn().expect("txn");
            txn.open_table(SESSIONS)
                .expect("table")
                .insert(77u128, old.as_slice())
                .expect("insert");
            txn.commit().expect("commit");
        }
        let record = store.session(SessionId(77)).expect("read").expect("found");
        assert_eq!((record.rotated_at, record.rotated_at_ms), (100, None));
        assert_eq!(record.rotated_at_millis(), 100_000);
        let ((), _) = store
            .update_session(SessionId(77), |r| {
                r.rotated_at = 200;
                r.rotated_at_ms = Some(200_500);
            })
            .expect("update")
            .expect("found");
        let record = store.session(SessionId(77)).expect("read").expect("found");
        assert_eq!(record.rotated_at_millis(), 200_500);
        assert_eq!(record.rotated_at, 200, "seconds are still written");
    }

    #[test]
    fn the_file_is_private_and_survives_reopening() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/s.redb");
        {
            let store = Store::open(&path, 300).expect("open");
            store
                .create_account(account("a@example.com"))
                .expect("create");
            assert!(matches!(Store::open(&path, 300), Err(StoreError::Locked)));
        }
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let store = Store::open(&path, 300).expect("reopen");
        assert_eq!(store.account_count().expect("count"), 1);
    }

    #[test]
    fn deactivation_revokes_every_session_durably() {
        let (_dir, store) = fresh();
        let a = store
            .create_account(account("a@example.com"))
            .expect("create");
        let (s1, s2) = (SessionId(11), SessionId(22));
        store
            .create_session(s1, &session(a.id, 5_000))
            .expect("session");
        store
            .create_session(s2, &session(a.id, 5_000))
            .expect("session");
        let (updated, revoked) = store
            .update_account(a.id, 1_000, |acc| acc.is_active = false)
            .expect("update")
            .expect("exists");
        assert!(!updated.is_active);
        assert_eq!(updated.last_login, Some(10));
        let mut ids: Vec<_> = revoked.iter().map(|r| r.0).collect();
        ids.sort();
        assert_eq!(ids, vec![s1, s2]);
        assert_eq!(store.revocations(1_000).expect("load").len(), 2);
        assert_eq!(
            store.revocations(1_301).expect("load").len(),
            0,
            "past the access window"
        );
    }

    #[test]
    fn a_reset_token_works_once_and_ends_every_session() {
        let (_dir, store) = fresh();
        let a = store
            .create_account(account("a@example.com"))
            .expect("create");
        store
            .create_session(SessionId(5), &session(a.id, 5_000))
            .expect("session");
        let record = ResetRecord {
            account_id: a.id,
            created_at: 0,
            expires_at: 1_000,
        };
        store
            .create_reset_token(&[1u8; 32], &record)
            .expect("token");
        store
            .create_reset_token(&[2u8; 32], &record)
            .expect("older token");
        let (updated, revoked) = store
            .use_reset_token(&[1u8; 32], 500, |_| Some("new-hash".into()))
            .expect("use")
            .expect("valid");
        assert_eq!(updated.password_hash, "new-hash");
        assert_eq!(revoked, vec![(SessionId(5), 800)]);
        assert!(
            store
                .use_reset_token(&[1u8; 32], 500, |_| Some("x".into()))
                .expect("use")
                .is_none(),
            "once"
        );
        assert!(
            store
                .use_reset_token(&[2u8; 32], 500, |_| Some("x".into()))
                .expect("use")
                .is_none(),
            "older die"
        );
        store
            .create_reset_token(&[3u8; 32], &record)
            .expect("token");
        assert!(
            store
                .use_reset_token(&[3u8; 32], 1_001, |_| Some("x".into()))
                .expect("use")
                .is_none(),
            "expired"
        );
    }

    #[test]
    fn deleting_an_account_frees_its_email_and_revokes_its_sessions() {
        let (_dir, store) = fresh();
        let a = store
            .create_account(account("a@example.com"))
            .expect("create");
        store
            .create_session(SessionId(9), &session(a.id, 5_000))
            .expect("session");
        let revoked = store
            .delete_account(a.id, 100)
            .expect("delete")
            .expect("existed");
        assert_eq!(revoked, vec![(SessionId(9), 400)]);
        assert!(store.account(a.id).expect("read").is_none());
        assert!(store
            .account_by_email("a@example.com")
            .expect("read")
            .is_none());
        assert!(store.delete_account(a.id, 100).expect("delete").is_none());
        store
            .create_account(account("a@example.com"))
            .expect("the email is free again");
    }

    #[test]
    fn purging_drops_what_has_expired() {
        let (_dir, store) = fresh();
        let a = store
            .create_account(account("a@example.com"))
            .expect("create");
        store
            .create_session(SessionId(1), &session(a.id, 100))
            .expect("session");
        store
            .create_session(SessionId(2), &session(a.id, 10_000))
            .expect("session");
        let revoked = store
            .revoke_account_sessions(a.id, 50, Some(SessionId(2)))
            .expect("revoke");
        assert_eq!(revoked, vec![(SessionId(1), 350)]);
        let hash = [7u8; 32];
        store
            .create_reset_token(
                &hash,
                &ResetRecord {
                    account_id: a.id,
                    created_at: 0,
                    expires_at: 300,
                },
            )
            .expect("token");
        assert_eq!(store.purge_expired(200).expect("purge"), (1, 0, 0));
        assert!(store.session(SessionId(1)).expect("read").is_none());
        assert_eq!(store.purge_expired(400).expect("purge"), (0, 1, 1));
        let counts = store.counts().expect("counts");
        assert_eq!(
            (counts.sessions, counts.revocations, counts.reset_tokens),
            (1, 0, 0)
        );
        assert!(store.session(SessionId(2)).expect("read").is_some());
    }
}

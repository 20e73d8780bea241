//! The durable store: accounts, the email index, roles, sessions,
//! revocations and password-reset tokens, behind one backend-neutral
//! interface, `StoreBackend`. The gateway, the account service and the CLI
//! hold an `Arc<Store>` and never name a backend; `open` picks it from the
//! configuration: `redb` (an embedded file, one process) or `postgres` (a
//! database shared by several replicas); `conformance` is the test suite
//! every backend runs unchanged.
//!
//! What every backend guarantees:
//! - Calls block: async callers run them on the blocking pool.
//! - Each method is one transaction, and a write is committed durably before
//!   the call returns (the caller answers its client just after).
//! - A read-modify-write method (`create_account` with its email uniqueness,
//!   `update_account`, `set_password`, `delete_account`, `update_session`,
//!   `revoke_account_sessions`, `use_reset_token`) sees no other write to the
//!   rows it reads before it commits (redb: one writer at a time; SQL:
//!   `SELECT … FOR UPDATE`, then `UPDATE`). Callers never compose a read and a
//!   write themselves for these.
//! - A closure a method takes is called at most once, inside that
//!   transaction, with the current record.

mod copy;
mod import;
mod metered;
pub mod postgres;
mod records;
pub mod redb;
mod sync;

#[cfg(test)]
pub(crate) mod conformance;

use std::sync::Arc;

pub use copy::{copy, Copied, CopyReport, LegacyTokenRow, StoreContents};
pub use import::{
    is_own_hash, merge, ImportBatch, ImportError, ImportReport, ImportedAccount, LegacyToken,
    LegacyUse, Merge,
};
pub use metered::Metered;
pub use records::{
    email_names, normalize_email, AccountRecord, PasswordUpgrade, ResetRecord, Revocation,
    SessionRecord, StoreCounts,
};
pub use sync::{ApplyRevocations, Follow, SequencedRevocation, SyncStatus};

use crate::config::{StoreConfig, StoreKind};
use crate::tokens::{SessionId, StoredKey};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store (redb: the file is open elsewhere).
    #[error("the store is open in another process")]
    Locked,
    #[error("the store is closed (shutting down)")]
    Closed,
    /// The backend cannot be reached just now (a database server down or
    /// unreachable); the call may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Any other failure the backend reported.
    #[error("store: {0}")]
    Db(String),
    #[error("store: cannot prepare the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: unreadable record: {0}")]
    Corrupt(#[from] serde_json::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An account that could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateAccountError {
    #[error("email already used")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change applied to an account inside `update_account`'s transaction.
pub type AccountChange<'a> = Box<dyn FnOnce(&mut AccountRecord) + 'a>;

/// A change applied to a session inside `update_session`'s transaction.
pub type SessionChange<'a> = Box<dyn FnOnce(&mut SessionRecord) + 'a>;

/// A change applied to the signing keys inside `update_signing_keys`'s
/// transaction.
pub type KeysChange<'a> = Box<dyn FnOnce(&mut Vec<StoredKey>) + 'a>;

/// What a store backend does. Object-safe: the gateway holds an
/// `Arc<dyn StoreBackend>` (`Arc<Store>`). Call `update_account` and
/// `update_session` (on `Store`) rather than their `_dyn` forms.
pub trait StoreBackend: Send + Sync {
    // --- accounts ----------------------------------------------------------

    /// Inserts a new account: assigns its `id` (1, 2, ..., never reused),
    /// trims its email, and creates its role if missing. Exactly one of
    /// concurrent calls with the same email (see `normalize_email`) wins.
    fn create_account(&self, account: AccountRecord) -> Result<AccountRecord, CreateAccountError>;

    /// Inserts many accounts in one transaction (imports, benchmarks); ids
    /// are assigned here. An email already present fails the whole batch.
    /// Returns how many were inserted.
    fn insert_accounts(&self, accounts: Vec<AccountRecord>) -> Result<u64, CreateAccountError>;

    fn account(&self, id: u64) -> StoreResult<Option<AccountRecord>>;

    /// The account an email names (see `normalize_email`, `email_names`).
    fn account_by_email(&self, email: &str) -> StoreResult<Option<AccountRecord>>;

    /// Every account, by increasing id.
    fn accounts(&self) -> StoreResult<Vec<AccountRecord>>;

    fn account_count(&self) -> StoreResult<u64>;

    /// Applies `change` to the account and saves it, creating its role if
    /// missing; `None` if there is no such account. When the change
    /// deactivates the account, all its sessions are revoked in the same
    /// transaction and returned. A change of `id` is refused (nothing saved).
    fn update_account_dyn(
        &self,
        id: u64,
        now: u64,
        change: AccountChange<'_>,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>>;

    /// Sets a new password hash and revokes every live session of the
    /// account but `keep`. `None` when there is no such account.
    fn set_password(
        &self,
        id: u64,
        password_hash: String,
        now: u64,
        keep: Option<SessionId>,
    ) -> StoreResult<Option<Vec<Revocation>>>;

    /// Deletes the account, its email and reset tokens, and revokes its
    /// sessions. `None` when there is no such account.
    fn delete_account(&self, id: u64, now: u64) -> StoreResult<Option<Vec<Revocation>>>;

    // --- roles ---------------------------------------------------------------

    /// Creates the role; `false` when it already existed.
    fn create_role(&self, name: &str, now: u64) -> StoreResult<bool>;

    /// Every role name, in byte order.
    fn roles(&self) -> StoreResult<Vec<String>>;

    fn role_exists(&self, name: &str) -> StoreResult<bool>;

    // --- sessions ------------------------------------------------------------

    /// Records a new session (a login) and sets the account's `last_login`
    /// to the session's `created_at`.
    fn create_session(&self, session: SessionId, record: &SessionRecord) -> StoreResult<()> {
        self.create_session_upgrading(session, record, None)
            .map(|_| ())
    }

    /// `create_session` for a login that verified a password (`upgrade`,
    /// see `PasswordUpgrade`): nothing is written, and `None` returned, when
    /// the account is no longer active or no longer holds
    /// `upgrade.verified`; otherwise its hash becomes `upgrade.new_hash`
    /// when given, in the same transaction, and `Some(replaced)`.
    fn create_session_upgrading(
        &self,
        session: SessionId,
        record: &SessionRecord,
        upgrade: Option<PasswordUpgrade<'_>>,
    ) -> StoreResult<Option<bool>>;

    fn session(&self, session: SessionId) -> StoreResult<Option<SessionRecord>>;

    /// Applies `change` to the session and saves it (even unchanged). If the
    /// change revokes the session (sets `revoked_at` where it was `None`), the
    /// revocation is recorded too, until `revoked_at` + the access window, and
    /// returned. `None` when there is no such session.
    fn update_session_dyn(
        &self,
        session: SessionId,
        change: SessionChange<'_>,
    ) -> StoreResult<Option<Option<Revocation>>>;

    /// Revokes every live (neither revoked nor expired at `now`) session of
    /// the account but `except`.
    fn revoke_account_sessions(
        &self,
        account_id: u64,
        now: u64,
        except: Option<SessionId>,
    ) -> StoreResult<Vec<Revocation>>;

    // --- revocations -----------------------------------------------------------

    /// Records many revocations in one transaction (imports, benchmarks).
    fn insert_revocations(&self, revocations: &[Revocation]) -> StoreResult<()>;

    /// Revocations still in force at `now`, to load into memory at start.
    fn revocations(&self, now: u64) -> StoreResult<Vec<Revocation>>;

    // --- replicas ----------------------------------------------------------------

    /// The sequence number of the newest revocation committed (0 when none).
    /// Read it before `revocations`, then `follow` from it: nothing written
    /// in between is missed. A single-process store has none: 0.
    fn revocation_seq(&self) -> StoreResult<u64> {
        Ok(0)
    }

    /// The revocations committed after `seq`, by increasing `seq`, at most
    /// `limit`. Every revocation with a number up to the last returned is
    /// committed (or rolled back) already: a reader that goes on from there
    /// misses none. A single-process store: none.
    fn revocations_since(&self, seq: u64, limit: usize) -> StoreResult<Vec<SequencedRevocation>> {
        let _ = (seq, limit);
        Ok(Vec::new())
    }

    /// Follows the revocations every process writes from now on, until
    /// `close`: `follow.apply` gets them as they are committed, and
    /// `follow.status` says whether this view is current. A single-process
    /// store (redb) writes them all itself: nothing to follow, its status
    /// stays current.
    fn follow(&self, follow: Follow) -> StoreResult<()> {
        drop(follow);
        Ok(())
    }

    // --- throttles shared by replicas ---------------------------------------------

    /// Whether this store counts throttled attempts for every process that
    /// uses it (`take_attempt`, `give_back_attempt`). A single-process store
    /// does not: the gateway counts them in memory.
    fn shares_attempts(&self) -> bool {
        false
    }

    /// Counts one attempt of `key` under the throttle `scope` at once:
    /// `None` when taken, or the seconds to wait when `limit` attempts are
    /// counted in the key's window already. A window opens at a key's first
    /// attempt and lasts `window`, on one clock for every process.
    fn take_attempt(
        &self,
        scope: &str,
        key: &str,
        limit: u32,
        window: std::time::Duration,
    ) -> StoreResult<Option<u64>> {
        let _ = (scope, key, limit, window);
        Err(StoreError::Db("this store shares no throttles".into()))
    }

    /// Gives back an attempt `take_attempt` took (its check passed).
    fn give_back_attempt(&self, scope: &str, key: &str) -> StoreResult<()> {
        let _ = (scope, key);
        Err(StoreError::Db("this store shares no throttles".into()))
    }

    // --- password-reset tokens ---------------------------------------------------

    /// Stores a reset token by the SHA-256 of the token (never the token).
    fn create_reset_token(&self, token_hash: &[u8], record: &ResetRecord) -> StoreResult<()>;

    fn reset_record(&self, token_hash: &[u8]) -> StoreResult<Option<ResetRecord>>;

    /// Uses a reset token: if it exists and has not expired at `now`, it is
    /// consumed; then, if its account is active, the account gets
    /// `password_hash`, loses every reset token and has all its sessions
    /// revoked, in one transaction. `None` for an unknown, used or expired
    /// token and for an inactive account.
    fn use_reset_token(
        &self,
        token_hash: &[u8],
        now: u64,
        password_hash: String,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>>;

    // --- signing keys (`vigile keys`) --------------------------------------------

    /// Every signing key the store holds, by `kid`.
    fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;

    /// A number that grows with every committed change of the signing keys:
    /// a replica reads it often and reloads the keys when it moved.
    fn signing_keys_version(&self) -> StoreResult<u64>;

    /// Applies `change` to every signing key in one transaction, serialized
    /// with every other change of them (by any process): the rows it added
    /// or changed are written (none is ever deleted). Returns the keys after
    /// it, by `kid`. Call `update_signing_keys` (on `Store`).
    fn update_signing_keys_dyn(&self, change: KeysChange<'_>) -> StoreResult<Vec<StoredKey>>;

    // --- copying a whole store (`vigile store copy`, `copy.rs`) ------------------

    /// Everything the store holds, read in one transaction.
    fn contents(&self) -> StoreResult<StoreContents>;

    /// Writes `contents` into this store in one transaction, keeping keys
    /// and ids: rows missing are added, rows that differ overwritten, equal
    /// rows left alone; the next account id comes after
    /// `contents.next_account_id - 1`. An account whose email another id
    /// holds here fails the whole copy. A store that is no copy target
    /// refuses (the default).
    fn copy_in(&self, contents: &StoreContents) -> StoreResult<CopyReport> {
        let _ = contents;
        Err(StoreError::Db(
            "this store kind cannot be copied into (only postgres can)".into(),
        ))
    }

    // --- imports from another system (`vigile import django`) --------------------

    /// Writes `batch` in one transaction: each account by `import::merge`
    /// (and noted as imported), its role and `batch.roles` created when
    /// missing, the blacklisted tokens recorded; the next account id comes after every imported one.
    /// An account the import deactivates has its sessions revoked. With
    /// `dry_run` the transaction is rolled back: the report says what the
    /// import would do. Any refusal writes nothing.
    fn import_accounts(
        &self,
        batch: &ImportBatch,
        now: u64,
        dry_run: bool,
    ) -> Result<ImportReport, ImportError>;

    /// The account `id` if an import wrote it (and it is still the one it
    /// wrote): only these may be named by the other system's tokens.
    fn imported_account(&self, id: u64) -> StoreResult<Option<ImportedAccount>>;

    /// Marks the other system's refresh token `token.jti` used (exchanged
    /// for `session`, or spent by a logout when `None`), unless it is
    /// already known: of concurrent calls with one `jti`, on any replica,
    /// exactly one gets `Fresh`.
    fn use_legacy_token(
        &self,
        token: &LegacyToken,
        session: Option<SessionId>,
    ) -> StoreResult<LegacyUse>;

    // --- housekeeping ------------------------------------------------------------

    fn counts(&self) -> StoreResult<StoreCounts>;

    /// Drops sessions whose last refresh token has expired, revocations no
    /// token can outlive any more, and expired reset tokens. Returns how many
    /// of each were removed.
    fn purge_expired(&self, now: u64) -> StoreResult<(usize, usize, usize)>;

    /// Closes the store cleanly (redb: the next start needs no recovery);
    /// later calls fail with `StoreError::Closed`.
    fn close(&self);
}

/// The store, whatever its backend.
pub type Store = dyn StoreBackend;

thread_local! {
    /// When the store calls of the work running on this thread must end
    /// (`within`).
    static DEADLINE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Runs `f`, all of whose store calls together may take at most `limit`
/// (besides each call's own bound): a request that makes several calls to
/// a database that hangs answers within `limit`, not within that many
/// times the bound of one call. Nested, the earlier deadline holds.
pub fn within<R>(limit: std::time::Duration, f: impl FnOnce() -> R) -> R {
    until(std::time::Instant::now() + limit, f)
}

/// `within`, with the deadline given as an instant.
pub fn until<R>(deadline: std::time::Instant, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<std::time::Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.set(self.0);
        }
    }
    let previous = DEADLINE.get();
    let _restore = Restore(previous);
    DEADLINE.set(Some(previous.map_or(deadline, |p| p.min(deadline))));
    f()
}

/// What is left of the deadline `within` set on this thread, if any.
pub(crate) fn time_left() -> Option<std::time::Duration> {
    DEADLINE
        .get()
        .map(|d| d.saturating_duration_since(std::time::Instant::now()))
}

impl<'s> dyn StoreBackend + 's {
    /// `update_account_dyn` with any closure.
    pub fn update_account(
        &self,
        id: u64,
        now: u64,
        change: impl FnOnce(&mut AccountRecord),
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        self.update_account_dyn(id, now, Box::new(change))
    }

    /// `update_signing_keys_dyn`, also returning what `change` returned.
    pub fn update_signing_keys<R>(
        &self,
        change: impl FnOnce(&mut Vec<StoredKey>) -> R,
    ) -> StoreResult<(Vec<StoredKey>, R)> {
        let mut out = None;
        let keys = self.update_signing_keys_dyn(Box::new(|keys| out = Some(change(keys))))?;
        out.map(|out| (keys, out))
            .ok_or_else(|| StoreError::Db("the signing keys' change did not run".into()))
    }

    /// `update_session_dyn`, also returning what `change` returned.
    pub fn update_session<R>(
        &self,
        session: SessionId,
        change: impl FnOnce(&mut SessionRecord) -> R,
    ) -> StoreResult<Option<(R, Option<Revocation>)>> {
        let mut out = None;
        let revocation =
            self.update_session_dyn(session, Box::new(|record| out = Some(change(record))))?;
        Ok(revocation.and_then(|r| out.map(|out| (out, r))))
    }
}

/// Opens the store `config` names (creating it if needed). `access_window`
/// is how long after a revocation an access token of the session may still
/// pass the signature check (access lifetime + leeway): how long the
/// revocation must be kept. Fails with `StoreError::Locked` when another
/// process holds the store (redb), `StoreError::Unavailable` when the
/// database cannot be reached (postgres).
pub fn open(config: &StoreConfig, access_window: u64) -> StoreResult<Arc<Store>> {
    Ok(match config.kind {
        StoreKind::Redb => Arc::new(redb::RedbStore::open(&config.path, access_window)?),
        StoreKind::Postgres => {
            let url = config.database_url.as_ref().ok_or_else(|| {
                StoreError::Db("store.url: kind: postgres needs a connection string".into())
            })?;
            let options = postgres::PgOptions {
                url,
                pool_size: config.pool_size,
                ca_file: config.ca_file.as_deref(),
            };
            Arc::new(postgres::PgStore::open(&options, access_window)?)
        }
    })
}

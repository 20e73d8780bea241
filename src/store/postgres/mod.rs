//! The PostgreSQL backend (`store.kind: postgres`): one database shared by
//! every replica. The schema is `migrations/*.sql`, applied at open
//! (`migrations.rs`); one file per table holds its SQL, as functions of a
//! connection or a transaction; `StoreBackend` below gives each method its
//! transaction.
//!
//! # The client and where it runs
//!
//! tokio-postgres with the deadpool-postgres pool: the asynchronous client
//! is the one that can bound every call with a timer (a server that stops
//! answering costs a timeout, not a thread stuck in `read`), share a few
//! connections between many callers, and (later) hold a `LISTEN` connection
//! whose notifications arrive as a stream. sqlx would do the same with much
//! more around it (its own pool, macros checked against a live database);
//! the synchronous `postgres` crate hides a runtime of its own in every
//! connection and has no timeout on a call.
//!
//! Pingora runs its own tokio runtimes, and the store is called from their
//! blocking threads (`spawn_blocking`, the hashing threads) and from the CLI,
//! synchronously: no runtime may be started inside theirs. So the store owns
//! a small runtime of its own (one worker thread, `vigile-store`): the
//! connections' I/O tasks and timers live there, whoever calls. A call runs
//! `Handle::block_on` on the caller's thread: the query's future is polled
//! right there (so a transaction can call the caller's closure, which need
//! not be `Send`), while the sockets are driven by the store's thread. The
//! proxy's runtimes never wait on the database. Callers must not be async
//! tasks themselves (as for redb: async code goes through `spawn_blocking`).
//!
//! # Transactions
//!
//! Each method is one transaction, committed before it returns, at READ
//! COMMITTED whatever the database's default: with `default_transaction_
//! isolation` set to `serializable` by an operator, one of two replicas
//! refreshing one session at once would fail with 40001 (a 500). A
//! read-modify-write locks the rows it reads (`SELECT … FOR UPDATE`), or is
//! one `UPDATE … WHERE` whose condition PostgreSQL checks again on the row's
//! latest version, so concurrent writers on any replica serialize on each
//! row as redb's single writer does. Emails are unique by a UNIQUE index on
//! the key `normalize_email` computes: of two replicas registering one
//! address at once, one commits, the other gets `EmailTaken`.
//!
//! Locks are taken in one order, so that writers on several replicas never
//! deadlock (40P01): an account's row first, then its reset tokens, then
//! its sessions (by id when there are several: `sessions::revoke_all`),
//! then `revocations::SEQ_LOCK` and the revocation rows, last. A login
//! inserts its session before it sets the account's `last_login`, but no
//! one waits for a row before it commits. With neither 40001 nor 40P01, a
//! transaction has no conflict to retry (a failure is a 500, a lost
//! connection a 503).
//!
//! Every call is bounded by `CALL_TIMEOUT`; a connection that cannot be
//! made, a lost one and a timeout give `StoreError::Unavailable`.

mod accounts;
mod attempts;
mod copy;
mod follow;
mod housekeeping;
mod import;
mod keys;
mod migrations;
mod reset_tokens;
mod revocations;
mod roles;
mod sessions;
mod tls;

#[cfg(test)]
mod copy_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use parking_lot::RwLock;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use super::{
    AccountChange, AccountRecord, CopyReport, CreateAccountError, Follow, ImportBatch, ImportError,
    ImportReport, ImportedAccount, KeysChange, LegacyToken, LegacyUse, PasswordUpgrade,
    ResetRecord, Revocation, SequencedRevocation, SessionChange, SessionRecord, StoreBackend,
    StoreContents, StoreCounts, StoreError, StoreResult,
};
use crate::config::DatabaseUrl;
use crate::tokens::{SessionId, StoredKey};

/// The longest a store call may take, waiting for a connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound of one import (`vigile import django`): every account in one
/// transaction, an operator's command, not a request.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest a new connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        match e.code() {
            Some(code) if !unavailable(code) => StoreError::Db(describe(&e)),
            // No SQL state: the connection failed or closed.
            _ => StoreError::Unavailable(describe(&e)),
        }
    }
}

/// What went wrong, with its causes (tokio-postgres keeps them apart: "db
/// error", "error connecting to server"). A server's error is given by its
/// message only, without the DETAIL that may quote the row's values.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<tokio_postgres::Error> for CreateAccountError {
    fn from(e: tokio_postgres::Error) -> CreateAccountError {
        CreateAccountError::Store(e.into())
    }
}

/// SQL states that say the server cannot serve just now (shutting down,
/// starting, out of connections, connection lost), not that the call is
/// wrong.
fn unavailable(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || code.starts_with("57P") || code == "53300"
}

/// A `u64` of a record as a `bigint`.
fn int(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Db(format!("{value} is out of bigint's range")))
}

/// A `bigint` column as the record's `u64`.
fn uint(row: &Row, column: &str) -> StoreResult<u64> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| StoreError::Db(format!("{column} is negative: {value}")))
}

fn opt_uint(row: &Row, column: &str) -> StoreResult<Option<u64>> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| u64::try_from(v).map_err(|_| StoreError::Db(format!("{column} is negative"))))
        .transpose()
}

/// A session id or token id (`u128`) as its 16 bytes, big-endian: a `bytea`
/// that reads in psql as the hex the gateway logs.
fn id_bytes(id: u128) -> [u8; 16] {
    id.to_be_bytes()
}

fn id_of(row: &Row, column: &str) -> StoreResult<u128> {
    let bytes: &[u8] = row.try_get(column)?;
    bytes_id(column, bytes)
}

fn opt_id_of(row: &Row, column: &str) -> StoreResult<Option<u128>> {
    let bytes: Option<&[u8]> = row.try_get(column)?;
    bytes.map(|b| bytes_id(column, b)).transpose()
}

fn bytes_id(column: &str, bytes: &[u8]) -> StoreResult<u128> {
    <[u8; 16]>::try_from(bytes)
        .map(u128::from_be_bytes)
        .map_err(|_| StoreError::Db(format!("{column} is not 16 bytes long")))
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs a statement (prepared once per connection) and returns its rows.
async fn query(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

/// Runs a statement; how many rows it touched.
async fn execute(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<u64> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// The store's runtime: one worker thread driving the connections. Dropped
/// without waiting (a store may be dropped on any thread, async ones too).
struct Driver(Option<tokio::runtime::Runtime>);

impl Driver {
    fn new() -> StoreResult<Driver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vigile-store")
            .enable_all()
            .build()?;
        Ok(Driver(Some(runtime)))
    }

    /// Runs `work` on the calling thread, within `CALL_TIMEOUT`.
    fn run<T, E: From<StoreError>>(
        &self,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.run_within(CALL_TIMEOUT, work)
    }

    /// Runs `work` on the calling thread, within `bound`.
    fn run_within<T, E: From<StoreError>>(
        &self,
        bound: Duration,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let Some(runtime) = &self.0 else {
            return Err(StoreError::Closed.into());
        };
        // The call's own bound, or what is left of the caller's (`within`).
        let limit = crate::store::time_left().map_or(bound, |left| left.min(bound));
        if limit.is_zero() {
            return Err(StoreError::Unavailable(
                "no time left for another call to PostgreSQL".into(),
            )
            .into());
        }
        runtime.handle().block_on(async {
            match tokio::time::timeout(limit, work).await {
                Ok(out) => out,
                Err(_) => Err(StoreError::Unavailable(format!(
                    "no answer from PostgreSQL within {limit:?}"
                ))
                .into()),
            }
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// How to reach the database.
pub struct PgOptions<'a> {
    pub url: &'a DatabaseUrl,
    /// Connections open at most (`store.pool_size`).
    pub pool_size: usize,
    /// `store.ca_file`: more authorities for `sslmode=require`.
    pub ca_file: Option<&'a Path>,
}

pub struct PgStore {
    /// `None` once closed (at shutdown): calls then fail with `Closed`.
    pool: RwLock<Option<Pool>>,
    driver: Driver,
    /// How long after a revocation an access token of the session may still
    /// pass the signature check (access lifetime + leeway).
    access_window: u64,
    /// How `follow` opens its own connection.
    listener: follow::Listener,
    /// The follower's tasks, aborted by `close`.
    following: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl PgStore {
    /// Connects, and creates or migrates the schema. Fails with
    /// `StoreError::Unavailable` when the server cannot be reached.
    pub fn open(options: &PgOptions<'_>, access_window: u64) -> StoreResult<PgStore> {
        let mut settings = options
            .url
            .settings()
            .map_err(|e| StoreError::Db(format!("store.url: {e}")))?;
        if settings.get_connect_timeout().is_none() {
            settings.connect_timeout(CONNECT_TIMEOUT);
        }
        if settings.get_application_name().is_none() {
            settings.application_name("vigile");
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = tls::connector(&settings, options.ca_file)?;
        let listener = follow::Listener {
            settings: settings.clone(),
            tls: tls.clone(),
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(settings, tls, manager_config),
            None => Manager::from_config(settings, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .post_create(read_committed())
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let store = PgStore {
            pool: RwLock::new(Some(pool)),
            driver: Driver::new()?,
            access_window,
            listener,
            following: parking_lot::Mutex::new(Vec::new()),
        };
        store.driver.run(async {
            let mut client = connection(&store.pool()?).await?;
            migrations::apply(&mut client).await
        })?;
        Ok(store)
    }

    fn pool(&self) -> StoreResult<Pool> {
        self.pool.read().clone().ok_or(StoreError::Closed)
    }

    /// Runs `f` on a pooled connection, outside any transaction: for reads
    /// of one statement.
    fn read<T>(
        &self,
        f: impl AsyncFnOnce(&deadpool_postgres::Client) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let pool = self.pool()?;
        self.driver.run(async move {
            let client = connection(&pool).await?;
            f(&client).await
        })
    }

    /// Runs `f` in a transaction, committed if `f` succeeds (whatever it
    /// returns) and rolled back if it fails.
    fn write<T, E: From<StoreError>>(
        &self,
        f: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.driver.run(self.transaction(true, f))
    }

    /// A transaction running `f`, committed when `commit` and `f` succeeds,
    /// rolled back otherwise.
    async fn transaction<T, E: From<StoreError>>(
        &self,
        commit: bool,
        f: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let pool = self.pool()?;
        let mut client = connection(&pool).await?;
        let txn = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(StoreError::from)?;
        let out = f(&txn).await?;
        if commit {
            txn.commit().await.map_err(StoreError::from)?;
        } else {
            txn.rollback().await.map_err(StoreError::from)?;
        }
        Ok(out)
    }
}

/// Pins every pooled connection to READ COMMITTED, whatever the database's
/// `default_transaction_isolation` says: the reads of one statement too
/// (`write` also names the level on each transaction, which holds behind a
/// pooler that hands out another server connection).
fn read_committed() -> deadpool_postgres::Hook {
    deadpool_postgres::Hook::async_fn(|client, _| {
        Box::pin(async move {
            client
                .batch_execute(
                    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
                )
                .await
                .map_err(deadpool_postgres::HookError::Backend)
        })
    })
}

/// A connection from the pool.
async fn connection(pool: &Pool) -> StoreResult<deadpool_postgres::Client> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Closed => StoreError::Closed,
        deadpool_postgres::PoolError::Backend(e) => e.into(),
        other => StoreError::Unavailable(format!("no connection to PostgreSQL: {other}")),
    })
}

impl StoreBackend for PgStore {
    fn create_account(&self, account: AccountRecord) -> Result<AccountRecord, CreateAccountError> {
        self.write(async move |txn| accounts::create(txn, account).await)
    }

    fn insert_accounts(&self, accounts: Vec<AccountRecord>) -> Result<u64, CreateAccountError> {
        self.write(async move |txn| accounts::insert_many(txn, accounts).await)
    }

    fn account(&self, id: u64) -> StoreResult<Option<AccountRecord>> {
        self.read(async |c| accounts::by_id(c, id).await)
    }

    fn account_by_email(&self, email: &str) -> StoreResult<Option<AccountRecord>> {
        self.read(async |c| accounts::by_email(c, email).await)
    }

    fn accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.read(async |c| accounts::all(c).await)
    }

    fn account_count(&self) -> StoreResult<u64> {
        self.read(async |c| housekeeping::rows(c, "accounts").await)
    }

    fn update_account_dyn(
        &self,
        id: u64,
        now: u64,
        change: AccountChange<'_>,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        self.write(async move |txn| {
            accounts::update(txn, id, now, change, self.access_window).await
        })
    }

    fn set_password(
        &self,
        id: u64,
        password_hash: String,
        now: u64,
        keep: Option<SessionId>,
    ) -> StoreResult<Option<Vec<Revocation>>> {
        self.write(async move |txn| {
            accounts::set_password(txn, id, &password_hash, now, keep, self.access_window).await
        })
    }

    fn delete_account(&self, id: u64, now: u64) -> StoreResult<Option<Vec<Revocation>>> {
        self.write(async |txn| accounts::delete(txn, id, now, self.access_window).await)
    }

    fn create_role(&self, name: &str, now: u64) -> StoreResult<bool> {
        self.write(async |txn| roles::create(txn, name, now).await)
    }

    fn roles(&self) -> StoreResult<Vec<String>> {
        self.read(async |c| roles::list(c).await)
    }

    fn role_exists(&self, name: &str) -> StoreResult<bool> {
        self.read(async |c| roles::exists(c, name).await)
    }

    fn create_session_upgrading(
        &self,
        session: SessionId,
        record: &SessionRecord,
        upgrade: Option<PasswordUpgrade<'_>>,
    ) -> StoreResult<Option<bool>> {
        self.write(async |txn| sessions::create(txn, session, record, upgrade).await)
    }

    fn session(&self, session: SessionId) -> StoreResult<Option<SessionRecord>> {
        self.read(async |c| sessions::get(c, session).await)
    }

    fn update_session_dyn(
        &self,
        session: SessionId,
        change: SessionChange<'_>,
    ) -> StoreResult<Option<Option<Revocation>>> {
        self.write(async move |txn| {
            sessions::update(txn, session, change, self.access_window).await
        })
    }

    fn revoke_account_sessions(
        &self,
        account_id: u64,
        now: u64,
        except: Option<SessionId>,
    ) -> StoreResult<Vec<Revocation>> {
        self.write(async |txn| {
            sessions::revoke_all(txn, account_id, now, except, self.access_window).await
        })
    }

    fn insert_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        self.write(async |txn| revocations::insert(txn, revocations).await)
    }

    fn revocations(&self, now: u64) -> StoreResult<Vec<Revocation>> {
        self.read(async |c| revocations::in_force(c, now).await)
    }

    fn revocation_seq(&self) -> StoreResult<u64> {
        self.read(async |c| revocations::newest(c).await)
    }

    fn revocations_since(&self, seq: u64, limit: usize) -> StoreResult<Vec<SequencedRevocation>> {
        self.read(async |c| revocations::since(c, seq, limit).await)
    }

    fn follow(&self, follow: Follow) -> StoreResult<()> {
        let Some(runtime) = &self.driver.0 else {
            return Err(StoreError::Closed);
        };
        let mut following = self.following.lock();
        following.push(runtime.spawn(follow::watch(follow.status.clone())));
        following.push(runtime.spawn(follow::run(self.listener.clone(), follow)));
        Ok(())
    }

    fn shares_attempts(&self) -> bool {
        true
    }

    fn take_attempt(
        &self,
        scope: &str,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> StoreResult<Option<u64>> {
        self.read(async |c| attempts::take(c, scope, key, limit, window).await)
    }

    fn give_back_attempt(&self, scope: &str, key: &str) -> StoreResult<()> {
        self.read(async |c| attempts::give_back(c, scope, key).await)
    }

    fn create_reset_token(&self, token_hash: &[u8], record: &ResetRecord) -> StoreResult<()> {
        self.write(async |txn| reset_tokens::create(txn, token_hash, record).await)
    }

    fn reset_record(&self, token_hash: &[u8]) -> StoreResult<Option<ResetRecord>> {
        self.read(async |c| reset_tokens::get(c, token_hash).await)
    }

    fn use_reset_token(
        &self,
        token_hash: &[u8],
        now: u64,
        password_hash: String,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        self.write(async move |txn| {
            reset_tokens::use_token(txn, token_hash, now, &password_hash, self.access_window).await
        })
    }

    fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.read(async |c| keys::list(c).await)
    }

    fn signing_keys_version(&self) -> StoreResult<u64> {
        self.read(async |c| keys::version(c).await)
    }

    fn update_signing_keys_dyn(&self, change: KeysChange<'_>) -> StoreResult<Vec<StoredKey>> {
        self.write(async move |txn| keys::update(txn, change).await)
    }

    fn contents(&self) -> StoreResult<StoreContents> {
        self.write(async |txn| copy::contents(txn).await)
    }

    fn copy_in(&self, contents: &StoreContents) -> StoreResult<CopyReport> {
        self.write(async |txn| copy::copy_in(txn, contents).await)
    }

    fn import_accounts(
        &self,
        batch: &ImportBatch,
        now: u64,
        dry_run: bool,
    ) -> Result<ImportReport, ImportError> {
        self.driver.run_within(
            IMPORT_TIMEOUT,
            self.transaction(!dry_run, async |txn| {
                import::import(txn, batch, now, self.access_window, dry_run).await
            }),
        )
    }

    fn imported_account(&self, id: u64) -> StoreResult<Option<ImportedAccount>> {
        self.read(async |c| import::imported_account(c, id).await)
    }

    fn use_legacy_token(
        &self,
        token: &LegacyToken,
        session: Option<SessionId>,
    ) -> StoreResult<LegacyUse> {
        self.read(async |c| import::use_token(c, token, session).await)
    }

    fn counts(&self) -> StoreResult<StoreCounts> {
        self.read(async |c| housekeeping::counts(c).await)
    }

    fn purge_expired(&self, now: u64) -> StoreResult<(usize, usize, usize)> {
        self.write(async |txn| {
            attempts::purge(txn).await?;
            housekeeping::purge_expired(txn, now).await
        })
    }

    fn close(&self) {
        for task in self.following.lock().drain(..) {
            task.abort();
        }
        if let Some(pool) = self.pool.write().take() {
            pool.close();
        }
    }
}

//! The `accounts` table, with the UNIQUE `email_key` that makes emails
//! unique across replicas.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{
    execute, int, opt_uint, query, query_opt, reset_tokens, roles, sessions, uint, Params,
};
use crate::store::{
    email_names, normalize_email, AccountChange, AccountRecord, CreateAccountError,
    PasswordUpgrade, Revocation, StoreError, StoreResult,
};
use crate::tokens::SessionId;

const COLUMNS: &str = "id, email, password_hash, first_name, last_name, gender, phone, role, \
                       is_active, date_joined, last_login";

fn record(row: &Row) -> StoreResult<AccountRecord> {
    Ok(AccountRecord {
        id: uint(row, "id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        gender: row.try_get("gender")?,
        phone: row.try_get("phone")?,
        role: row.try_get("role")?,
        is_active: row.try_get("is_active")?,
        date_joined: uint(row, "date_joined")?,
        last_login: opt_uint(row, "last_login")?,
    })
}

fn records(rows: Vec<Row>) -> StoreResult<Vec<AccountRecord>> {
    rows.iter().map(record).collect()
}

/// Runs a statement returning at most one account.
async fn one(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<AccountRecord>> {
    query_opt(c, sql, params)
        .await?
        .as_ref()
        .map(record)
        .transpose()
}

/// The columns an account's fields fill (all but `id`), in the order of
/// `Fields::params`.
const FIELDS: &str = "email, email_key, password_hash, first_name, last_name, gender, phone, \
                      role, is_active, date_joined, last_login";

/// An account's fields as SQL parameters ($1 to $11, in `FIELDS`' order).
struct Fields<'a> {
    account: &'a AccountRecord,
    email_key: String,
    date_joined: i64,
    last_login: Option<i64>,
}

impl<'a> Fields<'a> {
    fn of(account: &'a AccountRecord) -> StoreResult<Fields<'a>> {
        Ok(Fields {
            account,
            email_key: normalize_email(&account.email),
            date_joined: int(account.date_joined)?,
            last_login: account.last_login.map(int).transpose()?,
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        let a = self.account;
        [
            &a.email,
            &self.email_key,
            &a.password_hash,
            &a.first_name,
            &a.last_name,
            &a.gender,
            &a.phone,
            &a.role,
            &a.is_active,
            &self.date_joined,
            &self.last_login,
        ]
    }
}

/// Inserts `account` under the next id, unless its email is taken. The
/// check first, so that a taken address (the usual refusal) uses no id; the
/// UNIQUE index settles a race with another transaction.
async fn add(
    txn: &Transaction<'_>,
    account: &AccountRecord,
) -> Result<AccountRecord, CreateAccountError> {
    let fields = Fields::of(account)?;
    if query_opt(
        txn,
        "SELECT 1 FROM accounts WHERE email_key = $1",
        &[&fields.email_key],
    )
    .await?
    .is_some()
    {
        return Err(CreateAccountError::EmailTaken);
    }
    let sql = format!(
        "INSERT INTO accounts ({FIELDS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    );
    let statement = txn.prepare_cached(&sql).await?;
    match txn.query_one(&statement, &fields.params()).await {
        Ok(row) => Ok(record(&row)?),
        Err(e) if email_taken(&e) => Err(CreateAccountError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

/// Writes `account` under its own id (`store copy`): `None` when the row
/// there is the same already, else whether it was added (not updated). The
/// row under that id is taken for the same account when it joined at the
/// same time: another one (another `date_joined`) fails, as does an email
/// another id holds; nothing of another account is overwritten.
pub(super) async fn put_with_id(
    txn: &Transaction<'_>,
    account: &AccountRecord,
) -> StoreResult<Option<bool>> {
    let fields = Fields::of(account)?;
    let id = int(account.id)?;
    let mut params = fields.params().to_vec();
    params.push(&id);
    let excluded: Vec<String> = FIELDS
        .split(", ")
        .map(|f| format!("excluded.{f}"))
        .collect();
    let current: Vec<String> = FIELDS
        .split(", ")
        .map(|f| format!("accounts.{f}"))
        .collect();
    let (excluded, current) = (excluded.join(", "), current.join(", "));
    let sql = format!(
        "INSERT INTO accounts (id, {FIELDS}) \
         VALUES ($12, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO UPDATE SET ({FIELDS}) = ROW({excluded}) \
         WHERE accounts.date_joined = excluded.date_joined \
         AND ROW({current}) IS DISTINCT FROM ROW({excluded}) \
         RETURNING (xmax = 0) AS added"
    );
    let statement = txn.prepare_cached(&sql).await?;
    match txn.query_opt(&statement, &params).await {
        Ok(Some(row)) => Ok(Some(row.try_get("added")?)),
        Ok(None) => match by_id(txn, account.id).await? {
            Some(there) if there.date_joined != account.date_joined => {
                Err(StoreError::Db(format!(
                    "account {}: the target's account {} is another one ({}, joined at {})",
                    account.id, there.id, there.email, there.date_joined
                )))
            }
            _ => Ok(None),
        },
        Err(e) if email_taken(&e) => Err(StoreError::Db(format!(
            "account {}: its email {} is another account's in the target",
            account.id, account.email
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Whether `e` is the UNIQUE email index refusing a second account.
fn email_taken(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|db| db.constraint()) == Some(UNIQUE_EMAIL)
}

const UNIQUE_EMAIL: &str = "accounts_email_key";

pub(super) async fn create(
    txn: &Transaction<'_>,
    mut account: AccountRecord,
) -> Result<AccountRecord, CreateAccountError> {
    account.email = account.email.trim().to_string();
    let created = add(txn, &account).await?;
    roles::create(txn, &created.role, created.date_joined).await?;
    Ok(created)
}

pub(super) async fn insert_many(
    txn: &Transaction<'_>,
    accounts: Vec<AccountRecord>,
) -> Result<u64, CreateAccountError> {
    let count = accounts.len() as u64;
    for account in &accounts {
        add(txn, account).await?;
    }
    Ok(count)
}

pub(super) async fn by_id(c: &impl GenericClient, id: u64) -> StoreResult<Option<AccountRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = $1");
    one(c, &sql, &[&int(id)?]).await
}

pub(super) async fn by_email(
    c: &impl GenericClient,
    email: &str,
) -> StoreResult<Option<AccountRecord>> {
    // PostgreSQL's text holds no NUL (the query would fail): no account's
    // address has one.
    if email.contains('\0') {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE email_key = $1");
    let account = one(c, &sql, &[&normalize_email(email)]).await?;
    Ok(account.filter(|a| email_names(email, &a.email)))
}

/// The accounts with these ids, locked until the transaction ends (in id
/// order, as every writer locks them).
pub(super) async fn locked(c: &impl GenericClient, ids: &[i64]) -> StoreResult<Vec<AccountRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    records(query(c, &sql, &[&ids]).await?)
}

pub(super) async fn all(c: &impl GenericClient) -> StoreResult<Vec<AccountRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM accounts ORDER BY id");
    records(query(c, &sql, &[]).await?)
}

/// Saves every field of `account` (its email key too) but its id.
async fn save(txn: &Transaction<'_>, account: &AccountRecord) -> StoreResult<()> {
    let fields = Fields::of(account)?;
    let id = int(account.id)?;
    let mut params = fields.params().to_vec();
    params.push(&id);
    let sql = format!("UPDATE accounts SET ({FIELDS}) = ROW($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) WHERE id = $12");
    execute(txn, &sql, &params).await?;
    Ok(())
}

pub(super) async fn update(
    txn: &Transaction<'_>,
    id: u64,
    now: u64,
    change: AccountChange<'_>,
    access_window: u64,
) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = $1 FOR UPDATE");
    let Some(mut account) = one(txn, &sql, &[&int(id)?]).await? else {
        return Ok(None);
    };
    let was_active = account.is_active;
    change(&mut account);
    if account.id != id {
        return Err(StoreError::Db("an account's id cannot change".into()));
    }
    save(txn, &account).await?;
    roles::create(txn, &account.role, now).await?;
    let revoked = if was_active && !account.is_active {
        sessions::revoke_all(txn, id, now, None, access_window).await?
    } else {
        Vec::new()
    };
    Ok(Some((account, revoked)))
}

pub(super) async fn set_password(
    txn: &Transaction<'_>,
    id: u64,
    password_hash: &str,
    now: u64,
    keep: Option<SessionId>,
    access_window: u64,
) -> StoreResult<Option<Vec<Revocation>>> {
    let updated = execute(
        txn,
        "UPDATE accounts SET password_hash = $2 WHERE id = $1",
        &[&int(id)?, &password_hash],
    )
    .await?;
    if updated == 0 {
        return Ok(None);
    }
    sessions::revoke_all(txn, id, now, keep, access_window)
        .await
        .map(Some)
}

/// Sets the password hash of an active account; `None` for an inactive or
/// missing one (nothing is saved then).
pub(super) async fn reset_password(
    txn: &Transaction<'_>,
    id: u64,
    password_hash: &str,
) -> StoreResult<Option<AccountRecord>> {
    let sql = format!(
        "UPDATE accounts SET password_hash = $2 WHERE id = $1 AND is_active RETURNING {COLUMNS}"
    );
    one(txn, &sql, &[&int(id)?, &password_hash]).await
}

/// Sets `last_login`, and applies `upgrade` (see `PasswordUpgrade`) in the
/// same statement; whether the hash was replaced.
pub(super) async fn set_last_login(
    txn: &Transaction<'_>,
    id: u64,
    at: u64,
    upgrade: Option<PasswordUpgrade<'_>>,
) -> StoreResult<Option<bool>> {
    let Some(u) = upgrade else {
        execute(
            txn,
            "UPDATE accounts SET last_login = $2 WHERE id = $1",
            &[&int(id)?, &int(at)?],
        )
        .await?;
        return Ok(Some(false));
    };
    // Only while the account is active and still holds the hash verified
    // (a password changed, reset or deactivated meanwhile wins).
    let row = query_opt(
        txn,
        "UPDATE accounts SET last_login = $2, password_hash = coalesce($4, password_hash) \
         WHERE id = $1 AND is_active AND password_hash = $3 RETURNING $4::text IS NOT NULL AS upgraded",
        &[&int(id)?, &int(at)?, &u.verified, &u.new_hash],
    )
    .await?;
    row.map(|row| Ok(row.try_get("upgraded")?)).transpose()
}

/// Deletes the account and its reset tokens, and revokes its sessions;
/// `None` when there is no such account.
pub(super) async fn delete(
    txn: &Transaction<'_>,
    id: u64,
    now: u64,
    access_window: u64,
) -> StoreResult<Option<Vec<Revocation>>> {
    if execute(txn, "DELETE FROM accounts WHERE id = $1", &[&int(id)?]).await? == 0 {
        return Ok(None);
    }
    reset_tokens::remove_all(txn, id).await?;
    sessions::revoke_all(txn, id, now, None, access_window)
        .await
        .map(Some)
}

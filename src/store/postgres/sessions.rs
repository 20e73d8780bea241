//! The `sessions` table (indexed by account), with what rotation and
//! revocation do to it.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::{
    accounts, execute, id_bytes, id_of, int, opt_id_of, opt_uint, query, query_opt, revocations,
    uint,
};
use crate::store::{PasswordUpgrade, Revocation, SessionChange, SessionRecord, StoreResult};
use crate::tokens::SessionId;

const COLUMNS: &str = "account_id, created_at, expires_at, refresh_jti, previous_jti, \
                       rotated_at, rotated_at_ms, revoked_at";

fn record(row: &Row) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        account_id: uint(row, "account_id")?,
        created_at: uint(row, "created_at")?,
        expires_at: uint(row, "expires_at")?,
        refresh_jti: id_of(row, "refresh_jti")?,
        previous_jti: opt_id_of(row, "previous_jti")?,
        rotated_at: uint(row, "rotated_at")?,
        revoked_at: opt_uint(row, "revoked_at")?,
        rotated_at_ms: opt_uint(row, "rotated_at_ms")?,
    })
}

/// Writes the session, whether it is new or not; with `changed_only`, an
/// equal row is left alone. `None` when nothing was written, else whether
/// the row was added (not updated).
async fn save(
    c: &impl GenericClient,
    session: SessionId,
    record: &SessionRecord,
    changed_only: bool,
) -> StoreResult<Option<bool>> {
    let previous = record.previous_jti.map(id_bytes);
    let rotated_at_ms = record.rotated_at_ms.map(int).transpose()?;
    let revoked_at = record.revoked_at.map(int).transpose()?;
    let condition = if changed_only {
        " WHERE ROW(sessions.*) IS DISTINCT FROM ROW(excluded.*)"
    } else {
        ""
    };
    let sql = format!(
        "INSERT INTO sessions (id, account_id, created_at, expires_at, refresh_jti, \
         previous_jti, rotated_at, rotated_at_ms, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, \
         created_at = excluded.created_at, expires_at = excluded.expires_at, \
         refresh_jti = excluded.refresh_jti, previous_jti = excluded.previous_jti, \
         rotated_at = excluded.rotated_at, rotated_at_ms = excluded.rotated_at_ms, \
         revoked_at = excluded.revoked_at{condition} RETURNING (xmax = 0) AS added"
    );
    let row = query_opt(
        c,
        &sql,
        &[
            &id_bytes(session.0).as_slice(),
            &int(record.account_id)?,
            &int(record.created_at)?,
            &int(record.expires_at)?,
            &id_bytes(record.refresh_jti).as_slice(),
            &previous.as_ref().map(|p| p.as_slice()),
            &int(record.rotated_at)?,
            &rotated_at_ms,
            &revoked_at,
        ],
    )
    .await?;
    Ok(row.map(|row| row.try_get("added")).transpose()?)
}

/// Writes the session as it is given (`store copy`): `None` when the row
/// there is the same already, else whether it was added.
pub(super) async fn put(
    c: &impl GenericClient,
    session: SessionId,
    record: &SessionRecord,
) -> StoreResult<Option<bool>> {
    save(c, session, record, true).await
}

/// Every session, by id.
pub(super) async fn all(c: &impl GenericClient) -> StoreResult<Vec<(SessionId, SessionRecord)>> {
    let sql = format!("SELECT id, {COLUMNS} FROM sessions ORDER BY id");
    query(c, &sql, &[])
        .await?
        .iter()
        .map(|row| Ok((SessionId(id_of(row, "id")?), record(row)?)))
        .collect()
}

/// Sets the account's `last_login`, applying `upgrade` (see
/// `PasswordUpgrade`), then records the new session; `None` (nothing
/// written) when `upgrade`'s check fails, else whether the hash was replaced.
pub(super) async fn create(
    txn: &Transaction<'_>,
    session: SessionId,
    record: &SessionRecord,
    upgrade: Option<PasswordUpgrade<'_>>,
) -> StoreResult<Option<bool>> {
    let login =
        accounts::set_last_login(txn, record.account_id, record.created_at, upgrade).await?;
    if login.is_some() {
        save(txn, session, record, false).await?;
    }
    Ok(login)
}

pub(super) async fn get(
    c: &impl GenericClient,
    session: SessionId,
) -> StoreResult<Option<SessionRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = $1");
    query_opt(c, &sql, &[&id_bytes(session.0).as_slice()])
        .await?
        .as_ref()
        .map(record)
        .transpose()
}

/// Applies `change` (the row locked) and saves the session; records the
/// revocation when `change` revoked it. `None` when there is no such
/// session.
pub(super) async fn update(
    txn: &Transaction<'_>,
    session: SessionId,
    change: SessionChange<'_>,
    access_window: u64,
) -> StoreResult<Option<Option<Revocation>>> {
    let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = $1 FOR UPDATE");
    let Some(row) = query_opt(txn, &sql, &[&id_bytes(session.0).as_slice()]).await? else {
        return Ok(None);
    };
    let mut record = record(&row)?;
    let was_revoked = record.revoked_at.is_some();
    change(&mut record);
    save(txn, session, &record, false).await?;
    let revocation = match record.revoked_at {
        Some(at) if !was_revoked => Some((session, at + access_window)),
        _ => None,
    };
    revocations::insert(txn, revocation.as_slice()).await?;
    Ok(Some(revocation))
}

/// Revokes every live session of the account but `except`, their rows
/// locked in the order of their ids: two transactions revoking the sessions
/// of one account (a password change on one replica, a logout of every
/// session on another) would otherwise lock them in the order each one's
/// scan meets them, which a rotation committed between their snapshots can
/// make opposite (the rotated row moves), and deadlock. `FOR UPDATE` checks
/// the condition again on a row another transaction changed meanwhile, so a
/// session is revoked (and its revocation recorded) once.
pub(super) async fn revoke_all(
    txn: &Transaction<'_>,
    account_id: u64,
    now: u64,
    except: Option<SessionId>,
    access_window: u64,
) -> StoreResult<Vec<Revocation>> {
    let except = except.map(|s| id_bytes(s.0));
    let rows = query(
        txn,
        "UPDATE sessions SET revoked_at = $2 WHERE id IN ( \
             SELECT id FROM sessions \
             WHERE account_id = $1 AND revoked_at IS NULL AND expires_at >= $2 \
             AND ($3::bytea IS NULL OR id <> $3) ORDER BY id FOR UPDATE) \
         RETURNING id",
        &[
            &int(account_id)?,
            &int(now)?,
            &except.as_ref().map(|e| e.as_slice()),
        ],
    )
    .await?;
    let mut out = rows
        .iter()
        .map(|row| Ok((SessionId(id_of(row, "id")?), now + access_window)))
        .collect::<StoreResult<Vec<Revocation>>>()?;
    out.sort();
    // The other system's tokens of the account end with its sessions.
    execute(
        txn,
        "UPDATE imported_accounts SET cut_off = greatest(cut_off, $2) WHERE id = $1",
        &[&int(account_id)?, &int(now)?],
    )
    .await?;
    revocations::insert(txn, &out).await?;
    Ok(out)
}

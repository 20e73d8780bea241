//! The `sessions` table and its `account_sessions` index (the sessions of
//! an account), with what rotation and revocation do to them.

use redb::{ReadableTable, WriteTransaction};

use super::{each, get, put, revocations, ACCOUNT_SESSIONS, SESSIONS};
use crate::store::{Revocation, SessionChange, SessionRecord, StoreResult};
use crate::tokens::SessionId;

pub(super) fn create(
    txn: &WriteTransaction,
    session: SessionId,
    record: &SessionRecord,
) -> StoreResult<()> {
    put(&mut txn.open_table(SESSIONS)?, session.0, record)?;
    txn.open_table(ACCOUNT_SESSIONS)?
        .insert((record.account_id, session.0), ())?;
    Ok(())
}

/// Applies `change` and saves the session; records the revocation when
/// `change` revoked it. `None` when there is no such session.
pub(super) fn update(
    txn: &WriteTransaction,
    session: SessionId,
    change: SessionChange<'_>,
    access_window: u64,
) -> StoreResult<Option<Option<Revocation>>> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let Some(mut record) = get::<_, SessionRecord>(&sessions, session.0)? else {
        return Ok(None);
    };
    let was_revoked = record.revoked_at.is_some();
    change(&mut record);
    put(&mut sessions, session.0, &record)?;
    let revocation = match record.revoked_at {
        Some(at) if !was_revoked => Some((session, at + access_window)),
        _ => None,
    };
    revocations::insert(txn, revocation.as_slice())?;
    Ok(Some(revocation))
}

/// Revokes every live session of the account but `except`.
pub(super) fn revoke_all(
    txn: &WriteTransaction,
    account_id: u64,
    now: u64,
    except: Option<SessionId>,
    access_window: u64,
) -> StoreResult<Vec<Revocation>> {
    let mut ids = Vec::new();
    for row in txn
        .open_table(ACCOUNT_SESSIONS)?
        .range((account_id, 0u128)..=(account_id, u128::MAX))?
    {
        let (k, _) = row?;
        ids.push(k.value().1);
    }
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut out = Vec::new();
    for id in ids {
        if except.is_some_and(|e| e.0 == id) {
            continue;
        }
        let Some(mut record) = get::<_, SessionRecord>(&sessions, id)? else {
            continue;
        };
        if record.revoked_at.is_some() || record.expires_at < now {
            continue;
        }
        record.revoked_at = Some(now);
        put(&mut sessions, id, &record)?;
        out.push((SessionId(id), now + access_window));
    }
    revocations::insert(txn, &out)?;
    // The other system's tokens of the account end with its sessions.
    super::import::cut_off(txn, account_id, now)?;
    Ok(out)
}

/// Drops the sessions whose last refresh token expired before `now`; how
/// many went.
pub(super) fn purge(txn: &WriteTransaction, now: u64) -> StoreResult<usize> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut expired = Vec::new();
    each(&sessions, |id, record: SessionRecord| {
        if record.expires_at < now {
            expired.push((record.account_id, id));
        }
    })?;
    let mut index = txn.open_table(ACCOUNT_SESSIONS)?;
    for (account, id) in &expired {
        sessions.remove(*id)?;
        index.remove((*account, *id))?;
    }
    Ok(expired.len())
}

//! The `reset_tokens` table: SHA-256 of a password-reset token -> its
//! `ResetRecord` (the token itself is never stored).

use deadpool_postgres::{GenericClient, Transaction};

use super::{accounts, execute, int, query_opt, sessions, uint};
use crate::store::{AccountRecord, ResetRecord, Revocation, StoreResult};

pub(super) async fn create(
    c: &impl GenericClient,
    token_hash: &[u8],
    record: &ResetRecord,
) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO reset_tokens (token_hash, account_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE \
         SET account_id = excluded.account_id, created_at = excluded.created_at, \
             expires_at = excluded.expires_at",
        &[
            &token_hash,
            &int(record.account_id)?,
            &int(record.created_at)?,
            &int(record.expires_at)?,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn get(
    c: &impl GenericClient,
    token_hash: &[u8],
) -> StoreResult<Option<ResetRecord>> {
    let row = query_opt(
        c,
        "SELECT account_id, created_at, expires_at FROM reset_tokens WHERE token_hash = $1",
        &[&token_hash],
    )
    .await?;
    row.map(|row| {
        Ok(ResetRecord {
            account_id: uint(&row, "account_id")?,
            created_at: uint(&row, "created_at")?,
            expires_at: uint(&row, "expires_at")?,
        })
    })
    .transpose()
}

/// Consumes the token if it is there and unexpired (one `DELETE`: of two
/// replicas using it at once, one gets it), then sets the password of its
/// (active) account, drops the account's other tokens and revokes its
/// sessions. `None` when the token or the account does not qualify.
///
/// The account's row is locked before the token is taken, as every write of
/// an account does (`mod.rs`, "Transactions"): two tokens of one account
/// used at once on two replicas would otherwise each hold its own token,
/// then one, holding the account, wait to drop the other's token while the
/// other waits for the account: a deadlock, a 500 for one of the two.
pub(super) async fn use_token(
    txn: &Transaction<'_>,
    token_hash: &[u8],
    now: u64,
    password_hash: &str,
    access_window: u64,
) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
    let Some(row) = query_opt(
        txn,
        "SELECT account_id FROM reset_tokens WHERE token_hash = $1",
        &[&token_hash],
    )
    .await?
    else {
        return Ok(None);
    };
    let account_id = uint(&row, "account_id")?;
    execute(
        txn,
        "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
        &[&int(account_id)?],
    )
    .await?;
    if query_opt(
        txn,
        "DELETE FROM reset_tokens WHERE token_hash = $1 AND account_id = $2 \
         AND expires_at >= $3 RETURNING account_id",
        &[&token_hash, &int(account_id)?, &int(now)?],
    )
    .await?
    .is_none()
    {
        return Ok(None);
    }
    let Some(account) = accounts::reset_password(txn, account_id, password_hash).await? else {
        return Ok(None);
    };
    remove_all(txn, account.id).await?;
    let revoked = sessions::revoke_all(txn, account.id, now, None, access_window).await?;
    Ok(Some((account, revoked)))
}

/// Drops every token of the account.
pub(super) async fn remove_all(c: &impl GenericClient, account_id: u64) -> StoreResult<()> {
    execute(
        c,
        "DELETE FROM reset_tokens WHERE account_id = $1",
        &[&int(account_id)?],
    )
    .await?;
    Ok(())
}

//! The `reset_tokens` table: SHA-256 of a password-reset token -> its
//! `ResetRecord` (the token itself is never stored).

use redb::WriteTransaction;

use super::{accounts, each, get, sessions, RESET_TOKENS};
use crate::store::{AccountRecord, ResetRecord, Revocation, StoreResult};

/// Consumes the token if it is there and unexpired, then sets the password
/// of its (active) account, drops the account's other tokens and revokes its
/// sessions. `None` when the token or the account does not qualify.
pub(super) fn use_token(
    txn: &WriteTransaction,
    token_hash: &[u8],
    now: u64,
    password_hash: String,
    access_window: u64,
) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
    let mut tokens = txn.open_table(RESET_TOKENS)?;
    let account_id = match get::<_, ResetRecord>(&tokens, token_hash)? {
        Some(r) if r.expires_at >= now => r.account_id,
        _ => return Ok(None),
    };
    tokens.remove(token_hash)?;
    drop(tokens);
    let Some(account) = accounts::reset_password(txn, account_id, password_hash)? else {
        return Ok(None);
    };
    remove_all(txn, account.id)?;
    let revoked = sessions::revoke_all(txn, account.id, now, None, access_window)?;
    Ok(Some((account, revoked)))
}

/// Drops every token of the account.
pub(super) fn remove_all(txn: &WriteTransaction, account_id: u64) -> StoreResult<()> {
    remove_where(txn, |record| record.account_id == account_id)?;
    Ok(())
}

/// Drops the tokens that expired before `now`; how many went.
pub(super) fn purge(txn: &WriteTransaction, now: u64) -> StoreResult<usize> {
    remove_where(txn, |record| record.expires_at < now)
}

fn remove_where(
    txn: &WriteTransaction,
    doomed: impl Fn(&ResetRecord) -> bool,
) -> StoreResult<usize> {
    let mut tokens = txn.open_table(RESET_TOKENS)?;
    let mut keys = Vec::new();
    each(&tokens, |key: &[u8], record: ResetRecord| {
        if doomed(&record) {
            keys.push(key.to_vec());
        }
    })?;
    for key in &keys {
        tokens.remove(key.as_slice())?;
    }
    Ok(keys.len())
}

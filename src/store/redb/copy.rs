//! Everything the file holds, for `vigile store copy` (`store/copy.rs`).

use redb::{ReadTransaction, ReadableTable};

use super::{
    accounts, each, ACCOUNTS, IMPORTED, LEGACY_TOKENS, META, RESET_TOKENS, REVOKED, ROLES, SESSIONS,
};
use crate::store::{LegacyTokenRow, StoreContents, StoreResult};
use crate::tokens::SessionId;

/// Every table, in key order, from one read transaction.
pub(super) fn contents(txn: &ReadTransaction) -> StoreResult<StoreContents> {
    let mut out = StoreContents {
        next_account_id: accounts::next_id(&txn.open_table(META)?)?,
        ..StoreContents::default()
    };
    each(&txn.open_table(ACCOUNTS)?, |_, account| {
        out.accounts.push(account)
    })?;
    for row in txn.open_table(ROLES)?.iter()? {
        let (name, created_at) = row?;
        out.roles
            .push((name.value().to_string(), created_at.value()));
    }
    each(&txn.open_table(SESSIONS)?, |id, session| {
        out.sessions.push((SessionId(id), session))
    })?;
    for row in txn.open_table(REVOKED)?.iter()? {
        let (id, until) = row?;
        out.revocations.push((SessionId(id.value()), until.value()));
    }
    each(&txn.open_table(RESET_TOKENS)?, |hash: &[u8], record| {
        out.reset_tokens.push((hash.to_vec(), record))
    })?;
    for row in txn.open_table(IMPORTED)?.iter()? {
        let (id, value) = row?;
        let (joined, cut_off) = value.value();
        out.imported_accounts.push((id.value(), joined, cut_off));
    }
    for row in txn.open_table(LEGACY_TOKENS)?.iter()? {
        let (jti, value) = row?;
        let (expires_at, used, session) = value.value();
        out.legacy_tokens.push(LegacyTokenRow {
            jti: jti.value().to_string(),
            expires_at,
            used,
            session: (session != 0).then_some(SessionId(session)),
        });
    }
    Ok(out)
}

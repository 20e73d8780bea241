//! `vigile import django` into PostgreSQL: accounts by `store::merge` under
//! their ids (the rows locked first), roles, the `legacy_tokens` table, and
//! the one-time exchange of a legacy refresh token.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{GenericClient, Transaction};

use super::{accounts, execute, id_bytes, int, opt_id_of, query, query_opt, roles, sessions, uint};
use crate::store::{
    merge, normalize_email, ImportBatch, ImportError, ImportReport, ImportedAccount, LegacyToken,
    LegacyUse, StoreResult,
};
use crate::tokens::SessionId;

pub(super) async fn import(
    txn: &Transaction<'_>,
    batch: &ImportBatch,
    now: u64,
    access_window: u64,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let ids = batch
        .accounts
        .iter()
        .map(|a| int(a.id))
        .collect::<StoreResult<Vec<i64>>>()?;
    let mut existing: HashMap<u64, _> = accounts::locked(txn, &ids)
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();
    let keys: Vec<String> = batch
        .accounts
        .iter()
        .map(|a| normalize_email(&a.email))
        .collect();
    let holders: HashMap<String, u64> = query(
        txn,
        "SELECT id, email_key FROM accounts WHERE email_key = ANY($1)",
        &[&keys],
    )
    .await?
    .iter()
    .map(|row| Ok((row.try_get("email_key")?, uint(row, "id")?)))
    .collect::<StoreResult<_>>()?;

    let noted: HashSet<u64> = query(
        txn,
        "SELECT id FROM imported_accounts WHERE id = ANY($1)",
        &[&ids],
    )
    .await?
    .iter()
    .map(|row| uint(row, "id"))
    .collect::<StoreResult<_>>()?;

    let mut report = ImportReport::default();
    let mut deactivated = Vec::new();
    let mut highest = 0;
    for incoming in &batch.accounts {
        highest = highest.max(incoming.id);
        let before = existing.remove(&incoming.id);
        let merged = merge(before.as_ref(), noted.contains(&incoming.id), incoming)?;
        execute(
            txn,
            "INSERT INTO imported_accounts (id, date_joined) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET date_joined = excluded.date_joined",
            &[&int(incoming.id)?, &int(incoming.date_joined)?],
        )
        .await?;
        let Some(record) = report.count(merged) else {
            continue;
        };
        if let Some(&other) = holders.get(&normalize_email(&record.email)) {
            if other != record.id {
                return Err(ImportError::EmailTaken {
                    id: record.id,
                    email: record.email,
                    other,
                });
            }
        }
        accounts::put_with_id(txn, &record).await?;
        if before.is_some_and(|old| old.is_active) && !record.is_active {
            deactivated.push(record.id);
        }
    }
    // New accounts here go on after every imported id (ids are never
    // reused). Not on a dry run: a sequence change is not undone by the
    // rollback.
    if !dry_run {
        execute(
            txn,
            "SELECT setval(s, $1) FROM (SELECT pg_get_serial_sequence('accounts', 'id') AS s) q \
             WHERE $1 > coalesce(pg_sequence_last_value(s::regclass), 0)",
            &[&int(highest)?],
        )
        .await?;
    }
    let account_roles = batch.accounts.iter().map(|a| a.role.as_str());
    for role in batch.roles.iter().map(String::as_str).chain(account_roles) {
        if roles::create(txn, role, now).await? {
            report.roles_added += 1;
        }
    }
    for token in &batch.blacklisted {
        report.blacklisted_added += execute(
            txn,
            "INSERT INTO legacy_tokens (jti, expires_at, exchanged) VALUES ($1, $2, false) \
             ON CONFLICT (jti) DO NOTHING",
            &[&token.jti, &int(token.expires_at)?],
        )
        .await?;
    }
    // Last: numbering revocations holds the sequence lock until the commit.
    for id in deactivated {
        report
            .revoked
            .extend(sessions::revoke_all(txn, id, now, None, access_window).await?);
    }
    Ok(report)
}

pub(super) async fn imported_account(
    c: &impl GenericClient,
    id: u64,
) -> StoreResult<Option<ImportedAccount>> {
    let account = accounts::by_id(c, id).await?;
    let Some(account) = account else {
        return Ok(None);
    };
    let noted = query_opt(
        c,
        "SELECT cut_off FROM imported_accounts WHERE id = $1 AND date_joined = $2",
        &[&int(id)?, &int(account.date_joined)?],
    )
    .await?;
    noted
        .map(|row| {
            Ok(ImportedAccount {
                account,
                cut_off: uint(&row, "cut_off")?,
            })
        })
        .transpose()
}

pub(super) async fn use_token(
    c: &impl GenericClient,
    token: &LegacyToken,
    session: Option<SessionId>,
) -> StoreResult<LegacyUse> {
    let sid = session.map(|s| id_bytes(s.0));
    let inserted = execute(
        c,
        "INSERT INTO legacy_tokens (jti, expires_at, exchanged, session_id) \
         VALUES ($1, $2, true, $3) ON CONFLICT (jti) DO NOTHING",
        &[
            &token.jti,
            &int(token.expires_at)?,
            &sid.as_ref().map(|s| s.as_slice()),
        ],
    )
    .await?;
    if inserted == 1 {
        return Ok(LegacyUse::Fresh);
    }
    let row = query_opt(
        c,
        "SELECT exchanged, session_id FROM legacy_tokens WHERE jti = $1",
        &[&token.jti],
    )
    .await?;
    Ok(match row {
        Some(row) if !row.try_get::<_, bool>("exchanged")? => LegacyUse::Blacklisted,
        Some(row) => LegacyUse::Used(opt_id_of(&row, "session_id")?.map(SessionId)),
        None => LegacyUse::Used(None),
    })
}

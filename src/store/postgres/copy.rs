//! `vigile store copy` into PostgreSQL (`store/copy.rs`): every row written
//! with its own key and id, an equal row left alone (`IS DISTINCT FROM`), so
//! that a second copy writes nothing; `xmax = 0` tells an added row from an
//! updated one.

use deadpool_postgres::{GenericClient, Transaction};

use super::{
    accounts, execute, id_bytes, id_of, int, opt_id_of, query, query_opt, revocations, sessions,
    uint,
};
use crate::store::{Copied, CopyReport, LegacyTokenRow, ResetRecord, StoreContents, StoreResult};
use crate::tokens::SessionId;

/// Every table, in key order, from one snapshot (REPEATABLE READ).
pub(super) async fn contents(txn: &Transaction<'_>) -> StoreResult<StoreContents> {
    execute(txn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", &[]).await?;
    let next = query(
        txn,
        "SELECT coalesce(pg_sequence_last_value(\
         pg_get_serial_sequence('accounts', 'id')::regclass), 0) + 1 AS next",
        &[],
    )
    .await?;
    let roles = query(txn, "SELECT name, created_at FROM roles ORDER BY name", &[]).await?;
    let revoked = query(
        txn,
        "SELECT session_id, until FROM revocations ORDER BY session_id",
        &[],
    )
    .await?;
    let reset = query(
        txn,
        "SELECT token_hash, account_id, created_at, expires_at FROM reset_tokens \
         ORDER BY token_hash",
        &[],
    )
    .await?;
    Ok(StoreContents {
        accounts: accounts::all(txn).await?,
        next_account_id: next.first().map_or(Ok(1), |row| uint(row, "next"))?,
        roles: roles
            .iter()
            .map(|row| Ok((row.try_get("name")?, uint(row, "created_at")?)))
            .collect::<StoreResult<_>>()?,
        sessions: sessions::all(txn).await?,
        revocations: revoked
            .iter()
            .map(|row| Ok((SessionId(id_of(row, "session_id")?), uint(row, "until")?)))
            .collect::<StoreResult<_>>()?,
        imported_accounts: query(
            txn,
            "SELECT id, date_joined, cut_off FROM imported_accounts ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            Ok((
                uint(row, "id")?,
                uint(row, "date_joined")?,
                uint(row, "cut_off")?,
            ))
        })
        .collect::<StoreResult<_>>()?,
        legacy_tokens: query(
            txn,
            "SELECT jti, expires_at, exchanged, session_id FROM legacy_tokens ORDER BY jti",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(LegacyTokenRow {
                jti: row.try_get("jti")?,
                expires_at: uint(row, "expires_at")?,
                used: row.try_get("exchanged")?,
                session: opt_id_of(row, "session_id")?.map(SessionId),
            })
        })
        .collect::<StoreResult<_>>()?,
        reset_tokens: reset
            .iter()
            .map(|row| {
                let record = ResetRecord {
                    account_id: uint(row, "account_id")?,
                    created_at: uint(row, "created_at")?,
                    expires_at: uint(row, "expires_at")?,
                };
                Ok((row.try_get::<_, Vec<u8>>("token_hash")?, record))
            })
            .collect::<StoreResult<_>>()?,
    })
}

/// Counts what each row's write did (`None`: left alone; `Some(true)`:
/// added; `Some(false)`: updated).
#[derive(Default)]
struct Tally {
    added: u64,
    updated: u64,
    seen: usize,
}

impl Tally {
    fn count(&mut self, outcome: Option<bool>) {
        self.seen += 1;
        match outcome {
            Some(true) => self.added += 1,
            Some(false) => self.updated += 1,
            None => {}
        }
    }

    fn done(self) -> Copied {
        Copied::of(self.seen, self.added, self.updated)
    }
}

/// The `added` column of an upsert's `RETURNING`, if it wrote the row.
async fn upsert(
    c: &impl GenericClient,
    sql: &str,
    params: super::Params<'_>,
) -> StoreResult<Option<bool>> {
    Ok(query_opt(c, sql, params)
        .await?
        .map(|row| row.try_get("added"))
        .transpose()?)
}

/// Writes `contents` (one transaction, the caller's).
pub(super) async fn copy_in(
    txn: &Transaction<'_>,
    contents: &StoreContents,
) -> StoreResult<CopyReport> {
    let mut report = CopyReport::default();

    let mut tally = Tally::default();
    for (name, created_at) in &contents.roles {
        tally.count(
            upsert(
                txn,
                "INSERT INTO roles (name, created_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET created_at = excluded.created_at \
                 WHERE roles.created_at <> excluded.created_at RETURNING (xmax = 0) AS added",
                &[name, &int(*created_at)?],
            )
            .await?,
        );
    }
    report.roles = tally.done();

    let mut tally = Tally::default();
    let mut highest = 0;
    for account in &contents.accounts {
        highest = highest.max(account.id);
        tally.count(accounts::put_with_id(txn, account).await?);
    }
    report.accounts = tally.done();
    // New accounts here go on after every id the source gave; the sequence
    // never goes back (ids are never reused).
    let last = int(highest.max(contents.next_account_id.saturating_sub(1)))?;
    execute(
        txn,
        "SELECT setval(s, $1) FROM (SELECT pg_get_serial_sequence('accounts', 'id') AS s) q \
         WHERE $1 > coalesce(pg_sequence_last_value(s::regclass), 0)",
        &[&last],
    )
    .await?;

    let mut tally = Tally::default();
    for (session, record) in &contents.sessions {
        tally.count(sessions::put(txn, *session, record).await?);
    }
    report.sessions = tally.done();

    let mut tally = Tally::default();
    for (hash, record) in &contents.reset_tokens {
        tally.count(
            upsert(
                txn,
                "INSERT INTO reset_tokens (token_hash, account_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE \
                 SET account_id = excluded.account_id, created_at = excluded.created_at, \
                     expires_at = excluded.expires_at \
                 WHERE ROW(reset_tokens.*) IS DISTINCT FROM ROW(excluded.*) \
                 RETURNING (xmax = 0) AS added",
                &[
                    hash,
                    &int(record.account_id)?,
                    &int(record.created_at)?,
                    &int(record.expires_at)?,
                ],
            )
            .await?,
        );
    }
    report.reset_tokens = tally.done();

    let mut tally = Tally::default();
    for (id, joined, cut_off) in &contents.imported_accounts {
        tally.count(
            upsert(
                txn,
                "INSERT INTO imported_accounts (id, date_joined, cut_off) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET date_joined = excluded.date_joined, \
                     cut_off = greatest(imported_accounts.cut_off, excluded.cut_off) \
                 WHERE ROW(imported_accounts.*) IS DISTINCT FROM ROW(excluded.*) \
                 RETURNING (xmax = 0) AS added",
                &[&int(*id)?, &int(*joined)?, &int(*cut_off)?],
            )
            .await?,
        );
    }
    report.imported_accounts = tally.done();

    let mut tally = Tally::default();
    for row in &contents.legacy_tokens {
        let session = row.session.map(|s| id_bytes(s.0));
        tally.count(
            upsert(
                txn,
                "INSERT INTO legacy_tokens (jti, expires_at, exchanged, session_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO UPDATE \
                 SET expires_at = excluded.expires_at, exchanged = excluded.exchanged, \
                     session_id = excluded.session_id \
                 WHERE ROW(legacy_tokens.*) IS DISTINCT FROM ROW(excluded.*) \
                 RETURNING (xmax = 0) AS added",
                &[
                    &row.jti,
                    &int(row.expires_at)?,
                    &row.used,
                    &session.as_ref().map(|s| s.as_slice()),
                ],
            )
            .await?,
        );
    }
    report.legacy_tokens = tally.done();

    // Last: numbering revocations holds the sequence lock until the commit.
    let mut tally = Tally::default();
    let mut changed = Vec::new();
    for revocation in &contents.revocations {
        let there = query_opt(
            txn,
            "SELECT until FROM revocations WHERE session_id = $1",
            &[&id_bytes(revocation.0 .0).as_slice()],
        )
        .await?;
        let outcome = match there {
            None => Some(true),
            Some(row) if uint(&row, "until")? != revocation.1 => Some(false),
            Some(_) => None,
        };
        if outcome.is_some() {
            changed.push(*revocation);
        }
        tally.count(outcome);
    }
    report.revocations = tally.done();
    // Numbered and announced as any revocation is: running replicas apply them.
    revocations::insert(txn, &changed).await?;
    Ok(report)
}

//! The `revocations` table: revoked session -> the unix time after which no
//! token of it can be valid any more, with the sequence number replicas
//! catch up by.
//!
//! # Numbers in commit order
//!
//! `seq` comes from a sequence, and two transactions can commit in the
//! other order than they took their numbers: a reader that saw 8 committed
//! and goes on from "above 8" would never see a 7 committed just after. So
//! every transaction that numbers revocations first takes `SEQ_LOCK`, a
//! transaction-level advisory lock held until it commits: numbers are taken
//! and made visible one transaction at a time, and once `seq = n` is
//! visible, every lower number is committed or rolled back for good. The
//! cost is that revocation writes of every replica commit one after the
//! other, which is what a logout needs anyway (it is the last statement of
//! its transaction, so the lock is held for one `INSERT` and the commit). A
//! window re-read by `recorded_at` was the other way: it narrows the miss
//! but cannot close it (a commit may lag its `recorded_at` by any time).
//!
//! The same transaction announces the write (`NOTIFY`, delivered only if it
//! commits); replicas listening then read what is new (`since`).

use deadpool_postgres::GenericClient;

use super::{id_bytes, id_of, int, query, uint};
use crate::store::{Revocation, SequencedRevocation, StoreResult};
use crate::tokens::SessionId;

/// Records the revocations (one statement); one already there takes the new
/// time and a new sequence number, so that replicas hear of it again.
pub(super) async fn insert(c: &impl GenericClient, revocations: &[Revocation]) -> StoreResult<()> {
    if revocations.is_empty() {
        return Ok(());
    }
    // One row per session (the last time given wins, as for redb): a
    // statement may not update one row twice.
    let mut rows: Vec<&Revocation> = Vec::with_capacity(revocations.len());
    for revocation in revocations.iter().rev() {
        if !rows.iter().any(|r| r.0 == revocation.0) {
            rows.push(revocation);
        }
    }
    rows.reverse();
    let sessions: Vec<Vec<u8>> = rows.iter().map(|(s, _)| id_bytes(s.0).to_vec()).collect();
    let until = rows
        .iter()
        .map(|(_, until)| int(*until))
        .collect::<StoreResult<Vec<i64>>>()?;
    super::execute(c, "SELECT pg_advisory_xact_lock($1)", &[&SEQ_LOCK]).await?;
    query(
        c,
        "WITH written AS ( \
             INSERT INTO revocations (session_id, until) \
             SELECT * FROM unnest($1::bytea[], $2::bigint[]) \
             ON CONFLICT (session_id) DO UPDATE \
             SET until = excluded.until, seq = DEFAULT, recorded_at = DEFAULT \
             RETURNING seq) \
         SELECT pg_notify($3, max(seq)::text) FROM written",
        &[&sessions, &until, &CHANNEL],
    )
    .await?;
    Ok(())
}

/// The channel revocations are announced on (the payload is the newest
/// `seq`; listeners read the rows themselves).
pub(super) const CHANNEL: &str = "vigile_revocations";

/// The advisory lock revocations are numbered under ("vigile" + 1; the
/// migrations take "vigile").
const SEQ_LOCK: i64 = 0x0076_6967_696c_6501;

/// The newest `seq` (0 when there is none).
pub(super) async fn newest(c: &impl GenericClient) -> StoreResult<u64> {
    let rows = query(
        c,
        "SELECT coalesce(max(seq), 0) AS seq FROM revocations",
        &[],
    )
    .await?;
    rows.first().map_or(Ok(0), |row| uint(row, "seq"))
}

/// Revocations written after `seq`, by increasing `seq`, at most `limit`.
/// On a plain client: the follower's connection is not a pooled one.
pub(super) async fn since(
    c: &tokio_postgres::Client,
    seq: u64,
    limit: usize,
) -> StoreResult<Vec<SequencedRevocation>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    c.query(
        "SELECT seq, session_id, until, \
                (extract(epoch FROM recorded_at) * 1000000)::bigint AS recorded_at_us \
         FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&int(seq)?, &limit],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(SequencedRevocation {
            seq: uint(row, "seq")?,
            revocation: (SessionId(id_of(row, "session_id")?), uint(row, "until")?),
            recorded_at_us: uint(row, "recorded_at_us")?,
        })
    })
    .collect()
}

/// Revocations still in force at `now`, in the order they were written.
pub(super) async fn in_force(c: &impl GenericClient, now: u64) -> StoreResult<Vec<Revocation>> {
    query(
        c,
        "SELECT session_id, until FROM revocations WHERE until >= $1 ORDER BY seq",
        &[&int(now)?],
    )
    .await?
    .iter()
    .map(|row| Ok((SessionId(id_of(row, "session_id")?), uint(row, "until")?)))
    .collect()
}

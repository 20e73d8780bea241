//! The `revocations` table: revoked session -> the unix time after which no
//! token of it can be valid any more, with the sequence number replicas
//! catch up by.

use deadpool_postgres::GenericClient;

use super::{id_bytes, id_of, int, query, uint};
use crate::store::{Revocation, StoreResult};
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
    super::execute(
        c,
        "INSERT INTO revocations (session_id, until) \
         SELECT * FROM unnest($1::bytea[], $2::bigint[]) \
         ON CONFLICT (session_id) DO UPDATE \
         SET until = excluded.until, seq = DEFAULT, recorded_at = DEFAULT",
        &[&sessions, &until],
    )
    .await?;
    Ok(())
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

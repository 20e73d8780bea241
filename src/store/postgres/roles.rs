//! The `roles` table: role name -> creation time.

use deadpool_postgres::GenericClient;

use super::{execute, int, query, query_opt};
use crate::store::StoreResult;

/// Creates the role; `false` when it already existed.
pub(super) async fn create(c: &impl GenericClient, name: &str, now: u64) -> StoreResult<bool> {
    let created = execute(
        c,
        "INSERT INTO roles (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &int(now)?],
    )
    .await?;
    Ok(created == 1)
}

pub(super) async fn list(c: &impl GenericClient) -> StoreResult<Vec<String>> {
    query(c, "SELECT name FROM roles ORDER BY name", &[])
        .await?
        .iter()
        .map(|row| Ok(row.try_get("name")?))
        .collect()
}

pub(super) async fn exists(c: &impl GenericClient, name: &str) -> StoreResult<bool> {
    // PostgreSQL's text holds no NUL: no role can be named with one.
    if name.contains('\0') {
        return Ok(false);
    }
    Ok(
        query_opt(c, "SELECT 1 FROM roles WHERE name = $1", &[&name])
            .await?
            .is_some(),
    )
}

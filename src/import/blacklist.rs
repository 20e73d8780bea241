//! simplejwt's blacklist: each `blacklistedtoken` row names an
//! `outstandingtoken` row (its `token` key), which holds the `jti` and
//! `expires_at` vigile keeps. A blacklisted row vigile cannot follow to a
//! readable token is refused: dropping it would leave that token
//! exchangeable. A token already expired is dropped (refused anyway).

use std::collections::HashMap;

use super::fields::{key, text, time_of};
use super::{refusal, DjangoData, Refusal, Row};
use crate::store::LegacyToken;

/// The longest `jti` taken, in bytes (simplejwt's column is 255 long).
const JTI_MAX_BYTES: usize = 255;

/// The blacklisted refresh tokens not yet expired at `now` (sorted by
/// `jti`, each once), and the blacklisted rows refused, in their order.
pub(super) fn blacklisted(data: &DjangoData, now: u64) -> (Vec<LegacyToken>, Vec<Refusal>) {
    let mut outstanding: HashMap<u64, Vec<&Row>> = HashMap::new();
    for row in &data.outstanding {
        if let Some(id) = key(row.fields.get("id")) {
            outstanding.entry(id).or_default().push(row);
        }
    }
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for row in &data.blacklisted {
        match tokens_of(row, &outstanding) {
            Ok(tokens) => out.extend(tokens.into_iter().filter(|t| t.expires_at >= now)),
            Err(reason) => refused.push(refusal(row, reason)),
        }
    }
    out.sort_by(|a, b| a.jti.cmp(&b.jti));
    out.dedup_by(|a, b| a.jti == b.jti);
    (out, refused)
}

/// The tokens a blacklisted row names (all of them, should two outstanding
/// rows share its id).
fn tokens_of(row: &Row, outstanding: &HashMap<u64, Vec<&Row>>) -> Result<Vec<LegacyToken>, String> {
    if let Some(fault) = &row.fault {
        return Err(fault.clone());
    }
    let value = row.fields.get("token");
    let id = key(value).ok_or_else(|| {
        format!(
            "token: {} is not an outstanding token id",
            value.map_or("nothing".into(), ToString::to_string)
        )
    })?;
    let rows = outstanding
        .get(&id)
        .ok_or(format!("token {id}: no outstanding token has this id"))?;
    rows.iter()
        .map(|token| {
            legacy_token(token).map_err(|reason| format!("token {id} ({}): {reason}", token.label))
        })
        .collect()
}

fn legacy_token(row: &Row) -> Result<LegacyToken, String> {
    if let Some(fault) = &row.fault {
        return Err(fault.clone());
    }
    let jti = text(&row.fields, "jti")?.ok_or("no jti")?;
    if jti.is_empty() || jti.len() > JTI_MAX_BYTES || !jti.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "jti {jti:?} is not 1 to {JTI_MAX_BYTES} visible ASCII characters"
        ));
    }
    let expires_at = time_of(&row.fields, "expires_at")?.ok_or("no expires_at")?;
    Ok(LegacyToken { jti, expires_at })
}

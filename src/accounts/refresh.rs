//! `POST /api/accounts/refresh-token/` (alias `/refresh/`): a refresh token in,
//! a new access token and a new refresh token out (rotation).
//!
//! The retired refresh token still gets an answer for the same session during
//! the reuse grace window (clients that raced); after it, presenting it again
//! is taken as theft: the whole session is revoked and the answer is 401
//! `token_reused`.

use serde::Serialize;

use super::input::{self, Object};
use super::{internal, AccountService, Reply};
use crate::error::ApiError;
use crate::store::SessionRecord;
use crate::tokens::random_token_id;

#[derive(Serialize)]
struct RefreshReply {
    access: String,
    refresh: String,
}

/// What presenting refresh token `jti` to its session means.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The current token: rotated; the new refresh token has this `jti`.
    Rotated { jti: u128 },
    /// The token retired within the grace window: the current one is handed out again.
    Grace { jti: u128 },
    /// A retired token after the window, or an older one: the session is revoked.
    Reused,
    /// The session has ended (revoked or expired).
    Ended,
}

/// Decides, and updates the session record to match.
pub fn decide(
    session: &mut SessionRecord,
    jti: u128,
    now: u64,
    grace: u64,
    refresh_ttl: u64,
) -> Decision {
    if session.revoked_at.is_some() || session.expires_at < now {
        return Decision::Ended;
    }
    if jti == session.refresh_jti {
        let next = random_token_id();
        session.previous_jti = Some(session.refresh_jti);
        session.refresh_jti = next;
        session.rotated_at = now;
        session.expires_at = now + refresh_ttl;
        return Decision::Rotated { jti: next };
    }
    if session.previous_jti == Some(jti) && now.saturating_sub(session.rotated_at) <= grace {
        return Decision::Grace {
            jti: session.refresh_jti,
        };
    }
    session.revoked_at = Some(now);
    Decision::Reused
}

pub fn apply(service: &AccountService, body: Object) -> Result<Reply, ApiError> {
    // `refresh_token` is the name the first seed document uses.
    let Some(token) = input::plain_string(&body, "refresh")
        .or_else(|| input::plain_string(&body, "refresh_token"))
    else {
        return Err(ApiError::missing_refresh());
    };
    let (account_id, session, jti) = service
        .tokens
        .verify_refresh(&token)
        .map_err(|_| ApiError::refresh_not_valid())?;
    let now = crate::unix_now();
    let refresh_ttl = service.tokens.refresh_ttl();
    let updated = service
        .store
        .update_session(session, |record| {
            if record.account_id != account_id {
                return (Decision::Ended, record.expires_at);
            }
            let decision = decide(record, jti, now, service.reuse_grace, refresh_ttl);
            (decision, record.expires_at)
        })
        .map_err(internal)?;
    let Some(((decision, expires_at), revocation)) = updated else {
        return Err(ApiError::refresh_not_valid());
    };
    if let Some(r) = revocation {
        service.revoked(&[r]);
    }
    let new_jti = match decision {
        Decision::Rotated { jti } | Decision::Grace { jti } => jti,
        Decision::Reused => {
            tracing::warn!(account_id, session = %session, "refresh token reused: session revoked");
            return Err(ApiError::token_reused());
        }
        Decision::Ended => return Err(ApiError::refresh_not_valid()),
    };
    let account = match service.store.account(account_id).map_err(internal)? {
        Some(a) if a.is_active => a,
        _ => return Err(ApiError::refresh_not_valid()),
    };
    let (access, refresh) = service.issue_tokens(&account, session, new_jti, now, expires_at)?;
    Reply::json(200, RefreshReply { access, refresh })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            account_id: 1,
            created_at: 0,
            expires_at: 1_000,
            refresh_jti: 7,
            previous_jti: None,
            rotated_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn rotation_then_grace_then_theft() {
        let mut s = record();
        let Decision::Rotated { jti: second } = decide(&mut s, 7, 100, 10, 1_000) else {
            panic!("the current token rotates");
        };
        assert_eq!(
            (s.refresh_jti, s.previous_jti, s.expires_at),
            (second, Some(7), 1_100)
        );
        assert_eq!(
            decide(&mut s, 7, 105, 10, 1_000),
            Decision::Grace { jti: second }
        );
        assert_eq!(s.revoked_at, None);
        assert_eq!(decide(&mut s, 7, 111, 10, 1_000), Decision::Reused);
        assert_eq!(s.revoked_at, Some(111));
        assert_eq!(decide(&mut s, second, 112, 10, 1_000), Decision::Ended);
    }

    #[test]
    fn an_unknown_jti_is_theft_and_an_expired_session_has_ended() {
        let mut s = record();
        assert_eq!(decide(&mut s, 99, 100, 10, 1_000), Decision::Reused);
        let mut s = record();
        assert_eq!(decide(&mut s, 7, 2_000, 10, 1_000), Decision::Ended);
    }
}

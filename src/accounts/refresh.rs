//! `POST /api/accounts/refresh-token/` (alias `/refresh/`): a refresh token in,
//! a new access token and a new refresh token out (rotation).
//!
//! The retired refresh token still gets an answer for the same session during
//! the reuse grace window (clients that raced); after it, presenting it again
//! is taken as theft: the whole session is revoked and the answer is 401
//! `token_reused`.

use serde::Serialize;

use super::input::{self, Secret};
use super::{store_failed, AccountService, Reply};
use crate::audit::{AuditEvent, Entry, Origin};
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

/// Decides, and updates the session record to match. Times in unix
/// milliseconds (`now_ms`, `grace_ms`), so that the grace window lasts what
/// `tokens.reuse_grace` says, not up to a second more; `refresh_ttl` in seconds.
pub fn decide(
    session: &mut SessionRecord,
    jti: u128,
    now_ms: u64,
    grace_ms: u64,
    refresh_ttl: u64,
) -> Decision {
    let now = now_ms / 1000;
    if session.revoked_at.is_some() || session.expires_at < now {
        return Decision::Ended;
    }
    if jti == session.refresh_jti {
        let next = random_token_id();
        session.previous_jti = Some(session.refresh_jti);
        session.refresh_jti = next;
        session.rotated_at = now;
        session.rotated_at_ms = Some(now_ms);
        session.expires_at = now + refresh_ttl;
        return Decision::Rotated { jti: next };
    }
    if session.previous_jti == Some(jti)
        && now_ms.saturating_sub(session.rotated_at_millis()) <= grace_ms
    {
        return Decision::Grace {
            jti: session.refresh_jti,
        };
    }
    session.revoked_at = Some(now);
    Decision::Reused
}

/// The refresh token to rotate.
#[derive(Debug)]
pub struct RefreshRequest {
    pub refresh: Secret,
}

pub fn parse(body: &[u8]) -> Result<RefreshRequest, ApiError> {
    let body = input::parse_object(body)?;
    input::refresh_token(&body)
        .map(|refresh| RefreshRequest { refresh })
        .ok_or_else(ApiError::missing_refresh)
}

pub fn apply(
    service: &AccountService,
    request: RefreshRequest,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    let (account_id, session, jti) = match service.tokens.verify_refresh(request.refresh.expose()) {
        Ok(verified) => verified,
        // Not vigile's: during the cut-over, maybe Django's (`exchange`).
        Err(_) => {
            return match &service.policy().simplejwt {
                Some(legacy) => {
                    super::exchange::apply(service, legacy, request.refresh.expose(), origin)
                }
                None => Err(ApiError::refresh_not_valid()),
            }
        }
    };
    let now_ms = crate::unix_now_ms();
    let now = now_ms / 1000;
    let refresh_ttl = service.tokens.refresh_ttl();
    let updated = service
        .store
        .update_session(session, |record| {
            if record.account_id != account_id {
                return (Decision::Ended, record.expires_at);
            }
            let decision = decide(
                record,
                jti,
                now_ms,
                service.policy().reuse_grace_ms,
                refresh_ttl,
            );
            (decision, record.expires_at)
        })
        .map_err(store_failed)?;
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
            let entry = Entry::new(AuditEvent::TokenReused).account(account_id);
            service
                .audit
                .record(origin, entry.failure("session_revoked"));
            return Err(ApiError::token_reused());
        }
        Decision::Ended => return Err(ApiError::refresh_not_valid()),
    };
    let account = match service.store.account(account_id).map_err(store_failed)? {
        Some(a) if a.is_active => a,
        _ => return Err(ApiError::refresh_not_valid()),
    };
    let (access, refresh) = service.issue_tokens(&account, session, new_jti, now, expires_at)?;
    let entry = Entry::new(AuditEvent::TokenRefreshed).account(account.id);
    service.audit.record(origin, entry);
    Reply::json(200, RefreshReply { access, refresh })
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, Fixture};
    use super::super::Endpoint;
    use super::*;
    use serde_json::json;

    fn record() -> SessionRecord {
        SessionRecord {
            account_id: 1,
            created_at: 0,
            expires_at: 1_000,
            refresh_jti: 7,
            previous_jti: None,
            rotated_at: 0,
            revoked_at: None,
            rotated_at_ms: Some(0),
        }
    }

    #[test]
    fn rotation_then_grace_then_theft() {
        let mut s = record();
        let Decision::Rotated { jti: second } = decide(&mut s, 7, 100_000, 10_000, 1_000) else {
            panic!("the current token rotates");
        };
        assert_eq!(
            (s.refresh_jti, s.previous_jti, s.expires_at),
            (second, Some(7), 1_100)
        );
        assert_eq!(
            decide(&mut s, 7, 105_000, 10_000, 1_000),
            Decision::Grace { jti: second }
        );
        assert_eq!(s.revoked_at, None);
        assert_eq!(decide(&mut s, 7, 111_000, 10_000, 1_000), Decision::Reused);
        assert_eq!(s.revoked_at, Some(111));
        assert_eq!(
            decide(&mut s, second, 112_000, 10_000, 1_000),
            Decision::Ended
        );
    }

    #[test]
    fn the_grace_window_is_counted_in_milliseconds() {
        // Rotated at 100.900 s with a 1 s window: 101.900 is in, 102.000
        // (0.1 s later, the same whole second as before) is out.
        let mut s = record();
        let Decision::Rotated { jti: second } = decide(&mut s, 7, 100_900, 1_000, 1_000) else {
            panic!("the current token rotates");
        };
        assert_eq!((s.rotated_at, s.rotated_at_ms), (100, Some(100_900)));
        let mut within = s.clone();
        assert_eq!(
            decide(&mut within, 7, 101_900, 1_000, 1_000),
            Decision::Grace { jti: second }
        );
        assert_eq!(decide(&mut s, 7, 102_000, 1_000, 1_000), Decision::Reused);
        // A sub-second window works too.
        let mut s = record();
        decide(&mut s, 7, 50_000, 300, 1_000);
        assert_eq!(
            decide(&mut s.clone(), 7, 50_300, 300, 1_000),
            Decision::Grace { jti: s.refresh_jti }
        );
        assert_eq!(decide(&mut s, 7, 50_301, 300, 1_000), Decision::Reused);
    }

    #[test]
    fn a_record_written_in_whole_seconds_still_decides() {
        // Before `rotated_at_ms` existed: the window starts at the second.
        let json = br#"{"account_id":1,"created_at":0,"expires_at":1000,"refresh_jti":8,
            "previous_jti":7,"rotated_at":100,"revoked_at":null}"#;
        let mut s: SessionRecord = serde_json::from_slice(json).expect("an old record");
        assert_eq!(s.rotated_at_millis(), 100_000);
        assert_eq!(
            decide(&mut s.clone(), 7, 100_999, 1_000, 1_000),
            Decision::Grace { jti: 8 }
        );
        assert_eq!(decide(&mut s, 7, 101_001, 1_000, 1_000), Decision::Reused);
    }

    #[test]
    fn an_unknown_jti_is_theft_and_an_expired_session_has_ended() {
        let mut s = record();
        assert_eq!(decide(&mut s, 99, 100_000, 10_000, 1_000), Decision::Reused);
        let mut s = record();
        assert_eq!(decide(&mut s, 7, 2_000_000, 10_000, 1_000), Decision::Ended);
    }

    fn refresh(f: &Fixture, token: &str) -> Result<Reply, ApiError> {
        f.call(Endpoint::Refresh, None, json!({ "refresh": token }))
    }

    fn jti(f: &Fixture, token: &str) -> u128 {
        f.service.tokens.verify_refresh(token).expect("valid").2
    }

    #[test]
    fn a_refresh_rotates_the_token_of_the_session() {
        let f = Fixture::new();
        let first = f.signed_in("jean@example.com");
        let reply = refresh(&f, &first.refresh).expect("rotated");
        assert_eq!(reply.status, 200);
        let body = &reply.body;
        assert_eq!(fixture::keys(body), ["access", "refresh"]);
        let second = body["refresh"].as_str().expect("refresh");
        let (session, record) = f.session(second);
        assert_eq!(session, f.session(&first.refresh).0, "the same session");
        assert_eq!(
            (record.refresh_jti, record.previous_jti),
            (jti(&f, second), Some(jti(&f, &first.refresh)))
        );
        let access = body["access"].as_str().expect("access");
        assert!(f.profile(access).is_ok());
        // `refresh_token` is accepted too, and the new token rotates again.
        let third = f
            .call(Endpoint::Refresh, None, json!({ "refresh_token": second }))
            .expect("rotated again");
        let third = third.body["refresh"].as_str().expect("refresh");
        assert_eq!(f.session(third).1.refresh_jti, jti(&f, third));
    }

    #[test]
    fn the_retired_token_gets_the_current_one_within_the_grace_window() {
        let f = Fixture::new();
        let first = f.signed_in("jean@example.com");
        let rotated = refresh(&f, &first.refresh).expect("rotated");
        let current = rotated.body["refresh"].as_str().expect("refresh");
        let raced = refresh(&f, &first.refresh).expect("within the grace window");
        let handed = raced.body["refresh"].as_str().expect("refresh");
        assert_eq!(jti(&f, handed), jti(&f, current));
        let record = f.session(current).1;
        assert_eq!(
            (record.refresh_jti, record.revoked_at),
            (jti(&f, current), None)
        );
    }

    #[test]
    fn a_reused_token_after_the_window_revokes_the_session() {
        let f = Fixture::with("tokens:\n  reuse_grace: 1ms\n");
        let first = f.signed_in("jean@example.com");
        let rotated = refresh(&f, &first.refresh).expect("rotated");
        let current = rotated.body["refresh"].as_str().expect("refresh");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let e = refresh(&f, &first.refresh).expect_err("reused");
        assert_eq!((e.status, e.code.as_str()), (401, "token_reused"));
        let (session, record) = f.session(current);
        assert!(record.revoked_at.is_some());
        assert!(f.service.revocations.is_revoked(session));
        let e = f.profile(&first.access).expect_err("revoked");
        assert_eq!((e.status, e.code.as_str()), (401, "token_revoked"));
        let e = refresh(&f, current).expect_err("the session has ended");
        assert_eq!((e.status, e.code.as_str()), (401, "token_not_valid"));
    }

    #[test]
    fn a_missing_or_forged_token_is_refused() {
        let f = Fixture::new();
        let e = f
            .call(Endpoint::Refresh, None, json!({}))
            .expect_err("missing");
        assert_eq!((e.status, e.code.as_str()), (400, "missing_refresh"));
        let e = refresh(&f, "not.a.token").expect_err("forged");
        assert_eq!((e.status, e.code.as_str()), (401, "token_not_valid"));
    }
}

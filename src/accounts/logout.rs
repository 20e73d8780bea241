//! `POST /api/accounts/logout/` (Bearer): ends the caller's session. Its
//! refresh token and every access token of it stop working on the very next
//! request. `{"all": true}` ends every session of the account; a `refresh`
//! token in the body, if it belongs to the caller, has its session ended too.

use serde_json::{json, Value};

use super::input::{self, Secret};
use super::{store_failed, AccountService, Reply};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::ApiError;
use crate::tokens::{Identity, SessionId};

/// `all` ends every session of the account; otherwise the caller's session
/// ends, and the one of `refresh` if it belongs to the caller.
#[derive(Debug)]
pub struct LogoutRequest {
    pub all: bool,
    pub refresh: Option<Secret>,
}

pub fn parse(body: &[u8]) -> Result<LogoutRequest, ApiError> {
    let body = input::parse_object(body)?;
    Ok(LogoutRequest {
        all: matches!(body.get("all"), Some(Value::Bool(true))),
        refresh: input::refresh_token(&body),
    })
}

pub fn apply(
    service: &AccountService,
    who: &Identity,
    request: LogoutRequest,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    let account_id: u64 = who
        .account_id
        .parse()
        .map_err(|_| ApiError::refresh_not_valid())?;
    let now = crate::unix_now();
    let all = request.all;
    if all {
        let revoked = service
            .store
            .revoke_account_sessions(account_id, now, None)
            .map_err(store_failed)?;
        service.revoked(&revoked);
    } else {
        let mut sessions = vec![who.session];
        let verified = request
            .refresh
            .map(|t| service.tokens.verify_refresh(t.expose()));
        if let Some(Ok((owner, session, _))) = verified {
            if owner == account_id && session != who.session {
                sessions.push(session);
            }
        }
        for session in sessions {
            end_session(service, session, now)?;
        }
    }
    tracing::info!(account_id, session = %who.session, all, "logout");
    let entry = Entry::new(AuditEvent::Logout).account(account_id);
    service.audit.record(origin, entry.detail("all", all));
    Reply::json(200, json!({"message": "Déconnexion réussie"}))
}

/// Revokes `session` (if not already), in the store and in memory.
pub(super) fn end_session(
    service: &AccountService,
    session: SessionId,
    now: u64,
) -> Result<(), ApiError> {
    let updated = service
        .store
        .update_session(session, |record| {
            if record.revoked_at.is_none() {
                record.revoked_at = Some(now);
            }
        })
        .map_err(store_failed)?;
    if let Some((_, Some(revocation))) = updated {
        service.revoked(&[revocation]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{Fixture, Tokens, PASSWORD};
    use super::super::Endpoint;
    use super::*;

    fn two_sessions(f: &Fixture) -> (Tokens, Tokens) {
        (
            f.signed_in("jean@example.com"),
            f.login("jean@example.com", PASSWORD),
        )
    }

    fn revoked(f: &Fixture, tokens: &Tokens) -> bool {
        f.session(&tokens.refresh).1.revoked_at.is_some()
    }

    #[test]
    fn a_logout_ends_the_callers_session_only() {
        let f = Fixture::new();
        let (a, b) = two_sessions(&f);
        let reply = f
            .call(Endpoint::Logout, Some(&a.access), json!({}))
            .expect("logged out");
        assert_eq!(
            (reply.status, &reply.body),
            (200, &json!({"message": "Déconnexion réussie"}))
        );
        assert!(revoked(&f, &a));
        assert!(!revoked(&f, &b));
        let e = f.profile(&a.access).expect_err("ended");
        assert_eq!((e.status, e.code.as_str()), (401, "token_revoked"));
        assert!(f.profile(&b.access).is_ok());
        let e = f
            .call(Endpoint::Refresh, None, json!({ "refresh": a.refresh }))
            .expect_err("ended");
        assert_eq!(e.code.as_str(), "token_not_valid");
    }

    #[test]
    fn all_ends_every_session_of_the_account() {
        let f = Fixture::new();
        let (a, b) = two_sessions(&f);
        let other = f.signed_in("marie@example.com");
        f.call(Endpoint::Logout, Some(&a.access), json!({"all": true}))
            .expect("logged out");
        assert!(revoked(&f, &a) && revoked(&f, &b));
        assert!(!revoked(&f, &other), "another account's session goes on");
        assert_eq!(
            f.profile(&b.access).expect_err("ended").code.as_str(),
            "token_revoked"
        );
    }

    #[test]
    fn a_refresh_token_in_the_body_ends_its_session_if_it_is_the_callers() {
        let f = Fixture::new();
        let (a, b) = two_sessions(&f);
        let other = f.signed_in("marie@example.com");
        f.call(
            Endpoint::Logout,
            Some(&a.access),
            json!({"refresh": other.refresh}),
        )
        .expect("logged out");
        assert!(!revoked(&f, &other), "not the caller's: ignored");
        let c = f.login("jean@example.com", PASSWORD);
        f.call(
            Endpoint::Logout,
            Some(&b.access),
            json!({"refresh_token": c.refresh}),
        )
        .expect("logged out");
        assert!(revoked(&f, &b) && revoked(&f, &c));
    }

    #[test]
    fn a_logout_needs_a_bearer_token() {
        let f = Fixture::new();
        let e = f
            .call(Endpoint::Logout, None, json!({}))
            .expect_err("anonymous");
        assert_eq!((e.status, e.code.as_str()), (401, "not_authenticated"));
        assert!(e.bearer_challenge);
    }
}

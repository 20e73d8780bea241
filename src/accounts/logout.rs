//! `POST /api/accounts/logout/` (Bearer): ends the caller's session. Its
//! refresh token and every access token of it stop working on the very next
//! request. `{"all": true}` ends every session of the account; a `refresh`
//! token in the body, if it belongs to the caller, has its session ended too.

use serde_json::{json, Value};

use super::input::{self, Secret};
use super::{internal, AccountService, Reply};
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
            .map_err(internal)?;
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
    Reply::json(200, json!({"message": "Déconnexion réussie"}))
}

fn end_session(service: &AccountService, session: SessionId, now: u64) -> Result<(), ApiError> {
    let updated = service
        .store
        .update_session(session, |record| {
            if record.revoked_at.is_none() {
                record.revoked_at = Some(now);
            }
        })
        .map_err(internal)?;
    if let Some((_, Some(revocation))) = updated {
        service.revoked(&[revocation]);
    }
    Ok(())
}

//! `POST /api/accounts/logout/` (Bearer): ends the caller's session. Its
//! refresh token and every access token of it stop working on the very next
//! request. `{"all": true}` ends every session of the account; a `refresh`
//! token in the body, if it belongs to the caller, has its session ended too.

use serde_json::{json, Value};

use super::input::{self, Object};
use super::{internal, AccountService, Reply};
use crate::error::ApiError;
use crate::tokens::{Identity, SessionId};

pub fn apply(service: &AccountService, who: &Identity, body: Object) -> Result<Reply, ApiError> {
    let account_id: u64 = who
        .account_id
        .parse()
        .map_err(|_| ApiError::refresh_not_valid())?;
    let now = crate::unix_now();
    let all = matches!(body.get("all"), Some(Value::Bool(true)));
    if all {
        let revoked = service
            .store
            .revoke_account_sessions(account_id, now, None)
            .map_err(internal)?;
        service.revoked(&revoked);
    } else {
        let mut sessions = vec![who.session];
        let refresh = input::plain_string(&body, "refresh")
            .or_else(|| input::plain_string(&body, "refresh_token"));
        if let Some(Ok((owner, session, _))) = refresh.map(|t| service.tokens.verify_refresh(&t)) {
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

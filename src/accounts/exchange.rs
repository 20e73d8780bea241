//! The cut-over from Django (`migration.simplejwt`): a simplejwt refresh
//! token presented at the refresh endpoint is exchanged, once, for a new
//! vigile session, so that nobody is logged out by the switch. The token
//! must be valid and unexpired, of an active account that the import wrote, and neither
//! blacklisted by Django (imported with the accounts) nor exchanged before:
//! the store marks it exchanged atomically (across replicas), and a second
//! presentation is answered 401 `token_reused` and ends the session the
//! first one gave (as vigile's own reuse detection does).

use serde::Serialize;

use super::logout::LogoutRequest;
use super::{login, store_failed, AccountService, Reply};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::ApiError;
use crate::store::{AccountRecord, LegacyToken, LegacyUse};
use crate::tokens::{LegacyClaims, SessionId, SimpleJwt};

#[derive(Serialize)]
struct ExchangeReply {
    access: String,
    refresh: String,
}

/// Answers a refresh request whose token is not vigile's.
pub fn apply(
    service: &AccountService,
    legacy: &SimpleJwt,
    token: &str,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    let claims = legacy
        .verify(token, crate::unix_now())
        .map_err(|_| ApiError::refresh_not_valid())?;
    if !claims.refresh {
        return Err(ApiError::refresh_not_valid());
    }
    let account = live_account(service, &claims)?;
    let session = SessionId::random();
    let used = service
        .store
        .use_legacy_token(
            &LegacyToken {
                jti: claims.jti,
                expires_at: claims.exp,
            },
            Some(session),
        )
        .map_err(store_failed)?;
    match used {
        LegacyUse::Fresh => {}
        LegacyUse::Blacklisted => return Err(ApiError::refresh_not_valid()),
        // Spent by a logout: as a refresh token of an ended session.
        LegacyUse::Used(None) => return Err(ApiError::refresh_not_valid()),
        LegacyUse::Used(Some(exchanged_for)) => {
            // As for vigile's own refresh tokens: presented again, the token
            // is taken as stolen, and the session it gave ends.
            super::logout::end_session(service, exchanged_for, crate::unix_now())?;
            tracing::warn!(
                account_id = account.id,
                "a Django refresh token was presented again after its exchange: session revoked"
            );
            let entry = Entry::new(AuditEvent::TokenReused).account(account.id);
            service.audit.record(
                origin,
                entry
                    .failure("already_exchanged")
                    .detail("via", "simplejwt"),
            );
            return Err(ApiError::token_reused());
        }
    }
    let Some((access, refresh)) = login::open_session(service, &account, None, session)? else {
        return Err(ApiError::refresh_not_valid());
    };
    tracing::info!(account_id = account.id, "Django refresh token exchanged");
    let entry = Entry::new(AuditEvent::TokenRefreshed).account(account.id);
    service
        .audit
        .record(origin, entry.detail("via", "simplejwt"));
    Reply::json(200, ExchangeReply { access, refresh })
}

/// The account a Django token names, if it may still use it: written by the
/// import (one made here under an id Django also gave after the export is
/// not the token's), active, and the token issued after the account's
/// cut-off (a password changed or reset here, a logout of every session, a
/// deactivation end the account's Django tokens as they end its sessions).
pub fn live_account(
    service: &AccountService,
    claims: &LegacyClaims,
) -> Result<AccountRecord, ApiError> {
    match service
        .store
        .imported_account(claims.account_id)
        .map_err(store_failed)?
    {
        Some(imported) if imported.account.is_active && claims.iat > imported.cut_off => {
            Ok(imported.account)
        }
        _ => Err(ApiError::refresh_not_valid()),
    }
}

/// `POST /logout/` with a Django access token (a client that has not
/// refreshed since the cut-over, as the seed documents' logout does): the
/// Django refresh token in the body, if it is the same account's, can no
/// longer be exchanged; `{"all": true}` ends every session of the account
/// here and every Django token of it. `None` when the Bearer token is no
/// valid Django access token (the caller answers as for any bad token).
pub fn logout(
    service: &AccountService,
    legacy: &SimpleJwt,
    authorization: Option<&[u8]>,
    request: LogoutRequest,
    origin: &Origin,
) -> Result<Option<Reply>, ApiError> {
    let now = crate::unix_now();
    let Some(claims) = authorization
        .and_then(crate::auth::bearer_token)
        .and_then(|token| legacy.verify(token, now).ok())
        .filter(|claims| !claims.refresh)
    else {
        return Ok(None);
    };
    let Ok(account) = live_account(service, &claims) else {
        return Ok(None);
    };
    if request.all {
        let revoked = service
            .store
            .revoke_account_sessions(account.id, now, None)
            .map_err(store_failed)?;
        service.revoked(&revoked);
    } else if let Some(refresh) = request.refresh {
        let spent = legacy
            .verify(refresh.expose(), now)
            .ok()
            .filter(|r| r.refresh && r.account_id == account.id);
        if let Some(r) = spent {
            let token = LegacyToken {
                jti: r.jti,
                expires_at: r.exp,
            };
            service
                .store
                .use_legacy_token(&token, None)
                .map_err(store_failed)?;
        }
    }
    tracing::info!(
        account_id = account.id,
        all = request.all,
        "logout with a Django token"
    );
    let entry = Entry::new(AuditEvent::Logout).account(account.id);
    service.audit.record(
        origin,
        entry.detail("all", request.all).detail("via", "simplejwt"),
    );
    Reply::json(200, serde_json::json!({"message": "Déconnexion réussie"})).map(Some)
}

//! The cut-over from Django (`migration.simplejwt`): a simplejwt refresh
//! token presented at the refresh endpoint is exchanged, once, for a new
//! vigile session, so that nobody is logged out by the switch. The token
//! must be valid and unexpired, of an active account that the import wrote, and neither
//! blacklisted by Django (imported with the accounts) nor exchanged before:
//! the store marks it exchanged atomically (across replicas), and a second
//! presentation is answered 401 `token_reused`.

use serde::Serialize;

use super::{login, store_failed, AccountService, Reply};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::ApiError;
use crate::store::{LegacyToken, LegacyUse};
use crate::tokens::SimpleJwt;

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
    // Only an account the import wrote: one made here under an id Django
    // also gave (after the export) is not the token's.
    let account = match service
        .store
        .imported_account(claims.account_id)
        .map_err(store_failed)?
    {
        Some(account) if account.is_active => account,
        _ => return Err(ApiError::refresh_not_valid()),
    };
    let used = service
        .store
        .use_legacy_token(&LegacyToken {
            jti: claims.jti,
            expires_at: claims.exp,
        })
        .map_err(store_failed)?;
    match used {
        LegacyUse::Fresh => {}
        LegacyUse::Blacklisted => return Err(ApiError::refresh_not_valid()),
        LegacyUse::Used => {
            tracing::warn!(
                account_id = account.id,
                "a Django refresh token was presented again after its exchange"
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
    let (access, refresh) = login::open_session(service, &account, None)?;
    tracing::info!(account_id = account.id, "Django refresh token exchanged");
    let entry = Entry::new(AuditEvent::TokenRefreshed).account(account.id);
    service
        .audit
        .record(origin, entry.detail("via", "simplejwt"));
    Reply::json(200, ExchangeReply { access, refresh })
}

//! Django access tokens on the proxy path, during the cut-over
//! (`migration.simplejwt.accept_access`). The token names an account id
//! only: its email and role come from the store, read on the blocking pool
//! (never on the event loop) within the account requests' store budget,
//! with the checks of the refresh exchange (`accounts::legacy_account`):
//! an account the import wrote, active, and the token issued after the
//! account's cut-off (a password changed or reset here, a logout of every
//! session, a deactivation); the route's roles apply to the role stored
//! here. The upstream gets the same identity headers as for a vigile
//! token, without a session id (Django's tokens belong to none).

use std::sync::Arc;

use crate::accounts::AccountService;
use crate::accounts::STORE_BUDGET;
use crate::auth::{self, AuthFailure};
use crate::config::RoleName;
use crate::error::ApiError;
use crate::tokens::{LegacyClaims, Verified};

pub(super) async fn identity(
    accounts: Arc<AccountService>,
    claims: LegacyClaims,
    roles: &[RoleName],
) -> Result<Arc<Verified>, ApiError> {
    let read = tokio::task::spawn_blocking(move || {
        crate::store::within(STORE_BUDGET, || {
            crate::accounts::legacy_account(&accounts, &claims).map(|a| (a, claims.exp))
        })
    })
    .await
    .map_err(|_| ApiError::store_unavailable())?;
    // A store that failed: 503; any other refusal: the token is not valid.
    let (account, exp) = read.map_err(|e| {
        if e.status >= 500 {
            ApiError::store_unavailable()
        } else {
            AuthFailure::Invalid.into()
        }
    })?;
    let verified = Verified::legacy(account.id, &account.email, &account.role, exp)
        .map_err(|_| AuthFailure::Invalid)?;
    auth::authorize(&verified.identity, roles)?;
    Ok(Arc::new(verified))
}

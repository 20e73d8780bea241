//! Django access tokens on the proxy path, during the cut-over
//! (`migration.simplejwt.accept_access`). The token names an account id
//! only: its email and role come from the store, read on the blocking pool
//! (never on the event loop) within the account requests' store budget. An
//! account the import did not write (one made here under an id Django also
//! gave), or a missing or inactive one, is refused at once (deactivating or deleting
//! it stops its Django tokens too); the route's roles apply to the role
//! stored here. The upstream gets the same identity headers as for a
//! vigile token, without a session id (Django's tokens belong to none).

use std::sync::Arc;

use crate::accounts::STORE_BUDGET;
use crate::auth::{self, AuthFailure};
use crate::config::RoleName;
use crate::error::ApiError;
use crate::store::Store;
use crate::tokens::{LegacyClaims, Verified};

pub(super) async fn identity(
    store: Arc<Store>,
    claims: &LegacyClaims,
    roles: &[RoleName],
) -> Result<Arc<Verified>, ApiError> {
    let id = claims.account_id;
    let read = tokio::task::spawn_blocking(move || {
        crate::store::within(STORE_BUDGET, || store.imported_account(id))
    })
    .await
    .map_err(|_| ApiError::store_unavailable())?;
    let account = match read {
        Ok(Some(account)) if account.is_active => account,
        Ok(_) => return Err(AuthFailure::Invalid.into()),
        Err(_) => return Err(ApiError::store_unavailable()),
    };
    let verified = Verified::legacy(account.id, &account.email, &account.role, claims.exp)
        .map_err(|_| AuthFailure::Invalid)?;
    auth::authorize(&verified.identity, roles)?;
    Ok(Arc::new(verified))
}

//! `POST /api/accounts/password-change/` (Bearer): `{"old_password",
//! "new_password"}`. The old password is checked, the policy applies to the
//! new one; every other session of the account ends, the caller's goes on.

use serde_json::json;

use super::input::{self, Object};
use super::{internal, AccountService, Reply};
use crate::error::{ApiError, Validator};
use crate::passwords;
use crate::tokens::Identity;

pub fn apply(service: &AccountService, who: &Identity, body: Object) -> Result<Reply, ApiError> {
    let account = service.account_of(who)?;
    let mut v = Validator::default();
    let old = input::required_string(&body, "old_password", &mut v, true);
    let new = input::required_string(&body, "new_password", &mut v, true);
    let confirm = input::optional_string(&body, "new_password_confirm", &mut v);
    v.finish()?;
    let (Some(old), Some(new)) = (old, new) else {
        return Err(ApiError::internal());
    };
    if old.len() > passwords::MAX_PASSWORD_BYTES
        || !service.timed_hash(|| passwords::verify_password(&old, &account.password_hash))
    {
        let mut v = Validator::default();
        v.add("old_password", "Le mot de passe actuel est incorrect.");
        return Err(v.finish().err().unwrap_or_else(ApiError::internal));
    }
    let mut v = Validator::default();
    service.check_new_password(&new, &account, "new_password", &mut v);
    if new == old {
        v.add(
            "new_password",
            "Le nouveau mot de passe doit être différent de l'actuel.",
        );
    }
    input::check_confirmation("new_password_confirm", &new, confirm.as_deref(), &mut v);
    v.finish()?;
    let hash = service
        .timed_hash(|| passwords::hash_password(&new))
        .map_err(internal)?;
    let revoked = service
        .store
        .set_password(account.id, hash, crate::unix_now(), Some(who.session))
        .map_err(internal)?
        .ok_or_else(ApiError::not_found)?;
    service.revoked(&revoked);
    tracing::info!(
        account_id = account.id,
        sessions_ended = revoked.len(),
        "password changed"
    );
    Reply::json(200, json!({"message": "Votre mot de passe a été modifié"}))
}

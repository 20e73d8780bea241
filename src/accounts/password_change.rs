//! `POST /api/accounts/password-change/` (Bearer): `{"old_password",
//! "new_password"}`. The old password is checked, the policy applies to the
//! new one; every other session of the account ends, the caller's goes on.
//!
//! Checking `old_password` is a password guess like a login: it goes through
//! the login throttles, with the same keys (the account's email, the client
//! address, both), so a stolen access token buys no extra guesses and the
//! two endpoints share one budget. Over the limit: 429 `too_many_attempts`
//! with `Retry-After`, without running argon2.

use serde_json::json;

use super::input::{self, Object, Secret};
use super::{internal, store_failed, AccountService, Reply};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::{ApiError, Validator};
use crate::passwords;
use crate::store::{normalize_email, AccountRecord};
use crate::tokens::Identity;

/// The current password and the new one (with its optional confirmation).
#[derive(Debug)]
pub struct PasswordChangeRequest {
    pub old_password: Secret,
    pub new_password: Secret,
    pub new_password_confirm: Option<Secret>,
}

/// The fields of a body already read as an object: the caller's account is
/// checked between the two (see `AccountService::handle`).
pub fn from_object(body: &Object) -> Result<PasswordChangeRequest, ApiError> {
    let mut v = Validator::default();
    let old = input::required_secret(body, "old_password", &mut v);
    let new = input::required_secret(body, "new_password", &mut v);
    let confirm = input::optional_secret(body, "new_password_confirm", &mut v);
    v.finish()?;
    match (old, new) {
        (Some(old_password), Some(new_password)) => Ok(PasswordChangeRequest {
            old_password,
            new_password,
            new_password_confirm: confirm,
        }),
        _ => Err(ApiError::internal()),
    }
}

pub fn apply(
    service: &AccountService,
    who: &Identity,
    account: &AccountRecord,
    request: PasswordChangeRequest,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    let failed = |reason| {
        let entry = Entry::new(AuditEvent::PasswordChangeFailed).account(account.id);
        service.audit.record(origin, entry.failure(reason));
    };
    let PasswordChangeRequest {
        old_password: old,
        new_password: new,
        new_password_confirm: confirm,
    } = request;
    let wrong_old_password = || {
        let mut v = Validator::default();
        v.add("old_password", "Le mot de passe actuel est incorrect.");
        v.finish().err().unwrap_or_else(ApiError::internal)
    };
    if old.expose().len() > passwords::MAX_PASSWORD_BYTES {
        failed("wrong_old_password");
        return Err(wrong_old_password());
    }
    let attempts = service
        .reserve_password_check(&normalize_email(&account.email), origin.client)
        .inspect_err(|e| failed(e.code.as_str()))?;
    if !service.timed_hash(|| passwords::verify_password(old.expose(), &account.password_hash)) {
        attempts.failure();
        failed("wrong_old_password");
        return Err(wrong_old_password());
    }
    attempts.success();
    let mut v = Validator::default();
    service.check_new_password(new.expose(), account, "new_password", &mut v);
    if new == old {
        v.add(
            "new_password",
            "Le nouveau mot de passe doit être différent de l'actuel.",
        );
    }
    input::check_confirmation("new_password_confirm", &new, confirm.as_ref(), &mut v);
    v.finish()?;
    let hash = service
        .timed_hash(|| passwords::hash_password(new.expose()))
        .map_err(internal)?;
    let revoked = service
        .store
        .set_password(account.id, hash, crate::unix_now(), Some(who.session))
        .map_err(store_failed)?
        .ok_or_else(ApiError::not_found)?;
    service.revoked(&revoked);
    tracing::info!(
        account_id = account.id,
        sessions_ended = revoked.len(),
        "password changed"
    );
    let entry = Entry::new(AuditEvent::PasswordChanged).account(account.id);
    service.audit.record(origin, entry);
    Reply::json(200, json!({"message": "Votre mot de passe a été modifié"}))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, Fixture, Tokens, PASSWORD};
    use super::super::Endpoint;
    use super::*;

    const NEW: &str = "Un-nouveau-secret-2026";

    fn change(f: &Fixture, caller: &Tokens, old: &str, new: &str) -> Result<Reply, ApiError> {
        f.call(
            Endpoint::PasswordChange,
            Some(&caller.access),
            json!({"old_password": old, "new_password": new}),
        )
    }

    #[test]
    fn the_old_password_may_be_checked_against_a_django_hash() {
        let f = Fixture::new();
        let caller = f.signed_in("jean@example.com");
        let (old, encoded) = crate::passwords::django::tests::vector("scrypt_unicode");
        let id = f.account("jean@example.com").id;
        f.service
            .store
            .update_account(id, 0, |a| a.password_hash = encoded)
            .expect("store");
        let e = change(&f, &caller, PASSWORD, NEW).expect_err("not the old one");
        assert_eq!(e.status, 400);
        change(&f, &caller, &old, NEW).expect("changed");
        let stored = f.account("jean@example.com");
        assert!(stored.password_hash.starts_with("$argon2id$"));
        assert!(passwords::verify_password(NEW, &stored.password_hash));
    }

    #[test]
    fn a_change_keeps_the_callers_session_and_ends_the_others() {
        let f = Fixture::new();
        let caller = f.signed_in("jean@example.com");
        let other = f.login("jean@example.com", PASSWORD);
        let reply = change(&f, &caller, PASSWORD, NEW).expect("changed");
        assert_eq!(
            (reply.status, &reply.body),
            (200, &json!({"message": "Votre mot de passe a été modifié"}))
        );
        let stored = f.account("jean@example.com");
        assert!(passwords::verify_password(NEW, &stored.password_hash));
        assert!(!passwords::verify_password(PASSWORD, &stored.password_hash));
        assert!(f.profile(&caller.access).is_ok());
        assert_eq!(f.session(&caller.refresh).1.revoked_at, None);
        let e = f.profile(&other.access).expect_err("ended");
        assert_eq!(e.code.as_str(), "token_revoked");
        assert!(f.session(&other.refresh).1.revoked_at.is_some());
        f.login("jean@example.com", NEW);
    }

    #[test]
    fn a_wrong_old_password_changes_nothing() {
        let f = Fixture::with("accounts:\n  login_throttle: {max_failures: 2, window: 15m}\n");
        let caller = f.signed_in("jean@example.com");
        let before = f.account("jean@example.com").password_hash;
        for _ in 0..2 {
            let e = change(&f, &caller, "pas-le-bon", NEW).expect_err("wrong");
            assert_eq!((e.status, e.code.as_str()), (400, "validation_error"));
            assert_eq!(
                fixture::messages(&e, "old_password"),
                ["Le mot de passe actuel est incorrect."]
            );
        }
        assert_eq!(f.account("jean@example.com").password_hash, before);
        // The guesses count on the login throttles.
        let e = change(&f, &caller, PASSWORD, NEW).expect_err("throttled");
        assert_eq!((e.status, e.code.as_str()), (429, "too_many_attempts"));
        let e = f
            .call(
                Endpoint::Login,
                None,
                json!({"email": "jean@example.com", "password": PASSWORD}),
            )
            .expect_err("the same budget");
        assert_eq!(e.code.as_str(), "too_many_attempts");
    }

    #[test]
    fn the_new_password_is_checked_after_the_old_one() {
        let f = Fixture::new();
        let caller = f.signed_in("jean@example.com");
        let e = f
            .call(Endpoint::PasswordChange, Some(&caller.access), json!({}))
            .expect_err("empty");
        assert_eq!(fixture::fields(&e), ["new_password", "old_password"]);
        let e = change(&f, &caller, PASSWORD, PASSWORD).expect_err("the same");
        assert_eq!(
            fixture::messages(&e, "new_password"),
            ["Le nouveau mot de passe doit être différent de l'actuel."]
        );
        let e = f
            .call(
                Endpoint::PasswordChange,
                Some(&caller.access),
                json!({"old_password": PASSWORD, "new_password": "jeandupont",
                    "new_password_confirm": "autre"}),
            )
            .expect_err("weak");
        assert_eq!(
            fixture::fields(&e),
            ["new_password", "new_password_confirm"]
        );
        assert_eq!(
            fixture::messages(&e, "new_password"),
            ["Le mot de passe est trop semblable au champ « nom »."]
        );
        let stored = f.account("jean@example.com");
        assert!(passwords::verify_password(PASSWORD, &stored.password_hash));
    }
}

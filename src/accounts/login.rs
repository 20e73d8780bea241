//! `POST /api/accounts/login/`: email and password in, a new session out.
//!
//! Answers 200 `{"access", "refresh", "account": {"id", "email", "first_name",
//! "last_name"}}`. An unknown email, a wrong password and an inactive account
//! all get the same 401 after the same argon2 work, so neither the message nor
//! the timing tells which. Repeated failures on one account are throttled
//! (429); each attempt is counted before its hash runs (see `throttle`).
//! An account imported from Django with its old hash (`passwords/django.rs`)
//! gets it replaced by argon2id at its first successful login, in the store
//! write that records the login; an unusable one (`!...`) never logs in.

use std::net::IpAddr;

use serde::Serialize;

use super::input::{self, Secret};
use super::{store_failed, AccountService, Reply};
use crate::error::ApiError;
use crate::passwords;
use crate::passwords::StoredHash;
use crate::store::{normalize_email, AccountRecord, PasswordUpgrade, SessionRecord};
use crate::tokens::{random_token_id, SessionId};

#[derive(Serialize)]
struct LoginAccount<'a> {
    id: u64,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
}

#[derive(Serialize)]
struct LoginReply<'a> {
    access: String,
    refresh: String,
    account: LoginAccount<'a>,
}

/// Email and password, both non-empty strings; no per-field messages.
#[derive(Debug)]
pub struct LoginRequest {
    pub email: String,
    pub password: Secret,
}

pub fn parse(body: &[u8]) -> Result<LoginRequest, ApiError> {
    let body = input::parse_object(body)?;
    match (
        input::plain_string(&body, "email"),
        input::plain_string(&body, "password"),
    ) {
        (Some(email), Some(password)) => Ok(LoginRequest {
            email,
            password: password.into(),
        }),
        _ => Err(ApiError::missing_credentials()),
    }
}

pub fn apply(
    service: &AccountService,
    request: LoginRequest,
    client_ip: Option<IpAddr>,
) -> Result<Reply, ApiError> {
    let LoginRequest { email, password } = request;
    let password = password.expose();
    if password.len() > passwords::MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid_credentials());
    }
    let key = normalize_email(&email);
    // Reserved before the hash; an early return below counts as a failure.
    let attempts = service.reserve_password_check(&key, client_ip)?;
    let account = service
        .store
        .account_by_email(&email)
        .map_err(store_failed)?;
    let verified = match &account {
        Some(a) => service.timed_hash(|| {
            passwords::verify_login(password, &a.password_hash, &service.dummy_hash)
        }),
        None => {
            service.timed_hash(|| passwords::verify_password(password, &service.dummy_hash));
            false
        }
    };
    let account = match account {
        Some(a) if verified && a.is_active => a,
        _ => {
            attempts.failure();
            return Err(ApiError::invalid_credentials());
        }
    };
    attempts.success();
    let upgrade = rehash(service, &account, password);
    let verified = Verified {
        hash: &account.password_hash,
        rehash: upgrade.as_ref(),
    };
    // `None`: the password changed (or the account was deactivated) while
    // the hash ran; the password checked is no longer the account's.
    let Some((access, refresh)) =
        open_session(service, &account, Some(verified), SessionId::random())?
    else {
        return Err(ApiError::invalid_credentials());
    };
    Reply::json(
        200,
        LoginReply {
            access,
            refresh,
            account: LoginAccount {
                id: account.id,
                email: &account.email,
                first_name: &account.first_name,
                last_name: &account.last_name,
            },
        },
    )
}

/// A legacy hash just verified, and its argon2id replacement (made on this
/// hashing thread).
pub struct Rehash {
    from: &'static str,
    new_hash: String,
}

/// The argon2id hash replacing the account's legacy one, if it holds one;
/// `None` too if hashing fails (the login goes on, the upgrade waits).
fn rehash(service: &AccountService, account: &AccountRecord, password: &str) -> Option<Rehash> {
    let StoredHash::Legacy(from) = StoredHash::of(&account.password_hash) else {
        return None;
    };
    match service.timed_hash(|| passwords::hash_password(password)) {
        Ok(new_hash) => Some(Rehash { from, new_hash }),
        Err(e) => {
            tracing::error!(account_id = account.id, error = %e, "cannot rehash a legacy password");
            None
        }
    }
}

/// The password a login verified: the hash it matched, and its argon2id
/// replacement when that was a Django hash.
pub struct Verified<'a> {
    pub hash: &'a str,
    pub rehash: Option<&'a Rehash>,
}

/// Starts session `session` for the account and returns (access, refresh).
/// After a password check (`verified`), the session is recorded only if the
/// account, in the same write, is still active and still holds the hash
/// verified (the rehash, if any, applied there too); `None` otherwise.
pub fn open_session(
    service: &AccountService,
    account: &AccountRecord,
    verified: Option<Verified<'_>>,
    session: SessionId,
) -> Result<Option<(String, String)>, ApiError> {
    let now = crate::unix_now();
    let jti = random_token_id();
    let expires_at = now + service.tokens.refresh_ttl();
    let record = SessionRecord {
        account_id: account.id,
        created_at: now,
        expires_at,
        refresh_jti: jti,
        previous_jti: None,
        rotated_at: now,
        revoked_at: None,
        rotated_at_ms: None,
    };
    let rehash = verified.as_ref().and_then(|v| v.rehash);
    let upgrade = verified.as_ref().map(|v| PasswordUpgrade {
        verified: v.hash,
        new_hash: v.rehash.map(|r| r.new_hash.as_str()),
    });
    let Some(upgraded) = service
        .store
        .create_session_upgrading(session, &record, upgrade)
        .map_err(store_failed)?
    else {
        return Ok(None);
    };
    if let Some(r) = rehash.filter(|_| upgraded) {
        service.count_rehash(r.from);
        tracing::info!(
            account_id = account.id,
            from = r.from,
            "password rehashed to argon2id"
        );
    }
    let pair = service.issue_tokens(account, session, jti, now, expires_at)?;
    tracing::info!(account_id = account.id, session = %session, "login");
    Ok(Some(pair))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{Fixture, PASSWORD};
    use super::super::{operator, Endpoint, OperatorCommand};
    use serde_json::json;

    fn login(f: &Fixture, email: &str, password: &str) -> Result<super::Reply, super::ApiError> {
        f.call(
            Endpoint::Login,
            None,
            json!({"email": email, "password": password}),
        )
    }

    #[test]
    fn a_login_opens_a_session_and_answers_its_tokens() {
        let f = Fixture::new();
        let id = f.register("jean@example.com");
        let reply = login(&f, " JEAN@example.com", PASSWORD).expect("logged in");
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body["account"],
            json!({"id": id, "email": "jean@example.com", "first_name": "Jean",
                "last_name": "Dupont"})
        );
        let access = reply.body["access"].as_str().expect("access");
        let identity = f.service.tokens.verify_access(access).expect("valid");
        assert_eq!(
            (identity.account_id, identity.email, identity.role),
            (id.to_string(), "jean@example.com".into(), "Visiteur".into())
        );
        let (session, record) = f.session(reply.body["refresh"].as_str().expect("refresh"));
        assert_eq!(session, identity.session);
        assert_eq!((record.account_id, record.revoked_at), (id, None));
        assert_eq!(f.profile(access).expect("works").body["id"], json!(id));
    }

    #[test]
    fn a_wrong_password_and_an_unknown_email_get_the_same_401() {
        let f = Fixture::new();
        f.register("jean@example.com");
        let wrong = login(&f, "jean@example.com", "pas-le-bon").expect_err("wrong");
        let unknown = login(&f, "nobody@example.com", PASSWORD).expect_err("unknown");
        assert_eq!(
            (wrong.status, wrong.code.as_str()),
            (401, "invalid_credentials")
        );
        assert_eq!(wrong, unknown);
        assert_eq!(wrong.message, "Email ou mot de passe incorrect");
        let long = login(&f, "jean@example.com", &"a".repeat(1025)).expect_err("too long");
        assert_eq!(long, wrong);
        for body in [
            json!({}),
            json!({"email": "jean@example.com"}),
            json!({"email": "", "password": PASSWORD}),
        ] {
            let e = f.call(Endpoint::Login, None, body).expect_err("missing");
            assert_eq!((e.status, e.code.as_str()), (400, "missing_credentials"));
        }
    }

    #[test]
    fn an_inactive_account_cannot_log_in() {
        let f = Fixture::new();
        f.register("jean@example.com");
        operator::execute(
            &f.service,
            OperatorCommand::Deactivate {
                email: "jean@example.com".into(),
            },
        )
        .expect("deactivated");
        let e = login(&f, "jean@example.com", PASSWORD).expect_err("inactive");
        assert_eq!((e.status, e.code.as_str()), (401, "invalid_credentials"));
    }

    #[test]
    fn a_django_hash_logs_in_and_becomes_argon2id_in_the_login_write() {
        let f = Fixture::new();
        let password = f.imported("jean@example.com", "pbkdf2_sha256_unicode");
        let old = f.account("jean@example.com").password_hash;
        let e = login(&f, "jean@example.com", PASSWORD).expect_err("wrong");
        assert_eq!((e.status, e.code.as_str()), (401, "invalid_credentials"));
        assert_eq!(f.account("jean@example.com").password_hash, old, "kept");
        let rehashed = |from: &str| f.service.rehashes.with_label_values(&[from]).get();
        assert_eq!(rehashed("pbkdf2_sha256"), 0);

        let reply = login(&f, "jean@example.com", &password).expect("logged in");
        assert_eq!(reply.status, 200);
        let account = f.account("jean@example.com");
        assert!(
            account
                .password_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            account.password_hash
        );
        assert!(account.last_login.is_some());
        assert_eq!(rehashed("pbkdf2_sha256"), 1);
        login(&f, "jean@example.com", &password).expect("again");
        assert_eq!(rehashed("pbkdf2_sha256"), 1, "once");

        let password = f.imported("marie@example.com", "bcrypt_sha256_2a");
        login(&f, "marie@example.com", &password).expect("bcrypt_sha256");
        assert_eq!(rehashed("bcrypt_sha256"), 1);
    }

    #[test]
    fn an_unusable_password_gets_the_answer_of_a_wrong_one() {
        let f = Fixture::with("accounts:\n  login_throttle: {max_failures: 4, window: 15m}\n");
        let password = f.imported("jean@example.com", "unusable");
        let unusable = f.account("jean@example.com").password_hash;
        f.register("marie@example.com");
        let wrong = login(&f, "marie@example.com", "pas-le-bon").expect_err("wrong");
        for candidate in [password.as_str(), PASSWORD, &unusable, &unusable[1..]] {
            let e = login(&f, "jean@example.com", candidate).expect_err("unusable");
            assert_eq!(e, wrong);
        }
        assert_eq!(f.account("jean@example.com").password_hash, unusable);
        let e = login(&f, "jean@example.com", PASSWORD).expect_err("throttled");
        assert_eq!(e.code.as_str(), "too_many_attempts", "throttled the same");
    }

    #[test]
    fn repeated_failures_are_throttled_per_account_and_address() {
        let f = Fixture::with("accounts:\n  login_throttle: {max_failures: 2, window: 15m}\n");
        f.register("jean@example.com");
        for _ in 0..2 {
            let e = login(&f, "jean@example.com", "pas-le-bon").expect_err("wrong");
            assert_eq!(e.code.as_str(), "invalid_credentials");
        }
        // Even the right password waits now, from this address.
        let e = login(&f, "jean@example.com", PASSWORD).expect_err("throttled");
        assert_eq!((e.status, e.code.as_str()), (429, "too_many_attempts"));
        let wait = e.retry_after.expect("Retry-After");
        assert!((1..=900).contains(&wait), "{wait}");
        // Another address still gets in; another account from this one too.
        let other = "192.0.2.7".parse().expect("ip");
        let reply = f
            .call_from(
                Endpoint::Login,
                None,
                json!({"email": "jean@example.com", "password": PASSWORD}),
                other,
            )
            .expect("another address");
        assert_eq!(reply.status, 200);
        f.register("marie@example.com");
        let reply = login(&f, "marie@example.com", PASSWORD).expect("another account");
        assert_eq!(reply.status, 200);
    }
}

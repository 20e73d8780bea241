//! `POST /api/accounts/login/`: email and password in, a new session out.
//!
//! Answers 200 `{"access", "refresh", "account": {"id", "email", "first_name",
//! "last_name"}}`. An unknown email, a wrong password and an inactive account
//! all get the same 401 after the same argon2 work, so neither the message nor
//! the timing tells which. Repeated failures on one account are throttled
//! (429); each attempt is counted before its hash runs (see `throttle`).

use std::net::IpAddr;

use serde::Serialize;

use super::input::{self, Secret};
use super::{internal, AccountService, Reply};
use crate::error::ApiError;
use crate::passwords;
use crate::store::{normalize_email, AccountRecord, SessionRecord};
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
    let account = service.store.account_by_email(&email).map_err(internal)?;
    let verified = match &account {
        Some(a) => service.timed_hash(|| passwords::verify_password(password, &a.password_hash)),
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
    let (access, refresh) = open_session(service, &account)?;
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

/// Starts a session for the account: records it, returns (access, refresh).
pub fn open_session(
    service: &AccountService,
    account: &AccountRecord,
) -> Result<(String, String), ApiError> {
    let now = crate::unix_now();
    let session = SessionId::random();
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
    service
        .store
        .create_session(session, &record)
        .map_err(internal)?;
    let pair = service.issue_tokens(account, session, jti, now, expires_at)?;
    tracing::info!(account_id = account.id, session = %session, "login");
    Ok(pair)
}

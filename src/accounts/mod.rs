//! The account API the gateway answers itself, under `/api/accounts/`.
//!
//! One file per endpoint, each with the same two steps: parse the JSON body
//! into a typed request, then apply it to the store. Nothing here knows
//! Pingora or HTTP framing: the adapter in `proxy/` hands over the method, the
//! path, the Bearer token and the body bytes, and writes back the `Reply` or
//! the `ApiError`. Handlers are synchronous and block (argon2, store commits);
//! the adapter runs them on the blocking pool.

mod exchange;
#[cfg(test)]
mod fixture;
pub(crate) mod input;
pub mod keys;
mod limit;
mod login;
mod login_audit;
mod logout;
pub mod openapi;
pub mod operator;
mod password_change;
pub mod password_reset;
mod profile;
mod refresh;
mod register;
mod throttle;

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::audit::{Auditor, Origin};
use crate::auth::{self, AuthFailure};
use crate::config::Config;
use crate::error::ApiError;
use crate::revocation::RevocationList;
use crate::store::{AccountRecord, Revocation, Store, StoreError};
use crate::tokens::{Identity, SessionId, SimpleJwt, Subject, TokenKeys};

pub use exchange::live_account as legacy_account;
pub use limit::{Attempts, Limit, Refusal};
pub use operator::{OperatorCommand, OperatorReply};
pub use throttle::Throttle;

/// Largest body the gateway's own endpoints read (accounts, operator commands).
pub const MAX_BODY: usize = 64 * 1024;

/// The endpoints under `/api/accounts/` (and the JWKS document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Login,
    Refresh,
    Logout,
    Profile,
    UpdateProfile,
    PasswordChange,
    PasswordForgotten,
    PasswordReset,
    Jwks,
    /// This API's OpenAPI description (`openapi.rs`).
    OpenApi,
}

impl Endpoint {
    /// Stable name, used as the route label in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Register => "accounts.register",
            Endpoint::Login => "accounts.login",
            Endpoint::Refresh => "accounts.refresh",
            Endpoint::Logout => "accounts.logout",
            Endpoint::Profile | Endpoint::UpdateProfile => "accounts.profile",
            Endpoint::PasswordChange => "accounts.password_change",
            Endpoint::PasswordForgotten => "accounts.password_forgotten",
            Endpoint::PasswordReset => "accounts.password_reset",
            Endpoint::Jwks => "jwks",
            Endpoint::OpenApi => "accounts.openapi",
        }
    }

    /// Whether the handler hashes a password (and so needs a hashing slot).
    pub fn hashes(self) -> bool {
        matches!(
            self,
            Endpoint::Register
                | Endpoint::Login
                | Endpoint::PasswordChange
                | Endpoint::PasswordReset
        )
    }
}

/// Label for requests under `/api/accounts/` that match no endpoint.
pub const UNKNOWN_ACCOUNT_PATH: &str = "accounts.unknown";

/// Which of the gateway's own endpoints `path` names, if any: `None` when the
/// path is not the gateway's own (it goes to the route table), `Some(Err)` for
/// an unknown account path (404) or a wrong method (405 with `Allow`).
pub fn resolve(method: &str, path: &str) -> Option<Result<Endpoint, ApiError>> {
    if path == "/.well-known/jwks.json" {
        return Some(only(method, "GET", Endpoint::Jwks));
    }
    let rest = path.strip_prefix("/api/accounts")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let rest = rest.trim_end_matches('/');
    Some(match rest {
        "" => match method {
            "GET" => Ok(Endpoint::Profile),
            "PATCH" => Ok(Endpoint::UpdateProfile),
            _ => Err(ApiError::method_not_allowed("GET, PATCH")),
        },
        "/password-change" => only(method, "POST", Endpoint::PasswordChange),
        "/password-forgotten" => only(method, "POST", Endpoint::PasswordForgotten),
        "/password-reset" => only(method, "POST", Endpoint::PasswordReset),
        "/register" => only(method, "POST", Endpoint::Register),
        "/login" => only(method, "POST", Endpoint::Login),
        "/refresh-token" | "/refresh" => only(method, "POST", Endpoint::Refresh),
        "/logout" => only(method, "POST", Endpoint::Logout),
        "/openapi.json" => only(method, "GET", Endpoint::OpenApi),
        _ => Err(ApiError::not_found()),
    })
}

fn only(method: &str, allow: &'static str, endpoint: Endpoint) -> Result<Endpoint, ApiError> {
    if allow.split(", ").any(|m| m == method) {
        Ok(endpoint)
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

/// What the adapter hands to a handler.
pub struct AccountRequest<'a> {
    pub endpoint: Endpoint,
    /// The `Authorization` header, as sent.
    pub authorization: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub client_ip: Option<IpAddr>,
    /// The `X-Request-Id` of the answer, for the audit log.
    pub request_id: &'a str,
}

/// A successful answer: status and JSON body, and work to start once the
/// answer has been written (so that it cannot slow the answer down).
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub after: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl Reply {
    fn json(status: u16, body: impl Serialize) -> Result<Reply, ApiError> {
        let body = serde_json::to_value(body).map_err(|_| ApiError::internal())?;
        Ok(Reply {
            status,
            body,
            after: None,
        })
    }
}

/// The account object of SPEC.md.
#[derive(Debug, Serialize)]
pub struct AccountView {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub gender: Option<String>,
    pub phone: Option<String>,
    pub role: String,
    pub is_active: bool,
    pub date_joined: String,
    pub last_login: Option<String>,
}

impl From<&AccountRecord> for AccountView {
    fn from(a: &AccountRecord) -> AccountView {
        AccountView {
            id: a.id,
            email: a.email.clone(),
            first_name: a.first_name.clone(),
            last_name: a.last_name.clone(),
            gender: a.gender.clone(),
            phone: a.phone.clone(),
            role: a.role.clone(),
            is_active: a.is_active,
            date_joined: crate::rfc3339(a.date_joined),
            last_login: a.last_login.map(crate::rfc3339),
        }
    }
}

/// The account rules of the configuration in force.
pub struct Policy {
    pub default_role: String,
    pub password_min_length: usize,
    /// `tokens.reuse_grace`, in milliseconds.
    pub reuse_grace_ms: u64,
    /// `migration.simplejwt`: Django's refresh tokens exchanged once.
    pub simplejwt: Option<Arc<SimpleJwt>>,
}

impl Policy {
    fn of(config: &Config) -> Policy {
        Policy {
            default_role: config.accounts.default_role.to_string(),
            password_min_length: config.accounts.password_min_length,
            reuse_grace_ms: u64::try_from(config.tokens.reuse_grace.as_millis())
                .unwrap_or(u64::MAX),
            simplejwt: config
                .migration
                .simplejwt
                .as_ref()
                .map(|c| Arc::new(SimpleJwt::new(c))),
        }
    }
}

/// The longest the store calls of one account request may take together.
pub const STORE_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything the account handlers share.
pub struct AccountService {
    pub store: Arc<Store>,
    pub tokens: Arc<TokenKeys>,
    pub revocations: Arc<RevocationList>,
    /// The audit log (`audit.rs`).
    pub audit: Arc<Auditor>,
    /// What a reload can change (`reconfigure`).
    policy: arc_swap::ArcSwap<Policy>,
    /// Failed password checks (login, password change) per (account, client
    /// address), per address, per account. The one per account is shared by
    /// the replicas when the store is (see `limit`).
    login_throttle_pair: Limit,
    login_throttle_ip: Limit,
    login_throttle_account: Limit,
    /// Reset requests per email (shared like the one per account) and per
    /// client address.
    reset_throttle_email: Limit,
    reset_throttle_ip: Limit,
    /// Feeds the reset worker; `None` outside a running gateway.
    reset_queue: Option<password_reset::ResetQueue>,
    dummy_hash: String,
    hash_seconds: prometheus::Histogram,
    rehashes: prometheus::IntCounterVec,
}

impl AccountService {
    pub fn new(
        config: &Config,
        store: Arc<Store>,
        tokens: Arc<TokenKeys>,
        revocations: Arc<RevocationList>,
        passwords: crate::metrics::PasswordMetrics,
        reset_queue: Option<password_reset::ResetQueue>,
        audit: Arc<Auditor>,
    ) -> AccountService {
        let login = &config.accounts.login_throttle;
        let reset = &config.accounts.reset_throttle;
        AccountService {
            store: store.clone(),
            tokens,
            revocations,
            audit,
            policy: arc_swap::ArcSwap::from_pointee(Policy::of(config)),
            login_throttle_pair: Limit::Local(Throttle::new(login.max_failures, login.window)),
            login_throttle_ip: Limit::Local(Throttle::new(login.max_failures_per_ip, login.window)),
            login_throttle_account: Limit::new(
                &store,
                "login_account",
                login.max_failures_per_account,
                login.window,
            ),
            reset_throttle_email: Limit::new(
                &store,
                "reset_email",
                reset.max_requests,
                reset.window,
            ),
            reset_throttle_ip: Limit::Local(Throttle::new(reset.max_requests_per_ip, reset.window)),
            reset_queue,
            dummy_hash: crate::passwords::dummy_hash(),
            hash_seconds: passwords.hash_seconds,
            rehashes: passwords.rehashes,
        }
    }

    /// The account rules in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// A reload: the account policy, the throttles' limits (their counts
    /// are kept) and the reset mail settings of `config` apply from the
    /// next request on. The caller has made sure the default role exists.
    pub fn reconfigure(&self, config: &Config, mail: Option<password_reset::MailSettings>) {
        self.policy.store(Arc::new(Policy::of(config)));
        let login = &config.accounts.login_throttle;
        let reset = &config.accounts.reset_throttle;
        self.login_throttle_pair
            .set(login.max_failures, login.window);
        self.login_throttle_ip
            .set(login.max_failures_per_ip, login.window);
        self.login_throttle_account
            .set(login.max_failures_per_account, login.window);
        self.reset_throttle_email
            .set(reset.max_requests, reset.window);
        self.reset_throttle_ip
            .set(reset.max_requests_per_ip, reset.window);
        if let (Some(queue), Some(mail)) = (&self.reset_queue, mail) {
            queue.reconfigure(mail);
        }
    }

    /// Counts a legacy hash upgraded to argon2id (`vigile_password_rehash_total`).
    fn count_rehash(&self, from: &str) {
        self.rehashes.with_label_values(&[from]).inc();
    }

    /// Runs a password hash or check, timing it for the metrics.
    fn timed_hash<T>(&self, f: impl FnOnce() -> T) -> T {
        let timer = self.hash_seconds.start_timer();
        let out = f();
        timer.observe_duration();
        out
    }

    /// Reserves one password check of the account whose normalized email is
    /// `account_key`, from `client_ip`, on the three login throttles: per
    /// (account, address), per address, per account. 429 when any is full.
    /// The caller settles the attempts once the hash has run.
    fn reserve_password_check(
        &self,
        account_key: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Attempts<'_>, ApiError> {
        let ip = client_ip
            .map(crate::forwarded::throttle_key)
            .unwrap_or_default();
        let pair = format!("{account_key}|{ip}");
        Attempts::reserve(&[
            (&self.login_throttle_pair, &pair),
            (&self.login_throttle_ip, &ip),
            (&self.login_throttle_account, account_key),
        ])
        .map_err(refused)
    }

    /// Runs one endpoint. Blocks: call it from the blocking pool. Its
    /// store calls together take at most `STORE_BUDGET`: a database that
    /// hangs costs the client that long, then 503 `store_unavailable`.
    pub fn handle(&self, req: &AccountRequest) -> Result<Reply, ApiError> {
        crate::store::within(STORE_BUDGET, || self.endpoint(req))
    }

    fn endpoint(&self, req: &AccountRequest) -> Result<Reply, ApiError> {
        let origin = &Origin::api(req.client_ip, req.request_id);
        match req.endpoint {
            Endpoint::Register => register::apply(
                self,
                register::parse(req.body, self.policy().password_min_length)?,
                origin,
            ),
            Endpoint::Login => {
                let request = login::parse(req.body)?;
                let email = request.email.clone();
                let result = login::apply(self, request, req.client_ip);
                login_audit::record(self, &email, &result, origin);
                result
            }
            Endpoint::Refresh => refresh::apply(self, refresh::parse(req.body)?, origin),
            Endpoint::Logout => match self.authenticate(req.authorization) {
                Ok(who) => logout::apply(self, &who, logout::parse(req.body)?, origin),
                // During the cut-over, maybe a Django access token.
                Err(refused) => {
                    let Some(legacy) = self.policy().simplejwt.clone() else {
                        return Err(refused);
                    };
                    let request = logout::parse(req.body)?;
                    exchange::logout(self, &legacy, req.authorization, request, origin)?
                        .ok_or(refused)
                }
            },
            Endpoint::Profile => {
                let who = self.authenticate(req.authorization)?;
                profile::show(self, &who)
            }
            Endpoint::UpdateProfile => {
                let (_, account, body) = self.caller_with_body(req)?;
                profile::update(self, &account, profile::from_object(&body)?)
            }
            Endpoint::PasswordChange => {
                let (who, account, body) = self.caller_with_body(req)?;
                let request = password_change::from_object(&body)?;
                password_change::apply(self, &who, &account, request, origin)
            }
            Endpoint::PasswordForgotten => {
                password_reset::forgotten(self, password_reset::parse_forgotten(req.body)?, origin)
            }
            Endpoint::PasswordReset => {
                password_reset::reset(self, password_reset::parse_reset(req.body)?, origin)
            }
            Endpoint::Jwks => {
                let keys: Value = serde_json::from_slice(&self.tokens.jwks_json())
                    .map_err(|_| ApiError::internal())?;
                Ok(Reply {
                    status: 200,
                    body: keys,
                    after: None,
                })
            }
            // The proxy serves the document's bytes as they are (`respond::document`).
            Endpoint::OpenApi => Ok(Reply {
                status: 200,
                body: serde_json::from_str(openapi::DOCUMENT).map_err(internal)?,
                after: None,
            }),
        }
    }

    /// The Bearer check of the proxy path, for the account endpoints that need it.
    fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Identity, ApiError> {
        match auth::authenticate(authorization, &self.tokens, &self.revocations) {
            Ok(Some(identity)) => Ok(identity),
            Ok(None) => Err(AuthFailure::Missing.into()),
            Err(failure) => Err(failure.into()),
        }
    }

    /// For the Bearer endpoints that change the caller's account, in the
    /// order the API has always checked them: the token (401), the body's
    /// JSON shape (400), the account behind the token (401); the caller then
    /// reads the fields out of the body (400).
    fn caller_with_body(
        &self,
        req: &AccountRequest,
    ) -> Result<(Identity, AccountRecord, input::Object), ApiError> {
        let who = self.authenticate(req.authorization)?;
        let body = input::parse_object(req.body)?;
        let account = self.account_of(&who)?;
        Ok((who, account, body))
    }

    /// Records committed revocations in the in-memory list.
    fn revoked(&self, revocations: &[Revocation]) {
        self.revocations.insert_all(revocations);
    }

    /// An access token and a refresh token (with `jti`, expiring at `exp`)
    /// for a session of the account.
    fn issue_tokens(
        &self,
        account: &AccountRecord,
        session: SessionId,
        jti: u128,
        now: u64,
        exp: u64,
    ) -> Result<(String, String), ApiError> {
        let subject = Subject {
            account_id: account.id,
            email: &account.email,
            role: &account.role,
        };
        let access = self
            .tokens
            .issue_access(&subject, session, now)
            .map_err(internal)?;
        let refresh = self
            .tokens
            .issue_refresh(account.id, session, jti, now, exp)
            .map_err(internal)?;
        Ok((access, refresh))
    }

    /// The password policy, with the account's own data for the similarity rule.
    fn check_new_password(
        &self,
        password: &str,
        account: &AccountRecord,
        field: &str,
        v: &mut crate::error::Validator,
    ) {
        let personal = crate::passwords::PersonalData {
            email: &account.email,
            first_name: &account.first_name,
            last_name: &account.last_name,
        };
        for message in crate::passwords::policy_violations(
            password,
            self.policy().password_min_length,
            &personal,
        ) {
            v.add(field, message);
        }
    }

    fn account_of(&self, who: &Identity) -> Result<AccountRecord, ApiError> {
        let id: u64 = who.account_id.parse().map_err(|_| AuthFailure::Invalid)?;
        match self.store.account(id).map_err(store_failed)? {
            Some(account) if account.is_active => Ok(account),
            _ => Err(AuthFailure::Invalid.into()),
        }
    }
}

/// A store call that failed: 503 `store_unavailable` (with `Retry-After`)
/// when the store cannot be reached just now (a database down, a call past
/// its timeout, shutting down), which a client may retry; 500 otherwise.
pub(crate) fn store_failed(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(_) | StoreError::Closed => {
            tracing::warn!(error = %e, "account API: the store is unavailable");
            ApiError::store_unavailable()
        }
        other => internal(other),
    }
}

/// A refused attempt: 429 `too_many_attempts` with the seconds to wait, or
/// the store's failure when a shared limit could not be counted.
pub(crate) fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Wait(wait) => ApiError::too_many_attempts(wait),
        Refusal::Store(e) => store_failed(e),
    }
}

/// Store and signing failures are the gateway's fault: logged, answered 500.
pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "internal error in the account API");
    ApiError::internal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_with_and_without_trailing_slash() {
        assert_eq!(
            resolve("POST", "/api/accounts/login/"),
            Some(Ok(Endpoint::Login))
        );
        assert_eq!(
            resolve("POST", "/api/accounts/login"),
            Some(Ok(Endpoint::Login))
        );
        assert_eq!(
            resolve("POST", "/api/accounts/refresh/"),
            Some(Ok(Endpoint::Refresh))
        );
        assert_eq!(resolve("GET", "/api/accounts"), Some(Ok(Endpoint::Profile)));
        assert_eq!(
            resolve("GET", "/api/accounts/"),
            Some(Ok(Endpoint::Profile))
        );
        assert_eq!(resolve("GET", "/api/stocks/"), None);
        assert_eq!(resolve("GET", "/api/accountsX"), None);
        let e = resolve("GET", "/api/accounts/login/")
            .and_then(Result::err)
            .expect("405");
        assert_eq!((e.status, e.allow.as_deref()), (405, Some("POST")));
        let e = resolve("GET", "/api/accounts/nope/")
            .and_then(Result::err)
            .expect("404");
        assert_eq!(e.status, 404);
    }
}

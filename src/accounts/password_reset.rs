//! `POST /api/accounts/password-forgotten/` and `POST /api/accounts/password-reset/`.
//!
//! Forgotten: the answer is 202 with the same body, at once, whether the
//! account exists or not: the request only queues the email address. The
//! reset worker (its own thread) looks the account up, creates the token
//! (32 random bytes, URL-safe; only its SHA-256 is stored, with an expiry) and
//! sends the link through the mailer. A slow or failing mail server delays
//! nothing but that worker.
//!
//! Reset: a token works once. Unknown, expired or used: 400
//! `invalid_reset_token`. On success the password changes, every session of
//! the account ends and every other reset token of it dies.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::input::{self, Secret};
use super::{internal, store_failed, AccountService, Reply};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::{ApiError, ErrorCode, Validator};
use crate::mailer::{Mail, Mailer, MailerError};
use crate::passwords;
use crate::store::{ResetRecord, Store, StoreError};

/// Reset requests waiting for the worker; past that, requests are dropped
/// (logged and counted), never waited for.
const QUEUE: usize = 256;

pub const FORGOTTEN_MESSAGE: &str =
    "Si un compte actif correspond à cet email, un lien de réinitialisation vient de lui être envoyé.";

/// The request side of the reset worker.
#[derive(Clone)]
pub struct ResetQueue {
    jobs: SyncSender<String>,
    outcomes: prometheus::IntCounterVec,
    /// The worker's mail settings, replaced by a reload.
    mail: Arc<arc_swap::ArcSwap<MailSettings>>,
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Why the worker sent no link for a known account.
#[derive(Debug, thiserror::Error)]
enum ResetMailError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailerError),
}

/// How reset links are sent: the mailer, the link, its lifetime.
pub struct MailSettings {
    pub mailer: Mailer,
    pub reset_url: String,
    /// Seconds a link stays valid.
    pub ttl: u64,
}

impl MailSettings {
    pub fn of(config: &crate::config::Config) -> Result<MailSettings, MailerError> {
        Ok(MailSettings {
            mailer: Mailer::from_config(&config.mailer)?,
            reset_url: config.mailer.reset_url.clone(),
            ttl: config.accounts.reset_ttl.as_secs(),
        })
    }
}

/// What the worker needs.
pub struct ResetWorker {
    pub store: Arc<Store>,
    pub mail: MailSettings,
    /// `vigile_password_reset_mails_total{result}`.
    pub outcomes: prometheus::IntCounterVec,
}

impl ResetWorker {
    /// Starts the worker thread; returns the queue feeding it.
    pub fn start(self) -> ResetQueue {
        let (jobs, rx) = sync_channel(QUEUE);
        let mail = Arc::new(arc_swap::ArcSwap::from_pointee(self.mail));
        let queue = ResetQueue {
            jobs,
            outcomes: self.outcomes.clone(),
            mail: mail.clone(),
        };
        let (store, outcomes) = (self.store, self.outcomes);
        std::thread::Builder::new()
            .name("vigile-reset".into())
            .spawn(move || run(&store, &mail, &outcomes, rx))
            .map_err(|e| tracing::error!(error = %e, "cannot start the reset worker"))
            .ok();
        queue
    }
}

fn run(
    store: &Arc<Store>,
    mail: &arc_swap::ArcSwap<MailSettings>,
    outcomes: &prometheus::IntCounterVec,
    rx: Receiver<String>,
) {
    // Behind the requests being answered: a known email must not make
    // its own 202 slower than an unknown one's.
    crate::lower_thread_priority();
    while let Ok(email) = rx.recv() {
        // The settings in force when the request is handled.
        let result = mail.load().handle(store.as_ref(), &email);
        let label = match &result {
            Ok(true) => "sent",
            Ok(false) => "no_account",
            Err(e) => {
                tracing::warn!(error = %e, "password-reset mail not sent");
                "failed"
            }
        };
        outcomes.with_label_values(&[label]).inc();
    }
}

impl MailSettings {
    /// `Ok(false)` when there is no active account for the email.
    fn handle(&self, store: &Store, email: &str) -> Result<bool, ResetMailError> {
        let Some(account) = store.account_by_email(email)? else {
            return Ok(false);
        };
        if !account.is_active {
            return Ok(false);
        }
        let token = new_token();
        let now = crate::unix_now();
        let record = ResetRecord {
            account_id: account.id,
            created_at: now,
            expires_at: now + self.ttl,
        };
        store.create_reset_token(&token_hash(&token), &record)?;
        let link = self.reset_url.replace("{token}", &token);
        let minutes = (self.ttl / 60).max(1);
        let text = format!(
            "Bonjour {},\n\nPour choisir un nouveau mot de passe, ouvrez ce lien (valable {minutes} minutes) :\n\n{link}\n\n\
             Si vous n'avez pas demandé de réinitialisation, ignorez ce message : votre mot de passe ne change pas.\n",
            account.first_name
        );
        self.mailer.send(&Mail {
            to: account.email.clone(),
            subject: "Réinitialisation de votre mot de passe".into(),
            text,
        })?;
        tracing::info!(account_id = account.id, "password-reset link sent");
        Ok(true)
    }
}

impl ResetQueue {
    /// A reload: the next mails use these settings.
    pub fn reconfigure(&self, mail: MailSettings) {
        self.mail.store(Arc::new(mail));
    }

    fn post(&self, email: String) {
        match self.jobs.try_send(email) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("password-reset queue full: request dropped");
                self.outcomes.with_label_values(&["dropped"]).inc();
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the reset worker is gone: request dropped");
                self.outcomes.with_label_values(&["dropped"]).inc();
            }
        }
    }
}

/// The address a reset link is asked for, trimmed.
#[derive(Debug)]
pub struct PasswordForgottenRequest {
    pub email: String,
}

pub fn parse_forgotten(body: &[u8]) -> Result<PasswordForgottenRequest, ApiError> {
    let body = input::parse_object(body)?;
    let mut v = Validator::default();
    let email = input::required_string(&body, "email", &mut v, false);
    v.finish()?;
    Ok(PasswordForgottenRequest {
        email: email.unwrap_or_default(),
    })
}

pub fn forgotten(
    service: &AccountService,
    request: PasswordForgottenRequest,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    // The address as typed (trimmed) goes to the worker: the store decides
    // which account it names (a look-alike names none, see `email_names`).
    let email = request.email;
    let key = crate::store::normalize_email(&email);
    let ip = origin
        .client
        .map(crate::forwarded::throttle_key)
        .unwrap_or_default();
    // No account: the answer does not tell whether the address has one, and
    // the audit line names none (nor the address: see `audit.rs`).
    let requested = Entry::new(AuditEvent::PasswordResetRequested);
    // Every request counts, reserved at once so that parallel ones cannot
    // pass the limit together.
    // The address first: a refusal there costs no call to a shared store.
    match super::Attempts::reserve(&[
        (&service.reset_throttle_ip, &ip),
        (&service.reset_throttle_email, &key),
    ]) {
        Ok(attempts) => attempts.failure(),
        Err(super::Refusal::Wait(wait)) => {
            let mut e = ApiError::too_many_attempts(wait);
            e.message = "Trop de demandes de réinitialisation, réessayez plus tard".into();
            service
                .audit
                .record(origin, requested.failure("too_many_attempts"));
            return Err(e);
        }
        Err(super::Refusal::Store(e)) => return Err(super::store_failed(e)),
    }
    service.audit.record(origin, requested);
    let mut reply = Reply::json(202, json!({ "message": FORGOTTEN_MESSAGE }))?;
    // Queued once the 202 is written: a known email must not make its own
    // answer slower than an unknown one's.
    if input::valid_email(&email) {
        match &service.reset_queue {
            Some(queue) => {
                let queue = queue.clone();
                reply.after = Some(Box::new(move || queue.post(email)));
            }
            None => tracing::error!("no reset worker: request dropped"),
        }
    }
    Ok(reply)
}

fn invalid_token() -> ApiError {
    ApiError::new(
        400,
        ErrorCode::InvalidResetToken,
        "Lien de réinitialisation invalide, expiré ou déjà utilisé",
    )
}

/// A reset token and the new password (with its optional confirmation).
#[derive(Debug)]
pub struct PasswordResetRequest {
    pub token: Secret,
    pub password: Secret,
    pub password_confirm: Option<Secret>,
}

pub fn parse_reset(body: &[u8]) -> Result<PasswordResetRequest, ApiError> {
    let body = input::parse_object(body)?;
    let mut v = Validator::default();
    let token = input::required_string(&body, "token", &mut v, false);
    let password = input::required_secret(&body, "password", &mut v);
    let password_confirm = input::optional_secret(&body, "password_confirm", &mut v);
    v.finish()?;
    match (token, password) {
        (Some(token), Some(password)) => Ok(PasswordResetRequest {
            token: token.into(),
            password,
            password_confirm,
        }),
        _ => Err(ApiError::internal()),
    }
}

pub fn reset(
    service: &AccountService,
    request: PasswordResetRequest,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    let PasswordResetRequest {
        token,
        password,
        password_confirm: confirm,
    } = request;
    let hash = token_hash(token.expose());
    let now = crate::unix_now();
    // A first look, so that the policy can name the account's own data and
    // an invalid token costs no argon2 run; the write below checks again.
    let record = service.store.reset_record(&hash).map_err(store_failed)?;
    let account = match record {
        Some(r) if r.expires_at >= now => {
            service.store.account(r.account_id).map_err(store_failed)?
        }
        _ => None,
    };
    let Some(account) = account.filter(|a| a.is_active) else {
        return Err(invalid_token());
    };
    let mut v = Validator::default();
    service.check_new_password(password.expose(), &account, "password", &mut v);
    input::check_confirmation("password_confirm", &password, confirm.as_ref(), &mut v);
    v.finish()?;
    let new_hash = service
        .timed_hash(|| passwords::hash_password(password.expose()))
        .map_err(internal)?;
    let used = service
        .store
        .use_reset_token(&hash, now, new_hash)
        .map_err(store_failed)?;
    let Some((account, revoked)) = used else {
        return Err(invalid_token());
    };
    service.revoked(&revoked);
    tracing::info!(
        account_id = account.id,
        sessions_ended = revoked.len(),
        "password reset"
    );
    let entry = Entry::new(AuditEvent::PasswordResetDone).account(account.id);
    service.audit.record(origin, entry);
    Reply::json(
        200,
        json!({"message": "Votre mot de passe a été réinitialisé"}),
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, Fixture, PASSWORD};
    use super::super::Endpoint;
    use super::*;

    const NEW: &str = "Un-nouveau-secret-2026";

    fn forgotten(f: &Fixture, email: &str) -> Result<Reply, ApiError> {
        f.call(Endpoint::PasswordForgotten, None, json!({ "email": email }))
    }

    fn reset(f: &Fixture, token: &str, password: &str) -> Result<Reply, ApiError> {
        f.call(
            Endpoint::PasswordReset,
            None,
            json!({"token": token, "password": password, "password_confirm": password}),
        )
    }

    fn token_of(mail: &str) -> &str {
        let start = mail.find("token=").expect("a link") + "token=".len();
        let rest = &mail[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    }

    /// A reset token of the account, stored directly, expiring at `expires_at`.
    fn stored_token(f: &Fixture, account_id: u64, expires_at: u64) -> String {
        let token = new_token();
        let record = ResetRecord {
            account_id,
            created_at: crate::unix_now(),
            expires_at,
        };
        f.service
            .store
            .create_reset_token(&token_hash(&token), &record)
            .expect("store");
        token
    }

    #[test]
    fn a_mailed_token_resets_the_password_once_and_ends_every_session() {
        let f = Fixture::with_reset_worker();
        let session = f.signed_in("jean@example.com");
        for email in ["nobody@example.com", " JEAN@example.com "] {
            let reply = forgotten(&f, email).expect("accepted");
            assert_eq!(
                (reply.status, &reply.body),
                (202, &json!({ "message": FORGOTTEN_MESSAGE }))
            );
            (reply.after.expect("queued once answered"))();
        }
        let mails = f.wait_for_mails(1);
        assert_eq!(mails.len(), 1, "one mail, for the known account only");
        assert!(mails[0].contains("To: jean@example.com"));
        let token = token_of(&mails[0]);
        assert_eq!(token.len(), 43);

        let reply = reset(&f, token, NEW).expect("reset");
        assert_eq!(
            (reply.status, &reply.body),
            (
                200,
                &json!({"message": "Votre mot de passe a été réinitialisé"})
            )
        );
        let stored = f.account("jean@example.com");
        assert!(passwords::verify_password(NEW, &stored.password_hash));
        assert!(f.session(&session.refresh).1.revoked_at.is_some());
        let e = f.profile(&session.access).expect_err("ended");
        assert_eq!(e.code.as_str(), "token_revoked");
        assert_eq!(
            f.service
                .store
                .reset_record(&token_hash(token))
                .expect("store"),
            None
        );

        let e = reset(&f, token, "Encore-un-autre-2026").expect_err("used");
        assert_eq!((e.status, e.code.as_str()), (400, "invalid_reset_token"));
        assert_eq!(
            e.message,
            "Lien de réinitialisation invalide, expiré ou déjà utilisé"
        );
        let stored = f.account("jean@example.com");
        assert!(passwords::verify_password(NEW, &stored.password_hash));
    }

    #[test]
    fn expired_and_unknown_tokens_are_refused() {
        let f = Fixture::new();
        let id = f.register("jean@example.com");
        let expired = stored_token(&f, id, crate::unix_now() - 1);
        for token in [expired.as_str(), "inconnu"] {
            let e = reset(&f, token, NEW).expect_err("refused");
            assert_eq!((e.status, e.code.as_str()), (400, "invalid_reset_token"));
        }
        let stored = f.account("jean@example.com");
        assert!(passwords::verify_password(PASSWORD, &stored.password_hash));
    }

    #[test]
    fn a_refused_new_password_leaves_the_token_usable() {
        let f = Fixture::new();
        let id = f.register("jean@example.com");
        let token = stored_token(&f, id, crate::unix_now() + 3600);
        let e = f
            .call(Endpoint::PasswordReset, None, json!({}))
            .expect_err("empty");
        assert_eq!(fixture::fields(&e), ["password", "token"]);
        let e = reset(&f, &token, "12345678").expect_err("weak");
        assert_eq!((e.status, e.code.as_str()), (400, "validation_error"));
        assert_eq!(fixture::fields(&e), ["password"]);
        let e = f
            .call(
                Endpoint::PasswordReset,
                None,
                json!({"token": token, "password": NEW, "password_confirm": "autre"}),
            )
            .expect_err("mismatch");
        assert_eq!(fixture::fields(&e), ["password_confirm"]);
        reset(&f, &token, NEW).expect("still usable");
    }

    #[test]
    fn reset_requests_are_validated_and_throttled() {
        let f = Fixture::with_reset_worker();
        let e = f
            .call(Endpoint::PasswordForgotten, None, json!({}))
            .expect_err("empty");
        assert_eq!((e.status, e.code.as_str()), (400, "validation_error"));
        assert_eq!(fixture::messages(&e, "email"), [input::REQUIRED]);
        // Not an address: the same answer, nothing queued.
        let reply = forgotten(&f, "pas-une-adresse").expect("accepted");
        assert_eq!(reply.status, 202);
        assert!(reply.after.is_none());
        for _ in 0..3 {
            let reply = forgotten(&f, "jean@example.com").expect("accepted");
            assert!(reply.after.is_some());
        }
        let e = forgotten(&f, "Jean@example.com").expect_err("throttled");
        assert_eq!((e.status, e.code.as_str()), (429, "too_many_attempts"));
        assert_eq!(
            e.message,
            "Trop de demandes de réinitialisation, réessayez plus tard"
        );
        assert!(e.retry_after.is_some_and(|s| (1..=900).contains(&s)));
    }
}

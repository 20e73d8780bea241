//! The audit line of a login, written beside `login.rs` rather than in it:
//! the handler answers the same 401 for an unknown email, a wrong password
//! and an inactive account, and only this line tells them apart, from the
//! account the email names (read again after a refusal, never before, so
//! that a login's work and time stay what `login.rs` makes them).

use super::{AccountService, Reply};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::{ApiError, ErrorCode};

/// Writes `login_succeeded` or `login_failed` for the login of `email`.
pub fn record(
    service: &AccountService,
    email: &str,
    result: &Result<Reply, ApiError>,
    origin: &Origin,
) {
    let entry = match result {
        Ok(reply) => {
            let entry = Entry::new(AuditEvent::LoginSucceeded);
            match reply.body["account"]["id"].as_u64() {
                Some(id) => entry.account(id),
                None => entry,
            }
        }
        Err(e) if e.code == ErrorCode::InvalidCredentials => {
            let failed = Entry::new(AuditEvent::LoginFailed);
            match service.store.account_by_email(email) {
                Ok(Some(account)) if !account.is_active => {
                    failed.account(account.id).failure("inactive_account")
                }
                Ok(Some(account)) => failed.account(account.id).failure("wrong_password"),
                Ok(None) => failed.failure("unknown_account"),
                Err(_) => failed.failure("invalid_credentials"),
            }
        }
        // Throttled (before any store read: a flood of refusals costs
        // none here either), or the gateway's own failure.
        Err(e) => Entry::new(AuditEvent::LoginFailed).failure(e.code.as_str()),
    };
    service.audit.record(origin, entry);
}

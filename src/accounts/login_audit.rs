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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::fixture::{Fixture, PASSWORD};
    use super::super::{operator, Endpoint, OperatorCommand};

    fn login(f: &Fixture, email: &str, password: &str) {
        let _ = f.call(
            Endpoint::Login,
            None,
            json!({"email": email, "password": password}),
        );
    }

    /// (event, account_id, reason) of the last audit line.
    fn last(f: &Fixture) -> (String, Option<u64>, Option<String>) {
        let lines = f.audit();
        let line = lines.last().expect("a line");
        (
            line["event"].as_str().unwrap_or("").to_string(),
            line["account_id"].as_u64(),
            line["reason"].as_str().map(str::to_string),
        )
    }

    #[test]
    fn each_refused_login_says_why_and_only_here() {
        let f = Fixture::with("accounts:\n  login_throttle: {max_failures: 2, window: 15m}\n");
        let id = f.register("jean@example.com");
        login(&f, "jean@example.com", PASSWORD);
        assert_eq!(last(&f), ("login_succeeded".into(), Some(id), None));
        login(&f, "jean@example.com", "pas-le-bon");
        let wrong = Some("wrong_password".to_string());
        assert_eq!(last(&f), ("login_failed".into(), Some(id), wrong));
        login(&f, "personne@example.com", PASSWORD);
        let unknown = Some("unknown_account".to_string());
        assert_eq!(last(&f), ("login_failed".into(), None, unknown));
        let deactivate = OperatorCommand::Deactivate {
            email: "jean@example.com".into(),
        };
        operator::execute(&f.service, deactivate).expect("deactivated");
        login(&f, "jean@example.com", PASSWORD);
        let inactive = Some("inactive_account".to_string());
        assert_eq!(last(&f), ("login_failed".into(), Some(id), inactive));
        login(&f, "jean@example.com", PASSWORD);
        let throttled = Some("too_many_attempts".to_string());
        assert_eq!(last(&f), ("login_failed".into(), None, throttled));
        // A body without credentials is no login attempt.
        let before = f.audit().len();
        let _ = f.call(Endpoint::Login, None, json!({}));
        assert_eq!(f.audit().len(), before);
        let sources: Vec<Value> = f.audit().iter().map(|l| l["source"].clone()).collect();
        assert!(sources.contains(&json!("operator")), "{sources:?}");
        for line in f.audit() {
            assert!(!line.to_string().contains(PASSWORD), "{line}");
        }
    }
}

//! The audit log: one JSON line per security event (logins, logouts,
//! refreshes, token reuse, password changes and resets, account and role
//! changes, key rotations, reloads), for the people who investigate what
//! happened to an account.
//!
//! Each line is a JSON object: `time` (RFC 3339, UTC, milliseconds),
//! `event`, `account_id` (null when no account is known), `client` (the
//! client's address, null outside a request), `request_id` (the
//! `X-Request-Id` of the answer, null outside a request), `outcome`
//! (`success` or `failure`), `reason` (failures), `source` (`api`,
//! `operator` through the admin channel, `cli` on the store directly,
//! `signal`, `gateway` for what the gateway does by itself), and a few
//! details of some events (`all`, `role`, `kid`, `sha256`, `via`).
//!
//! Never a password, a token (access, refresh, reset, operator) or a
//! secret, and no email either: the account is named by its id, and a
//! login for an unknown address by the reason `unknown_account` and the
//! client (a failed login's email field sometimes holds a password typed
//! in the wrong box, and the audit log is kept longest).
//!
//! Lines go through `tracing` (target `vigile::audit`), which the log
//! writes as they are, whatever `server.log_format` (`logging.rs`), and to
//! `audit.file` when configured; each is counted in
//! `vigile_audit_events_total{event}`.

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Map, Value};

/// The `tracing` target of audit events.
pub const TARGET: &str = "vigile::audit";

stable_names! {
    /// What happened. The names are stable: operators' queries and the
    /// metric's label rely on them.
    pub enum AuditEvent {
    /// A login opened a session.
    LoginSucceeded = "login_succeeded",
    /// A login was refused: `wrong_password`, `unknown_account`,
    /// `inactive_account`, `too_many_attempts`, or the gateway's failure.
    LoginFailed = "login_failed",
    /// A session ended by its owner (`all`: every session of the account).
    Logout = "logout",
    /// A refresh token was rotated (`via: simplejwt`: a Django one exchanged).
    TokenRefreshed = "token_refreshed",
    /// A retired refresh token came back after the grace window: the
    /// session is revoked.
    TokenReused = "token_reused",
    PasswordChanged = "password_changed",
    /// A password change with a wrong old password, or throttled.
    PasswordChangeFailed = "password_change_failed",
    /// A reset link was asked for (no account: the answer does not tell).
    PasswordResetRequested = "password_reset_requested",
    /// A reset token set a new password.
    PasswordResetDone = "password_reset_done",
    AccountCreated = "account_created",
    AccountActivated = "account_activated",
    AccountDeactivated = "account_deactivated",
    AccountDeleted = "account_deleted",
    /// `role`: the new one.
    RoleChanged = "role_changed",
    /// `kid`: the new active key.
    KeyRotated = "key_rotated",
    /// `kid`: the key retired (by the operator, or by the gateway once no
    /// token it signed can be valid).
    KeyRetired = "key_retired",
    /// `sha256`: the file now in force; a refused reload is a failure.
    ConfigReloaded = "config_reloaded",
    }
}

/// Who made it happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A request to the account API.
    Api,
    /// An operator command through the gateway's admin channel.
    Operator,
    /// An operator command run on the store directly (no gateway running).
    Cli,
    /// `SIGHUP`.
    Signal,
    /// The gateway by itself (a key retired when due).
    Gateway,
}

/// Where an event comes from: what its line says of the request.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub source: Source,
    pub client: Option<IpAddr>,
    pub request_id: Option<&'a str>,
}

impl Origin<'static> {
    pub const OPERATOR: Origin<'static> = Origin::outside(Source::Operator);
    pub const CLI: Origin<'static> = Origin::outside(Source::Cli);
    pub const SIGNAL: Origin<'static> = Origin::outside(Source::Signal);
    pub const GATEWAY: Origin<'static> = Origin::outside(Source::Gateway);

    const fn outside(source: Source) -> Origin<'static> {
        Origin {
            source,
            client: None,
            request_id: None,
        }
    }
}

impl<'a> Origin<'a> {
    /// A request to the account API.
    pub fn api(client: Option<IpAddr>, request_id: &'a str) -> Origin<'a> {
        Origin {
            source: Source::Api,
            client,
            request_id: Some(request_id),
        }
    }
}

/// One event, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub event: AuditEvent,
    pub account_id: Option<u64>,
    /// `None`: success; else the failure's reason.
    pub failure: Option<&'static str>,
    pub details: Vec<(&'static str, Value)>,
}

impl Entry {
    /// A success, of no account yet.
    pub fn new(event: AuditEvent) -> Entry {
        Entry {
            event,
            account_id: None,
            failure: None,
            details: Vec::new(),
        }
    }

    pub fn account(mut self, id: u64) -> Entry {
        self.account_id = Some(id);
        self
    }

    pub fn failure(mut self, reason: &'static str) -> Entry {
        self.failure = Some(reason);
        self
    }

    /// A detail of the event: never a secret.
    pub fn detail(mut self, name: &'static str, value: impl Into<Value>) -> Entry {
        self.details.push((name, value.into()));
        self
    }
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    event: &'static str,
    account_id: Option<u64>,
    client: Option<String>,
    request_id: Option<&'a str>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    source: Source,
    #[serde(flatten)]
    details: Map<String, Value>,
}

/// The JSON line of `entry` from `origin` at `now` (without its newline).
pub fn line(origin: &Origin, entry: &Entry, now: SystemTime) -> String {
    let line = Line {
        time: humantime::format_rfc3339_millis(now).to_string(),
        event: entry.event.as_str(),
        account_id: entry.account_id,
        client: origin.client.map(|ip| ip.to_string()),
        request_id: origin.request_id,
        outcome: if entry.failure.is_some() {
            "failure"
        } else {
            "success"
        },
        reason: entry.failure,
        source: origin.source,
        details: entry
            .details
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect(),
    };
    // Strings, numbers and JSON values: serializing cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// Opens (creates, mode 0600) `path` for appending audit lines.
pub fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Writes and counts audit lines. One per gateway (and one per operator
/// command run on the store directly).
pub struct Auditor {
    events: prometheus::IntCounterVec,
    /// `audit.file`, open for appending; swapped by a reload.
    file: Mutex<Option<File>>,
    /// Writes each line to stderr itself: the command line, which has no log.
    stderr: bool,
}

impl Auditor {
    /// `events` is `vigile_audit_events_total`.
    pub fn new(events: prometheus::IntCounterVec, file: Option<File>, stderr: bool) -> Auditor {
        Auditor {
            events,
            file: Mutex::new(file),
            stderr,
        }
    }

    /// A reload: lines go to `file` from now on (opened again even when it
    /// is the same path, so that a rotated file is let go).
    pub fn set_file(&self, file: Option<File>) {
        *self.file.lock() = file;
    }

    pub fn record(&self, origin: &Origin, entry: Entry) {
        let line = line(origin, &entry, SystemTime::now());
        self.events.with_label_values(&[entry.event.as_str()]).inc();
        tracing::info!(target: TARGET, "{line}");
        if self.stderr {
            eprintln!("{line}");
        }
        if let Some(file) = self.file.lock().as_mut() {
            if let Err(e) = file.write_all(format!("{line}\n").as_bytes()) {
                tracing::error!(error = %e, "audit.file: cannot write an audit line");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(origin: &Origin, entry: &Entry) -> Value {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_659_200_123);
        let text = line(origin, entry, at);
        assert!(!text.contains('\n'), "{text}");
        serde_json::from_str(&text).expect("one JSON object")
    }

    #[test]
    fn a_line_has_every_field_in_order() {
        let ip = "192.0.2.7".parse().ok();
        let entry = Entry::new(AuditEvent::LoginFailed)
            .account(42)
            .failure("wrong_password");
        let text = line(
            &Origin::api(ip, "req-1"),
            &entry,
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_659_200_123),
        );
        assert_eq!(
            text,
            r#"{"time":"2026-12-07T16:00:00.123Z","event":"login_failed","account_id":42,"client":"192.0.2.7","request_id":"req-1","outcome":"failure","reason":"wrong_password","source":"api"}"#
        );
    }

    #[test]
    fn outside_a_request_client_and_request_id_are_null() {
        let entry = Entry::new(AuditEvent::KeyRotated).detail("kid", "abc");
        let v = parsed(&Origin::CLI, &entry);
        assert_eq!(v["client"], Value::Null);
        assert_eq!(v["request_id"], Value::Null);
        assert_eq!(v["account_id"], Value::Null);
        assert_eq!(
            (v["outcome"].as_str(), v["source"].as_str()),
            (Some("success"), Some("cli"))
        );
        assert_eq!(v["kid"], "abc");
        assert!(v.get("reason").is_none());
    }

    #[test]
    fn event_names_are_distinct_snake_case() {
        let names: std::collections::BTreeSet<&str> =
            AuditEvent::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names.len(), AuditEvent::ALL.len());
        for name in names {
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn the_file_gets_one_line_per_event_and_the_metric_counts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let events = prometheus::IntCounterVec::new(
            prometheus::Opts::new("vigile_audit_events_total", "test"),
            &["event"],
        )
        .expect("counter");
        let auditor = Auditor::new(events.clone(), Some(open_file(&path).expect("open")), false);
        auditor.record(
            &Origin::OPERATOR,
            Entry::new(AuditEvent::AccountDeleted).account(3),
        );
        auditor.record(&Origin::SIGNAL, Entry::new(AuditEvent::ConfigReloaded));
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0]["event"].as_str(), lines[0]["account_id"].as_u64()),
            (Some("account_deleted"), Some(3))
        );
        assert_eq!(lines[1]["source"], "signal");
        assert_eq!(events.with_label_values(&["config_reloaded"]).get(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

//! What the store holds, whatever the backend: the records (stored as JSON,
//! so their serde shape is the on-disk format), the email key, and what
//! revocations and counts look like.

use serde::{Deserialize, Serialize};

use crate::tokens::SessionId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub id: u64,
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub gender: Option<String>,
    pub phone: Option<String>,
    pub role: String,
    pub is_active: bool,
    pub date_joined: u64,
    pub last_login: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub account_id: u64,
    pub created_at: u64,
    /// Expiry of the newest refresh token; the record may go after it.
    pub expires_at: u64,
    /// `jti` of the refresh token that is current.
    pub refresh_jti: u128,
    /// `jti` of the refresh token retired by the last rotation, and when
    /// (unix seconds, as every record has it).
    pub previous_jti: Option<u128>,
    pub rotated_at: u64,
    pub revoked_at: Option<u64>,
    /// The same rotation time in unix milliseconds, for the reuse grace
    /// window (`tokens.reuse_grace` may be shorter than a second, and whole
    /// seconds would stretch it by up to one). Absent from records written
    /// before it existed: `rotated_at_millis()` falls back to `rotated_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at_ms: Option<u64>,
}

impl SessionRecord {
    /// When the last rotation happened, in unix milliseconds. For an old
    /// record (seconds only) this is the start of that second: the window it
    /// gives is never longer than configured.
    pub fn rotated_at_millis(&self) -> u64 {
        self.rotated_at_ms
            .unwrap_or_else(|| self.rotated_at.saturating_mul(1000))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRecord {
    pub account_id: u64,
    pub created_at: u64,
    pub expires_at: u64,
}

/// What a login verified: the hash the password matched, and the argon2id
/// hash replacing it when that was a Django hash. The session is recorded
/// only if the account is still active and still holds `verified` (a
/// password changed or reset, or a deactivation, while the hash ran wins
/// over the login), and `new_hash` replaces it in the same write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordUpgrade<'a> {
    pub verified: &'a str,
    pub new_hash: Option<&'a str>,
}

/// How many rows each table holds (for metrics and housekeeping checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreCounts {
    pub accounts: u64,
    pub sessions: u64,
    pub revocations: u64,
    pub reset_tokens: u64,
}

/// What a revocation produced: the session and the time after which no token
/// of it can be valid any more (when its entry may be dropped).
pub type Revocation = (SessionId, u64);

/// Emails are unique without regard to case or surrounding spaces: this is
/// the key of the email index. New accounts have ASCII addresses only (see
/// `accounts::input::ascii_email`), whose key is their ASCII lower case;
/// accounts stored before that rule keep the key they were given, which this
/// same function still computes, so they are still found.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Whether an address typed by someone names the stored account that its key
/// found. A non-ASCII address never names an ASCII account: `to_lowercase`
/// folds some look-alikes into ASCII (the Kelvin sign U+212A into `k`), and
/// a Kelvin-sign `Kevin@example.com` must not reach `kevin@example.com`'s
/// account. Non-ASCII addresses only exist on accounts stored before the
/// ASCII rule; typed as stored (in any case), they are still found.
pub fn email_names(typed: &str, stored: &str) -> bool {
    typed.trim().is_ascii() || !stored.is_ascii()
}

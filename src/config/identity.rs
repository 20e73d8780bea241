//! `identity_headers:`, the names under which the upstream learns who called.

use http::HeaderName;
use serde::{Deserialize, Deserializer};

use super::{err, values, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeaders {
    #[serde(deserialize_with = "identity_header")]
    pub user_id: HeaderName,
    #[serde(deserialize_with = "identity_header")]
    pub email: HeaderName,
    #[serde(deserialize_with = "identity_header")]
    pub role: HeaderName,
    #[serde(deserialize_with = "identity_header")]
    pub session_id: HeaderName,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            user_id: HeaderName::from_static("x-user-id"),
            email: HeaderName::from_static("x-user-email"),
            role: HeaderName::from_static("x-user-role"),
            session_id: HeaderName::from_static("x-session-id"),
        }
    }
}

/// Headers the gateway sets or forwards itself: no identity header may
/// take their name.
const FORWARDED: [&str; 10] = [
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "cookie",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn identity_header<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HeaderName, D::Error> {
    values::from_str(deserializer, |text| {
        let name = values::header_name(text)?;
        if FORWARDED.contains(&name.as_str()) {
            return Err(format!("`{text}` is a header the gateway forwards"));
        }
        Ok(name)
    })
}

impl IdentityHeaders {
    pub fn all(&self) -> [&HeaderName; 4] {
        [&self.user_id, &self.email, &self.role, &self.session_id]
    }

    /// Each name once (names are compared in lower case).
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let keys = ["user_id", "email", "role", "session_id"];
        let all = self.all();
        for (i, (key, name)) in keys.iter().zip(all).enumerate() {
            if all[..i].contains(&name) {
                return err(
                    &format!("identity_headers.{key}"),
                    format!("`{name}` is used twice"),
                );
            }
        }
        Ok(())
    }
}

//! The signing keys as the store keeps them (`vigile keys rotate`): one row
//! per key, with its state. The store only reads and writes these rows; what
//! they mean (which key signs, which verify) is `keyset.rs`'s business, and
//! how they change is `accounts/keys.rs`'s.

use serde::{Deserialize, Serialize};

/// Where a key stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Signs the tokens issued now (one key at most), and verifies.
    Active,
    /// Signs no more, still verifies the tokens it signed.
    VerifyOnly,
    /// Verifies nothing: a token carrying its `kid` is refused.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::VerifyOnly => "verify_only",
            KeyState::Retired => "retired",
        }
    }

    pub fn parse(text: &str) -> Option<KeyState> {
        match text {
            "active" => Some(KeyState::Active),
            "verify_only" => Some(KeyState::VerifyOnly),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

/// One signing key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The `kid` of its tokens (a thumbprint of the key: see `material.rs`).
    pub kid: String,
    /// `HS256`, `EdDSA` or `RS256`.
    pub algorithm: String,
    pub state: KeyState,
    /// When it was generated (unix seconds); `None` for the key of the
    /// configuration, recorded when the first rotation set it aside.
    pub created_at: Option<u64>,
    /// When it stopped signing: from then on plus the refresh lifetime and
    /// the leeway, no token it signed can be valid, and the gateway retires it.
    pub deactivated_at: Option<u64>,
    pub retired_at: Option<u64>,
    /// The private part (`material::seal`: `sealed:v1:...` or `plain:...`).
    /// `None` for the configuration's key (its material stays in the
    /// configuration) and for a retired key (erased when it is retired).
    pub material: Option<String>,
}

//! The claim sets of the two token types, what a refusal is, what an access
//! token tells, and the time checks every token passes (`check_times`).

use serde::{Deserialize, Serialize};

use super::{KeySet, SessionId};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub email: String,
    pub role: String,
    pub sid: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    pub token_type: String,
    /// Never set by this gateway (and then not written); checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    pub token_type: String,
    /// Never set by this gateway (and then not written); checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Bad signature, bad shape, wrong issuer/audience/algorithm, or the wrong `token_type`.
    Invalid,
    Expired,
}

/// Who the access token speaks for, as the proxy path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub email: String,
    pub role: String,
    pub session: SessionId,
    pub expires_at: u64,
    /// The first second at which the token is valid: its `nbf` and its `iat`,
    /// less the leeway. Checked again on every use of a remembered token.
    pub valid_from: u64,
}

impl KeySet {
    /// Whether a token with this `exp` has expired at `now`, leeway included.
    pub fn is_expired(&self, exp: u64, now: u64) -> bool {
        exp.saturating_add(self.settings.leeway) < now
    }

    /// Whether a token valid from `valid_from` (see `Identity`) is not valid
    /// yet at `now`.
    pub fn is_premature(&self, valid_from: u64, now: u64) -> bool {
        valid_from > now
    }

    /// The time limits of a token whose signature, issuer and audience
    /// passed, at `now`, for a token type whose lifetime is `ttl` seconds:
    /// expired (leeway included) is `Expired`; an `nbf` or an `iat` later
    /// than `now` + leeway, an `exp` before the `iat`, or a lifetime
    /// (`exp - iat`) longer than `ttl` is `Invalid`. On success, the first
    /// second of validity (`Identity::valid_from`).
    pub fn check_times(
        &self,
        iat: u64,
        nbf: Option<u64>,
        exp: u64,
        ttl: u64,
        now: u64,
    ) -> Result<u64, TokenError> {
        if self.is_expired(exp, now) {
            return Err(TokenError::Expired);
        }
        let valid_from = iat
            .max(nbf.unwrap_or(0))
            .saturating_sub(self.settings.leeway);
        if self.is_premature(valid_from, now) {
            return Err(TokenError::Invalid);
        }
        match exp.checked_sub(iat) {
            Some(lifetime) if lifetime <= ttl => Ok(valid_from),
            _ => Err(TokenError::Invalid),
        }
    }
}

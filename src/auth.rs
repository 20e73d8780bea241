//! The first two stages of every protected request: authenticate (who is
//! this?) and authorize (may they?). Plain functions over the token keys and
//! the revocation list, shared by the proxy path and the account endpoints
//! that need a Bearer token. Memory only: no store access per request.

use std::sync::Arc;

use crate::config::RoleName;
use crate::error::{ApiError, ErrorCode};
use crate::revocation::RevocationList;
use crate::tokens::{Identity, SessionId, TokenCache, TokenError, TokenKeys, Verified};

/// Why a request was not authenticated; each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
    Expired,
    Revoked,
}

impl AuthFailure {
    pub fn code(self) -> ErrorCode {
        match self {
            AuthFailure::Missing => ErrorCode::NotAuthenticated,
            AuthFailure::Invalid => ErrorCode::TokenNotValid,
            AuthFailure::Expired => ErrorCode::TokenExpired,
            AuthFailure::Revoked => ErrorCode::TokenRevoked,
        }
    }

    fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "Informations d'authentification non fournies",
            AuthFailure::Invalid => "Le jeton est invalide",
            AuthFailure::Expired => "Le jeton a expiré",
            AuthFailure::Revoked => "Le jeton a été révoqué",
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> ApiError {
        ApiError::unauthenticated(f.code(), f.message())
    }
}

impl From<TokenError> for AuthFailure {
    fn from(e: TokenError) -> AuthFailure {
        match e {
            TokenError::Invalid => AuthFailure::Invalid,
            TokenError::Expired => AuthFailure::Expired,
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header. `None` when the
/// header uses another scheme; `Some("")` when the token is missing.
pub fn bearer_token(header: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// `Ok(None)`: no Bearer token was sent. `Ok(Some)`: a valid access token of a
/// session that has not been revoked.
pub fn authenticate(
    authorization: Option<&[u8]>,
    tokens: &TokenKeys,
    revocations: &RevocationList,
) -> Result<Option<Identity>, AuthFailure> {
    check_bearer(
        authorization,
        revocations,
        |token| tokens.verify_access(token),
        |identity| identity.session,
    )
}

/// The same verdicts, through the cache of verified tokens (the proxy path).
pub fn authenticate_cached(
    authorization: Option<&[u8]>,
    tokens: &TokenKeys,
    cache: &TokenCache,
    revocations: &RevocationList,
) -> Result<Option<Arc<Verified>>, AuthFailure> {
    check_bearer(
        authorization,
        revocations,
        |token| cache.verify(token, tokens, crate::unix_now()),
        |verified| verified.identity.session,
    )
}

fn check_bearer<T>(
    authorization: Option<&[u8]>,
    revocations: &RevocationList,
    verify: impl FnOnce(&str) -> Result<T, TokenError>,
    session: impl FnOnce(&T) -> SessionId,
) -> Result<Option<T>, AuthFailure> {
    let Some(token) = authorization.and_then(bearer_token) else {
        return Ok(None);
    };
    if token.is_empty() {
        return Err(AuthFailure::Invalid);
    }
    let verified = verify(token)?;
    if revocations.is_revoked(session(&verified)) {
        return Err(AuthFailure::Revoked);
    }
    Ok(Some(verified))
}

/// 403 unless the identity's role is among `roles` (an empty list allows all).
pub fn authorize(identity: &Identity, roles: &[RoleName]) -> Result<(), ApiError> {
    if roles.is_empty() || roles.iter().any(|r| r.as_str() == identity.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_found_whatever_the_case() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bearer   abc "), Some("abc"));
        assert_eq!(bearer_token(b"Bearer"), Some(""));
        assert_eq!(bearer_token(b"Basic Zm9vOmJhcg=="), None);
        assert_eq!(bearer_token(b"\xff\xfe"), None);
    }
}

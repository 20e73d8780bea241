//! JSON Web Tokens: issuing access and refresh tokens, and checking them.
//!
//! The algorithm is pinned by configuration: a token signed with any other
//! (`none` included) fails the check. Issuer, audience, expiry (with the
//! configured leeway) and the `token_type` claim are checked on every token,
//! and so are its time limits (`check_times`): no `nbf` or `iat` in the
//! future, no lifetime (`exp - iat`) longer than the configured one. A token
//! signed far into the future would otherwise outlive the revocation entry
//! of its session, which is dropped once every token of it should have expired.
//!
//! - `keys`: the keys, from the configuration or generated, and the JWKS;
//! - `ids`: session and token ids, the subject of an access token;
//! - `claims`: the claim sets, `Identity`, `TokenError` and `check_times`;
//! - `issue`: issuing tokens;
//! - `verify`: checking them through jsonwebtoken (the general path);
//! - `fast`: the HS256 fast path and its hand-written claims reader;
//! - `cache`: the access tokens the proxy path has already verified.

mod cache;
mod claims;
mod fast;
mod ids;
mod issue;
mod keys;
mod verify;

#[cfg(test)]
pub(crate) mod fixtures;

pub use cache::{TokenCache, Verified};
pub use claims::{AccessClaims, Identity, RefreshClaims, TokenError};
pub use ids::{hex128, hex128_into, random_token_id, SessionId, Subject};
pub use keys::{KeyError, TokenKeys};

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
//! - `keys`: `TokenKeys`, the key set in force behind an atomic pointer,
//!   swapped on a reload or a rotation;
//! - `keyset`: one key set: which key signs, which verify (by `kid`), the
//!   settings, the JWKS;
//! - `material`: one key (from the configuration, generated, or stored),
//!   its `kid`, and the sealing of stored private parts;
//! - `stored`: the signing keys as the store keeps them, with their state;
//! - `ids`: session and token ids, the subject of an access token;
//! - `claims`: the claim sets, `Identity`, `TokenError` and `check_times`;
//! - `issue`: issuing tokens;
//! - `verify`: checking them through jsonwebtoken (the general path);
//! - `fast`: the HS256 fast path and its hand-written claims reader;
//! - `cache`: the access tokens the proxy path has already verified;
//! - `simplejwt`: the tokens of the system vigile replaces, during the cut-over.

mod cache;
mod claims;
mod fast;
mod ids;
mod issue;
mod keys;
mod keyset;
mod material;
mod simplejwt;
mod stored;
mod verify;

#[cfg(test)]
pub(crate) mod fixtures;

pub use cache::{TokenCache, Verified};
pub use claims::{AccessClaims, Identity, RefreshClaims, TokenError};
pub use ids::{hex128, hex128_into, random_token_id, SessionId, Subject};
pub use keys::{KeyError, TokenKeys};
pub use keyset::{KeyInfo, KeySet};
pub use material::{sealing_enabled, ENCRYPTION_KEY_ENV};
pub use simplejwt::{LegacyClaims, SimpleJwt};
pub use stored::{KeyState, StoredKey};

/// A new key of the configured algorithm for `vigile keys rotate`: its
/// `kid` and its private part as a store keeps it (`material::seal`).
pub fn generate_stored_key(alg: crate::config::Algorithm, now: u64) -> Result<StoredKey, KeyError> {
    let bytes = material::generate(alg)?;
    let key = material::parse(alg, &bytes, "a generated key")?;
    Ok(StoredKey {
        material: Some(material::seal(&key.kid, &bytes)?),
        kid: key.kid,
        algorithm: material::algorithm_name(alg).to_string(),
        state: KeyState::Active,
        created_at: Some(now),
        deactivated_at: None,
        retired_at: None,
    })
}

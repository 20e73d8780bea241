//! The access tokens the proxy path has already verified, by their exact
//! text. A client sends the same access token on every request of its
//! lifetime (5 minutes by default); a token seen again skips the signature,
//! the base64 and the claims parse, most of the cost of the check. What can
//! change between two requests is still checked on every one: expiry and
//! the start of validity (`nbf`/`iat`, against the claims kept here) and
//! revocation (by the caller). The lifetime limit (`exp - iat`) does not
//! change: it was checked before the token got in.
//!
//! Only tokens whose signature was verified get in, and a lookup compares the
//! whole token byte for byte, so the cache never admits a token the keys
//! would refuse. Memory is bounded: each shard keeps two generations of at
//! most `capacity / SHARDS` tokens. When the current one is full it becomes
//! the previous one and the older one is dropped; a token found in the
//! previous generation moves to the current one, so tokens in use stay.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use http::HeaderValue;
use parking_lot::Mutex;

use super::{hex128_into, Identity, SessionId, TokenError, TokenKeys};

const SHARDS: usize = 16;

/// A verified token and the generation of the key set that verified it.
type Map = HashMap<Box<str>, (Arc<Verified>, u64), foldhash::fast::RandomState>;

/// A verified access token: who it speaks for, and the values of the
/// identity headers, built once.
pub struct Verified {
    pub identity: Identity,
    /// User id, email, role and session id, sharing one buffer.
    pub header_values: [HeaderValue; 4],
}

impl Verified {
    /// Refuses an identity that could not be forwarded in headers (a control
    /// character in a claim): such a token is not valid here.
    pub fn new(identity: Identity) -> Result<Verified, TokenError> {
        let mut session = [0u8; 32];
        hex128_into(identity.session.0, &mut session);
        let parts: [&[u8]; 4] = [
            identity.account_id.as_bytes(),
            identity.email.as_bytes(),
            identity.role.as_bytes(),
            &session,
        ];
        let mut buffer = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0usize; 4];
        for (end, part) in ends.iter_mut().zip(parts) {
            buffer.put_slice(part);
            *end = buffer.len();
        }
        let all = buffer.freeze();
        let value = |i: usize| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            HeaderValue::from_maybe_shared(all.slice(start..ends[i]))
                .map_err(|_| TokenError::Invalid)
        };
        let header_values = [value(0)?, value(1)?, value(2)?, value(3)?];
        Ok(Verified {
            identity,
            header_values,
        })
    }

    /// The caller of a Django access token (`migration.simplejwt`): the
    /// account as stored, no session (its session header value is empty,
    /// and an empty identity header is not sent).
    pub fn legacy(
        account_id: u64,
        email: &str,
        role: &str,
        expires_at: u64,
    ) -> Result<Verified, TokenError> {
        let mut verified = Verified::new(Identity {
            account_id: account_id.to_string(),
            email: email.to_string(),
            role: role.to_string(),
            session: SessionId(0),
            expires_at,
            valid_from: 0,
        })?;
        verified.header_values[3] = HeaderValue::from_static("");
        Ok(verified)
    }
}

struct Shard {
    current: Map,
    previous: Map,
}

pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
}

impl TokenCache {
    /// Remembers up to about `capacity` tokens (twice that at most); 0 turns
    /// the cache off.
    pub fn new(capacity: usize) -> TokenCache {
        let per_shard = capacity.div_ceil(SHARDS);
        let hasher = foldhash::fast::RandomState::default();
        let shards = (0..if per_shard == 0 { 0 } else { SHARDS })
            .map(|_| {
                Mutex::new(Shard {
                    current: Map::with_hasher(hasher.clone()),
                    previous: Map::with_hasher(hasher.clone()),
                })
            })
            .collect();
        TokenCache {
            shards,
            per_shard,
            hasher,
        }
    }

    /// How many tokens are remembered now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.current.len() + s.previous.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same verdicts as `TokenKeys::verify_access` at time `now`.
    pub fn verify(
        &self,
        token: &str,
        keys: &TokenKeys,
        now: u64,
    ) -> Result<Arc<Verified>, TokenError> {
        let keys = keys.current();
        if self.shards.is_empty() {
            return Verified::new(keys.verify_access(token)?).map(Arc::new);
        }
        let shard = &self.shards[shard_of(token)];
        let known = shard.lock().get(token, self.per_shard, &self.hasher);
        // A token verified by another key set (before a rotation, a
        // retirement, a reload) is verified again: its key may be retired.
        if let Some((verified, _)) = known.filter(|(_, g)| *g == keys.generation) {
            if keys.is_expired(verified.identity.expires_at, now) {
                return Err(TokenError::Expired);
            }
            // Only valid tokens get in, so this holds unless the clock went
            // back since: then the token is not valid yet, as on a first use.
            if keys.is_premature(verified.identity.valid_from, now) {
                return Err(TokenError::Invalid);
            }
            return Ok(verified);
        }
        let verified = Arc::new(Verified::new(keys.verify_access(token)?)?);
        shard.lock().insert(
            token.into(),
            (verified.clone(), keys.generation),
            self.per_shard,
            &self.hasher,
        );
        Ok(verified)
    }
}

/// The shard of a token, from its last bytes (signature characters).
fn shard_of(token: &str) -> usize {
    let tail = &token.as_bytes()[token.len().saturating_sub(8)..];
    tail.iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize))
        % SHARDS
}

impl Shard {
    fn get(
        &mut self,
        token: &str,
        capacity: usize,
        hasher: &foldhash::fast::RandomState,
    ) -> Option<(Arc<Verified>, u64)> {
        if let Some(entry) = self.current.get(token) {
            return Some(entry.clone());
        }
        let (key, entry) = self.previous.remove_entry(token)?;
        self.insert(key, entry.clone(), capacity, hasher);
        Some(entry)
    }

    fn insert(
        &mut self,
        token: Box<str>,
        verified: (Arc<Verified>, u64),
        capacity: usize,
        hasher: &foldhash::fast::RandomState,
    ) {
        if self.current.len() >= capacity {
            let fresh = Map::with_capacity_and_hasher(capacity, hasher.clone());
            self.previous = std::mem::replace(&mut self.current, fresh);
        }
        self.current.insert(token, verified);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{hs_keys, subject};
    use super::super::SessionId;
    use super::*;

    fn keys() -> TokenKeys {
        hs_keys(b"0123456789abcdef0123456789abcdef")
    }

    fn token(keys: &TokenKeys, now: u64) -> String {
        keys.issue_access(&subject(), SessionId::random(), now)
            .expect("issue")
    }

    #[test]
    fn a_cached_token_gets_the_same_verdicts() {
        let keys = keys();
        let cache = TokenCache::new(64);
        let now = crate::unix_now();
        let good = token(&keys, now);
        for _ in 0..3 {
            let verified = cache.verify(&good, &keys, now).expect("valid");
            assert_eq!(verified.identity.account_id, "7");
            assert_eq!(verified.header_values[1], "dev@example.com");
            assert_eq!(verified.header_values[2], "Visiteur");
        }
        assert_eq!(cache.len(), 1);
        // The same token later than its expiry: refused although cached.
        assert_eq!(
            cache.verify(&good, &keys, now + 301).err(),
            Some(TokenError::Expired)
        );
        // One byte changed in the signature: verified again, and refused.
        let mut forged = good.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_eq!(
            cache.verify(&forged, &keys, now).err(),
            Some(TokenError::Invalid)
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_cached_token_is_not_valid_before_it_was_issued() {
        let keys = keys();
        let cache = TokenCache::new(64);
        let now = crate::unix_now();
        let good = token(&keys, now);
        assert!(cache.verify(&good, &keys, now).is_ok());
        assert_eq!(cache.len(), 1);
        // The clock went back: the remembered token is refused as on a first use.
        assert_eq!(
            cache.verify(&good, &keys, now - 10).err(),
            Some(TokenError::Invalid)
        );
        assert!(cache.verify(&good, &keys, now).is_ok());
    }

    #[test]
    fn memory_stays_bounded_and_tokens_in_use_stay() {
        let keys = keys();
        let cache = TokenCache::new(SHARDS * 4);
        let now = crate::unix_now();
        let busy = token(&keys, now);
        for _ in 0..500 {
            cache.verify(&busy, &keys, now).expect("valid");
            cache.verify(&token(&keys, now), &keys, now).expect("valid");
        }
        assert!(cache.len() <= 2 * SHARDS * 4, "{} tokens kept", cache.len());
        let shard = cache.shards[shard_of(&busy)].lock();
        assert!(shard.current.contains_key(busy.as_str()));
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let keys = keys();
        let cache = TokenCache::new(0);
        let now = crate::unix_now();
        let good = token(&keys, now);
        assert!(cache.verify(&good, &keys, now).is_ok());
        assert!(cache.is_empty());
    }
}

//! The tokens of the system vigile replaces (Django REST framework
//! simplejwt), during the cut-over (`migration.simplejwt`): checked with its
//! signing key and algorithm, its `exp` (without leeway, as simplejwt's own
//! default `LEEWAY` of 0: the store keeps a used token's `jti` until `exp`
//! exactly, and not a second more), its `token_type`, `jti`, `iat` and
//! user-id claim, and refused from `until` on.
//! Never on the path of vigile's own tokens: only a token that failed
//! vigile's check comes here.

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::TokenError;
use crate::config::{SimpleJwtAlgorithm, SimpleJwtConfig};

/// What simplejwt put in a token vigile accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyClaims {
    pub account_id: u64,
    pub jti: String,
    pub exp: u64,
    /// When it was issued (0 when the token does not say: refused once the
    /// account has a cut-off).
    pub iat: u64,
    /// `token_type`: `refresh` or `access`.
    pub refresh: bool,
}

/// 2^53 - 1.
const MAX_SAFE: u64 = 9_007_199_254_740_991;

pub struct SimpleJwt {
    key: DecodingKey,
    validation: Validation,
    user_id_claim: String,
    until: u64,
    pub accept_access: bool,
}

impl std::fmt::Debug for SimpleJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleJwt")
            .field("until", &self.until)
            .field("accept_access", &self.accept_access)
            .finish_non_exhaustive()
    }
}

impl SimpleJwt {
    pub fn new(config: &SimpleJwtConfig) -> SimpleJwt {
        let algorithm = match config.algorithm {
            SimpleJwtAlgorithm::HS256 => Algorithm::HS256,
            SimpleJwtAlgorithm::HS384 => Algorithm::HS384,
            SimpleJwtAlgorithm::HS512 => Algorithm::HS512,
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        SimpleJwt {
            key: DecodingKey::from_secret(&config.key),
            validation,
            user_id_claim: config.user_id_claim.clone(),
            until: config.until_unix,
            accept_access: config.accept_access,
        }
    }

    /// The claims of a valid simplejwt token, at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<LegacyClaims, TokenError> {
        if now >= self.until || token.len() > 8 * 1024 {
            return Err(TokenError::Invalid);
        }
        let data = decode::<Map<String, Value>>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        let claims = data.claims;
        let refresh = match claims.get("token_type").and_then(Value::as_str) {
            Some("refresh") => true,
            Some("access") => false,
            _ => return Err(TokenError::Invalid),
        };
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty() && j.len() <= 255 && j.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or(TokenError::Invalid)?
            .to_string();
        // Ids and times beyond 2^53 exist in no Django database or clock
        // (and no store column holds them).
        let bounded = |n: u64| (n <= MAX_SAFE).then_some(n);
        let account_id = match claims.get(&self.user_id_claim) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .filter(|id| *id > 0)
        .and_then(bounded)
        .ok_or(TokenError::Invalid)?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .and_then(bounded)
            .ok_or(TokenError::Invalid)?;
        let iat = match claims.get("iat") {
            None => 0,
            Some(v) => v.as_u64().and_then(bounded).ok_or(TokenError::Invalid)?,
        };
        Ok(LegacyClaims {
            account_id,
            jti,
            exp,
            iat,
            refresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const KEY: &[u8] = b"django-insecure-peer-seed-key-change-me-0123456789abcdefghijklmnop";

    fn config(until: u64) -> SimpleJwtConfig {
        SimpleJwtConfig {
            signing_key_env: "DJANGO_SECRET_KEY".into(),
            signing_key_file: None,
            algorithm: SimpleJwtAlgorithm::HS256,
            user_id_claim: "user_id".into(),
            until: String::new(),
            accept_access: false,
            key: KEY.to_vec(),
            until_unix: until,
        }
    }

    fn token(alg: Algorithm, key: &[u8], claims: Value) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).expect("encode")
    }

    #[test]
    fn simplejwt_tokens_are_read_and_others_refused() {
        let now = crate::unix_now();
        let jwt = SimpleJwt::new(&config(now + 100));
        let claims = json!({"token_type": "refresh", "exp": now + 60, "iat": now,
                            "jti": "2f7c4bd1a3e04f5e9d5c1e6a7b8c9d0e", "user_id": 7});
        let ok = token(Algorithm::HS256, KEY, claims.clone());
        assert_eq!(
            jwt.verify(&ok, now),
            Ok(LegacyClaims {
                account_id: 7,
                jti: "2f7c4bd1a3e04f5e9d5c1e6a7b8c9d0e".into(),
                exp: now + 60,
                iat: now,
                refresh: true
            })
        );
        // Past `until`, nothing passes.
        assert_eq!(jwt.verify(&ok, now + 100), Err(TokenError::Invalid));
        // Another key, another algorithm, `none`.
        for bad in [
            token(Algorithm::HS256, b"another key", claims.clone()),
            token(Algorithm::HS512, KEY, claims.clone()),
            format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                ok.split('.').nth(1).unwrap_or_default()
            ),
        ] {
            assert_eq!(jwt.verify(&bad, now), Err(TokenError::Invalid));
        }
        let expired = json!({"token_type": "access", "exp": now - 5, "jti": "a", "user_id": 7});
        assert_eq!(
            jwt.verify(&token(Algorithm::HS256, KEY, expired), now),
            Err(TokenError::Expired)
        );
        for claims in [
            json!({"token_type": "other", "exp": now + 60, "jti": "a", "user_id": 7}),
            json!({"token_type": "access", "exp": now + 60, "user_id": 7}),
            json!({"token_type": "access", "exp": now + 60, "jti": "a", "user_id": -7}),
            json!({"token_type": "access", "exp": now + 60, "jti": "a b", "user_id": 7}),
            json!({"token_type": "access", "exp": now + 60, "jti": "a"}),
            json!({"token_type": "access", "jti": "a", "user_id": 7}),
            json!({"token_type": "access", "exp": now + 60, "jti": "a", "user_id": 1u64 << 60}),
            json!({"token_type": "access", "exp": now + 60, "jti": "a", "user_id": 7, "iat": "x"}),
        ] {
            let t = token(Algorithm::HS256, KEY, claims.clone());
            assert_eq!(jwt.verify(&t, now), Err(TokenError::Invalid), "{claims}");
        }
        let string_id =
            json!({"token_type": "access", "exp": now + 60, "jti": "a", "user_id": "12"});
        let t = token(Algorithm::HS256, KEY, string_id);
        assert_eq!(jwt.verify(&t, now).map(|c| c.account_id), Ok(12));
    }
}

//! Checking tokens through jsonwebtoken's decoder (the general path), and
//! the access-token check that tries the HS256 fast path first.

use jsonwebtoken::errors::ErrorKind;

use super::fast::Fast;
use super::{AccessClaims, Identity, KeySet, RefreshClaims, SessionId, TokenError, TokenKeys};

impl KeySet {
    /// jsonwebtoken's decoding with the key the token's `kid` names (see
    /// `key_for`) and the configured algorithm: an unknown `kid` is
    /// `Invalid`, and the header's `alg` must be the configured one.
    pub(super) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let key = self
            .key_for(header.kid.as_deref())
            .ok_or(TokenError::Invalid)?;
        match jsonwebtoken::decode::<T>(token, &key.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }

    /// Signature, algorithm, issuer, audience, expiry and type of an access
    /// token: the HS256 fast path of the key its header names first.
    pub fn verify_access(&self, token: &str) -> Result<Identity, TokenError> {
        for fast in &self.fast {
            match fast.verify_access(token, self) {
                Fast::Done(result) => return result,
                Fast::Generic => {}
            }
        }
        self.verify_access_general(token)
    }

    /// `verify_access` through jsonwebtoken's decoder only: the reference the
    /// fast path is held to.
    pub(super) fn verify_access_general(&self, token: &str) -> Result<Identity, TokenError> {
        let claims: AccessClaims = self.decode(token)?;
        if claims.token_type != "access" {
            return Err(TokenError::Invalid);
        }
        let now = crate::unix_now();
        let valid_from = self.check_times(
            claims.iat,
            claims.nbf,
            claims.exp,
            self.settings.access_limit(now),
            now,
        )?;
        let session = claims.sid.parse().map_err(|_| TokenError::Invalid)?;
        Ok(Identity {
            account_id: claims.sub,
            email: claims.email,
            role: claims.role,
            session,
            expires_at: claims.exp,
            valid_from,
        })
    }

    /// A refresh token's session and `jti`, after the same checks.
    pub fn verify_refresh(&self, token: &str) -> Result<(u64, SessionId, u128), TokenError> {
        let claims: RefreshClaims = self.decode(token)?;
        if claims.token_type != "refresh" {
            return Err(TokenError::Invalid);
        }
        let now = crate::unix_now();
        self.check_times(
            claims.iat,
            claims.nbf,
            claims.exp,
            self.settings.refresh_limit(now),
            now,
        )?;
        let account = claims.sub.parse().map_err(|_| TokenError::Invalid)?;
        let session = claims.sid.parse().map_err(|_| TokenError::Invalid)?;
        let jti = u128::from_str_radix(&claims.jti, 16).map_err(|_| TokenError::Invalid)?;
        Ok((account, session, jti))
    }
}

impl TokenKeys {
    /// `KeySet::verify_access` with the set in force. Revocation is the
    /// caller's second step.
    pub fn verify_access(&self, token: &str) -> Result<Identity, TokenError> {
        self.current().verify_access(token)
    }

    /// `KeySet::verify_refresh` with the set in force.
    pub fn verify_refresh(&self, token: &str) -> Result<(u64, SessionId, u128), TokenError> {
        self.current().verify_refresh(token)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::config::{Algorithm, KeySource};

    #[test]
    fn an_access_token_round_trips() {
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let sid = SessionId::random();
        let token = keys
            .issue_access(&subject(), sid, crate::unix_now())
            .expect("issue");
        let id = keys.verify_access(&token).expect("valid");
        assert_eq!(id.account_id, "7");
        assert_eq!(id.role, "Visiteur");
        assert_eq!(id.session, sid);
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let sid = SessionId::random();
        let old = keys
            .issue_access(&subject(), sid, crate::unix_now() - 1000)
            .expect("issue");
        assert_eq!(keys.verify_access(&old), Err(TokenError::Expired));

        let good = keys
            .issue_access(&subject(), sid, crate::unix_now())
            .expect("issue");
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[1] = parts[1].replacen('e', "f", 1);
        assert_eq!(
            keys.verify_access(&parts.join(".")),
            Err(TokenError::Invalid)
        );

        let other = hs_keys(b"another secret, another gateway!");
        assert_eq!(other.verify_access(&good), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine;
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let good = keys
            .issue_access(&subject(), SessionId::random(), crate::unix_now())
            .expect("issue");
        let payload = good.split('.').nth(1).expect("payload");
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            keys.verify_access(&format!("{header}.{payload}.")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tokens_from_the_future_or_living_too_long_are_refused() {
        use serde_json::json;
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let now = crate::unix_now();
        let good = access_claims(now, now + 300);
        let refused = [
            with(good.clone(), "nbf", json!(now + 60)),
            with(good.clone(), "nbf", json!(u64::MAX)),
            with(good.clone(), "nbf", json!("0")),
            with(good.clone(), "nbf", json!(1.5)),
            with(good.clone(), "nbf", json!(-1)),
            access_claims(now + 60, now + 360),
            access_claims(u64::MAX - 1, u64::MAX),
            access_claims(now, now + 301),
            access_claims(now - 10, u64::MAX),
            access_claims(0, now + 300),
            access_claims(now + 5, now + 1),
            with(good.clone(), "iat", json!(1e20)),
            with(good.clone(), "iat", json!(-5)),
            with(good.clone(), "iat", json!(now as f64 + 0.5)),
            with(good.clone(), "iat", json!(now.to_string())),
            without(good.clone(), "iat"),
        ];
        for claims in &refused {
            for ours in [true, false] {
                let token = forge(&keys, claims, ours);
                assert_eq!(
                    keys.verify_access(&token).err(),
                    Some(TokenError::Invalid),
                    "{claims} (our header: {ours})"
                );
            }
        }
        let accepted = [
            good.clone(),
            with(good.clone(), "nbf", json!(now)),
            with(good.clone(), "nbf", json!(now - 100)),
            access_claims(now - 299, now + 1),
        ];
        for claims in &accepted {
            for ours in [true, false] {
                let token = forge(&keys, claims, ours);
                assert!(
                    keys.verify_access(&token).is_ok(),
                    "{claims} (ours: {ours})"
                );
            }
        }
        // Expiry is still told apart.
        let expired = forge(&keys, &access_claims(now - 400, now - 100), true);
        assert_eq!(keys.verify_access(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn refresh_tokens_have_the_same_limits_with_their_own_lifetime() {
        use serde_json::json;
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let now = crate::unix_now();
        let day = 86_400;
        assert!(keys
            .verify_refresh(&forge(&keys, &refresh_claims(now, now + day), true))
            .is_ok());
        for claims in [
            refresh_claims(now, now + day + 1),
            refresh_claims(now + 60, now + day),
            with(refresh_claims(now, now + day), "nbf", json!(now + 60)),
            without(refresh_claims(now, now + day), "iat"),
            refresh_claims(now, u64::MAX),
        ] {
            assert_eq!(
                keys.verify_refresh(&forge(&keys, &claims, true)),
                Err(TokenError::Invalid),
                "{claims}"
            );
        }
        // What this gateway issues passes, at once.
        let sid = SessionId::random();
        let refresh = keys
            .issue_refresh(7, sid, 3, now, now + day)
            .expect("issue");
        assert_eq!(keys.verify_refresh(&refresh), Ok((7, sid, 3)));
        let access = keys.issue_access(&subject(), sid, now).expect("issue");
        assert_eq!(keys.verify_access(&access).map(|i| i.valid_from), Ok(now));
    }

    #[test]
    fn the_leeway_applies_to_iat_and_nbf() {
        use serde_json::json;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(
            Algorithm::HS256,
            KeySource::Secret(b"0123456789abcdef0123456789abcdef".to_vec()),
        );
        cfg.leeway = std::time::Duration::from_secs(30);
        let keys = TokenKeys::from_config(&cfg, dir.path()).expect("keys");
        let now = crate::unix_now();
        let skewed = access_claims(now + 20, now + 320);
        let id = keys
            .verify_access(&forge(&keys, &skewed, true))
            .expect("within the leeway");
        assert!(id.valid_from <= now);
        let nbf = with(access_claims(now, now + 300), "nbf", json!(now + 20));
        assert!(keys.verify_access(&forge(&keys, &nbf, false)).is_ok());
        for claims in [
            access_claims(now + 40, now + 340),
            with(access_claims(now, now + 300), "nbf", json!(now + 40)),
        ] {
            assert_eq!(
                keys.verify_access(&forge(&keys, &claims, true)),
                Err(TokenError::Invalid),
                "{claims}"
            );
        }
    }

    #[test]
    fn a_refresh_token_is_not_an_access_token() {
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let now = crate::unix_now();
        let sid = SessionId::random();
        let refresh = keys
            .issue_refresh(7, sid, 42, now, now + 60)
            .expect("issue");
        assert_eq!(keys.verify_access(&refresh), Err(TokenError::Invalid));
        assert_eq!(keys.verify_refresh(&refresh), Ok((7, sid, 42)));
        let access = keys.issue_access(&subject(), sid, now).expect("issue");
        assert_eq!(keys.verify_refresh(&access), Err(TokenError::Invalid));
    }
}

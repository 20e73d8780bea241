//! The HS256 fast path: the access-token check of the tokens this gateway
//! issues, with the hand-written reader of their claims.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use jsonwebtoken::Header;
use serde::Deserialize;
use sha2::Sha256;

use super::{Identity, KeyError, KeySet, TokenError};

/// The access-token check for the tokens this gateway issues with HS256:
/// their header is exactly ours, so it is compared as text instead of being
/// decoded, the HMAC state is keyed once, and the claims are read in place.
/// Anything else (another header, an `aud` list, odd JSON) goes to the generic
/// decoder, which gives the same verdicts, only slower. Where it decides, it
/// gives the generic decoder's verdicts too (`proptests`): the same refusals,
/// `Expired` told apart the same way, the same claims read.
pub(super) struct FastHs256 {
    /// `<base64url of our header>.`
    prefix: String,
    mac: Hmac<Sha256>,
}

pub(super) enum Fast {
    Done(Result<Identity, TokenError>),
    Generic,
}

#[derive(Deserialize)]
struct AccessClaimsRef<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    aud: Cow<'a, str>,
    #[serde(borrow)]
    sub: Cow<'a, str>,
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    sid: Cow<'a, str>,
    /// Not used, but a claim of `AccessClaims` all the same: the general path
    /// refuses a token without it (or with it twice, or not a string).
    #[serde(borrow)]
    #[allow(dead_code)]
    jti: Cow<'a, str>,
    iat: u64,
    exp: u64,
    #[serde(borrow)]
    token_type: Cow<'a, str>,
    #[serde(default)]
    nbf: Option<u64>,
}

/// Reads the claims exactly as `issue_access` writes them (serde_json, field
/// order of `AccessClaims`, no escapes) without a general JSON parse (what it
/// saves: benches/README.md, "Micro"). Anything else gives `None`, and the
/// caller falls back to serde_json.
fn read_own_claims(json: &str) -> Option<AccessClaimsRef<'_>> {
    struct Cursor<'a>(&'a str);
    impl<'a> Cursor<'a> {
        fn key(&mut self, literal: &str) -> Option<()> {
            self.0 = self.0.strip_prefix(literal)?;
            Some(())
        }
        /// A string without escapes or control characters (JSON has none
        /// raw: serde_json refuses them).
        fn string(&mut self) -> Option<Cow<'a, str>> {
            let rest = self.0.strip_prefix('"')?;
            let end = rest.find(|c: char| c == '"' || c == '\\' || c < ' ')?;
            if rest.as_bytes()[end] != b'"' {
                return None;
            }
            self.0 = &rest[end + 1..];
            Some(Cow::Borrowed(&rest[..end]))
        }
        /// A JSON integer that fits a `u64` (no sign, no leading zero,
        /// no fraction or exponent: those are serde_json's job).
        fn number(&mut self) -> Option<u64> {
            let end = self
                .0
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(self.0.len());
            let digits = &self.0[..end];
            if digits.len() > 1 && digits.starts_with('0') {
                return None;
            }
            let n = digits.parse().ok()?;
            self.0 = &self.0[end..];
            Some(n)
        }
    }
    let mut c = Cursor(json);
    c.key("{\"iss\":")?;
    let iss = c.string()?;
    c.key(",\"aud\":")?;
    let aud = c.string()?;
    c.key(",\"sub\":")?;
    let sub = c.string()?;
    c.key(",\"email\":")?;
    let email = c.string()?;
    c.key(",\"role\":")?;
    let role = c.string()?;
    c.key(",\"sid\":")?;
    let sid = c.string()?;
    c.key(",\"jti\":")?;
    let jti = c.string()?;
    c.key(",\"iat\":")?;
    let iat = c.number()?;
    c.key(",\"exp\":")?;
    let exp = c.number()?;
    c.key(",\"token_type\":")?;
    let token_type = c.string()?;
    (c.0 == "}").then_some(AccessClaimsRef {
        iss,
        aud,
        sub,
        email,
        role,
        sid,
        jti,
        iat,
        exp,
        token_type,
        nbf: None,
    })
}

/// serde_json's reading of the claims, of an object only: a derived struct
/// is also read from an array, by position, which jsonwebtoken refuses.
fn read_claims(payload: &[u8]) -> Option<AccessClaimsRef<'_>> {
    let start = payload
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    if *start != b'{' {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

impl FastHs256 {
    pub(super) fn new(header: &Header, secret: &[u8]) -> Result<FastHs256, KeyError> {
        use base64::Engine;
        let json = serde_json::to_vec(header)?;
        let prefix = format!(
            "{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        );
        let mac = Hmac::<Sha256>::new_from_slice(secret)?;
        Ok(FastHs256 { prefix, mac })
    }

    pub(super) fn verify_access(&self, token: &str, keys: &KeySet) -> Fast {
        use base64::Engine;
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Some(rest) = token.strip_prefix(self.prefix.as_str()) else {
            return Fast::Generic;
        };
        let Some((payload_b64, signature_b64)) = rest.rsplit_once('.') else {
            return Fast::Done(Err(TokenError::Invalid));
        };
        let mut signature = [0u8; 32];
        match engine.decode_slice(signature_b64, &mut signature) {
            Ok(32) => {}
            _ => return Fast::Done(Err(TokenError::Invalid)),
        }
        let mut mac = self.mac.clone();
        mac.update(&token.as_bytes()[..self.prefix.len() + payload_b64.len()]);
        if mac.verify_slice(&signature).is_err() {
            return Fast::Done(Err(TokenError::Invalid));
        }
        // Our payloads are a few hundred bytes: decode them on the stack.
        let mut buffer = [0u8; 1024];
        let Ok(len) = engine.decode_slice(payload_b64, &mut buffer) else {
            return Fast::Generic;
        };
        let payload = &buffer[..len];
        let own = std::str::from_utf8(payload).ok().and_then(read_own_claims);
        let Some(claims) = own.or_else(|| read_claims(payload)) else {
            return Fast::Generic;
        };
        // Expiry first, as jsonwebtoken: an expired token is `Expired`
        // whatever else is wrong with it; every other refusal is `Invalid`.
        let now = crate::unix_now();
        let valid_from = match keys.check_times(
            claims.iat,
            claims.nbf,
            claims.exp,
            keys.settings.access_limit(now),
            now,
        ) {
            Ok(valid_from) => valid_from,
            Err(e) => return Fast::Done(Err(e)),
        };
        if claims.iss != keys.settings.issuer || claims.aud != keys.settings.audience {
            return Fast::Done(Err(TokenError::Invalid));
        }
        if claims.token_type != "access" {
            return Fast::Done(Err(TokenError::Invalid));
        }
        let Ok(session) = claims.sid.parse() else {
            return Fast::Done(Err(TokenError::Invalid));
        };
        Fast::Done(Ok(Identity {
            account_id: claims.sub.into_owned(),
            email: claims.email.into_owned(),
            role: claims.role.into_owned(),
            session,
            expires_at: claims.exp,
            valid_from,
        }))
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::{AccessClaims, SessionId};
    use super::*;

    #[test]
    fn the_fast_path_takes_our_tokens_and_agrees_with_the_generic_one() {
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let set = keys.current();
        let fast = set.fast.first().expect("HS256 has a fast path");
        let now = crate::unix_now();
        let sid = SessionId::random();
        let good = keys.issue_access(&subject(), sid, now).expect("issue");
        assert!(
            good.starts_with(&fast.prefix),
            "issued tokens carry our header"
        );
        let expired = keys
            .issue_access(&subject(), sid, now - 1000)
            .expect("issue");
        let refresh = keys.issue_refresh(7, sid, 1, now, now + 60).expect("issue");
        let mut tampered = good.clone();
        tampered.pop();
        tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
        for token in [&good, &expired, &refresh, &tampered] {
            let generic = set.decode::<AccessClaims>(token).and_then(|c| {
                if c.token_type == "access" {
                    Ok(c.sub)
                } else {
                    Err(TokenError::Invalid)
                }
            });
            if token != &refresh {
                assert!(
                    matches!(fast.verify_access(token, &set), Fast::Done(_)),
                    "our own access tokens take the fast path"
                );
            }
            let fast_result = keys.verify_access(token).map(|id| id.account_id);
            assert_eq!(fast_result, generic, "{token}");
        }
    }

    #[test]
    fn our_claims_are_read_without_a_general_parser_and_others_fall_back() {
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let sid = SessionId::random();
        let token = keys.issue_access(&subject(), sid, 1_000).expect("issue");
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("payload"))
            .expect("base64");
        let json = std::str::from_utf8(&payload).expect("utf8");
        let claims = read_own_claims(json).expect("our own layout");
        assert_eq!((claims.sub.as_ref(), claims.exp), ("7", 1_300));
        assert_eq!(claims.sid, sid.to_string());
        // Escapes, another order, extra keys: not ours, serde_json's job.
        assert!(
            read_own_claims(&json.replace("dev@example.com", "d\\u0065v@example.com")).is_none()
        );
        assert!(read_own_claims(&json.replace("}", ",\"x\":1}")).is_none());
        assert!(read_own_claims("{\"aud\":\"api\",\"iss\":\"vigile\"}").is_none());
    }

    /// Tokens on which the fast path once decided otherwise than the general
    /// path (found by `proptests`): both now give the same verdict.
    #[test]
    fn the_fast_path_refuses_what_the_general_path_refuses() {
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let set = keys.current();
        let fast = set.fast.first().expect("HS256 has a fast path");
        let now = crate::unix_now();
        let claims = |iss: &str, sub: &str, iat: u64, exp: u64| {
            format!(
                "{{\"iss\":\"{iss}\",\"aud\":\"api\",\"sub\":\"{sub}\",\
                 \"email\":\"dev@example.com\",\"role\":\"Admin\",\
                 \"sid\":\"0000000000000000000000000000000a\",\"jti\":\"00\",\
                 \"iat\":{iat},\"exp\":{exp},\"token_type\":\"access\"}}"
            )
        };
        let valid = claims("vigile", "7", now - 10, now + 290);
        let array = format!(
            "[\"vigile\",\"api\",\"7\",\"dev@example.com\",\"Admin\",\
             \"0000000000000000000000000000000a\",\"00\",{},{},\"access\"]",
            now - 10,
            now + 290
        );
        let cases = [
            // A raw control character in a string: not JSON (read by hand
            // as our own layout, and accepted).
            (
                claims("vigile", "\u{0}", now - 10, now + 290),
                TokenError::Invalid,
            ),
            (
                claims("vigile", "7\t", now - 10, now + 290),
                TokenError::Invalid,
            ),
            // `jti` twice, or missing: `AccessClaims` refuses both (the
            // fast path's own claims had no `jti`).
            (valid.replace('}', ",\"jti\":\"01\"}"), TokenError::Invalid),
            (valid.replace("\"jti\":\"00\",", ""), TokenError::Invalid),
            (valid.replace("\"00\"", "0"), TokenError::Invalid),
            // The claims as an array, with or without `jti`: a derived
            // struct reads them by position, jsonwebtoken does not.
            (array.clone(), TokenError::Invalid),
            (array.replace("\"00\",", ""), TokenError::Invalid),
            // Expired and of another issuer: expired, as jsonwebtoken says
            // (the fast path said invalid).
            (
                claims("other", "7", now - 400, now - 100),
                TokenError::Expired,
            ),
        ];
        assert!(keys
            .verify_access(&sign_payload(&keys, valid.as_bytes()))
            .is_ok());
        for (payload, error) in cases {
            let token = sign_payload(&keys, payload.as_bytes());
            assert_eq!(keys.verify_access(&token), Err(error), "{payload}");
            assert_eq!(set.verify_access_general(&token), Err(error), "{payload}");
            if let Fast::Done(verdict) = fast.verify_access(&token, &set) {
                assert_eq!(verdict, Err(error), "{payload}");
            }
        }
        assert!(read_own_claims(&claims("vigile", "\u{1}", 1, 2)).is_none());
    }
}

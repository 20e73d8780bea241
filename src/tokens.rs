//! JSON Web Tokens: issuing access and refresh tokens, and checking them.
//!
//! The algorithm is pinned by configuration: a token signed with any other
//! (`none` included) fails the check. Issuer, audience, expiry (with the
//! configured leeway) and the `token_type` claim are checked on every token,
//! and so are its time limits (`check_times`): no `nbf` or `iat` in the
//! future, no lifetime (`exp - iat`) longer than the configured one. A token
//! signed far into the future would otherwise outlive the revocation entry
//! of its session, which is dropped once every token of it should have expired.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::{Algorithm, KeySource, TokenConfig};
use crate::fsutil;

/// A session is one login; every token it issues carries its id (`sid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u128);

impl SessionId {
    pub fn random() -> SessionId {
        SessionId(rand::random())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex128(self.0))
    }
}

/// 32 lower-case hex digits, without the formatting machinery (it runs for
/// every proxied request: the session id header, the request id).
pub fn hex128(n: u128) -> String {
    let mut digits = [0u8; 32];
    hex128_into(n, &mut digits);
    digits.iter().map(|&d| d as char).collect()
}

/// The same 32 digits, written into `out`.
pub fn hex128_into(n: u128, out: &mut [u8; 32]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((n >> ((31 - i) * 4)) & 0xf) as usize];
    }
}

impl FromStr for SessionId {
    type Err = ();
    fn from_str(s: &str) -> Result<SessionId, ()> {
        if s.len() != 32 {
            return Err(());
        }
        u128::from_str_radix(s, 16).map(SessionId).map_err(|_| ())
    }
}

/// Id of one refresh token inside its session (`jti`), retired on rotation.
pub fn random_token_id() -> u128 {
    rand::random()
}

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

/// The account data an access token carries.
pub struct Subject<'a> {
    pub account_id: u64,
    pub email: &'a str,
    pub role: &'a str,
}

pub struct TokenKeys {
    /// HS256 only: the check of the tokens this gateway issued, without the
    /// generic decoder's copies (see `FastHs256`).
    fast: Option<FastHs256>,
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: u64,
    refresh_ttl: u64,
    jwks: Vec<u8>,
}

const SECRET_FILE: &str = "jwt-secret";
const ED25519_FILE: &str = "jwt-ed25519.pem";

impl TokenKeys {
    /// Builds the keys; a generated secret or key is read from, or first
    /// written to, the data directory (mode 0600).
    pub fn from_config(cfg: &TokenConfig, data_dir: &Path) -> Result<TokenKeys, String> {
        let (alg, encoding, decoding) = match (&cfg.algorithm, &cfg.key) {
            (Algorithm::HS256, KeySource::Secret(secret)) => hs256(secret),
            (Algorithm::HS256, KeySource::GeneratedSecret) => {
                let path = data_dir.join(SECRET_FILE);
                let secret = fsutil::read_or_create_private(&path, || {
                    use base64::Engine;
                    let bytes: [u8; 32] = rand::random();
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(bytes)
                        .into_bytes()
                })
                .map_err(|e| {
                    format!(
                        "tokens: cannot keep the generated secret in {}: {e}",
                        path.display()
                    )
                })?;
                hs256(&secret)
            }
            (Algorithm::EdDSA, KeySource::PrivateKeyPem(pem)) => ed25519(pem)?,
            (Algorithm::EdDSA, KeySource::GeneratedEd25519) => {
                let path = data_dir.join(ED25519_FILE);
                let pem =
                    fsutil::read_or_create_private(&path, generate_ed25519_pem).map_err(|e| {
                        format!(
                            "tokens: cannot keep the generated key in {}: {e}",
                            path.display()
                        )
                    })?;
                ed25519(&pem)?
            }
            (Algorithm::RS256, KeySource::PrivateKeyPem(pem)) => {
                let encoding = EncodingKey::from_rsa_pem(pem).map_err(|e| {
                    format!("tokens.private_key_file: not an RSA private key in PEM: {e}")
                })?;
                let jwk = Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256)
                    .map_err(|e| format!("tokens: cannot derive the public key: {e}"))?;
                (
                    jsonwebtoken::Algorithm::RS256,
                    encoding,
                    PublicKey::Jwk(Box::new(jwk)),
                )
            }
            _ => return Err("tokens: algorithm and key source do not match".into()),
        };
        let mut header = Header::new(alg);
        let mut fast = None;
        let (decoding, jwks) = match decoding {
            PublicKey::Secret(d, secret) => {
                fast = Some(FastHs256::new(&header, &secret)?);
                (d, JwkSet { keys: vec![] })
            }
            PublicKey::Jwk(jwk) => {
                let mut jwk = *jwk;
                let kid = jwk.thumbprint(ThumbprintHash::SHA256);
                jwk.common.key_id = Some(kid.clone());
                jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
                header.kid = Some(kid);
                let decoding = DecodingKey::from_jwk(&jwk)
                    .map_err(|e| format!("tokens: cannot use the public key: {e}"))?;
                (decoding, JwkSet { keys: vec![jwk] })
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = cfg.leeway.as_secs();
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = false;
        Ok(TokenKeys {
            fast,
            header,
            encoding,
            decoding,
            validation,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            access_ttl: cfg.access_ttl.as_secs(),
            refresh_ttl: cfg.refresh_ttl.as_secs(),
            jwks: serde_json::to_vec(&jwks).map_err(|e| e.to_string())?,
        })
    }

    pub fn access_ttl(&self) -> u64 {
        self.access_ttl
    }

    pub fn refresh_ttl(&self) -> u64 {
        self.refresh_ttl
    }

    /// `{"keys": [...]}`: the public verification keys (empty for HS256).
    pub fn jwks_json(&self) -> &[u8] {
        &self.jwks
    }

    pub fn issue_access(
        &self,
        subject: &Subject,
        session: SessionId,
        now: u64,
    ) -> Result<String, String> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.account_id.to_string(),
            email: subject.email.to_string(),
            role: subject.role.to_string(),
            sid: session.to_string(),
            jti: format!("{:032x}", random_token_id()),
            iat: now,
            exp: now + self.access_ttl,
            token_type: "access".into(),
            nbf: None,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// A refresh token with the given `jti` and expiry (both kept in the session).
    pub fn issue_refresh(
        &self,
        account_id: u64,
        session: SessionId,
        jti: u128,
        now: u64,
        exp: u64,
    ) -> Result<String, String> {
        let claims = RefreshClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: account_id.to_string(),
            sid: session.to_string(),
            jti: format!("{jti:032x}"),
            iat: now,
            exp,
            token_type: "refresh".into(),
            nbf: None,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.encoding).map_err(|e| e.to_string())
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        match jsonwebtoken::decode::<T>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }

    /// Whether a token with this `exp` has expired at `now`, leeway included.
    pub fn is_expired(&self, exp: u64, now: u64) -> bool {
        exp.saturating_add(self.validation.leeway) < now
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
            .saturating_sub(self.validation.leeway);
        if self.is_premature(valid_from, now) {
            return Err(TokenError::Invalid);
        }
        match exp.checked_sub(iat) {
            Some(lifetime) if lifetime <= ttl => Ok(valid_from),
            _ => Err(TokenError::Invalid),
        }
    }

    /// Signature, algorithm, issuer, audience, expiry and type of an access
    /// token. Revocation is the caller's second step.
    pub fn verify_access(&self, token: &str) -> Result<Identity, TokenError> {
        if let Some(fast) = &self.fast {
            match fast.verify_access(token, self) {
                Fast::Done(result) => return result,
                Fast::Generic => {}
            }
        }
        let claims: AccessClaims = self.decode(token)?;
        if claims.token_type != "access" {
            return Err(TokenError::Invalid);
        }
        let valid_from = self.check_times(
            claims.iat,
            claims.nbf,
            claims.exp,
            self.access_ttl,
            crate::unix_now(),
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
        self.check_times(
            claims.iat,
            claims.nbf,
            claims.exp,
            self.refresh_ttl,
            crate::unix_now(),
        )?;
        let account = claims.sub.parse().map_err(|_| TokenError::Invalid)?;
        let session = claims.sid.parse().map_err(|_| TokenError::Invalid)?;
        let jti = u128::from_str_radix(&claims.jti, 16).map_err(|_| TokenError::Invalid)?;
        Ok((account, session, jti))
    }
}

/// How tokens are checked: the shared secret, or a published public key.
enum PublicKey {
    Secret(DecodingKey, Vec<u8>),
    Jwk(Box<Jwk>),
}

type Keys = (jsonwebtoken::Algorithm, EncodingKey, PublicKey);

/// The access-token check for the tokens this gateway issues with HS256:
/// their header is exactly ours, so it is compared as text instead of being
/// decoded, the HMAC state is keyed once, and the claims are read in place.
/// Anything else (another header, an `aud` list, odd JSON) goes to the generic
/// decoder, which gives the same verdicts, only slower.
struct FastHs256 {
    /// `<base64url of our header>.`
    prefix: String,
    mac: Hmac<Sha256>,
}

enum Fast {
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
    iat: u64,
    exp: u64,
    #[serde(borrow)]
    token_type: Cow<'a, str>,
    #[serde(default)]
    nbf: Option<u64>,
}

/// Reads the claims exactly as `issue_access` writes them (serde_json, field
/// order of `AccessClaims`, no escapes): a few hundred instructions instead
/// of a general JSON parse. Anything else gives `None`, and the caller falls
/// back to serde_json.
fn read_own_claims(json: &str) -> Option<AccessClaimsRef<'_>> {
    struct Cursor<'a>(&'a str);
    impl<'a> Cursor<'a> {
        fn key(&mut self, literal: &str) -> Option<()> {
            self.0 = self.0.strip_prefix(literal)?;
            Some(())
        }
        fn string(&mut self) -> Option<Cow<'a, str>> {
            let rest = self.0.strip_prefix('"')?;
            let end = rest.find(['"', '\\'])?;
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
    c.string()?;
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
        iat,
        exp,
        token_type,
        nbf: None,
    })
}

impl FastHs256 {
    fn new(header: &Header, secret: &[u8]) -> Result<FastHs256, String> {
        use base64::Engine;
        let json = serde_json::to_vec(header).map_err(|e| e.to_string())?;
        let prefix = format!(
            "{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        );
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
        Ok(FastHs256 { prefix, mac })
    }

    fn verify_access(&self, token: &str, keys: &TokenKeys) -> Fast {
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
        let Some(claims) = own.or_else(|| serde_json::from_slice::<AccessClaimsRef>(payload).ok())
        else {
            return Fast::Generic;
        };
        if claims.iss != keys.issuer || claims.aud != keys.audience {
            return Fast::Done(Err(TokenError::Invalid));
        }
        let valid_from = match keys.check_times(
            claims.iat,
            claims.nbf,
            claims.exp,
            keys.access_ttl,
            crate::unix_now(),
        ) {
            Ok(valid_from) => valid_from,
            Err(e) => return Fast::Done(Err(e)),
        };
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

fn hs256(secret: &[u8]) -> Keys {
    if secret.len() < 32 {
        tracing::warn!("the HS256 secret is shorter than 32 bytes; use a longer one");
    }
    (
        jsonwebtoken::Algorithm::HS256,
        EncodingKey::from_secret(secret),
        PublicKey::Secret(DecodingKey::from_secret(secret), secret.to_vec()),
    )
}

fn ed25519(pem: &[u8]) -> Result<Keys, String> {
    use base64::Engine;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use jsonwebtoken::jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, KeyAlgorithm, OctetKeyPairParameters,
        OctetKeyPairType,
    };
    let bad = |e: &dyn std::fmt::Display| {
        format!("tokens.private_key_file: not an Ed25519 private key in PEM: {e}")
    };
    let encoding = EncodingKey::from_ed_pem(pem).map_err(|e| bad(&e))?;
    let text = std::str::from_utf8(pem).map_err(|e| bad(&e))?;
    let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|e| bad(&e))?;
    let x =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
    let jwk = Jwk {
        common: CommonParameters {
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x,
        }),
    };
    Ok((
        jsonwebtoken::Algorithm::EdDSA,
        encoding,
        PublicKey::Jwk(Box::new(jwk)),
    ))
}

fn generate_ed25519_pem() -> Vec<u8> {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    match key.to_pkcs8_pem(LineEnding::LF) {
        Ok(pem) => pem.as_bytes().to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Keys and claims for the tests of this module and of `token_cache`.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub(crate) fn config(alg: Algorithm, key: KeySource) -> TokenConfig {
        TokenConfig {
            algorithm: alg,
            key,
            verified_cache: 0,
            ..TokenConfig::default()
        }
    }

    pub(crate) fn hs_keys(secret: &[u8]) -> TokenKeys {
        let dir = tempfile::tempdir().expect("tempdir");
        TokenKeys::from_config(
            &config(Algorithm::HS256, KeySource::Secret(secret.to_vec())),
            dir.path(),
        )
        .expect("keys")
    }

    pub(crate) fn subject() -> Subject<'static> {
        Subject {
            account_id: 7,
            email: "dev@example.com",
            role: "Visiteur",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn hex128_matches_the_formatter() {
        for n in [0u128, 1, 0xdead_beef, u128::MAX, rand::random()] {
            assert_eq!(hex128(n), format!("{n:032x}"));
        }
    }

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
    fn the_fast_path_takes_our_tokens_and_agrees_with_the_generic_one() {
        let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
        let fast = keys.fast.as_ref().expect("HS256 has a fast path");
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
            let generic = keys.decode::<AccessClaims>(token).and_then(|c| {
                if c.token_type == "access" {
                    Ok(c.sub)
                } else {
                    Err(TokenError::Invalid)
                }
            });
            if token != &refresh {
                assert!(
                    matches!(fast.verify_access(token, &keys), Fast::Done(_)),
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

    /// Signs `claims` (any JSON) with the keys' secret; `ours` picks our own
    /// header (the fast path) or another one (the generic decoder).
    fn forge(keys: &TokenKeys, claims: &serde_json::Value, ours: bool) -> String {
        let mut header = keys.header.clone();
        if !ours {
            header.typ = None;
        }
        jsonwebtoken::encode(&header, claims, &keys.encoding).expect("sign")
    }

    fn access_claims(iat: u64, exp: u64) -> serde_json::Value {
        serde_json::json!({"iss": "vigile", "aud": "api", "sub": "7", "email": "dev@example.com",
            "role": "Admin", "sid": format!("{:032x}", 5u128), "jti": "00", "iat": iat, "exp": exp,
            "token_type": "access"})
    }

    fn refresh_claims(iat: u64, exp: u64) -> serde_json::Value {
        serde_json::json!({"iss": "vigile", "aud": "api", "sub": "7",
            "sid": format!("{:032x}", 5u128), "jti": format!("{:032x}", 9u128), "iat": iat,
            "exp": exp, "token_type": "refresh"})
    }

    fn with(
        mut claims: serde_json::Value,
        key: &str,
        value: serde_json::Value,
    ) -> serde_json::Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: serde_json::Value, key: &str) -> serde_json::Value {
        if let Some(map) = claims.as_object_mut() {
            map.remove(key);
        }
        claims
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

    #[test]
    fn a_generated_eddsa_key_is_kept_and_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(Algorithm::EdDSA, KeySource::GeneratedEd25519);
        let keys = TokenKeys::from_config(&cfg, dir.path()).expect("keys");
        let token = keys
            .issue_access(&subject(), SessionId::random(), crate::unix_now())
            .expect("issue");
        let again = TokenKeys::from_config(&cfg, dir.path()).expect("keys again");
        assert!(
            again.verify_access(&token).is_ok(),
            "the key survives a restart"
        );
        let jwks: serde_json::Value = serde_json::from_slice(keys.jwks_json()).expect("json");
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    }
}

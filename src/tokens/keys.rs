//! The signing and verification keys: from the configuration, or generated
//! once and kept in the data directory; the JWKS document of the public key.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};

use super::fast::FastHs256;
use crate::config::{Algorithm, KeySource, TokenConfig};
use crate::fsutil;

/// Why the keys could not be set up; each message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("tokens: cannot keep the generated {what} in {}: {source}", path.display())]
    Keep {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokens.private_key_file: not an {kind} private key in PEM: {reason}")]
    NotAKey { kind: &'static str, reason: String },
    #[error("tokens: cannot derive the public key: {0}")]
    Derive(jsonwebtoken::errors::Error),
    #[error("tokens: cannot use the public key: {0}")]
    Public(jsonwebtoken::errors::Error),
    #[error("tokens: algorithm and key source do not match")]
    Mismatch,
    #[error("tokens: cannot encode the token header or the JWKS: {0}")]
    Json(#[from] serde_json::Error),
    #[error("tokens: the HS256 secret cannot key HMAC-SHA256")]
    Secret(#[from] hmac::digest::InvalidLength),
}

pub struct TokenKeys {
    /// HS256 only: the check of the tokens this gateway issued, without the
    /// generic decoder's copies (see `FastHs256`).
    pub(super) fast: Option<FastHs256>,
    pub(super) header: Header,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    pub(super) validation: Validation,
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) access_ttl: u64,
    pub(super) refresh_ttl: u64,
    jwks: Vec<u8>,
}

const SECRET_FILE: &str = "jwt-secret";
const ED25519_FILE: &str = "jwt-ed25519.pem";

impl TokenKeys {
    /// Builds the keys; a generated secret or key is read from, or first
    /// written to, the data directory (mode 0600).
    pub fn from_config(cfg: &TokenConfig, data_dir: &Path) -> Result<TokenKeys, KeyError> {
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
                .map_err(|source| KeyError::Keep {
                    what: "secret",
                    path: path.clone(),
                    source,
                })?;
                hs256(&secret)
            }
            (Algorithm::EdDSA, KeySource::PrivateKeyPem(pem)) => ed25519(pem)?,
            (Algorithm::EdDSA, KeySource::GeneratedEd25519) => {
                let path = data_dir.join(ED25519_FILE);
                let pem = fsutil::read_or_create_private(&path, generate_ed25519_pem).map_err(
                    |source| KeyError::Keep {
                        what: "key",
                        path: path.clone(),
                        source,
                    },
                )?;
                ed25519(&pem)?
            }
            (Algorithm::RS256, KeySource::PrivateKeyPem(pem)) => {
                let encoding = EncodingKey::from_rsa_pem(pem).map_err(|e| KeyError::NotAKey {
                    kind: "RSA",
                    reason: e.to_string(),
                })?;
                let jwk = Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256)
                    .map_err(KeyError::Derive)?;
                (
                    jsonwebtoken::Algorithm::RS256,
                    encoding,
                    PublicKey::Jwk(Box::new(jwk)),
                )
            }
            _ => return Err(KeyError::Mismatch),
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
                let decoding = DecodingKey::from_jwk(&jwk).map_err(KeyError::Public)?;
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
            jwks: serde_json::to_vec(&jwks)?,
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
}

/// How tokens are checked: the shared secret, or a published public key.
enum PublicKey {
    Secret(DecodingKey, Vec<u8>),
    Jwk(Box<Jwk>),
}

type Keys = (jsonwebtoken::Algorithm, EncodingKey, PublicKey);

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

fn ed25519(pem: &[u8]) -> Result<Keys, KeyError> {
    use base64::Engine;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use jsonwebtoken::jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, KeyAlgorithm, OctetKeyPairParameters,
        OctetKeyPairType,
    };
    let bad = |e: &dyn std::fmt::Display| KeyError::NotAKey {
        kind: "Ed25519",
        reason: e.to_string(),
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::SessionId;
    use super::*;

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

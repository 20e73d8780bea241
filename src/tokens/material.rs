//! Key material: one key's signing and verification halves and its `kid`
//! (read from the configuration's bytes or a stored key's), new keys
//! (`vigile keys rotate`), and the sealing of the private parts a store
//! keeps (`VIGILE_KEY_ENCRYPTION_KEY`).
//!
//! A `kid` is computed from the key, never chosen: the RFC 7638 thumbprint
//! (SHA-256) of the public JWK for EdDSA and RS256 (what vigile put in
//! their tokens before key rotation existed), and for HS256 an HMAC of a
//! fixed label under the secret, which says nothing of the secret that a
//! token's own signature does not. The same key thus has the same `kid` on
//! every replica and across restarts.

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{DecodingKey, EncodingKey, Header};

use super::KeyError;
use crate::config::Algorithm;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The environment variable whose value, when set, seals (encrypts) the
/// private parts of the keys the store keeps.
pub const ENCRYPTION_KEY_ENV: &str = "VIGILE_KEY_ENCRYPTION_KEY";

/// One usable key.
pub(crate) struct Material {
    pub kid: String,
    /// The header of the tokens it signs: the pinned algorithm, `typ`, `kid`.
    pub header: Header,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// HS256: the secret (the fast path keys its HMAC with it).
    pub secret: Option<Vec<u8>>,
    /// EdDSA, RS256: the public key as published in the JWKS.
    pub jwk: Option<Jwk>,
}

pub(crate) fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::RS256 => "RS256",
    }
}

fn jwt_algorithm(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
    }
}

/// The `kid` of an HS256 secret.
pub(crate) fn hs256_kid(secret: &[u8]) -> Result<String, KeyError> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret)?;
    mac.update(b"vigile signing key id");
    let digest = mac.finalize().into_bytes();
    Ok(B64.encode(&digest[..16]))
}

/// Reads a key of algorithm `alg` from `bytes` (the HS256 secret, or a PEM
/// private key); `what` names its origin in the errors.
pub(crate) fn parse(alg: Algorithm, bytes: &[u8], what: &str) -> Result<Material, KeyError> {
    let bad = |kind: &'static str, e: &dyn std::fmt::Display| KeyError::NotAKey {
        what: what.to_string(),
        kind,
        reason: e.to_string(),
    };
    let (encoding, secret, jwk) = match alg {
        Algorithm::HS256 => {
            if bytes.len() < 32 {
                tracing::warn!("the HS256 secret is shorter than 32 bytes; use a longer one");
            }
            (EncodingKey::from_secret(bytes), Some(bytes.to_vec()), None)
        }
        Algorithm::EdDSA => {
            let encoding = EncodingKey::from_ed_pem(bytes).map_err(|e| bad("Ed25519", &e))?;
            (encoding, None, Some(ed25519_jwk(bytes, &bad)?))
        }
        Algorithm::RS256 => {
            let encoding = EncodingKey::from_rsa_pem(bytes).map_err(|e| bad("RSA", &e))?;
            let jwk = Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256)
                .map_err(KeyError::Derive)?;
            (encoding, None, Some(jwk))
        }
    };
    let mut header = Header::new(jwt_algorithm(alg));
    let (kid, decoding, jwk) = match (secret.as_deref(), jwk) {
        (Some(secret), _) => (hs256_kid(secret)?, DecodingKey::from_secret(secret), None),
        (None, Some(mut jwk)) => {
            let kid = jwk.thumbprint(ThumbprintHash::SHA256);
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
            let decoding = DecodingKey::from_jwk(&jwk).map_err(KeyError::Public)?;
            (kid, decoding, Some(jwk))
        }
        (None, None) => return Err(KeyError::Mismatch),
    };
    header.kid = Some(kid.clone());
    Ok(Material {
        kid,
        header,
        encoding,
        decoding,
        secret,
        jwk,
    })
}

fn ed25519_jwk(
    pem: &[u8],
    bad: &dyn Fn(&'static str, &dyn std::fmt::Display) -> KeyError,
) -> Result<Jwk, KeyError> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use jsonwebtoken::jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, KeyAlgorithm, OctetKeyPairParameters,
        OctetKeyPairType,
    };
    let text = std::str::from_utf8(pem).map_err(|e| bad("Ed25519", &e))?;
    let signing =
        ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|e| bad("Ed25519", &e))?;
    Ok(Jwk {
        common: CommonParameters {
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: B64.encode(signing.verifying_key().as_bytes()),
        }),
    })
}

/// A new key of algorithm `alg`, as `parse` reads it: 32 random bytes for
/// HS256, an Ed25519 or RSA 2048 private key in PKCS#8 PEM.
pub(crate) fn generate(alg: Algorithm) -> Result<Vec<u8>, KeyError> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    match alg {
        Algorithm::HS256 => {
            let mut secret = vec![0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
            Ok(secret)
        }
        Algorithm::EdDSA => Ok(generate_ed25519_pem()),
        Algorithm::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            Ok(pem.as_bytes().to_vec())
        }
    }
}

pub(crate) fn generate_ed25519_pem() -> Vec<u8> {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    match key.to_pkcs8_pem(LineEnding::LF) {
        Ok(pem) => pem.as_bytes().to_vec(),
        Err(_) => Vec::new(),
    }
}

/// The sealing key `ENCRYPTION_KEY_ENV` gives, if set (any text: it is
/// stretched into an AES-256 key by HMAC-SHA256).
fn sealing_key_from_env() -> Option<[u8; 32]> {
    let value = std::env::var(ENCRYPTION_KEY_ENV).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| sealing_key(value.as_bytes()))
}

fn sealing_key(passphrase: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"vigile key encryption v1")
        .expect("HMAC takes a key of any length");
    mac.update(passphrase);
    mac.finalize().into_bytes().into()
}

/// Whether `seal` encrypts (the variable is set).
pub fn sealing_enabled() -> bool {
    sealing_key_from_env().is_some()
}

/// The private part of key `kid` as a store keeps it: `sealed:v1:` and
/// AES-256-GCM (nonce, ciphertext, tag; the `kid` as associated data, so a
/// sealed part cannot be moved to another row) when `ENCRYPTION_KEY_ENV`
/// is set, else `plain:` and base64.
pub(crate) fn seal(kid: &str, bytes: &[u8]) -> Result<String, KeyError> {
    seal_with(sealing_key_from_env().as_ref(), kid, bytes)
}

/// The bytes `seal` kept.
pub(crate) fn unseal(kid: &str, stored: &str) -> Result<Vec<u8>, KeyError> {
    unseal_with(sealing_key_from_env().as_ref(), kid, stored)
}

fn seal_with(key: Option<&[u8; 32]>, kid: &str, bytes: &[u8]) -> Result<String, KeyError> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
    let Some(key) = key else {
        return Ok(format!("plain:{}", B64.encode(bytes)));
    };
    let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| sealed(kid))?);
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut data = bytes.to_vec();
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kid.as_bytes()),
            &mut data,
        )
        .map_err(|_| sealed(kid))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(format!("sealed:v1:{}", B64.encode(out)))
}

fn unseal_with(key: Option<&[u8; 32]>, kid: &str, stored: &str) -> Result<Vec<u8>, KeyError> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
    if let Some(plain) = stored.strip_prefix("plain:") {
        return B64.decode(plain).map_err(|_| sealed(kid));
    }
    let Some(text) = stored.strip_prefix("sealed:v1:") else {
        return Err(sealed(kid));
    };
    let Some(key) = key else {
        return Err(KeyError::NoSealingKey {
            kid: kid.to_string(),
        });
    };
    let data = B64.decode(text).map_err(|_| sealed(kid))?;
    if data.len() < NONCE_LEN {
        return Err(sealed(kid));
    }
    let (nonce, ciphertext) = data.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| sealed(kid))?;
    let opening = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| sealed(kid))?);
    let mut buffer = ciphertext.to_vec();
    let plain = opening
        .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
        .map_err(|_| sealed(kid))?;
    Ok(plain.to_vec())
}

fn sealed(kid: &str) -> KeyError {
    KeyError::Unseal {
        kid: kid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_parts_are_sealed_to_their_kid_and_need_the_key() {
        let key = sealing_key(b"correct horse battery staple");
        let other = sealing_key(b"another passphrase");
        let stored = seal_with(Some(&key), "kid-1", b"secret bytes").expect("seal");
        assert!(stored.starts_with("sealed:v1:"));
        assert!(!stored.contains("secret"));
        assert_eq!(
            unseal_with(Some(&key), "kid-1", &stored).expect("open"),
            b"secret bytes"
        );
        assert!(matches!(
            unseal_with(Some(&other), "kid-1", &stored),
            Err(KeyError::Unseal { .. })
        ));
        assert!(matches!(
            unseal_with(Some(&key), "kid-2", &stored),
            Err(KeyError::Unseal { .. })
        ));
        assert!(matches!(
            unseal_with(None, "kid-1", &stored),
            Err(KeyError::NoSealingKey { .. })
        ));
        let plain = seal_with(None, "kid-1", b"secret bytes").expect("plain");
        assert!(plain.starts_with("plain:"));
        assert_eq!(
            unseal_with(Some(&key), "kid-1", &plain).expect("plain"),
            b"secret bytes"
        );
        assert!(unseal_with(None, "kid-1", "junk").is_err());
    }

    #[test]
    fn generated_keys_are_read_back_with_a_stable_kid() {
        for alg in [Algorithm::HS256, Algorithm::EdDSA, Algorithm::RS256] {
            let bytes = generate(alg).expect("generate");
            let one = parse(alg, &bytes, "test").expect("parse");
            let two = parse(alg, &bytes, "test").expect("parse");
            assert_eq!(one.kid, two.kid);
            assert_eq!(one.header.kid.as_deref(), Some(one.kid.as_str()));
            assert_eq!(one.jwk.is_some(), alg != Algorithm::HS256);
            let other = parse(alg, &generate(alg).expect("generate"), "test").expect("parse");
            assert_ne!(one.kid, other.kid);
        }
    }
}

//! Keys, claims and forged tokens for the tests of this module.

use super::{Subject, TokenKeys};
use crate::config::{Algorithm, KeySource, TokenConfig};

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

/// Signs `claims` (any JSON) with the keys' secret; `ours` picks our own
/// header (the fast path) or another one (the generic decoder).
pub(crate) fn forge(keys: &TokenKeys, claims: &serde_json::Value, ours: bool) -> String {
    let set = keys.current();
    let mut header = set.signer.header.clone();
    if !ours {
        header.typ = None;
    }
    jsonwebtoken::encode(&header, claims, &set.signer.encoding).expect("sign")
}

/// `payload` (any bytes, not only JSON) under the header of the tokens
/// `keys` issues, signed with its key by jsonwebtoken: only the payload
/// differs from a token of this gateway.
pub(crate) fn sign_payload(keys: &TokenKeys, payload: &[u8]) -> String {
    use base64::Engine;
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let set = keys.current();
    let header = serde_json::to_vec(&set.signer.header).expect("header");
    let message = format!("{}.{}", engine.encode(header), engine.encode(payload));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &set.signer.encoding,
        set.signer.header.alg,
    )
    .expect("sign");
    format!("{message}.{signature}")
}

pub(crate) fn access_claims(iat: u64, exp: u64) -> serde_json::Value {
    serde_json::json!({"iss": "vigile", "aud": "api", "sub": "7", "email": "dev@example.com",
        "role": "Admin", "sid": format!("{:032x}", 5u128), "jti": "00", "iat": iat, "exp": exp,
        "token_type": "access"})
}

pub(crate) fn refresh_claims(iat: u64, exp: u64) -> serde_json::Value {
    serde_json::json!({"iss": "vigile", "aud": "api", "sub": "7",
        "sid": format!("{:032x}", 5u128), "jti": format!("{:032x}", 9u128), "iat": iat,
        "exp": exp, "token_type": "refresh"})
}

pub(crate) fn with(
    mut claims: serde_json::Value,
    key: &str,
    value: serde_json::Value,
) -> serde_json::Value {
    claims[key] = value;
    claims
}

pub(crate) fn without(mut claims: serde_json::Value, key: &str) -> serde_json::Value {
    if let Some(map) = claims.as_object_mut() {
        map.remove(key);
    }
    claims
}

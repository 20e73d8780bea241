use super::super::fixtures::*;
use super::super::{generate_stored_key, KeyState, SessionId, StoredKey, TokenError};
use super::*;

fn hs_config() -> TokenConfig {
    config(
        Algorithm::HS256,
        KeySource::Secret(b"0123456789abcdef0123456789abcdef".to_vec()),
    )
}

/// The rows `vigile keys rotate` leaves: the configuration's key set aside
/// (verify only), a new active key.
fn rotated(keys: &TokenKeys, alg: Algorithm, now: u64) -> (StoredKey, Vec<StoredKey>) {
    let new = generate_stored_key(alg, now).expect("generate");
    let old = StoredKey {
        kid: keys.config_kid(),
        algorithm: material::algorithm_name(alg).into(),
        state: KeyState::VerifyOnly,
        created_at: None,
        deactivated_at: Some(now),
        retired_at: None,
        material: None,
    };
    (new.clone(), vec![old, new])
}

fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).expect("header").kid
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
    let jwks: serde_json::Value = serde_json::from_slice(&keys.jwks_json()).expect("json");
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks["keys"][0]["kid"], keys.config_kid().as_str());
    assert_eq!(kid_of(&token), Some(keys.config_kid()));
}

#[test]
fn hs256_tokens_carry_the_kid_and_tokens_without_one_still_pass() {
    let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
    let now = crate::unix_now();
    let token = keys
        .issue_access(&subject(), SessionId::random(), now)
        .expect("issue");
    assert_eq!(kid_of(&token), Some(keys.config_kid()));
    // What vigile issued before `kid`: the header without it.
    let set = keys.current();
    let legacy = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &access_claims(now, now + 300),
        &set.signer.encoding,
    )
    .expect("sign");
    assert_eq!(kid_of(&legacy), None);
    assert!(keys.verify_access(&legacy).is_ok());
    assert!(matches!(
        set.fast
            .last()
            .expect("legacy fast path")
            .verify_access(&legacy, &set),
        super::super::fast::Fast::Done(Ok(_))
    ));
    assert_eq!(keys.jwks_json().as_ref(), br#"{"keys":[]}"#);
}

#[test]
fn after_a_rotation_old_tokens_verify_new_ones_carry_the_new_kid_and_retiring_ends_them() {
    for alg in [Algorithm::HS256, Algorithm::EdDSA] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = match alg {
            Algorithm::HS256 => hs_config(),
            _ => config(Algorithm::EdDSA, KeySource::GeneratedEd25519),
        };
        let keys = TokenKeys::from_config(&cfg, dir.path()).expect("keys");
        let now = crate::unix_now();
        let sid = SessionId::random();
        let old_access = keys.issue_access(&subject(), sid, now).expect("issue");
        let old_refresh = keys.issue_refresh(7, sid, 1, now, now + 60).expect("issue");
        let generation = keys.current().generation;
        let (new, mut rows) = rotated(&keys, alg, now);
        // A token without kid signed by the configuration's key (issued
        // before tokens carried one): good while that key verifies, through
        // the rotation, refused once it is retired.
        let kidless = {
            let set = keys.current();
            let mut header = set.signer.header.clone();
            header.kid = None;
            jsonwebtoken::encode(
                &header,
                &access_claims(now, now + 300),
                &set.signer.encoding,
            )
            .expect("sign")
        };
        assert!(keys.verify_access(&kidless).is_ok(), "{alg:?}");
        assert!(keys.set_stored(rows.clone()).expect("rotate"));
        assert!(keys.verify_access(&kidless).is_ok(), "{alg:?}: rotated");
        assert!(!keys.set_stored(rows.clone()).expect("same"), "no swap");
        assert!(keys.current().generation > generation);
        assert_eq!(keys.signing_kid(), new.kid);
        let new_access = keys.issue_access(&subject(), sid, now).expect("issue");
        assert_eq!(kid_of(&new_access), Some(new.kid.clone()));
        for token in [&old_access, &new_access] {
            assert!(keys.verify_access(token).is_ok(), "{alg:?}");
        }
        assert!(keys.verify_refresh(&old_refresh).is_ok());
        let jwks: serde_json::Value = serde_json::from_slice(&keys.jwks_json()).expect("json");
        let published = jwks["keys"].as_array().expect("keys").len();
        assert_eq!(published, if alg == Algorithm::HS256 { 0 } else { 2 });
        let listed = keys.describe();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].state, "verify_only");
        assert_eq!(listed[1].state, "active");
        // Retired: the old tokens are refused, the new ones still pass.
        rows[0].state = KeyState::Retired;
        keys.set_stored(rows).expect("retire");
        assert_eq!(keys.verify_access(&old_access), Err(TokenError::Invalid));
        assert_eq!(keys.verify_access(&kidless), Err(TokenError::Invalid));
        assert_eq!(keys.verify_refresh(&old_refresh), Err(TokenError::Invalid));
        assert!(keys.verify_access(&new_access).is_ok());
        let jwks: serde_json::Value = serde_json::from_slice(&keys.jwks_json()).expect("json");
        let published = jwks["keys"].as_array().expect("keys").len();
        assert_eq!(published, usize::from(alg != Algorithm::HS256));
    }
}

#[test]
fn forged_kids_never_verify() {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
    let now = crate::unix_now();
    let (new, rows) = rotated(&keys, Algorithm::HS256, now);
    keys.set_stored(rows).expect("rotate");
    let config_kid = keys.config_kid();
    let claims = access_claims(now, now + 300);
    let sign = |header: &serde_json::Value, secret: &[u8]| {
        let message = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(secret),
            jsonwebtoken::Algorithm::HS256,
        )
        .expect("sign");
        format!("{message}.{signature}")
    };
    let config_secret = b"0123456789abcdef0123456789abcdef";
    let long = "k".repeat(10_000);
    let refused = [
        // The new key's kid on a token signed by the configuration's key.
        sign(
            &serde_json::json!({"typ":"JWT","alg":"HS256","kid": new.kid}),
            config_secret,
        ),
        // An unknown kid, with the right key.
        sign(
            &serde_json::json!({"typ":"JWT","alg":"HS256","kid":"nope"}),
            config_secret,
        ),
        sign(
            &serde_json::json!({"typ":"JWT","alg":"HS256","kid": long}),
            config_secret,
        ),
        sign(
            &serde_json::json!({"typ":"JWT","alg":"HS256","kid":"../../etc/passwd"}),
            config_secret,
        ),
        sign(
            &serde_json::json!({"typ":"JWT","alg":"HS256","kid": 7}),
            config_secret,
        ),
        // The right kid, signed with another secret.
        sign(
            &serde_json::json!({"typ":"JWT","alg":"HS256","kid": config_kid}),
            b"another secret, another gateway!",
        ),
        // Another algorithm with a known kid.
        sign(
            &serde_json::json!({"typ":"JWT","alg":"HS384","kid": config_kid}),
            config_secret,
        ),
    ];
    for token in &refused {
        assert_eq!(
            keys.verify_access(token),
            Err(TokenError::Invalid),
            "{token}"
        );
    }
    // The same with the configuration's kid and key passes.
    let good = sign(
        &serde_json::json!({"typ":"JWT","alg":"HS256","kid": config_kid}),
        config_secret,
    );
    assert!(keys.verify_access(&good).is_ok());
}

#[test]
fn an_hs256_kid_on_an_eddsa_set_never_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = TokenKeys::from_config(
        &config(Algorithm::EdDSA, KeySource::GeneratedEd25519),
        dir.path(),
    )
    .expect("keys");
    let hs = hs_keys(b"0123456789abcdef0123456789abcdef");
    let now = crate::unix_now();
    // An HS256 token whose kid is the EdDSA key's, signed with the
    // published public key's bytes or with a secret: refused.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(keys.config_kid());
    let jwks: serde_json::Value = serde_json::from_slice(&keys.jwks_json()).expect("json");
    let x = jwks["keys"][0]["x"].as_str().expect("x").to_string();
    for secret in [x.as_bytes(), b"0123456789abcdef0123456789abcdef"] {
        let token = jsonwebtoken::encode(
            &header,
            &access_claims(now, now + 300),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("sign");
        assert_eq!(keys.verify_access(&token), Err(TokenError::Invalid));
    }
    let token = hs
        .issue_access(&subject(), SessionId::random(), now)
        .expect("issue");
    assert_eq!(keys.verify_access(&token), Err(TokenError::Invalid));
}

#[test]
fn reconfigure_keeps_the_stored_keys_and_a_failure_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = TokenKeys::from_config(&hs_config(), dir.path()).expect("keys");
    let now = crate::unix_now();
    let (new, rows) = rotated(&keys, Algorithm::HS256, now);
    keys.set_stored(rows).expect("rotate");
    let before = keys
        .issue_access(&subject(), SessionId::random(), now)
        .expect("issue");
    let mut cfg = hs_config();
    cfg.access_ttl = std::time::Duration::from_secs(60);
    cfg.issuer = "vigile-2".into();
    let generation = keys.current().generation;
    keys.reconfigure(&cfg, dir.path()).expect("reconfigure");
    assert!(keys.current().generation > generation);
    assert_eq!(keys.access_ttl(), 60);
    assert_eq!(
        keys.signing_kid(),
        new.kid,
        "the stored active key still signs"
    );
    // Issued under the old issuer: refused now.
    assert_eq!(keys.verify_access(&before), Err(TokenError::Invalid));
    let after = keys
        .issue_access(&subject(), SessionId::random(), now)
        .expect("issue");
    assert!(keys.verify_access(&after).is_ok());
    // A configuration whose key does not match its algorithm: refused,
    // and the set in force stays.
    let bad = config(
        Algorithm::RS256,
        KeySource::PrivateKeyPem(b"not a key".to_vec()),
    );
    let generation = keys.current().generation;
    assert!(keys.reconfigure(&bad, dir.path()).is_err());
    assert_eq!(keys.current().generation, generation);
    assert!(keys.verify_access(&after).is_ok());
    assert_eq!(keys.access_ttl(), 60);
}

#[test]
fn a_new_configuration_key_without_rotated_keys_takes_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = TokenKeys::from_config(&hs_config(), dir.path()).expect("keys");
    let now = crate::unix_now();
    let old = keys
        .issue_access(&subject(), SessionId::random(), now)
        .expect("issue");
    let cfg = config(
        Algorithm::HS256,
        KeySource::Secret(b"a brand new secret of 32 bytes!!".to_vec()),
    );
    keys.reconfigure(&cfg, dir.path()).expect("reconfigure");
    assert_eq!(keys.verify_access(&old), Err(TokenError::Invalid));
    let new = keys
        .issue_access(&subject(), SessionId::random(), now)
        .expect("issue");
    assert!(keys.verify_access(&new).is_ok());
}

#[test]
fn a_stored_key_that_cannot_be_read_changes_nothing() {
    let keys = hs_keys(b"0123456789abcdef0123456789abcdef");
    let now = crate::unix_now();
    let (mut new, _) = rotated(&keys, Algorithm::HS256, now);
    new.material = Some("sealed:v1:AAAA".into());
    assert!(keys.set_stored(vec![new.clone()]).is_err());
    new.material = None;
    assert!(matches!(
        keys.set_stored(vec![new.clone()]),
        Err(KeyError::NoMaterial { .. })
    ));
    let mut other = generate_stored_key(Algorithm::HS256, now).expect("generate");
    other.kid = new.kid.clone();
    other.kid.push('x');
    assert!(matches!(
        keys.set_stored(vec![other]),
        Err(KeyError::KidMismatch { .. })
    ));
    assert_eq!(keys.signing_kid(), keys.config_kid());
}

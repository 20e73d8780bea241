//! Signing-key rotation with `kid` (`vigile keys list | rotate | retire`):
//! tokens issued before a rotation keep working until their key is
//! retired, new ones carry the new `kid`, the JWKS lists the keys that
//! verify, forged `kid`s are refused; through a running gateway, on the
//! store directly, automatically once a key can verify nothing, and across
//! replicas on PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::config::Algorithm;
use crate::common::{pg, Gateway, Options, SECRET};

const PASSWORD: &str = "Correct-Horse-42";

/// The `kid` of a token's header.
fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).expect("header").kid
}

fn text(token: &Value, which: &str) -> String {
    token[which].as_str().expect(which).to_string()
}

/// Runs `vigile keys ...`; stdout, or panics with stderr.
fn keys(gw: &Gateway, args: &[&str]) -> String {
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    let out = gw.cli(&all, None);
    assert!(
        out.status.success(),
        "vigile {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state `vigile keys list` shows for `kid`.
fn state(gw: &Gateway, kid: &str) -> Option<String> {
    keys(gw, &["list"])
        .lines()
        .find(|l| l.starts_with(kid))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
}

/// The new key's `kid`, as `vigile keys rotate` prints it.
fn rotate(gw: &Gateway) -> String {
    let out = keys(gw, &["rotate"]);
    out.strip_prefix("key ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("rotate said: {out}"))
        .to_string()
}

fn refresh(gw: &Gateway, refresh: &str) -> crate::common::Resp {
    gw.post(
        "/api/accounts/refresh-token/",
        &json!({ "refresh": refresh }),
        None,
    )
}

fn within(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HS256 token with this header, signed with `secret`.
fn forge(header: &Value, secret: &[u8]) -> String {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = crate::common::now();
    let claims = json!({"iss": "vigile", "aud": "api", "sub": "1", "email": "k@example.com",
        "role": "Visiteur", "sid": format!("{:032x}", 5u128), "jti": "00", "iat": now,
        "exp": now + 60, "token_type": "access"});
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
}

fn refused(gw: &Gateway, token: &str) {
    let r = gw.get("/api/stocks/x", Some(token));
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.code(), "token_not_valid");
}

#[test]
fn after_a_rotation_old_tokens_work_until_their_key_is_retired() {
    let gw = Gateway::start();
    let before = gw.register_and_login("k@example.com", PASSWORD);
    let other = gw.login("k@example.com", PASSWORD);
    let old = kid(&text(&before, "access")).expect("tokens carry a kid");
    assert_eq!(
        kid(&text(&before, "refresh")).as_deref(),
        Some(old.as_str())
    );
    assert_eq!(state(&gw, &old).as_deref(), Some("active"));
    // Before any rotation, a token without kid (as issued before kid
    // existed) signed with the configuration's secret passes.
    let kidless = forge(&json!({"typ": "JWT", "alg": "HS256"}), SECRET.as_bytes());
    assert_ne!(gw.get("/api/stocks/x", Some(&kidless)).status, 401);

    let new = rotate(&gw);
    assert_ne!(new, old);
    // Once rotated, it was still signed by the configuration's key, which
    // verifies: nobody is logged out by a rotation right after an upgrade.
    assert_ne!(gw.get("/api/stocks/x", Some(&kidless)).status, 401);
    assert_eq!(state(&gw, &old).as_deref(), Some("verify_only"));
    assert_eq!(state(&gw, &new).as_deref(), Some("active"));
    // Tokens issued before: still good, on the proxy path and at refresh.
    assert_eq!(
        gw.get("/api/stocks/x", Some(&text(&before, "access")))
            .status,
        200
    );
    let r = refresh(&gw, &text(&before, "refresh"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(kid(&text(&r.json, "access")).as_deref(), Some(new.as_str()));
    assert_eq!(
        kid(&text(&r.json, "refresh")).as_deref(),
        Some(new.as_str())
    );
    let after = gw.login("k@example.com", PASSWORD);
    assert_eq!(kid(&text(&after, "access")).as_deref(), Some(new.as_str()));
    assert_eq!(
        gw.get("/api/stocks/x", Some(&text(&after, "access")))
            .status,
        200
    );
    assert_eq!(gw.get("/api/jwks.json", None).status, 404);
    assert_eq!(
        gw.get("/.well-known/jwks.json", None).json,
        json!({"keys": []})
    );

    // Forged kids: the new key's kid on a token of the old secret, unknown,
    // long, with path characters, of another type.
    let long = "k".repeat(2_000);
    for header in [
        json!({"typ": "JWT", "alg": "HS256", "kid": new}),
        json!({"typ": "JWT", "alg": "HS256", "kid": "unknown"}),
        json!({"typ": "JWT", "alg": "HS256", "kid": long}),
        json!({"typ": "JWT", "alg": "HS256", "kid": "../../data/jwt-secret"}),
        json!({"typ": "JWT", "alg": "HS256", "kid": ["x"]}),
        json!({"typ": "JWT", "alg": "none", "kid": old}),
    ] {
        refused(&gw, &forge(&header, SECRET.as_bytes()));
    }

    // The active key cannot be retired; an unknown one is not found.
    for (kid, code) in [(new.as_str(), "key_active"), ("nope", "key_not_found")] {
        let out = gw.cli(&["keys", "retire", kid], None);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains(code),
            "{kid}: {out:?}"
        );
    }

    keys(&gw, &["retire", &old]);
    assert_eq!(state(&gw, &old).as_deref(), Some("retired"));
    refused(&gw, &text(&other, "access"));
    refused(&gw, &kidless);
    let r = refresh(&gw, &text(&other, "refresh"));
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.code(), "token_not_valid");
    assert_eq!(
        gw.get("/api/stocks/x", Some(&text(&after, "access")))
            .status,
        200
    );
    // Retiring twice says so, and changes nothing.
    assert!(keys(&gw, &["retire", &old]).contains("already retired"));
}

#[test]
fn the_jwks_lists_every_eddsa_key_that_verifies() {
    let gw = Gateway::start_with(Options::default().tokens(config_eddsa));
    let jwks = |gw: &Gateway| -> Vec<String> {
        let r = gw.get("/.well-known/jwks.json", None);
        assert_eq!(r.status, 200);
        r.json["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| {
                assert_eq!(k["kty"], "OKP");
                k["kid"].as_str().expect("kid").to_string()
            })
            .collect()
    };
    let before = gw.register_and_login("ed@example.com", PASSWORD);
    let old = kid(&text(&before, "access")).expect("kid");
    assert_eq!(jwks(&gw), vec![old.clone()]);
    let new = rotate(&gw);
    assert_eq!(jwks(&gw), vec![new.clone(), old.clone()]);
    let after = gw.login("ed@example.com", PASSWORD);
    assert_eq!(kid(&text(&after, "access")).as_deref(), Some(new.as_str()));
    for t in [&before, &after] {
        assert_eq!(
            gw.get("/api/stocks/x", Some(&text(t, "access"))).status,
            200
        );
    }
    // An HS256 token naming the EdDSA key, signed with its public bytes.
    let r = gw.get("/.well-known/jwks.json", None);
    let x = r.json["keys"][0]["x"].as_str().expect("x").to_string();
    refused(
        &gw,
        &forge(
            &json!({"typ": "JWT", "alg": "HS256", "kid": new}),
            x.as_bytes(),
        ),
    );
    keys(&gw, &["retire", &old]);
    assert_eq!(jwks(&gw), vec![new]);
    refused(&gw, &text(&before, "access"));
    assert_eq!(
        gw.get("/api/stocks/x", Some(&text(&after, "access")))
            .status,
        200
    );
}

fn config_eddsa(t: crate::common::config::Tokens) -> crate::common::config::Tokens {
    crate::common::config::Tokens {
        algorithm: Some(Algorithm::EdDSA),
        secret_env: None,
        ..t
    }
}

#[test]
fn keys_rotate_without_a_gateway_works_on_the_store() {
    let mut gw = Gateway::start();
    let before = gw.register_and_login("off@example.com", PASSWORD);
    let old = kid(&text(&before, "access")).expect("kid");
    gw.kill();
    let new = rotate(&gw);
    assert_eq!(state(&gw, &old).as_deref(), Some("verify_only"));
    gw.restart_after_kill();
    assert_eq!(
        gw.get("/api/stocks/x", Some(&text(&before, "access")))
            .status,
        200
    );
    let after = gw.login("off@example.com", PASSWORD);
    assert_eq!(kid(&text(&after, "access")).as_deref(), Some(new.as_str()));
}

#[test]
fn a_verify_only_key_retires_itself_once_its_tokens_have_expired() {
    let gw = Gateway::start_with(Options::default().tokens(|t| {
        t.access_ttl(Duration::from_secs(1))
            .refresh_ttl(Duration::from_secs(2))
            .leeway(Duration::from_secs(1))
    }));
    let before = gw.register_and_login("auto@example.com", PASSWORD);
    let old = kid(&text(&before, "access")).expect("kid");
    let rotated = Instant::now();
    rotate(&gw);
    assert_eq!(state(&gw, &old).as_deref(), Some("verify_only"));
    within("retired", Duration::from_secs(10), || {
        state(&gw, &old).as_deref() == Some("retired")
    });
    assert!(
        rotated.elapsed() >= Duration::from_secs(3),
        "not before refresh_ttl + leeway"
    );
}

/// A replica on the database `url` names, with the test secret.
fn replica(url: &str) -> Gateway {
    Gateway::start_with(
        Options::default().store(|s| s.postgres(url).sync_interval(Duration::from_millis(200))),
    )
}

#[test]
fn a_rotation_and_a_retirement_reach_every_replica() {
    let url = pg::database();
    let (a, b) = (replica(&url), replica(&url));
    let before = a.register_and_login("rep@example.com", PASSWORD);
    let old = kid(&text(&before, "access")).expect("kid");
    let new = rotate(&a);
    // B signs with the new key within a second, and takes A's tokens.
    within("B signs with the new key", Duration::from_secs(1), || {
        let t = b.login("rep@example.com", PASSWORD);
        kid(&text(&t, "access")).as_deref() == Some(new.as_str())
    });
    let on_b = b.login("rep@example.com", PASSWORD);
    for gw in [&a, &b] {
        for t in [&before, &on_b] {
            assert_eq!(
                gw.get("/api/stocks/x", Some(&text(t, "access"))).status,
                200
            );
        }
    }
    keys(&b, &["retire", &old]);
    for gw in [&a, &b] {
        within("the old key refused", Duration::from_secs(1), || {
            gw.get("/api/stocks/x", Some(&text(&before, "access")))
                .status
                == 401
        });
        refused(gw, &text(&before, "access"));
        assert_eq!(
            gw.get("/api/stocks/x", Some(&text(&on_b, "access"))).status,
            200
        );
    }
}

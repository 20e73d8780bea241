//! The account API end to end, as the seeds' clients use it.

use std::time::Duration;

use crate::common::{self, Gateway, Options};
use serde_json::json;

#[test]
fn the_seed_flow_register_login_use_refresh_logout() {
    let gw = Gateway::start();
    // Seed 2, step 1: registration with phone and password_confirm.
    let r = gw.post(
        "/api/accounts/register/",
        &json!({"first_name": "John", "last_name": "Doe", "email": "john@example.com",
            "phone": "0612345678", "password": "SecurePass123!", "password_confirm": "SecurePass123!"}),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    for key in [
        "id",
        "email",
        "first_name",
        "last_name",
        "gender",
        "phone",
        "role",
        "is_active",
        "date_joined",
        "last_login",
    ] {
        assert!(
            r.json.get(key).is_some(),
            "account object lacks {key}: {}",
            r.text
        );
    }
    assert_eq!(r.json["role"], "Visiteur");
    assert!(r.json.get("password").is_none() && !r.text.contains("argon2"));

    // Step 2: login, the documented shape.
    let login = gw.login("john@example.com", "SecurePass123!");
    let access = login["access"].as_str().expect("access");
    let refresh = login["refresh"].as_str().expect("refresh");
    assert_eq!(login["account"]["id"], r.json["id"]);
    assert_eq!(login["account"]["first_name"], "John");
    assert_eq!(login["account"]["email"], "john@example.com");
    let claims = common::claims(access);
    assert_eq!(claims["token_type"], "access");
    assert_eq!(claims["sub"], r.json["id"].to_string());
    assert_eq!(claims["role"], "Visiteur");
    assert_eq!(
        claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0),
        300
    );
    assert_eq!(common::claims(refresh)["token_type"], "refresh");

    // Step 3: a protected resource, and the profile.
    let r = gw.get("/api/stocks/", Some(access));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["service"], "stocks");
    let me = gw.get("/api/accounts/", Some(access));
    assert_eq!(me.status, 200);
    assert_eq!(me.json["email"], "john@example.com");
    assert!(me.json["last_login"].is_string());

    // Refresh: rotation gives a new pair that works.
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": refresh}),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let access2 = r.json["access"].as_str().expect("access").to_string();
    let refresh2 = r.json["refresh"].as_str().expect("refresh").to_string();
    assert_ne!(refresh2, refresh);
    assert_eq!(gw.get("/api/jobs/", Some(&access2)).status, 200);

    // Logout ends the session: both access tokens and the refresh token die at once.
    let r = gw.post("/api/accounts/logout/", &json!({}), Some(&access2));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["message"].is_string());
    for token in [access, access2.as_str()] {
        let r = gw.get("/api/stocks/", Some(token));
        assert_eq!((r.status, r.code()), (401, "token_revoked"), "{}", r.text);
    }
    let r = gw.post(
        "/api/accounts/refresh/",
        &json!({"refresh": refresh2}),
        None,
    );
    assert_eq!((r.status, r.code()), (401, "token_not_valid"), "{}", r.text);
}

#[test]
fn register_names_every_bad_field() {
    let gw = Gateway::start();
    let r = gw.post("/api/accounts/register/", &json!({}), None);
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    for field in ["email", "password", "first_name", "last_name"] {
        assert!(
            r.json["fields"][field][0].is_string(),
            "{field}: {}",
            r.text
        );
    }
    assert!(r.json["error"].is_string());

    let base = json!({"email": "a@example.com", "password": "motdepasse123", "first_name": "A", "last_name": "B"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("email", json!("not-an-email")), "email"),
        (with("password", json!("court")), "password"),
        (with("password", json!("12345678901")), "password"),
        (
            with("password_confirm", json!("autre chose")),
            "password_confirm",
        ),
        (with("gender", json!("X")), "gender"),
        (with("phone", json!("abc")), "phone"),
        (with("first_name", json!(42)), "first_name"),
    ];
    for (body, field) in cases {
        let r = gw.post("/api/accounts/register/", &body, None);
        assert_eq!(
            (r.status, r.code()),
            (400, "validation_error"),
            "{body}: {}",
            r.text
        );
        assert!(r.json["fields"][field].is_array(), "{field}: {}", r.text);
    }

    assert_eq!(gw.post("/api/accounts/register/", &base, None).status, 201);
    // Same email, other case and spaces: refused, on the email field.
    let r = gw.post(
        "/api/accounts/register/",
        &with("email", json!("  A@Example.COM ")),
        None,
    );
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    assert!(r.json["fields"]["email"][0].is_string(), "{}", r.text);
    // Logging in with that other case works.
    gw.login("A@EXAMPLE.com", "motdepasse123");
}

#[test]
fn login_errors_are_those_of_the_seeds() {
    let gw = Gateway::start();
    gw.register_and_login("user@example.com", "motdepasse123");
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "user@example.com"}),
        None,
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json,
        json!({"error": "Email et mot de passe requis", "code": "missing_credentials"})
    );
    let r = gw.post("/api/accounts/login/", &json!({}), None);
    assert_eq!((r.status, r.code()), (400, "missing_credentials"));

    let expected =
        json!({"error": "Email ou mot de passe incorrect", "code": "invalid_credentials"});
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "user@example.com", "password": "wrong"}),
        None,
    );
    assert_eq!((r.status, &r.json), (401, &expected));
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "nobody@example.com", "password": "motdepasse123"}),
        None,
    );
    assert_eq!((r.status, &r.json), (401, &expected));

    // An inactive account gets exactly the same answer.
    let out = gw.cli(&["user", "deactivate", "user@example.com"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "user@example.com", "password": "motdepasse123"}),
        None,
    );
    assert_eq!((r.status, &r.json), (401, &expected));
}

#[test]
fn repeated_failures_are_throttled_with_retry_after() {
    let gw = Gateway::start_with(Options::default().accounts(|a| a.max_failures(3)));
    gw.register_and_login("victim@example.com", "motdepasse123");
    for _ in 0..3 {
        let r = gw.post(
            "/api/accounts/login/",
            &json!({"email": "victim@example.com", "password": "nope"}),
            None,
        );
        assert_eq!(r.status, 401);
    }
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "victim@example.com", "password": "motdepasse123"}),
        None,
    );
    assert_eq!(
        (r.status, r.code()),
        (429, "too_many_attempts"),
        "{}",
        r.text
    );
    let wait: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(wait > 0 && wait <= 900);
}

#[test]
fn request_shape_errors_are_json() {
    let gw = Gateway::start();
    let json_header = [("Content-Type", "application/json")];
    let r = gw.request(
        "POST",
        "/api/accounts/login/",
        &json_header,
        Some("{not json"),
    );
    assert_eq!((r.status, r.code()), (400, "invalid_json"), "{}", r.text);
    let big = format!("{{\"email\": \"{}\"}}", "a".repeat(70 * 1024));
    let r = gw.request("POST", "/api/accounts/register/", &json_header, Some(&big));
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.json["error"].is_string());
    let r = gw.request("GET", "/api/accounts/login/", &[], None);
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    assert_eq!(r.header("allow"), Some("POST"));
    let r = gw.request("DELETE", "/api/accounts/", &[], None);
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
    // Without the trailing slash too.
    let r = gw.post("/api/accounts/login", &json!({}), None);
    assert_eq!((r.status, r.code()), (400, "missing_credentials"));
    let r = gw.request("GET", "/api/accounts/nothing-here/", &[], None);
    assert_eq!((r.status, r.code()), (404, "not_found"));
}

#[test]
fn refresh_rotation_grace_and_reuse_detection() {
    let gw =
        Gateway::start_with(Options::default().tokens(|t| t.reuse_grace(Duration::from_secs(2))));
    let login = gw.register_and_login("race@example.com", "motdepasse123");
    let first = login["refresh"].as_str().expect("refresh").to_string();

    let r = gw.post("/api/accounts/refresh-token/", &json!({}), None);
    assert_eq!((r.status, r.code()), (400, "missing_refresh"));
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": "garbage"}),
        None,
    );
    assert_eq!((r.status, r.code()), (401, "token_not_valid"));
    let access = login["access"].as_str().expect("access");
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": access}),
        None,
    );
    assert_eq!(
        (r.status, r.code()),
        (401, "token_not_valid"),
        "an access token is no refresh token"
    );

    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": first}),
        None,
    );
    assert_eq!(r.status, 200);
    let second = r.json["refresh"].as_str().expect("refresh").to_string();
    // A racing client presents the first token again within the window: same session.
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": first}),
        None,
    );
    assert_eq!(r.status, 200, "within the grace window: {}", r.text);
    assert_eq!(
        common::claims(r.json["access"].as_str().expect("access"))["sid"],
        common::claims(&second)["sid"]
    );

    // After the window: theft. The whole session goes, the current token too.
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": first}),
        None,
    );
    assert_eq!((r.status, r.code()), (401, "token_reused"), "{}", r.text);
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": second}),
        None,
    );
    assert_eq!((r.status, r.code()), (401, "token_not_valid"));
    let r = gw.get("/api/stocks/", Some(access));
    assert_eq!((r.status, r.code()), (401, "token_revoked"));
}

#[test]
fn logout_all_ends_every_session_and_needs_a_token() {
    let gw = Gateway::start();
    let a = gw.register_and_login("multi@example.com", "motdepasse123");
    let b = gw.login("multi@example.com", "motdepasse123");
    let other = gw.register_and_login("other@example.com", "motdepasse123");

    let r = gw.post("/api/accounts/logout/", &json!({}), None);
    assert_eq!((r.status, r.code()), (401, "not_authenticated"));
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));

    let r = gw.post(
        "/api/accounts/logout/",
        &json!({"all": true}),
        a["access"].as_str(),
    );
    assert_eq!(r.status, 200);
    for token in [&a["access"], &b["access"]] {
        assert_eq!(gw.get("/api/stocks/", token.as_str()).status, 401);
        assert_eq!(
            gw.get("/api/accounts/", token.as_str()).code(),
            "token_revoked"
        );
    }
    let r = gw.post(
        "/api/accounts/refresh/",
        &json!({"refresh": b["refresh"]}),
        None,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        gw.get("/api/stocks/", other["access"].as_str()).status,
        200,
        "other accounts keep theirs"
    );
}

#[test]
fn concurrent_registrations_of_one_email_have_one_winner() {
    let gw = Gateway::start();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let gw = &gw;
                s.spawn(move || {
                    gw.post(
                        "/api/accounts/register/",
                        &json!({"email": if i % 2 == 0 { "same@example.com" } else { "SAME@example.com" },
                            "password": "motdepasse123", "first_name": "A", "last_name": "B"}),
                        None,
                    )
                    .status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        5,
        "{statuses:?}"
    );
    let out = gw.cli(&["user", "list"], None);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listing.to_lowercase().matches("same@example.com").count(),
        1,
        "{listing}"
    );
}

#[test]
fn the_jwks_document_is_served() {
    let gw = Gateway::start();
    let r = gw.get("/.well-known/jwks.json", None);
    assert_eq!(r.status, 200);
    assert!(
        r.json["keys"].is_array(),
        "HS256 publishes no key: {}",
        r.text
    );
}

//! The proxy path end to end: token checks, identity headers, route policy,
//! revocation on the very next request, also after a crash.

use crate::common::config::{Auth, Route, Upstream};
use crate::common::{self, now, sign, DemoUpstream, Gateway, Options};
use serde_json::{json, Value};

fn assert_401(r: &common::Resp, code: &str) {
    assert_eq!((r.status, r.code()), (401, code), "{}", r.text);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    assert!(r.json["error"].is_string());
}

#[test]
fn bad_tokens_get_401_with_the_right_code() {
    let gw = Gateway::start();
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let access = login["access"].as_str().expect("access");
    let refresh = login["refresh"].as_str().expect("refresh");
    let claims = common::claims(access);

    assert_401(&gw.get("/api/stocks/", None), "not_authenticated");
    assert_401(&gw.get("/api/stocks/", Some("")), "token_not_valid");
    assert_401(
        &gw.get("/api/stocks/", Some("abc.def.ghi")),
        "token_not_valid",
    );

    // Tampered payload: role raised to Admin, signature kept.
    let mut forged = claims.clone();
    forged["role"] = json!("Admin");
    let forged_payload = sign(&forged)
        .split('.')
        .nth(1)
        .expect("payload")
        .to_string();
    let parts: Vec<&str> = access.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_401(&gw.get("/api/stocks/", Some(&tampered)), "token_not_valid");

    // alg: none.
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert_401(&gw.get("/api/stocks/", Some(&none)), "token_not_valid");

    // A refresh token is not an access token.
    assert_401(&gw.get("/api/stocks/", Some(refresh)), "token_not_valid");

    // Validly signed but expired.
    let mut expired = claims.clone();
    expired["iat"] = json!(now() - 1000);
    expired["exp"] = json!(now() - 600);
    assert_401(
        &gw.get("/api/stocks/", Some(&sign(&expired))),
        "token_expired",
    );

    // Validly signed, wrong audience / issuer.
    for (key, value) in [("aud", "other"), ("iss", "someone-else")] {
        let mut wrong = claims.clone();
        wrong[key] = json!(value);
        assert_401(
            &gw.get("/api/stocks/", Some(&sign(&wrong))),
            "token_not_valid",
        );
    }

    // The genuine token still works.
    assert_eq!(gw.get("/api/stocks/", Some(access)).status, 200);

    let metrics = gw.admin_get("/metrics").text;
    assert!(
        metrics.contains(r#"vigile_auth_failures_total{reason="token_expired"} 1"#),
        "{metrics}"
    );
}

#[test]
fn the_upstream_gets_our_identity_headers_and_never_the_clients() {
    let gw = Gateway::start();
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let access = login["access"].as_str().expect("access");
    let bearer = format!("Bearer {access}");
    let r = gw.request(
        "GET",
        "/api/stocks/items?x=1",
        &[
            ("Authorization", &bearer),
            ("X-User-Id", "999"),
            ("x-user-id", "1000"),
            ("X-USER-ROLE", "Admin"),
            ("X-User-Email", "boss@example.com"),
            ("X-Session-Id", "forged"),
            ("X-Request-Id", "trace-42"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.json["headers"];
    assert_eq!(h["x-user-id"], json!([login["account"]["id"].to_string()]));
    assert_eq!(h["x-user-email"], json!(["dev@example.com"]));
    assert_eq!(h["x-user-role"], json!(["Visiteur"]));
    assert_eq!(h["x-session-id"], json!([common::claims(access)["sid"]]));
    assert_eq!(h["x-request-id"], json!(["trace-42"]));
    assert_eq!(h["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(h["authorization"], json!([bearer]));
    assert_eq!(r.json["path"], "/api/stocks/items");
    assert_eq!(r.json["query"], "x=1");
    assert_eq!(r.header("x-request-id"), Some("trace-42"));
}

#[test]
fn route_policy_roles_auth_modes_and_unknown_paths() {
    let gw = Gateway::start_with(
        Options::default()
            .route(Route::new("public", "/api/public/", "stocks").auth(Auth::None))
            .route(Route::new("maybe", "/api/maybe/", "stocks").auth(Auth::Optional))
            .route(
                Route::new("admin", "/api/admin/", "jobs")
                    .roles(["Admin"])
                    .strip_prefix(true)
                    .forward_authorization(false),
            ),
    );
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let access = login["access"].as_str().expect("access");

    // roles
    let r = gw.get("/api/admin/panel", Some(access));
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);
    assert_eq!(gw.get("/api/jobs/", Some(access)).status, 200);

    // auth: none still strips spoofed identity headers
    let r = gw.request("GET", "/api/public/x", &[("X-User-Id", "1")], None);
    assert_eq!(r.status, 200);
    assert!(r.json["headers"].get("x-user-id").is_none(), "{}", r.text);

    // auth: optional: anonymous passes, a bad token does not, a good one is used
    let r = gw.get("/api/maybe/x", None);
    assert_eq!(r.status, 200);
    assert!(r.json["headers"].get("x-user-id").is_none());
    assert_401(&gw.get("/api/maybe/x", Some("garbage")), "token_not_valid");
    let r = gw.get("/api/maybe/x", Some(access));
    assert_eq!(
        r.json["headers"]["x-user-email"],
        json!(["dev@example.com"])
    );

    // An Admin gets through, with the prefix stripped and no Authorization forwarded.
    let out = gw.cli(&["role", "create", "Admin"], None);
    assert!(out.status.success());
    let out = gw.cli(&["user", "set-role", "dev@example.com", "Admin"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = gw.login("dev@example.com", "motdepasse123");
    let r = gw.get("/api/admin/panel", admin["access"].as_str());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["path"], "/panel");
    assert!(r.json["headers"].get("authorization").is_none());
    assert_eq!(r.json["headers"]["x-user-role"], json!(["Admin"]));

    // Unknown paths are JSON 404s.
    let r = gw.get("/api/nothing/", Some(access));
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = gw.get("/elsewhere", None);
    assert_eq!((r.status, r.code()), (404, "not_found"));
}

#[test]
fn an_upstream_that_is_down_answers_502_json() {
    let port = common::free_port();
    let gw = Gateway::start_with(
        Options::default()
            .route(Route::new("gone", "/api/gone/", "gone"))
            .upstream("gone", Upstream::new([([127, 0, 0, 1], port).into()])),
    );
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let r = gw.get("/api/gone/x", login["access"].as_str());
    assert_eq!(
        (r.status, r.code()),
        (502, "upstream_unavailable"),
        "{}",
        r.text
    );
    // And it comes back when the service does.
    let _up = DemoUpstream::start_on("gone", port);
    let r = gw.get("/api/gone/x", login["access"].as_str());
    assert_eq!(r.status, 200, "{}", r.text);
    let metrics = gw.admin_get("/metrics").text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vigile_upstream_errors_total{")
                && l.contains(r#"upstream="gone""#)),
        "{metrics}"
    );
}

#[test]
fn revocation_survives_a_crash() {
    let mut gw = Gateway::start();
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let keep = gw.login("dev@example.com", "motdepasse123");
    let access = login["access"].as_str().expect("access");
    assert_eq!(
        gw.post("/api/accounts/logout/", &json!({}), Some(access))
            .status,
        200
    );
    gw.restart_after_kill();
    let r = gw.get("/api/stocks/", Some(access));
    assert_eq!((r.status, r.code()), (401, "token_revoked"), "{}", r.text);
    // The other session, and the account, survived too.
    assert_eq!(gw.get("/api/stocks/", keep["access"].as_str()).status, 200);
    let r = gw.post(
        "/api/accounts/refresh/",
        &json!({"refresh": keep["refresh"]}),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    gw.login("dev@example.com", "motdepasse123");
}

#[test]
fn operator_commands_reach_the_running_gateway_at_once() {
    let gw = Gateway::start();
    let out = gw.cli(
        &[
            "user",
            "create",
            "--email",
            "dev@example.com",
            "--first-name",
            "Jean",
            "--last-name",
            "Dupont",
            "--gender",
            "H",
            "--password-stdin",
        ],
        Some("motdepasse123\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("account JSON");
    assert_eq!(created["role"], "Visiteur");

    let login = gw.login("dev@example.com", "motdepasse123");
    let access = login["access"].as_str().expect("access");
    assert_eq!(gw.get("/api/stocks/", Some(access)).status, 200);

    let out = gw.cli(&["user", "deactivate", "dev@example.com"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = gw.get("/api/stocks/", Some(access));
    assert_eq!(
        (r.status, r.code()),
        (401, "token_revoked"),
        "the very next request"
    );
    let r = gw.post(
        "/api/accounts/refresh/",
        &json!({"refresh": login["refresh"]}),
        None,
    );
    assert_eq!(r.status, 401);

    let out = gw.cli(&["user", "activate", "dev@example.com"], None);
    assert!(out.status.success());
    gw.login("dev@example.com", "motdepasse123");

    let out = gw.cli(&["user", "show", "nobody@example.com"], None);
    assert!(!out.status.success());
    let out = gw.cli(&["user", "set-role", "dev@example.com", "NoSuchRole"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoSuchRole"));

    // Nobody without the operator token gets in.
    let r = common::send(
        &common::agent(),
        "POST",
        &format!("http://{}/admin/v1/command", gw.admin),
        &[("Authorization", "Bearer guess")],
        Some(r#"{"command":"list_users"}"#),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn no_token_or_password_reaches_the_log() {
    let gw = Gateway::start();
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let access = login["access"].as_str().expect("access");
    let refresh = login["refresh"].as_str().expect("refresh");
    gw.get("/api/stocks/", Some(access));
    gw.post("/api/accounts/refresh/", &json!({"refresh": refresh}), None);
    gw.post("/api/accounts/logout/", &json!({}), Some(access));
    let log = gw.log();
    assert!(
        log.contains("route=\"stocks\"") || log.contains("\"route\":\"stocks\""),
        "access log: {log}"
    );
    for secret in [access, refresh, "motdepasse123", common::SECRET] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
}

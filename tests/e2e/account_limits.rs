//! The account API's limits, played as an attacker would (issue 10, items
//! 11 to 14): parallel password guesses against the throttles, tokens
//! signed into the future or for too long, look-alike email addresses, and
//! the reuse grace window of refresh tokens measured below the second.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::common::{self, Gateway, Options};
use serde_json::{json, Value};

const PASSWORD: &str = "motdepasse123";

/// A counter or histogram count from the admin listener's `/metrics`.
fn metric(gw: &Gateway, line_start: &str) -> u64 {
    let r = gw.admin_get("/metrics");
    r.text
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// How many argon2 hashes and checks the gateway has run.
fn hashes(gw: &Gateway) -> u64 {
    metric(gw, "vigile_password_hash_seconds_count")
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

// --- item 11: throttles -----------------------------------------------------

#[test]
fn parallel_wrong_logins_never_run_more_password_checks_than_the_limit() {
    let gw = Gateway::start_with(Options::default().accounts(|a| a.max_failures(5)));
    gw.register_and_login("victim@example.com", PASSWORD);
    let before = hashes(&gw);
    let wrong = json!({"email": "victim@example.com", "password": "not-the-password"});
    let responses: Vec<common::Resp> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..40)
            .map(|_| s.spawn(|| gw.post("/api/accounts/login/", &wrong, None)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(count(&statuses, 401), 5, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 35, "{statuses:?}");
    for r in responses.iter().filter(|r| r.status == 429) {
        assert_eq!(r.code(), "too_many_attempts");
        assert!(r
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok()));
    }
    assert_eq!(
        hashes(&gw) - before,
        5,
        "40 parallel guesses, a limit of 5: 5 password checks ran"
    );
    // The right password from the same address is refused too, without a hash.
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "victim@example.com", "password": PASSWORD}),
        None,
    );
    assert_eq!((r.status, r.code()), (429, "too_many_attempts"));
    assert_eq!(hashes(&gw) - before, 5);
}

#[test]
fn password_change_is_throttled_like_login_and_shares_its_budget() {
    let gw = Gateway::start_with(Options::default().accounts(|a| a.max_failures(3)));
    let login = gw.register_and_login("owner@example.com", PASSWORD);
    let access = login["access"].as_str().expect("access").to_string();
    let change = |old: &str| {
        gw.post(
            "/api/accounts/password-change/",
            &json!({"old_password": old, "new_password": "Un-nouveau-secret-2026"}),
            Some(&access),
        )
    };
    // A thief with the access token guesses the old password, in parallel.
    let before = hashes(&gw);
    let responses: Vec<common::Resp> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..20)
            .map(|i| s.spawn(move || change(&format!("guess-{i}"))))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(count(&statuses, 400), 3, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 17, "{statuses:?}");
    for r in &responses {
        if r.status == 400 {
            assert!(r.json["fields"]["old_password"].is_array(), "{}", r.text);
        } else {
            assert_eq!(r.code(), "too_many_attempts");
            assert!(r.header("retry-after").is_some());
        }
    }
    assert_eq!(hashes(&gw) - before, 3, "3 password checks ran");

    // Even the right old password waits now, and so does a login of the
    // account from this address: one budget for both endpoints.
    let r = change(PASSWORD);
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
    assert!(wait > 0 && wait <= 900, "{wait}");
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "owner@example.com", "password": PASSWORD}),
        None,
    );
    assert_eq!((r.status, r.code()), (429, "too_many_attempts"));
    assert_eq!(hashes(&gw) - before, 3, "no hash ran for the refusals");

    // Keyed per account and address, as login: from another address the
    // owner still gets in (the per-account limit is 10 × 3).
    let elsewhere: IpAddr = "127.0.0.2".parse().expect("ip");
    let (status, body) = common::post_from(
        elsewhere,
        gw.addr,
        "/api/accounts/login/",
        &json!({"email": "owner@example.com", "password": PASSWORD}),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn wrong_logins_count_against_password_change_too() {
    let gw = Gateway::start_with(Options::default().accounts(|a| a.max_failures(2)));
    let login = gw.register_and_login("both@example.com", PASSWORD);
    let access = login["access"].as_str().expect("access");
    for _ in 0..2 {
        let r = gw.post(
            "/api/accounts/login/",
            &json!({"email": "BOTH@example.com", "password": "nope"}),
            None,
        );
        assert_eq!(r.status, 401);
    }
    let r = gw.post(
        "/api/accounts/password-change/",
        &json!({"old_password": "another-guess", "new_password": "Un-nouveau-secret-2026"}),
        Some(access),
    );
    assert_eq!(
        (r.status, r.code()),
        (429, "too_many_attempts"),
        "{}",
        r.text
    );
}

// --- item 12: token limits ----------------------------------------------------

/// Access claims in the exact layout vigile writes (the hand-written reader
/// of the fast path takes them), with `iat` and `exp` chosen.
fn access_claims(real: &Value, iat: Value, exp: Value) -> Value {
    json!({"iss": "vigile", "aud": "api", "sub": real["sub"], "email": real["email"],
        "role": "Admin", "sid": real["sid"], "jti": "0123456789abcdef0123456789abcdef",
        "iat": iat, "exp": exp, "token_type": "access"})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    if let Some(map) = claims.as_object_mut() {
        map.remove(key);
    }
    claims
}

#[test]
fn tokens_signed_into_the_future_or_for_too_long_are_refused_everywhere() {
    let gw =
        Gateway::start_with(Options::default().tokens(|t| t.access_ttl(Duration::from_secs(300))));
    let login = gw.register_and_login("future@example.com", PASSWORD);
    let access = login["access"].as_str().expect("access").to_string();
    let refresh = login["refresh"].as_str().expect("refresh").to_string();
    let real = common::claims(&access);
    let now = common::now();

    // Within the limits a forged token passes: the forgery itself works.
    let fine = common::sign(&access_claims(&real, json!(now), json!(now + 300)));
    assert_eq!(gw.get("/api/stocks/", Some(&fine)).status, 200);
    let fine_nbf = common::sign(&with(
        access_claims(&real, json!(now), json!(now + 300)),
        "nbf",
        json!(now - 5),
    ));
    assert_eq!(gw.get("/api/stocks/", Some(&fine_nbf)).status, 200);

    let ten_years = 10 * 365 * 86_400;
    let forged = [
        // Not valid before an hour from now.
        with(
            access_claims(&real, json!(now), json!(now + 300)),
            "nbf",
            json!(now + 3600),
        ),
        with(
            access_claims(&real, json!(now), json!(now + 300)),
            "nbf",
            json!(u64::MAX),
        ),
        // Issued in the future.
        access_claims(&real, json!(now + 3600), json!(now + 3900)),
        access_claims(&real, json!(now + 60), json!(now + 300)),
        // Lives longer than access_ttl (5 min): ten years, one second more.
        access_claims(&real, json!(now), json!(now + ten_years)),
        access_claims(&real, json!(now), json!(now + 301)),
        access_claims(&real, json!(0), json!(now + 300)),
        access_claims(&real, json!(now), json!(u64::MAX)),
        // Odd numbers and a missing iat.
        access_claims(&real, json!(now as f64 + 0.5), json!(now + 300)),
        access_claims(&real, json!(-1), json!(now + 300)),
        access_claims(&real, json!(1e30), json!(now + 300)),
        without(access_claims(&real, json!(now), json!(now + 300)), "iat"),
    ];
    for claims in &forged {
        let token = common::sign(claims);
        // Twice on the proxy path: the second time would come from the
        // cache of verified tokens, had the first let it in.
        for _ in 0..2 {
            let r = gw.get("/api/stocks/", Some(&token));
            assert_eq!((r.status, r.code()), (401, "token_not_valid"), "{claims}");
            assert!(r.header("www-authenticate").is_some());
        }
        let r = gw.get("/api/accounts/", Some(&token));
        assert_eq!(
            (r.status, r.code()),
            (401, "token_not_valid"),
            "account endpoint: {claims}"
        );
        let r = gw.post("/api/accounts/logout/", &json!({}), Some(&token));
        assert_eq!((r.status, r.code()), (401, "token_not_valid"), "{claims}");
    }

    // Refresh tokens: the session's own sid and jti, signed for too long or
    // from the future. Refused before the session is looked at.
    let real_refresh = common::claims(&refresh);
    let refresh_claims = |iat: u64, exp: u64| {
        json!({"iss": "vigile", "aud": "api", "sub": real_refresh["sub"],
            "sid": real_refresh["sid"], "jti": real_refresh["jti"], "iat": iat, "exp": exp,
            "token_type": "refresh"})
    };
    for claims in [
        refresh_claims(now, now + ten_years),
        refresh_claims(now, now + 86_400 + 1),
        refresh_claims(now + 3600, now + 86_400),
        with(refresh_claims(now, now + 86_400), "nbf", json!(now + 3600)),
        without(refresh_claims(now, now + 86_400), "iat"),
    ] {
        let r = gw.post(
            "/api/accounts/refresh-token/",
            &json!({"refresh": common::sign(&claims)}),
            None,
        );
        assert_eq!((r.status, r.code()), (401, "token_not_valid"), "{claims}");
    }

    // The tokens vigile issued itself still pass everywhere, and so do the
    // ones a refresh gives.
    assert_eq!(gw.get("/api/stocks/", Some(&access)).status, 200);
    assert_eq!(gw.get("/api/accounts/", Some(&access)).status, 200);
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": refresh}),
        None,
    );
    assert_eq!(r.status, 200, "the session was not touched: {}", r.text);
    let new_access = r.json["access"].as_str().expect("access");
    let new_refresh = r.json["refresh"].as_str().expect("refresh");
    assert_eq!(gw.get("/api/stocks/", Some(new_access)).status, 200);
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": new_refresh}),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

// --- item 13: look-alike emails -------------------------------------------------

fn register(gw: &Gateway, email: &str) -> common::Resp {
    gw.post(
        "/api/accounts/register/",
        &json!({"email": email, "password": PASSWORD, "first_name": "Kevin",
            "last_name": "Durand"}),
        None,
    )
}

const LOOK_ALIKES: [&str; 6] = [
    "\u{212A}evin@example.com",  // Kelvin sign: lower-cases into `k`
    "\u{FF4B}evin@example.com",  // fullwidth k
    "ke\u{200B}vin@example.com", // zero-width space
    "kevin\u{2060}@example.com", // word joiner
    "k\u{0435}vin@example.com",  // Cyrillic e
    "kevin@\u{FF45}xample.com",  // fullwidth e in the domain
];

#[test]
fn look_alike_emails_are_refused_and_never_reach_another_account() {
    let gw = Gateway::start();
    // A squatter cannot take the address first...
    for email in LOOK_ALIKES {
        let r = register(&gw, email);
        assert_eq!(
            (r.status, r.code()),
            (400, "validation_error"),
            "{email:?}: {}",
            r.text
        );
        assert!(r.json["fields"]["email"][0].is_string(), "{}", r.text);
    }
    // ...so the real owner registers, and the look-alikes are still refused.
    let r = register(&gw, "kevin@example.com");
    assert_eq!(r.status, 201, "{}", r.text);
    for email in LOOK_ALIKES {
        assert_eq!(register(&gw, email).status, 400, "{email:?}");
        // A look-alike does not log into the real account, with its password.
        let r = gw.post(
            "/api/accounts/login/",
            &json!({"email": email, "password": PASSWORD}),
            None,
        );
        assert_eq!(
            (r.status, r.code()),
            (401, "invalid_credentials"),
            "{email:?}"
        );
    }
    gw.login(" KEVIN@Example.com", PASSWORD);

    // A reset asked with a look-alike sends nothing (same 202 all the same).
    for email in LOOK_ALIKES.iter().take(2) {
        let r = gw.post(
            "/api/accounts/password-forgotten/",
            &json!({ "email": email }),
            None,
        );
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &gw,
        "vigile_password_reset_mails_total{result=\"no_account\"}",
    ) < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        metric(
            &gw,
            "vigile_password_reset_mails_total{result=\"no_account\"}"
        ),
        2
    );
    assert!(gw.mails().is_empty(), "no mail for a look-alike");

    // The operator command line applies the same rule.
    let out = gw.cli(
        &[
            "user",
            "create",
            "--email",
            "\u{212A}ate@example.com",
            "--first-name",
            "Kate",
            "--last-name",
            "Durand",
            "--password-stdin",
        ],
        Some("Un-secret-2026\n"),
    );
    assert!(
        !out.status.success(),
        "a look-alike is refused by the CLI too"
    );
    let out = gw.cli(&["user", "show", "\u{212A}evin@example.com"], None);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = gw.cli(&["user", "show", "KEVIN@example.com"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["email"], "kevin@example.com");
}

#[test]
fn an_account_stored_with_a_non_ascii_email_still_works() {
    // redb: the legacy record is written into the file directly (the store
    // conformance suite checks such records on PostgreSQL too).
    let mut gw = Gateway::start_with(Options::default().store(|s| s.redb()));
    gw.register_and_login("someone@example.com", PASSWORD);
    // An account written before the ASCII rule, straight into the store.
    gw.kill();
    {
        use vigile::store::StoreBackend;
        let store =
            vigile::store::redb::RedbStore::open(&gw.dir.path().join("data/vigile.redb"), 300)
                .expect("the store");
        let hash = vigile::passwords::hash_password(PASSWORD).expect("hash");
        store
            .create_account(vigile::store::AccountRecord {
                id: 0,
                email: "Jos\u{E9}@example.com".into(),
                password_hash: hash,
                first_name: "Jos\u{E9}".into(),
                last_name: "Garc\u{ED}a".into(),
                gender: None,
                phone: None,
                role: "Visiteur".into(),
                is_active: true,
                date_joined: common::now(),
                last_login: None,
            })
            .expect("a legacy account");
    }
    gw.restart_after_kill();
    let login = gw.login("JOS\u{C9}@example.com", PASSWORD);
    assert_eq!(login["account"]["email"], "Jos\u{E9}@example.com");
    let r = gw.post(
        "/api/accounts/password-forgotten/",
        &json!({"email": "jos\u{E9}@example.com"}),
        None,
    );
    assert_eq!(r.status, 202);
    let mails = gw.wait_for_mails(1);
    assert_eq!(mails.len(), 1, "the legacy account gets its reset mail");
    let out = gw.cli(&["user", "show", "jos\u{E9}@example.com"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- item 14: reuse grace below the second ------------------------------------

#[test]
fn a_retired_refresh_token_past_a_one_second_grace_is_theft() {
    let gw =
        Gateway::start_with(Options::default().tokens(|t| t.reuse_grace(Duration::from_secs(1))));
    let login = gw.register_and_login("grace@example.com", PASSWORD);
    let first = login["refresh"].as_str().expect("refresh").to_string();
    let access = login["access"].as_str().expect("access").to_string();
    // Rotate early in a wall-clock second: counted in whole seconds, a token
    // presented 1.6 s later would still be in a "1 s" window.
    let deadline = Instant::now() + Duration::from_secs(3);
    while common_millis() % 1000 > 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Instant::now();
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": first}),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let rotated_by = Instant::now();
    let second = r.json["refresh"].as_str().expect("refresh").to_string();

    // Within the window (checked only when the machine was quick enough to
    // be sure of it): the racing client gets an answer for the same session.
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": first}),
        None,
    );
    if sent.elapsed() < Duration::from_millis(900) {
        assert_eq!(r.status, 200, "within the grace window: {}", r.text);
    }

    // 1.6 s after the rotation, at least: the window has closed.
    let wait = Duration::from_millis(1600).saturating_sub(rotated_by.elapsed());
    std::thread::sleep(wait);
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": first}),
        None,
    );
    assert_eq!((r.status, r.code()), (401, "token_reused"), "{}", r.text);
    // Theft: the whole session is gone.
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": second}),
        None,
    );
    assert_eq!((r.status, r.code()), (401, "token_not_valid"));
    let r = gw.get("/api/stocks/", Some(&access));
    assert_eq!((r.status, r.code()), (401, "token_revoked"));
}

fn common_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

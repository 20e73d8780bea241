//! Password reset, self-service and abuse resistance, end to end.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::config::{Mailer, MailerKind, Smtp, SmtpTls};
use crate::common::{self, Gateway, Options};
use serde_json::json;

const PASSWORD: &str = "motdepasse123";
const NEW_PASSWORD: &str = "Un-nouveau-secret-2026";

pub(crate) fn token_of(mail: &str) -> String {
    common::reset_token_of(mail)
}

pub(crate) fn forgotten(gw: &Gateway, email: &str) -> common::Resp {
    gw.post(
        "/api/accounts/password-forgotten/",
        &json!({ "email": email }),
        None,
    )
}

pub(crate) fn reset(gw: &Gateway, token: &str, password: &str) -> common::Resp {
    gw.post(
        "/api/accounts/password-reset/",
        &json!({"token": token, "password": password, "password_confirm": password}),
        None,
    )
}

#[test]
fn the_whole_reset_flow_through_the_file_outbox() {
    let gw = Gateway::start();
    let first = gw.register_and_login("dev@example.com", PASSWORD);
    let second = gw.login("dev@example.com", PASSWORD);

    let known = forgotten(&gw, "DEV@example.com ");
    let unknown = forgotten(&gw, "nobody@example.com");
    assert_eq!(known.status, 202, "{}", known.text);
    assert_eq!(
        (unknown.status, &unknown.json),
        (202, &known.json),
        "same answer either way"
    );
    let r = gw.post("/api/accounts/password-forgotten/", &json!({}), None);
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    assert!(r.json["fields"]["email"].is_array());

    let mails = gw.wait_for_mails(1);
    assert_eq!(mails.len(), 1, "one mail, for the known account only");
    assert!(mails[0].contains("To: dev@example.com"));
    let token = token_of(&mails[0]);
    assert!(token.len() >= 43, "32 random bytes, URL-safe: {token}");
    assert!(
        !gw.log().contains(&token),
        "the reset token is never logged"
    );

    // The policy applies, and a refused password does not use the token up.
    let r = reset(&gw, &token, "password123");
    assert_eq!(
        (r.status, r.code()),
        (400, "validation_error"),
        "{}",
        r.text
    );
    assert!(r.json["fields"]["password"][0].is_string());

    let r = reset(&gw, &token, NEW_PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text);
    for session in [&first, &second] {
        let r = gw.get("/api/stocks/", session["access"].as_str());
        assert_eq!(
            (r.status, r.code()),
            (401, "token_revoked"),
            "every session ends"
        );
    }
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "dev@example.com", "password": PASSWORD}),
        None,
    );
    assert_eq!(r.status, 401, "the old password is gone");
    gw.login("dev@example.com", NEW_PASSWORD);

    // Used once, and tampered tokens get the same answer.
    let r = reset(&gw, &token, "Encore-un-autre-2026");
    assert_eq!((r.status, r.code()), (400, "invalid_reset_token"));
    let mut tampered = token.clone();
    tampered.replace_range(0..1, if tampered.starts_with('A') { "B" } else { "A" });
    let r = reset(&gw, &tampered, "Encore-un-autre-2026");
    assert_eq!((r.status, r.code()), (400, "invalid_reset_token"));
}

#[test]
fn reset_tokens_expire_and_older_ones_die() {
    let gw =
        Gateway::start_with(Options::default().accounts(|a| a.reset_ttl(Duration::from_secs(2))));
    gw.register_and_login("dev@example.com", PASSWORD);
    forgotten(&gw, "dev@example.com");
    forgotten(&gw, "dev@example.com");
    let mails = gw.wait_for_mails(2);
    let (older, newer) = (token_of(&mails[0]), token_of(&mails[1]));
    assert_ne!(older, newer);
    assert_eq!(reset(&gw, &newer, NEW_PASSWORD).status, 200);
    let r = reset(&gw, &older, "Encore-un-autre-2026");
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_reset_token"),
        "older tokens die"
    );

    forgotten(&gw, "dev@example.com");
    let mails = gw.wait_for_mails(3);
    let late = token_of(&mails[2]);
    std::thread::sleep(Duration::from_millis(3100));
    let r = reset(&gw, &late, "Encore-un-autre-2026");
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_reset_token"),
        "expired"
    );
}

/// A minimal SMTP server on loopback: hands each message's DATA to `tx`.
fn fake_smtp(tx: mpsc::Sender<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                let _ = writer.write_all(b"220 fake.smtp ESMTP\r\n");
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    let command = line.trim_end().to_ascii_uppercase();
                    let answer: &[u8] = if command.starts_with("EHLO") {
                        b"250-fake.smtp\r\n250-8BITMIME\r\n250 OK\r\n"
                    } else if command.starts_with("DATA") {
                        let _ = writer.write_all(b"354 go on\r\n");
                        let mut data = String::new();
                        let mut l = String::new();
                        while reader.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                            if l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                            l.clear();
                        }
                        let _ = tx.send(data);
                        b"250 queued\r\n"
                    } else if command.starts_with("QUIT") {
                        let _ = writer.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    let _ = writer.write_all(answer);
                    line.clear();
                }
            });
        }
    });
    port
}

fn smtp_mailer(port: u16, timeout: Duration) -> Mailer {
    Mailer {
        kind: Some(MailerKind::Smtp),
        from: Some("vigile <no-reply@example.com>".into()),
        reset_url: Some("https://app.example.com/reset?token={token}".into()),
        smtp: Some(Smtp {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: Some(SmtpTls::None),
            timeout: Some(timeout),
        }),
        ..Mailer::default()
    }
}

#[test]
fn reset_links_go_out_over_smtp() {
    let (tx, rx) = mpsc::channel();
    let port = fake_smtp(tx);
    let gw =
        Gateway::start_with(Options::default().mailer(smtp_mailer(port, Duration::from_secs(5))));
    gw.register_and_login("dev@example.com", PASSWORD);
    assert_eq!(forgotten(&gw, "dev@example.com").status, 202);
    let data = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a message over SMTP");
    assert!(data.contains("To: dev@example.com"), "{data}");
    // Quoted-printable on the wire: undo the soft breaks and `=3D`.
    let plain = data.replace("=\r\n", "").replace("=3D", "=");
    let token = token_of(&plain);
    assert!(plain.contains("https://app.example.com/reset?token="));
    assert_eq!(reset(&gw, &token, NEW_PASSWORD).status, 200);
    let metrics = gw.admin_get("/metrics").text;
    assert!(
        metrics.contains(r#"vigile_password_reset_mails_total{result="sent"} 1"#),
        "{metrics}"
    );
}

#[test]
fn an_smtp_server_that_never_answers_delays_nothing() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let gw =
        Gateway::start_with(Options::default().mailer(smtp_mailer(port, Duration::from_secs(3))));
    gw.register_and_login("dev@example.com", PASSWORD);
    gw.register_and_login("other@example.com", PASSWORD);
    for email in ["dev@example.com", "other@example.com", "nobody@example.com"] {
        assert_eq!(forgotten(&gw, email).status, 202);
    }
    // Every answer came before the worker gave up on even one mail (3 s
    // each): the answers did not wait for SMTP.
    let metrics = gw.admin_get("/metrics").text;
    assert!(!metrics.contains(r#"result="failed""#), "{metrics}");
    // Then the worker times out and counts the failures.
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let metrics = gw.admin_get("/metrics").text;
        if metrics.contains(r#"vigile_password_reset_mails_total{result="failed"} 2"#)
            || Instant::now() > deadline
        {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        failed.contains(r#"vigile_password_reset_mails_total{result="failed"} 2"#),
        "{failed}"
    );
    assert!(
        failed.contains(r#"vigile_password_reset_mails_total{result="no_account"} 1"#),
        "{failed}"
    );
}

#[test]
fn password_forgotten_is_throttled_per_email() {
    let gw = Gateway::start();
    for _ in 0..3 {
        assert_eq!(forgotten(&gw, "someone@example.com").status, 202);
    }
    let r = forgotten(&gw, "someone@example.com");
    assert_eq!((r.status, r.code()), (429, "too_many_attempts"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        forgotten(&gw, "another@example.com").status,
        202,
        "other emails go on"
    );
}

#[test]
fn the_profile_can_be_updated_but_not_its_identity() {
    let gw = Gateway::start();
    let login = gw.register_and_login("dev@example.com", PASSWORD);
    let bearer = format!("Bearer {}", login["access"].as_str().expect("access"));
    let patch = |body: serde_json::Value| {
        gw.request(
            "PATCH",
            "/api/accounts/",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            Some(&body.to_string()),
        )
    };
    let r = patch(json!({"first_name": "Jeanne", "gender": "F", "phone": "+33 6 12 34 56 78"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["first_name"].as_str(), r.json["gender"].as_str()),
        (Some("Jeanne"), Some("F"))
    );
    assert_eq!(r.json["last_name"], "Dupont", "untouched");
    let r = patch(json!({"phone": "not a phone", "gender": "X", "last_name": ""}));
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    for field in ["phone", "gender", "last_name"] {
        assert!(r.json["fields"][field].is_array(), "{field}: {}", r.text);
    }
    let r = patch(json!({"email": "new@example.com", "role": "Admin"}));
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    assert!(r.json["fields"]["role"].is_array());
    let r = patch(json!({"phone": null}));
    assert_eq!(r.json["phone"], serde_json::Value::Null);
    let me = gw.get("/api/accounts/", login["access"].as_str());
    assert_eq!(
        (me.json["first_name"].as_str(), me.json["role"].as_str()),
        (Some("Jeanne"), Some("Visiteur"))
    );
    let r = gw.request("PATCH", "/api/accounts/", &[], Some("{}"));
    assert_eq!((r.status, r.code()), (401, "not_authenticated"));
}

#[test]
fn password_change_keeps_this_session_and_ends_the_others() {
    let gw = Gateway::start();
    let here = gw.register_and_login("dev@example.com", PASSWORD);
    let elsewhere = gw.login("dev@example.com", PASSWORD);
    let change = |old: &str, new: &str| {
        gw.post(
            "/api/accounts/password-change/",
            &json!({"old_password": old, "new_password": new}),
            here["access"].as_str(),
        )
    };
    let r = change("wrong-password", NEW_PASSWORD);
    assert_eq!((r.status, r.code()), (400, "validation_error"));
    assert!(r.json["fields"]["old_password"].is_array());
    let r = change(PASSWORD, "12345678");
    assert!(r.json["fields"]["new_password"].is_array(), "{}", r.text);
    let r = change(PASSWORD, NEW_PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        gw.get("/api/stocks/", here["access"].as_str()).status,
        200,
        "this session goes on"
    );
    let r = gw.get("/api/stocks/", elsewhere["access"].as_str());
    assert_eq!((r.status, r.code()), (401, "token_revoked"));
    let r = gw.post(
        "/api/accounts/refresh/",
        &json!({"refresh": elsewhere["refresh"]}),
        None,
    );
    assert_eq!(r.status, 401);
    gw.login("dev@example.com", NEW_PASSWORD);
}

#[test]
fn an_attacker_elsewhere_does_not_lock_the_user_out() {
    let gw =
        Gateway::start_with(Options::default().accounts(|a| a.max_failures(3).hash_workers(2)));
    gw.register_and_login("victim@example.com", PASSWORD);
    let attacker: IpAddr = "127.0.0.2".parse().expect("ip");
    let user: IpAddr = "127.0.0.1".parse().expect("ip");
    let wrong = json!({"email": "victim@example.com", "password": "guess"});
    for _ in 0..3 {
        assert_eq!(
            common::post_from(attacker, gw.addr, "/api/accounts/login/", &wrong).0,
            401
        );
    }
    let (status, body) = common::post_from(attacker, gw.addr, "/api/accounts/login/", &wrong);
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_attempts"))
    );
    let right = json!({"email": "victim@example.com", "password": PASSWORD});
    let (status, _) = common::post_from(user, gw.addr, "/api/accounts/login/", &right);
    assert_eq!(
        status, 200,
        "the user, from their own address, still gets in"
    );

    // One address failing across many accounts is stopped too (4 × 3 failures).
    let stuffer: IpAddr = "127.0.0.3".parse().expect("ip");
    let mut statuses = Vec::new();
    for i in 0..13 {
        let body = json!({"email": format!("user{i}@example.com"), "password": "guess"});
        statuses.push(common::post_from(stuffer, gw.addr, "/api/accounts/login/", &body).0);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        12,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
}

#[test]
fn a_full_hashing_queue_answers_503_and_proxying_goes_on() {
    let gw = Gateway::start_with(Options::default().accounts(|a| a.hash_workers(1).hash_queue(1)));
    let login = gw.register_and_login("dev@example.com", PASSWORD);
    let access = login["access"].as_str().expect("access").to_string();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let storm: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    gw.post(
                        "/api/accounts/login/",
                        &json!({"email": "dev@example.com", "password": "wrong"}),
                        None,
                    )
                })
            })
            .collect();
        let proxied = gw.get("/api/stocks/", Some(&access));
        assert_eq!(
            proxied.status, 200,
            "proxied traffic flows during the storm"
        );
        storm
            .into_iter()
            .map(|h| {
                let r = h.join().expect("thread");
                if r.status == 503 {
                    assert_eq!(r.code(), "overloaded");
                    assert!(r.header("retry-after").is_some());
                }
                r.status
            })
            .collect()
    });
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
}

#[test]
fn deleting_an_account_revokes_it_everywhere_at_once() {
    let gw = Gateway::start();
    let login = gw.register_and_login("dev@example.com", PASSWORD);
    let out = gw.cli(&["user", "delete", "dev@example.com"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = gw.get("/api/stocks/", login["access"].as_str());
    assert_eq!((r.status, r.code()), (401, "token_revoked"));
    let r = gw.post(
        "/api/accounts/refresh/",
        &json!({"refresh": login["refresh"]}),
        None,
    );
    assert_eq!(r.status, 401);
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "dev@example.com", "password": PASSWORD}),
        None,
    );
    assert_eq!((r.status, r.code()), (401, "invalid_credentials"));
    gw.register_and_login("dev@example.com", PASSWORD);
}

#[test]
fn housekeeping_shrinks_memory_and_store_after_expiry() {
    let gw = Gateway::start_with(
        Options::default()
            .tokens(|t| {
                t.access_ttl(Duration::from_secs(1))
                    .refresh_ttl(Duration::from_secs(2))
            })
            .store(|s| s.purge_interval(Duration::from_millis(200))),
    );
    let a = gw.register_and_login("dev@example.com", PASSWORD);
    let b = gw.login("dev@example.com", PASSWORD);
    // Used once, so the proxy path remembers it as verified.
    assert_eq!(gw.get("/api/stocks/", b["access"].as_str()).status, 200);
    assert_eq!(
        gw.post("/api/accounts/logout/", &json!({}), a["access"].as_str())
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(500));
    let metrics = gw.admin_get("/metrics").text;
    assert!(metrics.contains("vigile_revoked_sessions 1"), "{metrics}");
    assert!(
        metrics.contains(r#"vigile_store_rows{table="sessions"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"vigile_store_rows{table="revocations"} 1"#),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_millis(3500));
    // Remembered, but expired since: refused as any expired token.
    let r = gw.get("/api/stocks/", b["access"].as_str());
    assert_eq!((r.status, r.code()), (401, "token_expired"), "{}", r.text);
    let metrics = gw.admin_get("/metrics").text;
    for line in [
        "vigile_revoked_sessions 0",
        r#"vigile_store_rows{table="sessions"} 0"#,
        r#"vigile_store_rows{table="revocations"} 0"#,
        r#"vigile_store_rows{table="accounts"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
}

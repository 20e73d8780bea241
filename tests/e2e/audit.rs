//! The audit log of a scripted session: the API calls of one account's
//! life (register, logins failed and not, refresh, refresh reuse, password
//! change failed and done, reset asked and done, logout), operator commands
//! through the running gateway (role change, deactivate, activate, delete,
//! key rotation), reloads (`vigile reload`, refused and not, and SIGHUP), and a
//! command run on the store once the gateway is gone. `audit.file` must hold
//! exactly the lines of those events, in order, with the request ids of the
//! answers; the gateway's log the same lines; the metric their counts; and
//! neither any password, token, email or secret.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{Gateway, Options};

const EMAIL: &str = "jean.audit@example.com";
const PASSWORD: &str = "Premier-secret-2026";
const WRONG: &str = "Pas-le-bon-2026";
const CHANGED: &str = "Deuxieme-secret-2026";
const RESET: &str = "Troisieme-secret-2026";

/// One step of the script: a POST with its own request id, which the
/// answer must carry back, and the status it must get; its JSON body.
fn step(
    gw: &Gateway,
    id: &str,
    path: &str,
    body: Value,
    token: Option<&str>,
    status: u16,
) -> Value {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json"), ("X-Request-Id", id)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let r = gw.request(
        "POST",
        &format!("/api/accounts/{path}/"),
        &headers,
        Some(&body.to_string()),
    );
    assert_eq!(r.header("x-request-id"), Some(id), "{path}: {}", r.text);
    assert_eq!(r.status, status, "{id}: {}", r.text);
    r.json
}

fn login(gw: &Gateway, id: &str, email: &str, password: &str, status: u16) -> Value {
    let body = json!({"email": email, "password": password});
    step(gw, id, "login", body, None, status)
}

fn cli_ok(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.cli(args, None);
    assert!(
        out.status.success(),
        "vigile {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a line must say, time and details aside: event, account id,
/// outcome, reason, request id, source.
type Summary = (
    String,
    Option<u64>,
    String,
    Option<String>,
    Option<String>,
    String,
);

fn summary(line: &Value) -> Summary {
    let text = |k: &str| line[k].as_str().map(str::to_string);
    (
        text("event").unwrap_or_default(),
        line["account_id"].as_u64(),
        text("outcome").unwrap_or_default(),
        text("reason"),
        text("request_id"),
        text("source").unwrap_or_default(),
    )
}

fn expect(
    event: &str,
    account: Option<u64>,
    reason: Option<&str>,
    request_id: Option<&str>,
    source: &str,
) -> Summary {
    (
        event.to_string(),
        account,
        if reason.is_some() {
            "failure"
        } else {
            "success"
        }
        .to_string(),
        reason.map(str::to_string),
        request_id.map(str::to_string),
        source.to_string(),
    )
}

fn lines_of(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with("{\"time\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn wait_for_lines(gw: &Gateway, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let lines = lines_of(&std::fs::read_to_string(gw.audit_path()).unwrap_or_default());
        if lines.len() >= n {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    lines_of(&std::fs::read_to_string(gw.audit_path()).unwrap_or_default())
}

#[test]
fn a_scripted_session_gives_exactly_its_audit_lines() {
    let mut gw = Gateway::start_with(
        Options::default()
            .audit_file()
            .tokens(|t| t.reuse_grace(Duration::from_millis(300))),
    );
    let mut secrets: Vec<String> = [PASSWORD, WRONG, CHANGED, RESET, EMAIL]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let body = json!({"email": EMAIL, "password": PASSWORD, "first_name": "Jean",
        "last_name": "Audit"});
    let id = step(&gw, "r-register", "register", body, None, 201)["id"]
        .as_u64()
        .expect("an id");
    login(&gw, "r-login-wrong", EMAIL, WRONG, 401);
    login(&gw, "r-login-unknown", "nobody@example.com", WRONG, 401);
    let first = login(&gw, "r-login", EMAIL, PASSWORD, 200);
    let refresh = json!({ "refresh": first["refresh"] });
    let rotated = step(
        &gw,
        "r-refresh",
        "refresh-token",
        refresh.clone(),
        None,
        200,
    );
    std::thread::sleep(Duration::from_millis(600));
    let reused = step(&gw, "r-reuse", "refresh", refresh, None, 401);
    assert_eq!(reused["code"], "token_reused");
    let second = login(&gw, "r-login-2", EMAIL, PASSWORD, 200);
    let access = second["access"].as_str();
    let wrong = json!({"old_password": WRONG, "new_password": CHANGED});
    step(&gw, "r-change-wrong", "password-change", wrong, access, 400);
    let change = json!({"old_password": PASSWORD, "new_password": CHANGED});
    step(&gw, "r-change", "password-change", change, access, 200);
    let forgotten = json!({ "email": EMAIL });
    step(
        &gw,
        "r-forgotten",
        "password-forgotten",
        forgotten,
        None,
        202,
    );
    let token = crate::common::reset_token_of(gw.wait_for_mails(1).first().expect("a mail"));
    let reset = json!({"token": token, "password": RESET, "password_confirm": RESET});
    step(&gw, "r-reset", "password-reset", reset, None, 200);
    let third = login(&gw, "r-login-3", EMAIL, RESET, 200);
    step(
        &gw,
        "r-logout",
        "logout",
        json!({}),
        third["access"].as_str(),
        200,
    );
    for body in [&first, &rotated, &second, &third] {
        for key in ["access", "refresh"] {
            secrets.push(body[key].as_str().expect("a token").to_string());
        }
    }
    secrets.push(token);

    // Operator commands, carried out by the running gateway.
    cli_ok(&gw, &["role", "create", "Admin"]);
    cli_ok(&gw, &["user", "set-role", EMAIL, "Admin"]);
    cli_ok(&gw, &["user", "deactivate", EMAIL]);
    cli_ok(&gw, &["user", "activate", EMAIL]);
    cli_ok(&gw, &["user", "delete", EMAIL]);
    let rotated = cli_ok(&gw, &["keys", "rotate"]);
    let kid = rotated
        .split_whitespace()
        .nth(1)
        .expect("the new kid")
        .to_string();
    cli_ok(&gw, &["reload"]);
    // A file with an unknown key: sent to the gateway, which refuses it.
    let bad = gw.dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(gw.config_path()).expect("the config");
    std::fs::write(&bad, format!("{text}\nunknown_key: 1\n")).expect("write bad.yaml");
    let out = crate::common::cli(&bad, &["reload"], None);
    assert_eq!(out.status.code(), Some(1), "a refused reload");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let from_gateway = wait_for_lines(&gw, 22);
    // The metric counts the gateway's lines, event by event.
    let metrics = gw.admin_get("/metrics").text;
    let mut counted = std::collections::BTreeMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("vigile_audit_events_total{event=\"") {
            let (event, n) = rest.split_once("\"} ").expect("a sample");
            let n: u64 = n.parse().expect("a count");
            if n > 0 {
                counted.insert(event.to_string(), n);
            }
        }
    }
    let mut lines_by_event = std::collections::BTreeMap::new();
    for line in &from_gateway {
        let event = line["event"].as_str().unwrap_or("").to_string();
        *lines_by_event.entry(event).or_insert(0u64) += 1;
    }
    assert_eq!(counted, lines_by_event);
    let admin_token = std::fs::read_to_string(gw.dir.path().join("data/admin.token"))
        .expect("the operator token");
    secrets.push(admin_token.trim().to_string());
    secrets.push(crate::common::SECRET.to_string());

    // Without a gateway, the command line writes the line itself.
    gw.kill();
    let out = gw.cli(
        &[
            "user",
            "create",
            "--email",
            "marie.audit@example.com",
            "--first-name",
            "Marie",
            "--last-name",
            "Audit",
            "--password-stdin",
        ],
        Some("Cli-secret-2026-xyz\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("the account");
    let cli_stderr = lines_of(&String::from_utf8_lossy(&out.stderr));
    secrets.push("Cli-secret-2026-xyz".into());
    secrets.push("marie.audit@example.com".into());

    let api = |event, account, reason, rid| expect(event, account, reason, Some(rid), "api");
    let op = |event, account| expect(event, account, None, None, "operator");
    let me = Some(id);
    let expected = vec![
        api("account_created", me, None, "r-register"),
        api("login_failed", me, Some("wrong_password"), "r-login-wrong"),
        api(
            "login_failed",
            None,
            Some("unknown_account"),
            "r-login-unknown",
        ),
        api("login_succeeded", me, None, "r-login"),
        api("token_refreshed", me, None, "r-refresh"),
        api("token_reused", me, Some("session_revoked"), "r-reuse"),
        api("login_succeeded", me, None, "r-login-2"),
        api(
            "password_change_failed",
            me,
            Some("wrong_old_password"),
            "r-change-wrong",
        ),
        api("password_changed", me, None, "r-change"),
        api("password_reset_requested", None, None, "r-forgotten"),
        api("password_reset_done", me, None, "r-reset"),
        api("login_succeeded", me, None, "r-login-3"),
        api("logout", me, None, "r-logout"),
        op("role_changed", me),
        op("account_deactivated", me),
        op("account_activated", me),
        op("account_deleted", me),
        op("key_rotated", None),
        op("config_reloaded", None),
        expect(
            "config_reloaded",
            None,
            Some("reload_refused"),
            None,
            "operator",
        ),
        expect("config_reloaded", None, None, None, "signal"),
        expect("account_created", created["id"].as_u64(), None, None, "cli"),
    ];
    let file = lines_of(&std::fs::read_to_string(gw.audit_path()).expect("audit.file"));
    let got: Vec<_> = file.iter().map(summary).collect();
    assert_eq!(got, expected, "{file:#?}");

    // Clients and details.
    for line in &file[..13] {
        assert_eq!(line["client"], "127.0.0.1", "{line}");
    }
    for line in &file[13..] {
        assert_eq!(line["client"], Value::Null, "{line}");
    }
    assert_eq!(file[12]["all"], false);
    assert_eq!(file[13]["role"], "Admin");
    assert_eq!(file[17]["kid"], kid.as_str());
    assert_eq!(file[18]["sha256"].as_str().map(str::len), Some(64));
    for line in &file {
        let time = line["time"].as_str().expect("time");
        assert!(
            time.len() == 24 && time.ends_with('Z') && humantime::parse_rfc3339(time).is_ok(),
            "{time}"
        );
    }

    // The gateway's log has its lines, the same; the command line's went to
    // its stderr.
    let logged = lines_of(&gw.log());
    assert_eq!(logged, file[..21], "the log's audit lines");
    assert_eq!(from_gateway, file[..21]);
    assert_eq!(cli_stderr, file[21..]);

    // Nothing secret, anywhere.
    let everything = format!(
        "{}\n{}",
        std::fs::read_to_string(gw.audit_path()).expect("audit.file"),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in &secrets {
        assert!(
            !everything.contains(secret.as_str()),
            "{secret} is in the audit log"
        );
    }
}

#[test]
fn audit_events_are_counted_by_event() {
    let gw = Gateway::start_with(Options::default());
    gw.register_and_login("compte@example.com", PASSWORD);
    let r = gw.post(
        "/api/accounts/login/",
        &json!({"email": "compte@example.com", "password": WRONG}),
        None,
    );
    assert_eq!(r.status, 401);
    let metrics = gw.admin_get("/metrics").text;
    for (event, n) in [
        ("account_created", 1),
        ("login_succeeded", 1),
        ("login_failed", 1),
        ("logout", 0),
    ] {
        let line = format!("vigile_audit_events_total{{event=\"{event}\"}} {n}");
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    // Without audit.file, the lines are in the log all the same.
    let events: Vec<String> = lines_of(&gw.log())
        .iter()
        .map(|l| l["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        events,
        ["account_created", "login_succeeded", "login_failed"]
    );
}

#[test]
fn a_reload_opens_the_audit_file_again_after_a_rotation() {
    let gw = Gateway::start_with(Options::default().audit_file());
    gw.register_and_login("compte@example.com", PASSWORD);
    let rotated = gw.dir.path().join("audit.log.1");
    std::fs::rename(gw.audit_path(), &rotated).expect("rotate");
    let out = gw.cli(&["reload"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = |path: &std::path::Path| -> Vec<String> {
        lines_of(&std::fs::read_to_string(path).unwrap_or_default())
            .iter()
            .map(|l| l["event"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(events(&rotated), ["account_created", "login_succeeded"]);
    assert_eq!(events(&gw.audit_path()), ["config_reloaded"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(gw.audit_path())
        .expect("audit.log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

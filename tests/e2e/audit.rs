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

use crate::common::{Gateway, Options, Resp};

const EMAIL: &str = "jean.audit@example.com";
const PASSWORD: &str = "Premier-secret-2026";
const WRONG: &str = "Pas-le-bon-2026";
const CHANGED: &str = "Deuxieme-secret-2026";
const RESET: &str = "Troisieme-secret-2026";

/// A POST with its own request id; the answer must carry it back.
fn call(gw: &Gateway, path: &str, body: &Value, token: Option<&str>, id: &str) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json"), ("X-Request-Id", id)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let r = gw.request("POST", path, &headers, Some(&body.to_string()));
    assert_eq!(r.header("x-request-id"), Some(id), "{path}: {}", r.text);
    r
}

fn login(gw: &Gateway, password: &str, id: &str) -> Resp {
    let body = json!({"email": EMAIL, "password": password});
    call(gw, "/api/accounts/login/", &body, None, id)
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

fn reset_token(mail: &str) -> String {
    let start = mail.find("token=").expect("a link in the mail") + "token=".len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// What a line must say, time and details aside.
fn summary(
    line: &Value,
) -> (
    String,
    Option<u64>,
    String,
    Option<String>,
    Option<String>,
    String,
) {
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
) -> (
    String,
    Option<u64>,
    String,
    Option<String>,
    Option<String>,
    String,
) {
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
    let r = call(
        &gw,
        "/api/accounts/register/",
        &json!({"email": EMAIL, "password": PASSWORD, "first_name": "Jean", "last_name": "Audit"}),
        None,
        "r-register",
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_u64().expect("an id");
    assert_eq!(login(&gw, WRONG, "r-login-wrong").status, 401);
    let r = call(
        &gw,
        "/api/accounts/login/",
        &json!({"email": "nobody@example.com", "password": WRONG}),
        None,
        "r-login-unknown",
    );
    assert_eq!(r.status, 401);
    let first = login(&gw, PASSWORD, "r-login").json;
    let refresh = first["refresh"].as_str().expect("refresh").to_string();
    let r = call(
        &gw,
        "/api/accounts/refresh-token/",
        &json!({ "refresh": refresh }),
        None,
        "r-refresh",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    secrets.extend(
        ["access", "refresh"]
            .iter()
            .filter_map(|k| r.json[k].as_str().map(str::to_string)),
    );
    std::thread::sleep(Duration::from_millis(600));
    let r = call(
        &gw,
        "/api/accounts/refresh/",
        &json!({ "refresh": refresh }),
        None,
        "r-reuse",
    );
    assert_eq!((r.status, r.code()), (401, "token_reused"));
    let second = login(&gw, PASSWORD, "r-login-2").json;
    let access = second["access"].as_str().expect("access").to_string();
    let change = "/api/accounts/password-change/";
    let r = call(
        &gw,
        change,
        &json!({"old_password": WRONG, "new_password": CHANGED}),
        Some(&access),
        "r-change-wrong",
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = call(
        &gw,
        change,
        &json!({"old_password": PASSWORD, "new_password": CHANGED}),
        Some(&access),
        "r-change",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &gw,
        "/api/accounts/password-forgotten/",
        &json!({ "email": EMAIL }),
        None,
        "r-forgotten",
    );
    assert_eq!(r.status, 202);
    let token = reset_token(gw.wait_for_mails(1).first().expect("the reset mail"));
    let r = call(
        &gw,
        "/api/accounts/password-reset/",
        &json!({"token": token, "password": RESET, "password_confirm": RESET}),
        None,
        "r-reset",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let third = login(&gw, RESET, "r-login-3").json;
    let access = third["access"].as_str().expect("access").to_string();
    let r = call(
        &gw,
        "/api/accounts/logout/",
        &json!({}),
        Some(&access),
        "r-logout",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    for body in [&first, &second, &third] {
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

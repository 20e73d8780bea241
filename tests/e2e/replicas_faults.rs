//! Replicas on one PostgreSQL database under faults and races: refresh
//! reuse detected across replicas, a replica killed (SIGKILL) and restarted
//! that refuses every revoked token from its first answer, writes a killed
//! replica acknowledged found on another, and concurrent writes of one
//! session or account on two replicas that never answer 5xx.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, claims, pg, Gateway, Resp};
use crate::replicas::{replica, within};

const PASSWORD: &str = "Correct-Horse-42";

/// A string field of a JSON answer.
fn text(body: &Value, key: &str) -> String {
    match body[key].as_str() {
        Some(s) => s.to_string(),
        None => panic!("no {key} in {body}"),
    }
}

fn refresh(gw: &Gateway, token: &str) -> Resp {
    gw.post("/api/accounts/refresh/", &json!({ "refresh": token }), None)
}

#[test]
fn a_refresh_token_reused_on_another_replica_ends_the_session_on_every_replica() {
    let url = pg::database();
    let grace = Duration::from_secs(2);
    let start = || replica(&url, |o| o.tokens(|t| t.reuse_grace(grace)));
    let (a, b, c) = (start(), start(), start());
    let first = a.register_and_login("reuse@example.com", PASSWORD);
    let (access0, refresh0) = (text(&first, "access"), text(&first, "refresh"));

    let rotated = refresh(&a, &refresh0);
    let rotated_at = Instant::now();
    assert_eq!(rotated.status, 200, "rotation on A: {}", rotated.text);
    let (access1, refresh1) = (
        text(&rotated.json, "access"),
        text(&rotated.json, "refresh"),
    );

    // Within the window (a client that raced its own rotation): B answers
    // the retired token for the same session, with its current refresh token.
    let raced = refresh(&b, &refresh0);
    assert!(
        rotated_at.elapsed() < grace,
        "the check ran inside the window"
    );
    assert_eq!(
        raced.status, 200,
        "inside the grace window on B: {}",
        raced.text
    );
    let (access2, refresh2) = (text(&raced.json, "access"), text(&raced.json, "refresh"));
    assert_eq!(
        claims(&refresh2)["jti"],
        claims(&refresh1)["jti"],
        "the session's current refresh token, handed out again"
    );
    assert_eq!(claims(&access2)["sid"], claims(&access0)["sid"]);
    let accesses = [&access0, &access1, &access2];
    for gw in [&a, &b, &c] {
        for access in accesses {
            assert_eq!(gw.get("/api/stocks/x", Some(access)).status, 200);
        }
    }

    // After the window: theft, on another replica than the rotation's.
    std::thread::sleep(grace.saturating_sub(rotated_at.elapsed()) + Duration::from_millis(200));
    let reused = refresh(&b, &refresh0);
    assert_eq!(
        (reused.status, reused.code()),
        (401, "token_reused"),
        "{}",
        reused.text
    );
    for (name, gw) in [("A", &a), ("B", &b), ("C", &c)] {
        within(
            &format!("{name} refuses every access token of the session"),
            Duration::from_secs(1),
            || {
                accesses
                    .iter()
                    .all(|t| gw.get("/api/stocks/x", Some(t)).status == 401)
            },
        );
        for access in accesses {
            assert_eq!(
                gw.get("/api/stocks/x", Some(access)).code(),
                "token_revoked"
            );
        }
        let newest = refresh(gw, &refresh1);
        assert_eq!(
            (newest.status, newest.code()),
            (401, "token_not_valid"),
            "the newest refresh token on {name}: {}",
            newest.text
        );
    }
}

#[test]
fn a_replica_restarted_after_sigkill_refuses_every_revoked_token_from_its_first_answer() {
    let url = pg::database();
    let a = replica(&url, |o| o);
    let mut b = replica(&url, |o| o);
    let kept = text(
        &a.register_and_login("many@example.com", PASSWORD),
        "access",
    );
    // 50 sessions, logged in on A by two clients at once.
    let accesses: Vec<String> = std::thread::scope(|scope| {
        let logins: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    (0..25)
                        .map(|_| text(&a.login("many@example.com", PASSWORD), "access"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        logins
            .into_iter()
            .flat_map(|t| t.join().expect("logins"))
            .collect()
    });
    for access in &accesses {
        assert_eq!(
            b.get("/api/stocks/x", Some(access)).status,
            200,
            "B accepts them"
        );
    }
    let logout = |access: &String| {
        let r = a.post("/api/accounts/logout/", &json!({}), Some(access));
        assert_eq!(r.status, 200, "logout on A: {}", r.text);
    };
    // 40 logged out while B runs, B killed at once (what it applied in
    // memory dies with it), 10 more while it is down.
    accesses[..40].iter().for_each(logout);
    b.kill();
    accesses[40..].iter().for_each(logout);
    b.restart_after_kill();

    for (i, access) in accesses.iter().enumerate() {
        let r = b.get("/api/stocks/x", Some(access));
        assert_eq!(
            (r.status, r.code()),
            (401, "token_revoked"),
            "the first answer of the restarted B to revoked token {i}: {}",
            r.text
        );
    }
    assert_eq!(
        b.get("/api/stocks/x", Some(&kept)).status,
        200,
        "a live session still passes"
    );
    for access in &accesses {
        assert_eq!(b.get("/api/stocks/x", Some(access)).status, 401);
    }
}

/// A POST to a replica that may be killed meanwhile: `None` when no answer
/// (its status line) came.
fn try_post(
    agent: &ureq::Agent,
    addr: SocketAddr,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> Option<(u16, Value)> {
    let mut request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("Content-Type", "application/json");
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let request = request.body(body.to_string()).expect("request");
    let mut response = agent.run(request).ok()?;
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Some((
        response.status().as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    ))
}

/// What a replica answered with a 2xx before it was killed, and the 5xx it
/// should never have answered.
#[derive(Default)]
struct Acknowledged {
    registered: Vec<String>,
    logged_out: Vec<String>,
    failures: Vec<String>,
}

/// Requests each load thread sends at most.
const OPS: usize = 25;

/// Registers new accounts on `addr` until it stops answering.
fn register_load(addr: SocketAddr, name: &str, acked: &AtomicUsize, out: &Mutex<Acknowledged>) {
    let agent = common::agent();
    for i in 0..OPS {
        let email = format!("{name}-{i}@example.com");
        let body = json!({"email": email, "password": PASSWORD, "first_name": "Jean",
            "last_name": "Dupont"});
        let Some((status, answer)) = try_post(&agent, addr, "/api/accounts/register/", &body, None)
        else {
            return;
        };
        let mut out = out.lock().expect("lock");
        match status {
            201 => {
                out.registered.push(email);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            _ => out
                .failures
                .push(format!("register {email}: {status} {answer}")),
        }
    }
}

/// Logs `email` in and out on `addr` until it stops answering.
fn logout_load(addr: SocketAddr, email: &str, acked: &AtomicUsize, out: &Mutex<Acknowledged>) {
    let agent = common::agent();
    let credentials = json!({"email": email, "password": PASSWORD});
    for _ in 0..OPS {
        let Some((status, login)) =
            try_post(&agent, addr, "/api/accounts/login/", &credentials, None)
        else {
            return;
        };
        let Some(access) = login["access"].as_str().filter(|_| status == 200) else {
            let failure = format!("login {email}: {status} {login}");
            out.lock().expect("lock").failures.push(failure);
            continue;
        };
        let Some((status, answer)) = try_post(
            &agent,
            addr,
            "/api/accounts/logout/",
            &json!({}),
            Some(access),
        ) else {
            return;
        };
        let mut out = out.lock().expect("lock");
        match status {
            200 => {
                out.logged_out.push(access.to_string());
                acked.fetch_add(1, Ordering::SeqCst);
            }
            _ => out
                .failures
                .push(format!("logout {email}: {status} {answer}")),
        }
    }
}

#[test]
fn a_replica_killed_during_write_load_loses_no_acknowledged_write() {
    let url = pg::database();
    let mut a = replica(&url, |o| o);
    let b = replica(&url, |o| o);
    let users = ["load0@example.com", "load1@example.com"];
    for user in users {
        b.register_and_login(user, PASSWORD);
    }
    let started = Instant::now();
    for trial in 0..3 {
        if trial > 0 {
            a.restart_after_kill();
        }
        let (addr, acked, out) = (a.addr, AtomicUsize::new(0), Mutex::default());
        let (acked, out) = (&acked, &out);
        std::thread::scope(|scope| {
            for t in 0..2 {
                scope.spawn(move || register_load(addr, &format!("k{trial}-{t}"), acked, out));
            }
            for user in users {
                scope.spawn(move || logout_load(addr, user, acked, out));
            }
            // Killed while the load runs: after a few acknowledged writes,
            // with others in flight.
            within("writes acknowledged", Duration::from_secs(15), || {
                acked.load(Ordering::SeqCst) >= 10
            });
            a.kill();
        });
        let out = out.lock().expect("lock");
        assert!(out.failures.is_empty(), "trial {trial}: {:?}", out.failures);
        for email in &out.registered {
            let r = b.post(
                "/api/accounts/login/",
                &json!({"email": email, "password": PASSWORD}),
                None,
            );
            assert_eq!(
                r.status, 200,
                "trial {trial}: acknowledged {email}: {}",
                r.text
            );
        }
        for access in &out.logged_out {
            within(
                &format!("trial {trial}: B refuses a token whose logout was acknowledged"),
                Duration::from_secs(2),
                || b.get("/api/stocks/x", Some(access)).status == 401,
            );
        }
        eprintln!(
            "trial {trial}: {} registrations and {} logouts acknowledged, all found on B",
            out.registered.len(),
            out.logged_out.len()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30), "bounded");
}

/// Runs `left` and `right` at once (one barrier, two threads).
fn race<'a>(
    left: impl FnOnce() -> Resp + Send + 'a,
    right: impl FnOnce() -> Resp + Send + 'a,
) -> (Resp, Resp) {
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        let left = scope.spawn(|| {
            start.wait();
            left()
        });
        start.wait();
        let right = right();
        (left.join().expect("race"), right)
    })
}

/// Rounds of writes of one account and its sessions on two replicas at
/// once; every answer is a success or a refusal, never a 5xx.
fn concurrent_writes_never_answer_5xx(url: &str) {
    let (a, b) = (replica(url, |o| o), replica(url, |o| o));
    let email = "racer@example.com";
    let passwords = ["Correct-Horse-42", "Battery-Staple-77"];
    let mut current = 0;
    a.register_and_login(email, passwords[current]);
    let mut failures = Vec::new();
    let mut check = |what: &str, r: &Resp, allowed: &[u16]| {
        if !allowed.contains(&r.status) {
            failures.push(format!("{what}: {} {}", r.status, r.text));
        }
    };
    let login = |gw: &Gateway, password: &str| {
        gw.post(
            "/api/accounts/login/",
            &json!({"email": email, "password": password}),
            None,
        )
    };
    for round in 0..6 {
        let password = passwords[current];
        // Two logins of one account (each writes its `last_login`).
        let (x, y) = race(|| login(&a, password), || login(&b, password));
        check("login on A", &x, &[200]);
        check("login on B", &y, &[200]);
        if x.status != 200 || y.status != 200 {
            continue;
        }
        let (x, y) = (x.json, y.json);
        // One refresh token presented to both replicas: one rotation, and
        // the other inside the grace window (or refused), never a failure.
        let token = text(&x, "refresh");
        let (r1, r2) = race(|| refresh(&a, &token), || refresh(&b, &token));
        check("refresh on A", &r1, &[200, 401]);
        check("refresh on B", &r2, &[200, 401]);
        // A logout racing a refresh of the same session.
        let newest = [&r1, &r2]
            .iter()
            .find_map(|r| r.json["refresh"].as_str().map(str::to_string))
            .unwrap_or(token);
        let access = text(&x, "access");
        let (l, r) = race(
            || a.post("/api/accounts/logout/", &json!({}), Some(&access)),
            || refresh(&b, &newest),
        );
        check("logout on A", &l, &[200]);
        check("refresh racing the logout on B", &r, &[200, 401]);
        // A password change racing a logout of every session, then two
        // logouts of every session racing each other.
        let z = login(&a, password);
        check("login", &z, &[200]);
        let (y_access, z_access) = (text(&y, "access"), text(&z.json, "access"));
        let next = (current + 1) % 2;
        let (p, l) = race(
            || {
                a.post(
                    "/api/accounts/password-change/",
                    &json!({"old_password": password, "new_password": passwords[next]}),
                    Some(&y_access),
                )
            },
            || {
                b.post(
                    "/api/accounts/logout/",
                    &json!({"all": true}),
                    Some(&z_access),
                )
            },
        );
        check(
            &format!("round {round}: password change on A"),
            &p,
            &[200, 401],
        );
        check(&format!("round {round}: logout all on B"), &l, &[200, 401]);
        if p.status == 200 {
            current = next;
        }
        let (u, v) = (login(&a, passwords[current]), login(&b, passwords[current]));
        check("login", &u, &[200]);
        check("login", &v, &[200]);
        let (u, v) = (text(&u.json, "access"), text(&v.json, "access"));
        let (l1, l2) = race(
            || a.post("/api/accounts/logout/", &json!({"all": true}), Some(&u)),
            || b.post("/api/accounts/logout/", &json!({"all": true}), Some(&v)),
        );
        check("logout all on A", &l1, &[200, 401]);
        check("logout all on B", &l2, &[200, 401]);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn concurrent_writes_of_one_account_on_two_replicas_never_answer_5xx() {
    concurrent_writes_never_answer_5xx(&pg::database());
}

/// The same on a database whose default isolation level is SERIALIZABLE (an
/// operator's `ALTER DATABASE ... SET default_transaction_isolation`): the
/// store's transactions rely on READ COMMITTED's re-check of a row changed
/// meanwhile, where SERIALIZABLE fails one of two writers with 40001.
#[test]
fn concurrent_writes_never_answer_5xx_on_a_serializable_database() {
    let url = pg::database();
    let name = url.rsplit('/').next().expect("name");
    pg::server()
        .sql(
            "postgres",
            &format!("ALTER DATABASE {name} SET default_transaction_isolation = 'serializable'"),
        )
        .expect("alter database");
    concurrent_writes_never_answer_5xx(&url);
}

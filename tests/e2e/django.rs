//! The move from the Django system (issue 14), with data made by the real
//! seed rebuild (`../shared/django_seed`, Django 5.2 and simplejwt 5.5):
//! users created by Django's own hashers, tokens issued by its own login,
//! one blacklisted by its logout and one by a rotation, `dumpdata` output
//! and the SQLite file (`tests/django/make_data.py`).
//!
//! The Python that runs Django is the venv `deploy/test.sh` makes
//! (`ensure_django_venv`): `$VIGILE_DJANGO_PYTHON`, else
//! `target/django-venv/bin/python`. Without it these tests fail, naming it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::common::config::{Migration, Route, SimpleJwt};
use crate::common::{Gateway, Options};

/// What `make_data.py` wrote, once per run of the suite.
struct DjangoData {
    dir: PathBuf,
    data: Value,
}

impl DjangoData {
    fn dump(&self) -> String {
        self.dir.join("dump.json").display().to_string()
    }

    fn sqlite(&self) -> String {
        self.dir.join("db.sqlite3").display().to_string()
    }

    fn users(&self) -> &[Value] {
        self.data["users"].as_array().map_or(&[], Vec::as_slice)
    }

    fn token(&self, name: &str) -> &str {
        self.data["tokens"][name].as_str().expect("a token")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("django.key")
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn django() -> &'static DjangoData {
    static DATA: OnceLock<DjangoData> = OnceLock::new();
    DATA.get_or_init(|| {
        let python = std::env::var_os("VIGILE_DJANGO_PYTHON")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target/django-venv/bin/python"));
        assert!(
            python.exists(),
            "no Django venv at {}: run deploy/test.sh (ensure_django_venv in deploy/lib.sh) \
             or set VIGILE_DJANGO_PYTHON",
            python.display()
        );
        let seed = std::env::var_os("VIGILE_DJANGO_SEED")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("../shared/django_seed"));
        // Kept for the whole run (several tests read it); in the system's
        // temporary folder.
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let out = Command::new(&python)
            .arg(repo().join("tests/django/make_data.py"))
            .arg(&seed)
            .arg(&dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("run make_data.py");
        assert!(
            out.status.success(),
            "make_data.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let data: Value =
            serde_json::from_slice(&std::fs::read(dir.join("data.json")).expect("data.json"))
                .expect("data.json is JSON");
        let key = data["signing_key"].as_str().expect("the signing key");
        std::fs::write(dir.join("django.key"), key).expect("key file");
        DjangoData { dir, data }
    })
}

/// How many accounts `vigile user list` printed (its table's rows).
fn accounts_listed(out: &std::process::Output) -> usize {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .count()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A gateway accepting Django's tokens until 2099, its store holding the
/// Django data imported from `source` (`--dumpdata` or `--sqlite`).
fn imported(source: &str, file: &str, accept_access: bool) -> Gateway {
    let options = Options::default()
        .migration(Migration {
            simplejwt: Some(SimpleJwt {
                signing_key_file: Some(django().key_file()),
                until: "2099-01-01T00:00:00Z".into(),
                accept_access: Some(accept_access),
            }),
        })
        .route(Route::new("admin-only", "/api/admin-only/", "stocks").roles(["Admin"]));
    let mut gw = Gateway::start_with(options);
    // A redb store is the gateway's while it runs: import before it starts.
    gw.terminate();
    let out = gw.cli(&["import", "django", source, file], None);
    assert!(out.status.success(), "{}", text(&out));
    gw.restart_after_kill();
    gw
}

#[test]
fn django_accounts_are_imported_with_their_ids_roles_and_hashes() {
    let data = django();
    let mut gw = Gateway::start_with(Options::default());
    gw.terminate();
    let dump = data.dump();
    let dry = gw.cli(
        &["import", "django", "--dumpdata", &dump, "--dry-run"],
        None,
    );
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(text(&dry).contains("would import"), "{}", text(&dry));
    assert!(
        text(&dry).contains("accounts      10 added, 0 updated, 0 unchanged"),
        "{}",
        text(&dry)
    );
    let listed = gw.cli(&["user", "list"], None);
    assert_eq!(
        accounts_listed(&listed),
        0,
        "a dry run writes nothing: {}",
        text(&listed)
    );

    let first = gw.cli(&["import", "django", "--dumpdata", &dump], None);
    assert!(first.status.success(), "{}", text(&first));
    for line in [
        "accounts      10 added, 0 updated, 0 unchanged",
        "blacklisted   2 refresh tokens added",
    ] {
        assert!(text(&first).contains(line), "{line}: {}", text(&first));
    }
    let roles = gw.cli(&["role", "list"], None);
    assert!(text(&roles).contains("Gérant"), "{}", text(&roles));
    let again = gw.cli(&["import", "django", "--dumpdata", &dump], None);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("accounts      0 added, 0 updated, 10 unchanged"),
        "a second run changes nothing: {}",
        text(&again)
    );
    assert!(text(&again).contains("blacklisted   0 refresh"));

    gw.restart_after_kill();
    for user in data.users() {
        let email = user["email"].as_str().expect("email");
        let shown = gw.cli(&["user", "show", email], None);
        assert!(shown.status.success(), "{}", text(&shown));
        let account: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
        assert_eq!(account["id"], user["id"], "{email}: the same id");
        assert_eq!(account["role"], user["role"], "{email}");
        assert_eq!(account["is_active"], user["is_active"], "{email}");
        assert_eq!(account["first_name"], "Prénom");
    }
    // New accounts continue after the highest imported id.
    let created = gw.post(
        "/api/accounts/register/",
        &json!({"email": "new@example.com", "password": "Brand-New-Pass-1",
                "first_name": "N", "last_name": "N"}),
        None,
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["id"], 11);

    // What the operator decided here since stays: a second import neither
    // reactivates nor brings back a deleted account.
    for args in [
        ["user", "deactivate", "argon2@example.com"],
        ["user", "delete", "scrypt@example.com"],
    ] {
        let out = gw.cli(&args, None);
        assert!(out.status.success(), "{}", text(&out));
    }
    gw.terminate();
    let again = gw.cli(&["import", "django", "--dumpdata", &dump], None);
    assert!(
        text(&again).contains("accounts      0 added, 0 updated, 10 unchanged"),
        "{}",
        text(&again)
    );
    gw.restart_after_kill();
    let shown = gw.cli(&["user", "show", "argon2@example.com"], None);
    let account: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(account["is_active"], false);
    let gone = gw.cli(&["user", "show", "scrypt@example.com"], None);
    assert!(!gone.status.success(), "{}", text(&gone));
}

#[test]
fn bad_django_data_is_refused_whole_with_the_record_named() {
    let data = django();
    let mut gw = Gateway::start_with(Options::default());
    gw.terminate();
    let dump = std::fs::read_to_string(data.dump()).expect("dump");
    let twice = dump.replacen("sha1@example.com", "PBKDF2@example.com", 1);
    assert_ne!(twice, dump);
    let bad = gw.dir.path().join("bad.json");
    std::fs::write(&bad, twice).expect("write");
    let bad = bad.display().to_string();
    let out = gw.cli(&["import", "django", "--dumpdata", &bad], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("nothing was imported: record"),
        "{}",
        text(&out)
    );
    let listed = gw.cli(&["user", "list"], None);
    assert_eq!(accounts_listed(&listed), 0);
    // Told to skip, the other nine come in.
    let out = gw.cli(
        &["import", "django", "--dumpdata", &bad, "--skip-invalid"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("accounts      9 added"),
        "{}",
        text(&out)
    );
    let broken = gw.dir.path().join("broken.json");
    std::fs::write(&broken, &dump[..dump.len() / 2]).expect("write");
    let out = gw.cli(
        &[
            "import",
            "django",
            "--dumpdata",
            &broken.display().to_string(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not a dumpdata JSON"), "{}", text(&out));
}

#[test]
fn the_sqlite_file_imports_as_dumpdata_does() {
    let data = django();
    let from_dump = imported("--dumpdata", &data.dump(), false);
    let from_sqlite = imported("--sqlite", &data.sqlite(), false);
    let list = |gw: &Gateway| {
        let out = gw.cli(&["user", "list"], None);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(list(&from_dump), list(&from_sqlite));
    // The blacklist came along: Django's logged-out token is refused.
    let refused = from_sqlite.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": data.token("logged_out_refresh")}),
        None,
    );
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(refused.code(), "token_not_valid");
}

#[test]
fn a_django_refresh_token_is_exchanged_once_for_a_vigile_session() {
    let data = django();
    let gw = imported("--dumpdata", &data.dump(), false);
    let exchange = |token: &str| {
        gw.post(
            "/api/accounts/refresh-token/",
            &json!({ "refresh": token }),
            None,
        )
    };
    let live = data.token("live_refresh");
    let first = exchange(live);
    assert_eq!(first.status, 200, "{}", first.text);
    let access = first.json["access"].as_str().expect("access");
    let refresh = first.json["refresh"].as_str().expect("refresh");
    let me = gw.get("/api/accounts/", Some(access));
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["id"], data.users()[0]["id"]);
    assert_eq!(me.json["email"], "pbkdf2@example.com");
    // The backends see the same user id as before.
    let proxied = gw.get("/api/stocks/", Some(access));
    assert_eq!(proxied.status, 200, "{}", proxied.text);
    assert_eq!(proxied.json["headers"]["x-user-id"][0], "1");
    // The new session rotates as any vigile session does.
    let rotated = exchange(refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let access = rotated.json["access"].as_str().expect("access");
    // Once only: a second presentation is taken as theft, and the session
    // the first one gave ends.
    let again = exchange(live);
    assert_eq!(again.status, 401, "{}", again.text);
    assert_eq!(again.code(), "token_reused");
    let ended = gw.get("/api/stocks/", Some(access));
    assert_eq!(ended.code(), "token_revoked", "{}", ended.text);

    // Blacklisted by Django (a logout, a rotation), of an inactive account,
    // or an access token: refused.
    for name in [
        "logged_out_refresh",
        "rotated_away_refresh",
        "inactive_refresh",
        "live_access",
    ] {
        let refused = exchange(data.token(name));
        assert_eq!(refused.status, 401, "{name}: {}", refused.text);
        assert_eq!(refused.code(), "token_not_valid", "{name}");
    }
    // The token Django gave in the rotation is live: exchanged.
    let after = exchange(data.token("after_rotation_refresh"));
    assert_eq!(after.status, 200, "{}", after.text);
    let me = gw.get("/api/accounts/", after.json["access"].as_str());
    assert_eq!(me.json["role"], "Gérant");
    // A token Django would sign for an id it gave after the export, which
    // vigile gave to an account of its own: not that account's.
    let native = gw.post(
        "/api/accounts/register/",
        &json!({"email": "native@example.com", "password": "Native-Pass-123",
                "first_name": "N", "last_name": "N"}),
        None,
    );
    assert_eq!(native.status, 201, "{}", native.text);
    let key = std::fs::read(data.key_file()).expect("key");
    let django_signed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"token_type": "refresh", "user_id": native.json["id"],
                "jti": "feedfacefeedfacefeedfacefeedface", "exp": crate::common::now() + 600,
                "iat": crate::common::now()}),
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .expect("sign");
    let refused = exchange(&django_signed);
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(refused.code(), "token_not_valid");
    // Signed with another key: refused.
    let forged = crate::common::sign(&json!({"token_type": "refresh", "user_id": 1,
        "jti": "0123456789abcdef0123456789abcdef", "exp": crate::common::now() + 600}));
    assert_eq!(exchange(&forged).status, 401);

    // Without `migration.simplejwt`, Django's tokens are refused as today.
    let plain = Gateway::start();
    let refused = plain.post(
        "/api/accounts/refresh-token/",
        &json!({"refresh": data.token("after_rotation_refresh")}),
        None,
    );
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(refused.code(), "token_not_valid");
}

#[test]
fn django_access_tokens_pass_the_proxy_path_when_accepted() {
    let data = django();
    let access = data.token("live_access");
    let refused = imported("--dumpdata", &data.dump(), false);
    let answer = refused.get("/api/stocks/", Some(access));
    assert_eq!(answer.status, 401, "{}", answer.text);
    assert_eq!(answer.code(), "token_not_valid");

    let mut gw = imported("--dumpdata", &data.dump(), true);
    let answer = gw.request(
        "GET",
        "/api/stocks/",
        &[
            ("Authorization", &format!("Bearer {access}")),
            ("X-Session-Id", "forged"),
            ("X-User-Role", "Admin"),
        ],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    let headers = &answer.json["headers"];
    assert_eq!(headers["x-user-id"], json!(["1"]));
    assert_eq!(headers["x-user-email"], json!(["pbkdf2@example.com"]));
    assert_eq!(headers["x-user-role"], json!(["Visiteur"]));
    assert!(headers.get("x-session-id").is_none(), "{headers}");
    // A refresh token is not an access token.
    let answer = gw.get("/api/stocks/", Some(data.token("live_refresh")));
    assert_eq!(answer.status, 401, "{}", answer.text);
    // The route's roles apply to the role stored here.
    let admin_only = gw.get("/api/admin-only/", Some(access));
    assert_eq!(admin_only.status, 403, "{}", admin_only.text);
    // Deactivated here: refused at once.
    let out = gw.cli(&["user", "deactivate", "pbkdf2@example.com"], None);
    assert!(out.status.success(), "{}", text(&out));
    let answer = gw.get("/api/stocks/", Some(access));
    assert_eq!(answer.status, 401, "{}", answer.text);
    assert_eq!(answer.code(), "token_not_valid");
    gw.terminate();
}

#[test]
fn every_imported_user_logs_in_with_the_django_password() {
    let data = django();
    let mut gw = imported("--dumpdata", &data.dump(), false);
    for user in data.users() {
        let email = user["email"].as_str().expect("email");
        let hasher = user["hasher"].as_str().expect("hasher");
        let wrong = gw.post(
            "/api/accounts/login/",
            &json!({"email": email, "password": "Pas-le-bon-1!"}),
            None,
        );
        assert_eq!(wrong.status, 401, "{email}: {}", wrong.text);
        assert_eq!(wrong.code(), "invalid_credentials");
        let Some(password) = user["password"].as_str() else {
            continue; // the unusable one: refused above as any wrong password
        };
        let login = gw.post(
            "/api/accounts/login/",
            &json!({"email": email, "password": password}),
            None,
        );
        if user["is_active"] == false {
            assert_eq!(login.status, 401, "{email}: {}", login.text);
            continue;
        }
        assert_eq!(login.status, 200, "{email} ({hasher}): {}", login.text);
        assert_eq!(login.json["account"]["id"], user["id"], "{email}");
        let shown = gw.cli(&["user", "show", email], None);
        let account: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
        assert_eq!(account["password_format"], "argon2id", "{email} ({hasher})");
        // The upgraded hash logs in too.
        let again = gw.post(
            "/api/accounts/login/",
            &json!({"email": email, "password": password}),
            None,
        );
        assert_eq!(again.status, 200, "{email}: {}", again.text);
    }
    let metrics = gw.admin_get("/metrics").text;
    for (from, count) in [("pbkdf2_sha256", 4), ("pbkdf2_sha1", 1), ("argon2", 1)] {
        let series = format!("vigile_password_rehash_total{{from=\"{from}\"}} {count}");
        assert!(metrics.contains(&series), "{series}");
    }
    // A final import at the cut-over keeps what changed here: the upgraded
    // hashes and the later logins.
    gw.terminate();
    let again = gw.cli(&["import", "django", "--dumpdata", &data.dump()], None);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("accounts      0 added, 0 updated, 10 unchanged"),
        "{}",
        text(&again)
    );
    gw.restart_after_kill();
    let login = gw.post(
        "/api/accounts/login/",
        &json!({"email": "scrypt@example.com", "password": "Mot-de-passe-6!"}),
        None,
    );
    assert_eq!(login.status, 200, "{}", login.text);
    let listed = gw.cli(&["user", "list"], None);
    // Only the inactive account (it cannot log in) keeps its Django hash.
    assert!(
        text(&listed).contains(
            "# 1 of 10 accounts hold a Django password hash (pbkdf2_sha256: 1); \
             1 an unusable password"
        ),
        "{}",
        text(&listed)
    );
}

/// A token as simplejwt makes them, signed with the Django key.
fn django_token(kind: &str, user_id: u64, jti: &str) -> String {
    let key = std::fs::read(django().key_file()).expect("key");
    let now = crate::common::now();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"token_type": kind, "user_id": user_id, "jti": jti,
                "iat": now - 10, "exp": now + 300}),
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .expect("sign")
}

#[test]
fn a_logout_a_reset_or_a_replay_ends_django_tokens_too() {
    let data = django();
    let gw = imported("--dumpdata", &data.dump(), true);
    let exchange = |token: &str| {
        gw.post(
            "/api/accounts/refresh-token/",
            &json!({ "refresh": token }),
            None,
        )
    };
    // sha1@example.com is account 3.
    let access = django_token("access", 3, "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3");
    let first = django_token("refresh", 3, "r1r1r1r1r1r1r1r1r1r1r1r1r1r1r1r1");
    let second = django_token("refresh", 3, "r2r2r2r2r2r2r2r2r2r2r2r2r2r2r2r2");
    assert_eq!(gw.get("/api/stocks/", Some(&access)).status, 200);

    // The seed documents' logout, with Django's tokens: that refresh token
    // can no longer be exchanged.
    let out = gw.post(
        "/api/accounts/logout/",
        &json!({ "refresh": first }),
        Some(&access),
    );
    assert_eq!(out.status, 200, "{}", out.text);
    let refused = exchange(&first);
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(refused.code(), "token_not_valid");

    // A reset here ends the account's Django tokens as it ends its sessions.
    let asked = crate::self_service::forgotten(&gw, "sha1@example.com");
    assert_eq!(asked.status, 202, "{}", asked.text);
    let mail = gw.wait_for_mails(1).pop().expect("a mail");
    let reset = crate::self_service::reset(
        &gw,
        &crate::self_service::token_of(&mail),
        "Nouveau-Mot-2026!",
    );
    assert_eq!(reset.status, 200, "{}", reset.text);
    let refused = exchange(&second);
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(refused.code(), "token_not_valid");
    let refused = gw.get("/api/stocks/", Some(&access));
    assert_eq!(refused.status, 401, "{}", refused.text);

    // A Django refresh token presented a second time ends the session the
    // first presentation gave (bcrypt@example.com is account 5).
    let stolen = django_token("refresh", 5, "r5r5r5r5r5r5r5r5r5r5r5r5r5r5r5r5");
    let thief = exchange(&stolen);
    assert_eq!(thief.status, 200, "{}", thief.text);
    let thief_access = thief.json["access"].as_str().expect("access").to_string();
    assert_eq!(gw.get("/api/stocks/", Some(&thief_access)).status, 200);
    let victim = exchange(&stolen);
    assert_eq!(victim.status, 401, "{}", victim.text);
    assert_eq!(victim.code(), "token_reused");
    let after = gw.get("/api/stocks/", Some(&thief_access));
    assert_eq!(after.status, 401, "{}", after.text);
    assert_eq!(after.code(), "token_revoked");
    let refresh = thief.json["refresh"].as_str().expect("refresh");
    assert_eq!(exchange(refresh).status, 401);
}

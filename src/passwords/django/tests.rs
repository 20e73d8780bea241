//! The Django formats against hashes made by Django 5.2's own hashers
//! (`tests/fixtures/django/`, `make_vectors.py`), and the strings refused
//! before any work.

use std::time::{Duration, Instant};

use super::*;
use crate::passwords::{verify_login, verify_password, StoredHash};

struct Vector {
    name: String,
    password: String,
    encoded: String,
}

/// The password and hash of the vector `name` (for the handlers' tests).
pub(crate) fn vector(name: &str) -> (String, String) {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == name)
        .expect("no such vector");
    (v.password, v.encoded)
}

fn vectors() -> Vec<Vector> {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/django/vectors.json"))
            .expect("vectors.json");
    assert_eq!(file["django"], "5.2.19");
    file["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| Vector {
            name: v["name"].as_str().expect("name").into(),
            password: v["password"].as_str().expect("password").into(),
            encoded: v["encoded"].as_str().expect("encoded").into(),
        })
        .collect()
}

#[test]
fn every_django_format_verifies_its_password_and_only_it() {
    let vectors = vectors();
    let mut seen = std::collections::BTreeSet::new();
    for v in vectors.iter().filter(|v| v.name != "unusable") {
        let from = algorithm(&v.encoded).expect(&v.name);
        seen.insert(from);
        assert_eq!(StoredHash::of(&v.encoded), StoredHash::Legacy(from));
        assert!(verify_password(&v.password, &v.encoded), "{}", v.name);
        assert!(!verify_password("motdepasse124", &v.encoded), "{}", v.name);
        assert!(!verify_password("", &v.encoded), "{}", v.name);
    }
    assert_eq!(seen.len(), ALGORITHMS.len(), "{seen:?}");
    assert!(vectors
        .iter()
        .any(|v| v.encoded.starts_with("pbkdf2_sha256$1000000$")));
    assert!(vectors
        .iter()
        .any(|v| v.encoded.starts_with("pbkdf2_sha256$260000$")));
}

#[test]
fn pbkdf2_sha256_encodes_as_django_does() {
    let (password, encoded) = vector("pbkdf2_sha256_unicode");
    let salt = encoded.split('$').nth(2).expect("salt");
    assert_eq!(pbkdf2_sha256(&password, salt, 20_000), encoded);
}

#[test]
fn an_unusable_password_matches_nothing_but_costs_a_check_at_login() {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "unusable")
        .expect("unusable");
    assert!(v.encoded.starts_with('!'));
    assert_eq!(StoredHash::of(&v.encoded), StoredHash::Unusable);
    assert!(!verify_password(&v.password, &v.encoded));
    assert!(!verify(&v.password, &v.encoded));
    let dummy = crate::passwords::hash_password("x").expect("hash");
    assert!(
        !verify_login("x", &v.encoded, &dummy),
        "the dummy's password does not log in"
    );
    assert!(!verify_login("x", "garbage", &dummy));
    assert!(!verify_login(&v.password, "!", &dummy));
}

/// Changes one character of the part after the last `$`.
fn tampered(encoded: &str) -> String {
    let mut chars: Vec<char> = encoded.chars().collect();
    let at = encoded.rfind('$').expect("$") + 3;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn a_changed_hash_salt_or_spelling_is_refused_as_django_refuses_it() {
    let by_name = |name: &str| {
        vectors()
            .into_iter()
            .find(|v| v.name == name)
            .expect("vector")
    };
    for name in [
        "pbkdf2_sha256_unicode",
        "bcrypt_sha256_2a",
        "scrypt_unicode",
        "argon2_unicode",
    ] {
        let v = by_name(name);
        assert!(!verify(&v.password, &tampered(&v.encoded)), "{name}");
    }
    let v = by_name("pbkdf2_sha256_unicode");
    // Python's int() reads these, but Django's re-encoded string differs.
    for spelling in ["020000", "+20000", "20_000", " 20000"] {
        let other = v.encoded.replace("$20000$", &format!("${spelling}$"));
        assert!(!verify(&v.password, &other), "{other}");
    }
    // The same hash under the other PBKDF2 name is another hash.
    assert!(!verify(
        &v.password,
        &v.encoded.replace("pbkdf2_sha256", "pbkdf2_sha1")
    ));
    let v = by_name("bcrypt_sha256_2a");
    // Django reads the same bcrypt under each version name (checked there).
    assert!(verify(&v.password, &v.encoded.replace("$2a$", "$2b$")));
    assert!(verify(&v.password, &v.encoded.replace("$2a$", "$2y$")));
    assert!(!verify(&v.password, &v.encoded.replace("$2a$", "$2x$")));
    assert!(!verify(
        &v.password,
        &v.encoded.replace("bcrypt_sha256$", "bcrypt$")
    ));
    assert!(!verify(&v.password, &format!("{}x", v.encoded)));
}

fn refused_fast(encoded: &str) {
    let start = Instant::now();
    assert!(!verify_password("motdepasse123", encoded), "{encoded}");
    // Far below the seconds any of them would take if computed.
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{encoded}: {:?}",
        start.elapsed()
    );
}

#[test]
fn malformed_strings_are_refused_at_once() {
    let salt = "3JP6F6JRMK3g9KnjCoYbTx";
    for s in [
        "",
        "$",
        "pbkdf2_sha256",
        "pbkdf2_sha256$",
        "pbkdf2_sha256$$$",
        "pbkdf2_sha256$1000$",
        "pbkdf2_sha256$1000$salt",
        &format!("pbkdf2_sha256$0${salt}$AAAA"),
        &format!("pbkdf2_sha256$-1${salt}$AAAA"),
        &format!("pbkdf2_sha256$99999999999999999999999${salt}$AAAA"),
        "pbkdf2_sha256$1000$$AAAA",
        "PBKDF2_SHA256$1000$salt$AAAA",
        "md5$salt$0123456789abcdef0123456789abcdef",
        "unsalted_md5$$0123456789abcdef",
        "bcrypt$$2b$12$sXi3lBOz3xPx5cM6bDALEu/BC/nSY6wVfmWqRPTYO7czEdK2zY4Bu",
        "bcrypt_sha256$",
        "bcrypt_sha256$$2b$12$",
        "bcrypt_sha256$$2b$12$short",
        "bcrypt_sha256$$2c$12$sXi3lBOz3xPx5cM6bDALEu/BC/nSY6wVfmWqRPTYO7czEdK2zY4Bu",
        "bcrypt_sha256$$2b$1$sXi3lBOz3xPx5cM6bDALEu/BC/nSY6wVfmWqRPTYO7czEdK2zY4Bu",
        "bcrypt_sha256$$2b$ab$sXi3lBOz3xPx5cM6bDALEu/BC/nSY6wVfmWqRPTYO7czEdK2zY4Bu",
        "bcrypt_sha256$$2b$12$éééééééééééééééééééééééééééééééééééééé",
        "bcrypt_sha256$x$2b$12$sXi3lBOz3xPx5cM6bDALEu/BC/nSY6wVfmWqRPTYO7czEdK2zY4Bu",
        "argon2",
        "argon2$",
        "argon2$argon2id",
        "argon2$argon2id$v=19$m=102400,t=2,p=8$",
        "argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdHNhbHQ$",
        "argon2$argon2x$v=19$m=102400,t=2,p=8$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
        "argon2$argon2id$v=18$m=1024,t=2,p=8$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
        "argon2$argon2id$v=19$m=1024,t=0,p=8$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
        "argon2$argon2id$v=19$m=1024,t=2,p=8,q=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$16384$salt$8$5",
        "scrypt$16384$salt$8$5$AAAA$extra",
        "scrypt$16383$salt$8$5$AAAA",
        "scrypt$1$salt$8$5$AAAA",
        "scrypt$0$salt$8$5$AAAA",
        "scrypt$16384$$8$5$AAAA",
        "scrypt$16384$salt$0$5$AAAA",
        "scrypt$16384$salt$8$0$AAAA",
        "!",
        "!abc",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        "\u{0}pbkdf2_sha256$1000$salt$AAAA",
    ] {
        refused_fast(s);
    }
}

#[test]
fn hostile_parameters_are_refused_before_any_work() {
    let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let phc_tail = "c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for s in [
        format!("pbkdf2_sha256$4294967295$salt${b64}"),
        format!("pbkdf2_sha256${}$salt${b64}", MAX_PBKDF2_ITERATIONS + 1),
        format!("pbkdf2_sha1$4294967296$salt${b64}"),
        // 4 GiB of memory, or a week of passes.
        format!("argon2$argon2id$v=19$m=4194304,t=2,p=8${phc_tail}"),
        format!("argon2$argon2id$v=19$m=102400,t=4294967295,p=8${phc_tail}"),
        format!("argon2$argon2id$v=19$m=102400,t=17,p=8${phc_tail}"),
        format!("argon2$argon2i$v=19$m=262144,t=255,p=255${phc_tail}"),
        format!("$argon2id$v=19$m=4194304,t=2,p=1${phc_tail}"),
        format!("$argon2id$v=19$m=19456,t=100000,p=1${phc_tail}"),
        "bcrypt_sha256$$2b$31$sXi3lBOz3xPx5cM6bDALEu/BC/nSY6wVfmWqRPTYO7czEdK2zY4Bu".into(),
        "bcrypt_sha256$$2b$16$sXi3lBOz3xPx5cM6bDALEu/BC/nSY6wVfmWqRPTYO7czEdK2zY4Bu".into(),
        // Past OpenSSL's 32 MiB (Django fails on them too), or past the work bound.
        format!("scrypt$1048576$salt$8$1${b64}"),
        format!("scrypt$65536$salt$8$1${b64}"),
        format!("scrypt$16384$salt$8$100000${b64}"),
        format!("scrypt$2$salt$1$6000000${b64}"),
        format!("scrypt$16384$salt$8$41${b64}"),
        format!("scrypt$9223372036854775808$salt$8$1${b64}"),
        format!("scrypt$16384$salt$4294967296$1${b64}"),
    ] {
        refused_fast(&s);
    }
}

// The bounds leave room above Django 5.2's defaults (and 6.0's PBKDF2 count).
const _: () = assert!(MAX_PBKDF2_ITERATIONS >= 1_200_000 * 4);
const _: () = assert!(MAX_ARGON2_MEMORY_KIB >= 102_400 * 2 && MAX_ARGON2_WORK >= 102_400 * 2 * 4);
const _: () = assert!(MAX_BCRYPT_COST >= 14);
const _: () = assert!(MAX_SCRYPT_WORK >= 16_384 * 8 * 5 * 4);

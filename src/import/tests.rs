//! The conversion of Django rows into vigile's records: fields, roles,
//! dates, refusals by record, and the blacklist.

use super::dumpdata::parse;
use super::*;
use crate::store::LegacyToken;

/// The import's clock in these tests: 2026-01-31T22:53:20Z, after every
/// date of `DUMP` but for `last_login`'s, which is within a day.
const NOW: u64 = 1_769_900_000;

fn mapping() -> Mapping {
    Mapping::new("accounts.customuser", "accounts.role", &[], "Visiteur").expect("mapping")
}

const DUMP: &str = r#"[
 {"model": "accounts.role", "pk": 1, "fields": {"name": "Visiteur"}},
 {"model": "accounts.role", "pk": 2, "fields": {"name": "Gérant"}},
 {"model": "contenttypes.contenttype", "pk": 9, "fields": {"app_label": "x", "model": "y"}},
 {"model": "accounts.customuser", "pk": 7, "fields": {"password": "pbkdf2_sha256$1000000$s$h",
   "last_login": null, "is_superuser": false, "email": " Jean@Example.com ", "first_name": "Jean",
   "last_name": "Dupont", "gender": "H", "phone": null, "role": 2, "is_active": true,
   "is_staff": false, "date_joined": "2026-01-31T08:00:00.123Z", "groups": [], "user_permissions": []}},
 {"model": "accounts.customuser", "pk": 9, "fields": {"password": "!unusable", "email": "b@example.com",
   "first_name": "B", "last_name": "C", "gender": "", "role": 1, "is_active": false,
   "date_joined": "2026-01-31T09:00:00+01:00", "last_login": "2026-02-01T10:00:00"}},
 {"model": "token_blacklist.outstandingtoken", "pk": 3, "fields": {"user": 7, "jti": "aaa",
   "token": "x.y.z", "created_at": "2026-01-31T08:00:00Z", "expires_at": "2026-02-01T08:00:00Z"}},
 {"model": "token_blacklist.outstandingtoken", "pk": 4, "fields": {"user": 7, "jti": "bbb",
   "token": "x.y.z", "created_at": "2026-01-31T08:00:00Z", "expires_at": "2026-02-01T08:00:00Z"}},
 {"model": "token_blacklist.blacklistedtoken", "pk": 1, "fields": {"token": 4, "blacklisted_at": "2026-01-31T08:01:00Z"}}
]"#;

#[test]
fn dumpdata_records_become_accounts_roles_and_blacklisted_tokens() {
    let data = parse(DUMP, &mapping()).expect("parse");
    assert_eq!((data.users.len(), data.roles.len(), data.other), (2, 2, 1));
    let out = convert(&data, &mapping(), NOW, false).expect("convert");
    let [jean, b] = out.batch.accounts.as_slice() else {
        panic!("two accounts");
    };
    assert_eq!(
        (jean.id, jean.email.as_str(), jean.role.as_str()),
        (7, "Jean@Example.com", "Gérant")
    );
    assert_eq!(jean.password_hash, "pbkdf2_sha256$1000000$s$h");
    assert_eq!(jean.date_joined, 1_769_846_400);
    assert_eq!((jean.gender.as_deref(), jean.last_login), (Some("H"), None));
    assert_eq!((b.is_active, b.gender.as_deref()), (false, None));
    assert_eq!(b.date_joined, 1_769_846_400, "09:00+01:00 is 08:00Z");
    assert_eq!(b.last_login, Some(1_769_940_000), "naive times are UTC");
    assert_eq!(out.batch.roles, ["Visiteur", "Gérant"]);
    assert_eq!(
        out.batch.blacklisted,
        [LegacyToken {
            jti: "bbb".into(),
            expires_at: 1_769_932_800
        }]
    );
    // Expired blacklisted tokens are not worth keeping.
    let later = convert(&data, &mapping(), 1_769_932_801, false).expect("convert");
    assert!(later.batch.blacklisted.is_empty());
}

#[test]
fn a_bad_record_refuses_the_import_with_its_number_unless_skipped() {
    let twice = DUMP.replace("b@example.com", "JEAN@example.COM");
    let data = parse(&twice, &mapping()).expect("parse");
    let refusal = convert(&data, &mapping(), NOW, false).expect_err("refused");
    assert_eq!(refusal.label, "record 5 (accounts.customuser)");
    assert!(refusal.reason.contains("record 4"), "{refusal}");
    let skipped = convert(&data, &mapping(), NOW, true).expect("skip");
    assert_eq!(skipped.batch.accounts.len(), 1);
    assert_eq!(skipped.skipped.len(), 1);

    for (from, to) in [
        ("\"role\": 2", "\"role\": 5"),
        ("\"pk\": 7", "\"pk\": -7"),
        ("\"2026-01-31T08:00:00.123Z\"", "\"yesterday\""),
        ("\"is_active\": true", "\"is_active\": \"yes\""),
        ("\"first_name\": \"Jean\"", "\"first_name\": \"J\\u0000\""),
    ] {
        let bad = DUMP.replace(from, to);
        let data = parse(&bad, &mapping()).expect("parse");
        let refusal = convert(&data, &mapping(), NOW, false).expect_err(to);
        assert_eq!(refusal.label, "record 4 (accounts.customuser)", "{to}");
    }
    assert!(parse("[{\"model\": 3}]", &mapping()).is_err());
    assert!(parse("{", &mapping()).is_err());
}

#[test]
fn renamed_fields_and_models_are_followed() {
    let renamed = DUMP
        .replace("accounts.customuser", "people.member")
        .replace("\"phone\": null", "\"telephone\": \"0612\"");
    let mapping = Mapping::new(
        "people.member",
        "accounts.role",
        &["phone=telephone".into()],
        "Visiteur",
    )
    .expect("mapping");
    assert_eq!(mapping.user_table, "people_member");
    let data = parse(&renamed, &mapping).expect("parse");
    let out = convert(&data, &mapping, NOW, false).expect("convert");
    assert_eq!(out.batch.accounts[0].phone.as_deref(), Some("0612"));
    assert!(Mapping::new("x", "accounts.role", &[], "V").is_err());
    assert!(Mapping::new("a.b", "accounts.role", &["nope=x".into()], "V").is_err());
}

#[test]
fn django_times_are_read_in_every_form() {
    assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1));
    assert_eq!(parse_time("1970-01-01 00:00:01.999999"), Some(1));
    assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(parse_time("1970-01-01T00:00:00-00:30"), Some(1800));
    assert_eq!(parse_time("1969-12-31T23:00:00Z"), None);
    assert_eq!(parse_time("not a date"), None);
}

/// `DUMP` with `from` replaced by `to` (which must be there).
fn dump_with(from: &str, to: &str) -> String {
    assert!(DUMP.contains(from), "{from}");
    DUMP.replace(from, to)
}

fn converted(dump: &str, skip_invalid: bool) -> Result<Converted, Refusal> {
    let data = parse(dump, &mapping()).expect("parse");
    convert(&data, &mapping(), NOW, skip_invalid)
}

const JEAN_EMAIL: &str = "\"email\": \" Jean@Example.com \"";

#[test]
fn fields_registration_refuses_are_refused() {
    let long_name = "x".repeat(151);
    let long_phone = "0".repeat(33);
    for (from, to) in [
        (JEAN_EMAIL, r#""email": "jean\r\n@example.com""#),
        (JEAN_EMAIL, r#""email": "jean@exa\u0007mple.com""#),
        (JEAN_EMAIL, r#""email": "@""#),
        (JEAN_EMAIL, r#""email": "@example.com""#),
        (JEAN_EMAIL, r#""email": "jean@""#),
        (JEAN_EMAIL, r#""email": "je an@example.com""#),
        (JEAN_EMAIL, r#""email": "jean@exa mple.com""#),
        (JEAN_EMAIL, r#""email": "jean@exa\u00a0mple.com""#),
        (JEAN_EMAIL, r#""email": "jean""#),
        (
            r#""first_name": "Jean""#,
            r#""first_name": "Je\u001b[31man""#,
        ),
        (r#""first_name": "Jean""#, r#""first_name": "Je\nan""#),
        (
            r#""last_name": "Dupont""#,
            &format!("\"last_name\": \"{long_name}\""),
        ),
        (r#""last_name": "Dupont""#, r#""last_name": "Dup\u0085ont""#),
        (r#""phone": null"#, r#""phone": "0612\r\n345678""#),
        (r#""phone": null"#, &format!("\"phone\": \"{long_phone}\"")),
        (r#""gender": "H""#, r#""gender": "X""#),
        (r#""gender": "H""#, r#""gender": "\u0007""#),
        (r#""gender": "H""#, r#""gender": "Homme""#),
    ] {
        let refusal = converted(&dump_with(from, to), false).expect_err(to);
        assert_eq!(refusal.label, "record 4 (accounts.customuser)", "{to}");
    }
    // What Django stored and vigile can keep: non-ASCII addresses (as
    // accounts stored before vigile's ASCII rule), a domain without a dot,
    // a phone in no format (Django's model checks none), no gender.
    for (from, to, check) in [
        (
            JEAN_EMAIL,
            r#""email": "jéan@exämple.fr""#,
            "jéan@exämple.fr",
        ),
        (JEAN_EMAIL, r#""email": "jean@localhost""#, "jean@localhost"),
        (
            JEAN_EMAIL,
            r#""email": "\"a@b\"@example.com""#,
            "\"a@b\"@example.com",
        ),
        (r#""phone": null"#, r#""phone": "n/a""#, "n/a"),
        (r#""gender": "H""#, r#""gender": null"#, ""),
        (r#""gender": "H""#, r#""gender": "F""#, "F"),
        (r#""last_name": "Dupont""#, r#""last_name": """#, ""),
    ] {
        let out = converted(&dump_with(from, to), false).expect(to);
        let jean = &out.batch.accounts[0];
        let kept = [
            jean.email.as_str(),
            jean.phone.as_deref().unwrap_or(""),
            jean.gender.as_deref().unwrap_or(""),
            jean.last_name.as_str(),
        ];
        assert!(kept.contains(&check), "{to}: {jean:?}");
    }
}

#[test]
fn offsets_and_dates_in_the_future_are_refused() {
    assert_eq!(parse_time("1970-01-02T00:00:00+23:59"), Some(60));
    for bad in [
        "1970-01-02T00:00:00+99:99",
        "1970-01-02T00:00:00+24:00",
        "1970-01-02T00:00:00+01:60",
        "1970-01-02T00:00:00++1:00",
        "1970-01-02T00:00:00+-1:00",
        "1970-01-02T00:00:00+ 1:00",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
    let joined = r#""date_joined": "2026-01-31T08:00:00.123Z""#;
    let day_after = "\"date_joined\": \"2026-02-01T22:53:20Z\""; // NOW + 1 day
    assert!(converted(&dump_with(joined, day_after), false).is_ok());
    for (from, to) in [
        (joined, "\"date_joined\": \"2026-02-01T22:53:21Z\""),
        (joined, "\"date_joined\": \"9999-12-31T23:59:59Z\""),
        (joined, "\"date_joined\": \"2026-01-31T08:00:00+99:99\""),
        (
            r#""last_login": null"#,
            "\"last_login\": \"9999-01-01T00:00:00Z\"",
        ),
    ] {
        let refusal = converted(&dump_with(from, to), false).expect_err(to);
        assert_eq!(refusal.label, "record 4 (accounts.customuser)", "{to}");
    }
}

#[test]
fn role_keys_are_ids_or_names_of_the_role_rows() {
    let role = r#""role": 2"#;
    let jean_role = |dump: &str| converted(dump, false).map(|o| o.batch.accounts[0].role.clone());
    assert_eq!(
        jean_role(&dump_with(role, r#""role": "2""#)),
        Ok("Gérant".into())
    );
    assert_eq!(
        jean_role(&dump_with(role, r#""role": ["Gérant"]"#)),
        Ok("Gérant".into())
    );
    for to in [
        r#""role": "Admin""#,
        r#""role": "Gérant""#,
        r#""role": ["Admin"]"#,
        r#""role": ["Gérant", "x"]"#,
        r#""role": [2]"#,
        r#""role": 2.5"#,
        r#""role": "02x""#,
    ] {
        let refusal = converted(&dump_with(role, to), false).expect_err(to);
        assert_eq!(refusal.label, "record 4 (accounts.customuser)", "{to}");
    }
    // A second row with the same pk: refused, naming both; skipped, the
    // accounts that name that id are refused (which of the two is meant?).
    let twice = dump_with(
        r#""pk": 2, "fields": {"name": "Gérant"}"#,
        r#""pk": 1, "fields": {"name": "Gérant"}"#,
    )
    .replace(role, r#""role": 1"#);
    let refusal = converted(&twice, false).expect_err("duplicate role pk");
    assert_eq!(refusal.label, "record 2 (accounts.role)");
    assert!(
        refusal.reason.contains("record 1 (accounts.role)"),
        "{refusal}"
    );
    let skipped = converted(&twice, true).expect("skip");
    let labels: Vec<&str> = skipped.skipped.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "record 2 (accounts.role)",
            "record 4 (accounts.customuser)",
            "record 5 (accounts.customuser)"
        ]
    );
    assert!(skipped.batch.accounts.is_empty());
}

#[test]
fn ids_stay_within_what_json_clients_read_exactly() {
    let max = dump_with(r#""pk": 7"#, r#""pk": 9007199254740991"#);
    let out = converted(&max, false).expect("2^53 - 1");
    assert_eq!(out.batch.accounts[0].id, 9_007_199_254_740_991);
    for to in [
        r#""pk": 9007199254740992"#,
        r#""pk": 0"#,
        r#""pk": 7.0"#,
        r#""pk": "7""#,
    ] {
        let refusal = converted(&dump_with(r#""pk": 7"#, to), false).expect_err(to);
        assert_eq!(refusal.label, "record 4 (accounts.customuser)", "{to}");
    }
}

#[test]
fn a_blacklisted_token_that_cannot_be_kept_refuses_its_record() {
    let token = r#""token": 4, "blacklisted_at""#;
    let jti = r#""jti": "bbb""#;
    let expires = r#""jti": "bbb",
   "token": "x.y.z", "created_at": "2026-01-31T08:00:00Z", "expires_at": "2026-02-01T08:00:00Z""#;
    let long_jti = format!("\"jti\": \"{}\"", "a".repeat(256));
    for (from, to) in [
        (token, r#""token": 99, "blacklisted_at""#),
        (token, r#""token": null, "blacklisted_at""#),
        (jti, r#""jti": """#),
        (jti, r#""jti": "b b""#),
        (jti, r#""jti": "bé""#),
        (jti, r#""jti": null"#),
        (jti, &long_jti),
        (expires, &expires.replace("2026-02-01T08:00:00Z", "soon")),
    ] {
        let bad = dump_with(from, to);
        let refusal = converted(&bad, false).expect_err(to);
        assert_eq!(
            refusal.label, "record 8 (token_blacklist.blacklistedtoken)",
            "{to}"
        );
        let skipped = converted(&bad, true).expect(to);
        assert_eq!(skipped.skipped, [refusal]);
        assert!(skipped.batch.blacklisted.is_empty());
    }
    // 255 visible ASCII bytes are a jti; an expired token is dropped, as
    // it was: refused anyway.
    let at_most = format!("\"jti\": \"{}\"", "~".repeat(255));
    assert_eq!(
        converted(&dump_with(jti, &at_most), false)
            .expect("255")
            .batch
            .blacklisted
            .len(),
        1
    );
    let data = parse(DUMP, &mapping()).expect("parse");
    let expired = convert(&data, &mapping(), 1_769_932_801, false).expect("expired");
    assert!(expired.batch.blacklisted.is_empty());
    let last = convert(&data, &mapping(), 1_769_932_800, false).expect("last second");
    assert_eq!(last.batch.blacklisted.len(), 1);
}

#[test]
fn a_duplicate_id_is_a_skippable_refusal_naming_both_records() {
    // Record 4 is refused (its email), records 5 and 6 share id 9.
    let third = r#",
 {"model": "accounts.customuser", "pk": 9, "fields": {"email": "c@example.com",
   "date_joined": "2026-01-31T09:00:00Z"}}
]"#;
    let dump = dump_with(JEAN_EMAIL, r#""email": "@""#);
    let dump = format!("{}{third}", dump.trim_end().trim_end_matches(']'));
    let refusal = converted(&dump.replace("\"@\"", "\"j@example.com\""), false).expect_err("dup");
    assert_eq!(refusal.label, "record 9 (accounts.customuser)");
    assert!(
        refusal.reason.contains("record 5 (accounts.customuser)"),
        "{refusal}"
    );
    let out = converted(&dump, true).expect("skipped");
    let labels: Vec<&str> = out.skipped.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "record 4 (accounts.customuser)",
            "record 9 (accounts.customuser)"
        ]
    );
    assert!(
        out.skipped[1].reason.contains("record 5"),
        "{:?}",
        out.skipped
    );
    let kept: Vec<&str> = out
        .batch
        .accounts
        .iter()
        .map(|a| a.email.as_str())
        .collect();
    assert_eq!(kept, ["b@example.com"]);
}

#[test]
fn the_skip_hint_is_given_only_when_it_applies() {
    let refusal = Refusal {
        label: "record 4 (accounts.customuser)".into(),
        reason: "no email".into(),
    };
    assert!(command::refused(&refusal, false).contains("--skip-invalid leaves"));
    let told = command::refused(&refusal, true);
    assert!(!told.contains("--skip-invalid"), "{told}");
    assert!(
        told.contains("record 4 (accounts.customuser): no email"),
        "{told}"
    );
}

/// A Django-like SQLite file: two roles, users 7 (good) and 8 (a first
/// name over 4096 bytes), a generated column of 300 MB that nothing
/// stores, and simplejwt's tables with token 4 blacklisted.
fn sqlite_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("db.sqlite3");
    let db = rusqlite::Connection::open(&path).expect("open");
    let long = "x".repeat(5000);
    db.execute_batch(&format!(
        "CREATE TABLE accounts_role (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO accounts_role VALUES (1, 'Visiteur'), (2, 'Gérant');
         CREATE TABLE accounts_customuser (id INTEGER PRIMARY KEY, password TEXT, email TEXT,
           first_name TEXT, last_name TEXT, role_id INTEGER, is_active BOOL, date_joined TEXT,
           last_login TEXT, bio BLOB GENERATED ALWAYS AS (zeroblob(300000000)) VIRTUAL);
         INSERT INTO accounts_customuser VALUES
           (7, 'pbkdf2_sha256$1$s$h', 'jean@example.com', 'Jean', 'Dupont', 2, 1,
            '2026-01-31 08:00:00.123456', NULL),
           (8, '!', 'b@example.com', '{long}', 'C', 1, 1, '2026-01-31 08:00:00', NULL);
         CREATE TABLE token_blacklist_outstandingtoken (id INTEGER PRIMARY KEY, token TEXT,
           created_at TEXT, expires_at TEXT, user_id INTEGER, jti TEXT);
         INSERT INTO token_blacklist_outstandingtoken VALUES
           (3, 'x.y.z', NULL, '2026-02-01 08:00:00', 7, 'aaa'),
           (4, 'x.y.z', NULL, '2026-02-01 08:00:00', 7, 'bbb');
         CREATE TABLE token_blacklist_blacklistedtoken (id INTEGER PRIMARY KEY,
           blacklisted_at TEXT, token_id INTEGER);
         INSERT INTO token_blacklist_blacklistedtoken VALUES (1, NULL, 4);"
    ))
    .expect("schema");
    path
}

/// The most memory this process has held (Linux), in bytes.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn sqlite_rows_are_read_by_the_columns_the_import_uses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sqlite_file(dir.path());
    let data = super::sqlite::read(&path, &mapping()).expect("read");
    assert!(
        !data.users[0].fields.contains_key("bio"),
        "{:?}",
        data.users[0]
    );
    let refusal = convert(&data, &mapping(), NOW, false).expect_err("first name");
    assert_eq!(refusal.label, "accounts_customuser id 8");
    assert!(refusal.reason.contains("first_name"), "{refusal}");
    let out = convert(&data, &mapping(), NOW, true).expect("skip");
    let [jean] = out.batch.accounts.as_slice() else {
        panic!("one account: {:?}", out.batch.accounts);
    };
    assert_eq!((jean.id, jean.role.as_str()), (7, "Gérant"));
    assert_eq!(
        (jean.gender.as_deref(), jean.phone.as_deref()),
        (None, None)
    );
    assert_eq!(out.batch.blacklisted.len(), 1);
    assert_eq!(out.batch.blacklisted[0].jti, "bbb");
}

#[test]
fn a_sqlite_value_over_4096_bytes_is_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sqlite_file(dir.path());
    let before = peak_memory();
    // The 300 MB generated column as a field the import takes.
    let bomb = Mapping::new(
        "accounts.customuser",
        "accounts.role",
        &["last_name=bio".into()],
        "Visiteur",
    )
    .expect("mapping");
    let data = super::sqlite::read(&path, &bomb).expect("read");
    let refusal = convert(&data, &bomb, NOW, false).expect_err("bomb");
    assert_eq!(refusal.label, "accounts_customuser id 7");
    assert!(
        refusal.reason.contains("bio: longer than 4096 bytes"),
        "{refusal}"
    );
    if let (Some(before), Some(after)) = (before, peak_memory()) {
        if before < 512 << 20 {
            assert!(after < 1 << 30, "peak memory {after} bytes");
        }
    }
    // Without an id column, the table cannot be read.
    let db = rusqlite::Connection::open(&path).expect("open");
    db.execute_batch("ALTER TABLE accounts_role RENAME COLUMN id TO pk")
        .expect("rename");
    let err = super::sqlite::read(&path, &mapping()).expect_err("no id");
    assert!(err.contains("accounts_role") && err.contains("id"), "{err}");
}

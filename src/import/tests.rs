//! The conversion of Django rows into vigile's records: fields, roles,
//! dates, refusals by record, and the blacklist.

use super::dumpdata::parse;
use super::*;

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
    let out = convert(&data, &mapping(), 1_769_850_000, false).expect("convert");
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
    let refusal = convert(&data, &mapping(), 0, false).expect_err("refused");
    assert_eq!(refusal.label, "record 5 (accounts.customuser)");
    assert!(refusal.reason.contains("record 4"), "{refusal}");
    let skipped = convert(&data, &mapping(), 0, true).expect("skip");
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
        let refusal = convert(&data, &mapping(), 0, false).expect_err(to);
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
    let out = convert(&data, &mapping, 0, false).expect("convert");
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

//! The HS256 fast path held against jsonwebtoken's general decoder.
//!
//! Every payload is signed with the real key under the header this gateway
//! issues, so the signature is valid and only the payload varies: near-valid
//! claim sets with hostile changes (duplicate keys, escaped key names,
//! escapes and raw control characters in strings, odd numbers in the time
//! claims, nested values, whitespace, trailing data, missing fields, wrong
//! types, non-object JSON), random JSON values and random bytes. The fast
//! path must give the general path's verdict, error kind and claims
//! included, wherever it decides (`Fast::Done`); the hand-written reader
//! must read only what serde_json reads the same way.

use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::super::fixtures::{config, sign_payload};
use super::super::{AccessClaims, TokenKeys};
use super::{read_own_claims, Fast};
use crate::config::{Algorithm, KeySource};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const CASES: u32 = 1024;

fn keys(leeway: u64) -> TokenKeys {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(Algorithm::HS256, KeySource::Secret(SECRET.to_vec()));
    cfg.leeway = std::time::Duration::from_secs(leeway);
    TokenKeys::from_config(&cfg, dir.path()).expect("keys")
}

/// A point in time, resolved when the case runs: offsets keep clear (by 10 s
/// or more) of the expiry and start-of-validity boundaries with a leeway of 0
/// or 30 s, so a second ticking between the two checks changes nothing.
#[derive(Debug, Clone, Copy)]
enum When {
    Offset(i64),
    At(u64),
}

impl When {
    fn at(self, now: u64) -> u64 {
        match self {
            When::Offset(d) => now.saturating_add_signed(d),
            When::At(t) => t,
        }
    }
}

/// How a time claim is written.
#[derive(Debug, Clone, Copy)]
enum Form {
    Plain,
    Fraction(&'static str),
    Exponent(&'static str),
    Negative,
    LeadingZero,
    Plus,
    Quoted,
    InArray,
    InObject,
}

/// A claim value as JSON text, or a time written in some form.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Time(When, Form),
}

impl Value {
    fn render(&self, now: u64) -> String {
        let (t, form) = match self {
            Value::Text(text) => return text.clone(),
            Value::Time(when, form) => (when.at(now), form),
        };
        match form {
            Form::Plain => t.to_string(),
            Form::Fraction(f) => format!("{t}{f}"),
            Form::Exponent(e) => format!("{t}{e}"),
            Form::Negative => format!("-{t}"),
            Form::LeadingZero => format!("0{t}"),
            Form::Plus => format!("+{t}"),
            Form::Quoted => format!("\"{t}\""),
            Form::InArray => format!("[{t}]"),
            Form::InObject => format!("{{\"t\":{t}}}"),
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![
        8 => prop::sample::select(vec![
            -100_000i64, -400, -310, -300, -290, -100, -10, 10, 60, 290, 300, 310, 1000,
        ])
        .prop_map(When::Offset),
        1 => prop::sample::select(vec![0u64, 1, u64::MAX - 1, u64::MAX, 1 << 53, i64::MAX as u64])
            .prop_map(When::At),
    ]
}

fn time() -> impl Strategy<Value = Value> {
    let form = prop_oneof![
        12 => Just(Form::Plain),
        1 => prop::sample::select(vec![".0", ".5", ".000001"]).prop_map(Form::Fraction),
        1 => prop::sample::select(vec!["e0", "E0", "e+0", "e-0", "e1", "0e-1"]).prop_map(Form::Exponent),
        1 => prop::sample::select(vec![
            Form::Negative,
            Form::LeadingZero,
            Form::Plus,
            Form::Quoted,
            Form::InArray,
            Form::InObject,
        ]),
    ];
    (when(), form).prop_map(|(w, f)| Value::Time(w, f))
}

/// Pieces of the inside of a JSON string literal: plain, unicode, escapes
/// (valid or not), raw control characters, quotes and backslashes.
fn string_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "dev",
        "@example.com",
        "7",
        "Admin",
        "a b",
        "é",
        "😀",
        "\u{2028}",
        "\u{7f}",
        "\u{0}",
        "\u{1}",
        "\t",
        "\n",
        "\u{1f}",
        "\\n",
        "\\t",
        "\\\"",
        "\\\\",
        "\\/",
        "\\u0065",
        "\\u00e9",
        "\\u0000",
        "\\u001f",
        "\\ud83d\\ude00",
        "\\ud800",
        "\\udc00",
        "\\x41",
        "\\u12",
        "\\",
        "\"",
    ])
}

/// A JSON string literal, possibly malformed.
fn string() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => prop::collection::vec(string_piece(), 0..4)
            .prop_map(|pieces| Value::Text(format!("\"{}\"", pieces.concat()))),
        1 => any::<String>().prop_map(|s| Value::Text(serde_json::to_string(&s).expect("json"))),
    ]
}

/// Values of any type, as JSON text (some not JSON at all).
fn other() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "null",
            "true",
            "false",
            "0",
            "-1",
            "-0",
            "1.5",
            "1e400",
            "-1e400",
            "1e20",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "[]",
            "{}",
            "[\"api\"]",
            "[\"api\",\"other\"]",
            "[1,[2,[3]]]",
            "{\"a\":{\"b\":[null]}}",
            "\"\"",
            "nul",
            "tru",
            "\"open",
            "[1,",
            "{\"a\":",
            "NaN",
            "Infinity",
            "0x10",
        ])
        .prop_map(text),
        string(),
        time(),
    ]
}

const NAMES: [&str; 10] = [
    "iss",
    "aud",
    "sub",
    "email",
    "role",
    "sid",
    "jti",
    "iat",
    "exp",
    "token_type",
];

/// Values of one claim that are worth trying besides random ones.
fn near(field: usize) -> impl Strategy<Value = Value> {
    let choices: Vec<&'static str> = match NAMES[field] {
        "iss" => vec![
            "\"vigile\"",
            "\"vig\\u0069le\"",
            "\"Vigile\"",
            "[\"vigile\"]",
            "\"vigile \"",
        ],
        "aud" => vec!["\"api\"", "\"\\u0061pi\"", "[\"api\"]", "\"API\"", "\"ap\""],
        "sub" => vec!["\"7\"", "\"\\u0037\"", "\"\"", "7", "\"x\\ty\""],
        "sid" => vec![
            "\"0000000000000000000000000000000a\"",
            "\"0000000000000000000000000000000A\"",
            "\"000000000000000000000000000000\\u0030a\"",
            "\"+000000000000000000000000000000a\"",
            "\"000000000000000000000000000000a\"",
            "\"0000000000000000000000000000000g\"",
        ],
        "jti" => vec!["\"00\"", "\"\"", "0", "null", "{\"a\":1}"],
        "token_type" => vec![
            "\"access\"",
            "\"refresh\"",
            "\"\\u0061ccess\"",
            "\"Access\"",
            "\"access\\u0000\"",
        ],
        _ => vec!["\"dev@example.com\"", "\"Admin\""],
    };
    prop::sample::select(choices).prop_map(text)
}

fn value(field: usize) -> BoxedStrategy<Value> {
    if NAMES[field] == "iat" || NAMES[field] == "exp" {
        prop_oneof![3 => time(), 1 => other()].boxed()
    } else {
        prop_oneof![3 => near(field), 1 => string(), 1 => other()].boxed()
    }
}

/// One claim: its key as JSON text (`"iss"` or an escaped spelling) and value.
#[derive(Debug, Clone)]
struct Claim {
    key: String,
    value: Value,
}

/// A key written with its `at`-th character as a `\u` escape: `"tok\u0065n_type"`.
fn escaped(name: &str, at: usize) -> String {
    let at = at % name.len();
    let (head, tail) = name.split_at(at);
    let mut chars = tail.chars();
    let c = chars.next().expect("a character");
    format!("\"{head}\\u{:04x}{}\"", c as u32, chars.as_str())
}

#[derive(Debug, Clone)]
enum Change {
    Set(usize, Value),
    Remove(usize),
    Duplicate(usize, Value, bool),
    EscapeKey(usize, usize),
    Insert(usize, String, Value),
    Swap(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    let field = 0..NAMES.len();
    prop_oneof![
        8 => field.clone().prop_flat_map(|f| value(f).prop_map(move |v| Change::Set(f, v))),
        1 => field.clone().prop_map(Change::Remove),
        1 => (field.clone(), any::<bool>())
            .prop_flat_map(|(f, escape)| value(f).prop_map(move |v| Change::Duplicate(f, v, escape))),
        1 => (field.clone(), 0..12usize).prop_map(|(f, at)| Change::EscapeKey(f, at)),
        2 => (
            0..12usize,
            prop::sample::select(vec!["\"nbf\"", "\"n\\u0062f\"", "\"x\"", "\"\"", "\"iss \"", "\"ISS\""]),
            prop_oneof![2 => time(), 1 => other()],
        )
            .prop_map(|(at, key, v)| Change::Insert(at, key.to_string(), v)),
        1 => (field.clone(), field).prop_map(|(a, b)| Change::Swap(a, b)),
    ]
}

/// What surrounds the claims.
#[derive(Debug, Clone)]
enum Shape {
    Object,
    /// The claims' values, in order, as a JSON array.
    Array,
    /// The object inside an array.
    Nested,
}

#[derive(Debug, Clone)]
struct Payload {
    claims: Vec<Claim>,
    shape: Shape,
    /// Whitespace written around every structural character, in turn.
    spaces: Vec<&'static str>,
    trailing: &'static str,
}

impl Payload {
    fn render(&self, now: u64) -> Vec<u8> {
        let mut spaces = self.spaces.iter().cycle();
        let mut gap = || -> &str {
            if self.spaces.is_empty() {
                ""
            } else {
                spaces.next().copied().unwrap_or("")
            }
        };
        let mut out = String::new();
        let array = matches!(self.shape, Shape::Array);
        if matches!(self.shape, Shape::Nested) {
            out.push('[');
        }
        out.push_str(gap());
        out.push(if array { '[' } else { '{' });
        for (i, claim) in self.claims.iter().enumerate() {
            if i > 0 {
                out.push_str(gap());
                out.push(',');
            }
            out.push_str(gap());
            if !array {
                out.push_str(&claim.key);
                out.push_str(gap());
                out.push(':');
                out.push_str(gap());
            }
            out.push_str(&claim.value.render(now));
        }
        out.push_str(gap());
        out.push(if array { ']' } else { '}' });
        out.push_str(gap());
        if matches!(self.shape, Shape::Nested) {
            out.push(']');
        }
        out.push_str(self.trailing);
        out.into_bytes()
    }
}

/// The claims as this gateway issues them, then a few changes.
fn claims() -> impl Strategy<Value = Payload> {
    let base = vec![
        text("\"vigile\""),
        text("\"api\""),
        text("\"7\""),
        text("\"dev@example.com\""),
        text("\"Admin\""),
        text("\"0000000000000000000000000000000a\""),
        text("\"000000000000000000000000000000ff\""),
        Value::Time(When::Offset(-10), Form::Plain),
        Value::Time(When::Offset(290), Form::Plain),
        text("\"access\""),
    ];
    let shape = prop_oneof![
        16 => Just(Shape::Object),
        1 => Just(Shape::Array),
        1 => Just(Shape::Nested),
    ];
    let spaces = prop_oneof![
        6 => Just(vec![]),
        1 => prop::collection::vec(
            prop::sample::select(vec!["", " ", "\n", "\t", "\r", " \r\n ", "\u{c}", "\u{a0}"]),
            1..4,
        ),
    ];
    let trailing = prop_oneof![
        8 => Just(""),
        1 => prop::sample::select(vec![" ", "\n", "}", ",", "x", "{}", "\u{0}", "]", "\"", "//"]),
    ];
    // Valid times mostly; otherwise any, before the changes.
    let times = prop_oneof![3 => Just(None), 1 => (when(), when()).prop_map(Some)];
    (
        times,
        prop::collection::vec(change(), 0..4),
        shape,
        spaces,
        trailing,
    )
        .prop_map(move |(times, changes, shape, spaces, trailing)| {
            let mut claims: Vec<Claim> = NAMES
                .iter()
                .zip(&base)
                .map(|(name, value)| Claim {
                    key: format!("\"{name}\""),
                    value: value.clone(),
                })
                .collect();
            if let Some((iat, exp)) = times {
                claims[7].value = Value::Time(iat, Form::Plain);
                claims[8].value = Value::Time(exp, Form::Plain);
            }
            for change in changes {
                let n = claims.len();
                match change {
                    Change::Set(f, v) if f < n => claims[f].value = v,
                    Change::Remove(f) if f < n => {
                        claims.remove(f);
                    }
                    Change::Duplicate(f, v, escape) => {
                        let name = NAMES[f];
                        let key = if escape {
                            escaped(name, f)
                        } else {
                            format!("\"{name}\"")
                        };
                        claims.push(Claim { key, value: v });
                    }
                    Change::EscapeKey(f, at) if f < n => {
                        let name = claims[f].key.trim_matches('"').to_string();
                        if !name.contains('\\') && !name.is_empty() {
                            claims[f].key = escaped(&name, at);
                        }
                    }
                    Change::Insert(at, key, value) => {
                        claims.insert(at.min(n), Claim { key, value });
                    }
                    Change::Swap(a, b) if a < n && b < n => claims.swap(a, b),
                    _ => {}
                }
            }
            Payload {
                claims,
                shape,
                spaces,
                trailing,
            }
        })
}

/// Any JSON value, small.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
        prop::sample::select(NAMES.to_vec()).prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::vec((prop::sample::select(NAMES.to_vec()), inner), 0..8).prop_map(
                |entries| {
                    serde_json::Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                }
            ),
        ]
    })
}

#[derive(Debug, Clone)]
enum Case {
    Claims(Payload),
    Json(serde_json::Value),
    Bytes(Vec<u8>),
}

impl Case {
    fn payload(&self, now: u64) -> Vec<u8> {
        match self {
            Case::Claims(p) => p.render(now),
            Case::Json(v) => serde_json::to_vec(v).expect("json"),
            Case::Bytes(b) => b.clone(),
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        8 => claims().prop_map(Case::Claims),
        1 => json().prop_map(Case::Json),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Case::Bytes),
    ]
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn the_fast_path_gives_the_general_verdicts() {
    let keys = [keys(0), keys(30)];
    let (accepted, refused, generic) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let result = runner().run(&(case(), any::<bool>()), |(case, leeway)| {
        let keys = &keys[usize::from(leeway)];
        let set = keys.current();
        let fast = set.fast.first().expect("HS256 has a fast path");
        let payload = case.payload(crate::unix_now());
        let token = sign_payload(keys, &payload);
        let Fast::Done(verdict) = fast.verify_access(&token, &set) else {
            generic.set(generic.get() + 1);
            return Ok(());
        };
        let counter = if verdict.is_ok() { &accepted } else { &refused };
        counter.set(counter.get() + 1);
        let general = set.verify_access_general(&token);
        if verdict != general {
            return Err(TestCaseError::fail(format!(
                "fast {verdict:?}, general {general:?}, payload {}",
                String::from_utf8_lossy(&payload)
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The cases must reach the fast path's decisions, not only its fallback.
    let (accepted, refused, generic) = (accepted.get(), refused.get(), generic.get());
    assert!(
        accepted > 50 && refused > 50 && generic > 50,
        "accepted {accepted}, refused {refused}, left to the general path {generic}"
    );
}

#[test]
fn the_claims_reader_reads_what_serde_json_reads() {
    let read = Cell::new(0);
    let result = runner().run(&claims(), |payload| {
        let bytes = payload.render(crate::unix_now());
        let Ok(json) = std::str::from_utf8(&bytes) else {
            return Ok(());
        };
        let Some(own) = read_own_claims(json) else {
            return Ok(());
        };
        read.set(read.get() + 1);
        let general = serde_json::from_str::<AccessClaims>(json);
        let Ok(general) = general else {
            return Err(TestCaseError::fail(format!(
                "read by hand, refused by serde_json ({general:?}): {json}"
            )));
        };
        // The same fields of the two claim types, as plain values.
        macro_rules! fields {
            ($c:expr) => {
                (
                    (&*$c.iss, &*$c.aud, &*$c.sub, &*$c.email, &*$c.role),
                    (&*$c.sid, &*$c.jti, &*$c.token_type),
                    ($c.iat, $c.exp, $c.nbf),
                )
            };
        }
        prop_assert_eq!(fields!(own), fields!(general), "{}", json);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(read.get() > 50, "{} payloads read by hand", read.get());
}

//! The checks of one row's fields: an account's (`account_of`), a role's
//! (`role_of`), and the ids, texts and times they are made of. Each answers
//! the reason a row is refused; `convert` (mod.rs) names the row.
//!
//! The rules are registration's where Django held the same data to them
//! (names: `accounts::input::name_fault`; gender: the seed model's
//! choices), and otherwise what vigile can store and serve safely: no
//! control character anywhere, bounded lengths, an address of the form
//! local@domain (non-ASCII ones included, as accounts stored before
//! vigile's ASCII rule are; see `store::email_names`).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{Mapping, Row};
use crate::accounts::input::{name_fault, NameFault, GENDERS, NAME_MAX_CHARS, PHONE_MAX_BYTES};
use crate::store::AccountRecord;

/// The largest account id: 2^53 - 1. A JSON id above it loses precision in
/// JavaScript clients, and the store's next id stays far below `i64::MAX`.
pub const MAX_ID: u64 = 9_007_199_254_740_991;

/// How far after the import's clock a join or login time may be (clocks
/// differ a little; a later time is a broken or forged record).
const FUTURE_SLACK: u64 = 86_400;

/// The longest text field taken, in bytes (more than any Django column).
pub const TEXT_MAX_BYTES: usize = 4096;

/// The roles of the data: by id, and the names a natural key may give.
#[derive(Debug, Default)]
pub(super) struct Roles {
    /// Role id -> (name, label of its row).
    pub by_id: HashMap<u64, (String, String)>,
    /// Ids two role rows hold (refused; with `--skip-invalid` an account
    /// naming one is refused too: which of the two would it be?).
    pub ambiguous: HashMap<u64, String>,
    pub names: HashSet<String>,
}

/// A row's id: a JSON integer (or SQLite integer) in 1 ..= `MAX_ID`.
pub(super) fn account_id(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64().filter(|id| (1..=MAX_ID).contains(id)),
        _ => None,
    }
}

/// A primary or foreign key of a role or token row: a positive integer,
/// as a number or as a string of digits (the same id either way).
pub(super) fn key(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
    .filter(|id| *id > 0)
}

/// A role row's id and name.
pub(super) fn role_of(row: &Row, mapping: &Mapping) -> Result<(u64, String), String> {
    let id = key(row.fields.get("id")).ok_or("the id is not a positive integer")?;
    let name = text(&row.fields, &mapping.role_name_field)?
        .filter(|n| !n.trim().is_empty())
        .ok_or("a role without name")?;
    crate::config::RoleName::new(name.trim()).map_err(|e| format!("role name {name:?}: {e}"))?;
    Ok((id, name.trim().to_string()))
}

/// The role an account's foreign key names: a role id (number or digits),
/// or a natural key `["Name"]` naming a role row; none: the default role.
fn role_named(
    value: Option<&Value>,
    field: &str,
    roles: &Roles,
    mapping: &Mapping,
) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Ok(mapping.default_role.clone()),
        Some(Value::Array(parts)) => match parts.as_slice() {
            [Value::String(name)] if roles.names.contains(name.trim()) => {
                Ok(name.trim().to_string())
            }
            [Value::String(name)] => Err(format!("{field}: no role is named {name:?}")),
            _ => Err(format!("{field}: a natural key is [\"role name\"]")),
        },
        Some(value) => {
            let id = key(Some(value)).ok_or(format!("{field}: {value} is not a role id"))?;
            if let Some(rows) = roles.ambiguous.get(&id) {
                return Err(format!("{field}: role id {id} is held by {rows}"));
            }
            roles
                .by_id
                .get(&id)
                .map(|(name, _)| name.clone())
                .ok_or(format!("{field}: no role with id {id}"))
        }
    }
}

pub(super) fn account_of(
    row: &Row,
    mapping: &Mapping,
    roles: &Roles,
    now: u64,
) -> Result<AccountRecord, String> {
    let fields = &row.fields;
    let id = account_id(fields.get("id"))
        .ok_or(format!("the id is not an integer from 1 to {MAX_ID}"))?;
    let email = email_of(fields, mapping.field("email"))?;
    let password_hash = text(fields, mapping.field("password"))?.unwrap_or_default();
    let role_field = mapping.field("role");
    let role = role_named(fields.get(role_field), role_field, roles, mapping)?;
    let is_active = match fields.get(mapping.field("is_active")) {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
        Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
        Some(other) => return Err(format!("is_active: {other} is not a boolean")),
    };
    let date_joined =
        recorded_time(fields, mapping.field("date_joined"), now)?.ok_or("no date_joined")?;
    Ok(AccountRecord {
        id,
        email,
        password_hash,
        first_name: name_of(fields, mapping.field("first_name"))?,
        last_name: name_of(fields, mapping.field("last_name"))?,
        gender: gender_of(fields, mapping.field("gender"))?,
        phone: phone_of(fields, mapping.field("phone"))?,
        role,
        is_active,
        date_joined,
        last_login: recorded_time(fields, mapping.field("last_login"), now)?,
    })
}

/// The address, trimmed: local@domain, both parts there, at most 254
/// bytes, no space or control character.
fn email_of(fields: &Map<String, Value>, name: &str) -> Result<String, String> {
    let email = text(fields, name)?
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .ok_or("no email")?;
    if email.len() > 254 {
        return Err(format!("{name}: longer than 254 bytes"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{name}: {email:?} holds a space or a control character"
        ));
    }
    match email.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(email),
        _ => Err(format!(
            "{name}: {email:?} is not an address (local@domain)"
        )),
    }
}

/// A first or last name (empty when absent): registration's rule.
fn name_of(fields: &Map<String, Value>, name: &str) -> Result<String, String> {
    let value = text(fields, name)?.unwrap_or_default();
    match name_fault(&value) {
        None => Ok(value),
        Some(NameFault::TooLong) => Err(format!("{name}: longer than {NAME_MAX_CHARS} characters")),
        Some(NameFault::Control) => Err(format!("{name}: {value:?} holds a control character")),
    }
}

/// The seed model's choices, `H` or `F`, or none (null or empty). Django
/// does not enforce choices on save, but vigile serves and takes only
/// these (register and profile refuse others).
fn gender_of(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match text(fields, name)?.filter(|g| !g.is_empty()) {
        None => Ok(None),
        Some(g) if GENDERS.contains(&g.as_str()) => Ok(Some(g)),
        Some(g) => Err(format!(
            "{name}: {g:?} is not one of {}",
            GENDERS.join(", ")
        )),
    }
}

/// A phone number as Django kept it (its model checks no format), at most
/// registration's length, without control characters.
fn phone_of(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match text(fields, name)?.filter(|p| !p.is_empty()) {
        Some(p) if p.len() > PHONE_MAX_BYTES => {
            Err(format!("{name}: longer than {PHONE_MAX_BYTES} bytes"))
        }
        Some(p) if p.chars().any(char::is_control) => {
            Err(format!("{name}: {p:?} holds a control character"))
        }
        phone => Ok(phone),
    }
}

/// A text field (`None` when absent or null). Text holding a NUL or longer
/// than Django's largest column is refused: no store takes it.
pub(super) fn text(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.contains('\0') => Err(format!("{name}: holds a NUL")),
        Some(Value::String(s)) if s.len() > TEXT_MAX_BYTES => {
            Err(format!("{name}: longer than {TEXT_MAX_BYTES} bytes"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{name}: {other} is not text")),
    }
}

/// A date and time field in unix seconds (`None` when absent or null).
pub(super) fn time_of(fields: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s)
            .map(Some)
            .ok_or_else(|| format!("{name}: {s:?} is not a date and time")),
        Some(other) => Err(format!("{name}: {other} is not a date and time")),
    }
}

/// A time something happened (joined, logged in): not more than a day
/// after `now`.
fn recorded_time(fields: &Map<String, Value>, name: &str, now: u64) -> Result<Option<u64>, String> {
    match time_of(fields, name)? {
        Some(at) if at > now.saturating_add(FUTURE_SLACK) => Err(format!(
            "{name}: {} is more than a day after now",
            fields.get(name).map_or(String::new(), Value::to_string)
        )),
        at => Ok(at),
    }
}

/// Django's date and time forms in unix seconds: dumpdata's ISO 8601
/// (`2026-01-31T08:00:00.123Z`, with an offset, or naive, read as UTC) and
/// SQLite's (`2026-01-31 08:00:00.123456`).
pub fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim();
    let (local, offset) = split_offset(text)?;
    let at = humantime::parse_rfc3339_weak(local).ok()?;
    let secs = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    u64::try_from(secs - offset).ok()
}

/// The time without its zone, and the zone's offset in seconds (east of
/// UTC): `Z`, `+HH:MM` or `-HH:MM` (hours up to 23, minutes up to 59), or
/// none. `None` for a zone of another form.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix('Z') {
        return Some((local, 0));
    }
    let Some(at) = text.len().checked_sub(6) else {
        return Some((text, 0));
    };
    let (local, zone) = (text.get(..at), text.get(at..));
    let (Some(local), Some(zone)) = (local, zone) else {
        return Some((text, 0));
    };
    let sign = match zone.as_bytes() {
        [b'+', .., b':', _, _] => 1,
        [b'-', .., b':', _, _] => -1,
        _ => return Some((text, 0)),
    };
    let two = |s: Option<&str>| -> Option<i64> {
        let s = s.filter(|s| s.bytes().all(|b| b.is_ascii_digit()))?;
        s.parse().ok()
    };
    let hours = two(zone.get(1..3)).filter(|h| *h <= 23)?;
    let minutes = two(zone.get(4..6)).filter(|m| *m <= 59)?;
    Some((local, sign * (hours * 3600 + minutes * 60)))
}

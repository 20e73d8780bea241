//! `vigile import django`: the accounts of the Django system vigile replaces,
//! read from a `manage.py dumpdata` JSON file (`dumpdata.rs`) or from the
//! Django SQLite database itself (`sqlite.rs`), made into vigile's records
//! here, then written by the store in one transaction
//! (`StoreBackend::import_accounts`).
//!
//! Both readers give the same thing, `DjangoData`: rows as field maps, each
//! with its number for messages. `Mapping` names the models, tables and
//! fields (the seeds' `CustomUser` and `Role` by default), and `convert`
//! checks every row before anything is written: one bad row refuses the
//! whole import, with its number, unless `--skip-invalid` is given.

mod command;
mod dumpdata;
mod sqlite;

pub use command::{run, DjangoImport};

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::store::{normalize_email, AccountRecord, ImportBatch, LegacyToken};

/// Where the data comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Dumpdata(&'a Path),
    Sqlite(&'a Path),
}

/// One row of a Django model, as a map of its fields (dumpdata's `fields`
/// with `pk` added as `id`, or a table's columns).
#[derive(Debug, Clone)]
pub struct Row {
    /// How a message names it: "record 12" (dumpdata) or "accounts_customuser id 7".
    pub label: String,
    pub fields: serde_json::Map<String, Value>,
}

/// The rows an import needs, from either source.
#[derive(Debug, Default)]
pub struct DjangoData {
    pub users: Vec<Row>,
    pub roles: Vec<Row>,
    pub outstanding: Vec<Row>,
    pub blacklisted: Vec<Row>,
    /// Rows of other models, left alone (dumpdata only).
    pub other: usize,
}

/// The account fields vigile takes, by vigile's name, in `Mapping::fields`.
pub const FIELDS: [&str; 10] = [
    "email",
    "password",
    "first_name",
    "last_name",
    "gender",
    "phone",
    "role",
    "is_active",
    "date_joined",
    "last_login",
];

/// The names of the Django project's models, tables and fields.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// `app_label.model` of the user model (dumpdata).
    pub user_model: String,
    pub role_model: String,
    /// Tables (SQLite): by default `app_label_model`.
    pub user_table: String,
    pub role_table: String,
    /// vigile's field name -> the model's field name.
    pub fields: HashMap<&'static str, String>,
    /// The role model's field holding the name.
    pub role_name_field: String,
    /// The role of accounts whose model has none (`accounts.default_role`).
    pub default_role: String,
}

impl Mapping {
    /// The seeds' models; `renames` are `vigile=django` pairs.
    pub fn new(
        user_model: &str,
        role_model: &str,
        renames: &[String],
        default_role: &str,
    ) -> Result<Mapping, String> {
        let table = |model: &str| model.replace('.', "_");
        let mut fields: HashMap<&'static str, String> =
            FIELDS.iter().map(|f| (*f, f.to_string())).collect();
        for rename in renames {
            let (ours, theirs) = rename
                .split_once('=')
                .ok_or_else(|| format!("--field {rename}: expected VIGILE_FIELD=DJANGO_FIELD"))?;
            let Some(name) = FIELDS.iter().find(|f| **f == ours.trim()) else {
                return Err(format!(
                    "--field {rename}: {ours} is not one of {}",
                    FIELDS.join(", ")
                ));
            };
            if theirs.trim().is_empty() {
                return Err(format!("--field {rename}: the Django field name is empty"));
            }
            fields.insert(name, theirs.trim().to_string());
        }
        for model in [user_model, role_model] {
            if model.split('.').count() != 2 || model.contains(char::is_whitespace) {
                return Err(format!(
                    "model {model}: expected app_label.model (accounts.customuser)"
                ));
            }
        }
        Ok(Mapping {
            user_model: user_model.to_lowercase(),
            role_model: role_model.to_lowercase(),
            user_table: table(&user_model.to_lowercase()),
            role_table: table(&role_model.to_lowercase()),
            fields,
            role_name_field: "name".into(),
            default_role: default_role.to_string(),
        })
    }

    fn field<'a>(&'a self, ours: &'a str) -> &'a str {
        self.fields.get(ours).map_or(ours, String::as_str)
    }
}

/// Reads the rows an import needs.
pub fn read(source: Source<'_>, mapping: &Mapping) -> Result<DjangoData, String> {
    match source {
        Source::Dumpdata(path) => dumpdata::read(path, mapping),
        Source::Sqlite(path) => sqlite::read(path, mapping),
    }
}

/// A row that cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub label: String,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.label, self.reason)
    }
}

/// What `convert` made of the data: the batch to write, and the rows it
/// refused (empty unless told to skip them).
#[derive(Debug, Default)]
pub struct Converted {
    pub batch: ImportBatch,
    pub skipped: Vec<Refusal>,
}

/// Makes the batch. Every row is checked; the first refusal ends it unless
/// `skip_invalid`, which leaves refused rows out (and lists them).
pub fn convert(
    data: &DjangoData,
    mapping: &Mapping,
    now: u64,
    skip_invalid: bool,
) -> Result<Converted, Refusal> {
    let mut out = Converted::default();
    let mut keep = |refusal: Refusal| {
        if skip_invalid {
            out.skipped.push(refusal);
            Ok(())
        } else {
            Err(refusal)
        }
    };
    let mut roles: HashMap<String, String> = HashMap::new();
    for row in &data.roles {
        match role_of(row, mapping) {
            Ok((key, name)) => {
                roles.insert(key, name.clone());
                out.batch.roles.push(name);
            }
            Err(reason) => keep(refusal(row, reason))?,
        }
    }
    let mut emails: HashMap<String, String> = HashMap::new();
    for row in &data.users {
        let account = match account_of(row, mapping, &roles) {
            Ok(account) => account,
            Err(reason) => {
                keep(refusal(row, reason))?;
                continue;
            }
        };
        let key = normalize_email(&account.email);
        if let Some(first) = emails.get(&key) {
            keep(refusal(
                row,
                format!(
                    "email {} is also {first}'s (emails are unique without regard to case)",
                    account.email
                ),
            ))?;
            continue;
        }
        emails.insert(key, row.label.clone());
        out.batch.accounts.push(account);
    }
    let mut ids: HashMap<u64, &str> = HashMap::new();
    for (account, row) in out.batch.accounts.iter().zip(&data.users) {
        if let Some(first) = ids.insert(account.id, &row.label) {
            return Err(refusal(row, format!("id {} is also {first}'s", account.id)));
        }
    }
    out.batch.blacklisted = blacklisted(data, now);
    Ok(out)
}

fn refusal(row: &Row, reason: String) -> Refusal {
    Refusal {
        label: row.label.clone(),
        reason,
    }
}

/// The key accounts use to name the role (its id, as text) and its name.
fn role_of(row: &Row, mapping: &Mapping) -> Result<(String, String), String> {
    let id = key_of(row.fields.get("id")).ok_or("no id")?;
    let name = text(&row.fields, &mapping.role_name_field)?
        .filter(|n| !n.trim().is_empty())
        .ok_or("a role without name")?;
    crate::config::RoleName::new(name.trim()).map_err(|e| format!("role name {name:?}: {e}"))?;
    Ok((id, name.trim().to_string()))
}

/// A foreign key as text: an id, or a natural key (`["Admin"]`).
fn key_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) if parts.len() == 1 => key_of(parts.first()),
        _ => None,
    }
}

fn account_of(
    row: &Row,
    mapping: &Mapping,
    roles: &HashMap<String, String>,
) -> Result<AccountRecord, String> {
    let fields = &row.fields;
    let id = match fields.get("id") {
        Some(Value::Number(n)) => n.as_u64().filter(|id| *id > 0 && *id <= i64::MAX as u64),
        _ => None,
    }
    .ok_or("the id is not a positive integer")?;
    let email = text(fields, mapping.field("email"))?
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .ok_or("no email")?;
    if email.len() > 254 || !email.contains('@') {
        return Err(format!("email {email:?} is not an address"));
    }
    let password_hash = text(fields, mapping.field("password"))?.unwrap_or_default();
    let role_field = mapping.field("role");
    let role = match fields.get(role_field) {
        None | Some(Value::Null) => mapping.default_role.clone(),
        Some(Value::String(name)) if !roles.contains_key(name) => {
            crate::config::RoleName::new(name).map_err(|e| format!("role name {name:?}: {e}"))?;
            name.clone()
        }
        value => {
            let key = key_of(value).ok_or(format!("{role_field}: not a role key"))?;
            roles
                .get(&key)
                .cloned()
                .ok_or(format!("{role_field}: no role with id {key}"))?
        }
    };
    let is_active = match fields.get(mapping.field("is_active")) {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
        Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
        Some(other) => return Err(format!("is_active: {other} is not a boolean")),
    };
    let date_joined = time_of(fields, mapping.field("date_joined"))?.ok_or("no date_joined")?;
    Ok(AccountRecord {
        id,
        email,
        password_hash,
        first_name: text(fields, mapping.field("first_name"))?.unwrap_or_default(),
        last_name: text(fields, mapping.field("last_name"))?.unwrap_or_default(),
        gender: text(fields, mapping.field("gender"))?.filter(|g| !g.is_empty()),
        phone: text(fields, mapping.field("phone"))?.filter(|p| !p.is_empty()),
        role,
        is_active,
        date_joined,
        last_login: time_of(fields, mapping.field("last_login"))?,
    })
}

/// A text field (`None` when absent or null). Text holding a NUL or longer
/// than Django's largest column is refused: no store takes it.
fn text(fields: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.contains('\0') => Err(format!("{name}: holds a NUL")),
        Some(Value::String(s)) if s.len() > 4096 => Err(format!("{name}: longer than 4096 bytes")),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{name}: {other} is not text")),
    }
}

/// A date and time field in unix seconds (`None` when absent or null).
fn time_of(fields: &serde_json::Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s)
            .map(Some)
            .ok_or_else(|| format!("{name}: {s:?} is not a date and time")),
        Some(other) => Err(format!("{name}: {other} is not a date and time")),
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

/// The time without its zone, and the zone's offset in seconds (east of UTC).
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix('Z') {
        return Some((local, 0));
    }
    let bytes = text.as_bytes();
    if bytes.len() > 6 && bytes[bytes.len() - 3] == b':' {
        let sign = bytes[bytes.len() - 6];
        if sign == b'+' || sign == b'-' {
            let (local, zone) = text.split_at(text.len() - 6);
            let hours: i64 = zone.get(1..3)?.parse().ok()?;
            let minutes: i64 = zone.get(4..6)?.parse().ok()?;
            let offset = hours * 3600 + minutes * 60;
            return Some((local, if sign == b'+' { offset } else { -offset }));
        }
    }
    Some((text, 0))
}

/// The blacklisted refresh tokens not yet expired at `now`, by `jti`.
fn blacklisted(data: &DjangoData, now: u64) -> Vec<LegacyToken> {
    let outstanding: HashMap<String, (String, u64)> = data
        .outstanding
        .iter()
        .filter_map(|row| {
            let id = key_of(row.fields.get("id"))?;
            let jti = text(&row.fields, "jti").ok()??;
            let expires_at = time_of(&row.fields, "expires_at").ok()??;
            Some((id, (jti, expires_at)))
        })
        .collect();
    let mut out: Vec<LegacyToken> = data
        .blacklisted
        .iter()
        .filter_map(|row| {
            let (jti, expires_at) = outstanding.get(&key_of(row.fields.get("token"))?)?;
            (*expires_at >= now).then(|| LegacyToken {
                jti: jti.clone(),
                expires_at: *expires_at,
            })
        })
        .collect();
    out.sort_by(|a, b| a.jti.cmp(&b.jti));
    out.dedup_by(|a, b| a.jti == b.jti);
    out
}

#[cfg(test)]
mod tests;

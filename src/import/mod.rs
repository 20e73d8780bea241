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

mod blacklist;
mod command;
mod dumpdata;
mod fields;
mod sqlite;

pub use command::{run, DjangoImport};
pub use fields::{parse_time, MAX_ID};

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::store::{normalize_email, ImportBatch};
use fields::{account_of, role_of, Roles};

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
    /// Why the reader could not take the row whole (SQLite: a value over
    /// 4096 bytes, left unread): the row is refused with this reason.
    pub fault: Option<String>,
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
    let mut roles = Roles::default();
    for row in &data.roles {
        match checked(row).and_then(|()| role_of(row, mapping)) {
            Ok((id, _)) if roles.by_id.contains_key(&id) => {
                let first = roles.by_id.get(&id).map_or("", |(_, label)| label.as_str());
                let both = format!("{first} and {}", row.label);
                keep(refusal(row, format!("id {id} is also {first}'s")))?;
                roles.ambiguous.insert(id, both);
            }
            Ok((id, name)) => {
                roles.names.insert(name.clone());
                roles.by_id.insert(id, (name.clone(), row.label.clone()));
                out.batch.roles.push(name);
            }
            Err(reason) => keep(refusal(row, reason))?,
        }
    }
    let mut emails: HashMap<String, String> = HashMap::new();
    let mut ids: HashMap<u64, &str> = HashMap::new();
    for row in &data.users {
        let account = match checked(row).and_then(|()| account_of(row, mapping, &roles, now)) {
            Ok(account) => account,
            Err(reason) => {
                keep(refusal(row, reason))?;
                continue;
            }
        };
        if let Some(first) = ids.get(&account.id) {
            keep(refusal(row, format!("id {} is also {first}'s", account.id)))?;
            continue;
        }
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
        ids.insert(account.id, &row.label);
        out.batch.accounts.push(account);
    }
    let (tokens, refused) = blacklist::blacklisted(data, now);
    for refusal in refused {
        keep(refusal)?;
    }
    out.batch.blacklisted = tokens;
    Ok(out)
}

/// What the reader found wrong with the row as a whole (a value too large
/// to read), if anything.
fn checked(row: &Row) -> Result<(), String> {
    row.fault.clone().map_or(Ok(()), Err)
}

fn refusal(row: &Row, reason: String) -> Refusal {
    Refusal {
        label: row.label.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests;

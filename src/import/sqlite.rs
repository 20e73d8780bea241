//! The Django SQLite database file itself, opened read-only: the user and
//! role tables, and simplejwt's `token_blacklist_*` tables when present.
//! Columns become fields by name; a foreign key column (`role_id`,
//! `token_id`) is read as the field it belongs to (`role`, `token`).

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use super::{DjangoData, Mapping, Row};

pub(super) fn read(path: &Path, mapping: &Mapping) -> Result<DjangoData, String> {
    let fail = |e: rusqlite::Error| format!("{}: {e}", path.display());
    if !path.is_file() {
        return Err(format!("{}: no such file", path.display()));
    }
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    let role_field = mapping.field("role").to_string();
    let mut data = DjangoData {
        users: table(&db, &mapping.user_table, &[&role_field])?
            .ok_or_else(|| format!("{}: no table {}", path.display(), mapping.user_table))?,
        roles: table(&db, &mapping.role_table, &[])?.unwrap_or_default(),
        ..DjangoData::default()
    };
    data.outstanding =
        table(&db, "token_blacklist_outstandingtoken", &["user"])?.unwrap_or_default();
    data.blacklisted =
        table(&db, "token_blacklist_blacklistedtoken", &["token"])?.unwrap_or_default();
    Ok(data)
}

/// Every row of `name` (`None` when there is no such table), with the
/// foreign key columns `<field>_id` of `keys` named `<field>`.
fn table(db: &Connection, name: &str, keys: &[&str]) -> Result<Option<Vec<Row>>, String> {
    let fail = |e: rusqlite::Error| format!("table {name}: {e}");
    let exists: bool = db
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |row| row.get(0),
        )
        .map_err(fail)?;
    if !exists {
        return Ok(None);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    let mut statement = db
        .prepare(&format!("SELECT * FROM {quoted} ORDER BY rowid"))
        .map_err(fail)?;
    let columns: Vec<String> = statement
        .column_names()
        .iter()
        .map(|c| {
            let field = c.strip_suffix("_id").filter(|f| keys.contains(f));
            field.unwrap_or(c).to_string()
        })
        .collect();
    let mut rows = statement.query([]).map_err(fail)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(fail)? {
        let mut fields = serde_json::Map::new();
        for (i, column) in columns.iter().enumerate() {
            let value = match row.get_ref(i).map_err(fail)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(x) => Value::from(x),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::String(String::from_utf8_lossy(t).into_owned())
                }
            };
            fields.insert(column.clone(), value);
        }
        let id = fields.get("id").map_or("?".into(), Value::to_string);
        out.push(Row {
            label: format!("{name} id {id}"),
            fields,
            fault: None,
        });
    }
    Ok(Some(out))
}

//! The Django SQLite database file itself, opened read-only: the user and
//! role tables, and simplejwt's `token_blacklist_*` tables when present.
//! Only the columns the import uses are read (the mapped user fields and
//! `id`; the role's id and name; the tokens' id, `jti`, `expires_at`, and
//! the blacklisted one's `token`). Columns become fields by name; a foreign
//! key column (`role_id`, `token_id`) is read as the field it belongs to
//! (`role`, `token`).

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use super::fields::TEXT_MAX_BYTES;
use super::{DjangoData, Mapping, Row, FIELDS};

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
    let mut users: Vec<Column<'_>> = vec![Column::plain("id")];
    for field in FIELDS {
        let name = mapping.field(field);
        users.push(if field == "role" {
            Column::key(name)
        } else {
            Column::plain(name)
        });
    }
    let roles = [Column::plain("id"), Column::plain(&mapping.role_name_field)];
    let outstanding = ["id", "jti", "expires_at"].map(Column::plain);
    let blacklisted = [Column::plain("id"), Column::key("token")];
    let within = |e: String| format!("{}: {e}", path.display());
    let data = DjangoData {
        users: table(&db, &mapping.user_table, &users)
            .map_err(within)?
            .ok_or_else(|| format!("{}: no table {}", path.display(), mapping.user_table))?,
        roles: table(&db, &mapping.role_table, &roles)
            .map_err(within)?
            .unwrap_or_default(),
        outstanding: table(&db, "token_blacklist_outstandingtoken", &outstanding)
            .map_err(within)?
            .unwrap_or_default(),
        blacklisted: table(&db, "token_blacklist_blacklistedtoken", &blacklisted)
            .map_err(within)?
            .unwrap_or_default(),
        other: 0,
    };
    Ok(data)
}

/// A field the import reads, and whether it is a foreign key (its column
/// is then `<field>_id`, or `<field>` when there is none such).
#[derive(Debug, Clone, Copy)]
struct Column<'a> {
    field: &'a str,
    foreign_key: bool,
}

impl<'a> Column<'a> {
    fn plain(field: &'a str) -> Column<'a> {
        Column {
            field,
            foreign_key: false,
        }
    }

    fn key(field: &'a str) -> Column<'a> {
        Column {
            field,
            foreign_key: true,
        }
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The rows of table `name` (`None` when there is no such table), with the
/// `wanted` fields only: a column the table lacks is a field the rows lack,
/// but for `id`. Each value comes with its size in bytes, computed by
/// SQLite: a value over `TEXT_MAX_BYTES` is never read (a generated column
/// may hold gigabytes in a file of kilobytes), and its row is refused.
fn table(db: &Connection, name: &str, wanted: &[Column<'_>]) -> Result<Option<Vec<Row>>, String> {
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
    // Generated columns included (table_info leaves them out).
    let mut statement = db
        .prepare("SELECT name FROM pragma_table_xinfo(?1)")
        .map_err(fail)?;
    let present: Vec<String> = statement
        .query_map([name], |row| row.get(0))
        .map_err(fail)?
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let mut read: Vec<(&str, String)> = Vec::new();
    for column in wanted {
        let with_id = format!("{}_id", column.field);
        let found = [
            column.foreign_key.then_some(with_id),
            Some(column.field.to_string()),
        ]
        .into_iter()
        .flatten()
        .find(|c| present.contains(c));
        match found {
            Some(c) if !read.iter().any(|(f, _)| *f == column.field) => {
                read.push((column.field, c));
            }
            Some(_) => {}
            None if column.field == "id" => return Err(format!("table {name}: no id column")),
            None => {}
        }
    }
    let select: Vec<String> = read
        .iter()
        .map(|(_, c)| {
            let c = quote(c);
            format!(
                "CASE WHEN octet_length({c}) <= {TEXT_MAX_BYTES} THEN {c} END, octet_length({c})"
            )
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY rowid",
        select.join(", "),
        quote(name)
    );
    let mut statement = db.prepare(&sql).map_err(fail)?;
    let mut rows = statement.query([]).map_err(fail)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(fail)? {
        let mut fields = serde_json::Map::new();
        let mut fault = None;
        for (i, (field, column)) in read.iter().enumerate() {
            let size: Option<i64> = row.get(2 * i + 1).map_err(fail)?;
            if size.is_some_and(|n| n > TEXT_MAX_BYTES as i64) {
                fault
                    .get_or_insert_with(|| format!("{column}: longer than {TEXT_MAX_BYTES} bytes"));
                continue;
            }
            let value = match row.get_ref(2 * i).map_err(fail)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(x) => Value::from(x),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::String(String::from_utf8_lossy(t).into_owned())
                }
            };
            fields.insert((*field).to_string(), value);
        }
        let id = fields.get("id").map_or("?".into(), Value::to_string);
        out.push(Row {
            label: format!("{name} id {id}"),
            fields,
            fault,
        });
    }
    Ok(Some(out))
}

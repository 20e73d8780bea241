//! `manage.py dumpdata` JSON: one array of `{"model", "pk", "fields"}`
//! records, whatever database Django used. Only the models an import needs
//! are decoded; the others are counted and left alone.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{DjangoData, Mapping, Row};

const OUTSTANDING: &str = "token_blacklist.outstandingtoken";
const BLACKLISTED: &str = "token_blacklist.blacklistedtoken";

#[derive(Deserialize)]
struct Record<'a> {
    model: String,
    #[serde(default)]
    pk: Option<Value>,
    #[serde(borrow)]
    fields: &'a RawValue,
}

pub(super) fn read(path: &Path, mapping: &Mapping) -> Result<DjangoData, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = std::io::read_to_string(BufReader::new(file))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, mapping).map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) fn parse(text: &str, mapping: &Mapping) -> Result<DjangoData, String> {
    let records: Vec<Record<'_>> = serde_json::from_str(text)
        .map_err(|e| format!("not a dumpdata JSON array of records: {e}"))?;
    let mut data = DjangoData::default();
    for (n, record) in records.into_iter().enumerate() {
        let model = record.model.to_lowercase();
        let into = if model == mapping.user_model {
            &mut data.users
        } else if model == mapping.role_model {
            &mut data.roles
        } else if model == OUTSTANDING {
            &mut data.outstanding
        } else if model == BLACKLISTED {
            &mut data.blacklisted
        } else {
            data.other += 1;
            continue;
        };
        let label = format!("record {} ({model})", n + 1);
        let mut fields: serde_json::Map<String, Value> = serde_json::from_str(record.fields.get())
            .map_err(|e| format!("{label}: its fields are not an object: {e}"))?;
        if let Some(pk) = record.pk {
            fields.insert("id".into(), pk);
        }
        into.push(Row {
            label,
            fields,
            fault: None,
        });
    }
    Ok(data)
}

//! `vigile import django`: read, check, write (or, with `--dry-run`, say
//! what would change), and report. The store is opened directly: on redb
//! the gateway using the file must be stopped first (one process holds it);
//! on PostgreSQL the replicas may run, and they see imported accounts at
//! once (accounts are read from the database on every account request).

use std::path::PathBuf;

use clap::Args;

use super::{convert, read, Mapping, Refusal, Source};
use crate::config::{Config, StoreKind};
use crate::store::StoreError;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["dumpdata", "sqlite"])))]
pub struct DjangoImport {
    /// A `manage.py dumpdata` JSON file (whatever database Django used):
    /// `manage.py dumpdata accounts token_blacklist > django.json`.
    #[arg(long, value_name = "FILE")]
    pub dumpdata: Option<PathBuf>,
    /// The Django SQLite database file itself (opened read-only).
    #[arg(long, value_name = "FILE")]
    pub sqlite: Option<PathBuf>,
    /// Check everything and print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave out the records that cannot be taken (each is listed) instead of
    /// refusing the whole import.
    #[arg(long)]
    pub skip_invalid: bool,
    /// The user model, app_label.model.
    #[arg(long, value_name = "MODEL", default_value = "accounts.customuser")]
    pub user_model: String,
    /// The role model, app_label.model (its `name` field names the role).
    #[arg(long, value_name = "MODEL", default_value = "accounts.role")]
    pub role_model: String,
    /// The user table (SQLite); by default app_label_model.
    #[arg(long, value_name = "TABLE")]
    pub user_table: Option<String>,
    /// The role table (SQLite); by default app_label_model.
    #[arg(long, value_name = "TABLE")]
    pub role_table: Option<String>,
    /// A field of the user model under another name, as VIGILE=DJANGO
    /// (email, password, first_name, last_name, gender, phone, role,
    /// is_active, date_joined, last_login); repeat for several.
    #[arg(long = "field", value_name = "VIGILE=DJANGO")]
    pub fields: Vec<String>,
}

/// The message of a refusal; the hint to skip only when it was not given.
pub(super) fn refused(refusal: &Refusal, skip_invalid: bool) -> String {
    let hint = if skip_invalid {
        ""
    } else {
        " (--skip-invalid leaves such records out)"
    };
    format!("vigile: import django: nothing was imported: {refusal}{hint}")
}

/// Runs the import; the exit code (0 done, 1 refused or failed, 2 usage).
pub fn run(config: &Config, args: &DjangoImport) -> i32 {
    let mut mapping = match Mapping::new(
        &args.user_model,
        &args.role_model,
        &args.fields,
        config.accounts.default_role.as_str(),
    ) {
        Ok(mapping) => mapping,
        Err(e) => {
            eprintln!("vigile: import django: {e}");
            return 2;
        }
    };
    if let Some(table) = &args.user_table {
        mapping.user_table = table.clone();
    }
    if let Some(table) = &args.role_table {
        mapping.role_table = table.clone();
    }
    let source = match (&args.dumpdata, &args.sqlite) {
        (Some(path), _) => Source::Dumpdata(path),
        (None, Some(path)) => Source::Sqlite(path),
        (None, None) => {
            eprintln!("vigile: import django: --dumpdata FILE or --sqlite FILE");
            return 2;
        }
    };
    let data = match read(source, &mapping) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("vigile: import django: nothing was imported: {e}");
            return 1;
        }
    };
    let now = crate::unix_now();
    let converted = match convert(&data, &mapping, now, args.skip_invalid) {
        Ok(converted) => converted,
        Err(refusal) => {
            eprintln!("{}", refused(&refusal, args.skip_invalid));
            return 1;
        }
    };
    for refusal in &converted.skipped {
        eprintln!("vigile: import django: skipped {refusal}");
    }
    let window = config.tokens.access_ttl.as_secs() + config.tokens.leeway.as_secs();
    let store = match crate::store::open(&config.store, window) {
        Ok(store) => store,
        Err(StoreError::Locked) => {
            eprintln!(
                "vigile: import django: a gateway holds {}: stop it first (an import writes \
                 the store file itself)",
                config.store.describe()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("vigile: import django: {}: {e}", config.store.describe());
            return 1;
        }
    };
    let outcome = store.import_accounts(&converted.batch, now, args.dry_run);
    store.close();
    match outcome {
        Ok(report) => {
            let what = if args.dry_run {
                "would import (dry run, nothing written)"
            } else {
                "imported"
            };
            println!(
                "{what} {} users, {} roles, {} blacklisted refresh tokens from {} into {}:",
                converted.batch.accounts.len(),
                data.roles.len(),
                converted.batch.blacklisted.len(),
                match source {
                    Source::Dumpdata(p) | Source::Sqlite(p) => p.display(),
                },
                config.store.describe()
            );
            print!("{report}");
            if !converted.skipped.is_empty() {
                println!("skipped       {} records", converted.skipped.len());
            }
            if config.store.kind == StoreKind::Redb && !report.revoked.is_empty() {
                println!("(the gateway loads these revocations when it starts)");
            }
            0
        }
        Err(e) => {
            eprintln!("vigile: import django: nothing was imported: {e}");
            1
        }
    }
}

//! The command line: `serve`, `check-config`, the operator commands
//! (`user ...`, `role ...`, `keys ...`), `store copy` (a redb store into
//! PostgreSQL) and `import django` (`import/`).
//!
//! Operator commands open the store themselves when no gateway runs on it.
//! When one does (one process at a time holds the store), they are sent to that
//! gateway's admin listener with the token it keeps in `<data dir>/admin.token`,
//! so the change reaches its memory at once.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::accounts::{operator, AccountService, OperatorCommand, OperatorReply};
use crate::audit::{Auditor, Origin};
use crate::config::{default_config_path, Config, LogFormat, StoreKind};
use crate::revocation::RevocationList;
use crate::store::redb::RedbStore;
use crate::store::{StoreBackend, StoreError};
use crate::tokens::TokenKeys;

#[derive(Parser, Debug)]
#[command(
    name = "vigile",
    version,
    about = "Reverse-proxy authentication gateway: account API, JWT check and revocation in front of your backends",
    after_help = "The configuration file defaults to $VIGILE_CONFIG, then config/vigile.yaml."
)]
pub struct Cli {
    /// Configuration file (YAML).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Access-log format; overrides server.log_format.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Check the configuration and exit (non-zero, naming the key, if it is wrong).
    CheckConfig,
    /// Make the gateway running with this configuration file re-read it
    /// (as SIGHUP does): routes, upstreams, CORS, identity headers, account
    /// policy and throttles, mailer, token lifetimes and keys, log level and
    /// format, the audit file (opened again) change live; listeners,
    /// threads, store and the other keys bound at start are refused by
    /// name. Non-zero when refused.
    Reload,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage roles.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Manage the token signing keys (rotation with `kid`).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Move data between stores.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Import the accounts of the system vigile replaces.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Import the Django system's accounts (ids, emails, names, gender,
    /// phone, role, is_active, date_joined, last_login, and the password
    /// hash as it is: the first login rehashes it to argon2id) and
    /// simplejwt's blacklisted refresh tokens. Can run again: accounts are
    /// updated, not duplicated (a password changed or upgraded here is
    /// kept). One bad record refuses the whole import, naming it.
    #[command(
        after_help = "Stop a gateway using a redb store first; on PostgreSQL replicas may run. See the README, \"Migrating from Django\"."
    )]
    Django(crate::import::DjangoImport),
}

#[derive(Subcommand, Debug)]
#[command(
    after_help = "Keys live in the store (shared by replicas on PostgreSQL). A running gateway \
                  carries these commands out itself; the other replicas follow within \
                  store.sync_interval (250 ms at most)."
)]
pub enum KeysCommand {
    /// List the signing keys: kid, algorithm, state (active, verify_only,
    /// retired), source (config or store), created.
    List,
    /// Generate a new key of tokens.algorithm (HS256: 32 random bytes;
    /// EdDSA: Ed25519; RS256: RSA 2048) and make it the active one: new
    /// tokens carry its kid. The key that signed until now verifies only,
    /// until no token it signed can still be valid (tokens.refresh_ttl +
    /// tokens.leeway); the gateway retires it then.
    Rotate,
    /// Retire a verify-only key now: the tokens it signed are refused at
    /// once (401 token_not_valid), on every replica. The active key cannot
    /// be retired: rotate first.
    Retire {
        /// The key's kid (see `vigile keys list`). A kid is base64url and may
        /// start with `-`: it is taken as the kid, never as an option.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy a redb store (accounts with their ids and password hashes, roles,
    /// sessions, revocations, reset tokens) into the configured PostgreSQL
    /// store (store.kind: postgres). Can run again: equal rows are skipped,
    /// changed ones updated, nothing is duplicated. Stop the gateway using
    /// the redb file first.
    #[command(
        after_help = "Rows only the PostgreSQL store has are kept. Account ids are kept, and new accounts get ids after the highest one the redb store ever gave."
    )]
    Copy {
        /// The redb file to copy from (a gateway's store.path).
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account (the password is read from stdin or asked for).
    Create(CreateUser),
    /// List every account.
    List,
    /// Show one account.
    Show {
        #[arg(allow_hyphen_values = true)]
        email: String,
    },
    /// Give an account another role (the role must exist).
    SetRole {
        #[arg(allow_hyphen_values = true)]
        email: String,
        role: String,
    },
    /// Deactivate an account: every token of it stops working at once.
    Deactivate {
        #[arg(allow_hyphen_values = true)]
        email: String,
    },
    /// Activate an account again.
    Activate {
        #[arg(allow_hyphen_values = true)]
        email: String,
    },
    /// Delete an account: every token of it stops working at once.
    Delete {
        #[arg(allow_hyphen_values = true)]
        email: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateUser {
    /// The address (may start with `-`).
    #[arg(long, allow_hyphen_values = true)]
    email: String,
    #[arg(long)]
    first_name: String,
    #[arg(long)]
    last_name: String,
    /// Role (defaults to accounts.default_role).
    #[arg(long)]
    role: Option<String>,
    /// H or F.
    #[arg(long)]
    gender: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Create a role.
    Create { name: String },
    /// List the roles.
    List,
}

/// Runs the command line; the returned value is the process exit code.
pub fn run(cli: Cli) -> i32 {
    let path = cli.config.clone().unwrap_or_else(default_config_path);
    if let Command::Reload = cli.command {
        // An invalid file is still shown to the gateway: it refuses it too.
        return crate::reload::reload_command(&path);
    }
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vigile: invalid configuration {}: {e}", path.display());
            return 2;
        }
    };
    match cli.command {
        Command::Reload => crate::reload::reload_command(&path),
        Command::CheckConfig => {
            println!(
                "{}: OK ({} routes, {} upstreams)",
                path.display(),
                config.routes.len(),
                config.upstreams.len()
            );
            0
        }
        Command::Serve { log_format } => {
            crate::logging::init(
                log_format,
                config.server.log_format,
                &config.server.log_level,
            );
            match crate::server::serve(path) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("vigile: {e}");
                    1
                }
            }
        }
        Command::User(cmd) => match user_command(cmd) {
            Ok(command) => operate(&config, command),
            Err(e) => {
                eprintln!("vigile: {e}");
                2
            }
        },
        Command::Role(RoleCommand::Create { name }) => {
            operate(&config, OperatorCommand::CreateRole { name })
        }
        Command::Role(RoleCommand::List) => operate(&config, OperatorCommand::ListRoles),
        Command::Keys(KeysCommand::List) => operate(&config, OperatorCommand::ListKeys),
        Command::Keys(KeysCommand::Rotate) => operate(&config, OperatorCommand::RotateKey),
        Command::Keys(KeysCommand::Retire { kid }) => {
            operate(&config, OperatorCommand::RetireKey { kid })
        }
        Command::Store(StoreCommand::Copy { from }) => store_copy(&config, &path, &from),
        Command::Import(ImportCommand::Django(args)) => crate::import::run(&config, &args),
    }
}

/// `vigile store copy --from PATH`: the exit code (2: nothing could start).
fn store_copy(config: &Config, config_path: &Path, from: &Path) -> i32 {
    if config.store.kind != StoreKind::Postgres {
        eprintln!(
            "vigile: store copy writes into a PostgreSQL store, and {} configures store.kind: \
             redb; set store.kind: postgres (and its URL) there first",
            config_path.display()
        );
        return 2;
    }
    if !from.is_file() {
        eprintln!("vigile: store copy: no redb store at {}", from.display());
        return 2;
    }
    let window = config.tokens.access_ttl.as_secs() + config.tokens.leeway.as_secs();
    let source = match RedbStore::open(from, window) {
        Ok(store) => store,
        Err(StoreError::Locked) => {
            eprintln!(
                "vigile: store copy: {} is open in another process (a gateway?): stop it first",
                from.display()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("vigile: store copy: {}: {e}", from.display());
            return 1;
        }
    };
    let target = match crate::store::open(&config.store, window) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("vigile: store copy: {}: {e}", config.store.describe());
            return 1;
        }
    };
    let outcome = crate::store::copy(&source, target.as_ref());
    source.close();
    target.close();
    match outcome {
        Ok(report) => {
            println!(
                "copied {} into {}:",
                from.display(),
                config.store.describe()
            );
            print!("{report}");
            0
        }
        Err(e) => {
            eprintln!("vigile: store copy: nothing was copied: {e}");
            1
        }
    }
}

/// Why an operator command did not reach the account layer.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot read the password from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("no terminal to ask the password on: pass --password-stdin")]
    NoTerminal,
    #[error(transparent)]
    Prompt(std::io::Error),
    #[error("les mots de passe ne correspondent pas")]
    PasswordMismatch,
    #[error("{source} ({store})")]
    Store { store: String, source: StoreError },
    /// The signing keys (whatever error `TokenKeys::from_config` gives).
    #[error("{0}")]
    Keys(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Metrics(prometheus::Error),
    #[error("{0}")]
    Audit(String),
    #[error("a gateway holds the store; its operator token {} cannot be read: {source}", path.display())]
    AdminToken {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a gateway holds the store but its admin listener {addr} did not answer: {source}")]
    AdminUnreachable {
        addr: std::net::SocketAddr,
        source: ureq::Error,
    },
    #[error("unreadable answer from the gateway: {0}")]
    AnswerBody(ureq::Error),
    #[error("unreadable answer from the gateway: {0}")]
    AnswerShape(serde_json::Error),
}

fn read_password(from_stdin: bool) -> Result<String, CliError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(CliError::Stdin)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::NoTerminal);
    }
    let first = rpassword::prompt_password("Mot de passe : ").map_err(CliError::Prompt)?;
    let again =
        rpassword::prompt_password("Mot de passe (confirmation) : ").map_err(CliError::Prompt)?;
    if first != again {
        return Err(CliError::PasswordMismatch);
    }
    Ok(first)
}

fn user_command(cmd: UserCommand) -> Result<OperatorCommand, CliError> {
    Ok(match cmd {
        UserCommand::Create(c) => OperatorCommand::CreateUser {
            password: read_password(c.password_stdin)?,
            email: c.email,
            first_name: c.first_name,
            last_name: c.last_name,
            role: c.role,
            gender: c.gender,
            phone: c.phone,
        },
        UserCommand::List => OperatorCommand::ListUsers,
        UserCommand::Show { email } => OperatorCommand::ShowUser { email },
        UserCommand::SetRole { email, role } => OperatorCommand::SetRole { email, role },
        UserCommand::Deactivate { email } => OperatorCommand::Deactivate { email },
        UserCommand::Activate { email } => OperatorCommand::Activate { email },
        UserCommand::Delete { email } => OperatorCommand::Delete { email },
    })
}

/// Runs an operator command locally or through the running gateway, prints
/// the outcome, and returns the exit code.
fn operate(config: &Config, command: OperatorCommand) -> i32 {
    match execute(config, command) {
        Ok(reply) => {
            print_reply(&reply);
            0
        }
        Err(Failure::Api(body)) => {
            let message = body["error"].as_str().unwrap_or("erreur");
            eprintln!(
                "vigile: {message} ({})",
                body["code"].as_str().unwrap_or("error")
            );
            if let Some(fields) = body["fields"].as_object() {
                for (field, messages) in fields {
                    for m in messages.as_array().into_iter().flatten() {
                        eprintln!("  {field}: {}", m.as_str().unwrap_or(""));
                    }
                }
            }
            1
        }
        Err(Failure::Other(e)) => {
            eprintln!("vigile: {e}");
            1
        }
    }
}

enum Failure {
    /// An error body from the account layer.
    Api(serde_json::Value),
    Other(CliError),
}

impl From<CliError> for Failure {
    fn from(e: CliError) -> Failure {
        Failure::Other(e)
    }
}

fn execute(config: &Config, command: OperatorCommand) -> Result<OperatorReply, Failure> {
    if config.store.kind == StoreKind::Postgres {
        // A gateway running here with this config carries the command out
        // itself, so that its very next request already sees it (other
        // replicas hear of it through the database). Without one (no token
        // file, or nothing listening), the command goes to the database.
        match remote(config, &command) {
            Err(Failure::Other(CliError::AdminToken { .. })) => {}
            Err(Failure::Other(CliError::AdminUnreachable { source, .. }))
                if nothing_listens(&source) => {}
            other => return other,
        }
    }
    match crate::state::try_open_store(config) {
        Ok(store) => {
            let tokens = TokenKeys::from_config(&config.tokens, &config.store.data_dir())
                .map_err(|e| CliError::Keys(e.into()))?;
            // The rotated keys, so that new tokens (none here today) and the
            // `keys` commands see the set in force; a failure is the `keys`
            // commands' to report.
            if let Err(e) = crate::accounts::keys::sync(&tokens, store.as_ref()) {
                tracing::debug!(error = %e, "the stored signing keys cannot be loaded");
            }
            let metrics = crate::metrics::Metrics::new().map_err(CliError::Metrics)?;
            // No gateway, no log: the audit line goes to stderr (and to
            // `audit.file` when configured).
            let audit_file = crate::state::open_audit_file(config)
                .map_err(|e| CliError::Audit(e.to_string()))?;
            let audit = Auditor::new(metrics.audit_events.clone(), audit_file, true);
            let service = AccountService::new(
                config,
                store,
                Arc::new(tokens),
                Arc::new(RevocationList::default()),
                metrics.passwords(),
                None,
                Arc::new(audit),
            );
            operator::execute_from(&service, command, &Origin::CLI)
                .map_err(|e| Failure::Api(serde_json::from_slice(&e.body()).unwrap_or_default()))
        }
        Err(StoreError::Locked) => remote(config, &command),
        Err(source) => Err(CliError::Store {
            store: config.store.describe(),
            source,
        }
        .into()),
    }
}

/// Whether the admin listener refused the connection (the command was not
/// sent, so it may go another way).
fn nothing_listens(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// Sends the command to the gateway that holds the store.
fn remote(config: &Config, command: &OperatorCommand) -> Result<OperatorReply, Failure> {
    let token_path = config.store.data_dir().join(crate::state::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path).map_err(|source| CliError::AdminToken {
        path: token_path.clone(),
        source,
    })?;
    let mut addr = config.admin.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .post(format!("http://{addr}{}", crate::admin::COMMAND_PATH))
        .header("Authorization", format!("Bearer {}", token.trim()))
        .send_json(command)
        .map_err(|source| CliError::AdminUnreachable { addr, source })?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response
        .body_mut()
        .read_json()
        .map_err(CliError::AnswerBody)?;
    if status == 200 {
        Ok(serde_json::from_value(body).map_err(CliError::AnswerShape)?)
    } else {
        Err(Failure::Api(body))
    }
}

/// The line under `user list`'s table (a `#` comment): how many accounts
/// still hold a Django hash (rehashed at their next login), and how many an
/// unusable password (only a reset gives them one).
fn print_legacy_count(accounts: &[serde_json::Value]) {
    let mut legacy = std::collections::BTreeMap::<&str, usize>::new();
    let mut unusable = 0;
    for format in accounts
        .iter()
        .filter_map(|a| a["password_format"].as_str())
    {
        if let Some(name) = format.strip_prefix(crate::passwords::DJANGO_FORMAT_PREFIX) {
            *legacy.entry(name).or_default() += 1;
        } else if format == "unusable" {
            unusable += 1;
        }
    }
    let detail: Vec<String> = legacy.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    println!(
        "# {} of {} accounts hold a Django password hash{}; {unusable} an unusable password",
        legacy.values().sum::<usize>(),
        accounts.len(),
        if detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", detail.join(", "))
        },
    );
}

fn print_reply(reply: &OperatorReply) {
    match reply {
        OperatorReply::Account(account) => {
            println!(
                "{}",
                serde_json::to_string_pretty(account).unwrap_or_default()
            );
        }
        OperatorReply::Accounts(accounts) => {
            println!(
                "{:<6} {:<32} {:<28} {:<12} active",
                "id", "email", "name", "role"
            );
            for a in accounts {
                let name = format!(
                    "{} {}",
                    a["first_name"].as_str().unwrap_or(""),
                    a["last_name"].as_str().unwrap_or("")
                );
                println!(
                    "{:<6} {:<32} {:<28} {:<12} {}",
                    a["id"].as_u64().unwrap_or(0),
                    a["email"].as_str().unwrap_or(""),
                    name,
                    a["role"].as_str().unwrap_or(""),
                    if a["is_active"].as_bool().unwrap_or(false) {
                        "yes"
                    } else {
                        "no"
                    }
                );
            }
            print_legacy_count(accounts);
        }
        OperatorReply::Roles(roles) => {
            for r in roles {
                println!("{r}");
            }
        }
        OperatorReply::Keys(keys) => {
            println!(
                "{:<44} {:<6} {:<12} {:<7} created",
                "kid", "alg", "state", "source"
            );
            for k in keys {
                println!(
                    "{:<44} {:<6} {:<12} {:<7} {}",
                    k["kid"].as_str().unwrap_or(""),
                    k["algorithm"].as_str().unwrap_or(""),
                    k["state"].as_str().unwrap_or(""),
                    k["source"].as_str().unwrap_or(""),
                    k["created_at"]
                        .as_u64()
                        .map_or_else(|| "-".to_string(), crate::rfc3339)
                );
            }
        }
        OperatorReply::Done(message) => println!("{message}"),
    }
}

#[cfg(test)]
mod tests;

//! Prepares a benchmark run of vigile (benches/load.sh): fills the store named
//! by the config with revoked sessions (and accounts, for the scale run; and
//! accounts imported from Django, not logged in since, for the storm of their
//! first logins), and mints access tokens signed with the config's HS256
//! secret.
//!
//! Writes to `--out`: `tokens.txt` (valid tokens, one per line),
//! `revoked.txt` (tokens of revoked sessions), `revoked.map` (their session
//! ids plus the other revoked ones, HAProxy map format).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use vigile::config::Config;
use vigile::store::AccountRecord;
use vigile::tokens::{SessionId, Subject, TokenKeys};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Valid tokens to mint (each of its own session).
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// Tokens of revoked sessions to mint.
    #[arg(long, default_value_t = 100)]
    revoked_tokens: usize,
    /// Further revoked sessions to put in the store.
    #[arg(long, default_value_t = 100_000)]
    revoked_sessions: usize,
    /// Accounts to put in the store.
    #[arg(long, default_value_t = 0)]
    accounts: usize,
    /// Accounts `migrated{i}@bench.example.com` holding a Django
    /// `pbkdf2_sha256` hash of `--django-password` (one hash for all: each
    /// first login still verifies it, then rehashes).
    #[arg(long, default_value_t = 0)]
    django_accounts: usize,
    #[arg(long, default_value_t = 1_000_000)]
    django_iterations: u32,
    #[arg(long, default_value = "Bench-storm-2026")]
    django_password: String,
}

fn account(email: String, password_hash: String, now: u64) -> AccountRecord {
    AccountRecord {
        id: 0,
        email,
        password_hash,
        first_name: "Jean".into(),
        last_name: "Dupont".into(),
        gender: None,
        phone: None,
        role: "Visiteur".into(),
        is_active: true,
        date_joined: now,
        last_login: None,
    }
}

fn write_lines(path: PathBuf, lines: impl Iterator<Item = String>) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for line in lines {
        writeln!(f, "{line}")?;
    }
    f.flush()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut config = Config::load(&args.config)?;
    // Tokens that outlive the whole run (the gateway's config says 6h too:
    // it refuses tokens that live longer than its access_ttl).
    config.tokens.access_ttl = Duration::from_secs(6 * 3600);
    let keys = TokenKeys::from_config(&config.tokens, &config.store.data_dir())?;
    let store = vigile::store::open(&config.store, 6 * 3600)?;
    let now = vigile::unix_now();
    let until = now + 6 * 3600;

    if args.accounts > 0 {
        let hash = vigile::passwords::hash_password("motdepasse123")?;
        let mut batch = Vec::with_capacity(100_000);
        for i in 0..args.accounts {
            batch.push(account(
                format!("user{i}@bench.example.com"),
                hash.clone(),
                now,
            ));
            if batch.len() == 100_000 || i + 1 == args.accounts {
                store.insert_accounts(std::mem::take(&mut batch))?;
            }
        }
    }
    if args.django_accounts > 0 {
        let hash = vigile::passwords::django::pbkdf2_sha256(
            &args.django_password,
            "benchsaltbenchsalt1234",
            args.django_iterations,
        );
        let batch = (0..args.django_accounts)
            .map(|i| account(format!("migrated{i}@bench.example.com"), hash.clone(), now))
            .collect();
        store.insert_accounts(batch)?;
    }

    let subject = Subject {
        account_id: 1,
        email: "user0@bench.example.com",
        role: "Visiteur",
    };
    let mint = |session: SessionId| keys.issue_access(&subject, session, now);
    let valid: Vec<String> = (0..args.tokens)
        .map(|_| mint(SessionId::random()))
        .collect::<Result<_, _>>()?;
    let revoked_sessions: Vec<SessionId> = (0..args.revoked_tokens)
        .map(|_| SessionId::random())
        .collect();
    let revoked: Vec<String> = revoked_sessions
        .iter()
        .map(|s| mint(*s))
        .collect::<Result<_, _>>()?;
    let mut all_revoked: Vec<(SessionId, u64)> =
        revoked_sessions.iter().map(|s| (*s, until)).collect();
    all_revoked.extend((0..args.revoked_sessions).map(|_| (SessionId::random(), until)));
    for chunk in all_revoked.chunks(100_000) {
        store.insert_revocations(chunk)?;
    }

    std::fs::create_dir_all(&args.out)?;
    write_lines(args.out.join("tokens.txt"), valid.into_iter())?;
    write_lines(args.out.join("revoked.txt"), revoked.into_iter())?;
    write_lines(
        args.out.join("revoked.map"),
        all_revoked.iter().map(|(s, _)| format!("{s} 1")),
    )?;
    eprintln!(
        "bench_setup: {} tokens, {} revoked tokens, {} revoked sessions, {} accounts, \
         {} Django accounts",
        args.tokens,
        args.revoked_tokens,
        all_revoked.len(),
        args.accounts,
        args.django_accounts
    );
    Ok(())
}

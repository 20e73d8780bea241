//! Micro benchmark of the proxy's access-token check (decode, HS256 verify,
//! claims, revocation lookup) with 0, 100k and 1M revoked sessions in memory.
//! `cargo bench --bench token_check`. Prints nanoseconds per check.

use std::hint::black_box;
use std::time::{Duration, Instant};

use vigile::config::{Algorithm, KeySource, TokenConfig};
use vigile::revocation::RevocationList;
use vigile::tokens::{SessionId, Subject, TokenKeys};

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: a quick smoke run then.
    let full = std::env::args().any(|a| a == "--bench");
    let (sizes, rounds): (&[usize], usize) = if full {
        (&[0, 100_000, 1_000_000], 200_000)
    } else {
        (&[0, 1_000], 200)
    };
    let dir = std::env::temp_dir().join(format!("vigile-bench-{}", std::process::id()));
    let cfg = TokenConfig {
        algorithm: Algorithm::HS256,
        key: KeySource::Secret(b"bench-secret-bench-secret-bench-secret".to_vec()),
        issuer: "vigile".into(),
        audience: "api".into(),
        access_ttl: Duration::from_secs(300),
        refresh_ttl: Duration::from_secs(86_400),
        reuse_grace: Duration::from_secs(10),
        leeway: Duration::ZERO,
    };
    let keys = TokenKeys::from_config(&cfg, &dir).expect("keys");
    let subject = Subject {
        account_id: 42,
        email: "dev@example.com",
        role: "Visiteur",
    };
    let headers: Vec<String> = (0..rounds.min(10_000))
        .map(|_| {
            keys.issue_access(&subject, SessionId::random(), vigile::unix_now())
                .expect("token")
        })
        .map(|token| format!("Bearer {token}"))
        .collect();
    for &revoked in sizes {
        let list = RevocationList::new(
            (0..revoked)
                .map(|_| (SessionId::random(), u64::MAX))
                .collect(),
        );
        let start = Instant::now();
        for i in 0..rounds {
            let header = &headers[i % headers.len()];
            let result = vigile::auth::authenticate(Some(header.as_bytes()), &keys, &list);
            black_box(result.ok());
        }
        let per = start.elapsed().as_nanos() / rounds as u128;
        println!("token check, {revoked:>9} revoked sessions: {per} ns");
    }
}

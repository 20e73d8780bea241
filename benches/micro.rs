//! Micro benchmarks (criterion): the access-token check exactly as the proxy
//! runs it (Bearer parsing, HS256 verification, claims, revocation lookup)
//! with 0, 100k and 1M revoked sessions in memory, for a token never seen
//! (the full check) and for one seen before (through the proxy path's cache
//! of verified tokens, 10,000 distinct tokens); issuing a token; one
//! argon2id hash with the gateway's parameters; one redb point read; and the
//! full check after a key rotation (two keys in the set), for tokens of the
//! active key and of the verify-only one.
//!
//! `cargo bench --bench micro` (figures in benches/README.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vigile::config::{Algorithm, KeySource, TokenConfig};
use vigile::revocation::RevocationList;
use vigile::store::redb::RedbStore;
use vigile::store::{AccountRecord, StoreBackend};
use vigile::tokens::{SessionId, Subject, TokenKeys};

fn keys(dir: &std::path::Path) -> TokenKeys {
    let cfg = TokenConfig {
        algorithm: Algorithm::HS256,
        key: KeySource::Secret(b"bench-secret-bench-secret-bench-secret".to_vec()),
        verified_cache: 0,
        ..TokenConfig::default()
    };
    TokenKeys::from_config(&cfg, dir).expect("keys")
}

const SUBJECT: Subject<'static> = Subject {
    account_id: 42,
    email: "jean.dupont@example.com",
    role: "Visiteur",
};

fn token_check(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(dir.path());
    let headers: Vec<String> = (0..10_000)
        .map(|_| {
            keys.issue_access(&SUBJECT, SessionId::random(), vigile::unix_now())
                .expect("token")
        })
        .map(|t| format!("Bearer {t}"))
        .collect();
    // The check as the proxy runs it, cycling over the 10,000 tokens.
    let mut run =
        |group: &str, revocations: &[usize], check: &dyn Fn(&[u8], &RevocationList) -> bool| {
            let mut group = c.benchmark_group(group);
            for &revoked in revocations {
                let list = RevocationList::new(
                    (0..revoked)
                        .map(|_| (SessionId::random(), u64::MAX))
                        .collect(),
                );
                let mut i = 0usize;
                group.bench_function(BenchmarkId::from_parameter(revoked), |b| {
                    b.iter(|| {
                        i = (i + 1) % headers.len();
                        black_box(check(headers[i].as_bytes(), &list))
                    })
                });
            }
            group.finish();
        };
    run("token_check", &[0, 100_000, 1_000_000], &|header, list| {
        vigile::auth::authenticate(Some(header), &keys, list).is_ok()
    });
    let cache = vigile::tokens::TokenCache::new(16_384);
    run(
        "token_check_seen_before",
        &[0, 1_000_000],
        &|header, list| {
            vigile::auth::authenticate_cached(Some(header), &keys, &cache, list).is_ok()
        },
    );
}

/// The full check (0 revoked sessions) with one key, and with two after a
/// rotation: tokens of the new active key, and of the verify-only one.
fn token_check_rotated(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(dir.path());
    let tokens = |keys: &TokenKeys| -> Vec<String> {
        (0..10_000)
            .map(|_| {
                let t = keys
                    .issue_access(&SUBJECT, SessionId::random(), vigile::unix_now())
                    .expect("token");
                format!("Bearer {t}")
            })
            .collect()
    };
    let old = tokens(&keys);
    let list = RevocationList::new(Vec::new());
    let mut group = c.benchmark_group("token_check_keys");
    let mut bench = |name: &str, keys: &TokenKeys, headers: &[String]| {
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % headers.len();
                black_box(
                    vigile::auth::authenticate(Some(headers[i].as_bytes()), keys, &list).is_ok(),
                )
            })
        });
    };
    bench("one_key", &keys, &old);
    let now = vigile::unix_now();
    let new = vigile::tokens::generate_stored_key(Algorithm::HS256, now).expect("key");
    let set_aside = vigile::tokens::StoredKey {
        kid: keys.config_kid(),
        algorithm: "HS256".into(),
        state: vigile::tokens::KeyState::VerifyOnly,
        created_at: None,
        deactivated_at: Some(now),
        retired_at: None,
        material: None,
    };
    keys.set_stored(vec![set_aside, new]).expect("rotate");
    let fresh = tokens(&keys);
    bench("two_keys_active", &keys, &fresh);
    bench("two_keys_verify_only", &keys, &old);
    group.finish();
}

fn token_issue(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(dir.path());
    let session = SessionId::random();
    c.bench_function("token_issue", |b| {
        b.iter(|| black_box(keys.issue_access(&SUBJECT, session, vigile::unix_now())))
    });
}

fn argon2_hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(10);
    group.bench_function("hash_m19456_t2_p1", |b| {
        b.iter(|| black_box(vigile::passwords::hash_password("motdepasse123")))
    });
    group.finish();
}

fn redb_point_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(&dir.path().join("bench.redb"), 300).expect("store");
    for i in 0..10_000u64 {
        store
            .create_account(AccountRecord {
                id: 0,
                email: format!("user{i}@example.com"),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                first_name: "Jean".into(),
                last_name: "Dupont".into(),
                gender: None,
                phone: None,
                role: "Visiteur".into(),
                is_active: true,
                date_joined: 0,
                last_login: None,
            })
            .expect("insert");
    }
    let mut i = 0u64;
    c.bench_function("redb_account_by_email", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            black_box(
                store
                    .account_by_email(&format!("user{i}@example.com"))
                    .expect("read"),
            )
        })
    });
}

criterion_group!(
    benches,
    token_check,
    token_check_rotated,
    token_issue,
    argon2_hash,
    redb_point_read
);
criterion_main!(benches);

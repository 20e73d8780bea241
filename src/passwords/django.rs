//! Password hashes as Django 5.2 stores them. An account imported from the
//! Django original keeps its hash until its first successful login, which
//! rehashes it to argon2id (`accounts/login.rs`); until then each format is
//! checked here exactly as Django's `contrib/auth/hashers.py` checks it:
//!
//! - `pbkdf2_sha256$<iterations>$<salt>$<base64>` and `pbkdf2_sha1$...`:
//!   PBKDF2-HMAC over the UTF-8 password and salt, as long as the digest;
//! - `argon2$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>` (or `argon2i`,
//!   `argon2d`): argon2-cffi's check of the PHC string after `argon2`;
//! - `bcrypt_sha256$$2b$<cost>$<salt><hash>`: bcrypt of the lowercase hex
//!   SHA-256 of the password (`2a` and `2y` too);
//! - `scrypt$<N>$<salt>$<r>$<p>$<base64>`: 64 bytes, refused past the
//!   32 MiB OpenSSL lets Python's `hashlib.scrypt` use (`maxmem=0`).
//!
//! Like Django, the hash is recomputed, re-encoded and compared with the
//! stored string as a whole, in constant time. A stored string is data: a
//! corrupt or hostile one is refused at once, never computed, when its work
//! exceeds about 8 times that of Django 5.2's defaults (the `MAX_*` bounds)
//! or its memory 256 MiB (argon2) or 32 MiB (scrypt).

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// PBKDF2 iterations at most (Django 5.2: 1,000,000; 6.0: 1,200,000).
pub const MAX_PBKDF2_ITERATIONS: u32 = 8_000_000;
/// Argon2 memory at most, in KiB (Django: 102,400 = 100 MiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// Argon2 memory × passes at most (Django: 102,400 × 2).
pub const MAX_ARGON2_WORK: u64 = 8 * 102_400 * 2;
/// Argon2 lanes at most (Django: 8).
pub const MAX_ARGON2_LANES: u32 = 64;
/// Bcrypt cost at most (Django: 12; each step doubles the work).
pub const MAX_BCRYPT_COST: u32 = 15;
/// Scrypt N × r × p at most (Django: 16,384 × 8 × 5).
pub const MAX_SCRYPT_WORK: u64 = 8 * 16_384 * 8 * 5;
/// What OpenSSL lets scrypt allocate when Python passes `maxmem=0`: Django
/// itself fails on more.
const SCRYPT_MAX_MEMORY: u64 = 32 * 1024 * 1024;

/// The Django algorithm names this module checks, as they prefix a hash
/// (and label `vigile_password_rehash_total{from}`).
pub const ALGORITHMS: [&str; 5] = [
    "pbkdf2_sha256",
    "pbkdf2_sha1",
    "argon2",
    "bcrypt_sha256",
    "scrypt",
];

/// The Django algorithm a stored hash names, if it is one checked here.
pub fn algorithm(encoded: &str) -> Option<&'static str> {
    let (name, _) = encoded.split_once('$')?;
    ALGORITHMS.into_iter().find(|a| *a == name)
}

/// Whether `password` matches the Django hash `encoded`; `false` for a
/// malformed string, an unknown algorithm or parameters past the bounds.
pub fn verify(password: &str, encoded: &str) -> bool {
    let Some((name, rest)) = encoded.split_once('$') else {
        return false;
    };
    match name {
        "pbkdf2_sha256" | "pbkdf2_sha1" => verify_pbkdf2(name, password, rest, encoded),
        // The PHC string after the name, as Django hands it to argon2-cffi.
        "argon2" => verify_argon2(password, &encoded[name.len()..], Version::V0x10),
        "bcrypt_sha256" => verify_bcrypt_sha256(password, rest, encoded),
        "scrypt" => verify_scrypt(password, rest, encoded),
        _ => false,
    }
}

/// Constant-time equality of what was computed and what is stored.
fn same(computed: &str, stored: &str) -> bool {
    computed.as_bytes().ct_eq(stored.as_bytes()).into()
}

/// A decimal as Python's `%d` writes it (no sign, no leading zero): any
/// other spelling would fail Django's comparison of the re-encoded string.
fn decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Django's own check of a salt it encodes with: not empty, no `$`.
fn usable_salt(salt: &str) -> bool {
    !salt.is_empty() && !salt.contains('$')
}

fn verify_pbkdf2(name: &str, password: &str, rest: &str, encoded: &str) -> bool {
    let mut parts = rest.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Some(iterations) = decimal(iterations)
        .and_then(|i| u32::try_from(i).ok())
        .filter(|i| (1..=MAX_PBKDF2_ITERATIONS).contains(i))
    else {
        return false;
    };
    usable_salt(salt) && same(&pbkdf2_encoded(name, password, salt, iterations), encoded)
}

/// What Django's `PBKDF2PasswordHasher.encode` makes (`name` is
/// `pbkdf2_sha256` or `pbkdf2_sha1`).
fn pbkdf2_encoded(name: &str, password: &str, salt: &str, iterations: u32) -> String {
    let (password, salt_bytes) = (password.as_bytes(), salt.as_bytes());
    let out = if name == "pbkdf2_sha1" {
        let mut out = vec![0u8; 20];
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt_bytes, iterations, &mut out);
        out
    } else {
        let mut out = vec![0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt_bytes, iterations, &mut out);
        out
    };
    format!("{name}${iterations}${salt}${}", STANDARD.encode(&out))
}

/// A `pbkdf2_sha256` hash as Django makes it (benchmarks of migrated
/// accounts; `salt` must be non-empty, without `$`).
pub fn pbkdf2_sha256(password: &str, salt: &str, iterations: u32) -> String {
    pbkdf2_encoded("pbkdf2_sha256", password, salt, iterations)
}

/// Checks a PHC argon2 string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`)
/// with the variant and parameters it names, within the bounds; `version`
/// is taken when the string names none (the reference implementation's
/// 0x10 for Django's strings).
pub fn verify_argon2(password: &str, phc: &str, version: Version) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => version,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB
        || u64::from(params.m_cost()) * u64::from(params.t_cost()) > MAX_ARGON2_WORK
        || params.p_cost() > MAX_ARGON2_LANES
    {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// The bcrypt versions Python's `bcrypt` reads, as they start a hash.
fn bcrypt_version(prefix: &str) -> Option<bcrypt::Version> {
    match prefix {
        "2a" => Some(bcrypt::Version::TwoA),
        "2b" => Some(bcrypt::Version::TwoB),
        "2y" => Some(bcrypt::Version::TwoY),
        _ => None,
    }
}

fn verify_bcrypt_sha256(password: &str, rest: &str, encoded: &str) -> bool {
    // rest: "$2b$12$" + 22 characters of salt + 31 of hash.
    let mut parts = rest.splitn(4, '$');
    let (Some(""), Some(version), Some(cost), Some(data)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(version) = bcrypt_version(version) else {
        return false;
    };
    // Two digits, as bcrypt writes them.
    let Some(cost) = (cost.len() == 2 && cost.bytes().all(|b| b.is_ascii_digit()))
        .then(|| cost.parse::<u32>().ok())
        .flatten()
        .filter(|c| (4..=MAX_BCRYPT_COST).contains(c))
    else {
        return false;
    };
    let Some(salt) = data.get(..22).and_then(decode_bcrypt_salt) else {
        return false;
    };
    let prehash = hex(&Sha256::digest(password.as_bytes()));
    match bcrypt::hash_with_salt(prehash, cost, salt) {
        Ok(parts) => same(
            &format!("bcrypt_sha256${}", parts.format_for_version(version)),
            encoded,
        ),
        Err(_) => false,
    }
}

/// The 16 bytes a bcrypt salt of 22 characters encodes; `None` for any
/// other spelling (Django's re-encoded string would differ).
fn decode_bcrypt_salt(salt: &str) -> Option<[u8; 16]> {
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const BCRYPT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::BCRYPT,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    );
    BCRYPT.decode(salt).ok()?.try_into().ok()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn verify_scrypt(password: &str, rest: &str, encoded: &str) -> bool {
    let parts: Vec<&str> = rest.split('$').collect();
    let [n, salt, r, p, _] = parts.as_slice() else {
        return false;
    };
    let (Some(n), Some(r), Some(p)) = (decimal(n), decimal(r), decimal(p)) else {
        return false;
    };
    if !usable_salt(salt) || !n.is_power_of_two() || n < 2 || r == 0 || p == 0 {
        return false;
    }
    let memory = 128u128 * u128::from(r) * (u128::from(n) + 2 + u128::from(p));
    let work = u128::from(n) * u128::from(r) * u128::from(p);
    if memory > u128::from(SCRYPT_MAX_MEMORY) || work > u128::from(MAX_SCRYPT_WORK) {
        return false;
    }
    let (Ok(log_n), Ok(r32), Ok(p32)) = (
        u8::try_from(n.trailing_zeros()),
        u32::try_from(r),
        u32::try_from(p),
    ) else {
        return false;
    };
    let Ok(params) = scrypt::Params::new(log_n, r32, p32, 64) else {
        return false;
    };
    let mut out = [0u8; 64];
    if scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut out).is_err() {
        return false;
    }
    let computed = format!("scrypt${n}${salt}${r}${p}${}", STANDARD.encode(out));
    same(&computed, encoded)
}

#[cfg(test)]
pub(crate) mod tests;

//! Password hashing (argon2id, OWASP parameters: 19 MiB, 2 passes, 1 lane),
//! the check of stored hashes (vigile's own, and Django's until an imported
//! account's first login: `django.rs`) and the password policy. Hashing is
//! CPU-heavy: callers run it on the bounded hashing pool, never on the
//! proxy's event loop.

pub mod django;
pub mod pool;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Longest password accepted, in bytes: nobody makes the gateway hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn hasher() -> Argon2<'static> {
    // 19 MiB, t=2, p=1: OWASP's recommended minimum for argon2id.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashing failed (argon2 refused its input or parameters).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HashError(#[from] argon2::password_hash::Error);

/// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of the password.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// What a stored password hash is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredHash {
    /// vigile's own PHC argon2 string (`$argon2id$...`).
    Current,
    /// A hash as Django stores it (an imported account not logged in
    /// since), by Django's algorithm name (`django::ALGORITHMS`).
    Legacy(&'static str),
    /// Django's unusable password (`!` and random characters): no password
    /// matches it; the account can still reset its password.
    Unusable,
    /// Anything else: no password matches it.
    Unknown,
}

/// `StoredHash::format`'s prefix for a Django hash.
pub const DJANGO_FORMAT_PREFIX: &str = "django_";

impl StoredHash {
    /// What `vigile user list` and `show` say of it: `argon2id`,
    /// `django_<algorithm>`, `unusable` or `unknown`.
    pub fn format(&self) -> String {
        match self {
            StoredHash::Current => "argon2id".into(),
            StoredHash::Legacy(name) => format!("{DJANGO_FORMAT_PREFIX}{name}"),
            StoredHash::Unusable => "unusable".into(),
            StoredHash::Unknown => "unknown".into(),
        }
    }

    pub fn of(stored: &str) -> StoredHash {
        if stored.starts_with("$argon2") {
            StoredHash::Current
        } else if stored.starts_with('!') {
            StoredHash::Unusable
        } else {
            django::algorithm(stored).map_or(StoredHash::Unknown, StoredHash::Legacy)
        }
    }
}

/// Checks a password against a stored hash, with the algorithm and the
/// parameters the hash names (within `django.rs`'s bounds).
pub fn verify_password(password: &str, stored: &str) -> bool {
    match StoredHash::of(stored) {
        StoredHash::Current => django::verify_argon2(password, stored, Version::V0x13),
        StoredHash::Legacy(_) => django::verify(password, stored),
        StoredHash::Unusable | StoredHash::Unknown => false,
    }
}

/// `verify_password` for a login: a hash no password matches (unusable,
/// unknown) is checked against `dummy` instead, so that it costs the time
/// of a real check (as Django does), and the answer is `false`.
pub fn verify_login(password: &str, stored: &str, dummy: &str) -> bool {
    match StoredHash::of(stored) {
        StoredHash::Current | StoredHash::Legacy(_) => verify_password(password, stored),
        StoredHash::Unusable | StoredHash::Unknown => {
            verify_password(password, dummy);
            false
        }
    }
}

/// A hash of a random password, verified against when the email is unknown,
/// so that a wrong email costs the same time as a wrong password.
pub fn dummy_hash() -> String {
    let random: [u8; 16] = rand::random();
    hash_password(&format!("{random:?}")).unwrap_or_default()
}

/// The account fields a password must not resemble, with their French
/// names for the messages.
pub struct PersonalData<'a> {
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
}

fn common_passwords() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("common-passwords.txt")
            .split_whitespace()
            .collect()
    })
}

/// Django's `SequenceMatcher.quick_ratio`: 2 × (characters in common, as
/// multisets) / (total length). An upper bound of the similarity, cheap.
fn quick_ratio(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in &b {
        *counts.entry(*c).or_default() += 1;
    }
    let mut matches = 0usize;
    for c in &a {
        if let Some(n) = counts.get_mut(c) {
            if *n > 0 {
                *n -= 1;
                matches += 1;
            }
        }
    }
    2.0 * matches as f64 / (a.len() + b.len()) as f64
}

/// Django's `UserAttributeSimilarityValidator` (max similarity 0.7): the
/// password against each field and each of its word-separated parts.
fn too_similar(password: &str, value: &str) -> bool {
    const MAX_SIMILARITY: f64 = 0.7;
    let password = password.to_lowercase();
    let value = value.to_lowercase();
    let pwd_len = password.chars().count();
    let mut parts: Vec<&str> = value
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .collect();
    parts.push(&value);
    parts.into_iter().filter(|p| !p.is_empty()).any(|part| {
        let part_len = part.chars().count();
        let far_longer =
            pwd_len >= 10 * part_len && (part_len as f64) < MAX_SIMILARITY / 2.0 * pwd_len as f64;
        !far_longer && quick_ratio(&password, part) >= MAX_SIMILARITY
    })
}

/// The policy's verdicts, one French message per broken rule (Django's wording).
pub fn policy_violations(
    password: &str,
    min_length: usize,
    personal: &PersonalData,
) -> Vec<String> {
    let mut out = Vec::new();
    if password.chars().count() < min_length {
        out.push(format!(
            "Ce mot de passe est trop court. Il doit contenir au minimum {min_length} caractères."
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        out.push(format!(
            "Ce mot de passe est trop long. Il doit contenir au maximum {MAX_PASSWORD_BYTES} octets."
        ));
        return out;
    }
    for (value, name) in [
        (personal.email, "adresse e-mail"),
        (personal.first_name, "prénom"),
        (personal.last_name, "nom"),
    ] {
        if !value.is_empty() && too_similar(password, value) {
            out.push(format!(
                "Le mot de passe est trop semblable au champ « {name} »."
            ));
            break;
        }
    }
    if common_passwords().contains(password.to_lowercase().trim()) {
        out.push("Ce mot de passe est trop courant.".to_string());
    }
    if !password.is_empty() && password.chars().all(|c| c.is_ascii_digit()) {
        out.push("Ce mot de passe est entièrement numérique.".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let phc = hash_password("motdepasse123").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("motdepasse123", &phc));
        assert!(!verify_password("motdepasse124", &phc));
        assert!(!verify_password("motdepasse123", "not a hash"));
        assert_ne!(phc, hash_password("motdepasse123").expect("hash"), "salted");
    }

    const JEAN: PersonalData = PersonalData {
        email: "jean.dupont@example.com",
        first_name: "Jean",
        last_name: "Dupont",
    };

    #[test]
    fn the_policy_names_each_broken_rule() {
        // The seeds' own passwords pass.
        assert!(policy_violations("motdepasse123", 8, &JEAN).is_empty());
        assert!(policy_violations("SecurePass123!", 8, &JEAN).is_empty());
        assert_eq!(policy_violations("court", 8, &JEAN).len(), 1);
        assert_eq!(policy_violations(&"a".repeat(2000), 8, &JEAN).len(), 1);
        let numeric = policy_violations("1234987650", 8, &JEAN);
        assert!(
            numeric.iter().any(|m| m.contains("numérique")),
            "{numeric:?}"
        );
        let common = policy_violations("password123", 8, &JEAN);
        assert_eq!(
            common,
            vec!["Ce mot de passe est trop courant.".to_string()]
        );
        assert!(
            !policy_violations("Qwerty123", 8, &JEAN).is_empty(),
            "case does not hide a common one"
        );
        let similar = policy_violations("jeandupont", 8, &JEAN);
        assert!(
            similar.iter().any(|m| m.contains("semblable")),
            "{similar:?}"
        );
        let similar = policy_violations("Dupont2024", 8, &JEAN);
        assert!(
            similar.iter().any(|m| m.contains("semblable")),
            "{similar:?}"
        );
    }

    #[test]
    fn quick_ratio_is_djangos() {
        assert_eq!(quick_ratio("abcd", "abcd"), 1.0);
        assert_eq!(quick_ratio("abcd", "efgh"), 0.0);
        assert!((quick_ratio("abcd", "bcde") - 0.75).abs() < 1e-9);
    }
}

//! Password hashing (argon2id, OWASP parameters: 19 MiB, 2 passes, 1 lane)
//! and the password policy. Hashing is CPU-heavy: callers run it on the
//! bounded blocking pool, never on the proxy's event loop.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Longest password accepted, in bytes: nobody makes the gateway hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn hasher() -> Argon2<'static> {
    // 19 MiB, t=2, p=1: OWASP's recommended minimum for argon2id.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of the password.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored PHC string, with the parameters the
/// string names.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when the email is unknown,
/// so that a wrong email costs the same time as a wrong password.
pub fn dummy_hash() -> String {
    let random: [u8; 16] = rand::random();
    hash_password(&format!("{random:?}")).unwrap_or_default()
}

/// The policy's verdicts, one French message per broken rule.
pub fn policy_violations(password: &str, min_length: usize) -> Vec<String> {
    let mut out = Vec::new();
    let chars = password.chars().count();
    if chars < min_length {
        out.push(format!(
            "Ce mot de passe est trop court. Il doit contenir au minimum {min_length} caractères."
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        out.push(format!(
            "Ce mot de passe est trop long. Il doit contenir au maximum {MAX_PASSWORD_BYTES} octets."
        ));
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

    #[test]
    fn the_policy_names_each_broken_rule() {
        assert!(policy_violations("motdepasse123", 8).is_empty());
        assert_eq!(policy_violations("court", 8).len(), 1);
        assert_eq!(policy_violations("1234", 8).len(), 2);
        assert_eq!(policy_violations(&"a".repeat(2000), 8).len(), 1);
    }
}

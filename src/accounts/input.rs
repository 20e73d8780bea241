//! Reading typed fields out of a JSON body, with the French messages of the
//! original API for each way a field can be wrong.

use serde_json::{Map, Value};

use crate::error::{ApiError, Validator};

pub type Object = Map<String, Value>;

pub const REQUIRED: &str = "Ce champ est obligatoire.";
pub const BLANK: &str = "Ce champ ne peut être vide.";
pub const NOT_A_STRING: &str = "Chaîne de caractères attendue.";

/// A password or a token read from a request: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The body as a JSON object. An empty body counts as `{}`.
pub fn parse_object(body: &[u8]) -> Result<Object, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => {
            let mut e = ApiError::invalid_json();
            e.message = "Le corps de la requête doit être un objet JSON".into();
            Err(e)
        }
        Err(_) => Err(ApiError::invalid_json()),
    }
}

/// A string field: `Ok(None)` if absent or null, `Err` (recorded in `v`) if
/// of another type.
pub fn optional_string(obj: &Object, field: &str, v: &mut Validator) -> Option<String> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            v.add(field, NOT_A_STRING);
            None
        }
    }
}

/// A required, non-blank string field (trimmed unless `keep_spaces`).
pub fn required_string(
    obj: &Object,
    field: &str,
    v: &mut Validator,
    keep_spaces: bool,
) -> Option<String> {
    if v.has(field) {
        return None;
    }
    match optional_string(obj, field, v) {
        None if !v.has(field) => {
            v.add(field, REQUIRED);
            None
        }
        None => None,
        Some(s) if s.trim().is_empty() => {
            v.add(field, BLANK);
            None
        }
        Some(s) if keep_spaces => Some(s),
        Some(s) => Some(s.trim().to_string()),
    }
}

/// A plain string, without validation messages: for endpoints whose errors
/// are not per field (login, refresh).
pub fn plain_string(obj: &Object, field: &str) -> Option<String> {
    match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A required password: as sent, spaces included.
pub fn required_secret(obj: &Object, field: &str, v: &mut Validator) -> Option<Secret> {
    required_string(obj, field, v, true).map(Secret)
}

/// An optional password (a confirmation).
pub fn optional_secret(obj: &Object, field: &str, v: &mut Validator) -> Option<Secret> {
    optional_string(obj, field, v).map(Secret)
}

/// The refresh token of a body: `refresh`, or `refresh_token` (the name the
/// first seed document uses).
pub fn refresh_token(obj: &Object) -> Option<Secret> {
    plain_string(obj, "refresh")
        .or_else(|| plain_string(obj, "refresh_token"))
        .map(Secret)
}

/// Records a mismatch when a confirmation was sent and differs.
pub fn check_confirmation(
    field: &str,
    password: &Secret,
    confirm: Option<&Secret>,
    v: &mut Validator,
) {
    if confirm.is_some_and(|c| c != password) {
        v.add(field, "Les mots de passe ne correspondent pas.");
    }
}

/// The syntax check Django's EmailValidator makes, in short.
pub fn valid_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// The rule for the address of a new account (register, `vigile user
/// create`): ASCII only, local part and domain. Case folding and NFKC do
/// not make look-alikes safe (the Kelvin sign and fullwidth letters fold into
/// ASCII ones, but zero-width characters and Cyrillic letters such as `е`
/// stay and look the same on screen); refusing every non-ASCII character
/// leaves one spelling per address, and the seeds' clients use ASCII ones. An internationalized domain is written in its ASCII (`xn--`)
/// form. Accounts stored before this rule keep their address and are still
/// found (see `store::email_names`).
pub fn ascii_email(email: &str) -> bool {
    email.is_ascii()
}

/// The message of an address refused as invalid (Django's).
pub const INVALID_EMAIL: &str = "Saisissez une adresse e-mail valide.";

/// The rule for the form of a new account's address: a dot-atom local part
/// (RFC 5322: ASCII letters, digits and ``!#$%&'*+/=?^_`{|}~-``, in atoms
/// joined by single dots, none leading or trailing) and a plain domain
/// (labels of ASCII letters, digits and inner hyphens, joined by dots). A
/// quoted local part (`"kevin"@example.com`, `"k\evin"@example.com`), a
/// comment (`kevin(x)@example.com`) or an address literal names the same
/// mailbox as a plain address under RFC 5321, and a mailer delivers it
/// there: accepting them would register a second account for one inbox.
pub fn plain_email(email: &str) -> bool {
    const ATEXT: &[u8] = b"!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let atom = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || ATEXT.contains(&b))
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    local.split('.').all(atom) && domain.contains('.') && domain.split('.').all(label)
}

/// The checks of a new account's address (register, `vigile user create`):
/// the syntax, ASCII only, the plain form; a fault is named on `field`.
pub fn check_new_email(field: &str, email: &str, v: &mut Validator) {
    if !valid_email(email) {
        v.add(field, INVALID_EMAIL);
    } else if !ascii_email(email) {
        v.add(field, NOT_ASCII_EMAIL);
    } else if !plain_email(email) {
        v.add(field, INVALID_EMAIL);
    }
}

pub const NOT_ASCII_EMAIL: &str = "Saisissez une adresse e-mail en caractères ASCII (sans accents ni caractères spéciaux ; un domaine internationalisé s'écrit sous sa forme « xn-- »).";

/// The longest phone number vigile takes, in bytes.
pub(crate) const PHONE_MAX_BYTES: usize = 32;

/// Digits with optional `+`, spaces, dots, dashes and parentheses; 6 to 20 digits.
pub fn valid_phone(phone: &str) -> bool {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    (6..=20).contains(&digits)
        && phone.len() <= PHONE_MAX_BYTES
        && phone
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || " .-()".contains(c) || (c == '+' && i == 0))
}

/// The gender choices (the seed model's `GENDER_CHOICES`).
pub(crate) const GENDERS: [&str; 2] = ["H", "F"];

/// The optional profile fields shared by register and profile update.
pub fn check_gender(gender: Option<String>, v: &mut Validator) -> Option<String> {
    match gender.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(g) if GENDERS.contains(&g) => Some(g.to_string()),
        Some(other) => {
            v.add(
                "gender",
                format!("« {other} » n'est pas un choix valide (H ou F)."),
            );
            None
        }
    }
}

pub fn check_phone(phone: Option<String>, v: &mut Validator) -> Option<String> {
    match phone.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) if valid_phone(p) => Some(p.to_string()),
        Some(_) => {
            v.add("phone", "Saisissez un numéro de téléphone valide.");
            None
        }
    }
}

/// What makes a first or last name unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameFault {
    /// More than `NAME_MAX_CHARS` characters (the seed model's max_length).
    TooLong,
    /// A control character (a line break, an escape, a NUL...).
    Control,
}

pub(crate) const NAME_MAX_CHARS: usize = 150;

/// The rule for a first or last name (register, profile, import).
pub(crate) fn name_fault(value: &str) -> Option<NameFault> {
    if value.chars().count() > NAME_MAX_CHARS {
        Some(NameFault::TooLong)
    } else if value.chars().any(char::is_control) {
        Some(NameFault::Control)
    } else {
        None
    }
}

pub fn check_name(field: &str, value: Option<String>, v: &mut Validator) -> Option<String> {
    let value = value?;
    match name_fault(&value) {
        Some(NameFault::TooLong) => v.add(
            field,
            "Assurez-vous que ce champ ne comporte pas plus de 150 caractères.",
        ),
        Some(NameFault::Control) => v.add(field, "Ce champ contient des caractères non autorisés."),
        None => return Some(value),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_phones() {
        assert!(valid_email("dev@example.com"));
        assert!(valid_email("jean.dupont+tag@mail.example.fr"));
        for bad in [
            "",
            "dev",
            "dev@",
            "@example.com",
            "dev@example",
            "d ev@example.com",
            "a@b@c.com",
            "dev@.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(ascii_email("jean.dupont+tag@mail.example.fr"));
        for look_alike in [
            "\u{212A}evin@example.com",
            "\u{FF4B}evin@example.com",
            "ke\u{200B}vin@example.com",
            "kevin@exam\u{200D}ple.com",
            "k\u{0435}vin@example.com",
            "kevin@\u{FF45}xample.com",
            "kevin\u{00AD}@example.com",
        ] {
            assert!(!ascii_email(look_alike), "{look_alike}");
        }
        for plain in [
            "kevin@example.com",
            "jean.dupont+tag@mail.example.fr",
            "o'brien@example.ie",
            "a!#$%&'*+/=?^_`{|}~-z@x-y.example.com",
            "KEVIN@EXAMPLE.COM",
        ] {
            assert!(plain_email(plain), "{plain}");
        }
        for same_mailbox in [
            "\"kevin\"@example.com",
            "\"k\\evin\"@example.com",
            "kevin(x)@example.com",
            "(x)kevin@example.com",
            "kevin@example.com(x)",
            "kevin@(x)example.com",
            ".kevin@example.com",
            "kevin.@example.com",
            "ke..vin@example.com",
            "kevin@[127.0.0.1]",
            "kevin@-example.com",
            "kevin@example-.com",
            "kevin@example",
            "\"kevin@x\"@example.com",
            "ke\\vin@example.com",
            "kevin\"@example.com",
        ] {
            assert!(!plain_email(same_mailbox), "{same_mailbox}");
        }
        assert!(valid_phone("0612345678"));
        assert!(valid_phone("+33 6 12 34 56 78"));
        assert!(!valid_phone("12"));
        assert!(!valid_phone("06-12-ab"));
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(parse_object(b"").expect("empty").is_empty());
        assert_eq!(parse_object(b"{").expect_err("bad").status, 400);
        assert_eq!(
            parse_object(b"[1]")
                .expect_err("not an object")
                .code
                .as_str(),
            "invalid_json"
        );
    }
}

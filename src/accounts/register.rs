//! `POST /api/accounts/register/`: creates an account with the default role.
//!
//! Takes `email`, `password`, `first_name`, `last_name` (required) and
//! `password_confirm`, `gender` (`H`/`F`), `phone` (optional). Answers 201 with
//! the account object, or 400 `validation_error` with the fields at fault.

use super::input::{self, Object, Secret};
use super::{internal, store_failed, AccountService, AccountView, Reply};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::{ApiError, Validator};
use crate::passwords;
use crate::store::{AccountRecord, CreateAccountError};

pub const EMAIL_TAKEN: &str = "Un compte avec cet email existe déjà.";

/// A registration that passed validation.
#[derive(Debug)]
pub struct RegisterRequest {
    pub email: String,
    pub password: Secret,
    pub first_name: String,
    pub last_name: String,
    pub gender: Option<String>,
    pub phone: Option<String>,
}

pub fn parse(body: &[u8], min_length: usize) -> Result<RegisterRequest, ApiError> {
    from_object(&input::parse_object(body)?, min_length)
}

/// The checks of `parse` on a body already read (the operator's `user
/// create` builds one).
pub fn from_object(obj: &Object, min_length: usize) -> Result<RegisterRequest, ApiError> {
    let mut v = Validator::default();
    let email = input::required_string(obj, "email", &mut v, false);
    if let Some(e) = &email {
        input::check_new_email("email", e, &mut v);
    }
    let password = input::required_secret(obj, "password", &mut v);
    let confirm = input::optional_secret(obj, "password_confirm", &mut v);
    let first_name = input::required_string(obj, "first_name", &mut v, false);
    let first_name = input::check_name("first_name", first_name, &mut v);
    let last_name = input::required_string(obj, "last_name", &mut v, false);
    let last_name = input::check_name("last_name", last_name, &mut v);
    let gender = input::optional_string(obj, "gender", &mut v);
    let gender = input::check_gender(gender, &mut v);
    let phone = input::optional_string(obj, "phone", &mut v);
    let phone = input::check_phone(phone, &mut v);
    if let Some(p) = &password {
        let personal = passwords::PersonalData {
            email: email.as_deref().unwrap_or(""),
            first_name: first_name.as_deref().unwrap_or(""),
            last_name: last_name.as_deref().unwrap_or(""),
        };
        for message in passwords::policy_violations(p.expose(), min_length, &personal) {
            v.add("password", message);
        }
        input::check_confirmation("password_confirm", p, confirm.as_ref(), &mut v);
    }
    v.finish()?;
    match (email, password, first_name, last_name) {
        (Some(email), Some(password), Some(first_name), Some(last_name)) => Ok(RegisterRequest {
            email,
            password,
            first_name,
            last_name,
            gender,
            phone,
        }),
        _ => Err(ApiError::internal()),
    }
}

/// Creates the account; `role` is the default role unless an operator names one.
pub fn create(
    service: &AccountService,
    reg: RegisterRequest,
    role: Option<String>,
    origin: &Origin,
) -> Result<AccountRecord, ApiError> {
    let email_taken = || {
        let mut v = Validator::default();
        v.add("email", EMAIL_TAKEN);
        v.finish().err().unwrap_or_else(ApiError::internal)
    };
    // Saves an argon2 run on the common case; the insert below is the real check.
    if service
        .store
        .account_by_email(&reg.email)
        .map_err(store_failed)?
        .is_some()
    {
        return Err(email_taken());
    }
    let password_hash = service
        .timed_hash(|| passwords::hash_password(reg.password.expose()))
        .map_err(internal)?;
    let record = AccountRecord {
        id: 0,
        email: reg.email,
        password_hash,
        first_name: reg.first_name,
        last_name: reg.last_name,
        gender: reg.gender,
        phone: reg.phone,
        role: role.unwrap_or_else(|| service.policy().default_role.clone()),
        is_active: true,
        date_joined: crate::unix_now(),
        last_login: None,
    };
    match service.store.create_account(record) {
        Ok(account) => {
            tracing::info!(account_id = account.id, "account created");
            let entry = Entry::new(AuditEvent::AccountCreated).account(account.id);
            service
                .audit
                .record(origin, entry.detail("role", account.role.as_str()));
            Ok(account)
        }
        Err(CreateAccountError::EmailTaken) => Err(email_taken()),
        Err(CreateAccountError::Store(e)) => Err(store_failed(e)),
    }
}

pub fn apply(
    service: &AccountService,
    request: RegisterRequest,
    origin: &Origin,
) -> Result<Reply, ApiError> {
    let account = create(service, request, None, origin)?;
    Reply::json(201, AccountView::from(&account))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, Fixture, CLIENT, PASSWORD};
    use super::super::Endpoint;
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> Object {
        match v {
            serde_json::Value::Object(m) => m,
            _ => Object::new(),
        }
    }

    fn fields(e: ApiError) -> Vec<String> {
        e.fields
            .map(|f| f.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_seed_registration_parses() {
        let reg = from_object(
            &obj(json!({"first_name": "John", "last_name": "Doe", "email": " john@example.com ",
                "phone": "0612345678", "password": "SecurePass123!", "password_confirm": "SecurePass123!"})),
            8,
        )
        .expect("valid");
        assert_eq!(reg.email, "john@example.com");
        assert_eq!(reg.phone.as_deref(), Some("0612345678"));
    }

    #[test]
    fn look_alike_addresses_are_refused() {
        for email in [
            "\u{212A}evin@example.com",
            "\u{FF4B}evin@example.com",
            "ke\u{200B}vin@example.com",
            "jos\u{E9}@example.com",
            "kevin@b\u{FC}cher.example",
        ] {
            let e = from_object(
                &obj(
                    json!({"email": email, "password": "Un-secret-2026", "first_name": "Kevin",
                    "last_name": "Durand"}),
                ),
                8,
            )
            .expect_err(email);
            assert_eq!(fields(e), ["email"], "{email}");
        }
    }

    #[test]
    fn quoted_local_parts_and_comments_are_refused_as_invalid() {
        let f = Fixture::new();
        f.register("kevin@example.com");
        for email in [
            "\"kevin\"@example.com",
            "\"k\\evin\"@example.com",
            "kevin(x)@example.com",
            "\"KEVIN\"@example.com",
            "ke..vin@example.com",
            "kevin@[127.0.0.1]",
        ] {
            let e = f
                .call(
                    Endpoint::Register,
                    None,
                    json!({"email": email, "password": "Att4cker!Pass#1", "first_name": "A",
                        "last_name": "B"}),
                )
                .expect_err(email);
            assert_eq!((e.status, e.code.as_str()), (400, "validation_error"));
            assert_eq!(
                fixture::messages(&e, "email"),
                [input::INVALID_EMAIL],
                "{email}"
            );
        }
    }

    #[test]
    fn an_account_stored_with_a_quoted_local_part_still_logs_in() {
        // Stored before the rule: straight into the store.
        let f = Fixture::new();
        let stored = AccountRecord {
            id: 0,
            email: "\"kevin\"@example.com".to_string(),
            password_hash: passwords::hash_password(PASSWORD).expect("hash"),
            first_name: "Kevin".to_string(),
            last_name: "Durand".to_string(),
            gender: None,
            phone: None,
            role: "Visiteur".to_string(),
            is_active: true,
            date_joined: 0,
            last_login: None,
        };
        f.service.store.create_account(stored).expect("stored");
        f.login("\"kevin\"@example.com", PASSWORD);
        f.login("\"KEVIN\"@example.com", PASSWORD);
    }

    #[test]
    fn each_bad_field_is_named() {
        let e = from_object(&obj(json!({})), 8).expect_err("empty");
        assert_eq!(fields(e), ["email", "first_name", "last_name", "password"]);
        let e = from_object(
            &obj(
                json!({"email": "nope", "password": "12345678", "password_confirm": "x",
                "first_name": 3, "last_name": "Doe", "gender": "X"}),
            ),
            8,
        )
        .expect_err("bad");
        assert_eq!(
            fields(e),
            [
                "email",
                "first_name",
                "gender",
                "password",
                "password_confirm"
            ]
        );
    }

    fn john() -> serde_json::Value {
        json!({"first_name": "John", "last_name": "Doe", "email": " john@example.com ",
            "phone": "0612345678", "gender": "H", "password": "SecurePass123!",
            "password_confirm": "SecurePass123!"})
    }

    #[test]
    fn a_registration_answers_201_with_the_account_and_stores_it() {
        let f = Fixture::new();
        let reply = f.call(Endpoint::Register, None, john()).expect("created");
        assert_eq!(reply.status, 201);
        let body = &reply.body;
        assert_eq!(
            fixture::keys(body),
            [
                "id",
                "email",
                "first_name",
                "last_name",
                "gender",
                "phone",
                "role",
                "is_active",
                "date_joined",
                "last_login"
            ]
        );
        let id = body["id"].as_u64().expect("an id");
        assert_eq!(
            (&body["email"], &body["first_name"], &body["last_name"]),
            (&json!("john@example.com"), &json!("John"), &json!("Doe"))
        );
        assert_eq!(
            (&body["gender"], &body["phone"], &body["role"]),
            (&json!("H"), &json!("0612345678"), &json!("Visiteur"))
        );
        assert_eq!(
            (&body["is_active"], &body["last_login"]),
            (&json!(true), &json!(null))
        );
        assert!(body["date_joined"].as_str().expect("a date").ends_with('Z'));

        let stored = f.account("john@example.com");
        assert_eq!((stored.id, stored.role.as_str()), (id, "Visiteur"));
        assert!(stored.password_hash.starts_with("$argon2id$"));
        assert!(passwords::verify_password(
            "SecurePass123!",
            &stored.password_hash
        ));
    }

    #[test]
    fn a_taken_email_is_refused_whatever_its_case() {
        let f = Fixture::new();
        f.register("john@example.com");
        let mut again = john();
        again["email"] = json!("JOHN@Example.com");
        let e = f.call(Endpoint::Register, None, again).expect_err("taken");
        assert_eq!((e.status, e.code.as_str()), (400, "validation_error"));
        assert_eq!(fixture::fields(&e), ["email"]);
        assert_eq!(fixture::messages(&e, "email"), [EMAIL_TAKEN]);
        assert_eq!(f.service.store.accounts().expect("store").len(), 1);
    }

    #[test]
    fn invalid_registrations_name_their_fields_and_store_nothing() {
        let f = Fixture::new();
        let e = f
            .call(Endpoint::Register, None, json!({}))
            .expect_err("empty");
        assert_eq!(e.code.as_str(), "validation_error");
        for field in ["email", "first_name", "last_name", "password"] {
            assert_eq!(fixture::messages(&e, field), [input::REQUIRED], "{field}");
        }
        let e = f
            .call(
                Endpoint::Register,
                None,
                json!({"email": "jean@example.com", "password": "12345678",
                    "password_confirm": "12345679", "first_name": " ", "last_name": "Dupont"}),
            )
            .expect_err("invalid");
        assert_eq!(
            fixture::fields(&e),
            ["first_name", "password", "password_confirm"]
        );
        assert_eq!(fixture::messages(&e, "first_name"), [input::BLANK]);
        assert_eq!(
            fixture::messages(&e, "password"),
            [
                "Ce mot de passe est trop courant.",
                "Ce mot de passe est entièrement numérique."
            ]
        );
        assert_eq!(
            fixture::messages(&e, "password_confirm"),
            ["Les mots de passe ne correspondent pas."]
        );
        let e = f
            .call_raw(Endpoint::Register, None, b"{", CLIENT)
            .expect_err("not JSON");
        assert_eq!((e.status, e.code.as_str()), (400, "invalid_json"));
        let e = f
            .call_raw(Endpoint::Register, None, b"[]", CLIENT)
            .expect_err("not an object");
        assert_eq!(
            (e.code.as_str(), e.message.as_ref()),
            (
                "invalid_json",
                "Le corps de la requête doit être un objet JSON"
            )
        );
        assert!(f.service.store.accounts().expect("store").is_empty());
        // The seed's password passes the policy.
        f.call(
            Endpoint::Register,
            None,
            json!({"email": "jean@example.com", "password": PASSWORD, "first_name": "Jean",
                "last_name": "Dupont"}),
        )
        .expect("valid");
    }
}

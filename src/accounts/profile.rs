//! `GET /api/accounts/` (Bearer): the caller's account object.
//! `PATCH /api/accounts/` (Bearer): changes `first_name`, `last_name`,
//! `gender`, `phone`; answers the updated account object.

use super::input::{self, Object};
use super::{store_failed, AccountService, AccountView, Reply};
use crate::error::{ApiError, Validator};
use crate::store::AccountRecord;
use crate::tokens::Identity;

/// Fields a client may see but not change here.
const READ_ONLY: [&str; 7] = [
    "id",
    "email",
    "role",
    "is_active",
    "date_joined",
    "last_login",
    "password",
];

pub fn show(service: &AccountService, who: &Identity) -> Result<Reply, ApiError> {
    let account = service.account_of(who)?;
    Reply::json(200, AccountView::from(&account))
}

/// The changes a PATCH asks for; `None` leaves a field as it is, and an empty
/// or null gender or phone clears it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProfileUpdateRequest {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub gender: Option<Option<String>>,
    pub phone: Option<Option<String>>,
}

/// The fields of a body already read as an object: the caller's account is
/// checked between the two (see `AccountService::handle`).
pub fn from_object(body: &Object) -> Result<ProfileUpdateRequest, ApiError> {
    let mut v = Validator::default();
    for field in READ_ONLY {
        if body.contains_key(field) {
            v.add(field, "Ce champ ne peut pas être modifié ici.");
        }
    }
    let mut name = |field: &str| {
        if !body.contains_key(field) {
            return None;
        }
        let value = input::required_string(body, field, &mut v, false);
        input::check_name(field, value, &mut v)
    };
    let first_name = name("first_name");
    let last_name = name("last_name");
    let gender = body.contains_key("gender").then(|| {
        let g = input::optional_string(body, "gender", &mut v);
        input::check_gender(g, &mut v)
    });
    let phone = body.contains_key("phone").then(|| {
        let p = input::optional_string(body, "phone", &mut v);
        input::check_phone(p, &mut v)
    });
    v.finish()?;
    Ok(ProfileUpdateRequest {
        first_name,
        last_name,
        gender,
        phone,
    })
}

pub fn update(
    service: &AccountService,
    account: &AccountRecord,
    change: ProfileUpdateRequest,
) -> Result<Reply, ApiError> {
    let (updated, _) = service
        .store
        .update_account(account.id, crate::unix_now(), |a| {
            if let Some(v) = change.first_name {
                a.first_name = v;
            }
            if let Some(v) = change.last_name {
                a.last_name = v;
            }
            if let Some(v) = change.gender {
                a.gender = v;
            }
            if let Some(v) = change.phone {
                a.phone = v;
            }
        })
        .map_err(store_failed)?
        .ok_or_else(ApiError::not_found)?;
    Reply::json(200, AccountView::from(&updated))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, Fixture, PASSWORD};
    use super::super::Endpoint;
    use serde_json::json;

    #[test]
    fn the_profile_is_the_callers_account() {
        let f = Fixture::new();
        let id = f.register("jean@example.com");
        let tokens = f.login("jean@example.com", PASSWORD);
        let reply = f.profile(&tokens.access).expect("profile");
        assert_eq!(reply.status, 200);
        assert_eq!(
            (&reply.body["id"], &reply.body["email"], &reply.body["role"]),
            (&json!(id), &json!("jean@example.com"), &json!("Visiteur"))
        );
        let e = f
            .call(Endpoint::Profile, None, json!(null))
            .expect_err("anonymous");
        assert_eq!((e.status, e.code.as_str()), (401, "not_authenticated"));
        let e = f
            .call(Endpoint::Profile, Some("garbage"), json!(null))
            .expect_err("forged");
        assert_eq!((e.status, e.code.as_str()), (401, "token_not_valid"));
    }

    #[test]
    fn an_update_changes_the_fields_sent_and_only_them() {
        let f = Fixture::new();
        let tokens = f.signed_in("jean@example.com");
        let reply = f
            .call(
                Endpoint::UpdateProfile,
                Some(&tokens.access),
                json!({"first_name": " Jeanne ", "phone": "+33 6 12 34 56 78", "gender": "F"}),
            )
            .expect("updated");
        assert_eq!(reply.status, 200);
        assert_eq!(
            (&reply.body["first_name"], &reply.body["last_name"]),
            (&json!("Jeanne"), &json!("Dupont"))
        );
        let stored = f.account("jean@example.com");
        assert_eq!(
            (
                stored.first_name.as_str(),
                stored.phone.as_deref(),
                stored.gender.as_deref()
            ),
            ("Jeanne", Some("+33 6 12 34 56 78"), Some("F"))
        );
        // Empty or null clears the optional fields.
        f.call(
            Endpoint::UpdateProfile,
            Some(&tokens.access),
            json!({"phone": "", "gender": null}),
        )
        .expect("cleared");
        let stored = f.account("jean@example.com");
        assert_eq!((stored.phone, stored.gender), (None, None));
        assert_eq!(stored.first_name, "Jeanne");
    }

    #[test]
    fn an_invalid_update_names_its_fields_and_changes_nothing() {
        let f = Fixture::new();
        let tokens = f.signed_in("jean@example.com");
        let e = f
            .call(
                Endpoint::UpdateProfile,
                Some(&tokens.access),
                json!({"email": "x@example.com", "role": "Admin", "last_name": "",
                    "first_name": "Paul", "phone": "12", "gender": "X"}),
            )
            .expect_err("invalid");
        assert_eq!((e.status, e.code.as_str()), (400, "validation_error"));
        assert_eq!(
            fixture::fields(&e),
            ["email", "gender", "last_name", "phone", "role"]
        );
        assert_eq!(
            fixture::messages(&e, "email"),
            ["Ce champ ne peut pas être modifié ici."]
        );
        assert_eq!(
            fixture::messages(&e, "last_name"),
            ["Ce champ ne peut être vide."]
        );
        assert_eq!(
            fixture::messages(&e, "gender"),
            ["« X » n'est pas un choix valide (H ou F)."]
        );
        let stored = f.account("jean@example.com");
        assert_eq!(
            (stored.first_name.as_str(), stored.role.as_str()),
            ("Jean", "Visiteur")
        );
    }
}

//! `GET /api/accounts/` (Bearer): the caller's account object.
//! `PATCH /api/accounts/` (Bearer): changes `first_name`, `last_name`,
//! `gender`, `phone`; answers the updated account object.

use super::input::{self, Object};
use super::{internal, AccountService, AccountView, Reply};
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
        .map_err(internal)?
        .ok_or_else(ApiError::not_found)?;
    Reply::json(200, AccountView::from(&updated))
}

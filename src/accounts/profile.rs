//! `GET /api/accounts/` (Bearer): the caller's account object.

use super::{AccountService, AccountView, Reply};
use crate::error::ApiError;
use crate::tokens::Identity;

pub fn show(service: &AccountService, who: &Identity) -> Result<Reply, ApiError> {
    let account = service.account_of(who)?;
    Reply::json(200, AccountView::from(&account))
}

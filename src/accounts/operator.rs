//! Operator commands (`vigile user ...`, `vigile role ...`, `vigile keys ...`): the same code runs
//! in the CLI against the store file when no gateway holds it, and inside the
//! running gateway when it does (sent over the admin listener), so a change
//! such as `deactivate` reaches the gateway's memory at once.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{internal, register, store_failed, AccountService, AccountView};
use crate::audit::{AuditEvent, Entry, Origin};
use crate::error::{ApiError, ErrorCode};
use crate::passwords::StoredHash;
use crate::store::AccountRecord;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum OperatorCommand {
    CreateUser {
        email: String,
        first_name: String,
        last_name: String,
        password: String,
        role: Option<String>,
        gender: Option<String>,
        phone: Option<String>,
    },
    ListUsers,
    ShowUser {
        email: String,
    },
    SetRole {
        email: String,
        role: String,
    },
    Deactivate {
        email: String,
    },
    Activate {
        email: String,
    },
    Delete {
        email: String,
    },
    CreateRole {
        name: String,
    },
    ListRoles,
    ListKeys,
    RotateKey,
    RetireKey {
        kid: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum OperatorReply {
    Account(Value),
    Accounts(Vec<Value>),
    Roles(Vec<String>),
    /// `vigile keys list`: `KeyInfo`s.
    Keys(Vec<Value>),
    Done(String),
}

/// The account as the operator sees it: its API view, and the format of its
/// password hash (`password_format`, never the hash).
fn account_value(account: &AccountRecord) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(AccountView::from(account)).map_err(internal)?;
    if let Value::Object(fields) = &mut value {
        let format = StoredHash::of(&account.password_hash).format();
        fields.insert("password_format".into(), Value::String(format));
    }
    Ok(value)
}

fn no_such_account(email: &str) -> ApiError {
    ApiError::new(
        404,
        ErrorCode::AccountNotFound,
        format!("Aucun compte avec l'email {email}"),
    )
}

fn check_role(service: &AccountService, role: &str) -> Result<(), ApiError> {
    if role == service.policy().default_role
        || service.store.role_exists(role).map_err(store_failed)?
    {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            ErrorCode::UnknownRole,
            format!("Rôle inconnu : {role} (créez-le avec « vigile role create {role} »)"),
        ))
    }
}

fn find(service: &AccountService, email: &str) -> Result<AccountRecord, ApiError> {
    service
        .store
        .account_by_email(email)
        .map_err(store_failed)?
        .ok_or_else(|| no_such_account(email))
}

/// Changes the account of `email`, then writes `event`'s audit line.
fn update(
    service: &AccountService,
    email: &str,
    change: impl FnOnce(&mut AccountRecord),
    (origin, event): (&Origin, AuditEvent),
) -> Result<OperatorReply, ApiError> {
    let account = find(service, email)?;
    let (updated, revoked) = service
        .store
        .update_account(account.id, crate::unix_now(), change)
        .map_err(store_failed)?
        .ok_or_else(|| no_such_account(email))?;
    service.revoked(&revoked);
    let mut entry = Entry::new(event).account(updated.id);
    if event == AuditEvent::RoleChanged {
        entry = entry.detail("role", updated.role.as_str());
    }
    service.audit.record(origin, entry);
    Ok(OperatorReply::Account(account_value(&updated)?))
}

/// Runs one command through the gateway's admin channel. Blocks (argon2,
/// store commits).
pub fn execute(
    service: &AccountService,
    command: OperatorCommand,
) -> Result<OperatorReply, ApiError> {
    execute_from(service, command, &Origin::OPERATOR)
}

/// `execute`, its audit lines saying where the command came from.
pub fn execute_from(
    service: &AccountService,
    command: OperatorCommand,
    origin: &Origin,
) -> Result<OperatorReply, ApiError> {
    match command {
        OperatorCommand::CreateUser {
            email,
            first_name,
            last_name,
            password,
            role,
            gender,
            phone,
        } => {
            let body = json!({"email": email, "first_name": first_name, "last_name": last_name,
                "password": password, "gender": gender, "phone": phone});
            let Value::Object(body) = body else {
                return Err(ApiError::internal());
            };
            let reg = register::from_object(&body, service.policy().password_min_length)?;
            if let Some(r) = &role {
                check_role(service, r)?;
            }
            let account = register::create(service, reg, role, origin)?;
            Ok(OperatorReply::Account(account_value(&account)?))
        }
        OperatorCommand::ListUsers => {
            let accounts = service.store.accounts().map_err(store_failed)?;
            Ok(OperatorReply::Accounts(
                accounts
                    .iter()
                    .map(account_value)
                    .collect::<Result<_, _>>()?,
            ))
        }
        OperatorCommand::ShowUser { email } => Ok(OperatorReply::Account(account_value(&find(
            service, &email,
        )?)?)),
        OperatorCommand::SetRole { email, role } => {
            check_role(service, &role)?;
            let audit = (origin, AuditEvent::RoleChanged);
            update(service, &email, |a| a.role = role, audit)
        }
        OperatorCommand::Deactivate { email } => {
            let audit = (origin, AuditEvent::AccountDeactivated);
            update(service, &email, |a| a.is_active = false, audit)
        }
        OperatorCommand::Activate { email } => {
            let audit = (origin, AuditEvent::AccountActivated);
            update(service, &email, |a| a.is_active = true, audit)
        }
        OperatorCommand::Delete { email } => {
            let account = find(service, &email)?;
            let revoked = service
                .store
                .delete_account(account.id, crate::unix_now())
                .map_err(store_failed)?
                .ok_or_else(|| no_such_account(&email))?;
            service.revoked(&revoked);
            tracing::info!(
                account_id = account.id,
                sessions_ended = revoked.len(),
                "account deleted"
            );
            let entry = Entry::new(AuditEvent::AccountDeleted).account(account.id);
            service.audit.record(origin, entry);
            Ok(OperatorReply::Done(format!(
                "account {} deleted",
                account.email
            )))
        }
        OperatorCommand::CreateRole { name } => {
            let name = name.trim();
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(ApiError::new(
                    400,
                    ErrorCode::InvalidRole,
                    "Nom de rôle invalide (1 à 64 caractères)",
                ));
            }
            let created = service
                .store
                .create_role(name, crate::unix_now())
                .map_err(store_failed)?;
            Ok(OperatorReply::Done(if created {
                format!("role {name} created")
            } else {
                format!("role {name} already exists")
            }))
        }
        OperatorCommand::ListRoles => Ok(OperatorReply::Roles(
            service.store.roles().map_err(store_failed)?,
        )),
        OperatorCommand::ListKeys => Ok(OperatorReply::Keys(
            super::keys::list(service)?
                .into_iter()
                .map(|k| serde_json::to_value(k).map_err(internal))
                .collect::<Result<_, _>>()?,
        )),
        OperatorCommand::RotateKey => Ok(OperatorReply::Done(super::keys::rotate(
            service,
            origin,
            crate::unix_now(),
        )?)),
        OperatorCommand::RetireKey { kid } => Ok(OperatorReply::Done(super::keys::retire(
            service,
            &kid,
            origin,
            crate::unix_now(),
        )?)),
    }
}

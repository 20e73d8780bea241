//! The one error type that reaches clients, and the one place that turns it
//! into a status, a stable `code` and a French message.
//!
//! Every error body is `{"error": "...", "code": "..."}`; validation errors add
//! `"fields": {"<field>": ["<message>", ...]}`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

/// Messages per field, in the order they were found.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub fields: Option<FieldErrors>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
    /// Methods allowed, for 405.
    pub allow: Option<Cow<'static, str>>,
    /// 401 on a Bearer-protected resource carries `WWW-Authenticate`.
    pub bearer_challenge: bool,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a FieldErrors>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: None,
            retry_after: None,
            allow: None,
            bearer_challenge: false,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: &self.message,
            code: self.code,
            fields: self.fields.as_ref(),
        };
        // Serializing strings and string maps cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    // --- request shape ---------------------------------------------------

    pub fn invalid_json() -> ApiError {
        ApiError::new(
            400,
            "invalid_json",
            "Le corps de la requête n'est pas un JSON valide",
        )
    }

    pub fn body_too_large() -> ApiError {
        ApiError::new(
            413,
            "payload_too_large",
            "Le corps de la requête dépasse 64 Kio",
        )
    }

    /// A request the gateway cannot read (a malformed head, a refused
    /// `Connection`): 400, or another 4xx/5xx status Pingora chose.
    pub fn bad_request(status: u16) -> ApiError {
        ApiError::new(status, "bad_request", "Requête invalide")
    }

    pub fn invalid_path() -> ApiError {
        ApiError::new(400, "invalid_path", "Chemin de la requête invalide")
    }

    pub fn invalid_host() -> ApiError {
        ApiError::new(400, "invalid_host", "En-tête Host absent ou invalide")
    }

    pub fn multiple_authorization() -> ApiError {
        ApiError::new(
            400,
            "invalid_authorization",
            "Un seul en-tête Authorization est accepté",
        )
    }

    pub fn method_not_allowed(allow: impl Into<Cow<'static, str>>) -> ApiError {
        let mut e = ApiError::new(405, "method_not_allowed", "Méthode non autorisée");
        e.allow = Some(allow.into());
        e
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, "not_found", "Ressource introuvable")
    }

    pub fn validation(fields: FieldErrors) -> ApiError {
        let mut e = ApiError::new(400, "validation_error", "Données invalides");
        e.fields = Some(fields);
        e
    }

    // --- authentication ----------------------------------------------------

    pub fn missing_credentials() -> ApiError {
        ApiError::new(400, "missing_credentials", "Email et mot de passe requis")
    }

    pub fn invalid_credentials() -> ApiError {
        ApiError::new(
            401,
            "invalid_credentials",
            "Email ou mot de passe incorrect",
        )
    }

    pub fn too_many_attempts(retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            429,
            "too_many_attempts",
            "Trop de tentatives de connexion, réessayez plus tard",
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }

    pub fn missing_refresh() -> ApiError {
        ApiError::new(400, "missing_refresh", "Le champ refresh est requis")
    }

    pub fn refresh_not_valid() -> ApiError {
        ApiError::new(401, "token_not_valid", "Le jeton est invalide ou expiré")
    }

    pub fn token_reused() -> ApiError {
        ApiError::new(
            401,
            "token_reused",
            "Ce jeton de rafraîchissement a déjà été utilisé : la session est révoquée",
        )
    }

    /// 401 on a Bearer-protected resource (RFC 6750).
    pub fn unauthenticated(code: &'static str, message: &'static str) -> ApiError {
        let mut e = ApiError::new(401, code, message);
        e.bearer_challenge = true;
        e
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(
            403,
            "forbidden",
            "Vous n'avez pas la permission d'effectuer cette action",
        )
    }

    // --- server side ------------------------------------------------------

    pub fn overloaded() -> ApiError {
        let mut e = ApiError::new(
            503,
            "overloaded",
            "Service surchargé, réessayez dans un instant",
        );
        e.retry_after = Some(1);
        e
    }

    pub fn internal() -> ApiError {
        ApiError::new(500, "internal_error", "Erreur interne du serveur")
    }

    pub fn upstream_unavailable() -> ApiError {
        ApiError::new(502, "upstream_unavailable", "Service en amont indisponible")
    }

    pub fn upstream_timeout() -> ApiError {
        ApiError::new(
            504,
            "upstream_timeout",
            "Le service en amont n'a pas répondu à temps",
        )
    }
}

/// Collects validation messages field by field.
#[derive(Debug, Default)]
pub struct Validator {
    fields: FieldErrors,
}

impl Validator {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.fields
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.fields))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_error_and_code() {
        let body: serde_json::Value =
            serde_json::from_slice(&ApiError::invalid_credentials().body()).expect("json");
        assert_eq!(body["error"], "Email ou mot de passe incorrect");
        assert_eq!(body["code"], "invalid_credentials");
        assert!(body.get("fields").is_none());
    }

    #[test]
    fn validation_errors_list_fields() {
        let mut v = Validator::default();
        v.add("email", "Ce champ est obligatoire.");
        let e = v.finish().expect_err("invalid");
        let body: serde_json::Value = serde_json::from_slice(&e.body()).expect("json");
        assert_eq!(body["code"], "validation_error");
        assert_eq!(body["fields"]["email"][0], "Ce champ est obligatoire.");
    }
}

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

stable_names! {
    /// The stable, English `code` of an error body: clients and the
    /// metrics' labels rely on these strings, never on the French message.
    pub enum ErrorCode {
    // --- request shape
    InvalidJson = "invalid_json",
    PayloadTooLarge = "payload_too_large",
    BadRequest = "bad_request",
    InvalidPath = "invalid_path",
    InvalidHost = "invalid_host",
    InvalidAuthorization = "invalid_authorization",
    /// 408: the head or the body arrived too slowly.
    RequestTimeout = "request_timeout",
    /// 431.
    RequestHeaderTooLarge = "request_header_too_large",
    MethodNotAllowed = "method_not_allowed",
    NotFound = "not_found",
    ValidationError = "validation_error",
    CorsForbidden = "cors_forbidden",
    // --- authentication
    NotAuthenticated = "not_authenticated",
    MissingCredentials = "missing_credentials",
    InvalidCredentials = "invalid_credentials",
    TooManyAttempts = "too_many_attempts",
    MissingRefresh = "missing_refresh",
    TokenNotValid = "token_not_valid",
    TokenExpired = "token_expired",
    TokenRevoked = "token_revoked",
    TokenReused = "token_reused",
    Forbidden = "forbidden",
    InvalidResetToken = "invalid_reset_token",
    // --- operator commands
    AccountNotFound = "account_not_found",
    UnknownRole = "unknown_role",
    InvalidRole = "invalid_role",
    /// `vigile keys retire`: no key with that `kid`.
    KeyNotFound = "key_not_found",
    /// `vigile keys retire`: the key signs; rotate first.
    KeyActive = "key_active",
    /// `vigile reload`: the file is invalid or changes a key bound at start.
    ReloadRefused = "reload_refused",
    // --- server side
    TooManyConnections = "too_many_connections",
    Overloaded = "overloaded",
    InternalError = "internal_error",
    StoreUnavailable = "store_unavailable",
    UpstreamUnavailable = "upstream_unavailable",
    UpstreamTimeout = "upstream_timeout",
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
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
    code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a FieldErrors>,
}

impl ApiError {
    pub fn new(status: u16, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> ApiError {
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
            ErrorCode::InvalidJson,
            "Le corps de la requête n'est pas un JSON valide",
        )
    }

    pub fn body_too_large() -> ApiError {
        ApiError::new(
            413,
            ErrorCode::PayloadTooLarge,
            "Le corps de la requête dépasse 64 Kio",
        )
    }

    /// A request the gateway cannot read (a malformed head, a refused
    /// `Connection`): 400, or another 4xx/5xx status Pingora chose.
    pub fn bad_request(status: u16) -> ApiError {
        ApiError::new(status, ErrorCode::BadRequest, "Requête invalide")
    }

    pub fn invalid_path() -> ApiError {
        ApiError::new(400, ErrorCode::InvalidPath, "Chemin de la requête invalide")
    }

    pub fn invalid_host() -> ApiError {
        ApiError::new(
            400,
            ErrorCode::InvalidHost,
            "En-tête Host absent ou invalide",
        )
    }

    pub fn multiple_authorization() -> ApiError {
        ApiError::new(
            400,
            ErrorCode::InvalidAuthorization,
            "Un seul en-tête Authorization est accepté",
        )
    }

    pub fn method_not_allowed(allow: impl Into<Cow<'static, str>>) -> ApiError {
        let mut e = ApiError::new(405, ErrorCode::MethodNotAllowed, "Méthode non autorisée");
        e.allow = Some(allow.into());
        e
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, ErrorCode::NotFound, "Ressource introuvable")
    }

    pub fn validation(fields: FieldErrors) -> ApiError {
        let mut e = ApiError::new(400, ErrorCode::ValidationError, "Données invalides");
        e.fields = Some(fields);
        e
    }

    // --- authentication ----------------------------------------------------

    pub fn missing_credentials() -> ApiError {
        ApiError::new(
            400,
            ErrorCode::MissingCredentials,
            "Email et mot de passe requis",
        )
    }

    pub fn invalid_credentials() -> ApiError {
        ApiError::new(
            401,
            ErrorCode::InvalidCredentials,
            "Email ou mot de passe incorrect",
        )
    }

    pub fn too_many_attempts(retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            429,
            ErrorCode::TooManyAttempts,
            "Trop de tentatives de connexion, réessayez plus tard",
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }

    pub fn missing_refresh() -> ApiError {
        ApiError::new(
            400,
            ErrorCode::MissingRefresh,
            "Le champ refresh est requis",
        )
    }

    pub fn refresh_not_valid() -> ApiError {
        ApiError::new(
            401,
            ErrorCode::TokenNotValid,
            "Le jeton est invalide ou expiré",
        )
    }

    pub fn token_reused() -> ApiError {
        ApiError::new(
            401,
            ErrorCode::TokenReused,
            "Ce jeton de rafraîchissement a déjà été utilisé : la session est révoquée",
        )
    }

    /// 401 on a Bearer-protected resource (RFC 6750).
    pub fn unauthenticated(code: ErrorCode, message: &'static str) -> ApiError {
        let mut e = ApiError::new(401, code, message);
        e.bearer_challenge = true;
        e
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(
            403,
            ErrorCode::Forbidden,
            "Vous n'avez pas la permission d'effectuer cette action",
        )
    }

    // --- server side ------------------------------------------------------

    pub fn overloaded() -> ApiError {
        let mut e = ApiError::new(
            503,
            ErrorCode::Overloaded,
            "Service surchargé, réessayez dans un instant",
        );
        e.retry_after = Some(1);
        e
    }

    /// `server.max_connections` reached (a connection, or an HTTP/2 stream).
    pub fn too_many_connections() -> ApiError {
        let mut e = ApiError::new(
            503,
            ErrorCode::TooManyConnections,
            "Trop de connexions ouvertes, réessayez plus tard",
        );
        e.retry_after = Some(1);
        e
    }

    /// The store cannot be reached (or this replica's view of it is older
    /// than `store.max_staleness`): 503, try again shortly.
    pub fn store_unavailable() -> ApiError {
        let mut e = ApiError::new(
            503,
            ErrorCode::StoreUnavailable,
            "Service momentanément indisponible, réessayez dans un instant",
        );
        e.retry_after = Some(1);
        e
    }

    pub fn internal() -> ApiError {
        ApiError::new(500, ErrorCode::InternalError, "Erreur interne du serveur")
    }

    pub fn upstream_unavailable() -> ApiError {
        ApiError::new(
            502,
            ErrorCode::UpstreamUnavailable,
            "Service en amont indisponible",
        )
    }

    pub fn upstream_timeout() -> ApiError {
        ApiError::new(
            504,
            ErrorCode::UpstreamTimeout,
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
    fn codes_are_distinct_snake_case_strings() {
        let codes: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len(), "one string per code");
        for code in codes {
            assert!(
                !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
        assert_eq!(ErrorCode::TokenRevoked.to_string(), "token_revoked");
    }

    #[test]
    fn the_body_is_byte_identical_to_the_string_codes() {
        let e = ApiError::too_many_attempts(0);
        assert_eq!(
            String::from_utf8(e.body()).expect("utf-8"),
            r#"{"error":"Trop de tentatives de connexion, réessayez plus tard","code":"too_many_attempts"}"#
        );
        assert_eq!(e.retry_after, Some(1));
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

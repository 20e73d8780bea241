//! `cors:`, what browsers on other origins may do.

use std::time::Duration;

use http::{HeaderName, Method};
use serde::Deserialize;

use super::{duration, err, values, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// `scheme://host[:port]` values, or `*`.
    pub allowed_origins: Vec<String>,
    #[serde(deserialize_with = "values::methods")]
    pub allowed_methods: Vec<Method>,
    #[serde(deserialize_with = "values::header_names")]
    pub allowed_headers: Vec<HeaderName>,
    #[serde(deserialize_with = "values::header_names")]
    pub exposed_headers: Vec<HeaderName>,
    pub allow_credentials: bool,
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allowed_methods: vec![
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ],
            allowed_headers: vec![
                http::header::AUTHORIZATION,
                http::header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
            ],
            exposed_headers: vec![
                HeaderName::from_static("x-request-id"),
                http::header::RETRY_AFTER,
                http::header::WWW_AUTHENTICATE,
            ],
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

impl CorsConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let well_formed = origin == "*"
                || origin.split_once("://").is_some_and(|(scheme, rest)| {
                    (scheme == "http" || scheme == "https")
                        && !rest.is_empty()
                        && !rest.contains('/')
                });
            if !well_formed {
                return err(
                    &format!("cors.allowed_origins[{i}]"),
                    format!("`{origin}` is not an origin such as https://app.example.com (no path, no trailing /) or *"),
                );
            }
        }
        if self.allow_credentials && self.allowed_origins.iter().any(|o| o == "*") {
            return err(
                "cors.allow_credentials",
                "cannot be used with the origin *; list the origins",
            );
        }
        Ok(())
    }
}

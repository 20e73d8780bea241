//! CORS: the gateway answers preflights itself (no authentication, no
//! upstream), for account and proxied routes alike, and adds the CORS headers
//! to actual responses for allowed origins. An origin that is not allowed
//! gets no CORS header at all, so the browser refuses the response.

use http::{HeaderName, Method};

use crate::config::CorsConfig;

pub struct CorsPolicy {
    origins: Vec<String>,
    any_origin: bool,
    methods: Vec<Method>,
    methods_joined: String,
    headers: Vec<HeaderName>,
    headers_joined: String,
    exposed_joined: String,
    credentials: bool,
    max_age: String,
}

/// What to do with a request, CORS-wise.
#[derive(Debug, PartialEq, Eq)]
pub enum Preflight {
    /// Not a preflight: handle the request as usual.
    No,
    /// An allowed preflight: answer 204 with these headers.
    Allowed(Vec<(&'static str, String)>),
    /// A preflight for an origin, method or header that is not allowed.
    Refused,
}

impl CorsPolicy {
    pub fn new(cfg: &CorsConfig) -> CorsPolicy {
        CorsPolicy {
            any_origin: cfg.allowed_origins.iter().any(|o| o == "*"),
            origins: cfg.allowed_origins.clone(),
            methods_joined: join(&cfg.allowed_methods, Method::as_str),
            methods: cfg.allowed_methods.clone(),
            headers_joined: join(&cfg.allowed_headers, HeaderName::as_str),
            headers: cfg.allowed_headers.clone(),
            exposed_joined: join(&cfg.exposed_headers, HeaderName::as_str),
            credentials: cfg.allow_credentials,
            max_age: cfg.max_age.as_secs().to_string(),
        }
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o == origin)
    }

    /// `Access-Control-Allow-Origin` value for an allowed origin.
    fn allow_origin_value(&self, origin: &str) -> String {
        if self.any_origin && !self.credentials {
            "*".to_string()
        } else {
            origin.to_string()
        }
    }

    /// Classifies a request: `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method` is a preflight.
    pub fn preflight(
        &self,
        method: &str,
        origin: Option<&str>,
        request_method: Option<&str>,
        request_headers: Option<&str>,
    ) -> Preflight {
        let (Some(origin), Some(request_method)) = (origin, request_method) else {
            return Preflight::No;
        };
        if method != "OPTIONS" {
            return Preflight::No;
        }
        let method_ok = self
            .methods
            .iter()
            .any(|m| m.as_str().eq_ignore_ascii_case(request_method.trim()));
        let headers_ok = request_headers.is_none_or(|list| {
            list.split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .all(|h| self.headers.iter().any(|name| name.as_str() == h))
        });
        if !self.allows_origin(origin) || !method_ok || !headers_ok {
            return Preflight::Refused;
        }
        let mut out = vec![
            (
                "Access-Control-Allow-Origin",
                self.allow_origin_value(origin),
            ),
            ("Access-Control-Allow-Methods", self.methods_joined.clone()),
            ("Access-Control-Allow-Headers", self.headers_joined.clone()),
            ("Access-Control-Max-Age", self.max_age.clone()),
            ("Vary", "Origin".to_string()),
        ];
        if self.credentials {
            out.push(("Access-Control-Allow-Credentials", "true".to_string()));
        }
        Preflight::Allowed(out)
    }

    /// Headers for an actual response to a request from `origin` (empty when
    /// the origin is not allowed).
    pub fn response_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        if !self.allows_origin(origin) {
            return Vec::new();
        }
        let mut out = vec![
            (
                "Access-Control-Allow-Origin",
                self.allow_origin_value(origin),
            ),
            ("Vary", "Origin".to_string()),
        ];
        if !self.exposed_joined.is_empty() {
            out.push(("Access-Control-Expose-Headers", self.exposed_joined.clone()));
        }
        if self.credentials {
            out.push(("Access-Control-Allow-Credentials", "true".to_string()));
        }
        out
    }
}

/// Names as one header value: `GET, POST`.
fn join<T>(items: &[T], name: fn(&T) -> &str) -> String {
    items.iter().map(name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::new(&CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: vec![Method::GET, Method::POST],
            allowed_headers: vec![http::header::AUTHORIZATION, http::header::CONTENT_TYPE],
            exposed_headers: vec![HeaderName::from_static("x-request-id")],
            allow_credentials: credentials,
            max_age: Duration::from_secs(600),
        })
    }

    #[test]
    fn preflights_are_answered_for_allowed_origins_only() {
        let p = policy(&["http://localhost:3000"], false);
        let allowed = p.preflight(
            "OPTIONS",
            Some("http://localhost:3000"),
            Some("POST"),
            Some("content-type, authorization"),
        );
        let Preflight::Allowed(headers) = allowed else {
            panic!("allowed: {allowed:?}");
        };
        assert!(headers.contains(&(
            "Access-Control-Allow-Origin",
            "http://localhost:3000".into()
        )));
        assert!(headers.contains(&("Access-Control-Max-Age", "600".into())));
        assert_eq!(
            p.preflight("OPTIONS", Some("http://evil.example"), Some("POST"), None),
            Preflight::Refused
        );
        assert_eq!(
            p.preflight(
                "OPTIONS",
                Some("http://localhost:3000"),
                Some("DELETE"),
                None
            ),
            Preflight::Refused
        );
        assert_eq!(
            p.preflight(
                "OPTIONS",
                Some("http://localhost:3000"),
                Some("GET"),
                Some("X-Other")
            ),
            Preflight::Refused
        );
        assert_eq!(
            p.preflight("OPTIONS", None, Some("GET"), None),
            Preflight::No
        );
        assert_eq!(
            p.preflight("GET", Some("http://localhost:3000"), Some("GET"), None),
            Preflight::No
        );
    }

    #[test]
    fn actual_responses_carry_headers_for_allowed_origins() {
        let p = policy(&["*"], false);
        assert!(p
            .response_headers("http://a.example")
            .contains(&("Access-Control-Allow-Origin", "*".into())));
        let p = policy(&["http://a.example"], true);
        let h = p.response_headers("http://a.example");
        assert!(h.contains(&("Access-Control-Allow-Origin", "http://a.example".into())));
        assert!(h.contains(&("Access-Control-Allow-Credentials", "true".into())));
        assert!(p.response_headers("http://b.example").is_empty());
    }
}

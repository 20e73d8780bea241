//! The decision step: from a client's request header to what the gateway
//! does with it, without Pingora's session or a socket. The adapter
//! (`mod.rs`) only carries the decision out.
//!
//! In order: the request's own soundness (one credential, `Host`, a path
//! that normalizes; `request.rs`), CORS preflights, the gateway's own
//! endpoints, the route table, then on a route the method, authentication
//! and roles.

use std::sync::Arc;

use bytes::Bytes;
use pingora::http::RequestHeader;

use crate::accounts::{self, Endpoint};
use crate::auth::{self, AuthFailure};
use crate::config::AuthMode;
use crate::cors::{CorsPolicy, Preflight};
use crate::error::{ApiError, ErrorCode};
use crate::revocation::RevocationList;
use crate::routes::RouteTable;
use crate::tokens::TokenKeys;
use crate::tokens::{LegacyClaims, SimpleJwt, TokenCache, Verified};

use super::{forward, request};

/// Route label for requests that matched no route.
pub const UNMATCHED: &str = "unmatched";
/// Route label for CORS preflights.
pub const CORS_PREFLIGHT: &str = "cors.preflight";
/// The `Allow` of a refused `CONNECT`.
const TUNNEL_REFUSED_ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// What names a request in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// A route of the table, by index.
    Route(usize),
    /// An endpoint of the gateway's own, or one of the labels above.
    Fixed(&'static str),
}

/// What to do with a request.
pub enum Action {
    /// Answer a CORS preflight: 204 with the decision's CORS headers.
    Preflight,
    /// Answer one of the gateway's own endpoints.
    Account(Endpoint),
    /// Answer this error.
    Reject(ApiError),
    /// Forward to the route's upstream, by the direct path or Pingora's.
    Forward {
        route: usize,
        /// The verified caller (none on a public route or without a token).
        identity: Option<Arc<Verified>>,
        direct: bool,
    },
    /// A valid simplejwt access token (`migration.simplejwt.accept_access`):
    /// the adapter reads its account (off the event loop), refuses an
    /// inactive or missing one, checks the route's roles, then forwards as
    /// `Forward` does. Only tokens that failed vigile's own check get here.
    ForwardLegacy {
        route: usize,
        claims: LegacyClaims,
        direct: bool,
    },
}

/// Who a request on a route is.
enum Access {
    /// Checked here: the caller, or nobody.
    Checked(Option<Arc<Verified>>),
    /// A Django access token, whose account the adapter still has to read.
    Legacy(LegacyClaims),
}

/// The decision on one request.
pub struct Decision {
    pub label: RouteLabel,
    /// The target the upstream gets instead of the client's (normalized).
    pub upstream_target: Option<Bytes>,
    /// CORS headers for the answer (empty without an allowed `Origin`).
    pub cors: Vec<(&'static str, String)>,
    pub action: Action,
}

impl Decision {
    fn new(action: Action) -> Decision {
        Decision {
            label: RouteLabel::Fixed(UNMATCHED),
            upstream_target: None,
            cors: Vec::new(),
            action,
        }
    }

    /// Whether a refusal is an authentication failure on a route (counted
    /// in `vigile_auth_failures_total`; the account endpoints count theirs
    /// with their outcome).
    pub fn is_route_auth_failure(&self) -> bool {
        matches!(
            (&self.action, self.label),
            (Action::Reject(e), RouteLabel::Route(_)) if e.bearer_challenge
        )
    }
}

/// Everything the decision depends on.
pub struct Planner {
    pub routes: RouteTable,
    pub cors: CorsPolicy,
    pub tokens: Arc<TokenKeys>,
    pub revocations: Arc<RevocationList>,
    /// Shared by the proxy services of every worker thread.
    pub verified: Arc<TokenCache>,
    /// `server.direct_path`.
    pub direct_path: bool,
    /// `migration.simplejwt` when it has `accept_access: true`.
    pub simplejwt: Option<Arc<SimpleJwt>>,
}

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

impl Planner {
    /// Decides what to do with `req`. `direct_capable`: the client's session
    /// can take the direct path (HTTP/1, or an HTTP/2 request that can have
    /// no body: its stream ended, or `content-length: 0`).
    pub fn decide(&self, req: &RequestHeader, direct_capable: bool) -> Decision {
        // A tunnel is no request for a route or an endpoint: refused
        // before anything (as Pingora's own refusal of HTTP/1 `CONNECT`,
        // which the connection turns into this answer).
        if req.method == http::Method::CONNECT {
            return Decision::new(Action::Reject(ApiError::method_not_allowed(
                TUNNEL_REFUSED_ALLOW,
            )));
        }
        // One credential, a valid Host, a path that normalizes: what the
        // rest decides on is the normalized path.
        let checked = match request::check(req) {
            Ok(checked) => checked,
            Err(e) => return Decision::new(Action::Reject(e)),
        };
        let mut decision = Decision::new(Action::Preflight);
        decision.upstream_target = checked.upstream_target;
        let method = req.method.as_str();

        // CORS: preflights are answered here, before any authentication.
        if let Some(origin) = header(req, "origin") {
            let preflight = self.cors.preflight(
                method,
                Some(origin),
                header(req, "access-control-request-method"),
                header(req, "access-control-request-headers"),
            );
            match preflight {
                Preflight::No => decision.cors = self.cors.response_headers(origin),
                Preflight::Allowed(headers) => {
                    decision.label = RouteLabel::Fixed(CORS_PREFLIGHT);
                    decision.cors = headers;
                    return decision;
                }
                Preflight::Refused => {
                    decision.label = RouteLabel::Fixed(CORS_PREFLIGHT);
                    decision.action = Action::Reject(ApiError::new(
                        403,
                        ErrorCode::CorsForbidden,
                        "Origine, méthode ou en-tête non autorisé (CORS)",
                    ));
                    return decision;
                }
            }
        }

        let path = checked.path.as_deref().unwrap_or(req.uri.path());
        let path = request::route_path(path);
        // The gateway's own endpoints.
        if let Some(resolved) = accounts::resolve(method, &path) {
            (decision.label, decision.action) = match resolved {
                Ok(endpoint) => (
                    RouteLabel::Fixed(endpoint.name()),
                    Action::Account(endpoint),
                ),
                Err(e) => (
                    RouteLabel::Fixed(accounts::UNKNOWN_ACCOUNT_PATH),
                    Action::Reject(e),
                ),
            };
            return decision;
        }
        // The route table.
        let Some(index) = self.routes.find_index(&path) else {
            decision.action = Action::Reject(ApiError::not_found());
            return decision;
        };
        decision.label = RouteLabel::Route(index);
        let direct = self.direct_path && direct_capable && forward::eligible(req);
        decision.action = match self.check_access(req, index) {
            Ok(Access::Checked(identity)) => Action::Forward {
                route: index,
                identity,
                direct,
            },
            Ok(Access::Legacy(claims)) => Action::ForwardLegacy {
                route: index,
                claims,
                direct,
            },
            Err(e) => Action::Reject(e),
        };
        decision
    }

    /// Authenticate and authorize a request on route `index`.
    fn check_access(&self, req: &RequestHeader, index: usize) -> Result<Access, ApiError> {
        let Some(route) = self.routes.get(index) else {
            return Err(ApiError::not_found());
        };
        if !route.allows(&req.method) {
            return Err(ApiError::method_not_allowed(route.allow()));
        }
        if route.auth == AuthMode::None {
            return Ok(Access::Checked(None));
        }
        let authorization = req
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        // Fail closed: past store.max_staleness without the database, a
        // token revoked on another replica might pass.
        if authorization.is_some() && self.revocations.is_stale() {
            return Err(ApiError::store_unavailable());
        }
        let verdict = auth::authenticate_cached(
            authorization,
            &self.tokens,
            &self.verified,
            &self.revocations,
        );
        let identity = match verdict {
            Ok(None) if route.auth == AuthMode::Required => return Err(AuthFailure::Missing.into()),
            Ok(identity) => identity,
            Err(AuthFailure::Invalid) => return self.legacy_access(authorization),
            Err(failure) => return Err(failure.into()),
        };
        if let Some(who) = &identity {
            auth::authorize(&who.identity, &route.roles)?;
        }
        Ok(Access::Checked(identity))
    }

    /// A token vigile refused as invalid: during the cut-over, maybe a
    /// Django access token.
    fn legacy_access(&self, authorization: Option<&[u8]>) -> Result<Access, ApiError> {
        let invalid = || ApiError::from(AuthFailure::Invalid);
        let (Some(legacy), Some(token)) =
            (&self.simplejwt, authorization.and_then(auth::bearer_token))
        else {
            return Err(invalid());
        };
        match legacy.verify(token, crate::unix_now()) {
            Ok(claims) if !claims.refresh => Ok(Access::Legacy(claims)),
            Err(crate::tokens::TokenError::Expired) => Err(AuthFailure::Expired.into()),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::tokens::{SessionId, Subject};

    const CONFIG: &str = r#"
tokens: {secret_env: SECRET}
cors: {allowed_origins: ["https://app.example"]}
routes:
  - {name: public, prefix: /api/public/, upstream: stocks, auth: none}
  - {name: stocks, prefix: /api/stocks/, upstream: stocks}
  - {name: admin, prefix: /api/stocks/admin/, upstream: stocks, roles: [Admin]}
  - {name: maybe, prefix: /api/maybe/, upstream: stocks, auth: optional}
  - {name: reads, prefix: /api/reads/, upstream: stocks, methods: [GET]}
upstreams:
  stocks: {targets: ["127.0.0.1:9"]}
"#;

    struct Fixture {
        planner: Planner,
        now: u64,
    }

    fn fixture(direct_path: bool) -> Fixture {
        let env = |name: &str| (name == "SECRET").then(|| "s".repeat(32));
        let config = Config::from_yaml(CONFIG, &env).expect("config");
        let tokens = TokenKeys::from_config(&config.tokens, std::path::Path::new("/nonexistent"))
            .expect("keys");
        let routes = RouteTable::new(&config.routes);
        Fixture {
            planner: Planner {
                routes,
                cors: CorsPolicy::new(&config.cors),
                tokens: Arc::new(tokens),
                revocations: Arc::new(RevocationList::new(Vec::new())),
                verified: Arc::new(TokenCache::new(16)),
                direct_path,
                simplejwt: None,
            },
            now: crate::unix_now(),
        }
    }

    impl Fixture {
        fn token(&self, role: &str, session: SessionId) -> String {
            let subject = Subject {
                account_id: 7,
                email: "a@example.com",
                role,
            };
            self.planner
                .tokens
                .issue_access(&subject, session, self.now)
                .expect("token")
        }

        fn decide(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Decision {
            let mut req = RequestHeader::build(method, target.as_bytes(), None).expect("request");
            req.insert_header("host", "gw.example").expect("host");
            for (name, value) in headers {
                req.append_header(name.to_string(), *value).expect("header");
            }
            self.planner.decide(&req, true)
        }
    }

    /// The route name, or the error code, of a decision.
    fn outcome(planner: &Planner, d: &Decision) -> String {
        match &d.action {
            Action::Preflight => "preflight".into(),
            Action::Account(e) => format!("account {}", e.name()),
            Action::Reject(e) => format!("{} {}", e.status, e.code),
            Action::Forward {
                route,
                identity,
                direct,
            } => format!(
                "forward {} as {} {}",
                planner.routes.get(*route).map_or("?", |r| r.name.as_str()),
                identity
                    .as_ref()
                    .map_or("anonymous", |v| v.identity.role.as_str()),
                if *direct { "direct" } else { "pingora" }
            ),
            Action::ForwardLegacy { claims, .. } => {
                format!("forward the Django account {}", claims.account_id)
            }
        }
    }

    #[test]
    fn routes_auth_and_roles_decide_on_the_normalized_path() {
        let f = fixture(true);
        let visitor = format!("Bearer {}", f.token("Visiteur", SessionId(1)));
        let admin = format!("Bearer {}", f.token("Admin", SessionId(2)));
        let cases: [(&str, &str, Option<&str>, &str); 12] = [
            (
                "GET",
                "/api/public/x",
                None,
                "forward public as anonymous direct",
            ),
            ("GET", "/api/stocks/x", None, "401 not_authenticated"),
            (
                "GET",
                "/api/stocks/x",
                Some(&visitor),
                "forward stocks as Visiteur direct",
            ),
            (
                "POST",
                "/api/stocks/x",
                Some(&visitor),
                "forward stocks as Visiteur pingora",
            ),
            (
                "GET",
                "/api/stocks/admin/x",
                Some(&visitor),
                "403 forbidden",
            ),
            (
                "GET",
                "/api/stocks/admin/x",
                Some(&admin),
                "forward admin as Admin direct",
            ),
            // The attacks of path confusion land on the route they name.
            (
                "GET",
                "/api/public/../stocks/admin/x",
                None,
                "401 not_authenticated",
            ),
            (
                "GET",
                "/api/stocks//admin/x",
                Some(&visitor),
                "403 forbidden",
            ),
            (
                "GET",
                "/api/stocks/%2e/admin/x",
                Some(&visitor),
                "403 forbidden",
            ),
            (
                "GET",
                "/api/stocks/admin;x/x",
                Some(&visitor),
                "403 forbidden",
            ),
            (
                "GET",
                "/api/stocks%2Fadmin/x",
                Some(&admin),
                "400 invalid_path",
            ),
            ("GET", "/api/nowhere", None, "404 not_found"),
        ];
        for (method, target, authorization, expected) in cases {
            let headers: Vec<(&str, &str)> = authorization
                .map(|a| ("authorization", a))
                .into_iter()
                .collect();
            let d = f.decide(method, target, &headers);
            assert_eq!(outcome(&f.planner, &d), expected, "{method} {target}");
        }
        let d = f.decide("GET", "/api/public/../stocks/x", &[]);
        assert_eq!(d.upstream_target.as_deref(), Some(&b"/api/stocks/x"[..]));
    }

    #[test]
    fn optional_routes_methods_and_credentials() {
        let f = fixture(true);
        let visitor = format!("Bearer {}", f.token("Visiteur", SessionId(3)));
        let d = f.decide("GET", "/api/maybe/x", &[]);
        assert_eq!(outcome(&f.planner, &d), "forward maybe as anonymous direct");
        let d = f.decide("GET", "/api/maybe/x", &[("authorization", &visitor)]);
        assert_eq!(outcome(&f.planner, &d), "forward maybe as Visiteur direct");
        let d = f.decide("GET", "/api/maybe/x", &[("authorization", "Bearer x.y.z")]);
        assert_eq!(outcome(&f.planner, &d), "401 token_not_valid");
        assert!(d.is_route_auth_failure());
        let d = f.decide(
            "GET",
            "/api/maybe/x",
            &[("authorization", "Basic eDp5"), ("authorization", &visitor)],
        );
        assert_eq!(outcome(&f.planner, &d), "400 invalid_authorization");
        assert!(!d.is_route_auth_failure());
        let d = f.decide("DELETE", "/api/reads/x", &[]);
        assert_eq!(outcome(&f.planner, &d), "405 method_not_allowed");
    }

    #[test]
    fn a_revoked_session_is_refused_even_once_cached() {
        let f = fixture(true);
        let token = format!("Bearer {}", f.token("Visiteur", SessionId(9)));
        let d = f.decide("GET", "/api/stocks/x", &[("authorization", &token)]);
        assert_eq!(outcome(&f.planner, &d), "forward stocks as Visiteur direct");
        f.planner
            .revocations
            .insert_all(&[(SessionId(9), f.now + 3600)]);
        let d = f.decide("GET", "/api/stocks/x", &[("authorization", &token)]);
        assert_eq!(outcome(&f.planner, &d), "401 token_revoked");
    }

    #[test]
    fn stale_revocations_refuse_tokens_but_not_public_routes() {
        let mut f = fixture(true);
        let sync = Arc::new(crate::store::SyncStatus::new(std::time::Duration::ZERO));
        f.planner.revocations = Arc::new(RevocationList::following(Vec::new(), sync.clone()));
        let token = format!("Bearer {}", f.token("Visiteur", SessionId(4)));
        let with_token = |f: &Fixture, path: &str| {
            let d = f.decide("GET", path, &[("authorization", &token)]);
            outcome(&f.planner, &d)
        };
        assert_eq!(
            with_token(&f, "/api/stocks/x"),
            "forward stocks as Visiteur direct"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        sync.failed("database down");
        assert!(sync.is_stale());
        assert_eq!(with_token(&f, "/api/stocks/x"), "503 store_unavailable");
        assert_eq!(with_token(&f, "/api/maybe/x"), "503 store_unavailable");
        let d = f.decide("GET", "/api/stocks/x", &[("authorization", &token)]);
        let Action::Reject(e) = &d.action else {
            panic!("refused")
        };
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(
            with_token(&f, "/api/public/x"),
            "forward public as anonymous direct"
        );
        sync.synced();
        assert_eq!(
            with_token(&f, "/api/stocks/x"),
            "forward stocks as Visiteur direct"
        );
    }

    #[test]
    fn account_endpoints_cors_and_the_direct_path_switch() {
        let f = fixture(true);
        let d = f.decide("POST", "/api/accounts/login/", &[]);
        assert_eq!(outcome(&f.planner, &d), "account accounts.login");
        assert_eq!(d.label, RouteLabel::Fixed("accounts.login"));
        let d = f.decide("GET", "/api/accounts/login/", &[]);
        assert_eq!(outcome(&f.planner, &d), "405 method_not_allowed");
        let d = f.decide("GET", "/api/accounts/nothing", &[]);
        assert_eq!(d.label, RouteLabel::Fixed(accounts::UNKNOWN_ACCOUNT_PATH));
        // A preflight is answered before any authentication.
        let preflight = [
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ];
        let d = f.decide("OPTIONS", "/api/stocks/x", &preflight);
        assert_eq!(outcome(&f.planner, &d), "preflight");
        assert!(!d.cors.is_empty());
        let d = f.decide(
            "OPTIONS",
            "/api/stocks/x",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        );
        assert_eq!(outcome(&f.planner, &d), "403 cors_forbidden");
        // An allowed origin on a plain request gets its CORS headers.
        let d = f.decide("GET", "/api/public/x", &[("origin", "https://app.example")]);
        assert!(d
            .cors
            .iter()
            .any(|(name, value)| *name == "Access-Control-Allow-Origin"
                && value == "https://app.example"));
        // With the direct path off, or an HTTP/2 client, Pingora's path.
        let off = fixture(false);
        let d = off.decide("GET", "/api/public/x", &[]);
        assert_eq!(
            outcome(&off.planner, &d),
            "forward public as anonymous pingora"
        );
        let mut req = RequestHeader::build("GET", b"/api/public/x", None).expect("request");
        req.insert_header("host", "gw.example").expect("host");
        let d = f.planner.decide(&req, false);
        assert_eq!(
            outcome(&f.planner, &d),
            "forward public as anonymous pingora"
        );
    }
}

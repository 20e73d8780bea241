//! The admin listener (keep it on loopback): `/metrics` (Prometheus text),
//! `/healthz` (the process answers), `/readyz` (store readable, revocations
//! current, every upstream with a healthy target; `reasons` says what is not), and `POST /admin/v1/command`, the operator channel
//! the CLI uses while a gateway holds the store. That channel takes the token
//! the gateway writes at start to `<data dir>/admin.token` (mode 0600): only
//! the operator's account can read it.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;
use pingora::ErrorType;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::accounts::OperatorCommand;
use crate::connections::{Edge, EdgeApp};
use crate::error::{ApiError, ErrorCode};
use crate::reload::{Reloader, RELOAD_PATH};
use crate::state::Gateway;

pub const COMMAND_PATH: &str = "/admin/v1/command";

/// The longest `/readyz` waits for the store.
const READY_STORE_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

pub struct AdminApp {
    gateway: Arc<Gateway>,
    reloader: Arc<Reloader>,
}

/// The admin listener's service: `AdminApp` under the edge's connection
/// rules (`server.header_timeout`; its connections have their own cap,
/// `ADMIN_MAX_CONNECTIONS`, and are not counted against
/// `server.max_connections`, so a flood of the proxy leaves it reachable).
pub fn service(
    gateway: Arc<Gateway>,
    reloader: Arc<Reloader>,
    edge: &'static Edge,
) -> Service<EdgeApp<AdminApp>> {
    Service::new(
        "admin".to_string(),
        EdgeApp::new(AdminApp { gateway, reloader }, edge),
    )
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn json_reply(status: u16, value: &serde_json::Value) -> Response<Vec<u8>> {
    reply(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

fn error_reply(e: &ApiError) -> Response<Vec<u8>> {
    reply(e.status, "application/json", e.body())
}

impl AdminApp {
    async fn ready(&self) -> Response<Vec<u8>> {
        // A store call blocks (a database round trip): off the async task.
        let store = self.gateway.accounts.store.clone();
        // A probe must answer quickly, even while the database hangs.
        let store_ok = tokio::task::spawn_blocking(move || {
            crate::store::within(READY_STORE_BUDGET, || store.account_count().is_ok())
        })
        .await
        .unwrap_or(false);
        let live = self.reloader.lives().load_full();
        let unhealthy: Vec<&str> = live
            .pools
            .iter()
            .filter(|p| p.healthy_targets() == 0)
            .map(|p| p.name.as_str())
            .collect();
        // A replica on a shared store: how current its revocations are.
        let sync = &self.gateway.accounts.revocations.sync;
        let stale = sync.is_stale();
        let ready = store_ok && !stale && unhealthy.is_empty();
        let mut reasons = Vec::new();
        if !store_ok {
            reasons.push("the store cannot be read".to_string());
        }
        if stale {
            reasons.push(format!(
                "no sync with the database for longer than store.max_staleness \
                 (protected routes answer 503){}",
                sync.last_error()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        if !unhealthy.is_empty() {
            reasons.push(format!(
                "upstreams without a healthy target: {}",
                unhealthy.join(", ")
            ));
        }
        json_reply(
            if ready { 200 } else { 503 },
            &json!({"ready": ready, "store": store_ok, "revocations_stale": stale,
                    "upstreams_without_healthy_target": unhealthy, "reasons": reasons}),
        )
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let sent = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| crate::auth::bearer_token(v.as_bytes()))
            .unwrap_or("");
        let expected = self.gateway.admin_token.as_bytes();
        sent.len() == expected.len() && bool::from(sent.as_bytes().ct_eq(expected))
    }

    /// The body of an operator's request, once its token is checked.
    async fn operator_body(&self, session: &mut ServerSession) -> Result<Vec<u8>, ApiError> {
        if !self.authorized(session) {
            return Err(ApiError::new(
                401,
                ErrorCode::NotAuthenticated,
                "Jeton d'opérateur absent ou invalide",
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|_| ApiError::invalid_json())?
        {
            if body.len() + chunk.len() > crate::accounts::MAX_BODY {
                return Err(ApiError::body_too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// `vigile reload`: 200 with what is in force now, or 422
    /// `reload_refused` with the reason (the running configuration stays).
    async fn reload(&self, session: &mut ServerSession) -> Result<serde_json::Value, ApiError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Request {
            config: Option<std::path::PathBuf>,
        }
        let body = self.operator_body(session).await?;
        let request: Request =
            serde_json::from_slice(&body).map_err(|_| ApiError::invalid_json())?;
        let origin = crate::audit::Origin::OPERATOR;
        match self.reloader.reload(request.config, &origin).await {
            Ok(done) => Ok(json!({"reloaded": true, "config": done.path, "sha256": done.sha256})),
            Err(message) => Err(ApiError::new(422, ErrorCode::ReloadRefused, message)),
        }
    }

    async fn command(&self, session: &mut ServerSession) -> Result<serde_json::Value, ApiError> {
        let body = self.operator_body(session).await?;
        let command: OperatorCommand =
            serde_json::from_slice(&body).map_err(|_| ApiError::invalid_json())?;
        let accounts = self.gateway.accounts.clone();
        let hashes = matches!(command, OperatorCommand::CreateUser { .. });
        let job = move || crate::accounts::operator::execute(&accounts, command);
        let result = if hashes {
            self.gateway.hash_pool.run(job).await??
        } else {
            tokio::task::spawn_blocking(job)
                .await
                .map_err(|_| ApiError::internal())??
        };
        serde_json::to_value(result).map_err(|_| ApiError::internal())
    }
}

/// Pingora's `HttpServer` logs a request it cannot read whole, at ERROR,
/// operator token included: this loop reads the head itself and logs only
/// the kind of error.
#[async_trait]
impl HttpServerApp for AdminApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match http.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(
                    target: "vigile::admin",
                    error = e.etype().as_str(),
                    "unreadable request"
                );
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    // Pingora's bare 400, which the edge stream turns into
                    // the JSON error.
                    let _ = http.respond_error(400).await;
                }
                http.shutdown().await;
                return None;
            }
        }
        crate::connections::head_received(&http);
        http.set_keepalive((!*shutdown.borrow()).then_some(60));
        let (parts, body) = self.response(&mut http).await.into_parts();
        let header: ResponseHeader = parts.into();
        if let Err(e) = http.write_response_header(Box::new(header)).await {
            tracing::debug!(target: "vigile::admin", error = e.etype().as_str(), "cannot answer");
            return None;
        }
        if !body.is_empty() {
            if let Err(e) = http.write_response_body(body.into(), true).await {
                tracing::debug!(target: "vigile::admin", error = e.etype().as_str(), "cannot answer");
                return None;
            }
        }
        let settings = HttpPersistentSettings::for_session(&http);
        http.finish()
            .await
            .ok()
            .flatten()
            .map(|s| ReusedHttpStream::from_reusable_stream(s, settings))
    }
}

impl AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => json_reply(200, &json!({"status": "ok"})),
            ("GET", "/readyz") => self.ready().await,
            ("GET", "/metrics") => {
                self.gateway
                    .refresh_gauges(&self.reloader.lives().load().pools);
                reply(
                    200,
                    "text/plain; version=0.0.4",
                    self.gateway.metrics.render(),
                )
            }
            ("POST", COMMAND_PATH) => match self.command(session).await {
                Ok(value) => json_reply(200, &value),
                Err(e) => error_reply(&e),
            },
            ("POST", RELOAD_PATH) => match self.reload(session).await {
                Ok(value) => json_reply(200, &value),
                Err(e) => error_reply(&e),
            },
            (_, "/healthz" | "/readyz" | "/metrics") => {
                error_reply(&ApiError::method_not_allowed("GET"))
            }
            (_, COMMAND_PATH | RELOAD_PATH) => error_reply(&ApiError::method_not_allowed("POST")),
            _ => error_reply(&ApiError::not_found()),
        }
    }
}

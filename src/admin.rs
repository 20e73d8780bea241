//! The admin listener (keep it on loopback): `/metrics` (Prometheus text),
//! `/healthz` (the process answers), `/readyz` (store readable, every upstream
//! with a healthy target), and `POST /admin/v1/command`, the operator channel
//! the CLI uses while a gateway holds the store. That channel takes the token
//! the gateway writes at start to `<data dir>/admin.token` (mode 0600): only
//! the operator's account can read it.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::accounts::OperatorCommand;
use crate::error::ApiError;
use crate::gateway::{Gateway, UpstreamPool};

pub const COMMAND_PATH: &str = "/admin/v1/command";

pub struct AdminApp {
    gateway: Arc<Gateway>,
    pools: Arc<Vec<UpstreamPool>>,
}

pub fn service(
    gateway: Arc<Gateway>,
    pools: Arc<Vec<UpstreamPool>>,
) -> Service<HttpServer<AdminApp>> {
    Service::new(
        "admin".to_string(),
        HttpServer::new_app(AdminApp { gateway, pools }),
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
    fn ready(&self) -> Response<Vec<u8>> {
        let store_ok = self.gateway.accounts.store.account_count().is_ok();
        let unhealthy: Vec<&str> = self
            .pools
            .iter()
            .filter(|p| p.healthy_targets() == 0)
            .map(|p| p.name.as_str())
            .collect();
        let ready = store_ok && unhealthy.is_empty();
        json_reply(
            if ready { 200 } else { 503 },
            &json!({"ready": ready, "store": store_ok, "upstreams_without_healthy_target": unhealthy}),
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

    async fn command(&self, session: &mut ServerSession) -> Result<serde_json::Value, ApiError> {
        if !self.authorized(session) {
            return Err(ApiError::new(
                401,
                "not_authenticated",
                "Jeton d'opérateur absent ou invalide",
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|_| ApiError::invalid_json())?
        {
            if body.len() + chunk.len() > crate::proxy::MAX_BODY {
                return Err(ApiError::body_too_large());
            }
            body.extend_from_slice(&chunk);
        }
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

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => json_reply(200, &json!({"status": "ok"})),
            ("GET", "/readyz") => self.ready(),
            ("GET", "/metrics") => {
                crate::gateway::refresh_gauges(&self.gateway, &self.pools);
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
            (_, "/healthz" | "/readyz" | "/metrics") => {
                error_reply(&ApiError::method_not_allowed("GET"))
            }
            (_, COMMAND_PATH) => error_reply(&ApiError::method_not_allowed("POST")),
            _ => error_reply(&ApiError::not_found()),
        }
    }
}

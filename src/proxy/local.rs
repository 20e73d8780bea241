//! The gateway's own endpoints on the proxy listener: the body read with
//! its limits, the handler run on the hashing or blocking pool, the outcome
//! counted.

use std::time::Duration;

use pingora::proxy::Session;

use super::Proxy;
use crate::accounts::{AccountRequest, Endpoint, Reply, MAX_BODY};
use crate::error::{ApiError, ErrorCode};

/// How long a client may take to send that body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

impl Proxy {
    /// Reads the body of a request the gateway answers itself, up to `MAX_BODY`.
    pub(super) async fn read_body(session: &mut Session) -> Result<Vec<u8>, ApiError> {
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(ApiError::body_too_large());
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
        let read = async {
            while let Some(chunk) = session
                .read_request_body()
                .await
                .map_err(|_| ApiError::invalid_json())?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ApiError::body_too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(result) => result.map(|_| body),
            Err(_) => Err(ApiError::new(
                408,
                ErrorCode::RequestTimeout,
                "Le corps de la requête est arrivé trop lentement",
            )),
        }
    }

    /// Runs one account endpoint on the blocking pool.
    pub(super) async fn answer_account(
        &self,
        session: &mut Session,
        endpoint: Endpoint,
        request_id: &str,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<Reply, ApiError> {
        let body = Self::read_body(session).await?;
        let request_id = request_id.to_string();
        let authorization = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let accounts = self.gateway.accounts.clone();
        // The store budget runs from now: time spent waiting for a hashing
        // thread counts (they may all be held by calls to a database that
        // hangs).
        let deadline = std::time::Instant::now() + crate::accounts::STORE_BUDGET;
        let job = move || {
            crate::store::until(deadline, || {
                accounts.handle(&AccountRequest {
                    endpoint,
                    authorization: authorization.as_deref(),
                    body: &body,
                    client_ip,
                    request_id: &request_id,
                })
            })
        };
        if endpoint.hashes() {
            self.gateway.hash_pool.run(job).await?
        } else {
            tokio::task::spawn_blocking(job)
                .await
                .map_err(|_| ApiError::internal())?
        }
    }

    pub(super) fn count_account_result(
        &self,
        endpoint: Endpoint,
        result: &Result<Reply, ApiError>,
    ) {
        let m = &self.gateway.metrics;
        let outcome = match result {
            Ok(_) => "success",
            Err(e) => e.code.as_str(),
        };
        match endpoint {
            Endpoint::Login => m.logins.with_label_values(&[outcome]).inc(),
            Endpoint::Register => m.registrations.with_label_values(&[outcome]).inc(),
            Endpoint::Refresh => m.refreshes.with_label_values(&[outcome]).inc(),
            _ => {}
        }
        if let Err(e) = result {
            if e.bearer_challenge {
                m.auth_failures.with_label_values(&[e.code.as_str()]).inc();
            }
        }
    }
}

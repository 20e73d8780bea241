//! What a failure on Pingora's path means for the client and the metrics:
//! the JSON error (none when the client itself is gone) and the `kind` of
//! `vigile_upstream_errors_total` (`downstream`: not counted there).

use pingora::{Error, ErrorType};

use crate::error::ApiError;

/// The client's answer and the error's kind; `deadline_expired`: the
/// request's answer-head deadline passed (`deadline.rs`).
pub(super) fn classify(e: &Error, deadline_expired: bool) -> (Option<ApiError>, &'static str) {
    match e.etype() {
        _ if deadline_expired => (Some(ApiError::upstream_timeout()), "timeout"),
        // A client that read nothing of its answer within the write
        // timeout (an HTTP/2 stream without flow-control window): its own
        // doing, and no answer can reach it.
        ErrorType::WriteTimedout if e.esource() == &pingora::ErrorSource::Downstream => {
            (None, "downstream")
        }
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            (Some(ApiError::upstream_timeout()), "timeout")
        }
        ErrorType::HTTPStatus(502) => (Some(ApiError::upstream_unavailable()), "no_healthy_target"),
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error
            if e.esource() == &pingora::ErrorSource::Upstream =>
        {
            (Some(ApiError::upstream_unavailable()), "invalid_response")
        }
        // The upstream's certificate refused, or the handshake failed.
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
            if e.esource() != &pingora::ErrorSource::Downstream =>
        {
            (Some(ApiError::upstream_unavailable()), "tls")
        }
        _ => match e.esource() {
            pingora::ErrorSource::Upstream => (Some(ApiError::upstream_unavailable()), "connect"),
            pingora::ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    (None, "downstream")
                }
                _ => (Some(ApiError::bad_request(400)), "downstream"),
            },
            _ => (Some(ApiError::internal()), "internal"),
        },
    }
}

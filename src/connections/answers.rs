//! Answers written below HTTP: vigile's JSON errors in place of Pingora's
//! bare refusals, the head deadline's 408, the connection cap's 503.

use crate::error::{ApiError, ErrorCode};

/// Largest request head Pingora reads (`MAX_HEADER_SIZE` in pingora-core);
/// a refusal past this many bytes is answered 431.
pub(super) const PINGORA_MAX_HEAD: usize = 1_048_575;

/// A complete HTTP/1.1 answer carrying `e`'s JSON body; the connection closes.
pub fn error_response(e: &ApiError, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = e.body();
    let reason = http::StatusCode::from_u16(e.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        e.status,
        body.len()
    );
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

pub(super) fn head_timeout() -> ApiError {
    ApiError::new(
        408,
        ErrorCode::RequestTimeout,
        "L'en-tête de la requête est arrivé trop lentement",
    )
}

pub(super) fn too_many_connections() -> Vec<u8> {
    error_response(&ApiError::too_many_connections(), &[("Retry-After", "1")])
}

/// vigile's answer for the refusal Pingora was about to write (`pingora`,
/// its status line first), after `head_bytes` bytes of head.
pub(super) fn refusal_answer(pingora: &[u8], head_bytes: usize) -> Vec<u8> {
    let status = pingora
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(400);
    match status {
        405 => error_response(
            &ApiError::method_not_allowed("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            &[("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")],
        ),
        400 if head_bytes >= PINGORA_MAX_HEAD => error_response(
            &ApiError::new(
                431,
                ErrorCode::RequestHeaderTooLarge,
                "Les en-têtes de la requête sont trop volumineux",
            ),
            &[],
        ),
        400..=499 => error_response(&ApiError::bad_request(400), &[]),
        other => error_response(&ApiError::bad_request(other), &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(answer: &[u8]) -> serde_json::Value {
        let text = String::from_utf8_lossy(answer);
        let (_, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        serde_json::from_str(body).expect("JSON")
    }

    #[test]
    fn refusals_become_json_errors() {
        let pingora = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 0\r\n\r\n";
        let answer = refusal_answer(pingora, 300);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(
            text.contains("\r\nContent-Type: application/json\r\n"),
            "{text}"
        );
        let body = body_of(&answer);
        assert_eq!(body["code"], "bad_request");
        assert_eq!(body["error"], "Requête invalide");
        let length = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse::<usize>().ok())
            .expect("Content-Length");
        assert_eq!(length, serde_json::to_vec(&body).expect("json").len());

        let big = refusal_answer(pingora, PINGORA_MAX_HEAD + 1);
        assert!(big.starts_with(b"HTTP/1.1 431 "));
        assert_eq!(body_of(&big)["code"], "request_header_too_large");

        let connect = refusal_answer(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n", 40);
        assert!(connect.starts_with(b"HTTP/1.1 405 "));
        assert_eq!(body_of(&connect)["code"], "method_not_allowed");
        assert!(String::from_utf8_lossy(&connect).contains("\r\nAllow: "));
    }

    #[test]
    fn too_many_connections_is_a_short_json_503() {
        let answer = too_many_connections();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nRetry-After: 1\r\n"));
        assert_eq!(body_of(&answer)["code"], "too_many_connections");
    }
}

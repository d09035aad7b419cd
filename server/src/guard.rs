//! What every HTTP request goes through before and after its handler: a
//! declared body over any endpoint's limit is refused at once, a request
//! must be answered within [`REQUEST_TIMEOUT`] (so a body that trickles in
//! cannot hold a connection open), the URI and header sizes are checked,
//! and every error answer carries the JSON error body of
//! `docs/protocol.md` §3, including the ones the router makes itself (an
//! unsupported method).

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_protocol::http::HttpError;

use crate::admin::MAX_TRUST_LIST_HTTP_BODY_BYTES;

/// How long the relay gives a request (reading its body included) before
/// answering `408 request_timeout`. WebSocket upgrades answer at once; the
/// connection that follows has its own deadlines (`ws`).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest request target (path and query) the relay reads; longer
/// gets `414 uri_too_long`.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most header bytes (names and values) a request may carry; more gets
/// `431 headers_too_large`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The largest body any endpoint takes; a request declaring more in
/// `Content-Length` is refused before its body is read.
pub const MAX_ANY_BODY_BYTES: usize = MAX_TRUST_LIST_HTTP_BODY_BYTES;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = HttpError {
        code: code.into(),
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

/// The middleware (`axum::middleware::from_fn`).
pub async fn guard(request: Request, next: Next) -> Response {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return error(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "the request target is too long",
        );
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "the request headers are too large",
        );
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_ANY_BODY_BYTES as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        );
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => with_error_body(response),
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request was not complete in time",
        ),
    }
}

/// An error answer without the JSON error body (made by the router or a
/// library, such as a refused WebSocket upgrade, not by the relay's own
/// errors) gets it.
fn with_error_body(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "the endpoint does not take this method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("bad_request", "the body is not of the expected type")
        }
        StatusCode::UPGRADE_REQUIRED => ("upgrade_required", "this endpoint is a WebSocket"),
        s if s.is_server_error() => ("internal", "internal relay error"),
        _ => ("bad_request", "the request is not valid"),
    };
    let mut answer = error(status, code, message);
    for name in [
        header::ALLOW,
        header::UPGRADE,
        header::SEC_WEBSOCKET_VERSION,
    ] {
        if let Some(value) = response.headers().get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

//! Errors as HTTP responses: a status, a stable code, and a body with `message` and `detail`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use homebase_identity::{IdentityError, Unauthorized};
use homebase_runtime::RuntimeError;
use http::StatusCode;
use serde::Serialize;
use serde_json::json;

/// An error answered by Homebase itself (not by a function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: String,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    detail: &'a str,
    code: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), detail: detail.into() }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { message: &self.message, detail: &self.detail, code: self.code };
        (self.status, Json(body)).into_response()
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> Self {
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, error.code(), error.to_string(), error.detail())
    }
}

/// A refused credential: a 401 with the body every Homebase error has (`message`, `detail`,
/// `code`) plus the `error: "Unauthorized"` the Base44 dev server answers with.
pub(crate) fn unauthorized(error: Unauthorized) -> Response {
    let body = json!({
        "message": error.message,
        "detail": error.detail,
        "code": "unauthorized",
        "error": "Unauthorized",
    });
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// A refused credential (401), or the store failing while identity read a user.
pub(crate) fn identity_error(error: IdentityError) -> Response {
    match error {
        IdentityError::Unauthorized(error) => unauthorized(error),
        IdentityError::Store(error) => crate::manage::store_error(error).into_response(),
    }
}

/// Marks a response that a function wrote: it goes to the caller as it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FromFunction;

/// The one place that gives every error Homebase answers a JSON body with `message`, `detail`
/// and `code`: a 4xx or 5xx response that is neither a function's nor JSON already (axum's
/// rejections: 413 past a body limit, 405, a `Json`/`Query`/`Path` extractor's 400/415/422, a
/// body that could not be read) gets one, its text kept as the detail. Other headers (`Allow`,
/// `Retry-After`, CORS) stay.
pub(crate) async fn json_error_body(method: &http::Method, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<FromFunction>().is_some()
        || is_json(response.headers())
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Rejection texts are a line; a longer body is not ours to quote.
    let text = axum::body::to_bytes(body, 2048).await.map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let text = text.unwrap_or_default();
    let allowed = parts.headers.get(http::header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (code, message, hint) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            "The request body is too large".to_string(),
            "The management API takes bodies of up to 32 MB (a deploy's files up to 16 MB), the other API routes up \
             to 2 MB; send less."
                .to_string(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("This route does not take {method}"),
            if allowed.is_empty() { "Use another method.".to_string() } else { format!("Use {allowed}.") },
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "The request body's Content-Type is not one this route takes".to_string(),
            "Send JSON with `Content-Type: application/json`.".to_string(),
        ),
        StatusCode::NOT_FOUND => (
            "not_found",
            "Nothing was found at this path".to_string(),
            "Check the ids and names in the URL.".to_string(),
        ),
        s if s.is_client_error() => (
            "bad_request",
            "The request is not valid".to_string(),
            "Fix the request as the detail says and send it again.".to_string(),
        ),
        s => (
            "unavailable",
            s.canonical_reason().unwrap_or("The server could not answer").to_string(),
            "Retry later; the server log has the details.".to_string(),
        ),
    };
    let detail = if text.is_empty() { hint } else { format!("{text}. {hint}") };
    let rewritten = ApiError::new(status, code, message, detail).into_response();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.remove(http::header::CONTENT_TYPE);
    let (new_parts, body) = rewritten.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"))
}

//! Errors as HTTP responses: a status, a stable code, and a body with `message` and `detail`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use homebase_runtime::RuntimeError;
use http::StatusCode;
use serde::Serialize;

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

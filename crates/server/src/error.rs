//! Errors as HTTP responses, through one table: every error Homebase answers itself carries a
//! stable code of [`ErrorCode`], which alone decides its HTTP status, and a body with `message`,
//! `detail` and `code`. The failures of the crates below (`StoreError`, `RuntimeError`, the
//! identity crate's refusals) become [`ApiError`]s here and nowhere else. `docs/errors.md` lists
//! the same table for users, with what to do about each code; a test below keeps the two equal.

use axum::Json;
use axum::response::{IntoResponse, Response};
use homebase_identity::{IdentityError, Unauthorized};
use homebase_project::AutomationError;
use homebase_runtime::RuntimeError;
use homebase_store::StoreError;
use http::StatusCode;
use serde::Serialize;

/// Declares [`ErrorCode`] from one table: variant, wire code, HTTP status, meaning.
macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:ident, $meaning:literal;)*) => {
        /// Every stable code of an error body, with its status and meaning (`docs/errors.md`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as the body's `code` field carries it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The one HTTP status of the code.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }

            /// What the code means, in a sentence.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)*
                }
            }
        }
    };
}

error_codes! {
    // Any route.
    BadRequest = "bad_request", BAD_REQUEST,
        "The request could not be read: a path or query parameter that is not valid, or a body that could not be received.";
    BadJson = "bad_json", BAD_REQUEST, "The body is not the JSON the route takes.";
    Invalid = "invalid", BAD_REQUEST, "A value in the request is malformed (an empty name, a password that is too short, an escaping path).";
    Unauthorized = "unauthorized", UNAUTHORIZED, "The request carries no credential, or one that is not valid here.";
    Forbidden = "forbidden", FORBIDDEN, "The caller is known but may not do this.";
    OriginNotAllowed = "origin_not_allowed", FORBIDDEN, "A browser preflight came from an origin the CORS policy does not allow.";
    NotFound = "not_found", NOT_FOUND, "The thing the URL names does not exist.";
    RouteNotFound = "route_not_found", NOT_FOUND, "No route takes this path.";
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, "The route does not take this method.";
    Conflict = "conflict", CONFLICT, "The request contradicts what is stored.";
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE, "The request body is larger than the route takes.";
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body's Content-Type is not one the route takes.";
    Internal = "internal", INTERNAL_SERVER_ERROR, "Homebase failed in a way the caller cannot fix.";
    Io = "io", INTERNAL_SERVER_ERROR, "A file-system operation of the server failed.";
    Database = "database", INTERNAL_SERVER_ERROR, "The database failed (corruption, a full disk, a bug).";
    SchemaTooNew = "schema_too_new", INTERNAL_SERVER_ERROR, "The database was written by a newer Homebase.";
    NotImplemented = "not_implemented", NOT_IMPLEMENTED, "A Base44 feature Homebase does not serve yet.";
    Unavailable = "unavailable", SERVICE_UNAVAILABLE, "The server cannot answer this right now.";
    DatabaseBusy = "database_busy", SERVICE_UNAVAILABLE, "The database stayed locked by another writer for too long.";
    DatabaseUnavailable = "database_unavailable", SERVICE_UNAVAILABLE, "The database server cannot be reached.";
    TooManyConnections = "too_many_connections", SERVICE_UNAVAILABLE, "The server, or the functions' API socket, has as many connections open as it allows.";
    ShuttingDown = "shutting_down", SERVICE_UNAVAILABLE, "The server is stopping and takes no new requests.";

    // Function routes.
    AppNotFound = "app_not_found", NOT_FOUND, "No app has this id.";
    FunctionNotFound = "function_not_found", NOT_FOUND, "The app has no function of this name.";
    DuplicateAuthorization = "duplicate_authorization", BAD_REQUEST, "The request has more than one Authorization header.";
    BadPath = "bad_path", BAD_REQUEST, "The path after the function's name cannot be passed on.";
    FunctionError = "function_error", INTERNAL_SERVER_ERROR, "The function threw an error it did not catch (answered by the worker).";
    FunctionBadResponse = "function_bad_response", INTERNAL_SERVER_ERROR, "The function's handler returned something other than a Response (answered by the worker).";
    DenoUnavailable = "deno_unavailable", INTERNAL_SERVER_ERROR, "The server could not find or start Deno.";
    SandboxUnavailable = "sandbox_unavailable", INTERNAL_SERVER_ERROR, "The sandbox functions run in cannot be set up on this machine.";
    FunctionInvalid = "function_invalid", BAD_GATEWAY, "The function's definition is broken, so it cannot run.";
    FunctionBootFailed = "function_boot_failed", BAD_GATEWAY, "The function's worker could not start (a load error, or it exited).";
    FunctionCrashed = "function_crashed", BAD_GATEWAY, "The function's worker died while it handled the request.";
    FunctionBusy = "function_busy", SERVICE_UNAVAILABLE, "The function has as many requests in flight as one function may.";
    ServerBusy = "server_busy", SERVICE_UNAVAILABLE, "Functions have as many requests in flight together as the server allows.";
    OutOfMemory = "out_of_memory", BAD_GATEWAY, "The function's worker used more memory than function-memory allows and was stopped.";
    ConcurrencyLimit = "concurrency_limit", SERVICE_UNAVAILABLE, "The function has function-concurrency requests in flight and as many waiting.";
    TooManyWorkers = "too_many_workers", SERVICE_UNAVAILABLE, "max-workers workers are running, none idle, and the function needed a new one.";
    FunctionTimeout = "function_timeout", GATEWAY_TIMEOUT, "The function did not answer within the function timeout.";

    // Management API: deploys, secrets, the network list.
    InvalidName = "invalid_name", UNPROCESSABLE_ENTITY, "The function's name breaks a naming rule.";
    InvalidAutomation = "invalid_automation", UNPROCESSABLE_ENTITY, "An automation of the deploy breaks the automation schema.";
    ModuleInvalid = "module_invalid", UNPROCESSABLE_ENTITY, "Deno could not load the deployed code or its imports.";
    TooManyFunctions = "too_many_functions", UNPROCESSABLE_ENTITY, "The app already has the most functions an app may have.";
    FileTooLarge = "file_too_large", PAYLOAD_TOO_LARGE, "A file of the deploy is larger than a file may be.";
    DeployTooLarge = "deploy_too_large", PAYLOAD_TOO_LARGE, "The deploy's files together are larger than a deploy may be.";
    TooManyChecks = "too_many_checks", TOO_MANY_REQUESTS, "Every slot for checking deploys is taken.";
    CheckTimeout = "check_timeout", GATEWAY_TIMEOUT, "Loading the deployed code's imports took longer than the check may.";
    InvalidSecrets = "invalid_secrets", BAD_REQUEST, "The secrets sent are not a JSON object of names to strings, or a name may not be used.";
    SecretNotFound = "secret_not_found", NOT_FOUND, "The app has no secret of this name.";
    InvalidNetAllow = "invalid_net_allow", BAD_REQUEST, "The function-net-allow list has an entry that is not an address, a CIDR block or *.";

    // Logs API.
    InvalidParameter = "invalid_parameter", BAD_REQUEST, "A query parameter of the logs API is not valid.";

    // App users, and their management routes.
    MissingField = "missing_field", BAD_REQUEST, "The body lacks a field the route needs.";
    BadField = "bad_field", BAD_REQUEST, "A field of the body has the wrong type.";
    InvalidEmail = "invalid_email", BAD_REQUEST, "An e-mail address is malformed.";
    ProtectedField = "protected_field", BAD_REQUEST, "updateMe tried to change a field the platform manages.";
    NoUser = "no_user", BAD_REQUEST, "The service role has no user record or password for this.";
    WrongPassword = "wrong_password", BAD_REQUEST, "The current password given to change-password is wrong.";
    InvalidCode = "invalid_code", BAD_REQUEST, "The verification code is wrong, used or expired.";
    InvalidResetToken = "invalid_reset_token", BAD_REQUEST, "The password reset token is wrong, used or expired.";
    InvalidCredentials = "invalid_credentials", UNAUTHORIZED, "The e-mail or the password of a login is wrong.";
    UserDisabled = "user_disabled", FORBIDDEN, "The user is disabled.";
    EmailNotVerified = "email_not_verified", FORBIDDEN, "The user has not verified the e-mail address yet.";
    UserNotFound = "user_not_found", NOT_FOUND, "The app has no such user.";
    UserExists = "user_exists", CONFLICT, "An account with this e-mail already exists in the app.";
    TooManyAttempts = "too_many_attempts", TOO_MANY_REQUESTS, "Too many failed logins, wrong codes or mail requests for the account or from the address.";

    // App data (entities).
    EntityNotFound = "entity_not_found", NOT_FOUND, "The app has no entity of this name.";
    RecordNotFound = "record_not_found", NOT_FOUND, "The record does not exist, or the entity's access rules hide it from the caller.";
    InvalidQuery = "invalid_query", BAD_REQUEST, "A query, sort or update cannot be expressed (an operator Homebase lacks) or is malformed.";
    ValidationError = "validation_error", UNPROCESSABLE_ENTITY, "A record does not fit its entity's schema.";
    PermissionDenied = "permission_denied", FORBIDDEN, "The entity's access rules do not let the caller create the record or set the field.";
}

/// An error answered by Homebase itself (not by a function). Its status is its code's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub detail: String,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    detail: &'a str,
    code: &'a str,
    /// `"Unauthorized"` on 401s, what the Base44 dev server answers with.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), detail: detail.into() }
    }

    /// The HTTP status, from the table.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// A deploy's function name that breaks a naming rule (`homebase_project::name_problem`).
    pub fn invalid_name(problem: String) -> Self {
        ApiError::new(ErrorCode::InvalidName, problem, "Function names are folder paths like 'email/send'.")
    }

    /// An automation of function `name`'s deploy that breaks the schema; the detail is the
    /// error's hint, or where the schema is described.
    pub fn invalid_automation(name: &str, error: AutomationError) -> Self {
        let detail = error.hint.clone().unwrap_or_else(|| {
            "Fix the field the message names; the automation schema is in docs/project-layout.md (Automations)."
                .to_string()
        });
        ApiError::new(ErrorCode::InvalidAutomation, format!("Function '{name}': {error}"), detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = (self.code == ErrorCode::Unauthorized).then_some("Unauthorized");
        let body = Body { message: &self.message, detail: &self.detail, code: self.code.as_str(), error };
        (self.code.status(), Json(body)).into_response()
    }
}

/// The code of a runtime failure.
fn runtime_code(error: &RuntimeError) -> ErrorCode {
    match error {
        RuntimeError::Deno { .. } => ErrorCode::DenoUnavailable,
        RuntimeError::BootFailed { .. } => ErrorCode::FunctionBootFailed,
        RuntimeError::Crashed { .. } => ErrorCode::FunctionCrashed,
        RuntimeError::Timeout { .. } => ErrorCode::FunctionTimeout,
        RuntimeError::ShuttingDown => ErrorCode::ShuttingDown,
        RuntimeError::Overloaded { all_workers: false, .. } => ErrorCode::FunctionBusy,
        RuntimeError::Overloaded { all_workers: true, .. } => ErrorCode::ServerBusy,
        RuntimeError::ModuleInvalid { .. } => ErrorCode::ModuleInvalid,
        RuntimeError::CheckTimeout { .. } => ErrorCode::CheckTimeout,
        RuntimeError::Busy { .. } => ErrorCode::TooManyChecks,
        RuntimeError::Sandbox { .. } => ErrorCode::SandboxUnavailable,
        RuntimeError::OutOfMemory { .. } => ErrorCode::OutOfMemory,
        RuntimeError::ConcurrencyLimit { .. } => ErrorCode::ConcurrencyLimit,
        RuntimeError::TooManyWorkers { .. } => ErrorCode::TooManyWorkers,
        RuntimeError::Io { .. } => ErrorCode::Internal,
    }
}

/// A runtime failure with its whole detail (`dev`, deploy checks); `serve`'s function routes
/// shorten some first (`routes::public_error`).
impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> Self {
        ApiError::new(runtime_code(&error), error.to_string(), error.detail())
    }
}

impl ApiError {
    /// A runtime failure with the message and detail given (what `serve` shows of it).
    pub fn runtime(error: &RuntimeError, message: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::new(runtime_code(error), message, detail)
    }
}

/// The code of a store failure.
fn store_code(error: &StoreError) -> ErrorCode {
    match error {
        StoreError::NotFound { .. } => ErrorCode::NotFound,
        StoreError::Conflict { .. } => ErrorCode::Conflict,
        StoreError::Invalid { .. } => ErrorCode::Invalid,
        StoreError::SchemaTooNew { .. } => ErrorCode::SchemaTooNew,
        StoreError::TooManyFunctions { .. } => ErrorCode::TooManyFunctions,
        StoreError::Busy => ErrorCode::DatabaseBusy,
        StoreError::Unavailable(_) => ErrorCode::DatabaseUnavailable,
        StoreError::Database(_) => ErrorCode::Database,
        StoreError::Io(_) => ErrorCode::Io,
    }
}

/// A store failure as an HTTP error. The database's and the driver's own texts (SQL, paths,
/// host names) go to the server log only.
pub fn store_error(error: StoreError) -> ApiError {
    let code = store_code(&error);
    let detail = match &error {
        StoreError::NotFound { .. } => "Check the name or id.",
        StoreError::Invalid { .. } => "Fix the request and send it again.",
        StoreError::Conflict { .. } => "The request conflicts with what is stored.",
        StoreError::Busy => "The database is busy; retry shortly.",
        StoreError::Unavailable(_) => {
            tracing::error!(error = %error, "the database is unavailable");
            return ApiError::new(
                code,
                "The database is unavailable right now",
                "Retry shortly; the server log has the details.",
            );
        }
        StoreError::Database(_) | StoreError::Io(_) => {
            tracing::error!(error = %error, "a store operation failed");
            return ApiError::new(
                code,
                "Homebase could not complete the request because of a storage error",
                "Retry later; the server log has the details.",
            );
        }
        StoreError::TooManyFunctions { .. } => "Delete a function or merge some before deploying another.",
        StoreError::SchemaTooNew { .. } => "Homebase could not complete the request; the server log has more.",
    };
    ApiError::new(code, error.to_string(), detail)
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        store_error(error)
    }
}

/// A refused credential: 401 `unauthorized`, whose body also carries `error: "Unauthorized"`.
impl From<Unauthorized> for ApiError {
    fn from(error: Unauthorized) -> Self {
        ApiError::new(ErrorCode::Unauthorized, error.to_string(), error.detail())
    }
}

/// A refused credential, or the store failing while identity read a user.
impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Unauthorized(error) => error.into(),
            IdentityError::Store(error) => error.into(),
        }
    }
}

/// Marks a response that a function wrote: it goes to the caller as it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FromFunction;

/// The one place that gives every error Homebase answers a JSON body with `message`, `detail`
/// and `code`: a 4xx or 5xx response that is neither a function's nor JSON already (axum's
/// rejections: 413 past a body limit, 405, a `Query`/`Path` extractor's 400, a body that could
/// not be read; `/readyz`'s 503) gets one, its text kept as the detail, its code the one of its
/// status ([`generic_code`]). Other headers (`Allow`, `Retry-After`, CORS) stay.
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
    let code = generic_code(status);
    let (message, hint) = match code {
        ErrorCode::BodyTooLarge => (
            "The request body is too large".to_string(),
            "The management API takes bodies of up to 32 MB (a deploy's files up to 16 MB), the other API routes up \
             to 2 MB; send less."
                .to_string(),
        ),
        ErrorCode::MethodNotAllowed => (
            format!("This route does not take {method}"),
            if allowed.is_empty() { "Use another method.".to_string() } else { format!("Use {allowed}.") },
        ),
        ErrorCode::UnsupportedMediaType => (
            "The request body's Content-Type is not one this route takes".to_string(),
            "Send JSON with `Content-Type: application/json`.".to_string(),
        ),
        ErrorCode::NotFound => {
            ("Nothing was found at this path".to_string(), "Check the ids and names in the URL.".to_string())
        }
        ErrorCode::BadRequest => (
            "The request is not valid".to_string(),
            "Fix the request as the detail says and send it again.".to_string(),
        ),
        other => (
            other.status().canonical_reason().unwrap_or("The server could not answer").to_string(),
            "Retry later; the server log has the details.".to_string(),
        ),
    };
    let detail = if text.is_empty() { hint } else { format!("{text}. {hint}") };
    let rewritten = ApiError::new(code, message, detail).into_response();
    parts.status = rewritten.status();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.remove(http::header::CONTENT_TYPE);
    let (new_parts, body) = rewritten.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

/// The code of a response the framework wrote with `status`: the code of that status, else
/// `bad_request` for a client error and `internal` for a server error (then with their status).
fn generic_code(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_client_error() => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use homebase_identity::token::TokenError;

    use super::*;

    /// The rows of the tables in `docs/errors.md`: code → (status, meaning).
    fn documented() -> BTreeMap<String, (u16, String)> {
        let doc = include_str!("../../../docs/errors.md");
        let mut rows = BTreeMap::new();
        for line in doc.lines().filter(|line| line.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "a row has code, status, meaning and how to fix: {line}");
            let code = cells[0].trim_matches('`').to_string();
            let status = cells[1].parse().unwrap_or_else(|_| panic!("not a status: {line}"));
            assert!(!cells[3].is_empty(), "{code} says how to fix it");
            assert!(rows.insert(code.clone(), (status, cells[2].to_string())).is_none(), "{code} is listed twice");
        }
        rows
    }

    #[test]
    fn the_docs_list_exactly_the_codes_of_the_table() {
        let table: BTreeMap<String, (u16, String)> = ErrorCode::ALL
            .iter()
            .map(|code| (code.as_str().to_string(), (code.status().as_u16(), code.meaning().to_string())))
            .collect();
        assert_eq!(table.len(), ErrorCode::ALL.len(), "codes are distinct");
        let documented = documented();
        let missing: Vec<_> = table.keys().filter(|code| !documented.contains_key(*code)).collect();
        let extra: Vec<_> = documented.keys().filter(|code| !table.contains_key(*code)).collect();
        assert!(missing.is_empty() && extra.is_empty(), "docs/errors.md lacks {missing:?} and has {extra:?}");
        for (code, row) in &table {
            assert_eq!(&documented[code], row, "docs/errors.md's row of {code}: status and meaning as in the table");
        }
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{text} is snake_case");
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{text}");
        }
    }

    /// The worker's host writes two codes itself; they are the table's, with its statuses.
    #[test]
    fn the_codes_the_worker_writes_are_in_the_table() {
        let host = include_str!("../../runtime/src/host/host.js");
        let mut found = Vec::new();
        for (at, _) in host.match_indices("failure(") {
            let call = &host[at + "failure(".len()..];
            let call = call.trim_start();
            let Some((status, rest)) = call.split_once(',') else { continue };
            let Ok(status) = status.trim().parse::<u16>() else { continue };
            let code = rest.trim_start().trim_start_matches('"');
            let code = &code[..code.find('"').unwrap()];
            let known = ErrorCode::ALL.iter().find(|c| c.as_str() == code);
            let known = known.unwrap_or_else(|| panic!("host.js answers {code}, which the table lacks"));
            assert_eq!(known.status().as_u16(), status, "{code}");
            found.push(code.to_string());
        }
        found.sort();
        found.dedup();
        assert_eq!(found, ["function_bad_response", "function_error"]);
    }

    /// The store and the runtime name their failures too; the table agrees with them, and keeps
    /// the statuses the store's own test pins.
    #[test]
    fn library_errors_keep_their_codes_and_statuses() {
        let store = [
            StoreError::NotFound { what: "App 'x'".into() },
            StoreError::Conflict { message: "c".into() },
            StoreError::Invalid { message: "i".into() },
            StoreError::SchemaTooNew { location: "db".into(), found: 9, supported: 1 },
            StoreError::Busy,
            StoreError::Database("d".into()),
            StoreError::Io("o".into()),
            StoreError::TooManyFunctions { count: 50, limit: 50 },
            StoreError::Unavailable("u".into()),
        ];
        let statuses: Vec<u16> = store.iter().map(|e| ApiError::from(e.clone()).status().as_u16()).collect();
        assert_eq!(statuses, [404, 409, 400, 500, 503, 500, 500, 422, 503]);
        for error in store {
            let api = ApiError::from(error.clone());
            assert_eq!((api.code.as_str(), api.status().as_u16()), (error.code(), error.status()), "{error:?}");
        }
        let function = || "f".to_string();
        let runtime = [
            RuntimeError::Deno { message: "m".into() },
            RuntimeError::BootFailed { function: function(), detail: "d".into(), reason: "r".into() },
            RuntimeError::Crashed { function: function(), detail: "d".into(), reason: "r".into() },
            RuntimeError::Timeout { function: function(), timeout: Duration::from_secs(1) },
            RuntimeError::ModuleInvalid { detail: "d".into() },
            RuntimeError::CheckTimeout { timeout: Duration::from_secs(1) },
            RuntimeError::Busy { detail: "d".into(), retry_after: Duration::from_secs(1) },
            RuntimeError::Sandbox { message: "m".into() },
            RuntimeError::Overloaded { function: function(), limit: 1, all_workers: false },
            RuntimeError::Overloaded { function: function(), limit: 1, all_workers: true },
            RuntimeError::OutOfMemory { function: function(), limit: 512 << 20 },
            RuntimeError::ConcurrencyLimit { function: function(), limit: 2, waiting: 2 },
            RuntimeError::TooManyWorkers { function: function(), limit: 3 },
            RuntimeError::ShuttingDown,
            RuntimeError::Io { message: "m".into() },
        ];
        for error in runtime {
            let api = ApiError::from(error.clone());
            assert_eq!((api.code.as_str(), api.status().as_u16()), (error.code(), error.status()), "{error:?}");
            assert_eq!((api.message, api.detail), (error.to_string(), error.detail()));
        }
    }

    #[tokio::test]
    async fn refused_credentials_are_401s_with_the_base44_error_field() {
        let refusals = [
            IdentityError::from(Unauthorized::BadToken(TokenError::Expired)),
            IdentityError::from(Unauthorized::UserTokensRefused),
        ];
        for refusal in refusals {
            let response = ApiError::from(refusal).into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((body["code"].as_str(), body["error"].as_str()), (Some("unauthorized"), Some("Unauthorized")));
            assert!(!body["message"].as_str().unwrap().is_empty() && !body["detail"].as_str().unwrap().is_empty());
        }
        let expired = ApiError::from(Unauthorized::BadToken(TokenError::Expired));
        assert_eq!(expired.message, "The token is not valid: the token has expired");
        assert_eq!(expired.detail, "Sign in again to get a new token.");
        // A store failure while a user's state was read is the store's error, not a 401.
        let busy = ApiError::from(IdentityError::from(StoreError::Busy));
        assert_eq!((busy.code, busy.status().as_u16()), (ErrorCode::DatabaseBusy, 503));
        // Only 401s carry the extra field.
        let response = ApiError::new(ErrorCode::Forbidden, "m", "d").into_response();
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({ "message": "m", "detail": "d", "code": "forbidden" }));
    }
}

//! The function routes (reference §1.2–1.4) and the fallback.
//!
//! - `ANY /api/apps/{app}/functions/{name…}`: SDK `functions.invoke`.
//! - `ANY /api/functions/{path…}`: SDK `functions.fetch`; the app comes from `X-App-Id`, else the
//!   default app.
//! - `ANY /functions/{name…}`: the public webhook URL; never a user context.
//!
//! The function sees its own name as the first path segment, then any sub-path and the query.
//! They are part of the SDK surface ([`crate::sdk`]), which puts them under the CORS layer.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use homebase_catalog::{AppFunctions, Resolved};
use homebase_runtime::{FunctionSpec, RuntimeError};
use http::header::{HOST, HeaderValue};
use http::{HeaderMap, Uri, Version};
use http_body_util::BodyExt;

use crate::AppState;
use crate::error::{ApiError, ErrorCode, FromFunction};
use crate::headers::{self, Caller, Injected};

/// The function routes alone; [`crate::sdk::router`] puts them with the other SDK routes.
pub(crate) fn function_routes(state: AppState) -> Router {
    Router::new()
        .route("/api/apps/{app_id}/functions/{*name}", any(sdk_invoke))
        .route("/api/functions/{*path}", any(sdk_fetch))
        .route("/functions/{*name}", any(webhook))
        .with_state(state)
}

async fn sdk_invoke(State(state): State<AppState>, request: Request) -> Response {
    // /api/apps/{app}/functions/{rest}: segments 3 and 5 onwards, taken raw (names arrive unencoded).
    let path = request.uri().path();
    let mut parts = path.splitn(6, '/');
    let app_id = parts.nth(3).unwrap_or_default().to_string();
    let rest = parts.nth(1).unwrap_or_default().to_string();
    let app = state.catalog.app(&app_id).ok_or_else(|| app_not_found(&app_id));
    call_function(&state, Caller::Sdk, app, rest, request).await
}

async fn sdk_fetch(State(state): State<AppState>, request: Request) -> Response {
    let rest = request.uri().path().strip_prefix("/api/functions/").unwrap_or_default().to_string();
    let app = app_for(&state, request.headers());
    call_function(&state, Caller::Sdk, app, rest, request).await
}

async fn webhook(State(state): State<AppState>, request: Request) -> Response {
    let rest = request.uri().path().strip_prefix("/functions/").unwrap_or_default().to_string();
    let app = app_for(&state, request.headers());
    call_function(&state, Caller::Webhook, app, rest, request).await
}

/// The app named by `X-App-Id`, else the default app.
fn app_for(state: &AppState, headers: &HeaderMap) -> Result<Arc<AppFunctions>, ApiError> {
    match headers.get(&headers::X_APP_ID).and_then(|v| v.to_str().ok()) {
        Some(id) => state.catalog.app(id).ok_or_else(|| app_not_found(id)),
        None => state.catalog.default_app().ok_or_else(|| {
            ApiError::new(
                ErrorCode::AppNotFound,
                "No app was named and there is no default app",
                "Send the app id in the X-App-Id header, or call /api/apps/{app_id}/functions/{name}.",
            )
        }),
    }
}

fn app_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AppNotFound,
        format!("No app with id '{id}'"),
        "Check the app id the client was created with.",
    )
}

async fn call_function(
    state: &AppState,
    caller: Caller,
    app: Result<Arc<AppFunctions>, ApiError>,
    rest: String,
    request: Request,
) -> Response {
    let app = match app {
        Ok(app) => app,
        Err(error) => return error.into_response(),
    };
    // One credential per request: with two `Authorization` headers, the function would see both
    // joined, and only the first would have been checked.
    if caller == Caller::Sdk && request.headers().get_all(http::header::AUTHORIZATION).iter().nth(1).is_some() {
        return ApiError::new(
            ErrorCode::DuplicateAuthorization,
            "The request has more than one Authorization header",
            "Send one `Authorization: Bearer <token>` header.",
        )
        .into_response();
    }
    // A bearer on an SDK route must be one this server issued for this app, and a user's must
    // still be good: the user exists, is enabled and has not changed its password since.
    if caller == Caller::Sdk {
        let authorization = headers::credentials(request.headers()).authorization;
        match homebase_identity::auth::check_function_bearer(&state.tokens, authorization, &app.app_id) {
            Err(unauthorized) => return ApiError::from(unauthorized).into_response(),
            Ok(Some(user)) => {
                let states = state.users.as_deref();
                if let Err(refused) = homebase_identity::user_states::check(states, &app.app_id, &user).await {
                    return ApiError::from(refused).into_response();
                }
            }
            Ok(None) => {}
        }
    }
    let spec = match app.resolve(&rest) {
        Resolved::Function(spec) => spec.clone(),
        Resolved::Broken { name, reason } => {
            return ApiError::new(
                ErrorCode::FunctionInvalid,
                format!("Function '{name}' cannot run because its definition is invalid"),
                reason,
            )
            .into_response();
        }
        Resolved::Unknown => {
            let listed = state.may_list_functions(&app.app_id, request.headers()).await;
            return function_not_found(&app, &rest, listed).into_response();
        }
    };

    let (mut parts, body) = request.into_parts();
    let request_id = match headers::caller_request_id(&parts.headers) {
        Some(id) => id.to_string(),
        None => state.next_request_id(),
    };
    let api_url = state.api_url(&parts.extensions);
    let service_token = state.tokens.mint_service(&app.app_id);
    headers::prepare_request_headers(
        &mut parts.headers,
        caller,
        &Injected { app_id: &app.app_id, api_url: &api_url, service_token: &service_token, request_id: &request_id },
    );
    // HTTP/2 callers name the host in the URI only; the function builds `req.url` from `Host`.
    if !parts.headers.contains_key(HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(HOST, host);
    }
    let mut target = String::with_capacity(rest.len() + 64);
    target.push('/');
    target.push_str(rest.trim_start_matches('/'));
    if let Some(query) = parts.uri.query() {
        target.push('?');
        target.push_str(query);
    }
    parts.uri = match Uri::try_from(target) {
        Ok(uri) => uri,
        Err(e) => {
            return ApiError::new(ErrorCode::BadPath, "The request path is not valid", e.to_string()).into_response();
        }
    };
    parts.version = Version::HTTP_11;
    let body = body.map_err(Into::into).boxed_unsync();

    match state.runtime.handle(&spec, http::Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            headers::prepare_response_headers(&mut parts.headers);
            parts.extensions.insert(FromFunction);
            Response::from_parts(parts, Body::new(body))
        }
        Err(error) => {
            let retry_after = error.retry_after();
            let mut response = if state.runtime.config().error_details {
                let mut error = ApiError::from(error);
                error.detail = mask_detail(state, &spec, &error.detail);
                error.into_response()
            } else {
                public_error(&error, &request_id, |reason| mask_detail(state, &spec, reason)).into_response()
            };
            // Overloaded: the caller may retry in a moment.
            if let Some(retry) = retry_after {
                response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry.as_secs().max(1)));
            }
            response
        }
    }
}

/// A runtime failure as `serve` answers it: the reason in a line, never the worker's output,
/// stack traces, paths or the Deno binary (they are in the function's log, or the server's for
/// Deno and I/O failures), and the request id to find them by.
/// `mask` hides secret values in the reason (a load error's first line may quote one).
fn public_error(error: &RuntimeError, request_id: &str, mask: impl Fn(&str) -> String) -> ApiError {
    let (message, detail) = match error {
        RuntimeError::BootFailed { .. } | RuntimeError::Crashed { .. } => (
            error.to_string(),
            format!(
                "{}: {}. The function's logs have the details (request {request_id}).",
                if matches!(error, RuntimeError::Crashed { .. }) { "It crashed" } else { "It could not start" },
                mask(error.reason().unwrap_or("the worker failed"))
            ),
        ),
        RuntimeError::Deno { .. } | RuntimeError::Io { .. } => {
            tracing::error!(request_id, "{error}: {}", error.detail());
            (
                "Homebase could not run the function".to_string(),
                format!("The server log has the details (request {request_id})."),
            )
        }
        _ => return ApiError::from(error.clone()),
    };
    ApiError::runtime(error, message, detail)
}

/// The detail of a crash or a failed start quotes the worker's output (its stderr, the load
/// error), so secret values are masked in it as in the log lines: the app's, and those of the
/// worker's own environment, which are older ones when the secrets changed while it ran.
fn mask_detail(state: &AppState, spec: &FunctionSpec, detail: &str) -> String {
    let masked = state.catalog.mask_text(&spec.app_id, detail);
    homebase_logs::mask_values(spec.env.iter().map(|(_, value)| value.as_str()), &masked).into_owned()
}

/// The 404 for a path no function of `app` takes. It names the app's functions only when
/// `listed` (dev, or a caller holding a key for the app): to anyone else the names are a map of
/// what to attack.
fn function_not_found(app: &AppFunctions, rest: &str, listed: bool) -> ApiError {
    let wanted = rest.trim_start_matches('/');
    let names = app.names();
    let detail = if !listed {
        "Check the function's name. Its app's key holders see the list of names in this answer.".to_string()
    } else if names.is_empty() {
        "This app has no functions yet. Add base44/functions/<name>/entry.ts.".to_string()
    } else {
        format!("Known functions: {}.", names.join(", "))
    };
    ApiError::new(ErrorCode::FunctionNotFound, format!("No function matches '{wanted}'"), detail)
}

/// The JSON 404 for any path no route takes.
pub async fn unknown_route(request: Request) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("No route for {} {}", request.method(), request.uri().path()),
        "Functions are served at /api/apps/{app_id}/functions/{name}, /api/functions/{name} and /functions/{name}.",
    )
}

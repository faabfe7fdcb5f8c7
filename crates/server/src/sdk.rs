//! The SDK surface: every route the official SDK calls from a browser app, under one CORS layer
//! ([`crate::cors`]). Today that is the function routes ([`crate::routes`]), the app-user
//! routes ([`crate::users_api`]), app data ([`crate::entities_api`]) and the `501 not_implemented` answers of the SDK's routes that
//! Homebase lacks yet ([`crate::unsupported`]: entities, realtime, integrations, connectors,
//! files…); their real routes belong here too, so that they inherit the same policy. The
//! management API (key holders, the CLI) stays outside.
//!
//! A wrong method on one of Homebase's own routes here answers JSON: a preflight from an origin
//! the policy does not allow (allowed ones never get that far) `403 origin_not_allowed`, any
//! other `405 method_not_allowed`.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::header;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::users_api::Auth;

/// The SDK routes of `state` and `auth`, under `state`'s CORS policy. Function routes check user
/// tokens against `auth`'s user states.
pub fn router(mut state: AppState, auth: Arc<Auth>) -> Router {
    state.users = Some(auth.users.clone());
    let cors = state.cors.clone();
    let entities = Arc::new(crate::entities_api::EntitiesApi { auth: auth.clone(), page_cap: state.entity_page_cap });
    crate::routes::function_routes(state)
        .merge(crate::users_api::router(auth))
        .merge(crate::entities_api::router(entities))
        .merge(crate::unsupported::sdk_routes())
        .method_not_allowed_fallback(wrong_method)
        .layer(crate::cors::CorsLayer::new(cors))
}

async fn wrong_method(request: Request) -> Response {
    let (method, headers) = (request.method(), request.headers());
    if crate::cors::is_preflight(method, headers) {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("(none)");
        let mut shown: String = origin.chars().take(200).collect();
        if shown.len() < origin.len() {
            shown.push('…');
        }
        return ApiError::new(
            ErrorCode::OriginNotAllowed,
            format!("Browser apps on the origin {shown} may not call this server"),
            "Add the origin, exactly as the browser sends it (scheme, host and port), to cors-origins \
             (HOMEBASE_CORS_ORIGINS, or --cors-origin for dev). homebase dev also allows loopback origins.",
        )
        .into_response();
    }
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", method, request.uri().path()),
        "See the reference of this route for the methods it takes.",
    )
    .into_response()
}

//! The management side of app users, with an admin key or the app's key (like [`crate::manage`]):
//!
//! - `GET /api/apps/{app_id}/auth/token` → `{token}` (reference §5.2, what `exec` uses): a
//!   service-role token by default; `?user=<email or id>` mints that user's access token instead.
//! - `GET /api/apps/platform/{app_id}/published-url` → `{url}`: where the app's API is served
//!   (the configured public URL, else the URL the caller used).
//! - `POST /api/apps/{app_id}/users` creates a user (the first admin, say); `GET` lists them.
//! - `PATCH /api/apps/{app_id}/users/{user_id}` `{disabled?, role?, is_verified?, full_name?}`
//!   changes one; `DELETE` deletes it. Disabling or deleting a user signs out its tokens at
//!   once, on every route (the store announces the change; see [`homebase_identity::user_states`]).
//! - `GET`/`PUT /api/apps/{app_id}/auth/settings`: `{require_verification}`.
//!
//! An app user's token is not an API key: these routes answer it with 401. On `serve` the keys
//! are the stored API keys; a `homebase dev` run has one key of its own ([`Keys::Dev`]), written
//! for local tools to `base44/.homebase/dev.json`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use homebase_store::{NewUser, Store, UserRole, UserUpdate};
use http::{Extensions, HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::store_error;
use crate::error::{ApiError, ErrorCode};
use crate::manage::{Caller, ensure_app, parse_body, presented_key, unauthorized};
use crate::users_api::{Auth, user_json};

#[derive(Clone)]
pub struct AuthManage {
    pub keys: Keys,
    pub auth: Arc<Auth>,
    pub state: AppState,
}

pub fn router(manage: AuthManage) -> Router {
    Router::new()
        .route("/api/apps/{app_id}/auth/token", get(token))
        .route("/api/apps/platform/{app_id}/published-url", get(published_url))
        .route("/api/apps/{app_id}/users", get(list_users).post(create_user))
        .route("/api/apps/{app_id}/users/{user_id}", patch(update_user).delete(delete_user))
        .route("/api/apps/{app_id}/auth/settings", get(get_settings).put(put_settings))
        .with_state(manage)
}

/// Which keys may call these routes.
#[derive(Clone)]
pub enum Keys {
    /// `serve`: the admin and app keys in the store.
    Stored(Store),
    /// `homebase dev`: the one key of this run.
    Dev(Arc<str>),
}

/// The caller, allowed to touch `app_id`, which exists.
async fn authorize(manage: &AuthManage, headers: &HeaderMap, app_id: &str) -> Result<(), ApiError> {
    match &manage.keys {
        Keys::Stored(store) => Caller::authenticate(store, headers).await?.require_app(app_id)?,
        Keys::Dev(key) => {
            let sent = presented_key(headers)?;
            // Compare hashes, so the time taken says nothing about the key.
            if Sha256::digest(sent.as_bytes()) != Sha256::digest(key.as_bytes()) {
                return Err(unauthorized("The key is not this dev server's key (see base44/.homebase/dev.json)"));
            }
        }
    }
    ensure_app(&manage.auth.store, app_id).await?;
    Ok(())
}

#[derive(Deserialize)]
struct TokenQuery {
    user: Option<String>,
}

async fn token(
    State(manage): State<AuthManage>,
    Path(app_id): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&manage, &headers, &app_id).await?;
    let store = &manage.auth.store;
    let Some(wanted) = query.user.filter(|u| !u.trim().is_empty()) else {
        let token = manage.auth.tokens.mint_service(&app_id);
        let ttl = manage.auth.tokens.service_ttl().as_secs();
        return Ok(Json(json!({ "token": token, "kind": "service", "expires_in": ttl })).into_response());
    };
    let user = match store.user_by_email(&app_id, &wanted).await.map_err(store_error)? {
        Some(user) => Some(user),
        None => store.user(&app_id, &wanted).await.map_err(store_error)?,
    };
    let Some(user) = user else {
        return Err(ApiError::new(
            ErrorCode::UserNotFound,
            format!("The app has no user '{wanted}'"),
            format!("Pass the e-mail or id of an existing user, or create one with POST /api/apps/{app_id}/users."),
        ));
    };
    if user.disabled {
        return Err(ApiError::new(ErrorCode::UserDisabled, "This user is disabled", "Enable the user first."));
    }
    let token = manage.auth.user_token(&user);
    let ttl = manage.auth.user_token_ttl.as_secs();
    Ok(Json(json!({ "token": token, "kind": "user", "user_id": user.id, "expires_in": ttl })).into_response())
}

async fn published_url(
    State(manage): State<AuthManage>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Result<Response, ApiError> {
    authorize(&manage, &headers, &app_id).await?;
    Ok(Json(json!({ "url": manage.state.api_url(&extensions) })).into_response())
}

async fn list_users(
    State(manage): State<AuthManage>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&manage, &headers, &app_id).await?;
    let users = manage.auth.store.list_users(&app_id).await.map_err(store_error)?;
    Ok(Json(users.iter().map(user_json).collect::<Vec<_>>()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    password: Option<String>,
    full_name: Option<String>,
    role: Option<String>,
    is_verified: Option<bool>,
}

async fn create_user(
    State(manage): State<AuthManage>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&manage, &headers, &app_id).await?;
    let request: CreateUser = parse_body(&body)?;
    let role = UserRole::parse(request.role.as_deref().unwrap_or("user")).map_err(store_error)?;
    let new = NewUser {
        email: request.email,
        password: request.password,
        full_name: request.full_name,
        role,
        is_verified: request.is_verified.unwrap_or(true),
    };
    let user = manage.auth.store.create_user(&app_id, new).await.map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeUser {
    disabled: Option<bool>,
    role: Option<String>,
    is_verified: Option<bool>,
    full_name: Option<String>,
}

async fn update_user(
    State(manage): State<AuthManage>,
    Path((app_id, user_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&manage, &headers, &app_id).await?;
    let request: ChangeUser = parse_body(&body)?;
    let role = request.role.as_deref().map(UserRole::parse).transpose().map_err(store_error)?;
    let update = UserUpdate {
        disabled: request.disabled,
        role,
        is_verified: request.is_verified,
        full_name: request.full_name.map(Some),
        ..Default::default()
    };
    let user = manage.auth.store.update_user(&app_id, &user_id, update).await.map_err(store_error)?;
    Ok(Json(user_json(&user)).into_response())
}

async fn delete_user(
    State(manage): State<AuthManage>,
    Path((app_id, user_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&manage, &headers, &app_id).await?;
    if !manage.auth.store.delete_user(&app_id, &user_id).await.map_err(store_error)? {
        return Err(ApiError::new(
            ErrorCode::UserNotFound,
            format!("The app has no user '{user_id}'"),
            format!("List the users with GET /api/apps/{app_id}/users."),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_settings(
    State(manage): State<AuthManage>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&manage, &headers, &app_id).await?;
    let required = manage.auth.verification_required(&app_id).await?;
    Ok(Json(json!({ "require_verification": required })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    require_verification: bool,
}

async fn put_settings(
    State(manage): State<AuthManage>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&manage, &headers, &app_id).await?;
    let settings: Settings = parse_body(&body)?;
    manage.auth.store.set_require_verification(&app_id, settings.require_verification).await.map_err(store_error)?;
    Ok(Json(json!({ "require_verification": settings.require_verification })).into_response())
}

//! The management API of `homebase serve` (reference §5.2–5.3): apps, API keys and function
//! deployments, as our CLI and the official `base44` CLI call it.
//!
//! Every route needs an API key, in the `api_key` header (what the official CLI sends) or as
//! `Authorization: Bearer b44k_…`. An admin key may do anything; an app's key only touches its
//! own app (403 elsewhere). A deploy is checked completely (name, the 50-function limit, sizes,
//! paths, automations, and Deno loading the code) before anything is stored.
//!
//! Secrets (§5.4) are set, listed (names, values masked) and deleted here; their values appear
//! in no response, error or log line. So is an app's `function-net-allow` list (read with the
//! app's key, changed with an admin key only).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use homebase_project::{MAX_FUNCTIONS, name_problem, parse_automations};
use homebase_store::{ApiKey, DeployFile, Deployment, KeyScope, PreparedDeployment, Store, StoreError};
use http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use crate::error::store_error;
use crate::error::{ApiError, ErrorCode};
use homebase_catalog::Platform;
use homebase_runtime::RuntimeError;

/// The largest file a deploy may carry.
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
/// The largest deploy (all files together).
pub const MAX_DEPLOY_BYTES: usize = 16 * 1024 * 1024;

pub fn router(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/apps", post(create_app).get(list_apps))
        .route("/api/apps/{app_id}", get(get_app))
        .route("/api/apps/{app_id}/keys", post(create_key))
        .route("/api/apps/{app_id}/backend-functions", get(list_functions))
        .route("/api/apps/{app_id}/backend-functions/{name}", put(deploy).delete(delete_function))
        .route("/api/apps/{app_id}/backend-functions/{name}/deployments", get(history))
        .route("/api/apps/{app_id}/backend-functions/{name}/rollback", post(rollback))
        .route("/api/apps/{app_id}/secrets", post(set_secrets).get(list_secrets).delete(delete_secret))
        .route("/api/apps/{app_id}/function-net-allow", get(get_net_allow).put(set_net_allow))
        .layer(DefaultBodyLimit::max(MAX_DEPLOY_BYTES * 2))
        .with_state(platform)
}

/// The authenticated caller of a management route.
pub struct Caller(ApiKey);

impl Caller {
    fn require_admin(&self) -> Result<(), ApiError> {
        match self.0.scope {
            KeyScope::Admin => Ok(()),
            KeyScope::App(_) => Err(forbidden("This needs an admin key; an app's key can only manage its own app.")),
        }
    }

    pub(crate) fn require_app(&self, app_id: &str) -> Result<(), ApiError> {
        match &self.0.scope {
            KeyScope::Admin => Ok(()),
            KeyScope::App(own) if own == app_id => Ok(()),
            KeyScope::App(_) => Err(forbidden("This key belongs to another app.")),
        }
    }
}

fn forbidden(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, "The API key may not do this", detail)
}

impl FromRequestParts<Arc<Platform>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, platform: &Arc<Platform>) -> Result<Caller, ApiError> {
        Caller::authenticate(&platform.store, &parts.headers).await
    }
}

impl Caller {
    /// The key in `api_key` or `Authorization: Bearer`; 401 when there is none or it is not a
    /// stored key (an app user's token is not a key).
    pub(crate) async fn authenticate(store: &Store, headers: &http::HeaderMap) -> Result<Caller, ApiError> {
        let secret = presented_key(headers)?;
        match store.verify_key(secret).await.map_err(store_error)? {
            Some(key) => Ok(Caller(key)),
            None => Err(unauthorized("The API key is not valid")),
        }
    }
}

/// The key in `api_key` or `Authorization: Bearer`; 401 when there is none.
pub(crate) fn presented_key(headers: &http::HeaderMap) -> Result<&str, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("api_key")
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("No API key was sent"))
}

/// A 401 for a missing or wrong management key.
pub(crate) fn unauthorized(message: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        message,
        "Send an API key (b44k_…) in the api_key header or as Authorization: Bearer.",
    )
}

/// Parses a JSON body with an error that says what is wrong.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(ErrorCode::BadJson, "The request body is not the JSON this route takes", e.to_string())
    })
}

/// The app `app_id`, if `caller` may touch it (403 otherwise) and it exists (404 otherwise).
pub(crate) async fn app_for(
    platform: &Platform,
    caller: &Caller,
    app_id: &str,
) -> Result<homebase_store::App, ApiError> {
    caller.require_app(app_id)?;
    ensure_app(&platform.store, app_id).await
}

/// Like [`parse_body`], with an empty body meaning every field's default.
fn parse_optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() { Ok(T::default()) } else { parse_body(body) }
}

/// The app `app_id`; 404 when there is none.
pub(crate) async fn ensure_app(store: &Store, app_id: &str) -> Result<homebase_store::App, ApiError> {
    store.get_app(app_id).await.map_err(store_error)?.ok_or_else(|| {
        ApiError::new(ErrorCode::AppNotFound, format!("No app with id '{app_id}'"), "Create it with POST /api/apps.")
    })
}

#[derive(Deserialize)]
struct CreateApp {
    name: String,
}

async fn create_app(State(platform): State<Arc<Platform>>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let request: CreateApp = parse_body(&body)?;
    let app = platform.store.create_app(&request.name).await.map_err(store_error)?;
    refresh_after(&platform, &app.id, "The app").await?;
    Ok((StatusCode::CREATED, Json(app)).into_response())
}

async fn list_apps(State(platform): State<Arc<Platform>>, caller: Caller) -> Result<Response, ApiError> {
    let apps = platform.store.list_apps().await.map_err(store_error)?;
    let visible: Vec<_> = apps.into_iter().filter(|app| caller.require_app(&app.id).is_ok()).collect();
    Ok(Json(visible).into_response())
}

async fn get_app(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(app_for(&platform, &caller, &app_id).await?).into_response())
}

#[derive(Deserialize, Default)]
struct CreateKey {
    #[serde(default)]
    name: Option<String>,
}

async fn create_key(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    ensure_app(&platform.store, &app_id).await?;
    let request: CreateKey = parse_optional_body(&body)?;
    let name = request.name.unwrap_or_else(|| "app key".into());
    let (key, secret) = platform.store.create_key(KeyScope::App(app_id.clone()), &name).await.map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": key.id, "app_id": app_id, "name": key.name, "key": secret })))
        .into_response())
}

async fn list_functions(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let functions = platform.store.functions(&app_id).await.map_err(store_error)?;
    let functions: Vec<Value> = functions
        .into_iter()
        .map(|f| {
            json!({
                "name": f.name,
                "deployment_id": f.deployment_id,
                "entry": f.entry,
                "files": f.files,
                "automations": f.automations,
            })
        })
        .collect();
    Ok(Json(json!({ "functions": functions })).into_response())
}

#[derive(Deserialize)]
struct DeployRequest {
    entry: String,
    files: Vec<DeployFile>,
    #[serde(default)]
    automations: Option<Value>,
}

async fn deploy(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path((app_id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let request: DeployRequest = parse_body(&body)?;
    let deployment = Deployment {
        entry: request.entry,
        files: request.files,
        automations: request.automations.unwrap_or_else(|| json!([])),
    };
    // Every rule of a deploy, in this order: the name, the sizes and the automations
    // (`check_rules`), the paths and the content address (`PreparedDeployment::new`, once: the
    // id compared, checked by Deno and stored is this one), the function limit (`check_code`
    // fails fast; the store's transaction enforces it), and Deno loading the code.
    check_rules(&name, &deployment)?;
    let prepared = PreparedDeployment::new(deployment).map_err(store_error)?;
    // The same content as the active deployment was checked when it was deployed.
    if let Some(active) = platform.store.function(&app_id, &name).await.map_err(store_error)?
        && active.deployment_id == prepared.id()
    {
        return Ok(Json(json!({ "status": "unchanged", "deployment_id": prepared.id() })).into_response());
    }
    if let Err(error) = check_code(&platform, &app_id, &name, &prepared).await {
        return Ok(with_retry_after(error));
    }
    // The limit is checked again in the store's transaction (on every node at once): another
    // deploy may have added a function while Deno checked this one.
    let outcome =
        platform.store.deploy_with_limit(&app_id, &name, prepared, MAX_FUNCTIONS as u64).await.map_err(store_error)?;
    refresh_after(&platform, &app_id, "The deployment").await?;
    Ok(Json(json!({ "status": outcome.status, "deployment_id": outcome.deployment_id })).into_response())
}

/// An error response; a 429 (every deploy check slot taken) says when to retry.
fn with_retry_after(error: ApiError) -> Response {
    let busy = error.status() == StatusCode::TOO_MANY_REQUESTS;
    let mut response = error.into_response();
    if busy {
        response.headers_mut().insert(http::header::RETRY_AFTER, homebase_runtime::CHECK_RETRY_AFTER.into());
    }
    response
}

/// Rebuilds this node's view after a committed change. A failure here does not undo the change,
/// so the error says it was saved.
async fn refresh_after(platform: &Platform, app_id: &str, change: &str) -> Result<(), ApiError> {
    platform.refresh(app_id).await.map_err(|error| {
        let mut error = store_error(error);
        error.message = format!("{change} was saved, but this server could not load it: {}", error.message);
        error
    })
}

/// Refuses a new function when the app already has [`MAX_FUNCTIONS`].
async fn check_function_limit(platform: &Platform, app_id: &str, name: &str) -> Result<(), ApiError> {
    let is_new = platform.store.function(app_id, name).await.map_err(store_error)?.is_none();
    let count = platform.store.function_count(app_id).await.map_err(store_error)?;
    if is_new && count >= MAX_FUNCTIONS as u64 {
        return Err(ApiError::new(
            ErrorCode::TooManyFunctions,
            format!("The app has {count} functions; at most {MAX_FUNCTIONS} are allowed"),
            "Delete a function or merge some before deploying another.",
        ));
    }
    Ok(())
}

/// The rules a deploy's content must meet, before anything is hashed or written: the function's
/// name, the sizes of its files, its automations.
fn check_rules(name: &str, deployment: &Deployment) -> Result<(), ApiError> {
    if let Some(problem) = name_problem(name) {
        return Err(ApiError::invalid_name(problem));
    }
    let mut total = 0;
    for file in &deployment.files {
        total += file.content.len();
        if file.content.len() > MAX_FILE_BYTES {
            return Err(ApiError::new(
                ErrorCode::FileTooLarge,
                format!("{} is {} bytes; a file may have at most {MAX_FILE_BYTES}", file.path, file.content.len()),
                "Keep large data out of function code; fetch it at run time instead.",
            ));
        }
    }
    if total > MAX_DEPLOY_BYTES {
        return Err(ApiError::new(
            ErrorCode::DeployTooLarge,
            format!("The deploy carries {total} bytes; at most {MAX_DEPLOY_BYTES} are allowed"),
            "Move large files out of the function's folder.",
        ));
    }
    if let Err(error) = parse_automations(name, &deployment.automations) {
        return Err(ApiError::invalid_automation(name, error));
    }
    Ok(())
}

/// The checks of a prepared deploy that need the store and Deno: the function limit (fast
/// refusal), then the code loading in Deno.
async fn check_code(
    platform: &Platform,
    app_id: &str,
    name: &str,
    deployment: &PreparedDeployment,
) -> Result<(), ApiError> {
    check_function_limit(platform, app_id, name).await?;

    // Deno loads the code (imports resolved and downloaded) from a scratch copy.
    let scratch = tempfile::Builder::new().prefix("check-").tempdir_in(platform.scratch_dir()).map_err(io_error)?;
    let root = scratch.path().to_path_buf();
    let check = deployment.clone(); // the blocking thread needs its own copy
    let entry = tokio::task::spawn_blocking(move || homebase_store::materialize_unstored(&check, &root))
        .await
        .map_err(|e| io_error(std::io::Error::other(e)))?
        .map_err(store_error)?;
    let id = deployment.id();
    // Only the deployment's own folder may be imported from (and quoted).
    let deployment_root = scratch.path().join(id);
    platform.runtime.check_module(&entry, &deployment_root).await.map_err(|error| {
        let busy = matches!(error, RuntimeError::Busy { .. });
        let mut error = ApiError::from(error);
        // CLIs show the message alone, so it carries Deno's complaint and where it is.
        if !busy {
            error.message = format!("Function '{name}' was not deployed: {}", summarize_deno_error(&error.detail));
        }
        error
    })?;
    tracing::debug!(%id, function = name, "deploy checked");
    Ok(())
}

/// `error: SyntaxError: Expression expected … at entry.ts:2:32` → `SyntaxError: Expression
/// expected (entry.ts:2:32)`: the first line of Deno's message and the place it points at.
fn summarize_deno_error(detail: &str) -> String {
    let first = detail.lines().next().unwrap_or_default().trim_start_matches("error: ").trim();
    match detail.lines().rev().find_map(|line| line.trim().strip_prefix("at ")) {
        Some(place) if !first.contains(place) => format!("{first} ({place})"),
        _ => first.to_string(),
    }
}

fn io_error(error: std::io::Error) -> ApiError {
    ApiError::new(ErrorCode::Io, "Homebase could not prepare the deploy", error.to_string())
}

async fn delete_function(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path((app_id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    if !platform.store.delete_function(&app_id, &name).await.map_err(store_error)? {
        return Err(ApiError::new(
            ErrorCode::FunctionNotFound,
            format!("No function named '{name}'"),
            "List them with GET …/backend-functions.",
        ));
    }
    refresh_after(&platform, &app_id, "The deletion").await?;
    Ok(Json(json!({ "success": true })).into_response())
}

async fn history(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path((app_id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let entries = platform.store.history(&app_id, &name).await.map_err(store_error)?;
    if entries.is_empty() {
        return Err(ApiError::new(
            ErrorCode::FunctionNotFound,
            format!("No function named '{name}'"),
            "List them with GET …/backend-functions.",
        ));
    }
    Ok(Json(json!({ "deployments": entries })).into_response())
}

#[derive(Deserialize, Default)]
struct RollbackRequest {
    #[serde(default)]
    deployment_id: Option<String>,
}

async fn rollback(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path((app_id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let request: RollbackRequest = parse_optional_body(&body)?;
    let active =
        platform.store.rollback(&app_id, &name, request.deployment_id.as_deref()).await.map_err(store_error)?;
    refresh_after(&platform, &app_id, "The rollback").await?;
    Ok(Json(json!({ "status": "rolled_back", "deployment_id": active })).into_response())
}

/// What `GET …/secrets` shows instead of a value.
pub const MASKED_SECRET: &str = "••••••••";

fn bad_secrets(message: impl Into<String>, detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidSecrets, message, detail)
}

/// `POST …/secrets` with `{NAME: VALUE, …}`: sets them all or, when one is bad, none.
async fn set_secrets(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let detail = "Send a JSON object of names to string values, e.g. {\"STRIPE_KEY\": \"sk_…\"}.";
    // Parsed by hand: serde's messages could quote a value.
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body) else {
        return Err(bad_secrets("The request body is not a JSON object of secrets", detail));
    };
    let mut secrets = BTreeMap::new();
    for (name, value) in object {
        if let Some(problem) = homebase_runtime::secret_name_problem(&name) {
            return Err(bad_secrets(problem, RESERVED_DETAIL));
        }
        let Value::String(value) = value else {
            return Err(bad_secrets(format!("The value of secret '{name}' is not a string"), detail));
        };
        secrets.insert(name, value);
    }
    if secrets.is_empty() {
        return Err(bad_secrets("No secrets were sent", detail));
    }
    platform.store.set_secrets(&app_id, secrets).await.map_err(secret_error)?;
    refresh_after(&platform, &app_id, "The secrets").await?;
    Ok(Json(json!({ "success": true })).into_response())
}

/// Why some names cannot be secrets, and what to do.
const RESERVED_DETAIL: &str = "Secrets become the function's environment variables. Names must be letters, digits and \
    '_', not starting with a digit, and not one the system loader, Deno or Homebase reads (LD_*, DENO_*, NODE_*, \
    NPM_CONFIG_*, RUST_*, MALLOC_*, GLIBC_*, HOMEBASE_*, BASE44_*, PATH, HOME, TMPDIR, the proxy and certificate \
    variables, SSLKEYLOGFILE, …). Choose another name, e.g. with your app's prefix.";

/// A store error of a secrets route: a bad name is a 400 whose detail says what names may be.
fn secret_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Invalid { message } => bad_secrets(
            message,
            "Secret names are environment-variable names: letters, digits and '_', not starting with a digit.",
        ),
        other => store_error(other),
    }
}

/// `GET …/secrets`: `{NAME: "••••••••", …}`; values are never sent back.
async fn list_secrets(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let names = platform.store.secret_names(&app_id).await.map_err(store_error)?;
    let masked: serde_json::Map<String, Value> = names.into_iter().map(|n| (n, json!(MASKED_SECRET))).collect();
    Ok(Json(Value::Object(masked)).into_response())
}

/// `DELETE …/secrets?secret_name=NAME`.
async fn delete_secret(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path(app_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let Some(name) = query.get("secret_name").filter(|n| !n.is_empty()) else {
        return Err(bad_secrets("No secret name was given", "Name it: DELETE …/secrets?secret_name=NAME."));
    };
    if !platform.store.delete_secret(&app_id, name).await.map_err(store_error)? {
        return Err(ApiError::new(
            ErrorCode::SecretNotFound,
            format!("No secret named '{name}'"),
            "List them with GET …/secrets.",
        ));
    }
    refresh_after(&platform, &app_id, "The deletion").await?;
    Ok(Json(json!({ "success": true })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetAllowBody {
    allow: Vec<String>,
}

/// `GET …/function-net-allow`: `{"allow": [...]}`, what the app's functions may reach besides
/// the public internet and the server's own `function-net-allow`.
async fn get_net_allow(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let entries = platform.store.function_net_allow(&app_id).await.map_err(store_error)?;
    Ok(Json(json!({ "allow": entries })).into_response())
}

/// `PUT …/function-net-allow` with `{"allow": ["10.0.0.5", "10.1.0.0/16"]}`: replaces the list
/// (`[]` empties it). Admin keys only: with an app's key, whoever holds it could open this
/// host's own services to the code they deploy. Running workers are replaced once their
/// requests are done.
async fn set_net_allow(
    State(platform): State<Arc<Platform>>,
    caller: Caller,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require_admin().map_err(|mut error| {
        error.detail = "Only an admin key may change what an app's functions can reach on the network.".into();
        error
    })?;
    ensure_app(&platform.store, &app_id).await?;
    let request: NetAllowBody = parse_body(&body)?;
    let allow = homebase_runtime::NetAllow::parse(&request.allow).map_err(|problem| {
        ApiError::new(
            ErrorCode::InvalidNetAllow,
            format!("The list cannot be used: {problem}"),
            "Send {\"allow\": [...]} with IP addresses (10.0.0.5, fd00::5), CIDR blocks (10.0.0.0/24) or \"*\" for \
             everything; [] allows nothing beyond the public internet.",
        )
    })?;
    let entries = allow.entries();
    platform.store.set_function_net_allow(&app_id, entries.clone()).await.map_err(store_error)?;
    refresh_after(&platform, &app_id, "The list").await?;
    Ok(Json(json!({ "allow": entries })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deno_errors_are_summarised_with_their_place() {
        let syntax = "error: SyntaxError: Expression expected\n  |\n2 |   x(;\n  |     ~\n    at entry.ts:2:32";
        assert_eq!(summarize_deno_error(syntax), "SyntaxError: Expression expected (entry.ts:2:32)");
        let missing = "error: Module not found \"nope.ts\".\n    at entry.ts:1:15";
        assert_eq!(summarize_deno_error(missing), "Module not found \"nope.ts\". (entry.ts:1:15)");
        assert_eq!(summarize_deno_error("error: something else"), "something else");
    }
}

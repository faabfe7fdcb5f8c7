//! App users over HTTP (reference §4), as the SDK's `auth` and `users` modules call it, under
//! `/api/apps/{app_id}/`:
//!
//! - `POST auth/register`, `auth/verify-otp`, `auth/resend-otp`, `auth/login`,
//!   `auth/change-password`, `auth/reset-password-request`, `auth/reset-password`;
//! - `GET`/`PUT entities/User/me`, `GET entities/User` and `entities/User/{id}`;
//! - `POST users/invite-user` and `runtime/users/invite-user`.
//!
//! Login answers a wrong password and an unknown account with the same status and body, after
//! the same Argon2 work. The limiter ([`Limits`]) counts, per account and per client address,
//! login attempts and verification code guesses (each reserved before the check, given back on
//! success) and the requests that send mail or hash a new password (`register`, `resend-otp`,
//! `reset-password-request`, `invite-user`). A right password or code is never refused for its
//! address's failures, only for its account's (see [`homebase_identity::auth::Limiter`]). With
//! several nodes the counts are kept in the store they share ([`homebase_identity::limits`]).
//! Codes are e-mailed ([`Mailer`]); `resend-otp` and `reset-password-request` answer alike
//! whether or not the account exists.
//!
//! A user token is resolved to its user on every user route: the account must exist, not be
//! disabled, and still have the password stamp the token carries (a password change or reset,
//! or disabling the user, signs old tokens out). The function routes apply the same rule from
//! a cache (`homebase_identity::user_states`). A completed reset also lifts the account's login lock.

// The handlers' helpers fail with the `Response` to send, at most once per request; boxing it
// would only add an allocation.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use homebase_catalog::Catalog;
use homebase_store::{CodeCheck, CodePurpose, NewUser, Store, User, UserRole, UserUpdate};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use tokio_util::task::TaskTracker;

use homebase_identity::auth::{
    self, Attempt, Identity, Limit, LoginLimits, Refused, Reservation, Subject, TokenUser, Unauthorized,
};
use homebase_identity::limits::{LimitError, Limits};
use homebase_identity::mail::{Mail, Mailer};
use homebase_identity::token::TokenMinter;
use homebase_identity::user_states::{SignIn, UserStates};

use crate::error::{ApiError, ErrorCode, store_error};

/// How long a user access token lives.
pub const USER_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an e-mailed verification code lives.
pub const OTP_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a password reset token lives.
pub const RESET_TTL: Duration = Duration::from_secs(60 * 60);

/// What the user routes need.
pub struct Auth {
    pub store: Store,
    pub tokens: Arc<TokenMinter>,
    /// The users' sign-in states the function routes check user tokens against.
    pub users: Arc<UserStates>,
    /// Resolves the app id of a URL (dev answers every id with the project's app).
    pub catalog: Arc<dyn Catalog>,
    pub mailer: Mailer,
    /// The login and mail limits: in memory, or in the store that several nodes share.
    pub limiter: Limits,
    /// Whether e-mail verification is required in apps that never set it (serve: yes, dev: no).
    pub verification_default: bool,
    pub user_token_ttl: Duration,
    /// The server's tasks: mail is sent on them, so that stopping waits for it.
    pub tasks: TaskTracker,
}

impl Auth {
    pub fn new(
        store: Store,
        tokens: Arc<TokenMinter>,
        catalog: Arc<dyn Catalog>,
        mailer: Mailer,
        verification_default: bool,
        tasks: TaskTracker,
    ) -> Auth {
        Auth {
            tasks,
            users: UserStates::new(store.clone()),
            store,
            tokens,
            catalog,
            mailer,
            limiter: Limits::local(LoginLimits::default()),
            verification_default,
            user_token_ttl: USER_TOKEN_TTL,
        }
    }

    pub fn with_limits(mut self, limits: LoginLimits) -> Auth {
        self.limiter = Limits::local(limits);
        self
    }

    /// [`with_limits`](Auth::with_limits), counted in `store`: for several nodes sharing it.
    pub fn with_shared_limits(mut self, limits: LoginLimits, store: Store) -> Auth {
        self.limiter = Limits::shared(limits, store);
        self
    }

    /// The canonical id of the app a URL names, or 404.
    pub fn app_id(&self, id: &str) -> Result<String, ApiError> {
        self.catalog.app(id).map(|app| app.app_id.clone()).ok_or_else(|| {
            ApiError::new(ErrorCode::AppNotFound, format!("No app with id '{id}'"), "Check the app id the client uses.")
        })
    }

    /// Whether the app requires e-mail verification.
    pub async fn verification_required(&self, app_id: &str) -> Result<bool, ApiError> {
        Ok(self.store.require_verification(app_id).await.map_err(store_error)?.unwrap_or(self.verification_default))
    }

    /// A user access token.
    pub fn user_token(&self, user: &User) -> String {
        self.tokens.mint_user(&user.app_id, &user.id, &user.email, &user.password_stamp, self.user_token_ttl)
    }

    fn send_code(&self, user: &User, code: &str) {
        self.mailer.send(&self.tasks, Mail {
            to: user.email.clone(),
            subject: "Your verification code".into(),
            body: format!(
                "Your verification code is {code}.\nIt expires in {} minutes. If you did not sign up, ignore this mail.",
                OTP_TTL.as_secs() / 60
            ),
        });
    }

    fn send_reset(&self, user: &User, token: &str, invited: bool) {
        let (subject, intro) = if invited {
            ("You have been invited", "You have been invited to an app. Choose a password with this token:")
        } else {
            ("Reset your password", "Someone asked to reset your password. If it was you, use this token:")
        };
        self.mailer.send(
            &self.tasks,
            Mail {
                to: user.email.clone(),
                subject: subject.into(),
                body: format!("{intro}\n\n{token}\n\nIt expires in {} minutes.", RESET_TTL.as_secs() / 60),
            },
        );
    }

    /// A new verification code for `user`, stored hashed and mailed.
    async fn issue_code(&self, user: &User) -> Result<(), ApiError> {
        let code = format!("{:06}", rand::random_range(0..1_000_000u32));
        self.store
            .put_code(&user.app_id, &user.id, CodePurpose::Verify, &code, OTP_TTL.as_millis() as i64)
            .await
            .map_err(store_error)?;
        self.send_code(user, &code);
        Ok(())
    }
}

pub fn router(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/api/apps/{app_id}/auth/register", post(register))
        .route("/api/apps/{app_id}/auth/verify-otp", post(verify_otp))
        .route("/api/apps/{app_id}/auth/resend-otp", post(resend_otp))
        .route("/api/apps/{app_id}/auth/login", post(login))
        .route("/api/apps/{app_id}/auth/change-password", post(change_password))
        .route("/api/apps/{app_id}/auth/reset-password-request", post(reset_password_request))
        .route("/api/apps/{app_id}/auth/reset-password", post(reset_password))
        .route("/api/apps/{app_id}/entities/User", get(list_users))
        .route("/api/apps/{app_id}/entities/User/me", get(get_me).put(put_me))
        .route("/api/apps/{app_id}/entities/User/{id}", get(get_user))
        .route("/api/apps/{app_id}/users/invite-user", post(invite_user))
        .route("/api/apps/{app_id}/runtime/users/invite-user", post(invite_user))
        .with_state(auth)
}

/// The client's address, when the server was started with connect info: the connection's
/// peer, or the client a trusted proxy names ([`crate::proxies`]).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<crate::Peer>>().map(|c| c.0.remote.ip());
        let proxies = parts.extensions.get::<Arc<crate::proxies::TrustedProxies>>();
        Ok(ClientAddr(match (peer, proxies) {
            (Some(peer), Some(proxies)) => Some(proxies.client(peer, &parts.headers)),
            (peer, _) => peer,
        }))
    }
}

/// The verified caller (or none) of an app's route.
pub(crate) fn identify(auth: &Auth, headers: &HeaderMap, app_id: &str) -> Result<Option<Identity>, Response> {
    auth::identify(&auth.tokens, crate::headers::credentials(headers), app_id).map_err(refused)
}

fn require_identity(auth: &Auth, headers: &HeaderMap, app_id: &str) -> Result<Identity, Response> {
    identify(auth, headers, app_id)?.ok_or_else(|| refused(Unauthorized::SignInRequired))
}

/// The user a token names; 401 when the account is gone or disabled, or its password changed
/// (or it was disabled) since the token was issued: the same rule as on the function routes.
pub(crate) async fn token_user(auth: &Auth, app_id: &str, token: &TokenUser) -> Result<User, Response> {
    let user = auth.store.user(app_id, &token.id).await.map_err(|e| store_error(e).into_response())?;
    SignIn::of(user.as_ref()).admits(token).map_err(refused)?;
    user.ok_or_else(|| refused(Unauthorized::UserGone))
}

/// The user the caller acts for, resolved with [`token_user`]; `None` for the service role
/// without `on-behalf-of`.
async fn caller_user(auth: &Auth, app_id: &str, identity: &Identity) -> Result<Option<User>, Response> {
    match identity.user() {
        Some(token) => token_user(auth, app_id, token).await.map(Some),
        None => Ok(None),
    }
}

/// The 401 of a refused credential.
fn refused(error: Unauthorized) -> Response {
    ApiError::from(error).into_response()
}

fn bad_request(code: ErrorCode, message: impl Into<String>, detail: impl Into<String>) -> Response {
    ApiError::new(code, message, detail).into_response()
}

/// The JSON object of a request body.
fn object(body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request(ErrorCode::BadJson, "The request body must be a JSON object", "Send {\"field\": …}.")),
        Err(e) => Err(bad_request(ErrorCode::BadJson, "The request body is not JSON", e.to_string())),
    }
}

/// A required string field.
fn text<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a str, Response> {
    match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(bad_request(
            ErrorCode::MissingField,
            format!("The request needs '{name}'"),
            format!("Add \"{name}\": \"…\" to the JSON body."),
        )),
        Some(_) => {
            Err(bad_request(ErrorCode::BadField, format!("'{name}' must be a string"), "Send it as a JSON string."))
        }
    }
}

/// A required e-mail field, normalised (trimmed, lowercased, checked: at most 254 bytes).
fn email_field(map: &Map<String, Value>, name: &str) -> Result<String, Response> {
    homebase_store::normalize_email(text(map, name)?).map_err(|e| {
        bad_request(
            ErrorCode::InvalidEmail,
            e.to_string(),
            format!("Send '{name}' as a plain address, like ann@example.test."),
        )
    })
}

/// Counts one `attempt` (see [`homebase_identity::auth::Limiter::reserve`]); a 429 with `Retry-After` when
/// over a limit, a 503 when the shared counters cannot be reached.
async fn reserve(
    auth: &Auth,
    attempt: Attempt,
    app_id: &str,
    account: Option<&str>,
    address: Option<IpAddr>,
) -> Result<Reservation, Response> {
    auth.limiter.reserve(attempt, app_id, Subject { account, address }).await.map_err(|error| match error {
        LimitError::Refused(refused) => too_many(attempt, refused),
        LimitError::Store(error) => store_response(error),
    })
}

/// The answer to a wrong password or code: `wrong`, or a 429 when its address is past its limit.
fn failed(attempt: Attempt, reservation: &Reservation, wrong: Response) -> Response {
    match reservation.address_limited() {
        Some(retry_after) => too_many(attempt, Refused { limit: Limit::Address, retry_after }),
        None => wrong,
    }
}

fn optional_text<'a>(map: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Response> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text(map, name).map(Some),
    }
}

fn store_response(error: homebase_store::StoreError) -> Response {
    store_error(error).into_response()
}

/// The user as the SDK's `User` type has it: custom fields, then the built-in ones.
pub fn user_json(user: &User) -> Value {
    let mut map = user.data.clone();
    let time = |ms: i64| {
        homebase_runtime::logs::rfc3339_micros(std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
    };
    for (key, value) in [
        ("id", json!(user.id)),
        ("email", json!(user.email)),
        ("full_name", json!(user.full_name)),
        ("role", json!(user.role.as_str())),
        ("_app_role", json!(user.role.as_str())),
        ("is_verified", json!(user.is_verified)),
        ("disabled", json!(user.disabled)),
        ("app_id", json!(user.app_id)),
        ("is_service", json!(false)),
        ("created_date", json!(time(user.created_at))),
        ("updated_date", json!(time(user.updated_at))),
    ] {
        map.insert(key.to_string(), value);
    }
    Value::Object(map)
}

/// What `me` answers for the service role without `on-behalf-of`.
fn service_user(app_id: &str) -> Value {
    json!({
        "id": "service",
        "email": null,
        "full_name": "Service role",
        "role": "admin",
        "_app_role": "admin",
        "is_verified": true,
        "disabled": false,
        "app_id": app_id,
        "is_service": true,
    })
}

fn signed_in(auth: &Auth, user: &User) -> Response {
    Json(json!({ "access_token": auth.user_token(user), "token_type": "bearer", "user": user_json(user) }))
        .into_response()
}

/// Unwraps a `Result<_, Response>` in a handler that returns `Response`.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return response,
        }
    };
}

async fn register(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
    ClientAddr(address): ClientAddr,
    body: Bytes,
) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let map = tri!(object(&body));
    let email = tri!(email_field(&map, "email"));
    let password = tri!(text(&map, "password"));
    let full_name = tri!(optional_text(&map, "full_name")).map(String::from);
    if let Err(e) = homebase_store::validate_password(password) {
        return store_response(e);
    }
    // Each registration hashes a password and may send a code: counted per e-mail and per address.
    let _ = tri!(reserve(&auth, Attempt::Mail, &app_id, Some(&email), address).await);
    let required = tri!(auth.verification_required(&app_id).await.map_err(IntoResponse::into_response));
    let new =
        NewUser { email, password: Some(password.into()), full_name, role: UserRole::User, is_verified: !required };
    let user = match auth.store.create_user(&app_id, new).await {
        Ok(user) => user,
        Err(homebase_store::StoreError::Conflict { .. }) => {
            return ApiError::new(
                ErrorCode::UserExists,
                "An account with this e-mail already exists",
                "Sign in instead, or reset the password with auth/reset-password-request.",
            )
            .into_response();
        }
        Err(e) => return store_response(e),
    };
    if !required {
        return signed_in(&auth, &user);
    }
    tri!(auth.issue_code(&user).await.map_err(IntoResponse::into_response));
    (
        StatusCode::CREATED,
        Json(json!({
            "message": "Check your e-mail for a verification code, then call auth/verify-otp.",
            "email": user.email,
            "requires_verification": true,
        })),
    )
        .into_response()
}

fn invalid_code() -> Response {
    bad_request(
        ErrorCode::InvalidCode,
        "The verification code is wrong or has expired",
        "Check the latest code mailed to you, or ask for a new one with auth/resend-otp.",
    )
}

async fn verify_otp(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
    ClientAddr(address): ClientAddr,
    body: Bytes,
) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let map = tri!(object(&body));
    let email = tri!(email_field(&map, "email"));
    let code = tri!(text(&map, "otp_code"));
    // Every guess counts against the account and the address, across resent codes.
    let reservation = tri!(reserve(&auth, Attempt::Otp, &app_id, Some(&email), address).await);
    let Some(user) = tri!(auth.store.user_by_email(&app_id, &email).await.map_err(store_response)) else {
        return failed(Attempt::Otp, &reservation, invalid_code());
    };
    // An invited account has no password yet and is never sent a code: it sets up with the
    // invitation's reset token.
    if !user.has_password {
        return failed(Attempt::Otp, &reservation, invalid_code());
    }
    match tri!(auth.store.take_code(&app_id, &user.id, CodePurpose::Verify, code).await.map_err(store_response)) {
        CodeCheck::Invalid => failed(Attempt::Otp, &reservation, invalid_code()),
        CodeCheck::Valid => {
            auth.limiter.refund(reservation).await;
            if user.disabled {
                return user_disabled();
            }
            let update = UserUpdate { is_verified: Some(true), ..Default::default() };
            let user = tri!(auth.store.update_user(&app_id, &user.id, update).await.map_err(store_response));
            signed_in(&auth, &user)
        }
    }
}

/// The prologue of the routes that mail an account (`resend-otp`, `reset-password-request`):
/// the app, the attempt counted per e-mail and address whether or not the account exists (so
/// the answer tells nothing), and the account if there is one.
async fn mail_request(
    auth: &Auth,
    app: &str,
    address: Option<IpAddr>,
    body: &Bytes,
) -> Result<(String, Option<User>), Response> {
    let app_id = auth.app_id(app).map_err(IntoResponse::into_response)?;
    let map = object(body)?;
    let email = email_field(&map, "email")?;
    let _ = reserve(auth, Attempt::Mail, &app_id, Some(&email), address).await?;
    let user = auth.store.user_by_email(&app_id, &email).await.map_err(store_response)?;
    Ok((app_id, user))
}

async fn resend_otp(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
    ClientAddr(address): ClientAddr,
    body: Bytes,
) -> Response {
    let (_, user) = tri!(mail_request(&auth, &app, address, &body).await);
    if let Some(user) = user
        && !user.is_verified
        && !user.disabled
        && user.has_password
    {
        tri!(auth.issue_code(&user).await.map_err(IntoResponse::into_response));
    }
    Json(json!({ "message": "If the account exists and is not verified yet, a new code is on its way." }))
        .into_response()
}

fn user_disabled() -> Response {
    ApiError::new(ErrorCode::UserDisabled, "This account is disabled", "Ask an admin of the app.").into_response()
}

/// The 429 of a refused attempt, saying what the caller can do about that limit.
fn too_many(attempt: Attempt, refused: Refused) -> Response {
    let secs = refused.retry_after.as_secs().max(1);
    let (message, detail) = match (attempt, refused.limit) {
        (_, Limit::Full) => (
            "Too many attempts right now",
            format!("The server is tracking too many failed attempts; wait {secs} seconds before trying again."),
        ),
        (Attempt::Login, Limit::Account) => (
            "Too many failed sign-in attempts for this account",
            format!(
                "The account is locked for {secs} seconds. Wait, or reset the password with \
                 auth/reset-password-request: a completed reset lifts the lock."
            ),
        ),
        (Attempt::Login, Limit::Address) => (
            "Too many failed sign-in attempts from this address",
            format!(
                "The e-mail or the password is wrong, and so were many sign-ins from this network address. Wait \
                 {secs} seconds before trying again; the right password is still accepted meanwhile."
            ),
        ),
        (Attempt::Otp, Limit::Account) => (
            "Too many wrong verification codes",
            format!("Wait {secs} seconds, then ask for a new code with auth/resend-otp."),
        ),
        (Attempt::Otp, Limit::Address) => (
            "Too many wrong verification codes from this address",
            format!(
                "The code is wrong or has expired, and so were many from this network address. Wait {secs} seconds \
                 before trying again; the right code is still accepted meanwhile."
            ),
        ),
        (Attempt::Mail, _) => ("Too many requests that send mail", format!("Wait {secs} seconds before asking again.")),
    };
    let mut response = ApiError::new(ErrorCode::TooManyAttempts, message, detail).into_response();
    response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

fn invalid_credentials() -> Response {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "Invalid email or password",
        "Check the e-mail address and the password.",
    )
    .into_response()
}

async fn login(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
    ClientAddr(address): ClientAddr,
    body: Bytes,
) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let map = tri!(object(&body));
    let email = tri!(email_field(&map, "email"));
    let password = tri!(text(&map, "password"));
    // Counted before the password is checked, so concurrent guesses cannot all get through;
    // given back when it was right.
    // Past the address's limit the password is still checked: a right one passes (many people
    // may share the address), a wrong one gets a 429.
    let reservation = tri!(reserve(&auth, Attempt::Login, &app_id, Some(&email), address).await);
    let Some(user) = tri!(auth.store.check_password(&app_id, &email, password).await.map_err(store_response)) else {
        return failed(Attempt::Login, &reservation, invalid_credentials());
    };
    auth.limiter.refund(reservation).await;
    if user.disabled {
        return user_disabled();
    }
    if !user.is_verified && tri!(auth.verification_required(&app_id).await.map_err(IntoResponse::into_response)) {
        return ApiError::new(
            ErrorCode::EmailNotVerified,
            "The e-mail address is not verified yet",
            "Enter the code mailed to you with auth/verify-otp, or ask for a new one with auth/resend-otp.",
        )
        .into_response();
    }
    signed_in(&auth, &user)
}

async fn change_password(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    ClientAddr(address): ClientAddr,
    body: Bytes,
) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let identity = tri!(require_identity(&auth, &headers, &app_id));
    let map = tri!(object(&body));
    let current = tri!(text(&map, "current_password"));
    let new = tri!(text(&map, "new_password"));
    let Some(token) = identity.user() else {
        return bad_request(
            ErrorCode::NoUser,
            "The service role has no password",
            "Sign in as the user whose password changes.",
        );
    };
    if let Some(user_id) = tri!(optional_text(&map, "user_id"))
        && user_id != token.id
    {
        return ApiError::new(
            ErrorCode::Forbidden,
            "You can only change your own password",
            "Send your own user id, or leave user_id out.",
        )
        .into_response();
    }
    let user = tri!(token_user(&auth, &app_id, token).await);
    let reservation = tri!(reserve(&auth, Attempt::Login, &app_id, Some(&user.email), address).await);
    if tri!(auth.store.check_password(&app_id, &user.email, current).await.map_err(store_response)).is_none() {
        let wrong = bad_request(
            ErrorCode::WrongPassword,
            "The current password is wrong",
            "Enter the password you sign in with.",
        );
        return failed(Attempt::Login, &reservation, wrong);
    }
    auth.limiter.refund(reservation).await;
    tri!(auth.store.set_password(&app_id, &user.id, new).await.map_err(store_response));
    // Every earlier token of the user is void now, the caller's too: it gets a new one.
    let Some(user) = tri!(auth.store.user(&app_id, &user.id).await.map_err(store_response)) else {
        return refused(Unauthorized::UserGone);
    };
    Json(json!({
        "message": "The password was changed. Other sessions are signed out; this answer carries a new access token.",
        "access_token": auth.user_token(&user),
        "token_type": "bearer",
    }))
    .into_response()
}

async fn reset_password_request(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
    ClientAddr(address): ClientAddr,
    body: Bytes,
) -> Response {
    let (app_id, user) = tri!(mail_request(&auth, &app, address, &body).await);
    if let Some(user) = user
        && !user.disabled
    {
        let token = tri!(
            auth.store.new_reset_token(&app_id, &user.id, RESET_TTL.as_millis() as i64).await.map_err(store_response)
        );
        auth.send_reset(&user, &token, false);
    }
    Json(json!({ "message": "If an account with this e-mail exists, a reset token is on its way." })).into_response()
}

async fn reset_password(State(auth): State<Arc<Auth>>, Path(app): Path<String>, body: Bytes) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let map = tri!(object(&body));
    let token = tri!(text(&map, "reset_token"));
    let password = tri!(text(&map, "new_password"));
    // Check the new password before the single-use token is spent on it.
    if let Err(e) = homebase_store::validate_password(password) {
        return store_response(e);
    }
    let Some(user) = tri!(auth.store.take_reset_token(&app_id, token).await.map_err(store_response)) else {
        return bad_request(
            ErrorCode::InvalidResetToken,
            "The reset token is wrong, used or expired",
            "Ask for a new one with auth/reset-password-request.",
        );
    };
    // Every token issued before is void from here on, on every route (the store announces the
    // change, which drops the cached sign-in state).
    tri!(auth.store.set_password(&app_id, &user.id, password).await.map_err(store_response));
    // The reset proves the mailbox: a login lock of the account (failed attempts by anyone) is
    // lifted, so its owner can sign in with the new password at once.
    auth.limiter.clear_account(Attempt::Login, &app_id, &user.email).await;
    // The token arrived by e-mail, which proves the address.
    if !user.is_verified {
        let update = UserUpdate { is_verified: Some(true), ..Default::default() };
        tri!(auth.store.update_user(&app_id, &user.id, update).await.map_err(store_response));
    }
    Json(json!({ "message": "The password was reset; sign in with the new one." })).into_response()
}

async fn get_me(State(auth): State<Arc<Auth>>, Path(app): Path<String>, headers: HeaderMap) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let identity = tri!(require_identity(&auth, &headers, &app_id));
    match tri!(caller_user(&auth, &app_id, &identity).await) {
        Some(user) => Json(user_json(&user)).into_response(),
        None => Json(service_user(&app_id)).into_response(),
    }
}

/// Fields `updateMe` may not change (reference §4), besides the ones Homebase manages.
const PROTECTED: [&str; 13] = [
    "id",
    "email",
    "full_name",
    "created_date",
    "updated_date",
    "created_by",
    "collaborator_role",
    "role",
    "_app_role",
    "is_verified",
    "disabled",
    "app_id",
    "is_service",
];

async fn put_me(State(auth): State<Arc<Auth>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let identity = tri!(require_identity(&auth, &headers, &app_id));
    let Some(user) = tri!(caller_user(&auth, &app_id, &identity).await) else {
        return bad_request(
            ErrorCode::NoUser,
            "The service role has no user record",
            "Sign in as a user to update it.",
        );
    };
    let current = user_json(&user);
    let mut data = Map::new();
    for (key, value) in tri!(object(&body)) {
        if PROTECTED.contains(&key.as_str()) {
            // Sending back what `me` returned is fine; changing it is not.
            if current.get(&key).unwrap_or(&Value::Null) != &value {
                return bad_request(
                    ErrorCode::ProtectedField,
                    format!("'{key}' cannot be changed with updateMe"),
                    format!("Leave '{key}' out; these fields are managed by the platform: {}.", PROTECTED.join(", ")),
                );
            }
            continue;
        }
        data.insert(key, value);
    }
    let update = UserUpdate { data, ..Default::default() };
    let user = tri!(auth.store.update_user(&app_id, &user.id, update).await.map_err(store_response));
    Json(user_json(&user)).into_response()
}

/// The caller's user (checked with [`token_user`]) and whether it may see every user: the
/// service role or an admin user.
async fn caller_and_admin(auth: &Auth, app_id: &str, identity: &Identity) -> Result<(Option<User>, bool), Response> {
    let user = caller_user(auth, app_id, identity).await?;
    let admin = match identity {
        Identity::Service { .. } => true,
        Identity::User(_) => user.as_ref().is_some_and(|u| u.role == UserRole::Admin),
    };
    Ok((user, admin))
}

async fn list_users(State(auth): State<Arc<Auth>>, Path(app): Path<String>, headers: HeaderMap) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let identity = tri!(require_identity(&auth, &headers, &app_id));
    let (user, admin) = tri!(caller_and_admin(&auth, &app_id, &identity).await);
    if admin {
        let users = tri!(auth.store.list_users(&app_id).await.map_err(store_response));
        return Json(users.iter().map(user_json).collect::<Vec<_>>()).into_response();
    }
    Json(user.iter().map(user_json).collect::<Vec<_>>()).into_response()
}

async fn get_user(
    State(auth): State<Arc<Auth>>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let identity = tri!(require_identity(&auth, &headers, &app_id));
    let (user, admin) = tri!(caller_and_admin(&auth, &app_id, &identity).await);
    if !admin && user.as_ref().map(|u| u.id.as_str()) != Some(id.as_str()) {
        return ApiError::new(ErrorCode::Forbidden, "You can only read your own user", "Use entities/User/me.")
            .into_response();
    }
    match tri!(auth.store.user(&app_id, &id).await.map_err(store_response)) {
        Some(user) => Json(user_json(&user)).into_response(),
        None => {
            ApiError::new(ErrorCode::UserNotFound, format!("No user with id '{id}'"), "Check the id.").into_response()
        }
    }
}

async fn invite_user(
    State(auth): State<Arc<Auth>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    ClientAddr(address): ClientAddr,
    body: Bytes,
) -> Response {
    let app_id = tri!(auth.app_id(&app).map_err(IntoResponse::into_response));
    let identity = tri!(require_identity(&auth, &headers, &app_id));
    let (caller, admin) = tri!(caller_and_admin(&auth, &app_id, &identity).await);
    let map = tri!(object(&body));
    let email = tri!(email_field(&map, "user_email"));
    let role = tri!(UserRole::parse(tri!(optional_text(&map, "role")).unwrap_or("user")).map_err(store_response));
    if role == UserRole::Admin && !admin {
        return ApiError::new(
            ErrorCode::Forbidden,
            "Only an admin can invite an admin",
            "Invite with role 'user', or ask an admin of the app.",
        )
        .into_response();
    }
    // Each invitation sends mail: counted per inviting user and per address. The service role
    // (the app's own functions) is not limited.
    if let (Identity::User(_), Some(caller)) = (&identity, &caller) {
        let invited_by = format!("invited-by\0{}", caller.id);
        let _ = tri!(reserve(&auth, Attempt::Mail, &app_id, Some(&invited_by), address).await);
    }
    let new = NewUser { email, password: None, full_name: None, role, is_verified: false };
    let user = match auth.store.create_user(&app_id, new).await {
        Ok(user) => user,
        Err(homebase_store::StoreError::Conflict { .. }) => {
            return ApiError::new(
                ErrorCode::UserExists,
                "This e-mail already has an account in the app",
                "There is nothing to invite; the user can sign in or reset the password.",
            )
            .into_response();
        }
        Err(e) => return store_response(e),
    };
    let token =
        tri!(auth.store.new_reset_token(&app_id, &user.id, RESET_TTL.as_millis() as i64).await.map_err(store_response));
    auth.send_reset(&user, &token, true);
    Json(json!({ "message": "The invitation was sent.", "user_email": user.email, "role": role.as_str() }))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use homebase_store::StoreError;

    #[test]
    fn database_errors_do_not_reach_the_client() {
        let leak = "no such table: users (SELECT password_hash FROM users)";
        for error in [StoreError::Database(leak.into()), StoreError::Io(leak.into())] {
            let error = store_error(error);
            assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!error.message.contains("no such table") && !error.detail.contains("no such table"), "{error:?}");
            assert!(!error.message.is_empty() && !error.detail.is_empty());
        }
        let invalid = store_error(StoreError::Invalid { message: "The password is too short".into() });
        assert_eq!(
            (invalid.status(), invalid.message.as_str()),
            (StatusCode::BAD_REQUEST, "The password is too short")
        );
    }
}

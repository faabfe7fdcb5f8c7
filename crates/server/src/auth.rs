//! Who is calling: bearer tokens checked against the app they are used for, and the login
//! rate limiter.
//!
//! - A user token is accepted for its own app only; a service token likewise. A service-role
//!   request may carry `on-behalf-of: Bearer <user token>` (reference §2.2); that token is
//!   checked the same way, and a bad one fails the request.
//! - Anything that does not verify (forged, expired, malformed, another app's) is a 401, never
//!   silently treated as anonymous.
//! - [`LoginLimiter`] counts failed logins per account and per client address in a fixed window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use crate::token::{Claims, ROLE_SERVICE, TokenError, TokenMinter};

pub const ON_BEHALF_OF: HeaderName = HeaderName::from_static("on-behalf-of");

/// A verified caller of an app's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An app user, by id.
    User { user_id: String },
    /// The app's service role; `on_behalf_of` is the user id from a verified `on-behalf-of`.
    Service { on_behalf_of: Option<String> },
}

impl Identity {
    /// The user this request acts for: the user, or the service role's `on-behalf-of` user.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Identity::User { user_id } => Some(user_id),
            Identity::Service { on_behalf_of } => on_behalf_of.as_deref(),
        }
    }
}

/// A 401 with the body every Homebase error has (`message`, `detail`, `code`) plus the
/// `error: "Unauthorized"` the Base44 dev server answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthorized {
    pub message: String,
    pub detail: String,
}

impl Unauthorized {
    pub fn new(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Unauthorized { message: message.into(), detail: detail.into() }
    }

    fn from_token(error: TokenError, what: &str) -> Self {
        let detail = match error {
            TokenError::Expired => "Sign in again to get a new token.",
            TokenError::OtherApp => "Use a token issued by this app (the app id in the URL or X-App-Id).",
            _ => "Send a token this server issued: Authorization: Bearer <token>.",
        };
        Unauthorized::new(format!("The {what} is not valid: {error}"), detail)
    }
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let body = json!({
            "message": self.message,
            "detail": self.detail,
            "code": "unauthorized",
            "error": "Unauthorized",
        });
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
    }
}

/// The token of an `Authorization`-style header value: `Some` for `Bearer <token>`.
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    value.to_str().ok()?.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty())
}

/// The caller of `app_id` named by `headers`: `Ok(None)` without an `Authorization` bearer, an
/// error for any bearer or `on-behalf-of` that does not verify for this app.
pub fn identify(tokens: &TokenMinter, headers: &HeaderMap, app_id: &str) -> Result<Option<Identity>, Unauthorized> {
    let Some(value) = headers.get(AUTHORIZATION) else { return Ok(None) };
    let Some(token) = bearer_token(value) else {
        return Err(Unauthorized::new(
            "The Authorization header is not a bearer token",
            "Send Authorization: Bearer <token>, or no Authorization header to call anonymously.",
        ));
    };
    let claims = tokens.verify_for_app(token, app_id).map_err(|e| Unauthorized::from_token(e, "token"))?;
    Ok(Some(identity_of(tokens, headers, app_id, &claims)?))
}

fn identity_of(
    tokens: &TokenMinter,
    headers: &HeaderMap,
    app_id: &str,
    claims: &Claims,
) -> Result<Identity, Unauthorized> {
    if claims.role != ROLE_SERVICE {
        return Ok(Identity::User { user_id: claims.sub.clone() });
    }
    let on_behalf_of = match headers.get(ON_BEHALF_OF) {
        None => None,
        Some(value) => {
            let token = bearer_token(value).ok_or_else(|| {
                Unauthorized::new(
                    "The on-behalf-of header is not a bearer token",
                    "Send on-behalf-of: Bearer <user token>.",
                )
            })?;
            let user =
                tokens.verify_for_app(token, app_id).map_err(|e| Unauthorized::from_token(e, "on-behalf-of token"))?;
            if user.role == ROLE_SERVICE {
                return Err(Unauthorized::new(
                    "The on-behalf-of token is a service token",
                    "on-behalf-of names a user: send that user's token.",
                ));
            }
            Some(user.sub)
        }
    };
    Ok(Identity::Service { on_behalf_of })
}

/// For the function routes: an `Authorization: Bearer` a caller sends must verify for the app
/// (401 otherwise), so that a function only ever sees a bearer this server issued for it.
/// Other schemes are left to the header rules, which drop them.
pub fn check_function_bearer(tokens: &TokenMinter, headers: &HeaderMap, app_id: &str) -> Result<(), Unauthorized> {
    match headers.get(AUTHORIZATION).and_then(bearer_token) {
        None => Ok(()),
        Some(token) => tokens.verify_for_app(token, app_id).map(drop).map_err(|e| Unauthorized::from_token(e, "token")),
    }
}

/// Failed-login limits: at most `per_account` failures per account and `per_address` per client
/// address within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_account: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits { per_account: 5, per_address: 30, window: Duration::from_secs(15 * 60) }
    }
}

/// Counts failed logins in fixed windows, in memory (per node).
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter { limits, counts: Mutex::new(HashMap::new()) }
    }

    fn keys(app_id: &str, email: &str, address: Option<IpAddr>) -> [(String, u32); 2] {
        [(format!("a\0{app_id}\0{}", email.trim().to_lowercase()), 0), (format!("i\0{app_id}\0{address:?}"), 1)]
    }

    /// `Err(retry after)` when the account or the address is over its limit.
    pub fn check(&self, app_id: &str, email: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for (key, kind) in Self::keys(app_id, email, address) {
            let limit = if kind == 0 { self.limits.per_account } else { self.limits.per_address };
            if let Some((start, n)) = counts.get(&key)
                && now.duration_since(*start) < self.limits.window
                && *n >= limit
            {
                return Err(self.limits.window.saturating_sub(now.duration_since(*start)));
            }
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn failed(&self, app_id: &str, email: &str, address: Option<IpAddr>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if counts.len() >= SWEEP_AT {
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.limits.window);
        }
        for (key, _) in Self::keys(app_id, email, address) {
            let entry = counts.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.limits.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    /// A successful login clears the account's count (not the address's).
    pub fn succeeded(&self, app_id: &str, email: &str) {
        let [(account, _), _] = Self::keys(app_id, email, None);
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).remove(&account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn bearers_are_verified_for_their_app() {
        let tokens = TokenMinter::new(b"k", Duration::from_secs(60));
        let user = tokens.mint_user("app1", "u1", "a@b.c", Duration::from_secs(60));
        let service = tokens.mint_service("app1");
        let auth = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
        assert_eq!(identify(&tokens, &HeaderMap::new(), "app1"), Ok(None));
        assert_eq!(identify(&tokens, &auth(&user), "app1"), Ok(Some(Identity::User { user_id: "u1".into() })));
        assert_eq!(identify(&tokens, &auth(&service), "app1"), Ok(Some(Identity::Service { on_behalf_of: None })));
        let on_behalf =
            headers(&[("authorization", &format!("Bearer {service}")), ("on-behalf-of", &format!("Bearer {user}"))]);
        assert_eq!(identify(&tokens, &on_behalf, "app1").unwrap().unwrap().user_id(), Some("u1"));
        for bad in [
            auth(&user).clone(),
            headers(&[("authorization", "Basic eDp5")]),
            auth("not.a.token"),
            headers(&[("authorization", &format!("Bearer {service}")), ("on-behalf-of", "Bearer forged")]),
        ] {
            assert!(identify(&tokens, &bad, "app2").is_err(), "{bad:?}");
        }
        let forged = TokenMinter::new(b"other", Duration::from_secs(60)).mint_user(
            "app1",
            "u1",
            "a@b.c",
            Duration::from_secs(60),
        );
        let err = identify(&tokens, &auth(&forged), "app1").unwrap_err();
        assert!(err.message.contains("signature"), "{err:?}");
        assert!(check_function_bearer(&tokens, &headers(&[("authorization", "Basic eDp5")]), "app1").is_ok());
        assert!(check_function_bearer(&tokens, &auth(&user), "app2").is_err());
    }

    #[test]
    fn the_limiter_blocks_an_account_and_an_address() {
        let limiter =
            LoginLimiter::new(LoginLimits { per_account: 2, per_address: 3, window: Duration::from_secs(60) });
        let ip: Option<IpAddr> = Some([10, 0, 0, 1].into());
        assert!(limiter.check("a", "ann@x", ip).is_ok());
        limiter.failed("a", "ann@x", ip);
        limiter.failed("a", "ANN@x", ip);
        assert!(limiter.check("a", "ann@x", ip).is_err(), "the account is blocked");
        assert!(limiter.check("b", "ann@x", Some([10, 0, 0, 2].into())).is_ok(), "per app");
        assert!(limiter.check("a", "bob@x", ip).is_ok(), "the address still has one try");
        limiter.failed("a", "bob@x", ip);
        assert!(limiter.check("a", "carl@x", ip).is_err(), "the address is blocked");
        limiter.succeeded("a", "ann@x");
        assert!(limiter.check("a", "ann@x", Some([10, 0, 0, 9].into())).is_ok());
    }
}

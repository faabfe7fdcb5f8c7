//! CORS for browser apps: one policy, applied as one layer ([`CorsLayer`]) over every route the SDK
//! calls from a browser (functions, auth, users; see [`crate::sdk`]). The management API (key
//! holders, the CLI) is not under it: browsers get no CORS headers there.
//!
//! For an allowed origin (see [`CorsPolicy`]):
//! - a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered by Homebase, `204`,
//!   and never reaches a handler or a function;
//! - every other response gets `Access-Control-Allow-Origin: <origin>`,
//!   `Access-Control-Allow-Credentials: true` and `Access-Control-Expose-Headers` naming the
//!   response's own headers, unless it already carries `Access-Control-Allow-Origin` (a function
//!   that does its own CORS).
//!
//! A request from any other origin gets no CORS headers and goes to its route unchanged: a
//! function sees it (and may answer CORS itself); Homebase's own routes answer its preflight
//! `403 origin_not_allowed` ([`crate::sdk`]). Every response of the layer's routes says
//! `Vary: Origin`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

/// The methods a preflight is told are allowed.
pub const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD";
/// How long a browser may cache a preflight's answer, in seconds.
pub const MAX_AGE_SECS: u32 = 600;

const REQUEST_PRIVATE_NETWORK: HeaderName = HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName = HeaderName::from_static("access-control-allow-private-network");

/// Which browser origins may call the SDK routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorsPolicy {
    /// Exact origins (`https://app.example`) or `*` for any.
    pub origins: Vec<String>,
    /// Allow `http(s)://localhost`, `127.0.0.1` and `[::1]` on any port.
    pub loopback: bool,
}

impl CorsPolicy {
    /// `homebase dev`: loopback origins (a front end's dev server on another port) and `origins`.
    pub fn dev(origins: Vec<String>) -> CorsPolicy {
        CorsPolicy { origins, loopback: true }
    }

    /// `homebase serve`: the configured `origins` only. A loopback origin in a visitor's browser
    /// is whatever runs on the visitor's machine, not the app: list it to allow it.
    pub fn serve(origins: Vec<String>) -> CorsPolicy {
        CorsPolicy { origins, loopback: false }
    }

    /// Whether this policy allows no origin at all.
    pub fn allows_nothing(&self) -> bool {
        self.origins.is_empty() && !self.loopback
    }

    /// The request's origin, if it is one this policy allows.
    pub fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        let allowed = (self.loopback && is_loopback(text)) || self.origins.iter().any(|o| o == "*" || o == text);
        allowed.then_some(origin)
    }

    /// Homebase's answer to a preflight of an allowed `origin`.
    fn answer_preflight(&self, origin: HeaderValue, request: &HeaderMap) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        allow(out, origin);
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
        if let Some(requested) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        // Chromium's private network checks (a public page calling a server on a private
        // address) ask for this in the preflight; an allowed origin may.
        if request.get(REQUEST_PRIVATE_NETWORK).is_some_and(|v| v == "true") {
            out.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
        out.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Method"));
        out.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
        response
    }

    /// Adds the allow headers to a response for an allowed origin, unless it already answered
    /// with its own; and `Vary: Origin` whenever this policy allows any origin, since the
    /// answer then depends on it.
    pub fn decorate(&self, origin: Option<HeaderValue>, response: &mut HeaderMap) {
        decorate(origin, !self.allows_nothing(), response);
    }
}

fn decorate(origin: Option<HeaderValue>, vary: bool, response: &mut HeaderMap) {
    if response.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    if let Some(origin) = origin {
        let exposed = exposed_headers(response);
        allow(response, origin);
        if let Some(exposed) = exposed {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed);
        }
    } else if vary {
        response.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The CORS layer of a router: `router.layer(CorsLayer::new(policy))` puts every route of the
/// router under the policy. A plain tower layer rather than `axum::middleware::from_fn`, which
/// would clone and box the inner service on every request: this one adds no allocation to a
/// request that is not from an allowed origin.
#[derive(Debug, Clone)]
pub struct CorsLayer {
    policy: Arc<CorsPolicy>,
}

impl CorsLayer {
    pub fn new(policy: Arc<CorsPolicy>) -> CorsLayer {
        CorsLayer { policy }
    }
}

impl<S> tower_layer::Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Cors<S> {
        Cors { policy: self.policy.clone(), inner }
    }
}

/// A service under [`CorsLayer`].
#[derive(Debug, Clone)]
pub struct Cors<S> {
    policy: Arc<CorsPolicy>,
    inner: S,
}

impl<S> tower_service::Service<Request> for Cors<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let origin = self.policy.allowed_origin(request.headers()).cloned();
        if let Some(origin) = &origin
            && is_preflight(request.method(), request.headers())
        {
            let answer = self.policy.answer_preflight(origin.clone(), request.headers());
            return CorsFuture::Answered { answer: Some(answer) };
        }
        CorsFuture::Inner { future: self.inner.call(request), origin, vary: !self.policy.allows_nothing() }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Cors`].
    #[project = CorsFutureProjection]
    pub enum CorsFuture<F> {
        /// A preflight the layer answered.
        Answered { answer: Option<Response> },
        /// Anything else, on its way through the route.
        Inner { #[pin] future: F, origin: Option<HeaderValue>, vary: bool },
    }
}

impl<F, E> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CorsFutureProjection::Answered { answer } => {
                Poll::Ready(Ok(answer.take().expect("a CorsFuture is not polled after it is done")))
            }
            CorsFutureProjection::Inner { future, origin, vary } => {
                let mut response = ready!(future.poll(cx))?;
                decorate(origin.take(), *vary, response.headers_mut());
                Poll::Ready(Ok(response))
            }
        }
    }
}

fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The names of the response's headers a page could not read without being told: every one but
/// the CORS-safelisted response headers, `Set-Cookie` (never readable), `Vary` and the CORS
/// headers.
/// With credentials allowed, `Access-Control-Expose-Headers: *` would name a header called `*`,
/// so the names are listed.
fn exposed_headers(response: &HeaderMap) -> Option<HeaderValue> {
    let mut names = String::new();
    for name in response.keys() {
        let text = name.as_str();
        let safelisted = matches!(
            text,
            "cache-control"
                | "content-language"
                | "content-length"
                | "content-type"
                | "expires"
                | "last-modified"
                | "pragma"
                | "set-cookie"
                | "vary"
        );
        if safelisted || text.starts_with("access-control-") {
            continue;
        }
        if !names.is_empty() {
            names.push_str(", ");
        }
        names.push_str(text);
    }
    if names.is_empty() { None } else { HeaderValue::from_str(&names).ok() }
}

/// `http(s)://localhost[:port]`, `127.0.0.1` or `[::1]`.
fn is_loopback(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(host, _)| host),
        None => rest.split(':').next().unwrap_or(""),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn dev_allows_loopback_origins_and_serve_does_not() {
        let dev = CorsPolicy::dev(Vec::new());
        for origin in ["http://localhost:5173", "http://127.0.0.1", "https://[::1]:8443"] {
            let h = headers(&[("origin", origin)]);
            assert!(dev.allowed_origin(&h).is_some(), "{origin}");
            assert!(CorsPolicy::serve(Vec::new()).allowed_origin(&h).is_none(), "serve: {origin}");
        }
        for origin in ["http://localhost.evil.example", "http://evil.example", "null", "file://"] {
            let h = headers(&[("origin", origin)]);
            assert!(dev.allowed_origin(&h).is_none(), "{origin}");
        }
        assert!(CorsPolicy::default().allows_nothing() && CorsPolicy::serve(Vec::new()).allows_nothing());
        assert!(!dev.allows_nothing());
    }

    #[test]
    fn configured_origins_and_wildcard() {
        let policy = CorsPolicy::serve(vec!["https://app.example".into()]);
        assert!(policy.allowed_origin(&headers(&[("origin", "https://app.example")])).is_some());
        assert!(policy.allowed_origin(&headers(&[("origin", "https://app.example:8443")])).is_none());
        assert!(policy.allowed_origin(&headers(&[("origin", "http://localhost:3000")])).is_none());
        let any = CorsPolicy::serve(vec!["*".into()]);
        assert!(any.allowed_origin(&headers(&[("origin", "https://anything.example")])).is_some());
    }

    #[test]
    fn preflights_of_allowed_origins_are_answered() {
        let policy = CorsPolicy::dev(Vec::new());
        let h = headers(&[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type"),
            ("access-control-request-private-network", "true"),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &h));
        let origin = policy.allowed_origin(&h).unwrap().clone();
        let response = policy.answer_preflight(origin, &h);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let out = response.headers();
        assert_eq!(out["access-control-allow-origin"], "http://localhost:5173");
        assert_eq!(out["access-control-allow-credentials"], "true");
        assert_eq!(out["access-control-allow-methods"], ALLOW_METHODS);
        assert_eq!(out["access-control-allow-headers"], "authorization, content-type");
        assert_eq!(out["access-control-allow-private-network"], "true");
        assert_eq!(out["access-control-max-age"], "600");
        let vary: Vec<_> = out.get_all("vary").iter().collect();
        assert!(vary.contains(&&HeaderValue::from_static("Origin")), "{vary:?}");
        // A plain OPTIONS is no preflight.
        assert!(!is_preflight(&Method::OPTIONS, &headers(&[("origin", "http://localhost")])));
    }

    #[test]
    fn responses_name_their_headers_and_a_functions_own_cors_wins() {
        let policy = CorsPolicy::dev(Vec::new());
        let mut response = headers(&[("access-control-allow-origin", "https://mine.example")]);
        policy.decorate(Some(HeaderValue::from_static("http://localhost")), &mut response);
        assert_eq!(response["access-control-allow-origin"], "https://mine.example");
        assert!(response.get("vary").is_none(), "left as the function made it");

        let mut response = headers(&[
            ("content-type", "application/json"),
            ("x-request-id", "req_1"),
            ("etag", "\"1\""),
            ("set-cookie", "a=b"),
        ]);
        policy.decorate(Some(HeaderValue::from_static("http://localhost")), &mut response);
        assert_eq!(response["access-control-allow-origin"], "http://localhost");
        assert_eq!(response["access-control-allow-credentials"], "true");
        assert_eq!(response["access-control-expose-headers"], "x-request-id, etag");
        assert_eq!(response["vary"], "Origin");

        // Not allowed: no CORS headers, but the answer varies with the origin.
        let mut response = headers(&[("content-type", "application/json")]);
        policy.decorate(None, &mut response);
        assert!(response.get("access-control-allow-origin").is_none());
        assert_eq!(response["vary"], "Origin");
        let mut response = HeaderMap::new();
        CorsPolicy::serve(Vec::new()).decorate(None, &mut response);
        assert!(response.is_empty(), "a policy that allows nothing adds nothing");
    }
}

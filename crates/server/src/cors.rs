//! CORS for browser callers of the function routes.
//!
//! Allowed origins (loopback ones by default, so a front end's dev server on another port works,
//! but no other site can drive your local functions) get their preflights answered by Homebase
//! and `Access-Control-Allow-*` headers on responses that do not set their own. Requests from
//! other origins reach the function untouched, so a function can still do its own CORS.

use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

/// Which browser origins may call functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Exact origins (`https://app.example`) or `*` for any.
    pub origins: Vec<String>,
    /// Allow `http(s)://localhost`, `127.0.0.1` and `[::1]` on any port.
    pub loopback: bool,
}

impl Default for CorsPolicy {
    fn default() -> Self {
        CorsPolicy { origins: Vec::new(), loopback: true }
    }
}

impl CorsPolicy {
    /// The request's origin, if it is one this policy allows.
    pub fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        let allowed = (self.loopback && is_loopback(text)) || self.origins.iter().any(|o| o == "*" || o == text);
        allowed.then_some(origin)
    }

    /// Homebase's answer to an allowed preflight, or `None` to let the request through.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            return None;
        }
        let origin = self.allowed_origin(headers)?.clone();
        let mut response = StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        allow(out, origin);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD"),
        );
        if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        Some(response)
    }

    /// Adds the allow headers to a response for an allowed origin, unless the function already
    /// answered with its own.
    pub fn decorate(&self, origin: Option<HeaderValue>, response: &mut HeaderMap) {
        if let Some(origin) = origin
            && !response.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        {
            allow(response, origin);
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
        }
    }
}

fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
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
    fn loopback_origins_are_allowed_by_default() {
        let policy = CorsPolicy::default();
        for origin in ["http://localhost:5173", "http://127.0.0.1", "https://[::1]:8443"] {
            let h = headers(&[("origin", origin)]);
            assert!(policy.allowed_origin(&h).is_some(), "{origin}");
        }
        for origin in ["http://localhost.evil.example", "http://evil.example", "null", "file://"] {
            let h = headers(&[("origin", origin)]);
            assert!(policy.allowed_origin(&h).is_none(), "{origin}");
        }
    }

    #[test]
    fn configured_origins_and_wildcard() {
        let policy = CorsPolicy { origins: vec!["https://app.example".into()], loopback: false };
        assert!(policy.allowed_origin(&headers(&[("origin", "https://app.example")])).is_some());
        assert!(policy.allowed_origin(&headers(&[("origin", "http://localhost:3000")])).is_none());
        let any = CorsPolicy { origins: vec!["*".into()], loopback: false };
        assert!(any.allowed_origin(&headers(&[("origin", "https://anything.example")])).is_some());
    }

    #[test]
    fn preflights_of_allowed_origins_are_answered() {
        let policy = CorsPolicy::default();
        let h = headers(&[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type"),
        ]);
        let response = policy.preflight(&Method::OPTIONS, &h).expect("answered");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let out = response.headers();
        assert_eq!(out["access-control-allow-origin"], "http://localhost:5173");
        assert_eq!(out["access-control-allow-credentials"], "true");
        assert_eq!(out["access-control-allow-headers"], "authorization, content-type");
        // A plain OPTIONS, or one from another origin, goes to the function.
        assert!(policy.preflight(&Method::OPTIONS, &headers(&[("origin", "http://localhost")])).is_none());
        let foreign = headers(&[("origin", "https://x.example"), ("access-control-request-method", "GET")]);
        assert!(policy.preflight(&Method::OPTIONS, &foreign).is_none());
    }

    #[test]
    fn a_functions_own_cors_headers_win() {
        let policy = CorsPolicy::default();
        let mut response = headers(&[("access-control-allow-origin", "https://mine.example")]);
        policy.decorate(Some(HeaderValue::from_static("http://localhost")), &mut response);
        assert_eq!(response["access-control-allow-origin"], "https://mine.example");
        let mut response = HeaderMap::new();
        policy.decorate(Some(HeaderValue::from_static("http://localhost")), &mut response);
        assert_eq!(response["access-control-allow-origin"], "http://localhost");
    }
}

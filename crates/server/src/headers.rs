//! The headers a function receives: the caller's, minus hop-by-hop and platform headers, plus the
//! context that `createClientFromRequest` reads (reference §2.3).

use homebase_identity::auth::{Credentials, ON_BEHALF_OF};
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

pub const APP_ID: HeaderName = HeaderName::from_static("base44-app-id");
pub const API_URL: HeaderName = HeaderName::from_static("base44-api-url");
pub const SERVICE_AUTHORIZATION: HeaderName = HeaderName::from_static("base44-service-authorization");
pub const DATA_ENV: HeaderName = HeaderName::from_static("x-data-env");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_APP_ID: HeaderName = HeaderName::from_static("x-app-id");

/// The credentials `headers` carry, as identity checks them: the text of `Authorization` and
/// `on-behalf-of`, a header that is not text counting as present and empty (no bearer).
pub fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let text = |name: &str| headers.get(name).map(|value| value.to_str().unwrap_or(""));
    Credentials { authorization: text(AUTHORIZATION.as_str()), on_behalf_of: text(ON_BEHALF_OF) }
}

/// Headers that describe one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Who is calling, which decides what identity reaches the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Through the SDK routes: a well-formed user bearer is forwarded.
    Sdk,
    /// The public `/functions/…` URL: never a user context.
    Webhook,
}

/// What Homebase adds to every function request.
pub struct Injected<'a> {
    pub app_id: &'a str,
    pub api_url: &'a str,
    pub service_token: &'a str,
    pub request_id: &'a str,
}

/// Rewrites `headers` in place for the function.
pub fn prepare_request_headers(headers: &mut HeaderMap, caller: Caller, injected: &Injected<'_>) {
    strip_hop_by_hop(headers);
    // Client-sent copies of platform headers are never trusted.
    headers.remove(&SERVICE_AUTHORIZATION);
    headers.remove(&APP_ID);
    headers.remove(&API_URL);
    let keep_auth = caller == Caller::Sdk && headers.get(AUTHORIZATION).is_some_and(is_bearer);
    if !keep_auth {
        headers.remove(AUTHORIZATION);
    }
    if let Some(env) = headers.get(&DATA_ENV)
        && env != "dev"
        && env != "prod"
    {
        headers.remove(&DATA_ENV);
    }
    headers.insert(APP_ID, value(injected.app_id));
    headers.insert(API_URL, value(injected.api_url));
    let mut bearer = String::with_capacity(7 + injected.service_token.len());
    bearer.push_str("Bearer ");
    bearer.push_str(injected.service_token);
    headers.insert(SERVICE_AUTHORIZATION, value(&bearer));
    headers.insert(REQUEST_ID, value(injected.request_id));
}

/// Removes connection-level headers from a function's response.
pub fn prepare_response_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The SDK's rule: exactly `Bearer <token>`, one space, non-empty token.
pub fn is_bearer(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else { return false };
    let Some(token) = text.strip_prefix("Bearer ") else { return false };
    !token.is_empty() && !token.contains(' ')
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A request id the caller sent, if it is short and printable; otherwise none.
pub fn caller_request_id(headers: &HeaderMap) -> Option<&str> {
    let id = headers.get(&REQUEST_ID)?.to_str().ok()?;
    (!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected() -> Injected<'static> {
        Injected { app_id: "app1", api_url: "http://h:1", service_token: "tok", request_id: "r1" }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn sdk_callers_keep_a_bearer_and_get_platform_headers() {
        let mut h = headers(&[("authorization", "Bearer user"), ("x-custom", "1"), ("host", "h:1")]);
        prepare_request_headers(&mut h, Caller::Sdk, &injected());
        assert_eq!(h["authorization"], "Bearer user");
        assert_eq!(h["base44-app-id"], "app1");
        assert_eq!(h["base44-api-url"], "http://h:1");
        assert_eq!(h["base44-service-authorization"], "Bearer tok");
        assert_eq!(h["x-request-id"], "r1");
        assert_eq!(h["x-custom"], "1");
        assert_eq!(h["host"], "h:1");
    }

    #[test]
    fn spoofed_platform_headers_are_replaced() {
        let mut h = headers(&[
            ("base44-service-authorization", "Bearer forged"),
            ("base44-app-id", "other"),
            ("base44-api-url", "http://evil"),
        ]);
        prepare_request_headers(&mut h, Caller::Sdk, &injected());
        assert_eq!(h["base44-service-authorization"], "Bearer tok");
        assert_eq!(h["base44-app-id"], "app1");
        assert_eq!(h["base44-api-url"], "http://h:1");
        assert_eq!(h.get_all("base44-service-authorization").iter().count(), 1);
    }

    #[test]
    fn webhooks_and_malformed_authorization_lose_it() {
        for (caller, auth) in [
            (Caller::Webhook, "Bearer user"),
            (Caller::Sdk, "Basic dXNlcjpwdw=="),
            (Caller::Sdk, "Bearer "),
            (Caller::Sdk, "Bearer a b"),
            (Caller::Sdk, ""),
        ] {
            let mut h = headers(&[("authorization", auth)]);
            prepare_request_headers(&mut h, caller, &injected());
            assert!(h.get("authorization").is_none(), "{caller:?} {auth:?} kept");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_bad_data_env_are_dropped() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("x-data-env", "staging"),
        ]);
        prepare_request_headers(&mut h, Caller::Sdk, &injected());
        for gone in ["connection", "x-private", "transfer-encoding", "x-data-env"] {
            assert!(h.get(gone).is_none(), "{gone} kept");
        }
        let mut h = headers(&[("x-data-env", "dev")]);
        prepare_request_headers(&mut h, Caller::Sdk, &injected());
        assert_eq!(h["x-data-env"], "dev");
    }

    #[test]
    fn caller_request_ids_must_be_short_and_printable() {
        assert_eq!(caller_request_id(&headers(&[("x-request-id", "abc-1")])), Some("abc-1"));
        assert_eq!(caller_request_id(&headers(&[("x-request-id", &"x".repeat(200))])), None);
        assert_eq!(caller_request_id(&headers(&[("x-request-id", "a b")])), None);
        assert_eq!(caller_request_id(&HeaderMap::new()), None);
    }
}

//! CORS for browser apps over real HTTP with explicit `Origin` headers: `serve`
//! ([`TestPlatform`]) with one configured origin and real Deno running a deployed function, and
//! `dev` ([`TestServer`]) with its loopback origins. One policy covers the auth, user and
//! function routes; the management API and `/healthz` get no CORS headers. (`browser.rs` does
//! the same with the official SDK in headless Chromium.)

use homebase_testkit::{ADMIN_KEY, PlatformOptions, TestPlatform, TestServer, fixture, json_of};
use reqwest::{Method, Response};
use serde_json::{Value, json};

const ALLOWED: &str = "https://app.example.test";
const OTHER: &str = "https://evil.example.test";

/// A function that answers every method with JSON and a header of its own.
const WHO: &str = r#"Deno.serve((req) => Response.json(
  { function: "who", method: req.method, authorization: req.headers.get("authorization")?.split(" ")[0] ?? null },
  { headers: { "x-who": "who" } },
));
"#;

/// `serve` allowing [`ALLOWED`], with an app (verification off), `who` deployed and a user.
async fn platform() -> (TestPlatform, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = PlatformOptions { cors_origins: vec![ALLOWED.into()], ..Default::default() };
    let platform = TestPlatform::start_with(dir.path(), options).await;
    let admin =
        |method: Method, path: &str| platform.client().request(method, platform.at(path)).header("api_key", ADMIN_KEY);
    let response = admin(Method::POST, "/api/apps").json(&json!({ "name": "Shop" })).send().await.unwrap();
    let app = json_of(response).await["id"].as_str().unwrap().to_string();
    let response = admin(Method::PUT, &format!("/api/apps/{app}/auth/settings"))
        .json(&json!({ "require_verification": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deploy = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": WHO }], "automations": [] });
    let response =
        admin(Method::PUT, &format!("/api/apps/{app}/backend-functions/who")).json(&deploy).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = platform
        .client()
        .post(platform.at(&format!("/api/apps/{app}/auth/register")))
        .json(&json!({"email": "ann@example.test", "password": "pw-123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    (platform, app, dir)
}

async fn preflight(url: String, origin: &str, method: &str) -> Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization, content-type, x-origin-url")
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn vary(response: &Response) -> Vec<String> {
    response.headers().get_all("vary").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

/// The answer to an allowed preflight: Homebase's, 204, with the whole policy.
fn assert_preflight_allowed(what: &str, response: &Response, origin: &str) {
    assert_eq!(response.status(), 204, "{what}");
    assert_eq!(header(response, "access-control-allow-origin"), Some(origin), "{what}");
    assert_eq!(header(response, "access-control-allow-credentials"), Some("true"), "{what}");
    assert_eq!(
        header(response, "access-control-allow-methods"),
        Some("GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD"),
        "{what}"
    );
    assert_eq!(
        header(response, "access-control-allow-headers"),
        Some("authorization, content-type, x-origin-url"),
        "{what}"
    );
    assert_eq!(header(response, "access-control-max-age"), Some("600"), "{what}");
    assert!(vary(response).iter().any(|v| v == "Origin"), "{what}: {:?}", vary(response));
}

/// An allowed origin's response carries the allow headers.
fn assert_allowed(what: &str, response: &Response, origin: &str) {
    assert_eq!(header(response, "access-control-allow-origin"), Some(origin), "{what}");
    assert_eq!(header(response, "access-control-allow-credentials"), Some("true"), "{what}");
    assert!(vary(response).iter().any(|v| v == "Origin"), "{what}: {:?}", vary(response));
}

fn assert_no_cors(what: &str, response: &Response) {
    for name in ["access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods"] {
        assert!(response.headers().get(name).is_none(), "{what}: {name} = {:?}", response.headers().get(name));
    }
}

#[tokio::test]
async fn a_configured_origin_gets_one_policy_on_auth_user_and_function_routes() {
    let (platform, app, _dir) = platform().await;
    let client = platform.client();
    let login = platform.at(&format!("/api/apps/{app}/auth/login"));
    let invoke = platform.at(&format!("/api/apps/{app}/functions/who"));

    // Login: the preflight is answered, the sign-in and a wrong password are readable.
    assert_preflight_allowed("login preflight", &preflight(login.clone(), ALLOWED, "POST").await, ALLOWED);
    let signed_in = client
        .post(login.clone())
        .header("origin", ALLOWED)
        .json(&json!({"email": "ann@example.test", "password": "pw-123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    assert_allowed("login", &signed_in, ALLOWED);
    let token = json_of(signed_in).await["access_token"].as_str().unwrap().to_string();
    let wrong = client
        .post(login.clone())
        .header("origin", ALLOWED)
        .json(&json!({"email": "ann@example.test", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_allowed("a failed login", &wrong, ALLOWED);

    // A user route with the token.
    let me = platform.at(&format!("/api/apps/{app}/entities/User/me"));
    assert_preflight_allowed("me preflight", &preflight(me.clone(), ALLOWED, "GET").await, ALLOWED);
    let response = client.get(me).header("origin", ALLOWED).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_allowed("me", &response, ALLOWED);

    // The function routes: the preflight never reaches the function; the answer exposes the
    // function's own header.
    assert_preflight_allowed("invoke preflight", &preflight(invoke.clone(), ALLOWED, "POST").await, ALLOWED);
    let fetch = platform.at("/api/functions/who");
    assert_preflight_allowed("fetch preflight", &preflight(fetch, ALLOWED, "PUT").await, ALLOWED);
    let response = client
        .post(invoke.clone())
        .header("origin", ALLOWED)
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_allowed("invoke", &response, ALLOWED);
    let exposed = header(&response, "access-control-expose-headers").unwrap_or_default().to_string();
    assert!(exposed.split(", ").any(|h| h == "x-who"), "{exposed}");
    assert_eq!(json_of(response).await["method"], "POST");
    // Homebase's own errors there are readable too.
    let response =
        client.post(platform.at(&format!("/api/apps/{app}/functions/nope"))).header("origin", ALLOWED).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), 404);
    assert_allowed("function_not_found", &response, ALLOWED);
    platform.stop().await;
}

#[tokio::test]
async fn other_origins_get_no_cors_headers() {
    let (platform, app, _dir) = platform().await;
    let client = platform.client();
    let login = platform.at(&format!("/api/apps/{app}/auth/login"));
    // serve allows no loopback origin by itself: a page on the visitor's own machine is not the app.
    for origin in [OTHER, "http://localhost:5173", "http://127.0.0.1:3000", "null"] {
        let response = preflight(login.clone(), origin, "POST").await;
        assert_eq!(response.status(), 403, "{origin}");
        assert_no_cors(origin, &response);
        let body = json_of(response).await;
        assert_eq!(body["code"], "origin_not_allowed", "{body}");
        assert!(body["message"].as_str().unwrap().contains(origin), "{body}");
        assert!(body["detail"].as_str().unwrap().contains("cors-origins"), "{body}");

        // The request itself is served (a browser would hide the answer from the page).
        let response = client
            .post(login.clone())
            .header("origin", origin)
            .json(&json!({"email": "ann@example.test", "password": "pw-123456"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{origin}");
        assert_no_cors(origin, &response);
        assert!(vary(&response).iter().any(|v| v == "Origin"), "{origin}: the answer depends on the origin");
    }
    // On a function route, another origin's preflight is the function's own business.
    let response = preflight(platform.at(&format!("/api/apps/{app}/functions/who")), OTHER, "POST").await;
    assert_eq!(response.status(), 200);
    assert_no_cors("function preflight", &response);
    assert_eq!(json_of(response).await["method"], "OPTIONS");

    // Outside the SDK surface: no CORS for anyone.
    for (method, path) in [(Method::GET, "/api/apps".to_string()), (Method::GET, "/healthz".to_string())] {
        let response =
            client.request(method, platform.at(&path)).header("origin", ALLOWED).header("api_key", ADMIN_KEY).send();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_no_cors(&path, &response);
    }
    let response = preflight(platform.at(&format!("/api/apps/{app}/auth/token")), ALLOWED, "GET").await;
    assert_no_cors("management preflight", &response);
    // A wrong method on an SDK route is a JSON 405.
    let response = client.get(login).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = json_of(response).await;
    assert_eq!(body["code"], "method_not_allowed", "{body}");
    platform.stop().await;
}

#[tokio::test]
async fn dev_allows_loopback_origins_on_the_auth_routes() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let app = server.app.app_id().to_string();
    let login = server.at(&format!("/api/apps/{app}/auth/login"));
    for origin in ["http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8080"] {
        assert_preflight_allowed(origin, &preflight(login.clone(), origin, "POST").await, origin);
    }
    let response = preflight(login, OTHER, "POST").await;
    assert_eq!(response.status(), 403);
    assert_no_cors("dev, another origin", &response);
    server.stop().await;
}

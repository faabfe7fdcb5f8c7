//! The bodies of the main failures of every route family, pinned with insta snapshots
//! (`tests/snapshots/`) against a real `serve` (`TestPlatform`) and, for the function timeout, a
//! real `dev` (`TestServer`), with real Deno. Each snapshot holds the status, the headers a
//! client acts on (`Allow`, whether `Retry-After` is set) and the body; app ids, request ids and
//! waiting times are redacted. A changed body fails `cargo test` (review it with
//! `cargo insta review`, or accept it with `INSTA_UPDATE=always`); every code here is in the
//! error table (`docs/errors.md`).

use std::time::Duration;

use homebase_identity::LoginLimits;
use homebase_server::config::Config;
use homebase_testkit::{ADMIN_KEY, PlatformOptions, TestPlatform, TestServer, fixture, json_of};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

const ALLOWED: &str = "https://shop.example.test";

/// A `serve` with one app (`shop`), its id, and its data folder.
struct Setup {
    server: TestPlatform,
    app: String,
    _data: tempfile::TempDir,
}

async fn setup(options: PlatformOptions) -> Setup {
    let data = tempfile::tempdir().unwrap();
    let options = PlatformOptions { cors_origins: vec![ALLOWED.into()], ..options };
    let server = TestPlatform::start_with(data.path(), options).await;
    let response = admin(&server, Method::POST, "/api/apps").json(&json!({ "name": "shop" })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let app = json_of(response).await["id"].as_str().unwrap().to_string();
    Setup { server, app, _data: data }
}

fn admin(server: &TestPlatform, method: Method, path: &str) -> RequestBuilder {
    server.client().request(method, server.at(path)).header("api_key", ADMIN_KEY)
}

impl Setup {
    /// `path` with `{app}` replaced by the app's id.
    fn path(&self, path: &str) -> String {
        path.replace("{app}", &self.app)
    }

    fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.server.client().request(method, self.server.at(&self.path(path)))
    }

    fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        admin(&self.server, method, &self.path(path))
    }

    /// The response to `request` as a snapshot sees it, with this app's id redacted.
    async fn failure(&self, request: RequestBuilder) -> Value {
        failure(request, &[(&self.app, "[app_id]")]).await
    }

    async fn deploy(&self, name: &str, files: Value) -> Response {
        let path = format!("/api/apps/{{app}}/backend-functions/{name}");
        self.admin(Method::PUT, &path).json(&files).send().await.unwrap()
    }

    async fn deployed(&self, name: &str, entry: &str) {
        let response = self.deploy(name, code(entry)).await;
        assert_eq!(response.status(), 200, "{name}: {}", response.text().await.unwrap());
    }
}

fn code(entry: &str) -> Value {
    json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": entry }], "automations": [] })
}

/// `{status, body}` (plus `allow` and `retry_after` when the response has them), every string
/// of the body with `redact`'s pairs replaced and waiting times as `[n] seconds`.
async fn failure(request: RequestBuilder, redact: &[(&str, &str)]) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert!(status >= 400, "a failure: {status}");
    let mut shown = json!({ "status": status });
    if let Some(allow) = response.headers().get("allow") {
        shown["allow"] = json!(allow.to_str().unwrap());
    }
    if response.headers().contains_key("retry-after") {
        shown["retry_after"] = json!(true);
    }
    let mut body = json_of(response).await;
    redact_strings(&mut body, redact);
    for field in ["message", "detail", "code"] {
        assert!(body[field].is_string(), "every error body has {field}: {body}");
    }
    shown["body"] = body;
    shown
}

fn redact_strings(value: &mut Value, pairs: &[(&str, &str)]) {
    match value {
        Value::String(text) => {
            for (from, to) in pairs {
                *text = text.replace(from, to);
            }
            *text = seconds_redacted(text);
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact_strings(item, pairs)),
        Value::Object(map) => map.values_mut().for_each(|item| redact_strings(item, pairs)),
        _ => {}
    }
}

/// `locked for 899 seconds` → `locked for [n] seconds`: how long is left depends on the clock.
fn seconds_redacted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" seconds") {
        let before = &rest[..at];
        let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push_str(&before[..before.len() - digits]);
            out.push_str("[n]");
        } else {
            out.push_str(before);
        }
        out.push_str(" seconds");
        rest = &rest[at + " seconds".len()..];
    }
    out.push_str(rest);
    out
}

macro_rules! snap {
    ($name:expr, $value:expr) => {
        insta::assert_json_snapshot!($name, $value)
    };
}

#[tokio::test]
async fn function_routes() {
    let s = setup(PlatformOptions::default()).await;
    s.deployed("hello", "Deno.serve(() => new Response(\"hi\"));\n").await;
    snap!("invoke_unknown_app", s.failure(s.anonymous(Method::POST, "/api/apps/no-such-app/functions/hello")).await);
    snap!("invoke_unknown_function", s.failure(s.anonymous(Method::POST, "/api/apps/{app}/functions/nope")).await);
    snap!(
        "invoke_unknown_function_for_a_key_holder",
        s.failure(s.admin(Method::POST, "/api/apps/{app}/functions/nope")).await
    );
    // With two apps there is no default app.
    let second = s.admin(Method::POST, "/api/apps").json(&json!({ "name": "second" })).send().await.unwrap();
    assert_eq!(second.status(), 201);
    snap!("webhook_no_app_named", s.failure(s.anonymous(Method::POST, "/functions/hello")).await);
    let forged = s.anonymous(Method::POST, "/api/apps/{app}/functions/hello").bearer_auth("not.a.token");
    snap!("invoke_forged_bearer", s.failure(forged).await);
    let twice = s
        .anonymous(Method::POST, "/api/apps/{app}/functions/hello")
        .header("authorization", "Bearer a")
        .header("authorization", "Bearer b");
    snap!("invoke_two_authorization_headers", s.failure(twice).await);

    // Uncaught exceptions in serve: the message only, and the request id; the stack goes to the
    // function's logs.
    let throws = "function check(order: string) {\n  throw new Error(`order ${order} cannot be paid`);\n}\n\
                  Deno.serve(() => check(\"o-17\"));\n";
    s.deployed("throws", throws).await;
    let call = s.anonymous(Method::POST, "/api/apps/{app}/functions/throws").header("x-request-id", "req-snap-1");
    let thrown = s.failure(call).await;
    snap!("invoke_uncaught_exception", &thrown);
    assert!(!thrown.to_string().contains("    at "), "no stack in serve's answer: {thrown}");
    homebase_testkit::eventually("the stack in the function's log", || {
        s.server.logs.events().iter().any(|e| {
            e.message.contains("Uncaught error in handler")
                && e.message.contains("    at check")
                && e.message.contains("entry.ts:2:")
                && e.request_id.as_deref() == Some("req-snap-1")
        })
    })
    .await;

    let returns = "Deno.serve(() => 42 as unknown as Response);\n";
    s.deployed("returns", returns).await;
    let call = s.anonymous(Method::POST, "/api/apps/{app}/functions/returns").header("x-request-id", "req-snap-2");
    snap!("invoke_not_a_response", s.failure(call).await);

    let files = json!({ "entry": "entry.ts", "automations": [], "files": [
        { "path": "entry.ts", "content": "import \"./config.ts\";\nDeno.serve(() => new Response(\"never\"));\n" },
        { "path": "config.ts", "content": "throw new Error(\"STRIPE_KEY is not set\");\n" },
    ]});
    assert_eq!(s.deploy("boots", files).await.status(), 200);
    let call = s.anonymous(Method::POST, "/api/apps/{app}/functions/boots").header("x-request-id", "req-snap-3");
    snap!("invoke_failed_start", s.failure(call).await);

    let exits = "Deno.serve(() => { Deno.exit(3); });\n";
    s.deployed("exits", exits).await;
    let call = s.anonymous(Method::POST, "/api/apps/{app}/functions/exits").header("x-request-id", "req-snap-4");
    snap!("invoke_crash", s.failure(call).await);
    s.server.stop().await;
}

/// The function timeout, on `dev` (its timeout is a flag there).
#[tokio::test]
async fn function_timeout_in_dev() {
    let project = fixture("functions");
    let config = Config { function_timeout: Duration::from_secs(1), ..TestServer::config() };
    let server = TestServer::start_with(project.path(), config).await;
    let request = server.client().get(server.at("/functions/slow"));
    snap!("invoke_timeout_dev", failure(request, &[]).await);
    server.stop().await;
}

#[tokio::test]
async fn management_apps_and_keys() {
    let s = setup(PlatformOptions::default()).await;
    snap!("manage_no_key", s.failure(s.anonymous(Method::GET, "/api/apps")).await);
    let wrong = s.anonymous(Method::GET, "/api/apps").header("api_key", "b44k_wrong");
    snap!("manage_wrong_key", s.failure(wrong).await);
    let bad = s.admin(Method::POST, "/api/apps").header("content-type", "application/json").body("{\"name\": ");
    snap!("manage_create_app_bad_json", s.failure(bad).await);
    snap!("manage_unknown_app", s.failure(s.admin(Method::GET, "/api/apps/no-such-app")).await);
    snap!("manage_key_for_unknown_app", s.failure(s.admin(Method::POST, "/api/apps/no-such-app/keys")).await);

    let response = s.admin(Method::POST, "/api/apps/{app}/keys").send().await.unwrap();
    let key = json_of(response).await["key"].as_str().unwrap().to_string();
    let as_app = |method: Method, path: &str| s.anonymous(method, path).header("api_key", key.as_str());
    snap!(
        "manage_app_key_creates_an_app",
        s.failure(as_app(Method::POST, "/api/apps").json(&json!({"name": "x"}))).await
    );
    snap!("manage_app_key_on_another_app", s.failure(as_app(Method::GET, "/api/apps/other-app")).await);
    let wrong_method = s.admin(Method::PATCH, "/api/apps");
    snap!("manage_method_not_allowed", s.failure(wrong_method).await);
    s.server.stop().await;
}

#[tokio::test]
async fn management_deploys() {
    let s = setup(PlatformOptions::default()).await;
    let hello = "Deno.serve(() => new Response(\"hi\"));\n";
    snap!(
        "deploy_invalid_name",
        s.failure(s.admin(Method::PUT, "/api/apps/{app}/backend-functions/.hidden").json(&code(hello))).await
    );
    let syntax = "Deno.serve(() => {\n  return new Response(;\n});\n";
    let response = s.admin(Method::PUT, "/api/apps/{app}/backend-functions/broken").json(&code(syntax));
    snap!("deploy_syntax_error", s.failure(response).await);
    let missing = "import { x } from \"./nope.ts\";\nDeno.serve(() => new Response(x));\n";
    let response = s.admin(Method::PUT, "/api/apps/{app}/backend-functions/imports").json(&code(missing));
    snap!("deploy_missing_import", s.failure(response).await);
    let big = json!({ "entry": "entry.ts", "automations": [], "files": [
        { "path": "entry.ts", "content": hello },
        { "path": "data.json", "content": "x".repeat(2 * 1024 * 1024 + 1) },
    ]});
    let response = s.admin(Method::PUT, "/api/apps/{app}/backend-functions/big").json(&big);
    snap!("deploy_file_too_large", s.failure(response).await);
    let automation = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": hello }],
        "automations": [{ "type": "scheduled", "name": "nightly", "schedule_type": "cron", "cron_expression": "61 * * * *" }] });
    let response = s.admin(Method::PUT, "/api/apps/{app}/backend-functions/nightly").json(&automation);
    snap!("deploy_invalid_automation", s.failure(response).await);
    let not_json = s.admin(Method::PUT, "/api/apps/{app}/backend-functions/x").json(&json!({ "files": [] }));
    snap!("deploy_body_not_a_deploy", s.failure(not_json).await);
    snap!(
        "deploy_to_unknown_app",
        s.failure(s.admin(Method::PUT, "/api/apps/no-such-app/backend-functions/x").json(&code(hello))).await
    );
    snap!(
        "delete_unknown_function",
        s.failure(s.admin(Method::DELETE, "/api/apps/{app}/backend-functions/nope")).await
    );
    snap!(
        "history_of_unknown_function",
        s.failure(s.admin(Method::GET, "/api/apps/{app}/backend-functions/nope/deployments")).await
    );
    s.deployed("once", hello).await;
    snap!(
        "rollback_without_history",
        s.failure(s.admin(Method::POST, "/api/apps/{app}/backend-functions/once/rollback")).await
    );
    snap!(
        "rollback_of_unknown_function",
        s.failure(s.admin(Method::POST, "/api/apps/{app}/backend-functions/nope/rollback")).await
    );
    s.server.stop().await;
}

#[tokio::test]
async fn management_secrets_and_network() {
    let s = setup(PlatformOptions::default()).await;
    let secrets = "/api/apps/{app}/secrets";
    snap!("secrets_not_an_object", s.failure(s.admin(Method::POST, secrets).json(&json!(["A"]))).await);
    snap!("secrets_value_not_a_string", s.failure(s.admin(Method::POST, secrets).json(&json!({ "A": 1 }))).await);
    snap!("secrets_reserved_name", s.failure(s.admin(Method::POST, secrets).json(&json!({ "LD_PRELOAD": "x" }))).await);
    snap!("secrets_none", s.failure(s.admin(Method::POST, secrets).json(&json!({}))).await);
    snap!("secrets_delete_unnamed", s.failure(s.admin(Method::DELETE, secrets)).await);
    let unknown = s.admin(Method::DELETE, "/api/apps/{app}/secrets?secret_name=NOPE");
    snap!("secrets_delete_unknown", s.failure(unknown).await);

    let net = "/api/apps/{app}/function-net-allow";
    snap!("net_allow_invalid", s.failure(s.admin(Method::PUT, net).json(&json!({ "allow": ["10.0.0.0/33"] }))).await);
    let response = s.admin(Method::POST, "/api/apps/{app}/keys").send().await.unwrap();
    let key = json_of(response).await["key"].as_str().unwrap().to_string();
    let with_app_key = s.anonymous(Method::PUT, net).header("api_key", key).json(&json!({ "allow": [] }));
    snap!("net_allow_with_an_app_key", s.failure(with_app_key).await);
    s.server.stop().await;
}

#[tokio::test]
async fn auth_and_users() {
    let limits = LoginLimits { per_account: 2, ..LoginLimits::default() };
    let s = setup(PlatformOptions { limits, ..Default::default() }).await;
    let auth = |route: &str| format!("/api/apps/{{app}}/auth/{route}");
    let create = json!({ "email": "ann@example.test", "password": "pw-123456", "is_verified": true });
    let response = s.admin(Method::POST, "/api/apps/{app}/users").json(&create).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let ann = json_of(response).await["id"].as_str().unwrap().to_string();

    let post = |route: &str, body: Value| s.anonymous(Method::POST, &auth(route)).json(&body);
    snap!("auth_register_missing_field", s.failure(post("register", json!({ "email": "bo@example.test" }))).await);
    snap!(
        "auth_register_field_not_a_string",
        s.failure(post("register", json!({ "email": 7, "password": "x" }))).await
    );
    snap!(
        "auth_register_invalid_email",
        s.failure(post("register", json!({ "email": "bo@", "password": "pw-123456" }))).await
    );
    snap!(
        "auth_register_short_password",
        s.failure(post("register", json!({ "email": "bo@example.test", "password": "pw" }))).await
    );
    snap!(
        "auth_register_existing",
        s.failure(post("register", json!({ "email": "ann@example.test", "password": "pw-123456" }))).await
    );
    let not_json = s.anonymous(Method::POST, &auth("login")).body("email=ann");
    snap!("auth_login_not_json", s.failure(not_json).await);
    snap!(
        "auth_verify_wrong_code",
        s.failure(post("verify-otp", json!({ "email": "ann@example.test", "otp_code": "000000" }))).await
    );
    snap!(
        "auth_reset_wrong_token",
        s.failure(post("reset-password", json!({ "reset_token": "nope", "new_password": "pw-123456789" }))).await
    );
    let wrong = json!({ "email": "ann@example.test", "password": "wrong-password" });
    snap!("auth_login_wrong_password", s.failure(post("login", wrong)).await);
    // Another account, past its limit of two failures (Ann's one failure leaves her a try).
    let guess = json!({ "email": "eve@example.test", "password": "guess-1234" });
    for _ in 0..2 {
        assert_eq!(post("login", guess.clone()).send().await.unwrap().status(), 401);
    }
    snap!("auth_login_locked", s.failure(post("login", guess)).await);
    snap!(
        "auth_login_unknown_app",
        s.failure(s.anonymous(Method::POST, "/api/apps/no-such-app/auth/login").json(&json!({}))).await
    );

    let me = "/api/apps/{app}/entities/User/me";
    snap!("users_me_anonymous", s.failure(s.anonymous(Method::GET, me)).await);
    snap!("users_me_forged_token", s.failure(s.anonymous(Method::GET, me).bearer_auth("not.a.token")).await);
    snap!("users_me_not_a_bearer", s.failure(s.anonymous(Method::GET, me).header("authorization", "Basic eDp5")).await);

    // A signed-in user.
    let response = s.admin(Method::GET, &format!("/api/apps/{{app}}/auth/token?user={ann}")).send().await.unwrap();
    let token = json_of(response).await["token"].as_str().unwrap().to_string();
    let as_ann = |method: Method, path: &str| s.anonymous(method, path).bearer_auth(&token);
    snap!(
        "users_update_me_protected_field",
        s.failure(as_ann(Method::PUT, me).json(&json!({ "role": "admin" }))).await
    );
    snap!(
        "users_read_another_user",
        s.failure(as_ann(Method::GET, "/api/apps/{app}/entities/User/someone-else")).await
    );
    let change = json!({ "current_password": "not-it-at-all", "new_password": "pw-987654321" });
    snap!(
        "auth_change_password_wrong_current",
        s.failure(as_ann(Method::POST, &auth("change-password")).json(&change)).await
    );
    let invite = json!({ "user_email": "cy@example.test", "role": "admin" });
    snap!(
        "users_invite_admin_as_user",
        s.failure(as_ann(Method::POST, "/api/apps/{app}/users/invite-user").json(&invite)).await
    );

    // The management side.
    snap!(
        "users_token_for_unknown_user",
        s.failure(s.admin(Method::GET, "/api/apps/{app}/auth/token?user=nobody@example.test")).await
    );
    let disable = s.admin(Method::PATCH, &format!("/api/apps/{{app}}/users/{ann}")).json(&json!({ "disabled": true }));
    assert_eq!(disable.send().await.unwrap().status(), 200);
    let token_of_disabled = s.admin(Method::GET, &format!("/api/apps/{{app}}/auth/token?user={ann}"));
    snap!("users_token_for_disabled_user", s.failure(token_of_disabled).await);
    snap!("users_me_disabled", s.failure(as_ann(Method::GET, me)).await);
    snap!("users_delete_unknown", s.failure(s.admin(Method::DELETE, "/api/apps/{app}/users/nobody")).await);
    let unknown_field =
        s.admin(Method::POST, "/api/apps/{app}/users").json(&json!({ "email": "d@example.test", "admin": true }));
    snap!("users_create_unknown_field", s.failure(unknown_field).await);
    s.server.stop().await;
}

#[tokio::test]
async fn logs_api() {
    let s = setup(PlatformOptions::default()).await;
    let logs = "/api/apps/{app}/functions-mgmt/logs";
    snap!("logs_bad_since", s.failure(s.admin(Method::GET, &format!("{logs}?since=yesterday"))).await);
    snap!("logs_bad_level", s.failure(s.admin(Method::GET, &format!("{logs}?level=loud"))).await);
    snap!("logs_bad_limit", s.failure(s.admin(Method::GET, &format!("{logs}?limit=0"))).await);
    snap!("logs_since_after_until", s.failure(s.admin(Method::GET, &format!("{logs}?since=1h&until=2h"))).await);
    snap!("logs_unknown_function", s.failure(s.admin(Method::GET, "/api/apps/{app}/functions-mgmt/nope/logs")).await);
    snap!("logs_no_key", s.failure(s.anonymous(Method::GET, logs)).await);
    let stream = s.admin(Method::GET, "/api/apps/{app}/functions-mgmt/logs/stream").header("last-event-id", "x");
    snap!("logs_stream_bad_last_event_id", s.failure(stream).await);
    s.server.stop().await;
}

#[tokio::test]
async fn any_route() {
    let s = setup(PlatformOptions::default()).await;
    snap!(
        "unsupported_entity_aggregate",
        s.failure(s.anonymous(Method::POST, "/api/apps/{app}/entities/Task/aggregate").json(&json!({}))).await
    );
    snap!("entities_unknown_entity", s.failure(s.anonymous(Method::GET, "/api/apps/{app}/entities/Task")).await);
    snap!(
        "unsupported_integration",
        s.failure(s.anonymous(Method::POST, "/api/apps/{app}/integration-endpoints/Core/InvokeLLM").json(&json!({})))
            .await
    );
    snap!("unsupported_agents_cli", s.failure(s.admin(Method::GET, "/api/apps/{app}/agent-configs")).await);
    snap!("unknown_route", s.failure(s.anonymous(Method::GET, "/nowhere/at/all")).await);
    let login = "/api/apps/{app}/auth/login";
    let huge =
        s.anonymous(Method::POST, login).header("content-type", "application/json").body("x".repeat(3 * 1024 * 1024));
    snap!("body_too_large", s.failure(huge).await);
    snap!("method_not_allowed_sdk", s.failure(s.anonymous(Method::DELETE, login)).await);
    let preflight = s
        .anonymous(Method::OPTIONS, login)
        .header("origin", "https://elsewhere.example.test")
        .header("access-control-request-method", "POST");
    snap!("preflight_from_another_origin", s.failure(preflight).await);
    s.server.stop().await;
}

//! The Base44 routes Homebase does not serve yet answer `501 not_implemented` with a JSON body
//! whose message names the feature, on a real `serve` (`TestPlatform`) and `dev` (`TestServer`):
//! a table of the SDK's and the CLI's paths and methods (reference §3, §4, §5), every path of
//! `homebase_server::unsupported`, the SDK ones under the CORS policy, none shadowing a route
//! Homebase serves; and the official SDK inside a function sees the message.

use homebase_server::unsupported;
use homebase_testkit::{ADMIN_KEY, PlatformOptions, TestPlatform, TestServer, fixture, json_of};
use reqwest::Method;
use serde_json::{Value, json};

const ALLOWED: &str = "https://shop.example.test";

async fn platform() -> (TestPlatform, tempfile::TempDir, String) {
    let data = tempfile::tempdir().unwrap();
    let options = PlatformOptions { cors_origins: vec![ALLOWED.into()], ..Default::default() };
    let server = TestPlatform::start_with(data.path(), options).await;
    let response = server.client().post(server.at("/api/apps")).header("api_key", ADMIN_KEY);
    let response = response.json(&json!({ "name": "shop" })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let app = json_of(response).await["id"].as_str().unwrap().to_string();
    (server, data, app)
}

async fn send(client: &reqwest::Client, method: Method, url: String) -> (u16, Value) {
    let response = client.request(method, url).header("api_key", ADMIN_KEY).json(&json!({})).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn assert_not_implemented(what: &str, status: u16, body: &Value, message: &str) {
    assert_eq!(status, 501, "{what}: {body}");
    assert_eq!(body["code"], "not_implemented", "{what}: {body}");
    assert_eq!(body["message"], message, "{what}: {body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.len() > 20), "{what}: a detail says what to do: {body}");
}

/// Representative calls of the SDK (§3, §4) and of the CLI (§5), with the feature each names.
fn table(app: &str) -> Vec<(Method, String, &'static str)> {
    use unsupported::*;
    let a = |path: &str| path.replace("{app}", app);
    vec![
        // Entities (§3.1): the SDK methods not served yet.
        (Method::PUT, a("/api/apps/{app}/entities/Task/bulk"), ENTITY_BULK_UPDATE.message),
        (Method::POST, a("/api/apps/{app}/entities/Task/aggregate"), ENTITY_AGGREGATE.message),
        (Method::POST, a("/api/apps/{app}/entities/Task/upsert"), ENTITY_UPSERT.message),
        (Method::POST, a("/api/apps/{app}/entities/Task/import"), ENTITY_IMPORT.message),
        // Realtime (§3.5).
        (Method::GET, "/ws-user-apps/socket.io/?EIO=4&transport=websocket".to_string(), REALTIME.message),
        // Integrations, connectors, files (§4).
        (Method::POST, a("/api/apps/{app}/integration-endpoints/Core/InvokeLLM"), INTEGRATIONS.message),
        (Method::POST, a("/api/apps/{app}/integration-endpoints/Core/SendEmail"), INTEGRATIONS.message),
        (Method::POST, a("/api/apps/{app}/integration-endpoints/Core/UploadFile"), INTEGRATIONS.message),
        (
            Method::POST,
            a("/api/apps/{app}/integration-endpoints/installable/pkg/integration-endpoints/Do"),
            INTEGRATIONS.message,
        ),
        (Method::POST, a("/api/apps/{app}/integrations/custom/github/listIssues"), INTEGRATIONS.message),
        (Method::GET, a("/api/apps/{app}/external-auth/tokens/googlecalendar"), CONNECTORS.message),
        (Method::GET, a("/api/apps/{app}/external-auth/tokens/connectors/c1"), CONNECTORS.message),
        (Method::POST, a("/api/apps/{app}/connectors/slack/call"), CONNECTORS.message),
        (Method::GET, "/media/private/abc.png?token=x".to_string(), FILES.message),
        // Other runtime endpoints (§4).
        (Method::GET, "/api/apps/auth/login?app_id=x".to_string(), OAUTH_SIGN_IN.message),
        (Method::GET, a("/api/apps/{app}/auth/sso/login"), OAUTH_SIGN_IN.message),
        (Method::GET, a("/api/apps/public/prod/public-settings/by-id/{app}"), APP_SETTINGS.message),
        (Method::POST, a("/api/apps/{app}/analytics/track/batch"), ANALYTICS.message),
        (Method::POST, a("/api/app-logs/{app}/log-user-in-app/home"), ANALYTICS.message),
        (Method::POST, a("/api/apps/{app}/ai/openai/v1/chat/completions"), AI_GATEWAY.message),
        // The CLI (§5).
        (Method::GET, a("/api/apps/{app}/agent-configs"), AGENTS.message),
        (Method::PUT, a("/api/apps/{app}/agent-configs"), AGENTS.message),
        (Method::DELETE, a("/api/apps/{app}/agent-skills/triage"), AGENTS.message),
        (Method::GET, a("/api/apps/{app}/external-auth/available-integrations"), CONNECTORS.message),
        (Method::POST, a("/api/apps/{app}/payments/stripe/install"), PAYMENTS.message),
        (Method::PUT, a("/api/apps/{app}/actors/counter"), ACTORS.message),
        (Method::GET, a("/api/apps/{app}/workflows"), WORKFLOWS.message),
        (Method::GET, a("/api/apps/{app}/workflows/runs?status=failed"), WORKFLOWS.message),
        (Method::POST, a("/api/apps/{app}/deploy-dist"), SITE.message),
        (Method::POST, a("/api/apps/{app}/deployments"), SITE.message),
        (Method::PUT, a("/api/apps/{app}/deployment/auth-configuration"), AUTH_CONFIG.message),
        (Method::POST, a("/api/apps/{app}/sandbox-bridge/run"), SANDBOX.message),
        (Method::GET, a("/api/apps/{app}/eject"), APP_MANAGEMENT.message),
        (Method::GET, a("/api/apps/{app}/branches"), APP_MANAGEMENT.message),
        (Method::POST, a("/api/apps/{app}/metadata/move-to-workspace"), APP_MANAGEMENT.message),
        (Method::GET, "/api/workspace/workspaces".to_string(), APP_MANAGEMENT.message),
        (Method::POST, "/oauth/device/code".to_string(), CLI_LOGIN.message),
    ]
}

#[tokio::test]
async fn the_routes_homebase_lacks_answer_501_naming_the_feature() {
    let (server, _data, app) = platform().await;
    let client = server.client();
    for (method, path, message) in table(&app) {
        let (status, body) = send(&client, method.clone(), server.at(&path)).await;
        assert_not_implemented(&format!("{method} {path}"), status, &body, message);
    }
    // Every path of both sets, as registered.
    for (pattern, feature) in unsupported::all() {
        let path = pattern.replace("{app_id}", &app).replace("{entity}", "Task").replace("{*rest}", "some/thing");
        for method in [Method::GET, Method::POST] {
            let (status, body) = send(&client, method.clone(), server.at(&path)).await;
            assert_not_implemented(&format!("{method} {path}"), status, &body, feature.message);
        }
    }
    // A path that is no route at all is still the JSON 404.
    let (status, body) = send(&client, Method::GET, server.at(&format!("/api/apps/{app}/no-such-thing"))).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("route_not_found")), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn homebases_own_routes_are_not_shadowed() {
    let (server, _data, app) = platform().await;
    let client = server.client();
    let a = |path: &str| server.at(&path.replace("{app}", &app));
    // With the admin key: the management API answers.
    for path in [
        "/api/apps/{app}",
        "/api/apps/{app}/backend-functions",
        "/api/apps/{app}/secrets",
        "/api/apps/{app}/function-net-allow",
        "/api/apps/{app}/users",
        "/api/apps/{app}/auth/settings",
        "/api/apps/platform/{app}/published-url",
        "/api/apps/{app}/functions-mgmt/logs",
    ] {
        let (status, body) = send(&client, Method::GET, a(path)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    // The User entity, the records API, the schemas' push and the app-user routes: their own
    // answers, not a 501.
    for (method, path, expected) in [
        (Method::GET, "/api/apps/{app}/entities/Task", 404),
        (Method::GET, "/api/apps/{app}/entities/Task/count", 404),
        (Method::POST, "/api/apps/{app}/entities/Task/bulk", 404),
        (Method::PUT, "/api/apps/{app}/entity-schemas", 401),
        (Method::GET, "/api/apps/{app}/entities/User/me", 401),
        (Method::PUT, "/api/apps/{app}/entities/User/me", 401),
        (Method::GET, "/api/apps/{app}/entities/User", 401),
        (Method::GET, "/api/apps/{app}/entities/User/u1", 401),
        (Method::POST, "/api/apps/{app}/auth/login", 400),
        (Method::POST, "/api/apps/{app}/functions/hello", 404),
        (Method::GET, "/functions/hello", 404),
    ] {
        let response = client.request(method.clone(), a(path)).json(&json!({})).send().await.unwrap();
        let status = response.status().as_u16();
        let body = json_of(response).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert_ne!(body["code"], "not_implemented", "{method} {path}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_sdks_501s_are_under_the_cors_policy_and_the_clis_are_not() {
    let (server, _data, app) = platform().await;
    let client = server.client();
    let entities = server.at(&format!("/api/apps/{app}/entities/Task/aggregate"));
    // An allowed origin reads the 501 and its preflight is answered by the CORS layer.
    let response = client.get(&entities).header("origin", ALLOWED).send().await.unwrap();
    assert_eq!(response.status(), 501);
    assert_eq!(response.headers()["access-control-allow-origin"], ALLOWED);
    let preflight = client
        .request(Method::OPTIONS, &entities)
        .header("origin", ALLOWED)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    // Another origin's preflight is refused as on every SDK route.
    let preflight = client
        .request(Method::OPTIONS, &entities)
        .header("origin", "https://evil.example.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 403);
    assert_eq!(json_of(preflight).await["code"], "origin_not_allowed");
    // The management API's 501s carry no CORS headers.
    let schemas = server.at(&format!("/api/apps/{app}/agent-configs"));
    let response = client.put(&schemas).header("origin", ALLOWED).send().await.unwrap();
    assert_eq!(response.status(), 501);
    assert!(response.headers().get("access-control-allow-origin").is_none());
    server.stop().await;
}

#[tokio::test]
async fn dev_answers_the_sdks_501s_too() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let app = server.app.app_id().to_string();
    let client = server.client();
    for (method, path, message) in [
        (Method::POST, format!("/api/apps/{app}/entities/Task/aggregate"), unsupported::ENTITY_AGGREGATE.message),
        (
            Method::POST,
            format!("/api/apps/{app}/integration-endpoints/Core/InvokeLLM"),
            unsupported::INTEGRATIONS.message,
        ),
        (Method::GET, "/ws-user-apps/socket.io/?EIO=4".to_string(), unsupported::REALTIME.message),
    ] {
        let (status, body) = send(&client, method.clone(), server.at(&path)).await;
        assert_not_implemented(&format!("{method} {path}"), status, &body, message);
    }
    let me = client.get(server.at(&format!("/api/apps/{app}/entities/User/me"))).send().await.unwrap();
    assert_eq!(me.status(), 401, "the User entity is served");
    server.stop().await;
}

/// The official SDK inside a function: what a function's author sees when it uses entities or
/// integrations.
const SDK_GAPS: &str = r#"import { createClientFromRequest } from "npm:@base44/sdk@0.8.50";

Deno.serve(async (req) => {
  const base44 = createClientFromRequest(req);
  const out: Record<string, unknown> = {};
  const attempts: [string, () => Promise<unknown>][] = [
    ["entities", () => base44.asServiceRole.entities.Task.aggregate({ groupBy: "status" })],
    ["integrations", () => base44.asServiceRole.integrations.Core.InvokeLLM({ prompt: "hi" })],
  ];
  for (const [name, attempt] of attempts) {
    try {
      out[name] = { ok: await attempt() };
    } catch (error) {
      const e = error as any;
      out[name] = { status: e?.status, code: e?.code, message: e?.message };
    }
  }
  return Response.json(out);
});
"#;

#[tokio::test]
async fn the_official_sdk_in_a_function_reports_the_missing_feature() {
    let (server, _data, app) = platform().await;
    let body =
        json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": SDK_GAPS }], "automations": [] });
    let deploy = server
        .client()
        .put(server.at(&format!("/api/apps/{app}/backend-functions/gaps")))
        .header("api_key", ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(deploy.status(), 200, "{}", deploy.text().await.unwrap());
    let response = server.client().post(server.at(&format!("/api/apps/{app}/functions/gaps"))).json(&json!({}));
    let out = json_of(response.send().await.unwrap()).await;
    for (name, message) in
        [("entities", unsupported::ENTITY_AGGREGATE.message), ("integrations", unsupported::INTEGRATIONS.message)]
    {
        assert_eq!(out[name]["status"], 501, "{out}");
        assert_eq!(out[name]["code"], "not_implemented", "{out}");
        assert_eq!(out[name]["message"], message, "{out}");
    }
    server.stop().await;
}

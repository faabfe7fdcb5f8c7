//! The functions' API socket against a real `serve` (`TestPlatform`) and real Deno: a function
//! that opens connections to the socket by the dozen, half-open, fills at most the socket's own
//! cap; past it the socket answers a JSON 503, the server keeps answering its TCP clients and
//! other apps' functions, and the half-open connections are closed after the header-read
//! timeout, after which the socket serves again.

use std::time::Duration;

use homebase_server::ConnectionLimits;
use homebase_server::connections::{effective_max_connections, raise_open_file_limit, worker_max_connections};
use homebase_testkit::{ADMIN_KEY, PlatformOptions, TestPlatform, eventually, json_of};
use reqwest::Method;
use serde_json::{Value, json};

const FLOOD: &str = include_str!("../../testkit/fixtures/socket/flood.ts");
const API_CALL: &str = include_str!("../../testkit/fixtures/socket/api-call.ts");

fn admin(server: &TestPlatform, method: Method, path: &str) -> reqwest::RequestBuilder {
    server.client().request(method, server.at(path)).header("api_key", ADMIN_KEY)
}

async fn create_app(server: &TestPlatform, name: &str) -> String {
    let response = admin(server, Method::POST, "/api/apps").json(&json!({ "name": name })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    json_of(response).await["id"].as_str().unwrap().to_string()
}

async fn deploy(server: &TestPlatform, app: &str, name: &str, code: &str) {
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let response = admin(server, Method::PUT, &format!("/api/apps/{app}/backend-functions/{name}"));
    let response = response.json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn call(server: &TestPlatform, app: &str, name: &str, body: Value) -> Value {
    let response = server.client().post(server.at(&format!("/api/apps/{app}/functions/{name}"))).json(&body);
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), 200);
    json_of(response).await
}

#[tokio::test]
async fn a_function_flooding_the_api_socket_is_refused_past_its_cap_and_its_half_open_connections_time_out() {
    let header_timeout = Duration::from_secs(3);
    let limits =
        ConnectionLimits { max_connections: 200, header_read_timeout: header_timeout, ..ConnectionLimits::default() };
    // A quarter of max-connections (50), unless the open-file limit lowers that.
    let cap = worker_max_connections(effective_max_connections(200, raise_open_file_limit()));
    let data = tempfile::tempdir().unwrap();
    let server =
        TestPlatform::start_with(data.path(), PlatformOptions { connections: limits, ..Default::default() }).await;
    let attacker = create_app(&server, "attacker").await;
    let other = create_app(&server, "other").await;
    deploy(&server, &attacker, "flood", FLOOD).await;
    deploy(&server, &other, "api-call", API_CALL).await;
    // The other app's worker is warm, and reaches the API over the socket.
    let before = call(&server, &other, "api-call", json!({})).await;
    assert_eq!(before, json!({ "status": 200, "body": "ok" }));

    // 10 more half-open connections than the cap, then 5 whole requests.
    let flood = {
        let (client, url) = (server.client(), server.at(&format!("/api/apps/{attacker}/functions/flood")));
        let body = json!({ "held": cap + 10, "extra": 5, "waitMs": 15_000 });
        tokio::spawn(async move { json_of(client.post(url).json(&body).send().await.unwrap()).await })
    };
    let logs = server.logs.clone();
    eventually("the flood to hold its connections", || {
        logs.events().iter().any(|e| e.message.contains("flood: holding"))
    })
    .await;
    // While the socket is full, TCP clients and other functions are served.
    let health = server.client().get(server.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let apps = admin(&server, Method::GET, "/api/apps").send().await.unwrap();
    assert_eq!(apps.status(), 200);
    let response = server.client().post(server.at(&format!("/api/apps/{other}/functions/api-call"))).json(&json!({}));
    assert_eq!(response.send().await.unwrap().status(), 200, "a function is still called over TCP");

    let out = flood.await.unwrap();
    assert_eq!(out["openErrors"], json!([]), "{out}");
    // Past the cap: a JSON 503 that names the functions' cap.
    let extras = out["extras"].as_array().unwrap();
    assert_eq!(extras.len(), 5);
    for extra in extras {
        let text = extra.as_str().unwrap_or_else(|| panic!("the socket closes a refused connection: {out}"));
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.to_ascii_lowercase().contains("content-type: application/json"), "{text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["code"], "too_many_connections", "{body}");
        assert!(body["message"].as_str().unwrap().contains("Functions"), "{body}");
        assert!(body["detail"].as_str().unwrap().contains(&cap.to_string()), "{body}");
    }
    // Every half-open connection was closed without an answer; the `cap` the socket served were
    // closed by the header-read timeout (the ones past the cap sooner, by the refusal's own).
    let closed = out["closed"].as_array().unwrap();
    assert_eq!(closed.len(), cap + 10);
    let mut by_timeout = 0;
    for close in closed {
        assert!(close.is_object(), "a half-open connection was left open: {out}");
        assert_eq!(close["text"], "", "closed without an answer: {out}");
        let ms = close["ms"].as_u64().unwrap();
        assert!(ms < 12_000, "closed within the timeouts: {out}");
        if ms >= header_timeout.as_millis() as u64 - 100 {
            by_timeout += 1;
        }
    }
    // The other app's worker keeps the connection of its first call idle in its pool: it holds
    // one of the socket's places.
    assert!(
        (cap - 1..=cap).contains(&by_timeout),
        "the connections the socket served ({by_timeout}) are the ones the header timeout closed: {out}"
    );
    // Once they are gone, the socket serves again, other apps' functions included.
    let after = out["after"].as_str().unwrap();
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
    assert_eq!(call(&server, &other, "api-call", json!({})).await, json!({ "status": 200, "body": "ok" }));
    server.stop().await;
}

//! The real `homebase serve` binary restricts its functions' network by default, lets the SDK
//! inside a function reach it over its socket, and opens what `--function-net-allow` names.

mod common;

use common::Running;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "b44k_servenetadminkey000000000000000";
const PROBE: &str = include_str!("../../testkit/fixtures/netpolicy/probe.ts");
const WHEREAMI: &str = include_str!("../../testkit/fixtures/netpolicy/whereami.ts");
const WHOAMI: &str = include_str!("../../testkit/fixtures/netpolicy/whoami.ts");
const SDK_CALLS: &str = include_str!("../../testkit/fixtures/netpolicy/sdk-calls.ts");

/// An HTTP server on 127.0.0.1 standing for a host service; its port.
async fn host_service() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecret").await;
            });
        }
    });
    port
}

async fn deploy(server: &Running, app: &str, name: &str, code: &str) {
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let response = reqwest::Client::new()
        .put(server.at(&format!("/api/apps/{app}/backend-functions/{name}")))
        .header("api_key", ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn invoke(server: &Running, app: &str, name: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.at(&format!("/api/apps/{app}/functions/{name}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `fetch` and `node:net` from the app's probe to 127.0.0.1:`port`.
async fn reach_host(server: &Running, app: &str, port: u16) -> Vec<Value> {
    let attempts = json!({ "attempts": [
        { "kind": "fetch", "host": "127.0.0.1", "port": port },
        { "kind": "node-net", "host": "127.0.0.1", "port": port },
    ]});
    invoke(server, app, "probe", attempts).await["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn serve_restricts_functions_by_default_and_opens_what_function_net_allow_names() {
    let port = host_service().await;
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN).await;
    let app = server.create_app(ADMIN, "shop").await;
    for (name, code) in [("probe", PROBE), ("whereami", WHEREAMI), ("whoami", WHOAMI), ("sdk-calls", SDK_CALLS)] {
        deploy(&server, &app, name, code).await;
    }
    for result in reach_host(&server, &app, port).await {
        assert_eq!((&result["ok"], &result["permission"]), (&json!(false), &json!(true)), "{result}");
    }
    // The SDK inside a function reaches this server over its socket; its TCP address stays shut.
    let out = invoke(&server, &app, "sdk-calls", json!({})).await;
    assert_eq!(out["service"]["authorization"], "Bearer", "{out}");
    assert_eq!(out["service"]["apiUrl"], server.url.as_str(), "{out}");
    assert_eq!(out["fetched"]["status"], 200, "{out}");
    assert!(out["direct"].as_str().unwrap().contains("Requires net access"), "{out}");
    drop(server);

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.args(["--json", "serve", "--listen", "127.0.0.1:0", "--function-net-allow", "127.0.0.1", "--data-dir"])
        .arg(data.path());
    let server = Running::spawn(cmd, &[("HOMEBASE_ADMIN_KEY", ADMIN.to_string())], true).await;
    for result in reach_host(&server, &app, port).await {
        assert_eq!(result["ok"], true, "{result}");
    }
    drop(server);

    // A bad entry stops the server with a message that says what to write.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homebase"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("HOMEBASE_FUNCTION_NET_ALLOW", "127.0.0.1:5432")
        .env("HOMEBASE_ADMIN_KEY", ADMIN)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("function-net-allow") && stderr.contains("write 127.0.0.1"), "{stderr}");
}

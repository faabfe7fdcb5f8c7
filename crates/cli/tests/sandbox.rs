//! Issue 9, the sandbox slice, against the real `homebase serve` binary (its own process, its own
//! environment) and real Deno: what of the server's environment reaches a function, and how
//! deploy checks are bounded.

mod common;

use std::time::{Duration, Instant};

use common::Running;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;

const ADMIN_KEY: &str = "b44k_sandboxtest0000000000000000000000";
const SERVER_ONLY: &str = "server-only-value-that-no-function-may-see";

/// A proxy that reads each request's head, reports its first line, and never answers.
async fn silent_proxy() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let first = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
            let _ = tx.send(first);
            held.push(stream); // never answered, never closed
        }
    });
    (url, rx)
}

async fn serve(data: &std::path::Path, proxy: &str, flags: &[&str]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.args(["--json", "serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data).args(flags);
    let env = [
        ("HOMEBASE_ADMIN_KEY", ADMIN_KEY.to_string()),
        ("HTTPS_PROXY", proxy.to_string()),
        ("NO_PROXY", "example.test".to_string()),
        ("SERVER_ONLY_SETTING", SERVER_ONLY.to_string()),
    ];
    Running::spawn(cmd, &env, true).await
}

async fn request(
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().request(method, url).header("api_key", ADMIN_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap_or(Value::Null), headers)
}

fn payload(code: &str) -> Value {
    json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] })
}

#[tokio::test]
async fn workers_see_an_allow_listed_environment_and_never_the_servers() {
    let data = tempfile::tempdir().unwrap();
    let (proxy, _) = silent_proxy().await;
    let mut server = serve(data.path(), &proxy, &[]).await;
    let sandbox = server.wait_for(|line| line["event"] == "sandbox").await;
    assert!(sandbox["message"].as_str().unwrap_or_default().contains("Landlock"), "{sandbox}");
    let server_pid = server.child.id().unwrap();
    let app = server.create_app(ADMIN_KEY, "shop").await;

    // The function reports its environment and tries the server's, where the admin key is.
    let environ = format!("/proc/{server_pid}/environ");
    let code = format!(
        "const path = [\"/proc\", \"{server_pid}\", \"environ\"].join(\"/\");\n\
         Deno.serve(async () => {{\n\
           const tried = {{}};\n\
           try {{ tried.read = await Deno.readTextFile(path); }} catch (e) {{ tried.read = \"error: \" + e.name; }}\n\
           try {{ tried.import = JSON.stringify(await import(\"file://{environ}\")); }} catch (e) {{ tried.import = \"error: \" + String(e).slice(0, 200); }}\n\
           return Response.json({{ env: Deno.env.toObject(), tried }});\n\
         }});\n"
    );
    // The deploy check refuses the literal import of a file outside the deployment …
    let deploy = |name: &str, code: &str| {
        request(
            reqwest::Method::PUT,
            server.at(&format!("/api/apps/{app}/backend-functions/{name}")),
            Some(payload(code)),
        )
    };
    let (status, error, _) = deploy("env", &code).await;
    assert_eq!(status, 422, "{error}");
    assert!(error["message"].as_str().unwrap().contains(&format!("'file://{environ}'")), "{error}");
    // … so the function computes it instead.
    let code = code.replace(&format!("import(\"file://{environ}\")"), "import(\"file://\" + path)");
    let (status, outcome, _) = deploy("env", &code).await;
    assert_eq!(status, 200, "{outcome}");

    let response =
        reqwest::Client::new().post(server.at(&format!("/api/apps/{app}/functions/env"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let env = body["env"].as_object().unwrap();
    assert_eq!(env.get("HTTPS_PROXY"), Some(&json!(proxy)), "proxy settings reach workers: {body}");
    assert_eq!(env.get("NO_PROXY"), Some(&json!("example.test")), "{body}");
    assert_eq!(env.get("BASE44_APP_ID"), Some(&json!(app)), "{body}");
    for name in ["SERVER_ONLY_SETTING", "HOMEBASE_ADMIN_KEY", "HOMEBASE_DENO", "CARGO", "RUST_BACKTRACE"] {
        assert!(!env.contains_key(name), "{name} reached the worker: {body}");
    }
    for (way, outcome) in body["tried"].as_object().unwrap() {
        assert!(outcome.as_str().unwrap().starts_with("error: "), "{way}: {outcome}");
    }
    let text = body.to_string();
    assert!(!text.contains(SERVER_ONLY) && !text.contains(ADMIN_KEY), "{text}");
    // Control: the server's environment does hold them.
    let server_env = std::fs::read(&environ).unwrap();
    assert!(String::from_utf8_lossy(&server_env).contains(ADMIN_KEY));
}

#[tokio::test]
async fn deploy_checks_go_through_the_proxy_are_bounded_and_time_out() {
    let data = tempfile::tempdir().unwrap();
    let (proxy, mut connects) = silent_proxy().await;
    // The timeout is the window in which the requests below must reach the server's queue: long
    // enough for a loaded machine, short enough to wait out.
    let flags = ["--deploy-check-timeout", "10s", "--max-deploy-checks", "1"];
    let server = serve(data.path(), &proxy, &flags).await;
    let app = server.create_app(ADMIN_KEY, "shop").await;
    let url = |name: &str| server.at(&format!("/api/apps/{app}/backend-functions/{name}"));
    let code = "import leftPad from \"npm:left-pad@1.3.0\";\nDeno.serve(() => new Response(leftPad(\"1\", 2)));\n";

    // The first check asks the proxy for the registry, which never answers: it holds the only
    // check slot until the timeout.
    let started = Instant::now();
    let first = tokio::spawn(request(reqwest::Method::PUT, url("first"), Some(payload(code))));
    let connect = tokio::time::timeout(Duration::from_secs(30), connects.recv()).await.unwrap().unwrap();
    assert!(connect.starts_with("CONNECT registry.npmjs.org:443"), "the check went through the proxy: {connect}");

    // One more may wait for the slot; the next is refused at once.
    let second = tokio::spawn(request(reqwest::Method::PUT, url("second"), Some(payload(code))));
    let refused_at = Instant::now();
    let mut refused = None;
    for attempt in 0..50 {
        let (status, body, headers) =
            request(reqwest::Method::PUT, url(&format!("third{attempt}")), Some(payload(code))).await;
        if status == 429 {
            refused = Some((body, headers));
            break;
        }
        // The second request had not queued yet when this one came: it took the waiting place.
        assert_eq!(status, 504, "{body}");
    }
    let (body, headers) = refused.expect("a deploy beyond the bound is refused");
    assert!(refused_at.elapsed() < Duration::from_secs(10) || started.elapsed() < Duration::from_secs(30));
    assert_eq!(body["code"], "too_many_checks", "{body}");
    assert!(body["message"].is_string() && body["detail"].as_str().unwrap().contains("max-deploy-checks"), "{body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));

    let (status, body, _) = first.await.unwrap();
    assert_eq!((status, body["code"].as_str()), (504, Some("check_timeout")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("Function 'first' was not deployed"), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("deploy-check-timeout"), "{body}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(40), "{elapsed:?}");
    let (status, _, _) = second.await.unwrap();
    assert!(status == 504 || status == 429, "{status}");

    // The stopped checks leave no Deno process behind.
    let scratch = data.path().join("scratch");
    homebase_testkit::eventually("the checks' Deno processes to be gone", || {
        !std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&scratch.display().to_string()))
        })
    })
    .await;
    // Nothing was stored.
    let (status, listed, _) =
        request(reqwest::Method::GET, server.at(&format!("/api/apps/{app}/backend-functions")), None).await;
    assert_eq!((status, listed["functions"].as_array().map(Vec::len)), (200, Some(0)), "{listed}");
}

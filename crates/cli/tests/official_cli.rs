//! The official `base44` CLI (from npm) against the real `homebase serve`: deploy, list, pull,
//! delete and `deploy --force`, with the deployed functions called over HTTP; secrets, exec,
//! logs; and the message it shows for a feature Homebase does not serve (a `501`).

mod common;

use std::path::Path;
use std::process::Output;

use common::Running;
use homebase_testkit::{copy_dir, official_cli, repo_root};
use serde_json::{Value, json};
use tokio::process::Command;

const ADMIN_KEY: &str = "b44k_officialclitest0000000000000000";

/// Runs `base44 ARGS` in `project` against `url`; returns its output with stdout and stderr
/// together, for assertions on what a user would read.
async fn base44(project: &Path, url: &str, args: &[&str]) -> (Output, String) {
    let output = Command::new("node")
        .arg(official_cli().await)
        .args(args)
        .current_dir(project)
        .env("BASE44_API_URL", url)
        .env("BASE44_API_KEY", ADMIN_KEY)
        .env("BASE44_DISABLE_TELEMETRY", "1")
        .env("BASE44_CLI_TEST_OVERRIDES", r#"{"latestVersion":null}"#)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("node runs the official CLI");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output, text)
}

fn quickstart_for(app_id: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/quickstart"), project.path()).unwrap();
    std::fs::write(project.path().join("base44/.app.jsonc"), format!("{{\"id\": \"{app_id}\"}}\n")).unwrap();
    project
}

#[tokio::test]
async fn the_official_cli_deploys_lists_pulls_and_deletes() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let http = reqwest::Client::new();
    let app_id = server.create_app(ADMIN_KEY, "compat").await;
    let project = quickstart_for(&app_id);
    let call = |name: &str, body: Value| {
        http.post(server.at(&format!("/api/apps/{app_id}/functions/{name}"))).json(&body).send()
    };

    let (out, text) = base44(project.path(), &server.url, &["functions", "deploy"]).await;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 deployed"), "{text}");
    let hello = call("hello", json!({ "name": "Ada" })).await.unwrap();
    assert_eq!(hello.json::<Value>().await.unwrap(), json!({ "message": "Hello, Ada!" }));
    let summary = call("orders/summary", json!({ "orders": [{ "total": 250 }] })).await.unwrap();
    assert_eq!(summary.json::<Value>().await.unwrap(), json!({ "count": 1, "total": "$2.50" }));

    let (_, text) = base44(project.path(), &server.url, &["functions", "deploy"]).await;
    assert!(text.contains("3 unchanged"), "{text}");
    let (_, text) = base44(project.path(), &server.url, &["functions", "list"]).await;
    for name in ["clock", "hello", "orders/summary"] {
        assert!(text.contains(name), "{name} not listed: {text}");
    }

    // Pull into a copy without functions: every file comes back byte for byte.
    let pulled = quickstart_for(&app_id);
    std::fs::remove_dir_all(pulled.path().join("base44/functions")).unwrap();
    let (out, text) = base44(pulled.path(), &server.url, &["functions", "pull"]).await;
    assert!(out.status.success(), "{text}");
    for file in ["clock/entry.ts", "hello/entry.ts", "orders/summary/entry.ts"] {
        let original = std::fs::read(project.path().join("base44/functions").join(file)).unwrap();
        let copy = std::fs::read(pulled.path().join("base44/functions").join(file)).unwrap();
        assert_eq!(original, copy, "{file} differs after pull");
    }
    let shared = std::fs::read(project.path().join("base44/shared/format.ts")).unwrap();
    assert_eq!(std::fs::read(pulled.path().join("base44/shared/format.ts")).unwrap(), shared);

    // A deploy that does not load is refused with Deno's reason; the old code keeps serving.
    std::fs::write(project.path().join("base44/functions/hello/entry.ts"), "Deno.serve(() => {\n  return x(;\n});\n")
        .unwrap();
    let (out, text) = base44(project.path(), &server.url, &["functions", "deploy", "hello"]).await;
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("SyntaxError") && text.contains("entry.ts:2"), "{text}");
    let hello = call("hello", json!({ "name": "Bo" })).await.unwrap();
    assert_eq!(hello.json::<Value>().await.unwrap(), json!({ "message": "Hello, Bo!" }));

    let (out, text) = base44(project.path(), &server.url, &["functions", "delete", "clock"]).await;
    assert!(out.status.success(), "{text}");
    assert_eq!(call("clock", json!({})).await.unwrap().status(), 404);
    // (The official CLI reports this but exits 0.)
    let (_, text) = base44(project.path(), &server.url, &["functions", "delete", "nope"]).await;
    assert!(text.contains("Function \"nope\" not found"), "{text}");

    // --force deletes what no longer exists locally and deploys the rest.
    copy_dir(
        &repo_root().join("examples/quickstart/base44/functions/hello"),
        &project.path().join("base44/functions/hello"),
    )
    .unwrap();
    std::fs::remove_dir_all(project.path().join("base44/functions/orders")).unwrap();
    let (out, text) = base44(project.path(), &server.url, &["functions", "deploy", "--force"]).await;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("orders/summary") && text.contains("deleted"), "{text}");
    assert_eq!(call("orders/summary", json!({})).await.unwrap().status(), 404);
    assert_eq!(call("clock", json!({})).await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_official_cli_sets_lists_and_deletes_secrets() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let http = reqwest::Client::new();
    let app_id = server.create_app(ADMIN_KEY, "secrets").await;
    let project = quickstart_for(&app_id);
    let value = "official-cli-secret-value";

    let (out, text) =
        base44(project.path(), &server.url, &["secrets", "set", &format!("API_TOKEN={value}"), "OTHER=x"]).await;
    assert!(out.status.success(), "{text}");
    let (out, text) = base44(project.path(), &server.url, &["secrets", "list"]).await;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("API_TOKEN") && text.contains("OTHER"), "{text}");
    assert!(!text.contains(value), "{text}");
    let (out, text) = base44(project.path(), &server.url, &["secrets", "delete", "OTHER"]).await;
    assert!(out.status.success(), "{text}");
    let listed: Value = http
        .get(server.at(&format!("/api/apps/{app_id}/secrets")))
        .header("api_key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_object().unwrap().keys().collect::<Vec<_>>(), ["API_TOKEN"]);
    // A bad name is refused with the server's reason.
    let (out, text) = base44(project.path(), &server.url, &["secrets", "set", "1BAD=v"]).await;
    assert!(!out.status.success() || text.contains("1BAD"), "{text}");
}

#[tokio::test]
async fn the_official_cli_runs_scripts_with_exec() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let app_id = server.create_app(ADMIN_KEY, "exec").await;
    let project = homebase_testkit::fixture("functions");
    std::fs::write(project.path().join("base44/.app.jsonc"), format!("{{\"id\": \"{app_id}\"}}\n")).unwrap();
    let (out, text) = base44(project.path(), &server.url, &["functions", "deploy", "whoami"]).await;
    assert!(out.status.success(), "{text}");

    // `base44 exec` runs `deno` from PATH: ours.
    let deno = homebase_testkit::deno().await;
    let path = format!("{}:{}", deno.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new("node")
        .arg(official_cli().await)
        .arg("exec")
        .current_dir(project.path())
        .env("PATH", path)
        .env("BASE44_API_URL", &server.url)
        .env("BASE44_API_KEY", ADMIN_KEY)
        .env("BASE44_DISABLE_TELEMETRY", "1")
        .env("BASE44_CLI_TEST_OVERRIDES", r#"{"latestVersion":null}"#)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let script =
        r#"const r = await base44.functions.invoke("whoami", {}); console.log("SEEN " + JSON.stringify(r.data));"#;
    tokio::io::AsyncWriteExt::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let seen: Value = serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("SEEN ")).expect(&text)).unwrap();
    assert_eq!(seen["appId"], app_id.as_str(), "{seen}");
    assert_eq!(seen["apiUrl"], server.url.as_str());
    assert_eq!(seen["service"], true);
    // The token `auth/token` gave is the script's bearer, and the function knows it.
    assert_eq!(seen["authorization"], "Bearer");
    assert_eq!(seen["me"]["is_service"], true);
}

#[tokio::test]
async fn the_official_cli_reads_function_logs() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let http = reqwest::Client::new();
    let app_id = server.create_app(ADMIN_KEY, "logs").await;
    let project = quickstart_for(&app_id);
    let (out, text) = base44(project.path(), &server.url, &["functions", "deploy"]).await;
    assert!(out.status.success(), "{text}");
    let url = server.at(&format!("/api/apps/{app_id}/functions/hello"));
    for name in ["Ada", "Grace"] {
        let response = http.post(&url).json(&json!({ "name": name })).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // Lines reach the store with no signal of their own: ask until both are there (up to 30 s).
    let mut text = String::new();
    for _ in 0..60 {
        let (out, answer) = base44(project.path(), &server.url, &["logs", "--function", "hello"]).await;
        assert!(out.status.success(), "{answer}");
        text = answer;
        if text.contains("greeting Ada") && text.contains("greeting Grace") {
            break;
        }
    }
    assert!(text.contains("greeting Ada") && text.contains("greeting Grace"), "{text}");
    // Filters go through: only error lines (there are none) and a limit.
    let (out, text) = base44(project.path(), &server.url, &["logs", "--function", "hello", "--level", "error"]).await;
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("greeting"), "{text}");
    let (out, text) =
        base44(project.path(), &server.url, &["logs", "--function", "hello", "-n", "1", "--order", "asc"]).await;
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("greeting Grace"), "only the oldest line: {text}");
    // Without --function: every deployed function's logs.
    let (out, text) = base44(project.path(), &server.url, &["logs"]).await;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("greeting Ada"), "{text}");
}

#[tokio::test]
async fn the_official_cli_pushes_entity_schemas() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let app_id = server.create_app(ADMIN_KEY, "data").await;
    let project = quickstart_for(&app_id);
    // The quickstart has an entity, Order: the push stores it and the records API serves it.
    let (out, text) = base44(project.path(), &server.url, &["entities", "push", "--yes"]).await;
    assert!(out.status.success(), "{text}");
    let http = reqwest::Client::new();
    let orders = server.at(&format!("/api/apps/{app_id}/entities/Order"));
    let created = http.post(&orders).json(&serde_json::json!({"customer": "Ada", "total": 1200})).send().await.unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let invalid = http.post(&orders).json(&serde_json::json!({"customer": "Ada"})).send().await.unwrap();
    assert_eq!(invalid.status(), 422, "the pushed schema is enforced");
}

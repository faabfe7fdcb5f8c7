//! `homebase dev` as a user runs it: the real binary, real Deno, a temp copy of a project, port 0
//! (or a port the test holds), readiness read from the binary's `--json` output.

mod common;

use common::{Running, get_json, wait_gone};
use homebase_testkit::{copy_dir, deno, fixture, process_alive, repo_root};
use serde_json::{Value, json};
use tokio::process::Command;

#[tokio::test]
async fn serves_the_quickstart_example_as_the_docs_show() {
    let project = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/quickstart"), project.path()).unwrap();
    let mut dev = Running::start(project.path(), &["--port", "0"], &[]).await;

    let client = reqwest::Client::new();
    let hello: Value = client
        .post(dev.at("/functions/hello"))
        .json(&json!({"name": "Ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hello, json!({ "message": "Hello, Ada!" }));
    let summary = client
        .post(dev.at("/api/apps/my-app/functions/orders/summary"))
        .json(&json!({ "orders": [{ "total": 1250 }, { "total": 899 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(summary.json::<Value>().await.unwrap(), json!({ "count": 2, "total": "$21.49" }));
    let clock = client.get(dev.at("/api/functions/clock")).send().await.unwrap();
    assert_eq!(clock.headers()["content-type"], "text/event-stream");
    let events = clock.text().await.unwrap();
    assert_eq!(events.matches("data: ").count(), 3, "{events}");

    // The function's console.log reached the terminal as a JSON log line.
    let line = dev.wait_for(|l| l["event"] == "log" && l["message"] == "greeting Ada").await;
    assert_eq!(line["function"], "hello");
    assert_eq!(line["level"], "info");
    assert_eq!(line["app_id"], "local");
    dev.signal(libc::SIGINT);
    assert_eq!(dev.exit_code().await, Some(0));
}

#[tokio::test]
async fn a_taken_default_port_moves_to_the_next_free_one() {
    let project = fixture("functions");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    // The port comes from the environment, so the fallback applies as for the default 4400.
    let mut dev = Running::start(project.path(), &[], &[("HOMEBASE_PORT", taken.to_string())]).await;
    assert!(!dev.url.ends_with(&format!(":{taken}")), "{}", dev.url);
    let (status, body) = get_json(dev.at("/functions/modern")).await;
    assert_eq!((status, &body["shape"]), (200, &json!("export default function")));
    dev.signal(libc::SIGTERM);
    let _ = dev.wait_for(|l| l["event"] == "stopped").await;
    drop(held);
}

#[tokio::test]
async fn an_explicit_port_that_is_taken_is_an_error() {
    let project = fixture("functions");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_homebase"))
        .arg("dev")
        .arg(project.path())
        .args(["--port", &port])
        .env("HOMEBASE_DENO", deno().await)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("could not listen on 127.0.0.1:{port}")), "{stderr}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_stops_workers() {
    let project = fixture("functions");
    let mut dev = Running::start(project.path(), &["--port", "0"], &[]).await;
    let (_, exits) = get_json(dev.at("/functions/exits")).await;
    let worker = exits["pid"].as_u64().unwrap() as u32;
    let in_flight = tokio::spawn(reqwest::get(dev.at("/functions/delayed?ms=700")));
    dev.wait_for(|l| l["event"] == "log" && l["message"] == "request received").await;
    dev.signal(libc::SIGTERM);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "waited": 700 }));
    assert_eq!(dev.exit_code().await, Some(0));
    assert!(!process_alive(worker), "worker {worker} outlived homebase");
}

#[tokio::test]
async fn no_worker_outlives_a_sigkilled_homebase() {
    let project = fixture("functions");
    let mut dev = Running::start(project.path(), &["--port", "0"], &[]).await;
    let (_, a) = get_json(dev.at("/functions/exits")).await;
    let (_, b) = get_json(dev.at("/functions/spin")).await;
    // This worker's event loop is stuck: only the kernel's parent-death signal can end it.
    tokio::spawn(reqwest::get(dev.at("/functions/spin/forever")));
    dev.wait_for(|l| l["event"] == "log" && l["message"] == "spinning").await;
    dev.signal(libc::SIGKILL);
    let _ = dev.exit_code().await;
    for pid in [&a, &b].map(|v| v["pid"].as_u64().unwrap() as u32) {
        wait_gone(pid).await;
    }
}

#[tokio::test]
async fn function_timeout_flag_applies() {
    let project = fixture("functions");
    let dev = Running::start(project.path(), &["--port", "0", "--function-timeout", "1s"], &[]).await;
    let (status, body) = get_json(dev.at("/functions/slow")).await;
    assert_eq!(status, 504);
    assert_eq!(body["code"], "function_timeout");
    assert_eq!(body["message"], "Function 'slow' did not finish within 1s");
}

#[tokio::test]
async fn the_runtime_module_reads_secrets_from_the_environment_and_runs_background_work() {
    let project = fixture("functions");
    let dev = Running::start(project.path(), &["--port", "0"], &[("FIXTURE_SECRET", "s3cret".into())]).await;
    let (status, body) = get_json(dev.at("/functions/runtime-module")).await;
    assert_eq!(status, 202);
    assert_eq!(body, json!({ "secret": "s3cret", "env": "s3cret" }));
    let (_, body) = get_json(dev.at("/functions/runtime-module/background")).await;
    assert_eq!(body["background"], "ran");
}

#[tokio::test]
async fn dev_reports_broken_functions_and_serves_the_rest() {
    let project = fixture("functions");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.arg("--json").arg("dev").arg(project.path()).args(["--port", "0"]);
    let mut dev = Running::spawn(cmd, &[], false).await;
    let loaded = dev.wait_for(|l| l["event"] == "loaded").await;
    let problems: Vec<&str> = loaded["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(problems.iter().any(|p| p.contains("bad-automation") && p.contains("cron_expression")), "{problems:?}");
    let functions = loaded["functions"].as_array().unwrap();
    assert!(functions.contains(&json!("echo")) && functions.contains(&json!("email/send")));
    assert!(!functions.contains(&json!("bad-automation")));
}

#[tokio::test]
async fn dev_outside_a_project_says_what_is_missing() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_homebase")).arg("dev").arg(empty.path()).output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("config.jsonc"), "{stderr}");
}

#[tokio::test]
async fn failures_are_json_with_json() {
    let empty = tempfile::tempdir().unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_homebase")).args(["--json", "dev"]).arg(empty.path()).output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(error["event"], "error");
    assert!(error["message"].as_str().unwrap().contains("config.jsonc"), "{error}");
}

#[tokio::test]
async fn a_missing_explicit_config_file_is_an_error() {
    let project = fixture("functions");
    let output = Command::new(env!("CARGO_BIN_EXE_homebase"))
        .arg("dev")
        .arg(project.path())
        .args(["--config", "/nonexistent/homebase.toml"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/homebase.toml"), "{stderr}");
}

#[tokio::test]
async fn types_generate_writes_the_registry() {
    let project = fixture("functions");
    let output = Command::new(env!("CARGO_BIN_EXE_homebase"))
        .args(["--json", "types", "generate"])
        .arg(project.path())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["entities"], 1);
    let path = project.path().join("base44/.types/types.d.ts");
    assert_eq!(summary["path"], path.display().to_string());
    let types = std::fs::read_to_string(path).unwrap();
    assert!(types.contains("interface FunctionNameRegistry"), "{types}");
    assert!(types.contains("\"email/send\": true;"), "{types}");
    assert!(types.contains("\"Task\": Task;"), "{types}");
}

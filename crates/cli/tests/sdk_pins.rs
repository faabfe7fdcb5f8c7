//! Functions that pin any version of the official SDK, deployed to the real `homebase serve` by
//! `homebase deploy` and by the official `base44` CLI, answer through the server (the fixture
//! `sdk-pins`: versions never published, one Deno cannot load, published ones); and the
//! worker-limit flags are checked before anything starts.

mod common;

use std::path::Path;

use common::Running;
use homebase_testkit::{copy_dir, official_cli};
use serde_json::{Value, json};
use tokio::process::Command;

const ADMIN_KEY: &str = "b44k_sdkpinstest0000000000000000000";
const PINS: [&str; 5] = ["0.7.1", "0.8.11", "0.8.21", "0.8.25", "0.8.50"];

/// A copy of the `sdk-pins` fixture linked to `app_id`.
fn sdk_pins_for(app_id: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/sdk-pins");
    copy_dir(&fixture, project.path()).unwrap();
    std::fs::write(project.path().join("base44/.app.jsonc"), format!("{{\"id\": \"{app_id}\"}}\n")).unwrap();
    project
}

/// Calls every pinned function anonymously: each loads its SDK, asks `auth.me()` (401 for an
/// anonymous caller) and calls `callee` with the service role.
async fn call_pins(server: &Running, app_id: &str) {
    let http = reqwest::Client::new();
    for version in PINS {
        let name = format!("pin-{}", version.replace('.', "-"));
        let response = http
            .post(server.at(&format!("/api/apps/{app_id}/functions/{name}")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let out: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{name}: {out}");
        assert_eq!((out["pinned"].as_str(), out["meStatus"].as_i64()), (Some(version), Some(401)), "{out}");
        assert_eq!(out["callee"], json!({ "service": true, "from": version }), "{out}");
    }
    let forms = http.post(server.at(&format!("/api/apps/{app_id}/functions/forms"))).send().await.unwrap();
    assert_eq!(forms.status(), 200);
}

#[tokio::test]
async fn homebase_deploy_ships_functions_that_pin_any_sdk_version() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let app_id = server.create_app(ADMIN_KEY, "pins").await;
    let project = sdk_pins_for(&app_id);
    let config = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_homebase"))
        .args(["--json", "deploy"])
        .current_dir(project.path())
        .env("HOMEBASE_CONFIG_DIR", config.path())
        .env("HOMEBASE_URL", &server.url)
        .env("HOMEBASE_TOKEN", ADMIN_KEY)
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{text}");
    call_pins(&server, &app_id).await;
}

#[tokio::test]
async fn the_official_cli_deploys_functions_that_pin_any_sdk_version() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let app_id = server.create_app(ADMIN_KEY, "pins").await;
    let project = sdk_pins_for(&app_id);
    let output = Command::new("node")
        .arg(official_cli().await)
        .args(["functions", "deploy"])
        .current_dir(project.path())
        .env("BASE44_API_URL", &server.url)
        .env("BASE44_API_KEY", ADMIN_KEY)
        .env("BASE44_DISABLE_TELEMETRY", "1")
        .env("BASE44_CLI_TEST_OVERRIDES", r#"{"latestVersion":null}"#)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("node runs the official CLI");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{text}");
    assert!(text.contains("7 deployed"), "{text}");
    call_pins(&server, &app_id).await;
}

#[tokio::test]
async fn worker_limit_flags_are_checked_before_anything_starts() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("base44/functions")).unwrap();
    std::fs::write(project.path().join("base44/config.jsonc"), "{ \"name\": \"limits\" }\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    let project = project.path().to_str().unwrap();
    for (args, setting, says) in [
        (vec!["dev", project, "--function-memory", "64MB"], "function-memory", "at least 128MB"),
        (vec!["dev", project, "--function-memory", "plenty"], "function-memory", "is not a size"),
        (vec!["serve", "--data-dir", data, "--max-workers", "0"], "max-workers", "at least 1"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_homebase")).args(&args).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(setting) && stderr.contains(says), "{args:?}: {stderr}");
    }
    // Accepted values are taken: `dev` starts with them.
    let dev = Running::start(
        Path::new(project),
        &["--port", "0", "--function-memory", "256MB", "--function-concurrency", "4", "--max-workers", "3"],
        &[],
    )
    .await;
    assert!(dev.url.starts_with("http://127.0.0.1:"), "{}", dev.url);
}

//! Functions that pin any version of the official SDK run, in `dev` and in `serve`: the fixture
//! `sdk-pins` pins versions that were never published (0.7.1, 0.8.21), one whose package Deno
//! cannot load (0.8.11) and published ones (0.8.25, 0.8.50), and `forms` writes the SDK with no
//! version, a range, a subpath and as a bare name. Each calls `auth.me()` as the caller and a
//! function with the service role through the real server; the worker's log says once which
//! version replaced which.

use homebase_runtime::{Level, LogEvent};
use homebase_testkit::{ADMIN_KEY, TestPlatform, TestServer, fixture, json_of};
use serde_json::{Value, json};

/// Each pinned version and the one Homebase loads for it (`None`: the version itself).
const PINS: [(&str, Option<&str>); 5] = [
    ("0.7.1", Some("0.7.8")),
    ("0.8.11", Some("0.8.12")),
    ("0.8.21", Some("0.8.22")),
    ("0.8.25", None),
    ("0.8.50", None),
];

fn function_of(version: &str) -> String {
    format!("pin-{}", version.replace('.', "-"))
}

fn new_user(email: &str) -> homebase_store::NewUser {
    homebase_store::NewUser {
        email: email.into(),
        password: Some("pw-123456".into()),
        full_name: Some("Ann".into()),
        role: homebase_store::UserRole::User,
        is_verified: true,
    }
}

async fn call(client: &reqwest::Client, url: String, token: &str) -> Value {
    let response = client.post(&url).bearer_auth(token).json(&json!({})).send().await.unwrap();
    let status = response.status();
    let body = json_of(response).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

/// Checks what a pinned function answered for `user`, and that its log says once (after
/// `calls` calls to one worker) which version replaced the pinned one, or nothing.
fn check_pin(out: &Value, version: &str, user: &str, events: &[LogEvent], replaced_by: Option<&str>) {
    assert_eq!(out["pinned"], version, "{out}");
    assert_eq!(
        (out["me"].as_str(), out["meStatus"].as_i64()),
        (Some(user), Some(200)),
        "auth.me() as the caller: {out}"
    );
    assert_eq!(out["callee"], json!({ "service": true, "from": version }), "a service-role call: {out}");
    let function = function_of(version);
    let notes: Vec<&LogEvent> =
        events.iter().filter(|e| e.function == function && e.message.contains("@base44/sdk")).collect();
    match replaced_by {
        None => assert!(notes.is_empty(), "{version} is used as written: {notes:?}"),
        Some(used) => {
            assert_eq!(notes.len(), 1, "one note per worker: {notes:?}");
            let note = notes[0];
            assert_eq!(note.level, Level::Warning, "{note:?}");
            assert!(note.system, "{note:?}");
            assert!(
                note.message.contains(&format!("npm:@base44/sdk@{version} asks for @base44/sdk {version}"))
                    && note.message.contains(&format!("using {used}")),
                "{}",
                note.message
            );
        }
    }
}

fn check_forms(out: &Value) {
    let loaded = json!("function");
    assert_eq!((&out["unversioned"], &out["ranged"], &out["subpath"]), (&loaded, &loaded, &loaded), "{out}");
    assert_eq!(out["callee"], json!({ "service": true, "from": "forms" }), "{out}");
}

#[tokio::test]
async fn functions_pinning_any_sdk_version_run_in_dev() {
    let project = fixture("sdk-pins");
    let server = TestServer::start(project.path()).await;
    let app = server.app.app_id().to_string();
    let user = server.auth.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let token = server.auth.user_token(&user);
    let client = server.client();

    let mut answers = Vec::new();
    for (version, _) in PINS {
        let url = server.at(&format!("/api/apps/{app}/functions/{}", function_of(version)));
        answers.push(call(&client, url.clone(), &token).await);
        call(&client, url, &token).await; // the same worker again: no second note
    }
    let events = server.logs.events();
    for ((version, used), out) in PINS.iter().zip(&answers) {
        check_pin(out, version, &user.id, &events, *used);
    }

    let forms = call(&client, server.at(&format!("/api/apps/{app}/functions/forms")), &token).await;
    check_forms(&forms);
    let notes: Vec<String> = server
        .logs
        .events()
        .into_iter()
        .filter(|e| e.function == "forms" && e.message.contains("@base44/sdk"))
        .map(|e| e.message)
        .collect();
    for expected in [
        "npm:@base44/sdk names no version of @base44/sdk; using 0.8.50",
        "npm:@base44/sdk@^0.7.1 asks for @base44/sdk ^0.7.1; using 0.7.10",
        "npm:@base44/sdk@0.8.21/dist/index.js asks for @base44/sdk 0.8.21, which is not on the npm registry; using 0.8.22",
        // The deno.json beside the entry names 0.8.11 for the bare name.
        "@base44/sdk asks for @base44/sdk 0.8.11, whose package does not load under Deno; using 0.8.12",
    ] {
        assert!(notes.iter().any(|n| n.starts_with(expected)), "no note {expected:?} in {notes:#?}");
    }
    server.stop().await;
}

/// The files of `function` in the fixture, as a deploy carries them.
fn deploy_body(project: &std::path::Path, function: &str) -> Value {
    let dir = project.join("base44/functions").join(function);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.file_name().to_string_lossy().into_owned();
        files.push(json!({ "path": path, "content": std::fs::read_to_string(entry.path()).unwrap() }));
    }
    json!({ "entry": "entry.ts", "files": files, "automations": [] })
}

#[tokio::test]
async fn functions_pinning_any_sdk_version_run_in_serve() {
    // Workers of `serve` load packages only from the cache the deploy check filled
    // (`--cached-only`): the check must have fetched the versions the workers are given.
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let client = server.client();
    let created = client.post(server.at("/api/apps")).header("api_key", ADMIN_KEY).json(&json!({ "name": "pins" }));
    let app = json_of(created.send().await.unwrap()).await["id"].as_str().unwrap().to_string();
    let project = fixture("sdk-pins");
    let functions: Vec<String> =
        PINS.iter().map(|(v, _)| function_of(v)).chain(["callee".into(), "forms".into()]).collect();
    for function in &functions {
        let response = client
            .put(server.at(&format!("/api/apps/{app}/backend-functions/{function}")))
            .header("api_key", ADMIN_KEY)
            .json(&deploy_body(project.path(), function))
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(status, 200, "{function}: {}", json_of(response).await);
    }
    let user = server.auth.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let token = server.auth.user_token(&user);

    let mut answers = Vec::new();
    for (version, _) in PINS {
        let url = server.at(&format!("/api/apps/{app}/functions/{}", function_of(version)));
        answers.push(call(&client, url.clone(), &token).await);
        call(&client, url, &token).await;
    }
    let events = server.logs.events();
    for ((version, used), out) in PINS.iter().zip(&answers) {
        check_pin(out, version, &user.id, &events, *used);
    }
    check_forms(&call(&client, server.at(&format!("/api/apps/{app}/functions/forms")), &token).await);
    server.stop().await;
}

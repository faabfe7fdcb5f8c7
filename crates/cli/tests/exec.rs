//! `homebase exec` as a user runs it: the real binary against a running `homebase dev` of a
//! fixture project (found through `base44/.homebase/dev.json`) and against `homebase serve`,
//! with the official SDK inside the script.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::Running;
use homebase_testkit::{deno, eventually, fixture};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A script that reports who it is and what a function saw, as JSON lines.
const WHO: &str = r#"
const me = await base44.auth?.me?.().catch((e) => ({ error: e.status })) ?? null;
const called = await base44.functions.invoke("whoami", {});
console.log(JSON.stringify({ me, called: called.data }));
"#;

/// Runs `homebase exec ARGS` in `dir` with `stdin` piped in when given.
async fn exec(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> (Output, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_homebase"));
    command
        .arg("exec")
        .args(args)
        .current_dir(dir)
        .env("HOMEBASE_DENO", deno().await)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("homebase runs");
    if let Some(code) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(code.as_bytes()).await.unwrap();
    }
    let output = child.wait_with_output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output, text)
}

fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {stdout}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test]
async fn exec_runs_scripts_against_the_projects_dev_server_as_each_identity() {
    let project = fixture("functions");
    let dev = Running::start(project.path(), &["--port", "0"], &[]).await;
    let dev_file = project.path().join("base44/.homebase/dev.json");
    eventually("dev.json", || dev_file.exists()).await;
    let written: Value = serde_json::from_slice(&std::fs::read(&dev_file).unwrap()).unwrap();
    assert_eq!(written["url"], dev.url.as_str());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dev_file).unwrap().permissions().mode() & 0o777, 0o600);

    // Default: the script acts with the key's authority (a service token as its bearer).
    project.write("who.ts", WHO);
    let (out, text) = exec(project.path(), &["--local", "who.ts"], None, &[]).await;
    assert!(out.status.success(), "{text}");
    let seen = last_json(&out);
    assert_eq!(seen["me"]["is_service"], true, "{seen}");
    assert_eq!(seen["called"]["appId"], "fixture-app");
    assert_eq!(seen["called"]["me"]["is_service"], true);

    // As a user: the script and the function it calls both see that user.
    let created = reqwest::Client::new()
        .post(dev.at("/api/apps/fixture-app/users"))
        .header("api_key", written["key"].as_str().unwrap())
        .json(&json!({ "email": "ada@example.com", "password": "correct horse battery", "full_name": "Ada" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let (out, text) = exec(project.path(), &["--local", "--as", "ada@example.com", "-"], Some(WHO), &[]).await;
    assert!(out.status.success(), "{text}");
    let seen = last_json(&out);
    assert_eq!(seen["me"]["email"], "ada@example.com", "{seen}");
    assert_eq!(seen["called"]["me"]["email"], "ada@example.com");
    assert_eq!(seen["called"]["authorization"], "Bearer");

    // The service role: `base44` is `asServiceRole`, which has no `auth`.
    let (out, text) = exec(project.path(), &["--local", "--as-service"], Some(WHO), &[]).await;
    assert!(out.status.success(), "{text}");
    let seen = last_json(&out);
    assert_eq!(seen["me"], Value::Null, "{seen}");
    assert_eq!(seen["called"]["me"]["is_service"], true);

    // The script's exit code is ours; an unknown user and a missing script are clear errors.
    let (out, _) = exec(project.path(), &["--local"], Some("Deno.exit(7)"), &[]).await;
    assert_eq!(out.status.code(), Some(7));
    let (out, text) = exec(project.path(), &["--local", "--as", "nobody@example.com"], Some(WHO), &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("The app has no user 'nobody@example.com'"), "{text}");
    let (out, text) = exec(project.path(), &["--local", "--json", "missing.ts"], None, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(error["event"], "error");
    assert!(error["message"].as_str().unwrap().contains("missing.ts cannot be read"), "{error}");

    // A wrong key is refused.
    let wrong = reqwest::Client::new()
        .get(dev.at("/api/apps/fixture-app/auth/token"))
        .header("api_key", "hbdev_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // Once dev stops, its file goes and exec says what to do.
    dev.signal(libc::SIGTERM);
    assert_eq!(dev.exit_code().await, Some(0));
    assert!(!dev_file.exists());
    let (out, text) = exec(project.path(), &["--local"], Some(WHO), &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("No `homebase dev` is running"), "{text}");
}

#[tokio::test]
async fn exec_runs_against_a_server_with_its_api_key() {
    const ADMIN_KEY: &str = "b44k_exectestadmin00000000000000000";
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let app_id = server.create_app(ADMIN_KEY, "exec").await;
    let project = fixture("functions");
    std::fs::write(project.path().join("base44/.app.jsonc"), format!("{{\"id\": \"{app_id}\"}}\n")).unwrap();
    let deployed = Command::new(env!("CARGO_BIN_EXE_homebase"))
        .args(["functions", "deploy", "whoami", "--url", &server.url, "--token", ADMIN_KEY])
        .current_dir(project.path())
        .env("HOMEBASE_DENO", deno().await)
        .output()
        .await
        .unwrap();
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));

    let env = [("HOMEBASE_URL", server.url.as_str()), ("HOMEBASE_TOKEN", ADMIN_KEY)];
    let (out, text) = exec(project.path(), &[], Some(WHO), &env).await;
    assert!(out.status.success(), "{text}");
    let seen = last_json(&out);
    assert_eq!(seen["called"]["appId"], app_id.as_str(), "{seen}");
    assert_eq!(seen["called"]["apiUrl"], server.url.as_str());

    // Without a key, nothing runs.
    let (out, text) =
        exec(project.path(), &["--url", &server.url], Some(WHO), &[("HOMEBASE_TOKEN", "b44k_wrong")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("refused the API key"), "{text}");
}

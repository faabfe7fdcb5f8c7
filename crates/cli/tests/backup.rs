//! `homebase backup` against the real binary: a copy of a data folder made while `serve` runs on
//! it and requests (function calls, secret changes, log lines) keep coming; a new `serve` on the
//! copy answers the function with its secret, accepts the admin key, the user's password and the
//! token the user had before; the copy is private. And what it refuses: a destination that is
//! not empty, a server on PostgreSQL, a folder that is no data folder.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::Running;
use homebase_testkit::eventually;
use serde_json::{Value, json};
use tokio::process::Command;

const GREETING: &str = "hello from the vault";

/// Answers with the secret `GREETING`, and prints a line for the logs.
const GREET: &str = r#"Deno.serve(async (req) => {
  const { n } = await req.json();
  console.log(`greeting number ${n}`);
  return Response.json({ greeting: Deno.env.get("GREETING") ?? null, n });
});
"#;

/// `homebase --json serve` on `data`, with no key from the environment: it makes and uses
/// `master.key`, `admin.key` and `auth.key` in the folder, as a server installed by hand does.
async fn serve(data: &Path) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.args(["--json", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("HOMEBASE_ADMIN_KEY")
        .env_remove("HOMEBASE_MASTER_KEY")
        .env_remove("HOMEBASE_DATABASE_URL");
    Running::spawn(cmd, &[], true).await
}

/// `homebase --json backup DEST --data-dir DATA` with `env`; its exit status and JSON lines.
async fn backup(data: &Path, dest: &Path, env: &[(&str, &str)]) -> (bool, Vec<Value>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.args(["--json", "backup"]).arg(dest).arg("--data-dir").arg(data).env_remove("HOMEBASE_DATABASE_URL");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let output = cmd.output().await.unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    (output.status.success(), lines)
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_copy_made_while_serve_runs_serves_the_same_apps_secrets_keys_and_users() {
    let temp = tempfile::tempdir().unwrap();
    let (data, dest) = (temp.path().join("data"), temp.path().join("backups").join("monday"));
    let server = serve(&data).await;
    let admin_key = std::fs::read_to_string(data.join("admin.key")).unwrap().trim().to_string();
    let client = reqwest::Client::new();
    let admin =
        |method: reqwest::Method, path: &str| client.request(method, server.at(path)).header("api_key", &admin_key);

    let app = server.create_app(&admin_key, "Shop").await;
    let (status, body) = send(
        admin(reqwest::Method::PUT, &format!("/api/apps/{app}/auth/settings"))
            .json(&json!({"require_verification": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deploy = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": GREET }], "automations": [] });
    let (status, body) =
        send(admin(reqwest::Method::PUT, &format!("/api/apps/{app}/backend-functions/greet")).json(&deploy)).await;
    assert_eq!(status, 200, "{body}");
    let secrets = format!("/api/apps/{app}/secrets");
    let (status, body) = send(admin(reqwest::Method::POST, &secrets).json(&json!({ "GREETING": GREETING }))).await;
    assert_eq!(status, 200, "{body}");
    let sign_up = json!({"email": "ann@example.test", "password": "pw-123456"});
    let (status, body) = send(client.post(server.at(&format!("/api/apps/{app}/auth/register"))).json(&sign_up)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(client.post(server.at(&format!("/api/apps/{app}/auth/login"))).json(&sign_up)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();

    // Requests all along: function calls (log lines) and secret changes (the main database).
    let (stop, rounds) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, rounds, client) = (stop.clone(), rounds.clone(), client.clone());
        let (invoke, secrets) = (server.at(&format!("/api/apps/{app}/functions/greet")), server.at(&secrets));
        let admin_key = admin_key.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = send(client.post(&invoke).json(&json!({ "n": n }))).await;
                assert_eq!((status, &body["greeting"]), (200, &json!(GREETING)), "{body}");
                let counter = json!({ "COUNTER": n.to_string() });
                let (status, body) = send(client.post(&secrets).header("api_key", &admin_key).json(&counter)).await;
                assert_eq!(status, 200, "{body}");
                n += 1;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            n
        })
    };
    eventually("the load to run", || rounds.load(Ordering::Relaxed) >= 3).await;
    // The first call's log line is stored (lines are written in batches).
    let logs = format!("/api/apps/{app}/functions-mgmt/logs?limit=1000&order=asc");
    for tries in 0.. {
        let (status, body) = send(admin(reqwest::Method::GET, &logs)).await;
        if status == 200 && body.to_string().contains("greeting number 0") {
            break;
        }
        assert!(tries < 300, "the first log line was never stored: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let before = rounds.load(Ordering::Relaxed);
    let (ok, lines) = backup(&data, &dest, &[]).await;
    assert!(ok, "{lines:?}");
    // The server kept answering after the copy, as it did during it.
    let after = rounds.load(Ordering::Relaxed);
    eventually("the load to go on", || rounds.load(Ordering::Relaxed) >= after + 2).await;
    stop.store(true, Ordering::Relaxed);
    let total = load.await.unwrap();
    assert!(total > before, "{total}");

    let report = lines.last().unwrap();
    assert_eq!(report["event"], "backup", "{lines:?}");
    let files: Vec<&str> = report["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(files, ["homebase.db", "logs.db", "master.key", "admin.key", "auth.key"], "{report}");
    assert_eq!(report["warnings"], json!([]), "{report}");
    assert!(report["schema_version"].as_i64().unwrap() > 0, "{report}");
    assert!(lines.iter().any(|l| l["event"] == "copied" && l["file"] == "logs.db"), "{lines:?}");
    // Private, and nothing but the copy: no caches, no SQLite files beside the databases.
    assert_eq!(mode(&dest), 0o700);
    let mut names: Vec<String> =
        std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["admin.key", "auth.key", "backup.json", "homebase.db", "logs.db", "master.key"]);
    for name in &names {
        assert_eq!(mode(&dest.join(name)), 0o600, "{name}");
    }
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dest.join("backup.json")).unwrap()).unwrap();
    assert_eq!(manifest["schema_version"], report["schema_version"]);

    // Restore: stop the server, start one on the copy.
    server.signal(libc::SIGTERM);
    server.exit_code().await;
    let restored = serve(&dest).await;
    let (status, body) = send(client.get(restored.at("/api/apps")).header("api_key", &admin_key)).await;
    assert_eq!(status, 200, "the admin key: {body}");
    assert!(body.to_string().contains(&app), "{body}");
    let invoke = client.post(restored.at(&format!("/api/apps/{app}/functions/greet"))).json(&json!({ "n": -1 }));
    let (status, body) = send(invoke).await;
    assert_eq!((status, &body["greeting"]), (200, &json!(GREETING)), "the function and its secret: {body}");
    let me = client.get(restored.at(&format!("/api/apps/{app}/entities/User/me"))).bearer_auth(&token);
    let (status, body) = send(me).await;
    assert_eq!((status, body["email"].as_str()), (200, Some("ann@example.test")), "the token from before: {body}");
    let (status, body) = send(client.post(restored.at(&format!("/api/apps/{app}/auth/login"))).json(&sign_up)).await;
    assert_eq!(status, 200, "the password: {body}");
    let (status, body) = send(client.get(restored.at(&logs)).header("api_key", &admin_key)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("greeting number 0"), "the log lines from before the copy: {body}");
    restored.signal(libc::SIGTERM);
    restored.exit_code().await;

    // Once more into the same folder: refused, and the copy is untouched.
    let (ok, lines) = backup(&data, &dest, &[]).await;
    assert!(!ok);
    let error = lines.last().unwrap();
    assert_eq!(error["event"], "error");
    assert!(error["message"].as_str().unwrap().contains("exists and is not empty"), "{error}");
    assert!(dest.join("backup.json").is_file());
}

#[tokio::test]
async fn postgres_and_folders_without_a_database_are_refused_clearly() {
    let temp = tempfile::tempdir().unwrap();
    let (data, dest) = (temp.path().join("data"), temp.path().join("copy"));
    std::fs::create_dir(&data).unwrap();
    let (ok, lines) = backup(&data, &dest, &[]).await;
    let message = lines.last().unwrap()["message"].as_str().unwrap().to_string();
    assert!(!ok && message.contains("is not a data folder of homebase serve") && message.contains("--data-dir"));
    assert!(!dest.exists());

    std::fs::write(data.join("homebase.db"), "").unwrap();
    let url = "postgres://homebase:s3cret-pw@10.0.0.9:5432/homebase";
    let (ok, lines) = backup(&data, &dest, &[("HOMEBASE_DATABASE_URL", url)]).await;
    let message = lines.last().unwrap()["message"].as_str().unwrap().to_string();
    assert!(!ok && message.contains("PostgreSQL") && message.contains("pg_dump"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
    assert!(!dest.exists());
    std::fs::write(data.join("homebase.toml"), format!("database-url = \"{url}\"\n")).unwrap();
    let (ok, lines) = backup(&data, &dest, &[]).await;
    let message = lines.last().unwrap()["message"].as_str().unwrap().to_string();
    assert!(!ok && message.contains("database-url in") && message.contains("pg_dump"), "{message}");
    assert!(!dest.exists());
}

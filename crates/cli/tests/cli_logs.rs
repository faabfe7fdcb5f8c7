//! `homebase logs` against the real `homebase serve`: text and `--json` output, filters, a bad
//! flag, and `--follow` printing a line printed after it started, without repeating old ones.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Running;
use homebase_testkit::fixture;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const ADMIN_KEY: &str = "b44k_clilogstest000000000000000000000";

fn homebase(server: &Running, app: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.args(args)
        .args(["--url", &server.url, "--token", ADMIN_KEY, "--app-id", app])
        .env("HOMEBASE_CONFIG_DIR", std::env::temp_dir().join("homebase-cli-logs-no-login"))
        .env("NO_COLOR", "1");
    for name in ["HOMEBASE_URL", "HOMEBASE_TOKEN", "HOMEBASE_APP_ID", "BASE44_API_URL", "BASE44_API_KEY"] {
        cmd.env_remove(name);
    }
    cmd
}

async fn run(server: &Running, app: &str, args: &[&str]) -> (i32, String, String) {
    let output = homebase(server, app, args).output().await.expect("homebase runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

async fn setup(server: &Running) -> String {
    let app = server.create_app(ADMIN_KEY, "logs").await;
    let project = fixture("functions");
    let code = std::fs::read_to_string(project.path().join("base44/functions/chatty/entry.ts")).unwrap();
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }] });
    let http = reqwest::Client::new();
    let url = server.at(&format!("/api/apps/{app}/backend-functions/chatty"));
    let response = http.put(url).header("api_key", ADMIN_KEY).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    app
}

async fn invoke(server: &Running, app: &str, query: &str) {
    let url = server.at(&format!("/api/apps/{app}/functions/chatty?{query}"));
    let response = reqwest::Client::new().post(url).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// `homebase --json logs ARGS` until its own (non-system) messages number `n` (lines reach the
/// store with no signal of their own; polled up to 30 s).
async fn json_lines(server: &Running, app: &str, args: &[&str], n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let mut all = vec!["--json", "logs"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run(server, app, &all).await;
        assert_eq!(code, 0, "{stderr}");
        let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.iter().filter(|l| !is_system(l)).count() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} lines arrived");
}

fn is_system(line: &Value) -> bool {
    let message = line["message"].as_str().unwrap_or_default();
    message.starts_with("invocation: ") || message.starts_with("worker started")
}

#[tokio::test]
async fn logs_prints_text_and_json_and_follows_new_lines() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let app = setup(&server).await;
    invoke(&server, &app, "text=hello&n=2&level=warn").await;

    // --json: one object per line, oldest first, with the function and the level.
    let lines = json_lines(&server, &app, &["--function", "chatty"], 2).await;
    let own: Vec<&Value> = lines.iter().filter(|l| !is_system(l)).collect();
    assert_eq!(own[0]["message"], "hello 0");
    assert_eq!(own[1]["message"], "hello 1");
    assert!(own.iter().all(|l| l["function"] == "chatty" && l["level"] == "warning" && l["id"].is_u64()));

    // Text: aligned columns, no colour off a terminal; -n and --level filter.
    let (code, stdout, stderr) = run(&server, &app, &["logs", "--level", "warning", "-n", "1"]).await;
    assert_eq!(code, 0, "{stderr}");
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed.len(), 1, "{stdout}");
    assert!(printed[0].contains(" WARNING chatty ") && printed[0].ends_with(" hello 1"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour when stdout is not a terminal");

    // A bad flag value: exit 1 with the server's reason.
    let (code, _, stderr) = run(&server, &app, &["logs", "--level", "loud"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("not a log level"), "{stderr}");

    // --follow: the recent lines, then a line printed after it started, and nothing twice.
    let mut follower = homebase(&server, &app, &["--json", "logs", "--follow", "--function", "chatty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follower.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), out.next_line()).await.expect("a line").unwrap();
        serde_json::from_str(&line.expect("the follower runs")).unwrap()
    };
    let mut messages = Vec::new();
    while !messages.contains(&"hello 1".to_string()) {
        messages.push(next().await["message"].as_str().unwrap().to_string());
    }
    invoke(&server, &app, "text=fresh").await;
    loop {
        let line = next().await;
        let message = line["message"].as_str().unwrap().to_string();
        assert!(!message.starts_with("hello"), "an old line came again: {message}");
        if message == "fresh 0" {
            assert_eq!(line["function"], "chatty");
            break;
        }
    }
    follower.kill().await.unwrap();
}

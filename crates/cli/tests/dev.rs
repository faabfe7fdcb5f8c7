//! `homebase dev` as a user runs it: the real binary, real Deno, a temp copy of a project, port 0
//! (or a port the test holds), readiness read from the binary's `--json` output.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use homebase_testkit::{copy_dir, deno, fixture, process_alive, repo_root};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running `homebase --json dev …` and the JSON lines it prints.
struct Dev {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    url: String,
}

impl Dev {
    async fn start(project: &Path, args: &[&str], env: &[(&str, String)]) -> Dev {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
        cmd.arg("--json").arg("dev").arg(project).args(args);
        Dev::spawn(cmd, env, true).await
    }

    async fn spawn(mut cmd: Command, env: &[(&str, String)], wait_listening: bool) -> Dev {
        cmd.env("HOMEBASE_DENO", deno().await)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("homebase starts");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or_else(|_| json!({ "event": "text", "line": line }));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let mut dev = Dev { child, lines, url: String::new() };
        if wait_listening {
            let listening = dev.wait_for(|line| line["event"] == "listening").await;
            dev.url = listening["url"].as_str().unwrap().to_string();
        }
        dev
    }

    /// The next printed line that matches; fails after 30 s.
    async fn wait_for(&mut self, mut matches: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if matches(&line) => return line,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("homebase exited before printing the expected line"),
                Err(_) => panic!("timed out waiting for a line from homebase"),
            }
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("running") as i32;
        assert_eq!(unsafe_kill(pid, signal), 0, "kill({pid}, {signal})");
    }

    async fn exit_code(mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("homebase exits").unwrap().code()
    }
}

impl Drop for Dev {
    /// A test that is done with homebase (or failed) stops it the way a user would, so that it
    /// cleans up after itself.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait()
            && let Some(pid) = self.child.id()
        {
            unsafe_kill(pid as i32, libc::SIGTERM);
        }
    }
}

#[allow(unsafe_code)]
fn unsafe_kill(pid: i32, signal: i32) -> i32 {
    // SAFETY: kill(2) with a pid we spawned; no memory is shared.
    unsafe { libc::kill(pid, signal) }
}

async fn get_json(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls for a process to be gone: the kernel gives no signal we can wait on for another
/// process's child.
async fn wait_gone(pid: u32) {
    for _ in 0..500 {
        if !process_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} is still alive");
}

#[tokio::test]
async fn serves_the_quickstart_example_as_the_docs_show() {
    let project = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/quickstart"), project.path()).unwrap();
    let mut dev = Dev::start(project.path(), &["--port", "0"], &[]).await;

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
    let mut dev = Dev::start(project.path(), &[], &[("HOMEBASE_PORT", taken.to_string())]).await;
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
    let mut dev = Dev::start(project.path(), &["--port", "0"], &[]).await;
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
    let mut dev = Dev::start(project.path(), &["--port", "0"], &[]).await;
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
    let dev = Dev::start(project.path(), &["--port", "0", "--function-timeout", "1s"], &[]).await;
    let (status, body) = get_json(dev.at("/functions/slow")).await;
    assert_eq!(status, 504);
    assert_eq!(body["code"], "function_timeout");
    assert_eq!(body["message"], "Function 'slow' did not finish within 1s");
}

#[tokio::test]
async fn the_runtime_module_reads_secrets_from_the_environment_and_runs_background_work() {
    let project = fixture("functions");
    let dev = Dev::start(project.path(), &["--port", "0"], &[("HOMEBASE_FIXTURE_SECRET", "s3cret".into())]).await;
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
    let mut dev = Dev::spawn(cmd, &[], false).await;
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

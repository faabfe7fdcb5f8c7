//! Running the real `homebase` binary in tests: spawn it, read its `--json` lines, stop it the
//! way a user would.

#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use homebase_testkit::{deno, process_alive};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running `homebase --json …` and the JSON lines it prints.
pub struct Running {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    pub url: String,
}

impl Running {
    /// `homebase --json serve` on 127.0.0.1:0 with the data folder `data` and `admin_key` as its
    /// admin key.
    pub async fn serve(data: &Path, admin_key: &str) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
        cmd.args(["--json", "serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data);
        Running::spawn(cmd, &[("HOMEBASE_ADMIN_KEY", admin_key.to_string())], true).await
    }

    pub async fn start(project: &Path, args: &[&str], env: &[(&str, String)]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
        cmd.arg("--json").arg("dev").arg(project).args(args);
        Running::spawn(cmd, env, true).await
    }

    pub async fn spawn(mut cmd: Command, env: &[(&str, String)], wait_listening: bool) -> Running {
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
        let mut dev = Running { child, lines, url: String::new() };
        if wait_listening {
            let listening = dev.wait_for(|line| line["event"] == "listening").await;
            dev.url = listening["url"].as_str().unwrap().to_string();
        }
        dev
    }

    /// The next printed line that matches; fails after 30 s.
    /// Creates an app through the management API with `key`; returns its id.
    pub async fn create_app(&self, key: &str, name: &str) -> String {
        let app: Value = reqwest::Client::new()
            .post(self.at("/api/apps"))
            .header("api_key", key)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        app["id"].as_str().expect("the new app has an id").to_string()
    }

    pub async fn wait_for(&mut self, mut matches: impl FnMut(&Value) -> bool) -> Value {
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

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("running") as i32;
        assert_eq!(unsafe_kill(pid, signal), 0, "kill({pid}, {signal})");
    }

    pub async fn exit_code(mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("homebase exits").unwrap().code()
    }
}

impl Drop for Running {
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
pub fn unsafe_kill(pid: i32, signal: i32) -> i32 {
    // SAFETY: kill(2) with a pid we spawned; no memory is shared.
    unsafe { libc::kill(pid, signal) }
}

pub async fn get_json(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls for a process to be gone: the kernel gives no signal we can wait on for another
/// process's child.
pub async fn wait_gone(pid: u32) {
    for _ in 0..500 {
        if !process_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} is still alive");
}

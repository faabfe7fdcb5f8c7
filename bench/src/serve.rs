//! `homebase serve` for the benchmark binaries: started on 127.0.0.1:0 with a data folder and an
//! admin key, stopped with SIGTERM (then SIGKILL) when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct Serve {
    child: Child,
    pub url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `homebase --json serve` on a free port; returns once it printed its URL.
#[allow(dead_code)] // not every benchmark uses both
pub fn start_serve(homebase: &Path, deno: &Path, data: &Path, admin_key: &str) -> anyhow::Result<Serve> {
    start_serve_with(homebase, deno, data, admin_key, &[])
}

/// [`start_serve`] with more arguments (`--database-url …`, say) and `HOMEBASE_*` variables.
#[allow(dead_code)] // not every benchmark uses both
pub fn start_serve_with(
    homebase: &Path,
    deno: &Path,
    data: &Path,
    admin_key: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Serve> {
    let mut child = Command::new(homebase)
        .args(["--json", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .envs(env.iter().copied())
        .env("HOMEBASE_ADMIN_KEY", admin_key)
        .env("HOMEBASE_DENO", deno)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", homebase.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().context("homebase serve printed nothing")??;
    let line: serde_json::Value = serde_json::from_str(&first)?;
    let url = line["url"].as_str().with_context(|| format!("homebase serve did not start: {first}"))?.to_string();
    // Keep reading (every log line is also printed) so that the server never blocks on a pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Serve { child, url })
}

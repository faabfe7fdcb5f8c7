//! Load runs with a public tool: `wrk` (preferred) or `oha`, whichever is on `PATH`, and the
//! parsing of what each prints into requests per second and latency percentiles.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

/// The result of one load run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Load {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers other than 2xx/3xx, plus connect, read, write and timeout errors.
    pub errors: u64,
}

/// The load generator found on `PATH`.
#[derive(Debug)]
pub enum Tool {
    Wrk(PathBuf),
    Oha(PathBuf),
}

impl Tool {
    /// `wrk` if it is on `PATH`, else `oha`.
    pub fn locate() -> anyhow::Result<Tool> {
        if let Some(path) = find_on_path("wrk") {
            return Ok(Tool::Wrk(path));
        }
        if let Some(path) = find_on_path("oha") {
            return Ok(Tool::Oha(path));
        }
        bail!(
            "Neither wrk nor oha is on PATH. Install one: `apt-get install wrk` (Debian, Ubuntu) \
             or `cargo install oha`."
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Tool::Wrk(_) => "wrk",
            Tool::Oha(_) => "oha",
        }
    }

    /// Loads `url` with `connections` keep-alive connections for `duration`.
    pub fn run(&self, url: &str, connections: u32, duration: Duration) -> anyhow::Result<Load> {
        let seconds = format!("{}s", duration.as_secs());
        let mut command = match self {
            Tool::Wrk(path) => {
                // One wrk thread per connection up to two: this machine has two cores to share
                // between the load and the server.
                let threads = connections.min(2);
                let mut command = Command::new(path);
                command.arg(format!("-t{threads}")).arg(format!("-c{connections}")).arg(format!("-d{seconds}"));
                command.arg("--latency").arg(url);
                command
            }
            Tool::Oha(path) => {
                let mut command = Command::new(path);
                command.args(["--no-tui", "--output-format", "json", "-z", &seconds]);
                command.arg("-c").arg(connections.to_string()).arg(url);
                command
            }
        };
        let output = command.output().with_context(|| format!("could not run {}", self.name()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "{} failed ({}): {}{}",
                self.name(),
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        match self {
            Tool::Wrk(_) => parse_wrk(&stdout),
            Tool::Oha(_) => parse_oha(&stdout),
        }
        .with_context(|| format!("could not read {}'s output:\n{stdout}", self.name()))
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_executable =
        |path: &Path| std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| is_executable(path))
}

/// Reads `wrk --latency` output: `Requests/sec:`, the `50%` and `99%` lines of the latency
/// distribution, and the error lines wrk prints only when there were errors.
fn parse_wrk(output: &str) -> anyhow::Result<Load> {
    let (mut requests_per_sec, mut p50_ms, mut p99_ms, mut errors) = (None, None, None, 0);
    for line in output.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            requests_per_sec = Some(value.trim().parse()?);
        } else if let Some(value) = line.strip_prefix("50%") {
            p50_ms = Some(wrk_time_ms(value.trim())?);
        } else if let Some(value) = line.strip_prefix("99%") {
            p99_ms = Some(wrk_time_ms(value.trim())?);
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += value.trim().parse::<u64>()?;
        } else if let Some(value) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for count in value.split(',') {
                errors += count.split_whitespace().last().context("empty socket error count")?.parse::<u64>()?;
            }
        }
    }
    Ok(Load {
        requests_per_sec: requests_per_sec.context("no Requests/sec line")?,
        p50_ms: p50_ms.context("no 50% line (was --latency passed?)")?,
        p99_ms: p99_ms.context("no 99% line (was --latency passed?)")?,
        errors,
    })
}

/// A wrk duration such as `123.45us`, `1.31ms`, `2.00s` or `1.00m`, in milliseconds.
fn wrk_time_ms(text: &str) -> anyhow::Result<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().with_context(|| format!("bad number in {text:?}"))?;
    Ok(match unit {
        "us" => number / 1_000.0,
        "ms" => number,
        "s" => number * 1_000.0,
        "m" => number * 60_000.0,
        "h" => number * 3_600_000.0,
        _ => bail!("unknown unit in {text:?}"),
    })
}

/// Reads `oha --output-format json`: latencies are in seconds. Requests still running when the
/// duration ends are aborted by oha and are not errors.
fn parse_oha(output: &str) -> anyhow::Result<Load> {
    let json: serde_json::Value = serde_json::from_str(output)?;
    let number = |value: &serde_json::Value, what: &str| value.as_f64().with_context(|| format!("no {what}"));
    let failed_answers: u64 = json["statusCodeDistribution"]
        .as_object()
        .context("no statusCodeDistribution")?
        .iter()
        .filter(|(status, _)| !(status.starts_with('2') || status.starts_with('3')))
        .filter_map(|(_, count)| count.as_u64())
        .sum();
    let failed_requests: u64 = json["errorDistribution"]
        .as_object()
        .context("no errorDistribution")?
        .iter()
        .filter(|(error, _)| *error != "aborted due to deadline")
        .filter_map(|(_, count)| count.as_u64())
        .sum();
    Ok(Load {
        requests_per_sec: number(&json["summary"]["requestsPerSec"], "summary.requestsPerSec")?,
        p50_ms: number(&json["latencyPercentiles"]["p50"], "latencyPercentiles.p50")? * 1_000.0,
        p99_ms: number(&json["latencyPercentiles"]["p99"], "latencyPercentiles.p99")? * 1_000.0,
        errors: failed_answers + failed_requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "\
Running 5s test @ http://127.0.0.1:34823/functions/hello
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.42ms  621.22us  10.02ms   80.84%
    Req/Sec    17.88k     1.79k   21.15k    68.33%
  Latency Distribution
     50%  812.00us
     75%    1.64ms
     90%    2.05ms
     99%    3.69ms
  106821 requests in 3.01s, 12.22MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  35529.01
Transfer/sec:      4.07MB
";

    #[test]
    fn reads_wrk_output() {
        let load = parse_wrk(WRK).unwrap();
        assert_eq!(load, Load { requests_per_sec: 35529.01, p50_ms: 0.812, p99_ms: 3.69, errors: 7 });
    }

    #[test]
    fn wrk_output_without_latency_distribution_is_an_error() {
        let without: String = WRK.lines().filter(|line| !line.trim().starts_with("50%")).collect::<Vec<_>>().join("\n");
        assert!(parse_wrk(&without).unwrap_err().to_string().contains("50%"));
    }

    #[test]
    fn reads_wrk_time_units() {
        assert_eq!(wrk_time_ms("250.00us").unwrap(), 0.25);
        assert_eq!(wrk_time_ms("2.00s").unwrap(), 2000.0);
        assert_eq!(wrk_time_ms("1.50m").unwrap(), 90_000.0);
        assert!(wrk_time_ms("12").is_err());
    }

    #[test]
    fn reads_oha_json() {
        let output = r#"{
            "summary": {"successRate": 1.0, "total": 5.0, "requestsPerSec": 20123.5},
            "latencyPercentiles": {"p10": 0.0001, "p50": 0.00025, "p99": 0.002},
            "statusCodeDistribution": {"200": 100610, "502": 3},
            "errorDistribution": {"aborted due to deadline": 50, "connection closed": 2}
        }"#;
        let load = parse_oha(output).unwrap();
        assert_eq!((load.requests_per_sec, load.errors), (20123.5, 5));
        assert!((load.p50_ms - 0.25).abs() < 1e-9 && (load.p99_ms - 2.0).abs() < 1e-9, "{load:?}");
    }
}

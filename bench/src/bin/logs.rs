//! `logs`: what keeping every log line costs in `homebase serve`.
//!
//! 1. **Invoke throughput with logging.** Two functions that differ only in one `console.log`
//!    per request are deployed to one server and loaded alike with wrk (or oha), one after the
//!    other; the report gives both rates and their ratio. Both also get Homebase's own
//!    invocation line, so the difference is the cost of the function's line: the host's
//!    formatting, the pipe, the hub, the store writer and the terminal sink.
//! 2. **Reading the newest 1,000 of 1,000,000 lines.** The log database of a fresh data folder
//!    is seeded with 1,000,000 lines of one function (through `LogStore::insert`, in batches,
//!    while the server is stopped), plus 100,000 of another; then `GET
//!    …/functions-mgmt/{name}/logs?limit=1000` (newest first) is timed over HTTP, median of
//!    `--queries` runs on a warm server.
//!
//! Run it with `bench/logs.sh`. It needs `curl` and wrk or oha on `PATH`.

#[path = "../load.rs"]
#[allow(dead_code)]
mod load;

#[path = "../serve.rs"]
mod serve;

use serve::start_serve;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::Parser;
use homebase_store::{LogRecord, LogStore};

const KEY: &str = "b44k_logsbenchmark000000000000000000";

#[derive(Debug, Parser)]
struct Args {
    /// Seconds of load per function.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up load per function.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// Lines seeded for the query test.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Timed queries (the median is reported).
    #[arg(long, default_value_t = 20)]
    queries: usize,
    /// The `homebase` binary (default: next to this one).
    #[arg(long)]
    homebase: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let homebase = match args.homebase {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("homebase"),
    };
    let tool = load::Tool::locate()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let deno = runtime.block_on(homebase_runtime::deno::locate_or_install(&|line| eprintln!("{line}")))?;

    // 1. Throughput with and without a log line per request.
    let data = tempfile::tempdir()?;
    let serve = start_serve(&homebase, &deno.path, data.path(), KEY)?;
    let app = create_app(&serve.url, "logs-bench")?;
    deploy(&serve.url, &app, "silent", "Deno.serve(() => new Response(\"ok\"));\n")?;
    deploy(
        &serve.url,
        &app,
        "chatty",
        "let n = 0;\nDeno.serve(() => {\n  console.log(`request ${++n} served`);\n  return new Response(\"ok\");\n});\n",
    )?;
    let mut rates = Vec::new();
    for name in ["silent", "chatty"] {
        let url = format!("{}/api/apps/{app}/functions/{name}", serve.url);
        curl(&["-sf", &url])?;
        eprintln!("warming up {name}…");
        tool.run(&url, args.connections, Duration::from_secs(args.warmup))?;
        eprintln!("loading {name} for {} s…", args.duration);
        rates.push(tool.run(&url, args.connections, Duration::from_secs(args.duration))?);
    }
    drop(serve);

    // 2. The newest 1,000 lines of a function with `lines` stored.
    let data = tempfile::tempdir()?;
    let serve = start_serve(&homebase, &deno.path, data.path(), KEY)?;
    let app = create_app(&serve.url, "query-bench")?;
    deploy(&serve.url, &app, "busy", "Deno.serve(() => new Response(\"ok\"));\n")?;
    drop(serve); // the log database is seeded while no server writes to it
    eprintln!("seeding {} lines…", args.lines);
    let seeded = Instant::now();
    runtime.block_on(seed(&data.path().join("logs.db"), &app, args.lines))?;
    let seed_time = seeded.elapsed();
    let size = std::fs::metadata(data.path().join("logs.db"))?.len();
    let serve = start_serve(&homebase, &deno.path, data.path(), KEY)?;
    let path = format!("/api/apps/{app}/functions-mgmt/busy/logs?limit=1000&order=desc");
    let mut times = Vec::new();
    let mut returned = 0;
    for i in 0..=args.queries {
        let started = Instant::now();
        let body = get(&serve.url, &path)?;
        let elapsed = started.elapsed();
        let lines: serde_json::Value = serde_json::from_slice(&body)?;
        returned = lines.as_array().map_or(0, Vec::len);
        if i > 0 {
            times.push(elapsed); // the first query warms the caches
        }
    }
    if returned != 1000 {
        bail!("the query returned {returned} lines, not 1000");
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    // A request that does nothing, for scale: the same number of GETs of /healthz.
    let mut baseline = Vec::new();
    for _ in 0..args.queries {
        let started = Instant::now();
        get(&serve.url, "/healthz")?;
        baseline.push(started.elapsed());
    }
    baseline.sort();
    let baseline = baseline[baseline.len() / 2];
    drop(serve);

    println!("# Logging benchmark\n");
    println!(
        "`homebase serve` (release build) on this machine; {} with {} connections, {} s per function after {} s of warm-up.\n",
        tool.name(),
        args.connections,
        args.duration,
        args.warmup
    );
    println!("| function | requests/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    for (name, load) in ["silent (no line)", "chatty (one console.log per request)"].iter().zip(&rates) {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            load.requests_per_sec, load.p50_ms, load.p99_ms, load.errors
        );
    }
    println!(
        "\nThroughput with one log line per request: **{:.2}×** that of the silent function.\n",
        rates[1].requests_per_sec / rates[0].requests_per_sec
    );
    println!("| request (fresh HTTP/1.1 connection, to the last byte) | lines stored | median | slowest |");
    println!("|---|---:|---:|---:|");
    println!("| `GET /healthz` (for scale) | | {:.2} ms | |", baseline.as_secs_f64() * 1000.0);
    println!(
        "| newest 1,000 lines of one function (`…/logs?limit=1000`, 1,000 JSON lines back) | {} (+{} of another function) | {:.1} ms | {:.1} ms |",
        args.lines,
        args.lines / 10,
        median.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0
    );
    println!(
        "\nSeeding took {:.1} s ({:.0} lines/s through `LogStore::insert`); `logs.db` is {:.0} MB.",
        seed_time.as_secs_f64(),
        (args.lines + args.lines / 10) as f64 / seed_time.as_secs_f64(),
        size as f64 / 1e6
    );
    Ok(())
}

/// `lines` lines of `busy` (and a tenth as many of `other`, interleaved), one second apart per
/// 1,000, ending now.
async fn seed(path: &Path, app: &str, lines: u64) -> anyhow::Result<()> {
    let store = LogStore::open(path).await?;
    let mut id = store.next_id().await?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_micros() as i64;
    let total = lines + lines / 10;
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..total {
        let function = if i % 11 == 10 { "other" } else { "busy" };
        batch.push(LogRecord {
            id,
            time_us: now - (total - i) as i64 * 1000,
            app_id: app.to_string(),
            function: function.to_string(),
            version: "d_seeded".to_string(),
            level: (i % 4) as u8,
            request_id: Some(format!("req_{i:016x}")),
            message: format!("seeded line {i}: order {} processed for customer {}", i * 7 % 10_007, i % 313),
            system: false,
        });
        id += 1;
        if batch.len() == 10_000 {
            store.insert(std::mem::take(&mut batch)).await?;
        }
    }
    store.insert(batch).await?;
    Ok(())
}

/// `GET path` on a fresh connection with the admin key, read to the end; the body.
fn get(url: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let host = url.strip_prefix("http://").context("an http:// URL")?;
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\napi_key: {KEY}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").context("no response head")?;
    if !response.starts_with(b"HTTP/1.1 200") {
        bail!("GET {path}: {}", String::from_utf8_lossy(&response[..head_end]));
    }
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    let body = response[head_end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        return Ok(dechunk(&body));
    }
    Ok(body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

fn curl(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("curl").args(args).output().context("curl is needed")?;
    if !output.status.success() {
        bail!("curl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(output.stdout)
}

fn create_app(url: &str, name: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "name": name }).to_string();
    let out = curl(&["-sf", "-X", "POST", &format!("{url}/api/apps"), "-H", &format!("api_key: {KEY}"), "-d", &body])?;
    let app: serde_json::Value = serde_json::from_slice(&out).context("creating an app")?;
    Ok(app["id"].as_str().context("no app id")?.to_string())
}

fn deploy(url: &str, app: &str, name: &str, code: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }] });
    let path = format!("{url}/api/apps/{app}/backend-functions/{name}");
    curl(
        &["-sf", "-X", "PUT", &path, "-H", &format!("api_key: {KEY}"), "-H", "content-type: application/json", "-d"]
            .into_iter()
            .chain([body.to_string().as_str()])
            .collect::<Vec<_>>(),
    )
    .with_context(|| format!("deploying {name}"))?;
    Ok(())
}

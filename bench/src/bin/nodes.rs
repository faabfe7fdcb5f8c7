//! `nodes`: what PostgreSQL and a second node cost, next to SQLite, in one run and one table.
//!
//! Three servers run the release `homebase serve`: one on SQLite (a temp data folder), and two
//! nodes (A and B) sharing a fresh schema of the PostgreSQL server `--postgres` names, each
//! with a data folder of its own. For each backend (node A on PostgreSQL):
//!
//! 1. **Deploy latency**: `--deploys` deploys of one function with new content each time, one
//!    after the other, timed from the request to the answer (Deno's check of the code, storing
//!    and activating it, loading it on the node that was asked);
//! 2. **Warm invoke throughput**: `GET /api/apps/{app}/functions/hello` loaded with wrk (or
//!    oha) at `--connections` connections for `--duration` seconds after a warm-up (the function
//!    routes read no database: the difference is noise unless something is wrong).
//!
//! and on PostgreSQL only, `--rounds` times:
//!
//! 3. **Deploy through A, first answer on B**: from sending a deploy of new content to A to the
//!    end of B's first answer with it (polled as fast as B answers), and from A's answer to that
//!    answer of B (the notification, B's reload and its worker's cold start).
//!
//! Run it with `bench/nodes.sh`. It needs a PostgreSQL server and wrk or oha on `PATH`.

#[path = "../load.rs"]
#[allow(dead_code)]
mod load;

#[path = "../serve.rs"]
mod serve;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use serve::{Serve, start_serve_with};

const KEY: &str = "b44k_nodesbenchmark00000000000000000";
const MASTER: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

#[derive(Debug, Parser)]
struct Args {
    /// The PostgreSQL server; the run creates a schema of its own there and drops it after.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    /// Deploys timed per backend.
    #[arg(long, default_value_t = 20)]
    deploys: usize,
    /// Deploys through node A timed until node B answers with them.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Seconds of load per backend.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up load per backend.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Concurrent connections of the load.
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// The `homebase` binary (default: next to this one).
    #[arg(long)]
    homebase: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let homebase = match &args.homebase {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("homebase"),
    };
    let tool = load::Tool::locate()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let deno = runtime.block_on(homebase_runtime::deno::locate_or_install(&|line| eprintln!("{line}")))?;
    let schema = runtime.block_on(Schema::create(&args.postgres))?;
    let result = runtime.block_on(run(&args, &homebase, &deno.path, &tool, &schema.url));
    runtime.block_on(schema.drop())?;
    let report = result?;
    report.print(&args, tool.name());
    Ok(())
}

/// A schema of its own on the PostgreSQL server.
struct Schema {
    server: String,
    name: String,
    url: String,
}

impl Schema {
    async fn create(server: &str) -> anyhow::Result<Schema> {
        let name = format!("hb_bench_{:016x}", rand_u64());
        admin(server).await?.batch_execute(&format!("CREATE SCHEMA {name}")).await?;
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-csearch_path%3D{name}");
        Ok(Schema { server: server.to_string(), name, url })
    }

    async fn drop(&self) -> anyhow::Result<()> {
        admin(&self.server).await?.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name)).await?;
        Ok(())
    }
}

fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    (nanos as u64) ^ (std::process::id() as u64).rotate_left(32)
}

async fn admin(server: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("PostgreSQL is not reachable at {server}; start it or pass --postgres"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// One backend's figures.
struct Backend {
    deploys: Vec<Duration>,
    load: load::Load,
}

struct Report {
    sqlite: Backend,
    postgres: Backend,
    /// Deploy sent to A → B's first answer with it.
    end_to_end: Vec<Duration>,
    /// A's answer → B's first answer with it.
    after_answer: Vec<Duration>,
}

async fn run(
    args: &Args,
    homebase: &std::path::Path,
    deno: &std::path::Path,
    tool: &load::Tool,
    url: &str,
) -> anyhow::Result<Report> {
    let http = reqwest::Client::new();
    let env = [("HOMEBASE_MASTER_KEY", MASTER)];
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?];

    eprintln!("SQLite: one node");
    let sqlite = start_serve_with(homebase, deno, dirs[0].path(), KEY, &env)?;
    let sqlite_figures = measure(args, &http, tool, &sqlite).await?;
    drop(sqlite);

    eprintln!("PostgreSQL: nodes A and B on one schema");
    let pg_env = [("HOMEBASE_MASTER_KEY", MASTER), ("HOMEBASE_DATABASE_URL", url)];
    let a = start_serve_with(homebase, deno, dirs[1].path(), KEY, &pg_env)?;
    let b = start_serve_with(homebase, deno, dirs[2].path(), KEY, &pg_env)?;
    let postgres_figures = measure(args, &http, tool, &a).await?;

    eprintln!("PostgreSQL: {} deploys through A, each until B answers with it", args.rounds);
    let app = create_app(&http, &a).await?;
    let (mut end_to_end, mut after_answer) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let version = format!("round {round}");
        let sent = Instant::now();
        deploy(&http, &a, &app, &version).await?;
        let answered = Instant::now();
        let seen = first_answer(&http, &b, &app, &version).await?;
        end_to_end.push(seen.duration_since(sent));
        after_answer.push(seen.duration_since(answered));
    }
    drop((a, b));
    Ok(Report { sqlite: sqlite_figures, postgres: postgres_figures, end_to_end, after_answer })
}

async fn measure(args: &Args, http: &reqwest::Client, tool: &load::Tool, node: &Serve) -> anyhow::Result<Backend> {
    let app = create_app(http, node).await?;
    eprintln!("  {} deploys", args.deploys);
    let mut deploys = Vec::new();
    for i in 0..args.deploys {
        let started = Instant::now();
        deploy(http, node, &app, &format!("deploy {i}")).await?;
        deploys.push(started.elapsed());
    }
    let url = format!("{}/api/apps/{app}/functions/hello", node.url);
    if http.get(&url).send().await?.status() != 200 {
        bail!("the function does not answer at {url}");
    }
    eprintln!("  warm-up {} s, load {} s at {} connections", args.warmup, args.duration, args.connections);
    let (warmup, duration) = (Duration::from_secs(args.warmup), Duration::from_secs(args.duration));
    // The load tool is a process this thread waits for.
    let load = tokio::task::block_in_place(|| {
        if !warmup.is_zero() {
            tool.run(&url, args.connections, warmup)?;
        }
        tool.run(&url, args.connections, duration)
    })?;
    Ok(Backend { deploys, load })
}

async fn create_app(http: &reqwest::Client, node: &Serve) -> anyhow::Result<String> {
    let response = http.post(format!("{}/api/apps", node.url)).header("api_key", KEY).json(&json!({ "name": "bench" }));
    let app: Value = response.send().await?.error_for_status()?.json().await?;
    Ok(app["id"].as_str().context("no app id")?.to_string())
}

/// Deploys `hello`, answering `text`.
async fn deploy(http: &reqwest::Client, node: &Serve, app: &str, text: &str) -> anyhow::Result<()> {
    let code = format!("Deno.serve(() => new Response({text:?}));\n");
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let url = format!("{}/api/apps/{app}/backend-functions/hello", node.url);
    let outcome: Value =
        http.put(url).header("api_key", KEY).json(&body).send().await?.error_for_status()?.json().await?;
    if outcome["status"] != "deployed" {
        bail!("the deploy did not deploy: {outcome}");
    }
    Ok(())
}

/// When `node` first finished an answer with `text`.
async fn first_answer(http: &reqwest::Client, node: &Serve, app: &str, text: &str) -> anyhow::Result<Instant> {
    let url = format!("{}/api/apps/{app}/functions/hello", node.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let response = http.get(&url).send().await?;
        let ok = response.status() == 200;
        let body = response.text().await?;
        if ok && body == text {
            return Ok(Instant::now());
        }
    }
    bail!("node B did not answer with {text:?} within 30 s")
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl Report {
    fn print(&self, args: &Args, tool: &str) {
        let pair = |values: &[Duration]| format!("{} / {}", ms(percentile(values, 0.5)), ms(percentile(values, 0.9)));
        let (s, p) = (&self.sqlite, &self.postgres);
        println!("# SQLite and PostgreSQL, one node and two\n");
        println!(
            "{} deploys per backend; {tool} at {} connections for {} s after {} s of warm-up; {} deploys through \
             node A timed until node B answers with them.\n",
            args.deploys, args.connections, args.duration, args.warmup, args.rounds
        );
        println!("| measure | SQLite (one node) | PostgreSQL (nodes A and B) |");
        println!("|---|---:|---:|");
        println!("| deploy latency, p50 / p90 | {} | {} |", pair(&s.deploys), pair(&p.deploys));
        println!(
            "| warm invoke throughput | {:.0} req/s | {:.0} req/s |",
            s.load.requests_per_sec, p.load.requests_per_sec
        );
        println!(
            "| warm invoke latency, p50 / p99 | {:.2} / {:.2} ms | {:.2} / {:.2} ms |",
            s.load.p50_ms, s.load.p99_ms, p.load.p50_ms, p.load.p99_ms
        );
        println!("| warm invoke errors | {} | {} |", s.load.errors, p.load.errors);
        println!("| deploy sent to A → first answer on B, p50 / p90 | (one node) | {} |", pair(&self.end_to_end));
        println!("| A's answer → first answer on B, p50 / p90 | (one node) | {} |", pair(&self.after_answer));
    }
}

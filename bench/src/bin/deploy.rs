//! `deploy`: how long a whole project takes to deploy to `homebase serve`, with Homebase's CLI and
//! with the official `base44` CLI, cold (the first deploy: every function checked by Deno and
//! stored) and warm (nothing changed: every function answers `unchanged`).
//!
//! It starts `homebase serve` on a free port with a temporary data folder, writes a project of
//! `--functions` functions (each its own entry plus a module shared by all), and for each CLI
//! creates a fresh app and times `functions deploy` twice. Run it with `bench/deploy.sh`.

#[path = "../serve.rs"]
mod serve;

use serve::start_serve;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

const KEY: &str = "b44k_deploybenchmark00000000000000000";

#[derive(Debug, Parser)]
struct Args {
    /// Functions in the generated project.
    #[arg(long, default_value_t = 50)]
    functions: usize,
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
    let runtime = tokio::runtime::Runtime::new()?;
    let deno = runtime.block_on(homebase_runtime::deno::locate_or_install(&|line| eprintln!("{line}")))?;
    eprintln!("installing the official base44 CLI (once per machine)…");
    let official = runtime.block_on(homebase_testkit::official_cli());

    let data = tempfile::tempdir()?;
    let serve = start_serve(&homebase, &deno.path, data.path(), KEY)?;
    let project = tempfile::tempdir()?;
    write_project(project.path(), args.functions)?;

    let mut rows = Vec::new();
    for (label, program) in [("homebase", Cli::Homebase(&homebase)), ("base44 (official)", Cli::Official(&official))] {
        let app_id = create_app(&serve.url, label)?;
        std::fs::write(project.path().join("base44/.app.jsonc"), format!("{{\"id\": \"{app_id}\"}}\n"))?;
        let cold = time_deploy(&program, project.path(), &serve.url)?;
        let warm = time_deploy(&program, project.path(), &serve.url)?;
        rows.push((label, cold, warm));
    }

    println!("# Deploy benchmark\n");
    println!(
        "{} functions, each with its own entry and one shared module; `homebase serve` on this machine.\n",
        args.functions
    );
    println!("| CLI | cold (first deploy) | warm (all unchanged) |");
    println!("|---|---:|---:|");
    for (label, cold, warm) in rows {
        println!("| {label} | {:.2} s | {:.2} s |", cold.as_secs_f64(), warm.as_secs_f64());
    }
    drop(serve);
    Ok(())
}

enum Cli<'a> {
    Homebase(&'a Path),
    Official(&'a Path),
}

fn time_deploy(cli: &Cli<'_>, project: &Path, url: &str) -> anyhow::Result<Duration> {
    let mut command = match cli {
        Cli::Homebase(binary) => {
            let mut c = Command::new(binary);
            c.args(["functions", "deploy"]).env("HOMEBASE_URL", url).env("HOMEBASE_TOKEN", KEY);
            c
        }
        Cli::Official(entry) => {
            let mut c = Command::new("node");
            c.arg(entry)
                .args(["functions", "deploy"])
                .env("BASE44_API_URL", url)
                .env("BASE44_API_KEY", KEY)
                .env("BASE44_DISABLE_TELEMETRY", "1")
                .env("BASE44_CLI_TEST_OVERRIDES", r#"{"latestVersion":null}"#);
            c
        }
    };
    let started = Instant::now();
    let output = command.current_dir(project).output().context("running the CLI")?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!("deploy failed: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    }
    Ok(elapsed)
}

fn create_app(url: &str, name: &str) -> anyhow::Result<String> {
    let output = Command::new("curl")
        .args(["-sf", "-X", "POST", &format!("{url}/api/apps"), "-H", &format!("api_key: {KEY}"), "-d"])
        .arg(serde_json::json!({ "name": name }).to_string())
        .output()
        .context("curl is needed to create the apps")?;
    let app: serde_json::Value = serde_json::from_slice(&output.stdout).context("creating an app")?;
    Ok(app["id"].as_str().context("no app id")?.to_string())
}

fn write_project(root: &Path, functions: usize) -> anyhow::Result<()> {
    let base = root.join("base44");
    std::fs::create_dir_all(base.join("shared"))?;
    std::fs::write(base.join("config.jsonc"), "{ \"name\": \"deploy-bench\" }\n")?;
    std::fs::write(base.join("shared/greet.ts"), "export const greet = (name: string) => `Hello, ${name}!`;\n")?;
    for i in 0..functions {
        let dir = base.join(format!("functions/fn-{i:02}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("entry.ts"),
            format!(
                "import {{ greet }} from \"../../shared/greet.ts\";\nDeno.serve(() => Response.json({{ n: {i}, text: greet(\"{i}\") }}));\n"
            ),
        )?;
    }
    Ok(())
}

//! `homebase-bench`: the same trivial function served by `homebase dev` (proxied to a Deno worker
//! over a Unix socket) and by plain `deno` with `Deno.serve`, measured alike.
//!
//! - Startup, repeated `--runs` times (medians): from the spawn of `homebase dev` to its
//!   `listening` line, to its first TCP connect and to the first 200 of the function, whose worker
//!   is started by that request; and from the spawn of plain Deno to its first 200.
//! - Load, at 50 connections and at 1 connection: each server in turn (never both at once) is
//!   started, warmed up and loaded by `wrk` (or `oha`) for `--duration` seconds.
//!
//! It prints a Markdown report (or `--json`) ending with each target and whether it is met.
//! Every process it starts is stopped when it is done with it, on errors too. `bench/run.sh`
//! builds everything and runs it; see `bench/README.md`.

mod load;
mod report;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use crate::load::{Load, Tool};
use crate::report::{Comparison, Machine, Report, Settings, Startup, StartupSamples};
use crate::server::{Kind, Server, Setup};

/// The connection counts of the load runs, in order.
const CONNECTIONS: [u32; 2] = [50, 1];

/// Benchmarks `homebase dev` against plain Deno serving the same function.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Seconds of each measured load run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,
    /// Seconds of load before each measured run, not counted (0: none).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Startup runs of each server; the report gives their medians.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// The `homebase` binary (default: next to this one).
    #[arg(long)]
    homebase: Option<PathBuf>,
    /// The fixture folder (default: this package's `fixture/`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/fixture"))]
    fixture: PathBuf,
    /// Print the results as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tool = Tool::locate()?;
    let homebase = match &args.homebase {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("homebase"),
    };
    if !homebase.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p homebase-cli`, or run bench/run.sh",
            homebase.display()
        );
    }
    let deno = find_deno()?;
    let setup = Setup { deno: deno.path, homebase, fixture: std::path::absolute(&args.fixture)? };
    eprintln!("Deno {} ({}), {}", deno.version, setup.deno.display(), tool.name());

    let startup = measure_startup(&setup, args.runs)?;
    let mut load = Vec::new();
    for connections in CONNECTIONS {
        let deno = measure_load(Kind::Deno, &setup, &tool, connections, &args)?;
        let homebase = measure_load(Kind::Homebase, &setup, &tool, connections, &args)?;
        load.push(Comparison::new(connections, deno, homebase));
    }

    let report = Report::new(
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            deno: deno.version,
            tool: tool.name(),
        },
        Settings { duration_s: args.duration, warmup_s: args.warmup, startup_runs: args.runs },
        load,
        startup,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// The Deno that `homebase dev` would use (`HOMEBASE_DENO`, `PATH`, Homebase's cache, or npm),
/// found by Homebase's own code; plain Deno runs the same one.
fn find_deno() -> anyhow::Result<homebase_runtime::deno::DenoInstall> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let progress = |line: &str| eprintln!("{line}");
    Ok(runtime.block_on(homebase_runtime::deno::locate_or_install(&progress))?)
}

/// Starts each server `runs` times, one after the other, and times its first answers. A first,
/// uncounted round fills the OS's file cache and Deno's module cache.
fn measure_startup(setup: &Setup, runs: u64) -> anyhow::Result<Startup> {
    let mut samples = StartupSamples::default();
    for run in 0..=runs {
        eprintln!("startup: run {run}/{runs}{}", if run == 0 { " (warm-up, not counted)" } else { "" });
        let mut homebase = Server::start(Kind::Homebase, setup)?;
        let cold = homebase.first_answer()?;
        let listening = homebase.listening_line()?;
        drop(homebase);
        let mut deno = Server::start(Kind::Deno, setup)?;
        let plain = deno.first_answer()?;
        drop(deno);
        if run > 0 {
            samples.homebase_listening_line.push(ms(listening));
            samples.homebase_first_connect.push(ms(cold.connected));
            samples.homebase_cold_function.push(ms(cold.answered));
            samples.deno_first_answer.push(ms(plain.answered));
        }
    }
    Ok(Startup::from_samples(&samples))
}

/// Starts one server, waits for its first answer (Homebase's worker is then running), warms it
/// up, then loads it for the measured run.
fn measure_load(kind: Kind, setup: &Setup, tool: &Tool, connections: u32, args: &Args) -> anyhow::Result<Load> {
    eprintln!("load: {kind} at {connections} connection(s): {} s warm-up, {} s measured", args.warmup, args.duration);
    let mut server = Server::start(kind, setup)?;
    server.first_answer()?;
    if args.warmup > 0 {
        tool.run(&server.url(), connections, Duration::from_secs(args.warmup)).context("warm-up run")?;
    }
    let load = tool.run(&server.url(), connections, Duration::from_secs(args.duration))?;
    if load.errors > 0 {
        eprintln!("warning: {} errors loading {kind} at {connections} connection(s)", load.errors);
    }
    Ok(load)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

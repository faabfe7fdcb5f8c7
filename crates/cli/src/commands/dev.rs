//! `homebase dev [PROJECT]`: serve a project's functions on 127.0.0.1:4400 (or the next free
//! port), reload on change, print function logs, stop cleanly on Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use homebase_logs::Sink;
use homebase_project::Project;
use homebase_server::config::{Config, ConfigLayer, Host};
use homebase_server::dev::{DevConfig, DevData, DevEvent, DevFile};
use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::output::{self, TerminalLogs};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// The project folder (default: the current folder or its nearest ancestor project).
    #[arg(default_value = ".")]
    project: PathBuf,
    /// Port to listen on (default 4400; without this flag the next free port is used if 4400 is taken).
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long)]
    host: Option<std::net::IpAddr>,
    /// How long one function request may run, e.g. 30s or 5m (default 5m).
    #[arg(long, value_name = "DURATION")]
    function_timeout: Option<String>,
    /// Stop a function's worker after this long without requests (default 5m).
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// How long a function's module may take to load (default 1m).
    #[arg(long, value_name = "DURATION")]
    boot_timeout: Option<String>,
    /// On shutdown, how long in-flight requests get to finish (default 10s).
    #[arg(long, value_name = "DURATION")]
    shutdown_timeout: Option<String>,
    /// A browser origin allowed to call functions (repeatable; loopback origins always are).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Configuration file (default: homebase.toml in the project root, if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The URL functions call back (Base44-Api-Url); default: the URL the caller used.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Keep app users and the token key in memory instead of base44/.homebase/ (gone on exit).
    #[arg(long)]
    in_memory: bool,
    /// Client connections served at once; more are answered 503 (default 10000).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// How long a client may take to send a request head, e.g. 10s (default 10s).
    #[arg(long, value_name = "DURATION")]
    header_read_timeout: Option<String>,
    /// Close a client connection after this long without a request, e.g. 75s (default 75s).
    #[arg(long, value_name = "DURATION")]
    keep_alive_timeout: Option<String>,
    #[command(flatten)]
    limits: crate::cli::WorkerLimitArgs,
}

pub async fn run(args: DevArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = Project::find(&args.project).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config_file = args.config.clone().unwrap_or_else(|| project.root.join("homebase.toml"));
    let flags = args.limits.apply(ConfigLayer {
        host: args.host.map(Host),
        port: args.port,
        function_timeout: args.function_timeout.map(Into::into),
        idle_timeout: args.idle_timeout.map(Into::into),
        boot_timeout: args.boot_timeout.map(Into::into),
        shutdown_timeout: args.shutdown_timeout.map(Into::into),
        public_url: args.public_url.clone(),
        cors_origins: (!args.cors_origins.is_empty()).then_some(args.cors_origins),
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout.map(Into::into),
        keep_alive_timeout: args.keep_alive_timeout.map(Into::into),
        ..Default::default()
    });
    let config = Config::resolve(&[
        (&config_file.display().to_string(), ConfigLayer::from_file(&config_file, args.config.is_some())?),
        ("environment", ConfigLayer::from_env(std::env::vars())?),
        ("flags", flags),
    ])?;

    let json = global.json;
    let terminal = Arc::new(TerminalLogs::new(json));
    let dev = DevConfig {
        port_fallback: args.port.is_none(),
        data: if args.in_memory { DevData::InMemory } else { DevData::Project },
        log_sinks: vec![terminal.clone() as Arc<dyn Sink>],
        on_event: Arc::new(move |event: &DevEvent| output::dev_event(json, event)),
        ..DevConfig::new(config, project)
    };
    let shutdown = CancellationToken::new();
    let running = homebase_server::dev::start(dev, shutdown.clone()).await?;
    output::listening(json, &running.url, running.wanted, running.addr, running.app.app_id(), &running.functions());
    output::wait_for_signal().await;
    output::note(json, "shutting_down", "Shutting down: finishing in-flight requests… (again to stop now)");
    shutdown.cancel();
    tokio::select! {
        () = running.drain() => {}
        () = output::wait_for_signal() => std::process::exit(130),
    }
    output::note(json, "stopped", "Stopped.");
    Ok(())
}

/// The `dev.json` of the running `homebase dev` of `project`, if there is one.
pub fn read_dev_file(project: &Project) -> anyhow::Result<DevFile> {
    let path = DevFile::path(project);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "No `homebase dev` is running for {} ({} is missing); start one first",
            project.root.display(),
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid; restart `homebase dev`", path.display()))
}

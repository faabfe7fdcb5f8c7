//! `homebase dev [PROJECT]`: serve a project's functions on 127.0.0.1:4400 (or the next free
//! port), reload on change, print function logs, stop cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use homebase_project::Project;
use homebase_runtime::{LogSink, Runtime};
use homebase_server::config::{Config, ConfigLayer, Host};
use homebase_server::cors::CorsPolicy;
use homebase_server::dev::{DevApp, DevEvent};
use homebase_server::logs::LogHub;
use homebase_server::{AppState, TokenMinter};
use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::output::{self, TerminalLogs};
use crate::serving;

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
}

pub async fn run(args: DevArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = Project::find(&args.project).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config_file = args.config.clone().unwrap_or_else(|| project.root.join("homebase.toml"));
    let flags = ConfigLayer {
        host: args.host.map(Host),
        port: args.port,
        function_timeout: args.function_timeout.map(Into::into),
        idle_timeout: args.idle_timeout.map(Into::into),
        boot_timeout: args.boot_timeout.map(Into::into),
        shutdown_timeout: args.shutdown_timeout.map(Into::into),
        public_url: args.public_url.clone(),
        cors_origins: (!args.cors_origins.is_empty()).then_some(args.cors_origins),
        ..Default::default()
    };
    let config = Config::resolve(&[
        (&config_file.display().to_string(), ConfigLayer::from_file(&config_file, args.config.is_some())?),
        ("environment", ConfigLayer::from_env(std::env::vars())?),
        ("flags", flags),
    ])?;

    let terminal: Arc<dyn LogSink> = Arc::new(TerminalLogs::new(global.json));
    let hub = LogHub::new(10_000, vec![terminal]);
    let runtime = Runtime::new(serving::runtime_config(&config, true), hub.clone())?;
    let json = global.json;
    let app =
        DevApp::load(&project.root, runtime.clone(), Arc::new(move |event: &DevEvent| output::dev_event(json, event)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;

    let wanted = SocketAddr::new(config.host, config.port);
    let (listener, addr) = homebase_server::bind(wanted, args.port.is_none())
        .await
        .with_context(|| format!("could not listen on {wanted}"))?;
    let url = format!("http://{addr}");
    output::listening(
        json,
        &url,
        wanted,
        addr,
        app.app_id(),
        &app.snapshot().functions.keys().cloned().collect::<Vec<_>>(),
    );

    let shutdown = CancellationToken::new();
    app.watch(shutdown.clone()).context("could not watch the project for changes")?;
    serving::find_deno_early(&runtime);

    tracing::debug!(?config, "configuration");
    let cors = CorsPolicy { origins: config.cors_origins.clone(), loopback: true };
    let tokens = TokenMinter::random(std::time::Duration::from_secs(3600));
    let state = AppState::new(app, runtime.clone(), tokens, config.public_url.clone()).with_cors(cors);
    let router = homebase_server::router(state);
    serving::serve_until_signal(json, listener, router, runtime, shutdown, config.shutdown_timeout).await;
    Ok(())
}

//! `homebase serve`: the production server. Many apps, deployments in a durable store (SQLite in
//! the data folder, or PostgreSQL with `--database-url`, which several nodes may share), the
//! management API for deploys, graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use homebase_logs::Sink;
use homebase_runtime::Runtime;
use homebase_server::config::{Config, ConfigLayer, Host};
use homebase_server::serve::ServeConfig;
use homebase_store::MasterKey;
use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::output::{self, TerminalLogs};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where the database, keys and deployments live (default: homebase in the user's data folder).
    #[arg(long, value_name = "DIR", env = "HOMEBASE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// How long one function request may run, e.g. 30s or 5m (default 5m).
    #[arg(long, value_name = "DURATION")]
    function_timeout: Option<String>,
    /// Configuration file (default: homebase.toml in the data folder, if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The URL functions call back (Base44-Api-Url); default: the URL the caller used.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Delete stored log lines older than this, e.g. 7d or 12h (default 7d).
    #[arg(long, value_name = "DURATION")]
    log_retention: Option<String>,
    /// Delete the oldest log lines when they take more than this, e.g. 512MB or 2GB (default 1GB).
    #[arg(long, value_name = "SIZE")]
    log_max_size: Option<String>,
    /// Without Landlock: refuse to start (required, the default) or run functions unconfined
    /// (best-effort).
    #[arg(long, value_name = "MODE")]
    sandbox: Option<String>,
    /// How long Deno may take to check a deploy, e.g. 60s (default 60s).
    #[arg(long, value_name = "DURATION")]
    deploy_check_timeout: Option<String>,
    /// How many deploys may be checked at once (default: twice the CPUs); more are answered 429.
    #[arg(long, value_name = "N")]
    max_deploy_checks: Option<usize>,
    /// Client connections served at once; more are answered 503 (default 10000).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// How long a client may take to send a request head, e.g. 10s (default 10s).
    #[arg(long, value_name = "DURATION")]
    header_read_timeout: Option<String>,
    /// Close a client connection after this long without a request, e.g. 75s (default 75s).
    #[arg(long, value_name = "DURATION")]
    keep_alive_timeout: Option<String>,
    /// An address or CIDR block functions may reach besides the public internet, e.g. 10.0.0.5 or
    /// 10.1.0.0/16; * for everything (repeatable or comma-separated; default: none).
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    function_net_allow: Option<Vec<String>>,
    /// The address or CIDR block of a reverse proxy in front of this server, whose
    /// X-Forwarded-For names the client the login limits count, e.g. 127.0.0.1 or 10.0.0.0/8
    /// (repeatable or comma-separated; default: none).
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    trusted_proxies: Option<Vec<String>>,
    #[command(flatten)]
    limits: crate::cli::WorkerLimitArgs,
    /// Keep everything in this PostgreSQL database (postgres://user:password@host:5432/db), which
    /// several nodes may share; default: SQLite in the data folder. Also HOMEBASE_DATABASE_URL.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

pub async fn run(args: ServeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    let config_file = args.config.clone().unwrap_or_else(|| data_dir.join("homebase.toml"));
    // Functions reach the public internet only, unless function-net-allow opens more.
    let defaults = ConfigLayer { port: Some(8080), function_net_allow: Some(Vec::new()), ..Default::default() };
    let flags = args.limits.apply(ConfigLayer {
        host: args.listen.map(|a| Host(a.ip())),
        port: args.listen.map(|a| a.port()),
        function_timeout: args.function_timeout.map(Into::into),
        public_url: args.public_url,
        log_retention: args.log_retention.map(Into::into),
        log_max_size: args.log_max_size.map(Into::into),
        sandbox: args.sandbox,
        deploy_check_timeout: args.deploy_check_timeout.map(Into::into),
        max_deploy_checks: args.max_deploy_checks,
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout.map(Into::into),
        keep_alive_timeout: args.keep_alive_timeout.map(Into::into),
        function_net_allow: args.function_net_allow,
        trusted_proxies: args.trusted_proxies,
        database_url: args.database_url,
        ..Default::default()
    });
    let config = Config::resolve(&[
        ("serve defaults", defaults),
        (&config_file.display().to_string(), ConfigLayer::from_file(&config_file, args.config.is_some())?),
        ("environment", ConfigLayer::from_env(std::env::vars())?),
        ("flags", flags),
    ])?;

    let terminal = Arc::new(TerminalLogs::new(global.json));
    let serve = ServeConfig {
        master_key: master_key_from_env()?,
        admin_key: std::env::var("HOMEBASE_ADMIN_KEY").ok().filter(|k| !k.is_empty()),
        log_sinks: vec![terminal.clone() as Arc<dyn Sink>],
        ..ServeConfig::new(config, data_dir)
    };
    let shutdown = CancellationToken::new();
    let running = homebase_server::serve::start(serve, shutdown.clone()).await?;
    if global.json {
        let line = serde_json::json!({
            "event": "listening",
            "url": running.url,
            "data_dir": running.data_dir,
            "database": running.database,
        });
        println!("{line}");
    } else if running.store.backend_name() == "postgres" {
        let (url, data) = (&running.url, running.data_dir.display());
        println!("Homebase serving on {url} (database {}; caches and keys in {data})", running.database);
    } else {
        println!("Homebase serving on {} (data in {})", running.url, running.data_dir.display());
    }
    if let Some(created) = &running.created_admin_key {
        output::note(
            global.json,
            "admin_key",
            &format!("Created an admin API key (shown once; also in {}): {}", created.file.display(), created.secret),
        );
    }
    if !running.tightened_data_dir.is_empty() {
        let text = format!(
            "The data folder was readable by other users; tightened: {}.",
            running.tightened_data_dir.join("; ")
        );
        output::note(global.json, "data_dir_tightened", &text);
    }
    announce_sandbox(global.json, &running.runtime);
    output::wait_for_signal().await;
    output::note(global.json, "shutting_down", "Shutting down: finishing in-flight requests… (again to stop now)");
    shutdown.cancel();
    tokio::select! {
        () = running.drain() => {}
        () = output::wait_for_signal() => std::process::exit(130),
    }
    output::note(global.json, "stopped", "Stopped.");
    Ok(())
}

/// Says how functions are confined; loudly when they are not (`sandbox = "best-effort"` on a
/// kernel without Landlock).
fn announce_sandbox(json: bool, runtime: &Runtime) {
    let Some(support) = runtime.sandbox() else { return };
    if support.available() {
        output::note(json, "sandbox", &format!("Sandbox: {}.", support.describe()));
    } else {
        let text = format!(
            "WARNING: functions are NOT sandboxed. {}. Functions can read every file this server's user can \
             (its keys and database included) through imports; run only code you trust, or run on a kernel with \
             Landlock and remove sandbox = \"best-effort\".",
            support.describe()
        );
        tracing::error!("{text}");
        output::note(json, "sandbox_unavailable", &text);
    }
}

pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = dirs::data_dir().context("no data folder is known for this user; pass --data-dir")?;
    Ok(base.join("homebase"))
}

/// The key secrets are encrypted under, when `HOMEBASE_MASTER_KEY` gives it (64 hex digits or
/// base64 of 32 bytes); otherwise the server uses `master.key` in the data folder. The error
/// never shows the key.
fn master_key_from_env() -> anyhow::Result<Option<MasterKey>> {
    match std::env::var("HOMEBASE_MASTER_KEY").ok().filter(|k| !k.trim().is_empty()) {
        Some(text) => {
            MasterKey::parse(&text).map(Some).map_err(|e| anyhow::anyhow!("HOMEBASE_MASTER_KEY is not usable: {e}"))
        }
        None => Ok(None),
    }
}

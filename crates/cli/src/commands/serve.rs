//! `homebase serve`: the production server. Many apps, deployments in a durable store (SQLite in
//! the data folder), the management API for deploys, graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use homebase_runtime::{Isolation, LogSink, Runtime, RuntimeConfig};
use homebase_server::auth_manage::{self, AuthManage};
use homebase_server::config::{Config, ConfigLayer, Host};
use homebase_server::cors::CorsPolicy;
use homebase_server::logs::{LogHub, LogWriter};
use homebase_server::logs_api::LogService;
use homebase_server::platform::{self, Platform};
use homebase_server::users_api::Auth;
use homebase_server::{AppState, TokenMinter, token};
use homebase_store::{KeyScope, LogStore, MasterKey, Retention, Store};
use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::output::{self, TerminalLogs};
use crate::serving;
use crate::target;

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
}

pub async fn run(args: ServeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    // Private to this user: keys, databases, every app's code (see data_dir).
    let tightened = crate::data_dir::make_private(&data_dir)
        .with_context(|| format!("could not create or secure {}", data_dir.display()))?;
    if !tightened.is_empty() {
        let text = format!("The data folder was readable by other users; tightened: {}.", tightened.join("; "));
        tracing::warn!("{text}");
        output::note(global.json, "data_dir_tightened", &text);
    }
    let config_file = args.config.clone().unwrap_or_else(|| data_dir.join("homebase.toml"));
    // Functions reach the public internet only, unless function-net-allow opens more.
    let defaults = ConfigLayer { port: Some(8080), function_net_allow: Some(Vec::new()), ..Default::default() };
    let flags = ConfigLayer {
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
        ..Default::default()
    };
    let config = Config::resolve(&[
        ("serve defaults", defaults),
        (&config_file.display().to_string(), ConfigLayer::from_file(&config_file, args.config.is_some())?),
        ("environment", ConfigLayer::from_env(std::env::vars())?),
        ("flags", flags),
    ])?;

    let store = Store::open_sqlite_with_key(data_dir.join("homebase.db"), master_key(&data_dir)?).await?;
    let admin_key = admin_key(&store, &data_dir).await?;

    // Logs have a database file of their own (see homebase_store::logs).
    let log_store = LogStore::open(data_dir.join("logs.db")).await?;
    let retention = Retention { max_age: config.log_retention, max_bytes: config.log_max_size };
    let (writer, _) = LogWriter::spawn(log_store.clone(), retention);
    let terminal = Arc::new(TerminalLogs::new(global.json));
    let hub =
        LogHub::with_store(0, vec![terminal.clone() as Arc<dyn LogSink>], writer.clone(), log_store.next_id().await?);
    // Functions get their secrets, not the server's environment, and run sandboxed, with Deno
    // caches of their app's own in the data folder (see homebase_runtime::sandbox).
    // Callers see short reasons; stacks, paths and worker output go to the log.
    let runtime_config = RuntimeConfig {
        error_details: false,
        isolation: Some(Isolation { cache_dir: data_dir.join("deno"), mode: config.sandbox }),
        private_dirs: vec![data_dir.clone()],
        ..serving::runtime_config(&config, false)
    };
    let runtime = Runtime::new(runtime_config, hub.clone())?;
    let shutdown = CancellationToken::new();
    let logs = LogService { store: log_store, hub, shutdown: shutdown.clone(), keepalive: LOG_KEEPALIVE };
    let platform = Platform::open_with_logs(store.clone(), runtime.clone(), &data_dir, Some(logs)).await?;

    let (listener, addr) = homebase_server::bind(SocketAddr::new(config.host, config.port), false)
        .await
        .with_context(|| format!("could not listen on {}:{}", config.host, config.port))?;
    let url = format!("http://{addr}");
    if global.json {
        println!("{}", serde_json::json!({ "event": "listening", "url": url, "data_dir": data_dir }));
    } else {
        println!("Homebase serving on {url} (data in {})", data_dir.display());
    }
    if let Some(secret) = admin_key {
        output::note(
            global.json,
            "admin_key",
            &format!(
                "Created an admin API key (shown once; also in {}): {secret}",
                data_dir.join("admin.key").display()
            ),
        );
    }
    announce_sandbox(global.json, &runtime);
    serving::find_deno_early(&runtime);

    // User and service tokens are signed with a key kept in the data folder, so signed-in users
    // stay signed in across restarts.
    let key_file = data_dir.join("auth.key");
    let tokens = TokenMinter::from_key_file(&key_file, token::service_ttl(config.function_timeout))
        .with_context(|| format!("the token signing key {}", key_file.display()))?;
    // The configured origins only: see docs/configuration.md#cors-browser-apps.
    let cors = CorsPolicy::serve(config.cors_origins.clone());
    let state = AppState::new(platform.clone(), runtime.clone(), tokens, config.public_url.clone()).with_cors(cors);
    let mailer = config.mailer().map_err(|e| anyhow::anyhow!("smtp-url: {e}"))?;
    let auth = Arc::new(Auth::new(store.clone(), state.tokens.clone(), platform.clone(), mailer, true));
    let router = platform::router(platform.clone(), state.clone(), auth.clone())
        .merge(auth_manage::router(AuthManage { keys: auth_manage::Keys::Stored(platform), auth, state }));
    serving::serve_until_signal(global.json, listener, router, &config, runtime, terminal, shutdown).await;
    // Every line the workers printed before they stopped is stored before the process ends;
    // a disk that keeps failing must not hold the exit forever.
    if tokio::time::timeout(LOG_FLUSH_LIMIT, writer.flush()).await.is_err() {
        tracing::error!(
            "{} log lines could not be stored within {}s of stopping; they are lost",
            writer.queued(),
            LOG_FLUSH_LIMIT.as_secs()
        );
    }
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

/// How long stopping waits for the last log lines to be stored.
const LOG_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a quiet log stream sends a keep-alive comment (the official CLI gives up after
/// 60 s of silence).
const LOG_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = dirs::data_dir().context("no data folder is known for this user; pass --data-dir")?;
    Ok(base.join("homebase"))
}

/// The key secrets are encrypted under: `HOMEBASE_MASTER_KEY` (64 hex digits or base64 of 32
/// bytes) when set, else `master.key` in the data folder, created 0600 on the first start.
/// Losing it makes the stored secrets unreadable; the error never shows the key.
fn master_key(data_dir: &Path) -> anyhow::Result<MasterKey> {
    if let Some(text) = std::env::var("HOMEBASE_MASTER_KEY").ok().filter(|k| !k.trim().is_empty()) {
        return MasterKey::parse(&text).map_err(|e| anyhow::anyhow!("HOMEBASE_MASTER_KEY is not usable: {e}"));
    }
    let file = data_dir.join("master.key");
    match std::fs::read_to_string(&file) {
        Ok(text) => MasterKey::parse(&text).with_context(|| format!("the master key in {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            target::write_private(&file, &format!("{}\n", key.to_hex()))
                .with_context(|| format!("could not write {}", file.display()))?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("could not read the master key {}: {e}", file.display())),
    }
}

/// The admin key. `HOMEBASE_ADMIN_KEY` when set (for scripts and tests): it replaces the key an
/// earlier `HOMEBASE_ADMIN_KEY` set, so changing the variable rotates it. Otherwise `admin.key` in
/// the data folder: created 0600 on the first start and returned to be printed once, and on later
/// starts imported again (a no-op unless the database was replaced). Keys are stored hashed.
async fn admin_key(store: &Store, data_dir: &Path) -> anyhow::Result<Option<String>> {
    const FROM_ENV: &str = "admin (HOMEBASE_ADMIN_KEY)";
    if let Some(secret) = std::env::var("HOMEBASE_ADMIN_KEY").ok().filter(|k| !k.is_empty()) {
        let key = store.import_key(&secret, KeyScope::Admin, FROM_ENV).await?;
        for old in store.list_keys(None).await? {
            if old.name == FROM_ENV && old.id != key.id {
                store.revoke_key(&old.id).await?;
            }
        }
        return Ok(None);
    }
    let file = data_dir.join("admin.key");
    if let Ok(text) = std::fs::read_to_string(&file) {
        store
            .import_key(text.trim(), KeyScope::Admin, "admin")
            .await
            .with_context(|| format!("the key in {}", file.display()))?;
        return Ok(None);
    }
    let (_, secret) = store.create_key(KeyScope::Admin, "admin").await?;
    target::write_private(&file, &format!("{secret}\n"))
        .with_context(|| format!("could not write {}", file.display()))?;
    Ok(Some(secret))
}

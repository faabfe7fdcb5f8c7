//! `homebase dev [PROJECT]`: serve a project's functions on 127.0.0.1:4400 (or the next free
//! port), reload on change, print function logs, stop cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use homebase_project::Project;
use homebase_runtime::{LogSink, Runtime};
use homebase_server::auth_manage::{self, AuthManage, Keys};
use homebase_server::config::{Config, ConfigLayer, Host};
use homebase_server::cors::CorsPolicy;
use homebase_server::dev::{DevApp, DevEvent};
use homebase_server::logs::LogHub;
use homebase_server::users_api::Auth;
use homebase_server::{AppState, TokenMinter, token};
use homebase_store::Store;
use serde::{Deserialize, Serialize};
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
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout.map(Into::into),
        keep_alive_timeout: args.keep_alive_timeout.map(Into::into),
        ..Default::default()
    };
    let config = Config::resolve(&[
        (&config_file.display().to_string(), ConfigLayer::from_file(&config_file, args.config.is_some())?),
        ("environment", ConfigLayer::from_env(std::env::vars())?),
        ("flags", flags),
    ])?;

    let terminal = Arc::new(TerminalLogs::new(global.json));
    let hub = LogHub::new(0, vec![terminal.clone() as Arc<dyn LogSink>]);
    let runtime = Runtime::new(serving::runtime_config(&config, true), hub.clone())?;
    let json = global.json;
    let app = DevApp::load(
        &project.root,
        runtime.clone(),
        hub.clone(),
        Arc::new(move |event: &DevEvent| output::dev_event(json, event)),
    )
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
    // Loopback origins (a front end's dev server on another port) and the configured ones.
    let cors = CorsPolicy::dev(config.cors_origins.clone());
    let service_ttl = token::service_ttl(config.function_timeout);
    let (store, tokens) = if args.in_memory {
        (Store::open_sqlite_in_memory().await?, TokenMinter::random(service_ttl))
    } else {
        // App users and the signing key live with the project, in a git-ignored folder.
        let dir = project.base_dir.join(".homebase");
        std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, "# Homebase dev data: app users, the token key. Not for git.\n*\n")
                .with_context(|| format!("could not write {}", ignore.display()))?;
        }
        let store = Store::open_sqlite(dir.join("homebase.db")).await?;
        let tokens = TokenMinter::from_key_file(&dir.join("auth.key"), service_ttl)
            .with_context(|| format!("the token signing key in {}", dir.display()))?;
        (store, tokens)
    };
    let name = Some(project.config.name.trim()).filter(|n| !n.is_empty()).unwrap_or("dev");
    store.ensure_app(app.app_id(), name).await?;
    let state = AppState::new(app.clone(), runtime.clone(), tokens, config.public_url.clone()).with_cors(cors);
    let mailer = config.mailer().map_err(|e| anyhow::anyhow!("smtp-url: {e}"))?;
    // Verification is off in dev unless switched on for the app.
    let app_id = app.app_id().to_string();
    let auth = Arc::new(Auth::new(store, state.tokens.clone(), app, mailer, false));
    // Local tools (`homebase exec --local`) find this run's URL and key in the project.
    let key: String = rand::random::<[u8; 24]>().iter().fold(String::from("hbdev_"), |mut key, byte| {
        key.push_str(&format!("{byte:02x}"));
        key
    });
    let dev_file = DevFile { url: url.clone(), app_id, key: key.clone() };
    let dev_file_path = dev_file.write(&project)?;
    let manage = AuthManage { keys: Keys::Dev(key.as_str().into()), auth: auth.clone(), state: state.clone() };
    let router = homebase_server::router(state, auth).merge(auth_manage::router(manage));
    serving::serve_until_signal(json, listener, router, &config, runtime, terminal, shutdown).await;
    DevFile::remove_if_ours(&dev_file_path, &key);
    Ok(())
}

/// `base44/.homebase/dev.json`: how local tools reach the running `homebase dev` of a project
/// (mode 0600; removed when the run ends).
#[derive(Debug, Serialize, Deserialize)]
pub struct DevFile {
    pub url: String,
    pub app_id: String,
    pub key: String,
}

impl DevFile {
    pub fn path(project: &Project) -> PathBuf {
        project.base_dir.join(".homebase").join("dev.json")
    }

    fn write(&self, project: &Project) -> anyhow::Result<PathBuf> {
        let path = DevFile::path(project);
        let text = serde_json::to_string_pretty(self)?;
        crate::target::write_private(&path, &text).with_context(|| format!("could not write {}", path.display()))?;
        Ok(path)
    }

    /// The running dev server of `project`, if there is one.
    pub fn read(project: &Project) -> anyhow::Result<DevFile> {
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

    /// Removes the file unless a later run of `homebase dev` has replaced it.
    fn remove_if_ours(path: &Path, key: &str) {
        let ours = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<DevFile>(&text).ok())
            .is_some_and(|file| file.key == key);
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

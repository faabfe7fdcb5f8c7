//! `homebase dev`, assembled: the composition root of the development server.
//!
//! [`start`] takes a [`DevConfig`] (the resolved settings, the project, where app users live,
//! and what tests vary: log sinks, a fixed Deno, mail) and a shutdown token, loads the project
//! into a [`DevApp`] with its own runtime, binds (the next free port when the wanted one is
//! taken, if allowed), watches the project, opens the users' store and the token key, writes
//! `dev.json` for local tools, and serves the router on the port and on the functions' API
//! socket. It returns a [`Running`] server; [`Running::drain`] stops it and finishes every task
//! it started. The `homebase dev` command and the testkit's `TestServer` both start it here.
//! Signals and printing are the caller's (the project's events reach it through
//! [`DevConfig::on_event`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use homebase_catalog::dev::{DevApp, DevEvent, DevListener, LOCAL_APP_ID};
use homebase_identity::mail::Mailer;
use homebase_identity::{TokenMinter, token};
use homebase_logs::{LogHub, Sink};
use homebase_project::Project;
use homebase_runtime::{Runtime, RuntimeConfig};
use homebase_store::Store;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::auth_manage::{self, AuthManage, Keys};
use crate::config::Config;
use crate::cors::CorsPolicy;
use crate::lifecycle::{Lifecycle, runtime_config};
use crate::serve::StartError;
use crate::users_api::Auth;
use crate::{AppState, FunctionListing};

/// Where `dev` keeps app users and the token signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevData {
    /// In the project, under `base44/.homebase/` (git-ignored): they outlive the run.
    Project,
    /// In memory: gone when the run ends (`--in-memory`).
    InMemory,
}

/// Everything [`start`] needs.
pub struct DevConfig {
    /// The resolved settings: address, timeouts, limits, CORS, mail.
    pub config: Config,
    /// The project to serve.
    pub project: Project,
    /// When the configured port is taken, try the next ones (`homebase dev` without `--port`).
    pub port_fallback: bool,
    pub data: DevData,
    /// Where function log lines go (the terminal; a test's capture).
    pub log_sinks: Vec<Arc<dyn Sink>>,
    /// Told what happens to the project: loaded at start, reloaded, unreadable.
    pub on_event: DevListener,
    /// A fixed Deno executable; `None` finds or installs one.
    pub deno: Option<PathBuf>,
    /// App-user mail; `None`: what `config.smtp_url` names.
    pub mailer: Option<Mailer>,
}

impl DevConfig {
    /// `config` over `project`, data in the project, port fallback on, events ignored.
    pub fn new(config: Config, project: Project) -> DevConfig {
        DevConfig {
            config,
            project,
            port_fallback: true,
            data: DevData::Project,
            log_sinks: Vec::new(),
            on_event: Arc::new(|_: &DevEvent| {}),
            deno: None,
            mailer: None,
        }
    }
}

/// A started `homebase dev`.
pub struct Running {
    /// `http://<address>`.
    pub url: String,
    pub addr: SocketAddr,
    /// The address the configuration asked for (another port when it was taken).
    pub wanted: SocketAddr,
    pub app: Arc<DevApp>,
    /// App users (verification off by default, as in `dev`).
    pub auth: Arc<Auth>,
    pub store: Store,
    pub runtime: Runtime,
    pub hub: Arc<LogHub>,
    /// This run's key for its management routes (`exec --local`), also in `dev.json`.
    pub key: String,
    dev_file: PathBuf,
    lifecycle: Lifecycle,
}

impl Running {
    /// The names of the project's healthy functions, for the banner.
    pub fn functions(&self) -> Vec<String> {
        self.app.snapshot().functions.keys().cloned().collect()
    }

    /// Stops the server and finishes every task it started (see `Lifecycle::drain`), then
    /// removes `dev.json` unless a later run replaced it.
    pub async fn drain(self) {
        self.lifecycle.drain().await;
        DevFile::remove_if_ours(&self.dev_file, &self.key);
    }
}

/// Starts `homebase dev` as `config` says. Cancelling `shutdown` stops accepting connections
/// and watching; [`Running::drain`] finishes the rest. A start that fails stops what it had
/// started.
pub async fn start(config: DevConfig, shutdown: CancellationToken) -> Result<Running, StartError> {
    let timeout = config.config.shutdown_timeout;
    let (parts, lifecycle) =
        Lifecycle::start(&shutdown, timeout, async |lifecycle| assemble(config, lifecycle).await).await?;
    Ok(parts.running(lifecycle))
}

/// A [`Running`] but its lifecycle.
struct Parts {
    url: String,
    addr: SocketAddr,
    wanted: SocketAddr,
    app: Arc<DevApp>,
    auth: Arc<Auth>,
    store: Store,
    runtime: Runtime,
    hub: Arc<LogHub>,
    key: String,
    dev_file: PathBuf,
}

impl Parts {
    fn running(self, lifecycle: Lifecycle) -> Running {
        Running {
            url: self.url,
            addr: self.addr,
            wanted: self.wanted,
            app: self.app,
            auth: self.auth,
            store: self.store,
            runtime: self.runtime,
            hub: self.hub,
            key: self.key,
            dev_file: self.dev_file,
            lifecycle,
        }
    }
}

async fn assemble(dev: DevConfig, lifecycle: &mut Lifecycle) -> Result<Parts, StartError> {
    let DevConfig { config, project, port_fallback, data, log_sinks, on_event, deno, mailer } = dev;
    let hub = LogHub::new(0, log_sinks);
    lifecycle.set_hub(hub.clone());
    let runtime = Runtime::new(RuntimeConfig { deno, ..runtime_config(&config, true) }, hub.clone())?;
    lifecycle.set_runtime(runtime.clone());
    // Entity schemas are loaded into the store again after every change of the project (the
    // store is opened below; reloads before that have nothing to update).
    let entity_store: Arc<OnceLock<Store>> = Arc::new(OnceLock::new());
    let on_event: DevListener = {
        let (store, root, tasks) = (entity_store.clone(), project.root.clone(), lifecycle.tasks.clone());
        let handle = tokio::runtime::Handle::current();
        Arc::new(move |event: &DevEvent| {
            if let DevEvent::Loaded { reload: true, app_id, .. } = event
                && let Some(store) = store.get()
            {
                let (store, root, app_id) = (store.clone(), root.clone(), app_id.clone());
                tasks.spawn_on(
                    async move { crate::entities_api::load_project_schemas(&store, &root, &app_id).await },
                    &handle,
                );
            }
            on_event(event)
        })
    };
    let app = DevApp::load(&project.root, runtime.clone(), hub.clone(), on_event)
        .map_err(|e| StartError::Project(e.to_string()))?;

    let wanted = SocketAddr::new(config.host, config.port);
    let (listener, addr) = crate::bind(wanted, port_fallback)
        .await
        .map_err(|source| StartError::Listen { address: wanted.to_string(), source })?;
    let url = format!("http://{addr}");
    app.watch(&lifecycle.tasks, lifecycle.shutdown.clone()).map_err(StartError::Watch)?;
    lifecycle.find_deno_early(&runtime);

    // Serialised, not `Debug`: the serialised form never shows the database URL's password.
    tracing::debug!(config = %serde_json::to_string(&config).unwrap_or_default(), "configuration");
    // Loopback origins (a front end's dev server on another port) and the configured ones.
    let cors = CorsPolicy::dev(config.cors_origins.clone());
    let service_ttl = token::service_ttl(config.function_timeout);
    let (store, tokens) = match data {
        DevData::InMemory => (Store::open_sqlite_in_memory().await?, TokenMinter::random(service_ttl)),
        DevData::Project => {
            // App users and the signing key live with the project, in a git-ignored folder.
            let dir = project.base_dir.join(".homebase");
            std::fs::create_dir_all(&dir).map_err(StartError::io(format!("could not create {}", dir.display())))?;
            let ignore = dir.join(".gitignore");
            if !ignore.exists() {
                std::fs::write(&ignore, "# Homebase dev data: app users, the token key. Not for git.\n*\n")
                    .map_err(StartError::io(format!("could not write {}", ignore.display())))?;
            }
            let store = Store::open_sqlite(dir.join("homebase.db")).await?;
            let tokens = TokenMinter::from_key_file(&dir.join("auth.key"), service_ttl)
                .map_err(StartError::io(format!("the token signing key in {}", dir.display())))?;
            (store, tokens)
        }
    };
    let name = Some(project.config.name.trim()).filter(|n| !n.is_empty()).unwrap_or("dev");
    store.ensure_app(app.app_id(), name).await?;
    crate::entities_api::load_project_schemas(&store, &project.root, app.app_id()).await;
    let _ = entity_store.set(store.clone());
    // It is the developer's own machine: a 404 lists the project's functions to anyone.
    let state = AppState::new(app.clone(), runtime.clone(), tokens, config.public_url.clone(), FunctionListing::Anyone)
        .with_cors(cors)
        .with_entity_page_cap(config.entity_page_cap);
    let mailer = match mailer {
        Some(mailer) => mailer,
        None => config.mailer().map_err(StartError::Mail)?,
    };
    // Verification is off in dev unless switched on for the app.
    let auth =
        Arc::new(Auth::new(store.clone(), state.tokens.clone(), app.clone(), mailer, false, lifecycle.tasks.clone()));
    // Local tools (`homebase exec --local`) find this run's URL and key in the project.
    let key: String = rand::random::<[u8; 24]>().iter().fold(String::from("hbdev_"), |mut key, byte| {
        key.push_str(&format!("{byte:02x}"));
        key
    });
    let dev_file = DevFile { url: url.clone(), app_id: app.app_id().to_string(), key: key.clone() }.write(&project)?;
    let manage = AuthManage { keys: Keys::Dev(key.as_str().into()), auth: auth.clone(), state: state.clone() };
    let router = router(state, auth.clone()).merge(auth_manage::router(manage));
    lifecycle.serve(listener, addr, router, &config);
    Ok(Parts { url, addr, wanted, app, auth, store, runtime, hub, key, dev_file })
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

    fn write(&self, project: &Project) -> Result<PathBuf, StartError> {
        let path = DevFile::path(project);
        let text = serde_json::to_string_pretty(self)?;
        crate::files::write_private(&path, &text)
            .map_err(StartError::io(format!("could not write {}", path.display())))?;
        Ok(path)
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

/// The router of `dev`: the SDK surface ([`crate::sdk::router`]), `/healthz` and the JSON 404.
fn router(state: AppState, auth: Arc<Auth>) -> axum::Router {
    crate::sdk::router(state, auth)
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(crate::unknown_route)
}

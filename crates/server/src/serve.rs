//! `homebase serve`, assembled: the composition root of the production server.
//!
//! [`start`] takes a [`ServeConfig`] (the resolved settings, the data folder, the database, and
//! what tests vary: log sinks, a fixed Deno, mail, login limits) and a shutdown token, opens the
//! store, the log store and the runtime, loads every app, binds, and serves the router on the
//! port and on the functions' API socket. It returns a [`Running`] server; [`Running::drain`]
//! stops it and finishes every task it started. The `homebase serve` command and the testkit's
//! `TestPlatform` both start it here, so tests run what users run. Signals and printing are the
//! caller's.
//!
//! **The database.** [`Database::Sqlite`] keeps everything in files of the data folder (one
//! node). [`Database::Postgres`] keeps everything in PostgreSQL, which several nodes may share:
//! apps, keys, deployments and their files, secrets (sealed under the master key, which every
//! node must have: checked at start), users, the token signing key (a server secret made by
//! the first node), the login and mail limits' counters, and the log lines (a table of their
//! own, the same retention). Each node's data folder then holds only caches: materialised
//! deployments, Deno's caches, its master key and admin key files. The platform follows the
//! changes other nodes make ([`Platform::follow_changes`], a tracked task). While the database
//! is unreachable, routes that need it answer `503 database_unavailable` and the function
//! routes keep serving what was loaded; the pool reconnects by itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use homebase_catalog::Platform;
use homebase_catalog::platform::RECHECK_EVERY;
use homebase_identity::mail::Mailer;
use homebase_identity::{LoginLimits, TokenMinter, token};
use homebase_logs::{LogHub, LogWriter, Sink};
use homebase_runtime::{Isolation, Runtime, RuntimeConfig, RuntimeError};
use homebase_store::{KeyScope, LogStore, MasterKey, Retention, Store, StoreError};
use http::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::auth_manage::{self, AuthManage};
use crate::config::Config;
use crate::cors::CorsPolicy;
use crate::lifecycle::{Lifecycle, runtime_config};
use crate::logs_api::LogService;
use crate::users_api::Auth;
use crate::{AppState, FunctionListing};

/// The server secret (PostgreSQL) user and service tokens are signed with.
pub const TOKEN_KEY: &str = "token-signing-key";

/// How often a quiet log stream sends a keep-alive comment (the official CLI gives up after
/// 60 s of silence).
pub const LOG_KEEPALIVE: Duration = Duration::from_secs(15);

/// Where apps, keys, deployments, secrets, users and logs are stored.
#[derive(Clone)]
pub enum Database {
    /// A SQLite file (`<data dir>/homebase.db` by default), secrets encrypted under the master
    /// key; the logs in `logs.db` beside it.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://user:password@host:port/database`), which several
    /// nodes may share: everything, the logs included.
    Postgres(String),
}

impl std::fmt::Debug for Database {
    /// Never shows a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => {
                f.debug_tuple("Postgres").field(&homebase_store::display_database_url(url)).finish()
            }
        }
    }
}

/// Everything [`start`] needs. [`ServeConfig::new`] gives what `homebase serve` uses; the
/// command fills in the rest from its flags and environment.
pub struct ServeConfig {
    /// The resolved settings: address, timeouts, limits, CORS, mail, logs, sandbox.
    pub config: Config,
    /// Where the keys, deployments, Deno caches and log database live; created when missing.
    pub data_dir: PathBuf,
    pub database: Database,
    /// The key secrets are encrypted under; `None`: `master.key` in the data folder, created
    /// (0600) on the first start.
    pub master_key: Option<MasterKey>,
    /// An admin key to accept (`HOMEBASE_ADMIN_KEY`): it replaces the key an earlier one set.
    /// `None`: `admin.key` in the data folder, created on the first start (and returned in
    /// [`Running::created_admin_key`] to be shown once).
    pub admin_key: Option<String>,
    /// Where function log lines go besides the log store and live followers (the terminal).
    pub log_sinks: Vec<Arc<dyn Sink>>,
    /// A fixed Deno executable; `None` finds or installs one.
    pub deno: Option<PathBuf>,
    /// How often a quiet log stream sends a keep-alive comment.
    pub log_keepalive: Duration,
    /// App-user mail; `None`: what `config.smtp_url` names.
    pub mailer: Option<Mailer>,
    /// The login and mail limiter's limits.
    pub login_limits: LoginLimits,
    /// How often the platform compares what it loaded with the database (a backstop for a
    /// missed change notification).
    pub recheck_every: Duration,
}

impl ServeConfig {
    /// `config` over the data folder `data_dir`, with the database `config.database_url` names,
    /// else SQLite in the data folder.
    pub fn new(config: Config, data_dir: PathBuf) -> ServeConfig {
        let database = match &config.database_url {
            Some(url) => Database::Postgres(url.clone()),
            None => Database::Sqlite(data_dir.join("homebase.db")),
        };
        ServeConfig {
            config,
            database,
            data_dir,
            master_key: None,
            admin_key: None,
            log_sinks: Vec::new(),
            deno: None,
            log_keepalive: LOG_KEEPALIVE,
            mailer: None,
            login_limits: LoginLimits::default(),
            recheck_every: RECHECK_EVERY,
        }
    }
}

/// Why the server could not start. Each says what failed; the sources say why.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or folder of Homebase's own could not be made or read.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A stored key (the master key, the admin key file) is not usable.
    #[error("{what}")]
    Key {
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("could not read the master key {}: {error}", path.display())]
    MasterKeyUnreadable { path: PathBuf, error: std::io::Error },
    #[error("could not listen on {address}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The project (dev) cannot be read.
    #[error("{0}")]
    Project(String),
    #[error("could not watch the project for changes")]
    Watch(#[source] notify::Error),
    #[error("smtp-url: {0}")]
    Mail(String),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl StartError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
        let what = what.into();
        move |source| StartError::Io { what, source }
    }
}

/// An admin key made on this start: shown once, kept in `file`.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub secret: String,
    pub file: PathBuf,
}

/// A started `homebase serve`.
pub struct Running {
    /// `http://<address>`.
    pub url: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Where everything is stored: the SQLite file, or the PostgreSQL URL without its password.
    pub database: String,
    /// The admin key this start created, to show once.
    pub created_admin_key: Option<CreatedKey>,
    /// What this start tightened in a data folder other users could read (one sentence each),
    /// to show as a warning.
    pub tightened_data_dir: Vec<String>,
    pub store: Store,
    pub platform: Arc<Platform>,
    pub auth: Arc<Auth>,
    pub runtime: Runtime,
    /// The hub function log lines go through, and the log database it feeds.
    pub hub: Arc<LogHub>,
    pub log_store: LogStore,
    lifecycle: Lifecycle,
}

impl Running {
    /// Stops the server and finishes every task it started (see `Lifecycle::drain`): requests
    /// get `shutdown-timeout`, then workers get it again; the log lines are stored; the log
    /// sinks are flushed.
    pub async fn drain(self) {
        self.lifecycle.drain().await
    }
}

/// Starts `homebase serve` as `config` says. Cancelling `shutdown` stops accepting connections;
/// [`Running::drain`] finishes the rest. A start that fails stops what it had started.
pub async fn start(config: ServeConfig, shutdown: CancellationToken) -> Result<Running, StartError> {
    let timeout = config.config.shutdown_timeout;
    let (parts, lifecycle) =
        Lifecycle::start(&shutdown, timeout, async |lifecycle| assemble(config, lifecycle).await).await?;
    Ok(parts.running(lifecycle))
}

/// A [`Running`] but its lifecycle.
struct Parts {
    url: String,
    addr: SocketAddr,
    data_dir: PathBuf,
    created_admin_key: Option<CreatedKey>,
    tightened_data_dir: Vec<String>,
    store: Store,
    platform: Arc<Platform>,
    auth: Arc<Auth>,
    runtime: Runtime,
    hub: Arc<LogHub>,
    log_store: LogStore,
}

impl Parts {
    fn running(self, lifecycle: Lifecycle) -> Running {
        Running {
            url: self.url,
            addr: self.addr,
            data_dir: self.data_dir,
            database: self.store.location().to_string(),
            created_admin_key: self.created_admin_key,
            tightened_data_dir: self.tightened_data_dir,
            store: self.store,
            platform: self.platform,
            auth: self.auth,
            runtime: self.runtime,
            hub: self.hub,
            log_store: self.log_store,
            lifecycle,
        }
    }
}

async fn assemble(serve: ServeConfig, lifecycle: &mut Lifecycle) -> Result<Parts, StartError> {
    let ServeConfig {
        config,
        data_dir,
        database,
        master_key,
        admin_key,
        log_sinks,
        deno,
        log_keepalive,
        mailer,
        login_limits,
        recheck_every,
    } = serve;
    // Private to this user: keys, databases, every app's code (see crate::files).
    let tightened_data_dir = crate::files::make_private_dir(&data_dir)
        .map_err(StartError::io(format!("could not create or secure {}", data_dir.display())))?;
    if !tightened_data_dir.is_empty() {
        tracing::warn!("the data folder was readable by other users; tightened: {}", tightened_data_dir.join("; "));
    }
    let master_key = match master_key {
        Some(key) => key,
        None => master_key_file(&data_dir)?,
    };
    let store = match &database {
        Database::Sqlite(path) => Store::open_sqlite_with_key(path, master_key).await?,
        Database::Postgres(url) => {
            let store = Store::open_postgres_with_key(url, master_key).await?;
            // Before anything is sealed under a key the other nodes cannot open.
            store.check_master_key().await.map_err(|source| StartError::Key {
                what: "the master key does not match the database's".into(),
                source,
            })?;
            store
        }
    };
    // Subscribed before the apps are loaded, so that no change falls in between.
    let changes = store.subscribe_changes().await?;
    let created_admin_key = import_admin_key(&store, &data_dir, admin_key).await?;

    // Logs have a database file (SQLite) or a table (PostgreSQL) of their own (see
    // homebase_store::logs).
    let log_store = match &database {
        Database::Sqlite(_) => LogStore::open(data_dir.join("logs.db")).await?,
        Database::Postgres(url) => LogStore::open_postgres(url).await?,
    };
    let retention = Retention { max_age: config.log_retention, max_bytes: config.log_max_size };
    let (writer, task) = LogWriter::spawn(&lifecycle.tasks, log_store.clone(), retention);
    lifecycle.set_writer(writer.clone(), task);
    let hub = LogHub::with_store(0, log_sinks, writer, log_store.next_id().await?);
    lifecycle.set_hub(hub.clone());
    // Functions get their secrets, not the server's environment, and run sandboxed, with Deno
    // caches of their app's own in the data folder (see homebase_runtime::sandbox).
    // Callers see short reasons; stacks, paths and worker output go to the log.
    let runtime_config = RuntimeConfig {
        deno,
        error_details: false,
        isolation: Some(Isolation { cache_dir: data_dir.join("deno"), mode: config.sandbox }),
        private_dirs: vec![data_dir.clone()],
        ..runtime_config(&config, false)
    };
    let runtime = Runtime::new(runtime_config, hub.clone())?;
    lifecycle.set_runtime(runtime.clone());
    let platform = Platform::open_with_logs(store.clone(), runtime.clone(), &data_dir, Some(hub.clone())).await?;
    // What other nodes (or a missed notification) change reaches this node's snapshots.
    lifecycle.tasks.spawn(platform.clone().follow_changes(changes, recheck_every, lifecycle.shutdown.clone()));

    let (listener, addr) = crate::bind(SocketAddr::new(config.host, config.port), false)
        .await
        .map_err(|source| StartError::Listen { address: format!("{}:{}", config.host, config.port), source })?;
    lifecycle.find_deno_early(&runtime);

    // User and service tokens are signed with a key kept in the data folder (one node) or in
    // the database (every node signs with one key), so signed-in users stay signed in across
    // restarts and nodes.
    let service_ttl = token::service_ttl(config.function_timeout);
    let tokens = match &database {
        Database::Sqlite(_) => {
            let key_file = data_dir.join("auth.key");
            TokenMinter::from_key_file(&key_file, service_ttl)
                .map_err(StartError::io(format!("the token signing key {}", key_file.display())))?
        }
        Database::Postgres(_) => TokenMinter::new(&store.server_secret(TOKEN_KEY, 32).await?, service_ttl),
    };
    // The configured origins only: see docs/configuration.md#cors-browser-apps.
    let cors = CorsPolicy::serve(config.cors_origins.clone());
    // The names of an app's functions are for the holders of its keys.
    let listing = FunctionListing::KeyHolders(store.clone());
    let state = AppState::new(platform.clone(), runtime.clone(), tokens, config.public_url.clone(), listing)
        .with_cors(cors)
        .with_entity_page_cap(config.entity_page_cap);
    let mailer = match mailer {
        Some(mailer) => mailer,
        None => config.mailer().map_err(StartError::Mail)?,
    };
    let auth = Auth::new(store.clone(), state.tokens.clone(), platform.clone(), mailer, true, lifecycle.tasks.clone());
    // Several nodes count logins and mail in the database, so that a limit holds however the
    // load balancer spreads the attempts; one node counts in memory.
    let auth = Arc::new(match &database {
        Database::Sqlite(_) => auth.with_limits(login_limits),
        Database::Postgres(_) => auth.with_shared_limits(login_limits, store.clone()),
    });
    let logs = LogService {
        store: log_store.clone(),
        hub: hub.clone(),
        shutdown: lifecycle.shutdown.clone(),
        keepalive: log_keepalive,
    };
    let manage =
        AuthManage { keys: auth_manage::Keys::Stored(store.clone()), auth: auth.clone(), state: state.clone() };
    let router = router(platform.clone(), state, auth.clone(), logs).merge(auth_manage::router(manage));
    lifecycle.serve(listener, addr, router, &config);
    Ok(Parts {
        url: format!("http://{addr}"),
        addr,
        data_dir,
        created_admin_key,
        tightened_data_dir,
        store,
        platform,
        auth,
        runtime,
        hub,
        log_store,
    })
}

/// The router of `homebase serve`: the SDK surface (functions, app users and app data, under
/// CORS), the management API, the entity schemas' push, the logs API, the `501`s of the CLI's routes Homebase lacks
/// ([`crate::unsupported`]), `/healthz`, `/readyz` (the database answers) and the JSON 404.
fn router(platform: Arc<Platform>, state: AppState, auth: Arc<Auth>, logs: LogService) -> Router {
    let store = platform.store.clone();
    crate::sdk::router(state, auth)
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::manage::router(platform.clone()))
        .merge(crate::logs_api::router(platform, logs))
        .merge(crate::entities_api::schemas_router(store.clone()))
        .merge(crate::unsupported::management_routes())
        .route("/readyz", get(move || ready(store.clone())))
        .fallback(crate::unknown_route)
}

async fn ready(store: Store) -> (StatusCode, &'static str) {
    match store.list_apps().await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the database is not reachable"),
    }
}

/// `master.key` in the data folder, created 0600 on the first start. Losing it makes the stored
/// secrets unreadable; errors never show the key.
fn master_key_file(data_dir: &Path) -> Result<MasterKey, StartError> {
    let file = data_dir.join("master.key");
    match std::fs::read_to_string(&file) {
        Ok(text) => MasterKey::parse(&text)
            .map_err(|source| StartError::Key { what: format!("the master key in {}", file.display()), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            crate::files::write_private(&file, &format!("{}\n", key.to_hex()))
                .map_err(StartError::io(format!("could not write {}", file.display())))?;
            Ok(key)
        }
        Err(error) => Err(StartError::MasterKeyUnreadable { path: file, error }),
    }
}

/// The admin key. `from_env` (`HOMEBASE_ADMIN_KEY`, for scripts and tests) replaces the key an
/// earlier one set, so changing the variable rotates it. Otherwise `admin.key` in the data
/// folder: created 0600 on the first start and returned to be printed once, and on later starts
/// imported again (a no-op unless the database was replaced). Keys are stored hashed.
async fn import_admin_key(
    store: &Store,
    data_dir: &Path,
    from_env: Option<String>,
) -> Result<Option<CreatedKey>, StartError> {
    const FROM_ENV: &str = "admin (HOMEBASE_ADMIN_KEY)";
    if let Some(secret) = from_env.filter(|k| !k.is_empty()) {
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
            .map_err(|source| StartError::Key { what: format!("the key in {}", file.display()), source })?;
        return Ok(None);
    }
    let (_, secret) = store.create_key(KeyScope::Admin, "admin").await?;
    crate::files::write_private(&file, &format!("{secret}\n"))
        .map_err(StartError::io(format!("could not write {}", file.display())))?;
    Ok(Some(CreatedKey { secret, file }))
}

//! Test helpers shared by Homebase's integration tests (ships nowhere).
//!
//! - [`fixture`] copies a fixture project from `fixtures/` into a temp folder.
//! - [`deno`] finds (or installs, once per process) the Deno the tests run.
//! - [`TestServer`] runs `homebase dev` in-process on 127.0.0.1:0, started by the same
//!   `homebase_server::dev::start` as the command, and collects every log event.
//! - [`TestPlatform`] runs `homebase serve` the same way (`homebase_server::serve::start`),
//!   over a data folder (and a PostgreSQL database when [`PlatformOptions::database_url`] names
//!   one), with [`ADMIN_KEY`] as its admin key, and with the network of `serve`'s functions
//!   restricted.
//! - [`TcpProxy`] forwards TCP connections (to PostgreSQL, say) and can cut them: an outage a
//!   test can start and end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homebase_identity::LoginLimits;
use homebase_identity::mail::Mailer;
use homebase_logs::Sink;
use homebase_runtime::{LogEvent, LogSink, NetAllow};
use homebase_server::ConnectionLimits;
use homebase_server::config::Config;
use homebase_server::dev::{DevConfig, DevData, DevEvent};
use homebase_server::serve::{ServeConfig, StartError};
use homebase_store::MasterKey;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// A copy of a fixture project in a temp folder, removed on drop.
pub struct TempProject {
    dir: tempfile::TempDir,
}

impl TempProject {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `relative` (creating folders).
    pub fn write(&self, relative: &str, contents: &str) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

/// Copies `fixtures/<name>` into a fresh temp folder.
pub fn fixture(name: &str) -> TempProject {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    assert!(source.is_dir(), "no fixture {}", source.display());
    let dir = tempfile::Builder::new().prefix("homebase-fixture-").tempdir().unwrap();
    copy_dir(&source, dir.path()).unwrap();
    TempProject { dir }
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The Deno used by tests: found or installed once per test process (so that parallel tests do
/// not race to install it).
pub async fn deno() -> PathBuf {
    static DENO: OnceCell<PathBuf> = OnceCell::const_new();
    DENO.get_or_init(|| async {
        let install = homebase_runtime::deno::locate_or_install(&|line| eprintln!("{line}"))
            .await
            .unwrap_or_else(|e| panic!("tests need Deno: {e}"));
        install.path
    })
    .await
    .clone()
}

/// Collects every log event, for assertions.
#[derive(Default)]
pub struct CollectedLogs(Mutex<Vec<LogEvent>>);

impl CollectedLogs {
    pub fn events(&self) -> Vec<LogEvent> {
        self.0.lock().unwrap().clone()
    }
}

impl LogSink for CollectedLogs {
    fn emit(&self, event: LogEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Sink for CollectedLogs {}

/// The settings every in-process server of the tests starts from: the defaults of `dev`, on
/// 127.0.0.1:0, with a 5-second `shutdown-timeout`.
fn test_config() -> Config {
    Config {
        host: std::net::IpAddr::from([127, 0, 0, 1]),
        port: 0,
        shutdown_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// `homebase dev`, in-process, started by the same [`homebase_server::dev::start`] as the
/// command: on 127.0.0.1:0, app users in memory, every log event and [`DevEvent`] collected.
/// Its URL, runtime, app, auth, hub and store come from the running server
/// ([`homebase_server::dev::Running`]).
pub struct TestServer {
    pub logs: Arc<CollectedLogs>,
    pub events: Arc<Mutex<Vec<DevEvent>>>,
    running: homebase_server::dev::Running,
}

impl std::ops::Deref for TestServer {
    type Target = homebase_server::dev::Running;
    fn deref(&self) -> &homebase_server::dev::Running {
        &self.running
    }
}

impl TestServer {
    /// The settings [`start`](TestServer::start) uses; change some and pass them to
    /// [`start_with`](TestServer::start_with). Host and port are always 127.0.0.1:0.
    pub fn config() -> Config {
        test_config()
    }

    /// Serves `project` with the default settings.
    pub async fn start(project: &Path) -> TestServer {
        TestServer::start_with(project, TestServer::config()).await
    }

    /// Serves `project` with `config`.
    pub async fn start_with(project: &Path, config: Config) -> TestServer {
        TestServer::start_dev(project, config, None).await
    }

    /// Serves `project` with `config`, app-user mail going to `mailer`.
    pub async fn start_with_mail(project: &Path, config: Config, mailer: Mailer) -> TestServer {
        TestServer::start_dev(project, config, Some(mailer)).await
    }

    async fn start_dev(project: &Path, config: Config, mailer: Option<Mailer>) -> TestServer {
        let logs = Arc::new(CollectedLogs::default());
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let project = homebase_project::Project::find(project).expect("fixture project loads");
        let dev = DevConfig {
            port_fallback: false,
            data: DevData::InMemory,
            log_sinks: vec![logs.clone() as Arc<dyn Sink>],
            on_event: Arc::new(move |e: &DevEvent| sink.lock().unwrap().push(e.clone())),
            deno: Some(deno().await),
            mailer,
            ..DevConfig::new(Config { host: std::net::IpAddr::from([127, 0, 0, 1]), port: 0, ..config }, project)
        };
        let running = homebase_server::dev::start(dev, CancellationToken::new()).await.expect("dev starts");
        TestServer { logs, events, running }
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// `{url}{path}`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.running.url)
    }

    /// Stops the server as `homebase dev` stops: drains requests, stops every worker and every
    /// background task.
    pub async fn stop(self) {
        self.running.drain().await
    }
}

/// The master key (secrets) of every [`TestPlatform`], so a data folder reopens.
pub const TEST_MASTER_KEY: [u8; 32] = [0x42; 32];

/// The admin key of every [`TestPlatform`].
pub const ADMIN_KEY: &str = "b44k_testplatformadmin000000000000000";

/// `homebase serve`, in-process, started by the same [`homebase_server::serve::start`] as the
/// command: on 127.0.0.1:0, the data folder given, [`ADMIN_KEY`] as its admin key (as
/// `HOMEBASE_ADMIN_KEY` gives one), [`TEST_MASTER_KEY`] as its master key, every log event
/// collected. Its URL, runtime, store, platform, auth, hub and log store come from the running
/// server ([`homebase_server::serve::Running`]).
pub struct TestPlatform {
    pub logs: Arc<CollectedLogs>,
    running: homebase_server::serve::Running,
}

impl std::ops::Deref for TestPlatform {
    type Target = homebase_server::serve::Running;
    fn deref(&self) -> &homebase_server::serve::Running {
        &self.running
    }
}

/// What a [`TestPlatform`] may vary.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    pub mailer: Mailer,
    pub limits: LoginLimits,
    /// How often log streams send a keep-alive comment.
    pub keepalive: Duration,
    /// Deploy checks: the timeout and how many at once.
    pub check_timeout: Duration,
    pub max_checks: usize,
    /// The limits on client connections.
    pub connections: ConnectionLimits,
    /// The server's `function-net-allow` (none, as `serve` starts with).
    pub net_allow: NetAllow,
    /// The server's `public-url`.
    pub public_url: Option<String>,
    /// The browser origins allowed (`cors-origins`; `serve` allows no loopback origin by itself).
    pub cors_origins: Vec<String>,
    /// The most records one entity list call answers (`entity-page-cap`).
    pub entity_page_cap: usize,
    /// The server's `trusted-proxies` (canonical entries; none, as `serve` starts with).
    pub trusted_proxies: Vec<String>,
    /// `function-memory`, `function-concurrency` and `max-workers` (the defaults of `serve`).
    pub function_memory: u64,
    pub function_concurrency: usize,
    pub max_workers: usize,
    /// `database-url`: a PostgreSQL database (a `homebase_store::pg_testing::TestSchema`'s URL,
    /// say) instead of SQLite in the data folder.
    pub database_url: Option<String>,
    /// How often the platform compares what it loaded with the database.
    pub recheck_every: Duration,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        PlatformOptions {
            mailer: Mailer::Log,
            limits: LoginLimits::default(),
            keepalive: Duration::from_secs(15),
            check_timeout: Duration::from_secs(60),
            max_checks: 16,
            connections: ConnectionLimits::default(),
            net_allow: NetAllow::none(),
            public_url: None,
            cors_origins: Vec::new(),
            entity_page_cap: 5000,
            trusted_proxies: Vec::new(),
            function_memory: Config::default().function_memory,
            function_concurrency: Config::default().function_concurrency,
            max_workers: Config::default().max_workers,
            database_url: None,
            recheck_every: homebase_catalog::platform::RECHECK_EVERY,
        }
    }
}

impl TestPlatform {
    /// Serves the data folder `data_dir` (created if missing; an existing one is reopened).
    pub async fn start(data_dir: &Path) -> TestPlatform {
        TestPlatform::start_with(data_dir, PlatformOptions::default()).await
    }

    /// [`start`](TestPlatform::start) with `options`. Tokens are signed with
    /// `<data dir>/auth.key`, as `homebase serve` does.
    pub async fn start_with(data_dir: &Path, options: PlatformOptions) -> TestPlatform {
        TestPlatform::try_start(data_dir, options).await.unwrap_or_else(|e| panic!("serve starts: {e}"))
    }

    /// [`start_with`](TestPlatform::start_with), returning why it could not start.
    pub async fn try_start(data_dir: &Path, options: PlatformOptions) -> Result<TestPlatform, StartError> {
        let logs = Arc::new(CollectedLogs::default());
        let config = Config {
            function_net_allow: options.net_allow.entries(),
            deploy_check_timeout: options.check_timeout,
            max_deploy_checks: options.max_checks,
            max_connections: options.connections.max_connections,
            header_read_timeout: options.connections.header_read_timeout,
            keep_alive_timeout: options.connections.keep_alive_timeout,
            public_url: options.public_url,
            cors_origins: options.cors_origins,
            entity_page_cap: options.entity_page_cap,
            trusted_proxies: options.trusted_proxies,
            function_memory: options.function_memory,
            function_concurrency: options.function_concurrency,
            max_workers: options.max_workers,
            database_url: options.database_url,
            ..test_config()
        };
        let serve = ServeConfig {
            master_key: Some(MasterKey::from_bytes(TEST_MASTER_KEY)),
            admin_key: Some(ADMIN_KEY.to_string()),
            log_sinks: vec![logs.clone() as Arc<dyn Sink>],
            deno: Some(deno().await),
            log_keepalive: options.keepalive,
            mailer: Some(options.mailer),
            login_limits: options.limits,
            recheck_every: options.recheck_every,
            ..ServeConfig::new(config, data_dir.to_path_buf())
        };
        let running = homebase_server::serve::start(serve, CancellationToken::new()).await?;
        Ok(TestPlatform { logs, running })
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// `{url}{path}`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.running.url)
    }

    /// Stops the server as `homebase serve` stops: drains requests, stops every worker, stores
    /// the last log lines and stops every background task.
    pub async fn stop(self) {
        self.running.drain().await
    }
}

/// A TCP forwarder on 127.0.0.1 to another address (a PostgreSQL server, say) that a test can
/// cut: [`cut`](TcpProxy::cut) closes every connection through it and refuses new ones (they
/// are accepted and closed at once, as by a server that is restarting) until
/// [`restore`](TcpProxy::restore). What the client sees is what a database outage or a broken
/// network looks like, and it can be undone. Stops when dropped.
pub struct TcpProxy {
    /// The port it listens on.
    pub port: u16,
    target: String,
    up: Arc<AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl TcpProxy {
    /// Forwards 127.0.0.1:<port> to `target` (`host:port`).
    pub async fn start(target: &str) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let (target_addr, flag, cut) = (target.to_string(), up.clone(), cuts.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                // Subscribed first: a cut from here on ends this connection too.
                let (target, mut cut) = (target_addr.clone(), cut.subscribe());
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        TcpProxy { port, target: target.to_string(), up, cuts, task }
    }

    /// A forwarder to the host and port of the PostgreSQL URL `url`, and `url` through it.
    pub async fn for_url(url: &str) -> (TcpProxy, String) {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (user, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (format!("{user}@"), host),
            None => (String::new(), authority),
        };
        let host = if host.contains(':') { host.to_string() } else { format!("{host}:5432") };
        let proxy = TcpProxy::start(&host).await;
        let through = format!("{scheme}://{user}127.0.0.1:{}{tail}", proxy.port);
        (proxy, through)
    }

    /// Where it forwards to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

pub use homebase_identity::testing::{ReceivedMail, smtp_sink};

/// The JSON body of a response; panics with the status and text when it is not JSON.
pub async fn json_of(response: reqwest::Response) -> serde_json::Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"))
}

/// Polls `condition` every 20 ms for up to 15 s: for effects that have no signal of their own
/// (a log line pumped from a pipe, a process disappearing).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..750 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The version of the official `@base44/sdk` the Node tests run (the fixtures import the same).
pub const OFFICIAL_SDK_VERSION: &str = "0.8.50";

/// The official `@base44/sdk` from the npm registry, installed once per machine into
/// `<user cache>/homebase/test-tools/sdk-<version>/`; returns the `file://` URL of its entry
/// module, for a Node script to `import()`. Only the tests use this.
pub async fn official_sdk() -> String {
    static SDK: OnceCell<String> = OnceCell::const_new();
    SDK.get_or_init(|| async { tokio::task::spawn_blocking(install_official_sdk).await.unwrap() }).await.clone()
}

fn install_official_sdk() -> String {
    let tools = homebase_runtime::deno::cache_dir().with_file_name("test-tools");
    let root = tools.join(format!("sdk-{OFFICIAL_SDK_VERSION}"));
    let package = root.join("node_modules/@base44/sdk");
    if !root.join(".installed").exists() {
        std::fs::create_dir_all(&tools).unwrap();
        let staging = tempfile::Builder::new().prefix(".sdk-").tempdir_in(&tools).unwrap();
        std::fs::write(staging.path().join("package.json"), "{\"private\": true}\n").unwrap();
        let spec = format!("@base44/sdk@{OFFICIAL_SDK_VERSION}");
        let status = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", &spec])
            .current_dir(staging.path())
            .status()
            .unwrap_or_else(|e| panic!("the SDK tests need npm: {e}"));
        assert!(status.success(), "npm install {spec} failed");
        std::fs::write(staging.path().join(".installed"), "").unwrap();
        let _ = std::fs::remove_dir_all(&root);
        std::fs::rename(staging.keep(), &root).unwrap();
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(package.join("package.json")).unwrap()).unwrap();
    let entry = manifest["exports"]["."]["import"]
        .as_str()
        .or_else(|| manifest["exports"]["."]["default"].as_str())
        .or_else(|| manifest["module"].as_str())
        .or_else(|| manifest["main"].as_str())
        .unwrap_or("dist/index.js");
    format!("file://{}", package.join(entry).display())
}

/// The version of the official `base44` CLI the compatibility tests run.
pub const OFFICIAL_CLI_VERSION: &str = "0.1.18";

/// The official `base44` CLI from the npm registry, installed once per machine into
/// `<user cache>/homebase/test-tools/base44-<version>/` and returned as the path of its
/// `bin/run.js` (run it with `node`). Its `dev` command needs a package that is not on the npm
/// registry (`@deno/loader`), so the package is unpacked, that dependency removed, and the folder
/// installed. Only the tests use this.
pub async fn official_cli() -> PathBuf {
    static CLI: OnceCell<PathBuf> = OnceCell::const_new();
    CLI.get_or_init(|| async { tokio::task::spawn_blocking(install_official_cli).await.unwrap() }).await.clone()
}

fn install_official_cli() -> PathBuf {
    let tools = homebase_runtime::deno::cache_dir().with_file_name("test-tools");
    let root = tools.join(format!("base44-{OFFICIAL_CLI_VERSION}"));
    let entry = root.join("package/bin/run.js");
    if root.join("package/.installed").exists() {
        return entry;
    }
    std::fs::create_dir_all(&tools).unwrap();
    let staging = tempfile::Builder::new().prefix(".base44-cli-").tempdir_in(&tools).unwrap();
    let run = |program: &str, args: &[&str], dir: &Path| {
        let status = std::process::Command::new(program)
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap_or_else(|e| panic!("the compatibility tests need {program}: {e}"));
        assert!(status.success(), "{program} {args:?} failed in {}", dir.display());
    };
    run("npm", &["pack", &format!("base44@{OFFICIAL_CLI_VERSION}"), "--silent"], staging.path());
    run("tar", &["xzf", &format!("base44-{OFFICIAL_CLI_VERSION}.tgz")], staging.path());
    let package = staging.path().join("package");
    let manifest_path = package.join("package.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    if let Some(deps) = manifest.get_mut("dependencies").and_then(|d| d.as_object_mut()) {
        deps.remove("@deno/loader");
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    run("npm", &["install", "--no-audit", "--no-fund", "--omit=dev", "--silent"], &package);
    std::fs::write(package.join(".installed"), "").unwrap();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(staging.keep(), &root).unwrap();
    entry
}

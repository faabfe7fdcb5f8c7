//! What the two composition roots ([`crate::serve::start`] and [`crate::dev::start`]) share:
//! the runtime's settings, serving a router on the TCP port and on the functions' API socket,
//! and the background work of a running server, every piece of it spawned on one
//! [`TaskTracker`] and finished by [`Lifecycle::drain`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use homebase_logs::{LogHub, LogWriter};
use homebase_runtime::{Runtime, RuntimeConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::serve::StartError;

/// How long stopping waits for the last log lines to be stored.
pub const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// The runtime's limits from `config`. `inherit_env`: whether functions see Homebase's own
/// environment (dev: that is where local secrets live; serve: never).
pub(crate) fn runtime_config(config: &Config, inherit_env: bool) -> RuntimeConfig {
    RuntimeConfig {
        function_timeout: config.function_timeout,
        idle_timeout: config.idle_timeout,
        boot_timeout: config.boot_timeout,
        inherit_env,
        net_allow: config.net_allow(),
        check_timeout: config.deploy_check_timeout,
        max_checks: config.max_deploy_checks,
        function_memory: config.function_memory,
        function_concurrency: config.function_concurrency,
        max_workers: config.max_workers,
        ..RuntimeConfig::default()
    }
}

/// Every background task of one running server and the order they stop in. Filled in as
/// `start` goes, so that a start that fails half-way drains what it had started.
pub(crate) struct Lifecycle {
    /// Every task of the server: the accept loops, the log writer, the watcher, mail, the early
    /// Deno lookup.
    pub tasks: TaskTracker,
    /// Cancelled when the server stops: a child of the caller's token, so a failed start does
    /// not cancel the caller's.
    pub shutdown: CancellationToken,
    /// `shutdown-timeout`: how long in-flight requests get, then how long workers get.
    grace: Duration,
    runtime: Option<Runtime>,
    hub: Option<Arc<LogHub>>,
    writer: Option<(LogWriter, JoinHandle<()>)>,
    serving: Option<Serving>,
}

/// The TCP accept loop, and the API socket with the token that stops it after the workers.
struct Serving {
    server: JoinHandle<()>,
    api: Option<JoinHandle<()>>,
    workers_done: CancellationToken,
}

impl Lifecycle {
    /// Runs `assemble` under a new lifecycle and hands back what it built with the lifecycle,
    /// or, when it fails, drains whatever it had started before returning the error: the one
    /// way both composition roots start.
    pub(crate) async fn start<P>(
        shutdown: &CancellationToken,
        shutdown_timeout: Duration,
        assemble: impl AsyncFnOnce(&mut Lifecycle) -> Result<P, StartError>,
    ) -> Result<(P, Lifecycle), StartError> {
        let mut lifecycle = Lifecycle::new(shutdown, shutdown_timeout);
        match assemble(&mut lifecycle).await {
            Ok(parts) => Ok((parts, lifecycle)),
            Err(error) => {
                lifecycle.drain().await;
                Err(error)
            }
        }
    }

    pub fn new(shutdown: &CancellationToken, grace: Duration) -> Lifecycle {
        Lifecycle {
            tasks: TaskTracker::new(),
            shutdown: shutdown.child_token(),
            grace,
            runtime: None,
            hub: None,
            writer: None,
            serving: None,
        }
    }

    /// The hub whose sinks are flushed last.
    pub fn set_hub(&mut self, hub: Arc<LogHub>) {
        self.hub = Some(hub);
    }

    /// The log store's writer and its task (spawned on [`tasks`](Lifecycle::tasks)).
    pub fn set_writer(&mut self, writer: LogWriter, task: JoinHandle<()>) {
        self.writer = Some((writer, task));
    }

    /// The runtime whose workers are stopped once requests are done.
    pub fn set_runtime(&mut self, runtime: Runtime) {
        self.runtime = Some(runtime);
    }

    /// Finds (or installs) Deno now, so that the first request does not wait for it; given up
    /// when the server stops.
    pub fn find_deno_early(&self, runtime: &Runtime) {
        let (runtime, shutdown) = (runtime.clone(), self.shutdown.clone());
        self.tasks.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                found = runtime.deno() => if let Err(error) = found {
                    tracing::error!("{error}");
                },
            }
        });
    }

    /// Serves `router` on `listener` (at `addr`) with `config`'s connection limits, and to the
    /// functions on the runtime's API socket, until the server stops. The socket outlives the
    /// workers (see [`drain`](Lifecycle::drain)): requests they finish during the drain still
    /// call the API.
    pub fn serve(&mut self, listener: TcpListener, addr: SocketAddr, router: axum::Router, config: &Config) {
        let runtime = self.runtime.as_ref().expect("the runtime is set before serving");
        let limits = config.connection_limits();
        let workers_done = CancellationToken::new();
        let api = crate::serve_workers(
            &self.tasks,
            runtime,
            router.clone(),
            addr,
            config.public_url.as_deref(),
            limits,
            workers_done.clone(),
        );
        let api = match api {
            Ok(api) => Some(api),
            Err(error) => {
                tracing::error!("functions cannot reach this server's API: its socket could not be opened: {error}");
                None
            }
        };
        // Only clients on the TCP port may be behind a trusted proxy (see crate::proxies).
        let trusted = config.trusted_proxies();
        let router = if trusted.is_empty() { router } else { router.layer(axum::Extension(Arc::new(trusted))) };
        let server =
            self.tasks.spawn(crate::connections::serve(listener, router, limits, self.shutdown.clone(), self.grace));
        self.serving = Some(Serving { server, api, workers_done });
    }

    /// Stops the server and finishes everything it started, in order:
    ///
    /// 1. the shutdown token is cancelled: the accept loop stops accepting, log streams end,
    ///    the watcher and the early Deno lookup stop;
    /// 2. in-flight requests get up to `shutdown-timeout`, then are cut;
    /// 3. every worker is retired and gets up to `shutdown-timeout` again for its `waitUntil`
    ///    work, then is killed;
    /// 4. the API socket stops (its own short grace);
    /// 5. the log writer stores what is queued (up to [`LOG_FLUSH_LIMIT`]), applies no more
    ///    retention, and ends;
    /// 6. the other tracked tasks (mail being sent) get up to `shutdown-timeout`;
    /// 7. the log sinks (the terminal) are flushed.
    pub async fn drain(mut self) {
        self.shutdown.cancel();
        if let Some(serving) = &mut self.serving {
            let _ = (&mut serving.server).await;
        }
        if let Some(runtime) = &self.runtime {
            runtime.shutdown(self.grace).await;
        }
        if let Some(serving) = self.serving.take() {
            serving.workers_done.cancel();
            if let Some(api) = serving.api {
                let _ = api.await;
            }
        }
        if let Some((writer, task)) = self.writer.take() {
            // Every line the workers printed before they stopped is stored before the process
            // ends; a disk that keeps failing must not hold the exit forever.
            writer.close();
            if tokio::time::timeout(LOG_FLUSH_LIMIT, task).await.is_err() {
                tracing::error!(
                    "{} log lines could not be stored within {}s of stopping; they are lost",
                    writer.queued(),
                    LOG_FLUSH_LIMIT.as_secs()
                );
            }
        }
        self.tasks.close();
        if tokio::time::timeout(self.grace, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                "{} background task(s) did not finish within {}s of stopping; leaving them",
                self.tasks.len(),
                self.grace.as_secs_f64()
            );
        }
        if let Some(hub) = self.hub.take() {
            // Waiting for a printing thread is blocking work.
            let _ = tokio::task::spawn_blocking(move || hub.flush_sinks()).await;
        }
    }
}

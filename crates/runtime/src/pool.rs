//! The worker pool: one slot per function, the request proxy, idle eviction and shutdown.
//!
//! The hot path (a warm worker) takes one uncontended mutex to find the slot and one to read its
//! state, then sends the request on a pooled HTTP/1.1 connection to the worker's socket.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::{OnceCell, watch};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::check::{self, Checks, Listing};
use crate::conn::{ConnBudget, ConnError, Full, IDLE_CONN_TIMEOUT, WorkerConn};
use crate::deno::{self, DenoInstall};
use crate::limits::{self, Gate, Place, Places, Refusals, Turn};
use crate::logs::{Level, LogSink};
use crate::netpolicy::ApiRoute;
use crate::public;
use crate::sandbox::{Caches, SandboxMode, Support, WorkerIsolation};
use crate::sdk;
use crate::worker::{Lease, Worker, WorkerContext};
use crate::{BoxError, FunctionSpec, RequestBody, RuntimeConfig, RuntimeError};

const HOST_SCRIPT: &str = include_str!("host/host.js");
const RUNTIME_MODULE: &str = include_str!("host/runtime.js");

/// A cheap, cloneable handle on the worker pool.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    logs: Arc<dyn LogSink>,
    host_dir: PathBuf,
    sockets_dir: PathBuf,
    tmp_dir: PathBuf,
    /// Homebase's API for the workers, on a socket in the work folder.
    api: Arc<ApiRoute>,
    /// Where deploy checks keep their own `DENO_DIR` and temp folder while they run.
    checks_dir: PathBuf,
    /// Workers' import maps with SDK substitutions ([`sdk`]), by content.
    maps_dir: PathBuf,
    _work_dir: Option<tempfile::TempDir>,
    /// `serve`: the Deno caches and whether Landlock confines Deno processes.
    isolation: Option<WorkerIsolation>,
    support: Option<Support>,
    checks: Checks,
    /// Set once Deno is found; a failed lookup is not kept, so the next request tries again.
    context: OnceCell<Arc<WorkerContext>>,
    deno: OnceCell<DenoInstall>,
    /// app id → function name → slot.
    slots: Mutex<HashMap<String, HashMap<String, Arc<Slot>>>>,
    /// The live workers and their limit (`max_workers`).
    places: Arc<Places>,
    /// Every worker process started and not yet known to have exited, for the memory watch
    /// (retired ones finishing their `waitUntil` work included).
    watched: Arc<Mutex<Vec<Weak<Worker>>>>,
    /// How many connections to workers may be open ([`Runtime::limit_worker_connections`]).
    conn_budget: Arc<ConnBudget>,
    next_worker: AtomicU64,
    shutdown: CancellationToken,
    epoch: Instant,
}

struct Slot {
    state: Mutex<SlotState>,
    /// `function_concurrency`: the requests in flight and waiting; `None` without a limit.
    gate: Option<Gate>,
    /// Requests refused by `function_concurrency` or `max_workers`, for the function's log.
    refused: Refusals,
}

type BootResult = Option<Result<Arc<Worker>, RuntimeError>>;

#[derive(Default)]
enum SlotState {
    #[default]
    Empty,
    /// A worker is starting; everyone who needs it waits on the same start.
    Booting {
        version: String,
        done: watch::Receiver<BootResult>,
    },
    Ready(Arc<Worker>),
}

/// A running worker, for status output and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub app_id: String,
    pub function: String,
    pub version: String,
    pub pid: Option<u32>,
    pub in_flight: usize,
    /// Connections opened to the worker so far (reuse keeps this low).
    pub connections: u64,
    /// Connections open to the worker now, busy or idle.
    pub open_connections: usize,
    /// Its resident set at the last sample, in bytes (Linux; `None` before the first).
    pub memory: Option<u64>,
}

impl Runtime {
    /// Prepares the private work folder. Deno is looked up on the first request (or by
    /// [`Runtime::deno`]), so creating a runtime costs no process start.
    pub fn new(config: RuntimeConfig, logs: Arc<dyn LogSink>) -> Result<Runtime, RuntimeError> {
        let (work, temp) = match &config.work_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                remove_orphaned_work_dirs(&std::env::temp_dir());
                let prefix = format!("{WORK_DIR_PREFIX}{}-", std::process::id());
                let temp = tempfile::Builder::new().prefix(&prefix).tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let sockets_dir = work.join("sockets");
        let tmp_dir = work.join("tmp");
        let checks_dir = work.join("checks");
        let maps_dir = work.join("maps");
        for dir in [&work, &sockets_dir, &tmp_dir, &checks_dir, &maps_dir] {
            create_private_dir(dir)?;
        }
        let (isolation, support) = match &config.isolation {
            None => (None, None),
            Some(settings) => {
                let support = Support::probe();
                if !support.available() && settings.mode == SandboxMode::Required {
                    return Err(RuntimeError::Sandbox {
                        message: format!(
                            "{}. Without it, functions could read every file this server's user can. Run \
                             serve on Linux 5.13 or newer with Landlock enabled, or set sandbox = \"best-effort\" \
                             (HOMEBASE_SANDBOX, --sandbox) to run without it.",
                            support.describe()
                        ),
                    });
                }
                let caches = Caches::open(&settings.cache_dir)?;
                (Some(WorkerIsolation { caches, confine: support.available() }), Some(support))
            }
        };
        let host_dir = match install_host(&deno::cache_dir().with_file_name("host")) {
            Ok(dir) => dir,
            // An unwritable cache costs each start a transpile-free but uncached load, no more.
            Err(_) => install_host(&work.join("host"))?,
        };

        let checks = Checks::new(config.max_checks, config.check_timeout);
        let places = Places::new(config.max_workers);
        let inner = Arc::new(Inner {
            config,
            logs,
            host_dir,
            sockets_dir,
            tmp_dir,
            api: Arc::new(ApiRoute::new(work.join("api.sock"))),
            checks_dir,
            maps_dir,
            _work_dir: temp,
            checks,
            isolation,
            support,
            context: OnceCell::new(),
            deno: OnceCell::new(),
            slots: Mutex::new(HashMap::new()),
            places,
            watched: Arc::default(),
            conn_budget: Arc::new(ConnBudget::new()),
            next_worker: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            epoch: Instant::now(),
        });
        tokio::spawn(evict_idle(Arc::downgrade(&inner)));
        if cfg!(target_os = "linux") {
            tokio::spawn(watch_memory(Arc::downgrade(&inner)));
        }
        Ok(Runtime { inner })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Allows at most `max` connections to workers at once (10,000 until called), and a quarter
    /// of that to any one worker. Every function request in flight holds one, so this bounds
    /// them too: a request past either limit is answered [`RuntimeError::Overloaded`] at once.
    /// The server sets it from its file-descriptor budget, which counts one worker connection per
    /// client connection it serves, so that HTTP/2 streams by the thousand cannot run this
    /// process out of descriptors.
    pub fn limit_worker_connections(&self, max: usize) {
        self.inner.conn_budget.set(max);
    }

    /// `(all workers, one worker)`: the most connections to workers open at once.
    pub fn worker_connection_limits(&self) -> (usize, usize) {
        (self.inner.conn_budget.max(), self.inner.conn_budget.per_worker())
    }

    /// Connections open to workers now, busy or idle.
    pub fn worker_connections(&self) -> usize {
        self.inner.conn_budget.open()
    }

    /// `(live, max)`: the workers starting or running now (retired ones finishing their
    /// `waitUntil` work not counted), and `max_workers`.
    pub fn worker_places(&self) -> (usize, usize) {
        (self.inner.places.used(), self.inner.places.max())
    }

    /// `serve`: what confines its Deno processes (`None` without isolation, as in dev).
    pub fn sandbox(&self) -> Option<&Support> {
        self.inner.support.as_ref()
    }

    /// The Deno in use, finding or installing it on the first call that succeeds.
    pub async fn deno(&self) -> Result<DenoInstall, RuntimeError> {
        let inner = &self.inner;
        inner
            .deno
            .get_or_try_init(|| async {
                match &inner.config.deno {
                    Some(path) => Ok(DenoInstall { path: path.clone(), version: String::new(), source: "config" }),
                    None => deno::locate_or_install(&|line| tracing::info!("{line}")).await,
                }
            })
            .await
            .cloned()
    }

    async fn context(&self) -> Result<Arc<WorkerContext>, RuntimeError> {
        self.inner
            .context
            .get_or_try_init(|| async {
                let deno = self.deno().await?;
                let inner = &self.inner;
                Ok::<_, RuntimeError>(Arc::new(WorkerContext {
                    deno: deno.path,
                    host_script: inner.host_dir.join("host.js"),
                    import_map: inner.host_dir.join("import_map.json"),
                    maps_dir: inner.maps_dir.clone(),
                    host_dir: inner.host_dir.clone(),
                    deno_dir: deno::deno_dir(),
                    sockets_dir: inner.sockets_dir.clone(),
                    tmp_dir: inner.tmp_dir.clone(),
                    inherit_env: inner.config.inherit_env,
                    isolation: inner.isolation.clone(),
                    error_details: inner.config.error_details,
                    net_allow: inner.config.net_allow.clone(),
                    api: inner.api.clone(),
                    conn_budget: inner.conn_budget.clone(),
                    private_dirs: inner.config.private_dirs.clone(),
                    boot_timeout: inner.config.boot_timeout,
                    stop_grace: inner.config.stop_grace,
                    function_memory: inner.config.function_memory,
                    watched: inner.watched.clone(),
                    logs: inner.logs.clone(),
                    epoch: inner.epoch,
                }))
            })
            .await
            .cloned()
    }

    /// Binds the Unix socket in the private work folder on which the server is to serve its API
    /// to the workers, replacing a stale one, and from then on has restricted workers send their
    /// requests for `origins` (`http://host:port`, no trailing slash) there, as well as those
    /// for each `Base44-Api-Url` they receive (see [`netpolicy`](crate::netpolicy)).
    pub fn bind_api_socket(&self, origins: &[String]) -> std::io::Result<tokio::net::UnixListener> {
        let path = &self.inner.api.socket;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        self.inner.api.set_origins(origins);
        Ok(listener)
    }

    /// Has Deno resolve, download and parse `entry` and everything it imports statically (with
    /// the same import map as a worker, `base44:runtime`), without running it. `root` is the
    /// deployment's folder: a local module outside it is refused, and messages show paths relative
    /// to the entry's folder and nothing else of the machine. A syntax error or an import that
    /// does not resolve is [`RuntimeError::ModuleInvalid`]; past the check timeout
    /// [`RuntimeError::CheckTimeout`]; with every check slot taken, at once, [`RuntimeError::Busy`].
    /// See [`check`](crate::check).
    pub async fn check_module(&self, entry: &Path, root: &Path) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let _slot = inner.checks.slot().await?;
        let deno = self.deno().await?;
        let work = tempfile::Builder::new().prefix("c").tempdir_in(&inner.checks_dir)?;
        let deno_dir = work.path().join("deno");
        let tmp = work.path().join("tmp");
        create_private_dir(&tmp)?;
        match &inner.isolation {
            Some(isolation) => isolation.caches.deno_dir_at(&deno_dir)?,
            None => create_private_dir(&deno_dir)?,
        }
        let import_map = sdk_import_map(&inner.host_dir, entry, &[root.to_path_buf()], &tmp).await?;
        let listing = Listing {
            deno: &deno.path,
            entry,
            root,
            host_dir: &inner.host_dir,
            import_map: &import_map,
            deno_dir: if inner.isolation.is_some() { &deno_dir } else { Path::new("") },
            tmp: &tmp,
            caches: inner.isolation.as_ref().map(|i| &i.caches),
            confine: inner.isolation.as_ref().is_some_and(|i| i.confine),
        };
        let info = inner.checks.list(&listing).await?;
        check::verdict(&info, entry, root, &inner.host_dir).map_err(|detail| RuntimeError::ModuleInvalid { detail })?;
        // The packages are cached: the stored deployment's first worker needs no warm-up.
        if let Some(isolation) = &inner.isolation {
            let _ = std::fs::write(check::warm_marker(&isolation.caches, &deno.path, entry, root), b"");
        }
        Ok(())
    }

    /// Sends `request` to a worker of `spec` and returns its response, streaming. The request's
    /// URI (origin form: path and query) and headers are passed as they are.
    pub async fn handle(
        &self,
        spec: &Arc<FunctionSpec>,
        request: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, RuntimeError> {
        let started = Instant::now();
        let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let timeout = self.inner.config.function_timeout;
        let slot = self.slot(&spec.app_id, &spec.name);
        // Its turn among the function's requests, held until the response ends.
        let turn = match &slot.gate {
            None => None,
            Some(gate) => Some(gate.enter(timeout).await.map_err(|full| {
                self.note_refused(&slot, spec, "function-concurrency", full.limit);
                RuntimeError::ConcurrencyLimit { function: spec.name.clone(), limit: full.limit, waiting: full.waiting }
            })?),
        };
        let lease = match self.acquire(&slot, spec).await {
            Ok(lease) => lease,
            Err(error) => {
                if let RuntimeError::TooManyWorkers { limit, .. } = &error {
                    self.note_refused(&slot, spec, "max-workers", *limit);
                }
                return Err(error);
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let worker = lease.worker.clone();
        let exchange = async {
            let mut conn = worker.conns.checkout().await?;
            let response = conn.send(request).await?;
            Ok::<_, ConnError>((conn, response))
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok((conn, response))) => {
                let status = response.status().as_u16();
                let (mut parts, incoming) = response.into_parts();
                // An error answer of the host: `serve` shows it without this machine's paths.
                let host_failure = parts.headers.remove(public::FAILURE_HEADER).is_some_and(|mark| {
                    !self.inner.config.error_details && mark.as_bytes() == worker.failure_mark.as_bytes()
                });
                let (inner, conn) = if host_failure {
                    let mut conn = conn;
                    let read = tokio::time::timeout_at(deadline, read_failure(&mut conn, incoming)).await;
                    let read = read.ok().flatten();
                    if read.is_some() {
                        worker.conns.checkin(conn);
                    }
                    let text = public::rewrite_failure(read.as_deref(), &worker.paths, request_id.as_deref());
                    parts.headers.remove(http::header::TRANSFER_ENCODING);
                    parts.headers.insert(http::header::CONTENT_LENGTH, text.len().into());
                    parts
                        .headers
                        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                    (Payload::Ready(Some(text)), None)
                } else {
                    (Payload::Worker(incoming), Some(conn))
                };
                let body = ResponseBody {
                    inner,
                    conn,
                    lease: Some(lease),
                    turn,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    timeout,
                    invocation: Some(Invocation { started, status, request_id }),
                };
                Ok(Response::from_parts(parts, body))
            }
            Ok(Err(ConnError::Full(full))) => {
                worker.note_refused(full);
                let (limit, all_workers) = match full {
                    Full::Worker(limit) => (limit, false),
                    Full::Server(limit) => (limit, true),
                };
                Err(RuntimeError::Overloaded { function: spec.name.clone(), limit, all_workers })
            }
            Ok(Err(error)) => {
                // The worker dropped the connection: it crashed (Deno.exit, out of memory) or
                // was stopped. A dead worker is replaced on the next request.
                let exited = worker.exited_within(CRASH_WAIT).await;
                if worker.is_out_of_memory() {
                    let invocation = Invocation { started, status: 502, request_id };
                    invocation.log(&lease, "", &format!("crashed: {}", worker.exit_reason()));
                    return Err(RuntimeError::OutOfMemory {
                        function: spec.name.clone(),
                        limit: self.inner.config.function_memory,
                    });
                }
                let (detail, reason) = if exited {
                    (worker.death_detail(), worker.exit_reason())
                } else {
                    (
                        format!("The connection to the worker failed: {error}"),
                        "the connection to the worker failed".into(),
                    )
                };
                let invocation = Invocation { started, status: 502, request_id };
                invocation.log(&lease, "crashed: ", &detail);
                Err(RuntimeError::Crashed { function: spec.name.clone(), detail, reason })
            }
            Err(_) => {
                let reason = format!("the request ran past the {}s function timeout", timeout.as_secs_f64());
                worker.system_log(Level::Error, format!("{reason}; replacing the worker"));
                worker.kill(&reason);
                Invocation { started, status: 504, request_id }.log(&lease, "timed out: ", &reason);
                Err(RuntimeError::Timeout { function: spec.name.clone(), timeout })
            }
        }
    }

    /// Counts a request that `setting` (at `limit`) refused, and says so in the function's log at
    /// most every [`limits::NOTE_EVERY`], with how many were refused.
    fn note_refused(&self, slot: &Slot, spec: &FunctionSpec, setting: &str, limit: usize) {
        let Some(refused) = slot.refused.due(self.inner.epoch) else { return };
        let why = match setting {
            "max-workers" => format!("(too_many_workers): max-workers ({limit}) workers are running and none is idle"),
            _ => format!("(concurrency_limit): {setting} allows {limit} in flight and as many waiting"),
        };
        self.inner.logs.emit(crate::LogEvent {
            id: 0,
            time: std::time::SystemTime::now(),
            app_id: spec.app_id.clone(),
            function: spec.name.clone(),
            version: spec.version.clone(),
            level: Level::Warning,
            request_id: None,
            message: format!("{refused} request(s) refused with 503 {why}"),
            system: true,
        });
    }

    /// A lease on a live worker running `spec.version`, starting one if needed.
    async fn acquire(&self, slot: &Arc<Slot>, spec: &Arc<FunctionSpec>) -> Result<Lease, RuntimeError> {
        loop {
            if self.inner.shutdown.is_cancelled() {
                return Err(RuntimeError::ShuttingDown);
            }
            let mut done = {
                let mut state = slot.state.lock().unwrap();
                if let SlotState::Ready(worker) = &*state
                    && worker.is_alive()
                    && worker.spec.version == spec.version
                    && let Some(lease) = worker.try_lease()
                {
                    return Ok(lease);
                }
                match &*state {
                    SlotState::Booting { version, done } if *version == spec.version => done.clone(),
                    previous => {
                        if let SlotState::Ready(old) = previous {
                            old.retire();
                        }
                        let (tx, rx) = watch::channel(None);
                        *state = SlotState::Booting { version: spec.version.clone(), done: rx.clone() };
                        // The start runs on its own task so that a caller who gives up does
                        // not cancel it for the others.
                        tokio::spawn(self.clone().boot(slot.clone(), spec.clone(), tx));
                        rx
                    }
                }
            };
            let result = match done.wait_for(Option::is_some).await {
                Ok(result) => result.clone().expect("waited for Some"),
                Err(_) => continue, // the start task went away; try again
            };
            match result {
                Ok(worker) if worker.is_alive() => match worker.try_lease() {
                    Some(lease) => return Ok(lease),
                    None => continue, // stopped since; start another
                },
                Ok(_) => continue, // it died already; start another
                Err(error) => return Err(error),
            }
        }
    }

    async fn boot(self, slot: Arc<Slot>, spec: Arc<FunctionSpec>, done: watch::Sender<BootResult>) {
        let id = self.inner.next_worker.fetch_add(1, Ordering::Relaxed);
        let result = match self.place_for(&slot, &spec) {
            Err(error) => Err(error),
            Ok(place) => match self.context().await {
                Ok(context) => {
                    self.warm(&context, &spec).await;
                    Worker::spawn(&context, id, spec.clone(), Some(place)).await
                }
                Err(error) => Err(error),
            },
        };
        {
            let mut state = slot.state.lock().unwrap();
            let current = matches!(&*state, SlotState::Booting { version, .. } if *version == spec.version);
            match (&result, current) {
                (Ok(worker), true) => *state = SlotState::Ready(worker.clone()),
                (Err(_), true) => *state = SlotState::Empty,
                (Ok(worker), false) => worker.retire(), // superseded by a newer version
                (Err(_), false) => {}
            }
        }
        if self.inner.shutdown.is_cancelled()
            && let Ok(worker) = &result
        {
            worker.retire();
        }
        let _ = done.send(Some(result));
    }

    /// A place among the live workers for a new worker of `spec`. At `max_workers`, the least
    /// recently used idle worker (of any function but this one's `slot`) is stopped to make
    /// room; with none idle, [`RuntimeError::TooManyWorkers`].
    fn place_for(&self, slot: &Arc<Slot>, spec: &FunctionSpec) -> Result<Place, RuntimeError> {
        // Each round either takes a place or stops a worker; another start may take the place
        // that frees, so a few rounds are allowed before giving up.
        for _ in 0..16 {
            if let Some(place) = self.inner.places.take() {
                return Ok(place);
            }
            if !self.stop_least_recently_used(slot, &spec.name) {
                break;
            }
        }
        Err(RuntimeError::TooManyWorkers { function: spec.name.clone(), limit: self.inner.places.max() })
    }

    /// Stops the idle worker whose last request ended longest ago; `false` when none is idle.
    fn stop_least_recently_used(&self, except: &Arc<Slot>, starting: &str) -> bool {
        let slots = self.inner.slots.lock().unwrap();
        let mut oldest: Option<(u64, &Arc<Slot>)> = None;
        for slot in slots.values().flat_map(|app| app.values()) {
            if Arc::ptr_eq(slot, except) {
                continue;
            }
            if let SlotState::Ready(worker) = &*slot.state.lock().unwrap()
                && worker.is_alive()
                && worker.in_flight() == 0
                && oldest.is_none_or(|(used, _)| worker.last_used() < used)
            {
                oldest = Some((worker.last_used(), slot));
            }
        }
        let Some((_, slot)) = oldest else { return false };
        let mut state = slot.state.lock().unwrap();
        if let SlotState::Ready(worker) = &*state {
            // A request may have taken it since: it finishes first, the place is freed now.
            worker.system_log(
                Level::Info,
                format!(
                    "worker stopped to make room for '{starting}': max-workers ({}) are running and this one was \
                     the least recently used idle worker",
                    self.inner.places.max()
                ),
            );
            worker.retire();
            *state = SlotState::Empty;
        }
        true
    }

    /// `serve`: makes sure the packages `spec` imports are in the shared cache, which its worker
    /// may only read (see [`check::warm`]). A no-op once done for an entry.
    async fn warm(&self, context: &WorkerContext, spec: &FunctionSpec) {
        let Some(isolation) = &self.inner.isolation else { return };
        let Some(root) = spec.read_paths.first() else { return };
        let marker = check::warm_marker(&isolation.caches, &context.deno, &spec.entry, root);
        if marker.exists() {
            return;
        }
        let Ok(deno_dir) = isolation.caches.app_dir(&spec.app_id) else { return };
        let Ok(work) = tempfile::Builder::new().prefix("w").tempdir_in(&self.inner.checks_dir) else { return };
        let Ok(import_map) = sdk_import_map(&context.host_dir, &spec.entry, &spec.read_paths, work.path()).await else {
            return;
        };
        let listing = Listing {
            deno: &context.deno,
            entry: &spec.entry,
            root,
            host_dir: &context.host_dir,
            import_map: &import_map,
            deno_dir: &deno_dir,
            tmp: work.path(),
            caches: Some(&isolation.caches),
            confine: isolation.confine,
        };
        check::warm(&self.inner.checks, &listing, &marker).await;
    }

    fn slot(&self, app_id: &str, name: &str) -> Arc<Slot> {
        let mut slots = self.inner.slots.lock().unwrap();
        if let Some(slot) = slots.get(app_id).and_then(|app| app.get(name)) {
            return slot.clone();
        }
        let concurrency = self.inner.config.function_concurrency;
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Empty),
            gate: (concurrency > 0).then(|| Gate::new(concurrency)),
            refused: Refusals::default(),
        });
        slots.entry(app_id.to_string()).or_default().insert(name.to_string(), slot.clone());
        slot
    }

    /// Retires the workers of `app_id` whose function is gone from `current` (name → version) or
    /// runs another version. They finish their requests first.
    pub fn retire_outdated(&self, app_id: &str, current: &HashMap<String, String>) {
        let mut slots = self.inner.slots.lock().unwrap();
        let Some(app) = slots.get_mut(app_id) else { return };
        app.retain(|name, slot| {
            let mut state = slot.state.lock().unwrap();
            let keep = current.get(name);
            if let SlotState::Ready(worker) = &*state
                && keep != Some(&worker.spec.version)
            {
                worker.retire();
                *state = SlotState::Empty;
            }
            keep.is_some()
        });
    }

    /// The running workers.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.live_workers()
            .into_iter()
            .map(|w| WorkerInfo {
                app_id: w.spec.app_id.clone(),
                function: w.spec.name.clone(),
                version: w.spec.version.clone(),
                pid: w.pid,
                in_flight: w.in_flight(),
                connections: w.conns.opened(),
                open_connections: w.conns.open(),
                memory: w.memory(),
            })
            .collect()
    }

    fn live_workers(&self) -> Vec<Arc<Worker>> {
        let slots = self.inner.slots.lock().unwrap();
        slots
            .values()
            .flat_map(|app| app.values())
            .filter_map(|slot| match &*slot.state.lock().unwrap() {
                SlotState::Ready(worker) if worker.is_alive() => Some(worker.clone()),
                _ => None,
            })
            .collect()
    }

    /// Refuses new requests, lets in-flight ones finish until `deadline`, then stops every
    /// worker. Returns when all worker processes have exited.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.shutdown.cancel();
        let workers: Vec<Arc<Worker>> = {
            let slots = self.inner.slots.lock().unwrap();
            slots
                .values()
                .flat_map(|app| app.values())
                .filter_map(|slot| match std::mem::take(&mut *slot.state.lock().unwrap()) {
                    SlotState::Ready(worker) => Some(worker),
                    _ => None,
                })
                .collect()
        };
        for worker in &workers {
            worker.retire();
        }
        let all_exited = futures_util::future::join_all(workers.iter().map(|w| w.wait_exited()));
        if tokio::time::timeout(deadline, all_exited).await.is_err() {
            for worker in &workers {
                worker.kill("the server shut down before its requests finished");
            }
            futures_util::future::join_all(workers.iter().map(|w| w.wait_exited())).await;
        }
    }
}

/// Stops workers that have had no request for the idle timeout.
async fn evict_idle(inner: Weak<Inner>) {
    let idle = match inner.upgrade() {
        Some(inner) => inner.config.idle_timeout,
        None => return,
    };
    let mut tick = tokio::time::interval((idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let slots = inner.slots.lock().unwrap();
        for slot in slots.values().flat_map(|app| app.values()) {
            let mut state = slot.state.lock().unwrap();
            if let SlotState::Ready(worker) = &*state {
                if worker.in_flight() == 0 && worker.idle_for() >= idle {
                    worker.system_log(Level::Info, format!("worker stopped after {}s idle", idle.as_secs_f64()));
                    worker.retire();
                    *state = SlotState::Empty;
                } else {
                    worker.conns.trim(IDLE_CONN_TIMEOUT.min(idle));
                }
            }
        }
    }
}

/// Stops every worker whose resident set is over `function_memory`, reading each one's every
/// [`limits::MEMORY_SAMPLE_EVERY`] (Linux).
async fn watch_memory(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(limits::MEMORY_SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let limit = inner.config.function_memory;
        let workers: Vec<Arc<Worker>> = {
            let mut watched = inner.watched.lock().unwrap();
            watched.retain(|w| w.upgrade().is_some_and(|w| !w.has_exited()));
            watched.iter().filter_map(Weak::upgrade).collect()
        };
        drop(inner);
        for worker in workers {
            let Some(used) = worker.pid.and_then(limits::resident_bytes) else { continue };
            worker.set_memory(used);
            if used > limit {
                worker.kill_out_of_memory(used);
            }
        }
    }
}

/// How long a failed exchange waits for its worker to exit, to say why it died.
const CRASH_WAIT: Duration = Duration::from_secs(2);

/// The response body of a function: streams the worker's body while driving the connection it
/// arrives on, holds the worker's lease until the body ends, returns the connection to the pool
/// after a complete exchange, and cuts the stream (replacing the worker) at the function timeout.
pub struct ResponseBody {
    inner: Payload,
    conn: Option<WorkerConn>,
    lease: Option<Lease>,
    /// Its turn among the function's requests (`function_concurrency`), given back at the end.
    turn: Option<Turn>,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    /// What the invocation line says when the exchange ends; taken when it is written.
    invocation: Option<Invocation>,
}

/// What a [`ResponseBody`] streams: the worker's body, or one Homebase has read and rewritten.
enum Payload {
    Worker(Incoming),
    Ready(Option<Bytes>),
}

impl Payload {
    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Worker(incoming) => incoming.is_end_stream(),
            Payload::Ready(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Payload::Worker(incoming) => incoming.size_hint(),
            Payload::Ready(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// Reads the (small) body of a host's error answer, driving its connection meanwhile; `None`
/// when it is longer than [`public::MAX_FAILURE_BODY`] or cannot be read.
async fn read_failure(conn: &mut WorkerConn, incoming: Incoming) -> Option<Bytes> {
    use http_body_util::{BodyExt, Limited};
    let mut collect = std::pin::pin!(Limited::new(incoming, public::MAX_FAILURE_BODY).collect());
    let collected = std::future::poll_fn(|cx| {
        let _ = conn.poll_io(cx);
        collect.as_mut().poll(cx)
    })
    .await;
    collected.ok().map(|c| c.to_bytes())
}

/// One request, for the line Homebase writes when it ends: `invocation: 200 in 3.1 ms (warm)`,
/// `invocation: 200 in 260.4 ms (cold start, booted in 250.0 ms)`, `invocation: 504 in 30000.2 ms
/// (timed out: …)`. Level info, warning for a 5xx or a cut stream.
struct Invocation {
    started: Instant,
    status: u16,
    request_id: Option<String>,
}

impl Invocation {
    /// Writes the line; `problem` (with its `label`) is why the exchange ended abnormally.
    fn log(self, lease: &Lease, label: &str, problem: &str) {
        let millis = self.started.elapsed().as_secs_f64() * 1000.0;
        let start = match lease.boot {
            Some(boot) => format!("cold start, booted in {:.1} ms", boot.as_secs_f64() * 1000.0),
            None => "warm".to_string(),
        };
        let level = if self.status >= 500 || !problem.is_empty() { Level::Warning } else { Level::Info };
        let message = if problem.is_empty() {
            format!("invocation: {} in {millis:.1} ms ({start})", self.status)
        } else {
            format!("invocation: {} in {millis:.1} ms ({start}; {label}{problem})", self.status)
        };
        lease.worker.request_log(level, message, self.request_id);
    }
}

impl ResponseBody {
    /// The exchange is over: the connection goes back to the pool if it completed cleanly.
    fn finish(&mut self, clean: bool) {
        if let (Some(lease), Some(invocation)) = (self.lease.as_ref(), self.invocation.take()) {
            let problem = match (clean, lease.worker.is_out_of_memory()) {
                (true, _) => "",
                (false, true) => "the response was cut off before its end: the worker ran out of memory",
                (false, false) => "the response was cut off before its end",
            };
            invocation.log(lease, "", problem);
        }
        if let (Some(conn), Some(lease)) = (self.conn.take(), self.lease.as_ref())
            && clean
        {
            lease.worker.conns.checkin(conn);
        }
        self.lease = None;
        self.turn = None;
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // An empty body is never polled; a fully read one may not be polled to its end.
        let complete = self.inner.is_end_stream() || matches!(self.inner, Payload::Ready(_));
        self.finish(complete);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let inner = match &mut this.inner {
            Payload::Worker(incoming) => incoming,
            Payload::Ready(bytes) => {
                return match bytes.take() {
                    Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                    None => {
                        this.finish(true);
                        Poll::Ready(None)
                    }
                };
            }
        };
        if let Some(conn) = this.conn.as_mut() {
            let _ = conn.poll_io(cx); // reads the body into `inner`; an end shows up there
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(false);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            // Only a body that has to wait arms the timer.
            Poll::Pending if this.lease.is_some() && this.deadline.as_mut().poll(cx).is_ready() => {
                let lease = this.lease.take().expect("checked");
                this.conn = None;
                this.turn = None;
                let reason = format!("the response ran past the {}s function timeout", this.timeout.as_secs_f64());
                lease.worker.system_log(Level::Error, format!("{reason}; replacing the worker"));
                if let Some(invocation) = this.invocation.take() {
                    invocation.log(&lease, "timed out: ", &reason);
                }
                lease.worker.kill(&reason);
                Poll::Ready(Some(Err(reason.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Writes the host files into `<parent>/<hash of their content>/`, unless they are there already,
/// and returns that folder. The path is the same for every start of the same Homebase build, so
/// Deno's code cache for the host is reused (a fresh path per start costs every worker boot ~8 ms).
fn install_host(parent: &Path) -> std::io::Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(HOST_SCRIPT).chain_update(RUNTIME_MODULE).finalize();
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = parent.join(hash);
    let runtime_module = dir.join("runtime.js");
    let import_map = serde_json::json!({ "imports": { "base44:runtime": crate::worker::file_url(&runtime_module) } });
    let files = [
        ("host.js", HOST_SCRIPT.to_string()),
        ("runtime.js", RUNTIME_MODULE.to_string()),
        ("import_map.json", import_map.to_string()),
    ];
    let complete =
        files.iter().all(|(name, content)| std::fs::read_to_string(dir.join(name)).is_ok_and(|c| c == *content));
    if !complete {
        std::fs::create_dir_all(&dir)?;
        for (name, content) in &files {
            // Write beside and rename: another Homebase may be reading these right now.
            let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            std::fs::write(&temp, content)?;
            std::fs::rename(&temp, dir.join(name))?;
        }
    }
    Ok(dir)
}

/// The import map a deploy check or a warm-up gives Deno for the code of `entry` under
/// `read_paths`, the same a worker of it gets: the host's, or one with its SDK substitutions
/// written into `dir` ([`crate::sdk`]), so that the versions the worker will load are cached.
async fn sdk_import_map(host_dir: &Path, entry: &Path, read_paths: &[PathBuf], dir: &Path) -> std::io::Result<PathBuf> {
    let (entry, paths) = (entry.to_path_buf(), read_paths.to_vec());
    let plan = tokio::task::spawn_blocking(move || sdk::plan(&entry, &paths)).await.map_err(std::io::Error::other)?;
    if plan.is_empty() {
        return Ok(host_dir.join("import_map.json"));
    }
    let runtime = crate::worker::file_url(&host_dir.join("runtime.js"));
    sdk::write_import_map(dir, &sdk::import_map(&runtime, &plan))
}

/// Work folders are named `homebase-<pid>-<random>` so that one left by a killed Homebase can
/// be recognised and removed by the next start.
const WORK_DIR_PREFIX: &str = "homebase-";

/// Removes the work folders (sockets, worker temp files) of Homebase processes that are gone.
/// Best effort; on systems without `/proc` nothing is removed.
fn remove_orphaned_work_dirs(temp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(temp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) =
            name.to_str().and_then(|n| n.strip_prefix(WORK_DIR_PREFIX)).and_then(|rest| rest.split_once('-'))
        else {
            continue;
        };
        let Ok(pid) = pid.0.parse::<u32>() else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_dirs_of_dead_processes_are_removed() {
        let temp = tempfile::tempdir().unwrap();
        let mine = temp.path().join(format!("homebase-{}-abc", std::process::id()));
        let dead = temp.path().join("homebase-999999999-abc"); // above any pid_max
        let unrelated = temp.path().join("homebase-fixture-xyz");
        for dir in [&mine, &dead, &unrelated] {
            std::fs::create_dir_all(dir.join("sockets")).unwrap();
        }
        remove_orphaned_work_dirs(temp.path());
        assert!(mine.exists(), "a live process's folder stays");
        assert!(!dead.exists(), "a dead process's folder goes");
        assert!(unrelated.exists(), "folders that are not work folders stay");
    }

    #[test]
    fn the_host_is_installed_once_at_a_content_addressed_path() {
        let parent = tempfile::tempdir().unwrap();
        let dir = install_host(parent.path()).unwrap();
        assert_eq!(dir.parent(), Some(parent.path()));
        assert_eq!(std::fs::read_to_string(dir.join("host.js")).unwrap(), HOST_SCRIPT);
        let map = std::fs::read_to_string(dir.join("import_map.json")).unwrap();
        assert!(map.contains(&format!("{}/runtime.js", dir.display())), "{map}");
        // The same build gets the same folder; a damaged file is rewritten.
        std::fs::write(dir.join("host.js"), "tampered").unwrap();
        assert_eq!(install_host(parent.path()).unwrap(), dir);
        assert_eq!(std::fs::read_to_string(dir.join("host.js")).unwrap(), HOST_SCRIPT);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}

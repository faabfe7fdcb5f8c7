//! One Deno process serving one function on a Unix socket.
//!
//! The process runs our host bootstrap (`host/host.ts`), which imports the function and reports on
//! stdout: `\x1e{"t":"ready"}` once it listens, `\x1e{"t":"load-error","m":…}` when the module
//! cannot load, and `\x1e{"t":"log",…}` for each console call. Readiness is that message, never a
//! sleep. The process dies with us: it is in its own process group, is killed on drop, gets
//! SIGKILL if our process dies (Linux), and exits when its stdin (our pipe) closes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::conn::{ConnBudget, ConnPool, Full};
use crate::limits::{self, Place};
use crate::logs::{Level, LogEvent, LogSink};
use crate::netpolicy::{self, ApiRoute, NetAllow, WorkerNet};
use crate::public::{PathMask, Places};
use crate::{FunctionSpec, RuntimeError};

/// How many stderr lines a worker keeps to explain a crash.
const STDERR_TAIL: usize = 20;
/// Longest output line kept whole; longer ones are cut (a runaway print must not eat memory).
const MAX_LINE: usize = 256 * 1024;

/// What every worker needs from the runtime that starts it.
pub(crate) struct WorkerContext {
    pub deno: PathBuf,
    pub host_script: PathBuf,
    /// The host's import map (`base44:runtime` only).
    pub import_map: PathBuf,
    /// Where import maps with SDK substitutions are written ([`crate::sdk`]).
    pub maps_dir: PathBuf,
    pub host_dir: PathBuf,
    pub deno_dir: PathBuf,
    pub sockets_dir: PathBuf,
    pub tmp_dir: PathBuf,
    pub inherit_env: bool,
    /// `serve`: each app's own Deno cache, a clean environment and Landlock.
    pub isolation: Option<crate::sandbox::WorkerIsolation>,
    pub error_details: bool,
    pub net_allow: NetAllow,
    pub api: Arc<ApiRoute>,
    /// How many connections to workers may be open (shared by all workers).
    pub conn_budget: Arc<ConnBudget>,
    /// Folders whose paths error answers never show (`RuntimeConfig::private_dirs`).
    pub private_dirs: Vec<PathBuf>,
    pub boot_timeout: Duration,
    pub stop_grace: Duration,
    /// The most memory a worker may use (`RuntimeConfig::function_memory`).
    pub function_memory: u64,
    /// The workers whose memory the runtime watches; a new one is added as soon as its process
    /// exists, so that a module allocating while it loads is watched too.
    pub watched: Arc<Mutex<Vec<std::sync::Weak<Worker>>>>,
    pub logs: Arc<dyn LogSink>,
    pub epoch: Instant,
}

pub(crate) struct Worker {
    pub spec: Arc<FunctionSpec>,
    pub pid: Option<u32>,
    /// Connections to the worker's socket.
    pub conns: ConnPool,
    in_flight: AtomicUsize,
    /// Microseconds since the runtime's epoch when the last request ended (or the worker
    /// started): idleness, and which idle worker was used least recently.
    last_used: AtomicU64,
    retired: AtomicBool,
    /// Its place among the runtime's live workers, given back when it is retired, killed or
    /// exits (see `limits::Places`).
    place: Mutex<Option<Place>>,
    /// Set when it is stopped for its memory (the watch) or says it ran out (its stderr).
    out_of_memory: Arc<AtomicBool>,
    /// Stop at once with SIGKILL instead of closing stdin and waiting for the grace period.
    hard_stop: AtomicBool,
    /// Its resident set at the last sample, in bytes (0 before the first).
    memory: AtomicU64,
    /// `RuntimeConfig::function_memory`, for messages.
    memory_limit: u64,
    /// Cancelled to ask the owner task to stop the process.
    stop: CancellationToken,
    /// Cancelled by the owner task once the process has exited and its output is drained.
    exited: CancellationToken,
    exit_reason: Mutex<Option<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    tagger: Tagger,
    epoch: Instant,
    /// Microseconds from spawn to ready; 0 until ready.
    boot_us: AtomicU64,
    /// Leases taken so far: the first request of a worker is its cold start.
    leases: AtomicU64,
    /// The token with which the host marks the error answers it writes itself
    /// ([`crate::public::FAILURE_HEADER`]).
    pub failure_mark: String,
    /// What callers of `serve` may see of this worker's paths.
    pub paths: PathMask,
    /// Requests refused because no connection could be opened, since the last note in the log.
    refused: AtomicU64,
    /// Milliseconds since the epoch of the last such note, plus one; 0 before the first.
    refused_noted: AtomicU64,
}

impl Worker {
    /// Starts a process for `spec` and waits until it listens, fails to load, or dies.
    /// `place` is its place among the live workers (`None` in tests of the worker alone).
    pub async fn spawn(
        ctx: &WorkerContext,
        id: u64,
        spec: Arc<FunctionSpec>,
        place: Option<Place>,
    ) -> Result<Arc<Worker>, RuntimeError> {
        let started = Instant::now();
        // Each socket has a folder of its own: a sandboxed worker may create its socket there and
        // nowhere near another worker's.
        let socket_dir = ctx.sockets_dir.join(format!("w{id}"));
        crate::sandbox::create_private_dir(&socket_dir)?;
        let socket = socket_dir.join("http.sock");
        let tmp = ctx.tmp_dir.join(format!("w{id}"));
        std::fs::create_dir_all(&tmp)?;
        let deno_dir = match &ctx.isolation {
            Some(isolation) => isolation.caches.app_dir(&spec.app_id)?,
            None => ctx.deno_dir.clone(),
        };
        let packages: Vec<PathBuf> = ctx.isolation.iter().flat_map(|i| i.caches.packages()).collect();
        let mut homebase = vec![ctx.host_dir.clone(), ctx.sockets_dir.clone(), ctx.tmp_dir.clone()];
        homebase.extend(ctx.sockets_dir.parent().map(Path::to_path_buf));
        homebase.extend(crate::deno::cache_dir().parent().map(Path::to_path_buf));
        let paths = PathMask::new(&Places {
            entry: Some(&spec.entry),
            root: spec.read_paths.first().map(PathBuf::as_path).filter(|root| spec.entry.starts_with(root)),
            tmp: Some(&tmp),
            deno_dir: Some(&deno_dir),
            packages: &packages,
            homebase: &homebase,
            private: &ctx.private_dirs,
        });
        let failure_mark = random_token();

        // The SDK versions it imports that Homebase replaces go into an import map of its own.
        let sdk = {
            let (entry, paths) = (spec.entry.clone(), spec.read_paths.clone());
            tokio::task::spawn_blocking(move || crate::sdk::plan(&entry, &paths)).await.unwrap_or_default()
        };
        let import_map = match sdk.is_empty() {
            true => ctx.import_map.clone(),
            false => {
                let runtime = file_url(&ctx.host_dir.join("runtime.js"));
                crate::sdk::write_import_map(&ctx.maps_dir, &crate::sdk::import_map(&runtime, &sdk))?
            }
        };

        let mut code = vec![ctx.host_dir.clone(), import_map.clone()];
        code.extend(ctx.isolation.iter().flat_map(|i| i.caches.packages()));
        code.extend(spec.read_paths.iter().cloned());
        let mut read = vec![deno_dir.clone(), socket.clone(), tmp.clone()];
        read.extend(code.iter().cloned());
        let mut write = vec![socket.clone(), tmp.clone()];
        let net = WorkerNet::new(&ctx.net_allow.union(&spec.net_allow), &netpolicy::own_addresses());
        // A restricted worker reaches Homebase's API over the server's socket (netpolicy::ApiRoute).
        let api = if net.is_restricted() { ctx.api.origins() } else { None };
        let node = match api {
            Some(_) => {
                let paths = spec.read_paths.clone();
                tokio::task::spawn_blocking(move || netpolicy::mentions_node(&paths)).await.unwrap_or(true)
            }
            None => false,
        };
        if api.is_some() {
            read.push(ctx.api.socket.clone());
            write.push(ctx.api.socket.clone());
        }
        let mut cmd = Command::new(&ctx.deno);
        cmd.arg("run")
            .arg("--quiet")
            .arg("--no-config")
            .arg("--no-prompt")
            .arg(limits::v8_heap_flag(ctx.function_memory))
            .args(ctx.isolation.iter().map(|_| "--cached-only")) // packages come from deploy checks
            .arg(format!("--import-map={}", import_map.display()))
            .args(net.deno_args())
            .arg("--allow-env")
            .arg(format!("--allow-read={}", join_paths(&read)))
            .arg(format!("--allow-write={}", join_paths(&write)))
            .arg(&ctx.host_script);
        // Before the sandbox's hook, which would refuse the write to /proc/self.
        limits::confine_memory(&mut cmd, ctx.function_memory);
        if let Some(isolation) = &ctx.isolation {
            let mut write = vec![socket_dir.clone(), tmp.clone(), deno_dir.clone()];
            if api.is_some() {
                write.push(ctx.api.socket.clone());
            }
            isolation.apply(&mut cmd, &ctx.deno, &code, &write, &tmp, &deno_dir)?;
        } else if !ctx.inherit_env {
            cmd.env_clear();
            for key in ["PATH", "HOME", "DENO_DIR", "LANG", "TZ"] {
                if let Some(value) = std::env::var_os(key) {
                    cmd.env(key, value);
                }
            }
        }
        let secrets: Vec<&(String, String)> = crate::sandbox::allowed_secrets(&spec.env).collect();
        cmd.envs(secrets.iter().map(|(k, v)| (k, v)))
            .env("BASE44_APP_ID", &spec.app_id)
            .env("DENO_NO_PACKAGE_JSON", "1")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .env("NO_COLOR", "1")
            .env("TMPDIR", &tmp)
            .env("HOMEBASE_ENTRY", file_url(&spec.entry))
            .env("HOMEBASE_SOCKET", &socket)
            .env("HOMEBASE_FUNCTION", &spec.name)
            .env("HOMEBASE_ERROR_DETAILS", if ctx.error_details { "1" } else { "0" })
            .env("HOMEBASE_FAILURE_MARK", &failure_mark)
            .env("HOMEBASE_SECRET_NAMES", secrets.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(","))
            .envs(api.iter().flat_map(|origins| {
                [
                    ("HOMEBASE_API_SOCKET", ctx.api.socket.as_os_str()),
                    ("HOMEBASE_API_ORIGINS", origins.as_ref()),
                    ("HOMEBASE_API_NODE", (if node { "1" } else { "0" }).as_ref()),
                ]
            }))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        die_with_parent(&mut cmd);
        net.confine(&mut cmd)?;
        let mut child = cmd.spawn()?;
        let pid = child.id();

        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (ready_tx, ready_rx) = oneshot::channel();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tagger = Tagger::new(spec.clone(), ctx.logs.clone());
        let out_of_memory = Arc::new(AtomicBool::new(false));
        let pumps = [
            tokio::spawn(pump_stdout(stdout, tagger.clone(), ready_tx)),
            tokio::spawn(pump_stderr(stderr, tagger.clone(), stderr_tail.clone(), out_of_memory.clone())),
        ];

        let worker = Arc::new(Worker {
            spec,
            pid,
            conns: ConnPool::new(socket.clone(), ctx.conn_budget.clone()),
            in_flight: AtomicUsize::new(0),
            last_used: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            place: Mutex::new(place),
            out_of_memory,
            hard_stop: AtomicBool::new(false),
            memory: AtomicU64::new(0),
            memory_limit: ctx.function_memory,
            stop: CancellationToken::new(),
            exited: CancellationToken::new(),
            exit_reason: Mutex::new(None),
            stderr_tail,
            tagger,
            epoch: ctx.epoch,
            boot_us: AtomicU64::new(0),
            leases: AtomicU64::new(0),
            failure_mark,
            paths,
            refused: AtomicU64::new(0),
            refused_noted: AtomicU64::new(0),
        });
        worker.touch();
        {
            let mut watched = ctx.watched.lock().unwrap();
            watched.retain(|w| w.strong_count() > 0);
            watched.push(Arc::downgrade(&worker));
        }
        tokio::spawn(own_process(worker.clone(), child, stdin, pumps, ctx.stop_grace, socket_dir, tmp));

        let boot = tokio::time::timeout(ctx.boot_timeout, ready_rx).await;
        let (failure, reason) = match boot {
            Ok(Ok(Ok(()))) => {
                worker.boot_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                worker.system_log(
                    Level::Info,
                    format!("worker started in {} ms (pid {})", started.elapsed().as_millis(), pid.unwrap_or(0)),
                );
                for substitution in &sdk {
                    let (level, line) = substitution.note();
                    worker.system_log(level, line);
                }
                return Ok(worker);
            }
            Ok(Ok(Err(load_error))) => {
                let reason = format!("its module did not load: {}", worker.paths.line(&load_error));
                (load_error, reason)
            }
            Ok(Err(_)) => {
                // stdout closed without a message: the process died early (or closed its
                // stdout). Wait for the owner task to reap it so the exit status and stderr
                // are known.
                if worker.exited_within(ctx.boot_timeout).await {
                    (worker.death_detail(), worker.exit_reason())
                } else {
                    let closed = "the worker closed its output without becoming ready";
                    (
                        format!("The worker closed its output without becoming ready. {}", worker.stderr_text()),
                        closed.into(),
                    )
                }
            }
            Err(_) => (
                format!(
                    "The worker did not become ready within {}s. {}",
                    ctx.boot_timeout.as_secs(),
                    worker.stderr_text()
                ),
                format!("the worker did not become ready within {}s", ctx.boot_timeout.as_secs()),
            ),
        };
        worker.stop.cancel();
        worker.release_place();
        if worker.is_out_of_memory() {
            return Err(RuntimeError::OutOfMemory { function: worker.spec.name.clone(), limit: ctx.function_memory });
        }
        worker.system_log(Level::Error, format!("failed to start: {failure}"));
        Err(RuntimeError::BootFailed { function: worker.spec.name.clone(), detail: failure, reason })
    }

    pub fn is_alive(&self) -> bool {
        !self.exited.is_cancelled() && !self.stop.is_cancelled()
    }

    /// Whether the process has exited and its output is drained.
    pub fn has_exited(&self) -> bool {
        self.exited.is_cancelled()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_micros() as u64;
        Duration::from_micros(now.saturating_sub(self.last_used.load(Ordering::Relaxed)))
    }

    /// When its last request ended (or it started), in microseconds since the runtime's epoch.
    pub fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        self.last_used.store(self.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Takes a lease for one request, unless the worker is retired: a lease taken before
    /// [`retire`](Worker::retire) looked keeps the worker running until it is dropped, and one
    /// that sees the retirement is given back (sequentially consistent on both sides).
    pub fn try_lease(self: &Arc<Self>) -> Option<Lease> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.retired.load(Ordering::SeqCst) {
            if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.stop.cancel();
            }
            return None;
        }
        let first = self.leases.fetch_add(1, Ordering::Relaxed) == 0;
        let boot = first.then(|| Duration::from_micros(self.boot_us.load(Ordering::Relaxed)));
        Some(Lease { worker: self.clone(), boot })
    }

    /// Stops the worker once its in-flight requests are done. It no longer counts among the
    /// live workers.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        self.release_place();
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.stop.cancel();
        }
    }

    /// Stops the worker now, whatever it is doing.
    pub fn kill(&self, reason: &str) {
        if self.is_alive() {
            *self.exit_reason.lock().unwrap() = Some(reason.to_string());
        }
        self.release_place();
        self.stop.cancel();
    }

    /// Kills the worker at once (SIGKILL, no grace) because its resident set, `used` bytes, is
    /// over the limit. Its requests are answered [`RuntimeError::OutOfMemory`].
    pub fn kill_out_of_memory(&self, used: u64) {
        if !self.is_alive() || self.out_of_memory.swap(true, Ordering::SeqCst) {
            return;
        }
        let limit = limits::show_bytes(self.memory_limit);
        let reason = format!(
            "worker stopped (out_of_memory): it used {}, more than the {limit} function-memory allows",
            limits::show_bytes(used)
        );
        self.system_log(Level::Error, reason.clone());
        self.hard_stop.store(true, Ordering::SeqCst);
        self.kill(&reason);
    }

    /// Whether it was stopped for its memory, or said it ran out.
    pub fn is_out_of_memory(&self) -> bool {
        self.out_of_memory.load(Ordering::SeqCst)
    }

    /// Notes the resident set of its last sample.
    pub fn set_memory(&self, bytes: u64) {
        self.memory.store(bytes, Ordering::Relaxed);
    }

    /// Its resident set at the last sample, in bytes (`None` before the first).
    pub fn memory(&self) -> Option<u64> {
        Some(self.memory.load(Ordering::Relaxed)).filter(|bytes| *bytes > 0)
    }

    fn release_place(&self) {
        drop(self.place.lock().unwrap().take());
    }

    pub async fn wait_exited(&self) {
        self.exited.cancelled().await
    }

    /// Whether the process has exited, waiting up to `grace` for it to be reaped.
    pub async fn exited_within(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.exited.cancelled()).await.is_ok()
    }

    /// Why the process died, with the last lines of its stderr.
    pub fn death_detail(&self) -> String {
        let reason = self.exit_reason.lock().unwrap().clone().unwrap_or_else(|| "the worker exited".into());
        let tail = self.stderr_text();
        if tail.is_empty() { reason } else { format!("{reason}. {tail}") }
    }

    /// Why the process died (its exit status or why it was stopped), without its output.
    pub fn exit_reason(&self) -> String {
        self.exit_reason.lock().unwrap().clone().unwrap_or_else(|| "the worker exited".into())
    }

    fn stderr_text(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap();
        tail.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// Counts a request refused because no connection to the worker could be opened, and says so
    /// in the function's log at most every [`REFUSED_NOTE_EVERY`], with how many were refused.
    pub fn note_refused(&self, full: Full) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let noted = self.refused_noted.load(Ordering::Relaxed);
        let due = noted == 0 || now.saturating_sub(noted) >= REFUSED_NOTE_EVERY.as_millis() as u64;
        if !due || self.refused_noted.compare_exchange(noted, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        let refused = self.refused.swap(0, Ordering::Relaxed).max(1);
        let why = match full {
            Full::Worker(max) => format!("this function has {max} requests in flight, the most one function may have"),
            Full::Server(max) => {
                format!("functions have {max} requests in flight together, the most the server allows")
            }
        };
        self.system_log(Level::Warning, format!("{refused} request(s) refused with 503: {why}"));
    }

    /// A line Homebase writes about this worker (start, stop, crash).
    pub fn system_log(&self, level: Level, message: String) {
        self.tagger.emit(level, message, None, true);
    }

    /// A line Homebase writes about one request to this worker.
    pub fn request_log(&self, level: Level, message: String, request_id: Option<String>) {
        self.tagger.emit(level, message, request_id, true);
    }
}

/// One request's hold on a worker: the worker is not stopped for idleness or retirement while a
/// lease is alive. Dropped when the response body ends.
pub(crate) struct Lease {
    pub worker: Arc<Worker>,
    /// `Some(boot time)` when this is the worker's first request (a cold start).
    pub boot: Option<Duration>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let worker = &self.worker;
        worker.touch();
        if worker.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && worker.retired.load(Ordering::SeqCst) {
            worker.stop.cancel();
        }
    }
}

/// Owns the child process: stops it when asked (stdin closed, so the host finishes its
/// `waitUntil` work and exits; SIGKILL after the grace period), reaps it, drains its output, and
/// cleans its socket and temp folder.
async fn own_process(
    worker: Arc<Worker>,
    mut child: Child,
    stdin: Option<ChildStdin>,
    pumps: [tokio::task::JoinHandle<()>; 2],
    grace: Duration,
    socket_dir: PathBuf,
    tmp: PathBuf,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = worker.stop.cancelled() => {
            drop(stdin); // the host exits when its stdin closes
            if worker.hard_stop.load(Ordering::SeqCst) {
                let _ = child.start_kill();
            }
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        }
    };
    // Every line the process printed is delivered before it counts as exited.
    for pump in pumps {
        let _ = pump.await;
    }
    let requested = worker.stop.is_cancelled();
    worker.release_place();
    let out_of_memory = worker.is_out_of_memory();
    {
        let mut reason = worker.exit_reason.lock().unwrap();
        if out_of_memory && reason.is_none() {
            *reason = Some(format!(
                "the worker ran out of memory (out_of_memory): it reached the {} function-memory allows",
                limits::show_bytes(worker.memory_limit)
            ));
        }
        if reason.is_none() {
            *reason = Some(match &status {
                Ok(s) => describe_exit(s),
                Err(e) => format!("the worker could not be waited for: {e}"),
            });
        }
    }
    if out_of_memory && !requested {
        worker.system_log(Level::Error, format!("worker stopped: {}", worker.exit_reason()));
    } else if !requested {
        worker.system_log(Level::Error, format!("worker exited unexpectedly: {}", worker.death_detail()));
    }
    let _ = std::fs::remove_dir_all(&socket_dir);
    let _ = std::fs::remove_dir_all(&tmp);
    worker.exited.cancel();
}

fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the worker exited with code {code}"),
        (None, Some(9)) => "the worker was killed (SIGKILL; out of memory?)".into(),
        (None, Some(signal)) => format!("the worker was killed by signal {signal}"),
        (None, None) => "the worker exited".into(),
    }
}

/// Tags worker output with the function it came from. Every line about a worker goes through
/// one of its clones (the output pumps, the worker itself, hence its leases), so the sink hears
/// [`LogSink::worker_started`] when the first is made and [`LogSink::worker_gone`] when the last
/// is dropped: no line of the worker can follow that.
#[derive(Clone)]
struct Tagger(Arc<Tagged>);

struct Tagged {
    spec: Arc<FunctionSpec>,
    logs: Arc<dyn LogSink>,
}

impl Drop for Tagged {
    fn drop(&mut self) {
        self.logs.worker_gone(&self.spec);
    }
}

impl std::ops::Deref for Tagger {
    type Target = Tagged;
    fn deref(&self) -> &Tagged {
        &self.0
    }
}

impl Tagger {
    fn new(spec: Arc<FunctionSpec>, logs: Arc<dyn LogSink>) -> Tagger {
        logs.worker_started(&spec);
        Tagger(Arc::new(Tagged { spec, logs }))
    }

    fn log(&self, level: Level, message: String, request_id: Option<String>) {
        self.emit(level, message, request_id, false);
    }

    fn emit(&self, level: Level, message: String, request_id: Option<String>, system: bool) {
        self.logs.emit(LogEvent {
            id: 0,
            time: SystemTime::now(),
            app_id: self.spec.app_id.clone(),
            function: self.spec.name.clone(),
            version: self.spec.version.clone(),
            level,
            request_id,
            message,
            system,
        });
    }
}

#[derive(Deserialize)]
struct HostMessage {
    t: String,
    #[serde(default)]
    l: Option<String>,
    #[serde(default)]
    m: Option<String>,
    #[serde(default)]
    r: Option<String>,
}

async fn pump_stdout(stdout: impl AsyncRead + Unpin, tagger: Tagger, ready: oneshot::Sender<Result<(), String>>) {
    let mut ready = Some(ready);
    let mut lines = LineReader::new(stdout);
    while let Some(line) = lines.next().await {
        let Some(json) = line.strip_prefix('\x1e') else {
            tagger.log(Level::Info, line, None);
            continue;
        };
        let Ok(msg) = serde_json::from_str::<HostMessage>(json) else {
            tagger.log(Level::Info, line, None);
            continue;
        };
        match msg.t.as_str() {
            "ready" => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            "load-error" => {
                let message = msg.m.unwrap_or_default();
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(message));
                } else {
                    tagger.log(Level::Error, message, None);
                }
            }
            _ => {
                let level = msg.l.as_deref().and_then(Level::parse).unwrap_or(Level::Info);
                tagger.log(level, msg.m.unwrap_or_default(), msg.r);
            }
        }
    }
}

/// Stderr lines become error lines of the log. Once the worker says it ran out of memory, the
/// flag is set and what follows (V8's C stack trace) stays out of the log.
async fn pump_stderr(
    stderr: impl AsyncRead + Unpin,
    tagger: Tagger,
    tail: Arc<Mutex<VecDeque<String>>>,
    out_of_memory: Arc<AtomicBool>,
) {
    let mut lines = LineReader::new(stderr);
    let mut dying = false;
    while let Some(line) = lines.next().await {
        {
            let mut tail = tail.lock().unwrap();
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        if dying {
            continue;
        }
        if limits::is_out_of_memory_line(&line) {
            dying = true;
            out_of_memory.store(true, Ordering::SeqCst);
        }
        tagger.log(Level::Error, line, None);
    }
}

/// Reads lines (without the newline), cutting overlong ones.
struct LineReader<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(reader: R) -> Self {
        LineReader { reader: BufReader::with_capacity(64 * 1024, reader), buf: Vec::new() }
    }

    async fn next(&mut self) -> Option<String> {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if self.buf.last() == Some(&b'\n') {
                    self.buf.pop();
                }
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                if self.buf.len() > MAX_LINE {
                    self.buf.truncate(MAX_LINE);
                }
                Some(String::from_utf8_lossy(&self.buf).into_owned())
            }
        }
    }
}

/// How often at most a worker's log says that requests were refused ([`Worker::note_refused`]).
const REFUSED_NOTE_EVERY: Duration = Duration::from_secs(10);

/// 32 random hex digits.
fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first line of `text` with every `file://` URL cut to its file name: what `serve` may
/// show of a load error (`Module not found "file:///srv/…/x.ts"` → `Module not found "x.ts"`).
pub(crate) fn first_line_without_paths(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("file://") {
        out.push_str(&rest[..start]);
        let url = &rest[start..];
        let end =
            url.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | '>')).unwrap_or(url.len());
        let name = url[..end].rsplit('/').next().unwrap_or_default();
        out.push_str(name);
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",")
}

pub(crate) fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => url.push(byte as char),
            _ => url.push_str(&format!("%{byte:02X}")),
        }
    }
    url
}

/// Asks Linux to SIGKILL the worker when our process dies, even by SIGKILL.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it only sets the
    // child's parent-death signal between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_reasons_keep_the_first_line_without_paths() {
        let load = "TypeError: Module not found \"file:///srv/data/deployments/abc/lib.ts\".\n    at file:///srv/data/deployments/abc/entry.ts:1:8";
        assert_eq!(first_line_without_paths(load), "TypeError: Module not found \"lib.ts\".");
        let parse = "error: The module's source code could not be parsed: Expected ';' at file:///x/y/entry.ts:2:5";
        assert_eq!(
            first_line_without_paths(parse),
            "The module's source code could not be parsed: Expected ';' at entry.ts:2:5"
        );
        assert_eq!(first_line_without_paths("\nError: boom\n  at x"), "Error: boom");
    }

    #[test]
    fn file_urls_escape_unusual_characters() {
        assert_eq!(file_url(Path::new("/a b/c#d.ts")), "file:///a%20b/c%23d.ts");
        assert_eq!(file_url(Path::new("/x/entry.ts")), "file:///x/entry.ts");
    }

    #[tokio::test]
    async fn line_reader_splits_and_cuts_lines() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\r\ntwo\n{long}\nlast");
        let mut reader = LineReader::new(input.as_bytes());
        assert_eq!(reader.next().await.as_deref(), Some("one"));
        assert_eq!(reader.next().await.as_deref(), Some("two"));
        assert_eq!(reader.next().await.map(|l| l.len()), Some(MAX_LINE));
        assert_eq!(reader.next().await.as_deref(), Some("last"));
        assert_eq!(reader.next().await, None);
    }
}

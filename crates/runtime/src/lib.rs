//! The Deno supervisor: it owns every Deno process Homebase runs.
//!
//! It finds or provisions Deno ([`deno`]), starts one worker per function on that function's
//! first request (concurrent first requests share one start), proxies a streaming request to the
//! worker over a Unix socket and streams the response back, enforces the function timeout,
//! replaces crashed workers, stops idle ones, holds workers to their limits (memory, requests in
//! flight, how many live at once: [`limits`]), gives every function an SDK version that exists
//! and loads ([`sdk`]), and turns everything a worker prints into [`LogEvent`]s for a [`LogSink`]. It knows nothing of HTTP routes, apps' storage or auth: the
//! server hands it a [`FunctionSpec`] and a request.

mod check;
mod conn;
pub mod deno;
mod error;
pub mod limits;
pub mod logs;
pub mod netpolicy;
mod pool;
mod public;
pub mod sandbox;
pub mod sdk;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub use check::CHECK_RETRY_AFTER;
pub use error::{OVERLOADED_RETRY_AFTER, RuntimeError};
pub use logs::{Level, LogEvent, LogSink};
pub use netpolicy::NetAllow;
pub use pool::{ResponseBody, Runtime, WorkerInfo};
pub use sandbox::{Isolation, SandboxMode, secret_name_problem};

/// The body type requests are proxied with.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything the runtime needs to run one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub app_id: String,
    pub name: String,
    /// Absolute path of the entry module.
    pub entry: PathBuf,
    /// Folders and files the worker may read (the function's folder, `shared/`).
    pub read_paths: Vec<PathBuf>,
    /// Identifies the code: a deployment id, or a fingerprint of the files in dev. A worker
    /// whose version differs from the spec's is retired and replaced.
    pub version: String,
    /// Extra environment (secrets).
    pub env: Vec<(String, String)>,
    /// What this function may reach besides what [`RuntimeConfig::net_allow`] allows (its app's
    /// `function-net-allow`).
    pub net_allow: NetAllow,
}

/// Limits and places. Defaults suit `homebase dev`.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// A fixed Deno executable; `None` finds or installs one ([`deno::locate_or_install`]).
    pub deno: Option<PathBuf>,
    /// Private folder for host files, sockets and worker temp folders; `None` makes a temp one.
    pub work_dir: Option<PathBuf>,
    /// How long one request may run (5 minutes, as on Base44).
    pub function_timeout: Duration,
    /// A worker with no request for this long is stopped.
    pub idle_timeout: Duration,
    /// How long a worker may take to load its module.
    pub boot_timeout: Duration,
    /// How long a stopping worker gets to finish its `waitUntil` work before SIGKILL.
    pub stop_grace: Duration,
    /// Pass Homebase's own environment to workers (dev: that is where local secrets live).
    /// Ignored with `isolation`.
    pub inherit_env: bool,
    /// `serve`: confine workers and deploy checks ([`sandbox`]); `None` (dev) runs them plainly.
    pub isolation: Option<Isolation>,
    /// How long a deploy check may run before it is stopped.
    pub check_timeout: Duration,
    /// How many deploy checks may run at once; more are refused ([`RuntimeError::Busy`]).
    pub max_checks: usize,
    /// Error answers may carry stack traces, paths and the worker's output (dev). Off (serve),
    /// an uncaught exception answers its message's first line and the request id, and the
    /// rest goes to the function's log only.
    pub error_details: bool,
    /// What every worker may reach on the network besides the public internet
    /// (`function-net-allow`, see [`netpolicy`]); `*` (the default, for dev) is everything.
    pub net_allow: NetAllow,
    /// Folders whose paths error answers never show when `error_details` is off (`serve`: the
    /// data folder), besides the ones the runtime knows: each path under them is shown as
    /// `<data>/…` (see the `public` module).
    pub private_dirs: Vec<PathBuf>,
    /// The most memory one worker may use, in bytes (`function-memory`): V8's heap is held to
    /// it, and a worker whose resident set grows past it is stopped and its requests answered
    /// [`RuntimeError::OutOfMemory`] (see [`limits`]).
    pub function_memory: u64,
    /// The most requests one function handles at once (`function-concurrency`); as many more
    /// wait for their turn, up to the function timeout, and the rest are refused with
    /// [`RuntimeError::ConcurrencyLimit`]. 0: no limit of its own (the worker connections'
    /// share still applies, see [`Runtime::limit_worker_connections`]).
    pub function_concurrency: usize,
    /// The most workers alive at once (`max-workers`). To start one more, the least recently
    /// used idle worker is stopped; with none idle, [`RuntimeError::TooManyWorkers`].
    pub max_workers: usize,
}

/// 512 MiB, as Base44's functions have.
pub const DEFAULT_FUNCTION_MEMORY: u64 = 512 << 20;
/// About 5 GB of memory when every worker is idle, and no more than a small server can hold.
pub const DEFAULT_MAX_WORKERS: usize = 100;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            deno: None,
            work_dir: None,
            function_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(300),
            boot_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            inherit_env: true,
            isolation: None,
            check_timeout: Duration::from_secs(60),
            max_checks: default_max_checks(),
            error_details: true,
            net_allow: NetAllow::any(),
            private_dirs: Vec::new(),
            function_memory: DEFAULT_FUNCTION_MEMORY,
            function_concurrency: 0,
            max_workers: DEFAULT_MAX_WORKERS,
        }
    }
}

/// Twice the number of CPUs: a deploy check mostly waits for downloads.
pub fn default_max_checks() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

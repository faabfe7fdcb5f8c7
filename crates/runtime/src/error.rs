//! What can go wrong between a request and a function, and who is to blame.

use std::time::Duration;

/// How long a caller refused with [`RuntimeError::Overloaded`] is asked to wait (`Retry-After`).
pub const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Failures of the runtime. Each maps to an HTTP status and a stable code; the message is a
/// sentence that the server sends to the caller as it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// No usable Deno: not found, too old, or the npm install failed.
    #[error("Deno is not available: {message}")]
    Deno { message: String },
    /// The function's module failed to load (syntax error, missing import, no handler, …).
    /// `detail` has the load error or the worker's stderr; `reason` says why in a line without
    /// output, stacks or paths (what `serve` answers, see [`RuntimeConfig::error_details`](crate::RuntimeConfig)).
    #[error("Function '{function}' failed to start")]
    BootFailed { function: String, detail: String, reason: String },
    /// The worker went away while handling the request. `detail` and `reason` as for
    /// [`BootFailed`](RuntimeError::BootFailed).
    #[error("Function '{function}' crashed while handling the request")]
    Crashed { function: String, detail: String, reason: String },
    /// The request ran past the function timeout; the worker was replaced.
    #[error("Function '{function}' did not finish within {}s", timeout.as_secs_f64())]
    Timeout { function: String, timeout: Duration },
    /// A module Deno cannot load: a syntax error or an import that does not resolve.
    #[error("The function's code does not load")]
    ModuleInvalid { detail: String },
    /// Deno did not finish checking a deployment in time; the check was stopped.
    #[error("Deno did not finish checking the code within {}s", timeout.as_secs_f64())]
    CheckTimeout { timeout: Duration },
    /// Every slot for deploy checks is taken; retry after `retry_after`.
    #[error("Too many deploys are being checked right now")]
    Busy { detail: String, retry_after: Duration },
    /// Functions cannot be confined as `serve` requires.
    #[error("Functions cannot be sandboxed on this system: {message}")]
    Sandbox { message: String },
    /// The function's worker, or all workers together, hold as many connections as allowed
    /// (`limit`, see [`Runtime::limit_worker_connections`](crate::Runtime::limit_worker_connections)):
    /// the request was refused at once. Retry after [`OVERLOADED_RETRY_AFTER`].
    #[error("{}", if *all_workers { "The server is handling too many function requests".to_string() } else { format!("Function '{function}' is handling too many requests") })]
    Overloaded { function: String, limit: usize, all_workers: bool },
    /// The function's worker used more memory than `function-memory` allows and was stopped;
    /// the next request starts a fresh one.
    #[error("Function '{function}' ran out of memory")]
    OutOfMemory { function: String, limit: u64 },
    /// The function has `limit` requests in flight (`function-concurrency`) and `waiting` more
    /// wait for their turn: the request was refused. Retry after [`OVERLOADED_RETRY_AFTER`].
    #[error("Function '{function}' is handling as many requests as it may")]
    ConcurrencyLimit { function: String, limit: usize, waiting: usize },
    /// `limit` workers (`max-workers`) are alive and each has a request in flight, so none could
    /// be stopped to start one for `function`. Retry after [`OVERLOADED_RETRY_AFTER`].
    #[error("The server runs as many function workers as it may")]
    TooManyWorkers { function: String, limit: usize },
    /// The runtime is shutting down and takes no new requests.
    #[error("The server is shutting down")]
    ShuttingDown,
    /// An I/O failure on our side (spawning a process, writing host files).
    #[error("Internal error: {message}")]
    Io { message: String },
}

impl From<std::io::Error> for RuntimeError {
    fn from(error: std::io::Error) -> Self {
        RuntimeError::Io { message: error.to_string() }
    }
}

impl RuntimeError {
    pub fn status(&self) -> u16 {
        match self {
            RuntimeError::BootFailed { .. } | RuntimeError::Crashed { .. } | RuntimeError::OutOfMemory { .. } => 502,
            RuntimeError::Timeout { .. } => 504,
            RuntimeError::ShuttingDown
            | RuntimeError::Overloaded { .. }
            | RuntimeError::ConcurrencyLimit { .. }
            | RuntimeError::TooManyWorkers { .. } => 503,
            RuntimeError::ModuleInvalid { .. } => 422,
            RuntimeError::CheckTimeout { .. } => 504,
            RuntimeError::Busy { .. } => 429,
            RuntimeError::Deno { .. } | RuntimeError::Io { .. } | RuntimeError::Sandbox { .. } => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::Deno { .. } => "deno_unavailable",
            RuntimeError::BootFailed { .. } => "function_boot_failed",
            RuntimeError::Crashed { .. } => "function_crashed",
            RuntimeError::Timeout { .. } => "function_timeout",
            RuntimeError::ShuttingDown => "shutting_down",
            RuntimeError::Overloaded { all_workers: false, .. } => "function_busy",
            RuntimeError::Overloaded { all_workers: true, .. } => "server_busy",
            RuntimeError::OutOfMemory { .. } => "out_of_memory",
            RuntimeError::ConcurrencyLimit { .. } => "concurrency_limit",
            RuntimeError::TooManyWorkers { .. } => "too_many_workers",
            RuntimeError::ModuleInvalid { .. } => "module_invalid",
            RuntimeError::CheckTimeout { .. } => "check_timeout",
            RuntimeError::Busy { .. } => "too_many_checks",
            RuntimeError::Sandbox { .. } => "sandbox_unavailable",
            RuntimeError::Io { .. } => "internal",
        }
    }

    /// How long a caller should wait before retrying, for the errors that say to retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RuntimeError::Overloaded { .. }
            | RuntimeError::ConcurrencyLimit { .. }
            | RuntimeError::TooManyWorkers { .. } => Some(OVERLOADED_RETRY_AFTER),
            RuntimeError::Busy { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Why a start failed or a worker crashed, in one line without the worker's output, stack
    /// traces or paths; `None` for the other errors.
    pub fn reason(&self) -> Option<&str> {
        match self {
            RuntimeError::BootFailed { reason, .. } | RuntimeError::Crashed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The longer explanation: the load error with file and line, the crash reason, a hint.
    pub fn detail(&self) -> String {
        match self {
            RuntimeError::Deno { message } => message.clone(),
            RuntimeError::BootFailed { detail, .. }
            | RuntimeError::Crashed { detail, .. }
            | RuntimeError::ModuleInvalid { detail } => detail.clone(),
            RuntimeError::Timeout { timeout, .. } => format!(
                "The request was stopped after {}s and the function's worker was replaced. Raise the \
                 limit with --function-timeout or HOMEBASE_FUNCTION_TIMEOUT if it needs longer.",
                timeout.as_secs_f64()
            ),
            RuntimeError::CheckTimeout { timeout } => format!(
                "Deno was stopped after {}s while it loaded the function's imports (a slow or unreachable \
                 registry?). Retry the deploy; an operator can raise deploy-check-timeout.",
                timeout.as_secs_f64()
            ),
            RuntimeError::Busy { detail, .. } | RuntimeError::Sandbox { message: detail } => detail.clone(),
            RuntimeError::ShuttingDown => "Retry against another node or after the restart.".into(),
            RuntimeError::Overloaded { limit, all_workers: false, .. } => format!(
                "It has {limit} requests in flight, the most one function may have at once (a quarter of what the \
                 server allows for all functions, which follows max-connections and the open-file limit). Retry in \
                 a moment."
            ),
            RuntimeError::Overloaded { limit, all_workers: true, .. } => format!(
                "Functions have {limit} requests in flight together, the most this server allows at once (it \
                 follows max-connections and the open-file limit). Retry in a moment."
            ),
            RuntimeError::OutOfMemory { limit, .. } => format!(
                "Its worker used more than the {} a worker may use and was stopped, with every request it was \
                 handling; the next request starts a fresh one. Raise the limit with function-memory \
                 (HOMEBASE_FUNCTION_MEMORY, --function-memory) if the function needs more.",
                crate::limits::show_bytes(*limit)
            ),
            RuntimeError::ConcurrencyLimit { limit, waiting, .. } => format!(
                "function-concurrency allows {limit} at once; that many are in flight and {waiting} more wait for \
                 their turn. Retry in a moment; an operator can raise function-concurrency \
                 (HOMEBASE_FUNCTION_CONCURRENCY, --function-concurrency)."
            ),
            RuntimeError::TooManyWorkers { function, limit } => format!(
                "{limit} workers are running, the most max-workers allows, and each is handling a request, so none \
                 could be stopped to start one for '{function}'. Retry in a moment; an operator can raise \
                 max-workers (HOMEBASE_MAX_WORKERS, --max-workers)."
            ),
            RuntimeError::Io { message } => message.clone(),
        }
    }
}

//! The limits that keep functions from taking the host down: memory per worker
//! ([`RuntimeConfig::function_memory`](crate::RuntimeConfig)), requests in flight per function
//! ([`Gate`]) and live workers per server ([`Places`]).
//!
//! **Memory** is bounded three ways, because no one of them is enough alone:
//!
//! - V8's heap limit (`--max-old-space-size`, set to the limit): JavaScript objects past it end
//!   the process at once with V8's "Fatal JavaScript out of memory", which the worker's stderr
//!   pump recognises ([`is_out_of_memory_line`]).
//! - The resident set of every worker, read from `/proc/<pid>/statm` every
//!   [`MEMORY_SAMPLE_EVERY`] by the runtime's watch task: a worker over the limit is killed
//!   (SIGKILL). This catches what V8's heap does not count (typed arrays, buffers, WebAssembly).
//! - `RLIMIT_DATA` at the limit plus [`data_headroom`] (Deno reserves about 0.6 GB of writable
//!   address space before it runs anything): an allocation past it fails in the worker
//!   (`RangeError: Array buffer allocation failed`) instead of taking the machine's memory
//!   between two samples.
//!
//! Workers also get `oom_score_adj` 1000, so that if the kernel runs out of memory anyway, it
//! kills a worker rather than Homebase or its database. Control groups would be exact, but they
//! need a delegated cgroup v2 subtree, which a server is rarely given; the limit of the whole
//! service belongs to the service manager (`MemoryMax=` in systemd).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often the resident set of every worker is read.
pub(crate) const MEMORY_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The writable address space a worker may have beyond its memory limit (`RLIMIT_DATA`): what
/// Deno reserves before any function code runs (about 560 MB for Deno 2 on 2 CPUs: a 512 MB
/// region of its own and the stacks of its threads, whose number grows with the CPUs), with room
/// to spare: 1 GiB and 16 MiB per CPU.
pub(crate) fn data_headroom() -> u64 {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    (1 << 30) + cpus * (16 << 20)
}

/// The smallest memory limit that still runs a function with the SDK (Deno, its Node layer and
/// the SDK take about 70 MB before a request).
pub const MIN_FUNCTION_MEMORY: u64 = 128 << 20;

/// The resident set of process `pid` in bytes, from `/proc/<pid>/statm` (Linux; `None` elsewhere
/// or when the process is gone).
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf reads a constant of the system.
    #[allow(unsafe_code)]
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as u64,
        _ => 4096,
    })
}

/// The flag that holds V8's old generation to `limit` bytes (in MiB, at least 16).
pub(crate) fn v8_heap_flag(limit: u64) -> String {
    format!("--v8-flags=--max-old-space-size={}", (limit >> 20).max(16))
}

/// Whether a line a worker printed on stderr says it ran out of memory: V8's fatal heap error,
/// a failed allocation of the process (`RLIMIT_DATA`), or Rust's allocation failure.
pub(crate) fn is_out_of_memory_line(line: &str) -> bool {
    [
        "Fatal JavaScript out of memory",
        "JavaScript heap out of memory",
        "Fatal process out of memory",
        "memory allocation of ",
    ]
    .iter()
    .any(|marker| line.contains(marker))
}

/// `1.5 GiB`, `512 MiB`, `300 KiB`: a size for a message.
pub fn show_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value.fract() == 0.0 { format!("{value:.0} {unit}") } else { format!("{value:.1} {unit}") };
        }
    }
    format!("{bytes} bytes")
}

/// Has the child of `cmd` lower its own standing with the kernel's OOM killer and cap its
/// writable address space (see the module documentation), between fork and exec. Registered
/// before the sandbox's hook, which would refuse the `/proc/self` write.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn confine_memory(cmd: &mut tokio::process::Command, limit: u64) {
    let cap = limit + data_headroom();
    let data = libc::rlimit { rlim_cur: cap, rlim_max: cap };
    // SAFETY: between fork and exec only async-signal-safe calls run: open, write, close and
    // setrlimit on values prepared before the fork. A failure of the OOM score is ignored (it
    // only protects the host further); one of setrlimit fails the spawn.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"1000".as_ptr().cast(), 4);
                libc::close(fd);
            }
            if libc::setrlimit(libc::RLIMIT_DATA, &data) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn confine_memory(_: &mut tokio::process::Command, _: u64) {}

/// A function's requests in flight: at most `limit` at once, and at most as many again waiting
/// for their turn ([`RuntimeConfig::function_concurrency`](crate::RuntimeConfig)).
pub(crate) struct Gate {
    limit: usize,
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// A request's turn; the next waiting request goes when it is dropped.
pub(crate) type Turn = OwnedSemaphorePermit;

/// Why [`Gate::enter`] refused: how many requests ran and waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateFull {
    pub limit: usize,
    pub waiting: usize,
}

impl Gate {
    pub fn new(limit: usize) -> Gate {
        Gate { limit, running: Arc::new(Semaphore::new(limit)), waiting: AtomicUsize::new(0) }
    }

    /// A turn at once, else a place in the queue and a turn within `wait`; refused when the
    /// queue is full or the wait runs out.
    pub async fn enter(&self, wait: Duration) -> Result<Turn, GateFull> {
        if let Ok(turn) = self.running.clone().try_acquire_owned() {
            return Ok(turn);
        }
        let full = || GateFull { limit: self.limit, waiting: self.waiting.load(Ordering::Relaxed) };
        let queued =
            self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.limit).then_some(n + 1));
        if queued.is_err() {
            return Err(full());
        }
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _leave = Leave(&self.waiting);
        match tokio::time::timeout(wait, self.running.clone().acquire_owned()).await {
            Ok(Ok(turn)) => Ok(turn),
            _ => Err(full()),
        }
    }
}

/// The live workers of a runtime: at most `max` ([`RuntimeConfig::max_workers`](crate::RuntimeConfig)).
/// A starting or running worker holds a [`Place`]; a worker gives it back when it is retired,
/// killed or exits, whichever comes first (a retired worker finishing its `waitUntil` work no
/// longer counts).
pub(crate) struct Places {
    max: usize,
    used: AtomicUsize,
}

pub(crate) struct Place(Arc<Places>);

impl Places {
    pub fn new(max: usize) -> Arc<Places> {
        Arc::new(Places { max: max.max(1), used: AtomicUsize::new(0) })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// A place, if fewer than `max` are taken.
    pub fn take(self: &Arc<Places>) -> Option<Place> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| Place(self.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts the requests a limit refused and says so at most every [`NOTE_EVERY`]: `due` returns
/// how many were refused since the last note when a note is due.
#[derive(Default)]
pub(crate) struct Refusals {
    count: AtomicU64,
    /// Milliseconds since `epoch` of the last note, plus one; 0 before the first.
    noted: AtomicU64,
}

/// How often at most a function's log says that a limit refused its requests.
pub(crate) const NOTE_EVERY: Duration = Duration::from_secs(10);

impl Refusals {
    pub fn due(&self, epoch: std::time::Instant) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = epoch.elapsed().as_millis() as u64 + 1;
        let noted = self.noted.load(Ordering::Relaxed);
        let due = noted == 0 || now.saturating_sub(noted) >= NOTE_EVERY.as_millis() as u64;
        if !due || self.noted.compare_exchange(noted, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return None;
        }
        Some(self.count.swap(0, Ordering::Relaxed).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_lines_are_recognised() {
        assert!(is_out_of_memory_line("# Fatal JavaScript out of memory: Reached heap limit"));
        assert!(is_out_of_memory_line("memory allocation of 1048576 bytes failed"));
        assert!(!is_out_of_memory_line("Error: out of cheese"));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(show_bytes(512 << 20), "512 MiB");
        assert_eq!(show_bytes(3 << 29), "1.5 GiB");
        assert_eq!(show_bytes(100), "100 bytes");
        assert_eq!(v8_heap_flag(512 << 20), "--v8-flags=--max-old-space-size=512");
    }

    #[test]
    fn this_process_has_a_resident_set() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes(std::process::id()).unwrap();
            assert!(rss > 1 << 20, "{rss}");
        }
        assert_eq!(resident_bytes(u32::MAX), None);
    }

    #[test]
    fn refusals_are_noted_once_per_period_with_their_count() {
        let refusals = Refusals::default();
        let epoch = std::time::Instant::now();
        assert_eq!(refusals.due(epoch), Some(1), "the first is noted at once");
        assert_eq!(refusals.due(epoch), None);
        assert_eq!(refusals.due(epoch), None);
        let later = epoch.checked_sub(NOTE_EVERY).unwrap(); // as if the period had passed
        assert_eq!(refusals.due(later), Some(3), "the next note counts everything since");
    }

    #[test]
    fn places_are_taken_up_to_the_limit_and_given_back() {
        let places = Places::new(2);
        let a = places.take().unwrap();
        let _b = places.take().unwrap();
        assert!(places.take().is_none());
        drop(a);
        assert_eq!(places.used(), 1);
        assert!(places.take().is_some());
    }

    #[tokio::test]
    async fn a_gate_queues_as_many_as_it_runs_and_refuses_the_rest() {
        let gate = Arc::new(Gate::new(1));
        let first = gate.enter(Duration::from_secs(60)).await.unwrap();
        let queued = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(Duration::from_secs(60)).await.map(drop) }
        });
        while gate.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.enter(Duration::from_secs(60)).await.unwrap_err(), GateFull { limit: 1, waiting: 1 });
        drop(first);
        assert_eq!(queued.await.unwrap(), Ok(()), "the queued request gets its turn");
        assert!(gate.enter(Duration::from_secs(60)).await.is_ok(), "and afterwards all is well");
        let _held = gate.enter(Duration::from_secs(60)).await.unwrap();
        let timed_out = gate.enter(Duration::from_millis(1)).await.unwrap_err();
        assert_eq!(timed_out.limit, 1);
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0, "a request that gave up leaves the queue");
    }
}

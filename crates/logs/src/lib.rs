//! The log pipeline of Homebase: where the lines a function prints go once the runtime has
//! turned them into [`LogEvent`]s.
//!
//! It owns [`LogHub`] (numbering, secret masking per app, a bounded buffer of recent lines, the
//! live feed for followers, the fan-out), the masking of secret values ([`mask_values`], the
//! per-app matchers behind [`LogHub::mask_text`]), [`LogWriter`] (the batching writer to the
//! log store, with retention sweeps), the [`Sink`] interface of the other consumers (the
//! terminal of `dev` and `serve`, a test's capture), and the conversions between a line and its
//! stored row ([`first_id`], [`micros`], [`level_number`], [`level_of`]). It knows nothing of
//! HTTP: the logs API and its live stream are the server's (`homebase_server::logs_api`), the
//! storage is `homebase_store::LogStore`, the events come from `homebase_runtime`.
//!
//! [`LogHub::emit`] is called from the tasks that read worker output and from the request path
//! (the invocation line), so it never waits: it masks the app's secret values in the message,
//! numbers the line, and hands it on, all under one short lock so that the numbering, the live
//! feed and the store's queue see lines in the same order.
//!
//! **The store writer and backpressure.** Lines go to the store through an unbounded channel to
//! one [`LogWriter`] task, which takes everything queued (up to [`MAX_BATCH`] lines) and commits
//! it in one transaction, then takes what queued meanwhile: under load the batches grow and the
//! commits stay few; when idle each line is written at once. The channel is unbounded on purpose:
//! a bounded one must either drop lines when full or make `emit` wait, and `emit` runs where
//! waiting is not allowed (synchronous callers, the request path). The queue can only grow when
//! functions print faster than SQLite stores batches (hundreds of thousands of lines a second);
//! the writer warns when its queue passes [`QUEUE_WARNING`] lines. Nothing is dropped while the
//! server is up: a batch that fails to commit is retried until it is stored (see
//! `store_batch`); [`LogWriter::flush`] waits until everything queued so far is stored
//! (shutdown and stream resumption use it).
//!
//! **Ids** start from the clock (see [`first_id`]), so that they keep growing across restarts.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use aho_corasick::{AhoCorasick, MatchKind};
use homebase_runtime::{FunctionSpec, Level, LogEvent, LogSink};
use homebase_store::{LogRecord, LogStore, Retention};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

/// What a secret value is replaced with in log lines.
pub const MASK: &str = "********";
/// Secret values shorter than this are not masked: masking `1` or `true` would garble every
/// line, and a value that short is no secret anyway.
pub const MIN_MASKED_LEN: usize = 6;
/// The most lines the writer commits in one transaction.
pub const MAX_BATCH: usize = 8192;
/// Queue length at which the writer warns that it falls behind.
pub const QUEUE_WARNING: usize = 1_000_000;
/// How often the writer applies retention.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The first pause before the writer retries a batch that could not be stored; it doubles up
/// to [`MAX_RETRY_PAUSE`].
pub const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two attempts to store a batch.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Where the hub hands every line besides the store and live subscribers: the terminal of
/// `dev` and `serve`, a test's capture. `emit` must not wait (see [`LogSink`]); `flush` may.
pub trait Sink: LogSink {
    /// Returns once every line emitted so far is out (written to the terminal, say). Blocking:
    /// call it off the async threads. The default has nothing to wait for.
    fn flush(&self) {}
}

/// Keeps the most recent events and fans every event out to subscribers, the store and sinks.
pub struct LogHub {
    state: Mutex<HubState>,
    capacity: usize,
    live: broadcast::Sender<Arc<LogEvent>>,
    sinks: Vec<Arc<dyn Sink>>,
    writer: Option<LogWriter>,
    /// App id → the values masked in its lines.
    masks: RwLock<HashMap<String, AppMasks>>,
}

struct HubState {
    recent: VecDeque<Arc<LogEvent>>,
    next_id: u64,
}

impl LogHub {
    pub fn new(capacity: usize, sinks: Vec<Arc<dyn Sink>>) -> Arc<LogHub> {
        LogHub::build(capacity, sinks, None, 1)
    }

    /// A hub that also stores every line through `writer`, numbering lines from `next_id` (see
    /// [`LogStore::next_id`]) or from the current time in microseconds since the Unix epoch,
    /// whichever is larger (see [`first_id`]).
    pub fn with_store(capacity: usize, sinks: Vec<Arc<dyn Sink>>, writer: LogWriter, next_id: u64) -> Arc<LogHub> {
        LogHub::build(capacity, sinks, Some(writer), first_id(next_id, SystemTime::now()))
    }

    fn build(capacity: usize, sinks: Vec<Arc<dyn Sink>>, writer: Option<LogWriter>, next_id: u64) -> Arc<LogHub> {
        let (live, _) = broadcast::channel(4096);
        Arc::new(LogHub {
            state: Mutex::new(HubState {
                recent: VecDeque::with_capacity(capacity.min(4096)),
                next_id: next_id.max(1),
            }),
            capacity,
            live,
            sinks,
            writer,
            masks: RwLock::new(HashMap::new()),
        })
    }

    /// The kept events, oldest first.
    pub fn recent(&self) -> Vec<LogEvent> {
        self.state.lock().unwrap().recent.iter().map(|event| LogEvent::clone(event)).collect()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEvent>> {
        self.live.subscribe()
    }

    /// Events from now on, and the id of the last line numbered before them (0 when none was):
    /// every line with a larger id reaches the receiver (or, if it lags, the store), none with
    /// a smaller one does. Both are taken under the lock that [`emit`](LogSink::emit) numbers
    /// and sends under.
    pub fn subscribe_at(&self) -> (broadcast::Receiver<Arc<LogEvent>>, u64) {
        let state = self.state.lock().unwrap();
        (self.live.subscribe(), state.next_id - 1)
    }

    /// The id the next line gets.
    pub fn next_id(&self) -> u64 {
        self.state.lock().unwrap().next_id
    }

    /// The store writer, in `serve`.
    pub fn writer(&self) -> Option<&LogWriter> {
        self.writer.as_ref()
    }

    /// Returns once every sink has put out the lines emitted so far (see [`Sink::flush`]).
    /// Blocking.
    pub fn flush_sinks(&self) {
        for sink in &self.sinks {
            sink.flush();
        }
    }

    /// From now on, these values are masked in the lines of `app_id`'s functions (values
    /// shorter than [`MIN_MASKED_LEN`] are left alone). Replaces the app's earlier values, but
    /// the values in the environment of a worker that is still running stay masked until it is
    /// gone (see [`LogSink::worker_started`]): a worker retired by a change of secrets finishes
    /// its requests and `waitUntil` work with the old ones, and may print them.
    pub fn set_secrets<'a>(&self, app_id: &str, values: impl IntoIterator<Item = &'a String>) {
        let current: Vec<String> = values.into_iter().filter(|v| v.len() >= MIN_MASKED_LEN).cloned().collect();
        let mut masks = self.masks.write().unwrap();
        let app = masks.entry(app_id.to_string()).or_default();
        app.current = current;
        app.rebuild();
        if app.is_empty() {
            masks.remove(app_id);
        }
    }

    /// `text` with the secret values of `app_id` masked, as in its log lines: for text that
    /// quotes a function's output elsewhere (the detail of a crash in an error body).
    pub fn mask_text<'a>(&self, app_id: &str, text: &'a str) -> Cow<'a, str> {
        match self.matcher(app_id) {
            Some(matcher) => mask_with(&matcher, text),
            None => Cow::Borrowed(text),
        }
    }

    fn matcher(&self, app_id: &str) -> Option<Arc<AhoCorasick>> {
        let masks = self.masks.read().unwrap();
        if masks.is_empty() {
            return None;
        }
        masks.get(app_id).and_then(|app| app.matcher.clone())
    }

    fn mask(&self, event: &mut LogEvent) {
        if let Some(matcher) = self.matcher(&event.app_id)
            && let Cow::Owned(masked) = mask_with(&matcher, &event.message)
        {
            event.message = masked;
        }
    }

    /// Counts the values of a worker's environment in (`started`) or out.
    fn hold(&self, spec: &FunctionSpec, started: bool) {
        let values = spec.env.iter().map(|(_, value)| value).filter(|v| v.len() >= MIN_MASKED_LEN);
        let mut masks = self.masks.write().unwrap();
        let app = masks.entry(spec.app_id.clone()).or_default();
        let mut changed = false;
        for value in values {
            if started {
                let count = app.held.entry(value.clone()).or_default();
                *count += 1;
                changed |= *count == 1 && !app.current.contains(value);
            } else if let Some(count) = app.held.get_mut(value) {
                *count -= 1;
                if *count == 0 {
                    app.held.remove(value);
                    changed |= !app.current.contains(value);
                }
            }
        }
        if changed {
            app.rebuild();
        }
        if app.is_empty() {
            masks.remove(&spec.app_id);
        }
    }
}

/// The values masked in one app's lines: its secrets now, and those in the environment of each
/// worker still running (which may be older ones), counted by worker.
#[derive(Default)]
struct AppMasks {
    current: Vec<String>,
    held: HashMap<String, usize>,
    /// Matches every value of `current` and `held`; `None` when there is none.
    matcher: Option<Arc<AhoCorasick>>,
}

impl AppMasks {
    fn is_empty(&self) -> bool {
        self.current.is_empty() && self.held.is_empty()
    }

    fn rebuild(&mut self) {
        self.matcher = matcher_of(self.current.iter().chain(self.held.keys()).map(String::as_str)).map(Arc::new);
    }
}

/// A matcher of `values`, or `None` when there is none.
fn matcher_of<'v>(values: impl IntoIterator<Item = &'v str>) -> Option<AhoCorasick> {
    let mut patterns: Vec<&str> = values.into_iter().collect();
    if patterns.is_empty() {
        return None;
    }
    patterns.sort_unstable();
    patterns.dedup();
    // Leftmost-longest: a value that contains another is masked whole.
    match AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns) {
        Ok(matcher) => Some(matcher),
        Err(error) => {
            tracing::error!(%error, "could not build the secret mask; lines of this app are not masked");
            None
        }
    }
}

/// `text` with every match of `matcher` replaced by [`MASK`].
fn mask_with<'a>(matcher: &AhoCorasick, text: &'a str) -> Cow<'a, str> {
    if !matcher.is_match(text) {
        return Cow::Borrowed(text);
    }
    let replacements = vec![MASK; matcher.patterns_len()];
    Cow::Owned(matcher.replace_all(text, &replacements))
}

/// `text` with `values` masked (those shorter than [`MIN_MASKED_LEN`] left alone), for text
/// about one worker whose environment is known.
pub fn mask_values<'a, 'v>(values: impl IntoIterator<Item = &'v str>, text: &'a str) -> Cow<'a, str> {
    let found = values.into_iter().filter(|v| v.len() >= MIN_MASKED_LEN && text.contains(*v));
    match matcher_of(found) {
        Some(matcher) => Cow::Owned(mask_with(&matcher, text).into_owned()),
        None => Cow::Borrowed(text),
    }
}

impl LogSink for LogHub {
    fn worker_started(&self, spec: &FunctionSpec) {
        self.hold(spec, true);
    }

    fn worker_gone(&self, spec: &FunctionSpec) {
        self.hold(spec, false);
    }

    fn emit(&self, mut event: LogEvent) {
        self.mask(&mut event);
        let mut state = self.state.lock().unwrap();
        event.id = state.next_id;
        state.next_id += 1;
        // One shared copy for every consumer: this runs once per request (the invocation line).
        let event = Arc::new(event);
        if let Some(writer) = &self.writer {
            writer.push(&event);
        }
        for sink in &self.sinks {
            sink.emit_shared(&event);
        }
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(event.clone());
        }
        if self.capacity > 0 {
            if state.recent.len() == self.capacity {
                state.recent.pop_front();
            }
            state.recent.push_back(event);
        }
    }
}

/// The level's number in the log store: 0 debug, 1 info, 2 warning, 3 error.
pub fn level_number(level: Level) -> u8 {
    match level {
        Level::Debug => 0,
        Level::Info => 1,
        Level::Warning => 2,
        Level::Error => 3,
    }
}

/// The level of a number from the log store.
pub fn level_of(number: u8) -> Level {
    match number {
        0 => Level::Debug,
        1 => Level::Info,
        2 => Level::Warning,
        _ => Level::Error,
    }
}

/// Where a server's numbering of log lines starts: after the largest stored id
/// (`stored_next`), and no lower than `now` in microseconds since the Unix epoch.
///
/// Ids must grow across restarts, or a client resuming after the last id it saw would miss the
/// new lines: the store alone cannot say where the last run stopped, since retention may have
/// emptied it and a `kill -9` loses the lines still queued (which followers may have seen).
/// Lines are numbered one by one from there, so the numbering runs ahead of the clock only
/// while more than a million lines a second are printed: starting from the clock continues
/// above every id an earlier run gave out, unless it ran ahead by more than the restart took,
/// or the clock was set back. Ids stay below 2^53 (exact in JavaScript) until the year 2255.
pub fn first_id(stored_next: u64, now: SystemTime) -> u64 {
    stored_next.max(micros(now).max(1) as u64)
}

/// Microseconds since the Unix epoch.
pub fn micros(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

enum WriterMessage {
    Line(Arc<LogEvent>),
    Flush(oneshot::Sender<()>),
    /// Store what came before, then end.
    Close,
}

/// The queue to the task that writes lines to the log store (see the module docs).
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::UnboundedSender<WriterMessage>,
    queued: Arc<AtomicUsize>,
    failures: watch::Receiver<u64>,
}

impl LogWriter {
    /// Starts the writer task over `store` on `tasks`, applying `retention` at start and every
    /// [`PRUNE_EVERY`]. The task ends after [`close`](LogWriter::close), or when every
    /// `LogWriter` clone is dropped, once it has written what was queued.
    pub fn spawn(
        tasks: &TaskTracker,
        store: LogStore,
        retention: Retention,
    ) -> (LogWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let (failed, failures) = watch::channel(0);
        let task = tasks.spawn(write_lines(store, retention, rx, queued.clone(), failed));
        (LogWriter { tx, queued, failures }, task)
    }

    /// Asks the writer task to store every line queued so far and end (no more retention
    /// sweeps). Lines pushed afterwards are not stored, and say so in the server log.
    pub fn close(&self) {
        let _ = self.tx.send(WriterMessage::Close);
    }

    fn push(&self, event: &Arc<LogEvent>) {
        let depth = self.queued.fetch_add(1, Ordering::Relaxed);
        if depth == QUEUE_WARNING {
            tracing::warn!("{depth} log lines wait to be stored; functions print faster than the disk takes them");
        }
        if self.tx.send(WriterMessage::Line(event.clone())).is_err() {
            tracing::error!("the log writer has stopped; a log line was not stored");
        }
    }

    /// Waits until every line queued before this call is stored. While the store fails (see
    /// [`failures`](LogWriter::failures)), that is until it works again.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(WriterMessage::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Lines waiting to be stored.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// How many attempts to store a batch have failed since the writer started.
    pub fn failures(&self) -> watch::Receiver<u64> {
        self.failures.clone()
    }
}

async fn write_lines(
    store: LogStore,
    retention: Retention,
    mut rx: mpsc::UnboundedReceiver<WriterMessage>,
    queued: Arc<AtomicUsize>,
    failures: watch::Sender<u64>,
) {
    prune(&store, retention).await;
    let mut last_prune = Instant::now();
    let mut messages = Vec::with_capacity(MAX_BATCH);
    loop {
        let wait = PRUNE_EVERY.saturating_sub(last_prune.elapsed());
        let received = match tokio::time::timeout(wait, rx.recv_many(&mut messages, MAX_BATCH)).await {
            Ok(0) => break, // every sender is gone and the queue is empty
            Ok(n) => n,
            Err(_) => 0,
        };
        let mut lines = Vec::with_capacity(received);
        let mut flushes = Vec::new();
        let mut closing = false;
        for message in messages.drain(..) {
            match message {
                WriterMessage::Line(event) => lines.push(record_of(&event)),
                WriterMessage::Flush(done) => flushes.push(done),
                WriterMessage::Close => closing = true,
            }
        }
        let count = lines.len();
        store_batch(&store, lines, &failures, retention, &mut last_prune).await;
        queued.fetch_sub(count, Ordering::Relaxed);
        // Only now: a flush is answered once the lines queued before it are stored.
        for done in flushes {
            let _ = done.send(());
        }
        if closing {
            break;
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            prune(&store, retention).await;
            last_prune = Instant::now();
        }
    }
}

/// The store's row for `event` (made by the writer task, off the request path).
fn record_of(event: &LogEvent) -> LogRecord {
    LogRecord {
        id: event.id,
        time_us: micros(event.time),
        app_id: event.app_id.clone(),
        function: event.function.clone(),
        version: event.version.clone(),
        level: level_number(event.level),
        request_id: event.request_id.clone(),
        message: event.message.clone(),
        system: event.system,
    }
}

/// Stores a batch, retrying a failed commit (a busy or full disk, a damaged file) until it
/// works: while the server is up no line is dropped. Pauses double from
/// [`FIRST_RETRY_PAUSE`] to [`MAX_RETRY_PAUSE`]; every failure is an error in the server log,
/// and retention still runs on time (it may free the space a full disk lacks). Lines that
/// arrive meanwhile wait in the queue, and flushes wait for them.
async fn store_batch(
    store: &LogStore,
    lines: Vec<LogRecord>,
    failures: &watch::Sender<u64>,
    retention: Retention,
    last_prune: &mut Instant,
) {
    if lines.is_empty() {
        return;
    }
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempt = 1u64;
    loop {
        match store.insert(lines.clone()).await {
            Ok(()) => {
                if attempt > 1 {
                    tracing::warn!(attempt, "{} log lines were stored after failed attempts", lines.len());
                }
                return;
            }
            Err(error) => {
                failures.send_modify(|n| *n += 1);
                tracing::error!(
                    %error,
                    attempt,
                    store = store.location(),
                    "storing {} log lines failed; they stay queued and are retried in {} ms",
                    lines.len(),
                    pause.as_millis()
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
                attempt += 1;
                if last_prune.elapsed() >= PRUNE_EVERY {
                    prune(store, retention).await;
                    *last_prune = Instant::now();
                }
            }
        }
    }
}

async fn prune(store: &LogStore, retention: Retention) {
    match store.prune(retention, micros(SystemTime::now())).await {
        Ok(report) if report.deleted_by_age + report.deleted_by_size > 0 => {
            tracing::info!(
                by_age = report.deleted_by_age,
                by_size = report.deleted_by_size,
                used_bytes = report.used_bytes,
                "log retention"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "log retention failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(app: &str, message: &str) -> LogEvent {
        LogEvent {
            id: 0,
            time: SystemTime::now(),
            app_id: app.into(),
            function: "f".into(),
            version: "v".into(),
            level: Level::Info,
            request_id: None,
            message: message.into(),
            system: false,
        }
    }

    #[test]
    fn secret_values_of_the_lines_app_are_masked() {
        let hub = LogHub::new(10, vec![]);
        let secrets = ["sk_live_123456".to_string(), "sk_live_123456789".to_string(), "short".to_string()];
        hub.set_secrets("a", secrets.iter());
        hub.emit(event("a", "key sk_live_123456789 and sk_live_123456, short stays"));
        hub.emit(event("b", "other app: sk_live_123456"));
        let lines: Vec<_> = hub.recent().into_iter().map(|e| (e.id, e.message)).collect();
        assert_eq!(
            lines,
            [(1, "key ******** and ********, short stays".to_string()), (2, "other app: sk_live_123456".to_string())]
        );
        hub.set_secrets("a", std::iter::empty());
        hub.emit(event("a", "sk_live_123456"));
        assert_eq!(hub.recent()[2].message, "sk_live_123456", "a deleted secret is no longer masked");
    }

    fn worker_of(app: &str, version: &str, values: &[&str]) -> FunctionSpec {
        FunctionSpec {
            app_id: app.into(),
            name: "f".into(),
            entry: "/e.ts".into(),
            read_paths: vec![],
            version: version.into(),
            env: values.iter().enumerate().map(|(i, v)| (format!("S{i}"), v.to_string())).collect(),
            net_allow: Default::default(),
        }
    }

    #[test]
    fn values_a_running_worker_holds_stay_masked_until_it_is_gone() {
        let hub = LogHub::new(0, vec![]);
        let old = ["old_value_1".to_string()];
        hub.set_secrets("a", old.iter());
        let first = worker_of("a", "v1", &["old_value_1"]);
        let second = worker_of("a", "v1", &["old_value_1"]);
        hub.worker_started(&first);
        hub.worker_started(&second);

        // Rotated, then deleted: both workers of v1 still run with the old value.
        hub.set_secrets("a", ["new_value_2".to_string()].iter());
        assert_eq!(hub.mask_text("a", "old_value_1 new_value_2"), "******** ********");
        hub.set_secrets("a", std::iter::empty());
        assert_eq!(hub.mask_text("a", "old_value_1 new_value_2"), "******** new_value_2");
        hub.worker_gone(&first);
        assert_eq!(hub.mask_text("a", "old_value_1"), "********", "the second worker still holds it");
        hub.worker_gone(&second);
        assert_eq!(hub.mask_text("a", "old_value_1"), "old_value_1");
        assert!(hub.masks.read().unwrap().is_empty(), "nothing is kept for an app with no values");

        // A worker's values that are also current stay masked when it goes.
        hub.set_secrets("a", ["kept_value_3".to_string()].iter());
        let third = worker_of("a", "v2", &["kept_value_3", "short"]);
        hub.worker_started(&third);
        hub.worker_gone(&third);
        assert!(matches!(hub.mask_text("a", "kept_value_3"), Cow::Owned(m) if m == MASK));
        assert!(matches!(hub.mask_text("a", "nothing here"), Cow::Borrowed(_)));
        assert_eq!(hub.mask_text("b", "kept_value_3"), "kept_value_3", "another app's values are its own");
    }

    #[test]
    fn mask_values_masks_the_long_values_found() {
        let text = "bad key sk_test_998877 (id 42)";
        assert_eq!(mask_values(["sk_test_998877", "42", "absent_value"], text), "bad key ******** (id 42)");
        assert!(matches!(mask_values(["absent_value"], text), Cow::Borrowed(_)));
    }

    #[tokio::test]
    async fn the_writer_stores_every_line_in_batches_and_flush_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path().join("logs.db")).await.unwrap();
        let (writer, task) = LogWriter::spawn(&TaskTracker::new(), store.clone(), Retention::default());
        let hub = LogHub::with_store(0, vec![], writer.clone(), store.next_id().await.unwrap());
        let first = hub.next_id();
        for i in 0..20_000 {
            hub.emit(event("a", &format!("line {i}")));
        }
        writer.flush().await;
        assert_eq!(store.count(Some("a"), None).await.unwrap(), 20_000);
        assert_eq!(writer.queued(), 0);
        assert_eq!(*writer.failures().borrow(), 0);
        drop((hub, writer));
        task.await.unwrap();
        assert_eq!(store.next_id().await.unwrap(), first + 20_000);
    }

    #[tokio::test]
    async fn closing_the_writer_stores_what_was_queued_and_ends_its_task() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path().join("logs.db")).await.unwrap();
        let tasks = TaskTracker::new();
        let (writer, task) = LogWriter::spawn(&tasks, store.clone(), Retention::default());
        let hub = LogHub::with_store(0, vec![], writer.clone(), store.next_id().await.unwrap());
        for i in 0..1000 {
            hub.emit(event("a", &format!("line {i}")));
        }
        writer.close();
        tokio::time::timeout(Duration::from_secs(30), task).await.expect("the writer ends once closed").unwrap();
        tasks.close();
        assert!(tasks.is_empty(), "the writer's task was tracked and is done");
        assert_eq!(store.count(Some("a"), None).await.unwrap(), 1000, "every queued line was stored first");
        drop(hub);
    }

    #[test]
    fn numbering_continues_above_the_store_and_the_clock() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = 1_800_000_000_000_000;
        assert_eq!(first_id(1, now), clock, "an empty (or emptied) store starts at the clock");
        assert_eq!(first_id(17, now), clock, "a store of ids from before this scheme");
        assert_eq!(first_id(clock + 500, now), clock + 500, "ids that ran ahead of the clock");
        assert_eq!(first_id(1, SystemTime::UNIX_EPOCH), 1);
        let hub = LogHub::new(0, vec![]);
        let (_live, last) = hub.subscribe_at();
        assert_eq!(last, 0, "nothing numbered yet");
        hub.emit(event("a", "one"));
        let (mut live, last) = hub.subscribe_at();
        assert_eq!((last, hub.next_id()), (1, 2));
        hub.emit(event("a", "two"));
        assert_eq!(live.try_recv().unwrap().id, 2, "the first line after the point");
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_stored_is_retried_until_it_is_and_flush_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        let store = LogStore::open(&path).await.unwrap();
        let (writer, task) = LogWriter::spawn(&TaskTracker::new(), store.clone(), Retention::default());
        let hub = LogHub::with_store(0, vec![], writer.clone(), store.next_id().await.unwrap());
        hub.emit(event("a", "before"));
        writer.flush().await;
        // The table goes away behind the writer's back: every insert fails for real.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("ALTER TABLE logs RENAME TO logs_away").unwrap();
        for i in 0..100 {
            hub.emit(event("a", &format!("line {i}")));
        }
        let flush = tokio::spawn({
            let writer = writer.clone();
            async move { writer.flush().await }
        });
        let mut failures = writer.failures();
        failures.wait_for(|n| *n >= 3).await.unwrap();
        assert!(!flush.is_finished(), "a flush is not answered while its lines are not stored");
        assert_eq!(writer.queued(), 100);
        other.execute_batch("ALTER TABLE logs_away RENAME TO logs").unwrap();
        tokio::time::timeout(Duration::from_secs(30), flush).await.expect("the retry succeeds").unwrap();
        assert_eq!(store.count(Some("a"), None).await.unwrap(), 101, "no line was dropped");
        assert_eq!(writer.queued(), 0);
        drop((hub, writer));
        task.await.unwrap();
    }
}

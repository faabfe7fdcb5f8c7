//! The log store: every line functions print, in its own SQLite database file.
//!
//! On PostgreSQL ([`LogStore::open_postgres`]) the lines live in a `logs` table of their own
//! with the same interface and retention (see the `postgres::logs` module); the rest of this
//! page describes the SQLite log file.
//!
//! **Following lines** that other writers stored: [`LogStore::watch`] follows the newest
//! [`LogStore::cursor`], and [`LogStore::tail`] reads the lines after a cursor in the order
//! they were committed. On SQLite (one node, one writer) the cursor is the line id; on
//! PostgreSQL it is a commit-ordered sequence number every node's inserts take, announced to
//! every node with `NOTIFY`.
//!
//! Logs live apart from the main database (`logs.db` beside `homebase.db`) so that their volume
//! never waits on, or holds up, the main store's writes, and so that their schema is versioned on
//! its own. The file runs in WAL mode with `synchronous = NORMAL` and incremental auto-vacuum,
//! so that what retention deletes is given back to the file system.
//!
//! A [`LogStore`] has two connections: one that writes (batches, one transaction each, and
//! retention), and one that reads (queries), so that a query never waits for a batch to commit.
//!
//! Rows are keyed by an id the caller assigns ([`LogRecord::id`]): the server numbers lines as
//! they are printed, so the id a live subscriber sees is the id that is stored, and a client
//! that reconnects can ask for everything after the last id it saw. [`LogStore::next_id`] tells
//! the numbering where to continue after a restart. On PostgreSQL, which several nodes write
//! to, the database numbers the lines instead ([`LogStore::numbers_lines`]), in commit order.
//!
//! Indexes serve the queries the logs API makes: one function's lines by time
//! (`(app_id, function, time)`), an app's lines by time (`(app_id, time)`). Lines after an id
//! (a client catching up) are read in id order straight from the table, which is ordered by id.
//! Retention by age deletes from the oldest id on (ids and times grow together), so it needs no
//! index of its own.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params_from_iter};
use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::postgres::logs::PgLogs;

/// The log database's schema, one migration per version, as in the main store.
const LOG_MIGRATIONS: &[&str] = &[
    // 1: log lines.
    r#"
    CREATE TABLE logs (
        id          INTEGER PRIMARY KEY,    -- assigned by the caller, grows with time
        time        INTEGER NOT NULL,       -- microseconds since the Unix epoch
        app_id      TEXT NOT NULL,
        function    TEXT NOT NULL,
        version     TEXT NOT NULL,          -- the deployment the worker ran
        level       INTEGER NOT NULL,       -- 0 debug, 1 info, 2 warning, 3 error
        request_id  TEXT,
        system      INTEGER NOT NULL,       -- 1: a line Homebase wrote about the worker
        message     TEXT NOT NULL
    );
    CREATE INDEX logs_function_time ON logs(app_id, function, time);
    CREATE INDEX logs_app_time ON logs(app_id, time);
    "#,
];

/// The most lines one query returns.
pub const MAX_LOG_QUERY: usize = 1000;

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Unique and increasing in the order lines were printed.
    pub id: u64,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    pub app_id: String,
    pub function: String,
    pub version: String,
    /// 0 debug, 1 info, 2 warning, 3 error.
    pub level: u8,
    pub request_id: Option<String>,
    pub message: String,
    pub system: bool,
}

/// Which lines a query wants. Bounds are inclusive (`since`) and exclusive (`until`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub app_id: String,
    /// Only these functions; empty for every function of the app.
    pub functions: Vec<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// Only this level.
    pub level: Option<u8>,
    /// Only lines with a larger id, in id order (for resuming a stream); `order` is then
    /// ignored.
    pub after_id: Option<u64>,
    /// At most this many (capped at [`MAX_LOG_QUERY`]).
    pub limit: usize,
    /// Newest first.
    pub descending: bool,
}

/// How much the log store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Lines older than this are deleted.
    pub max_age: Duration,
    /// When the lines take more than this many bytes of the file, the oldest are deleted until
    /// they take about 90% of it.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_age: Duration::from_secs(7 * 24 * 3600), max_bytes: 1024 * 1024 * 1024 }
    }
}

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted_by_age: u64,
    pub deleted_by_size: u64,
    /// Bytes the remaining lines take (pages in use times the page size).
    pub used_bytes: u64,
}

/// The handle to the log database. Cloning is cheap; clones share the connections.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<LogInner>,
}

enum LogInner {
    Sqlite(SqliteLogs),
    Postgres(PgLogs),
}

struct SqliteLogs {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    location: String,
    /// The largest id stored (the cursor), for [`LogStore::watch`].
    newest: watch::Sender<u64>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("location", &self.location()).finish()
    }
}

impl LogStore {
    /// Opens (creating if needed) the log database at `path` and migrates it.
    pub async fn open(path: impl AsRef<Path>) -> Result<LogStore> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || LogStore::open_blocking(&path))
            .await
            .map_err(|e| StoreError::Database(format!("Opening the log database failed: {e}")))?
    }

    fn open_blocking(path: &Path) -> Result<LogStore> {
        let location = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Io(format!("Could not create the folder {}: {e}", parent.display())))?;
        }
        crate::sqlite::create_private_file(path)?;
        let open = || -> Result<Connection> {
            let conn = Connection::open(path)
                .map_err(|e| StoreError::Database(format!("Could not open the log database {location}: {e}")))?;
            conn.busy_timeout(Duration::from_secs(5))?;
            Ok(conn)
        };
        let mut writer = open()?;
        // Must precede the first table: it decides the file's layout.
        writer.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!("The log database {location} could not switch to WAL mode")));
        }
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut writer, &location)?;
        let reader = open()?;
        let newest: Option<i64> = writer.query_row("SELECT max(id) FROM logs", [], |r| r.get(0))?;
        let (newest, _) = watch::channel(newest.unwrap_or(0) as u64);
        let logs = SqliteLogs { writer: Mutex::new(writer), reader: Mutex::new(reader), location, newest };
        Ok(LogStore { inner: Arc::new(LogInner::Sqlite(logs)) })
    }

    /// Connects to the PostgreSQL database at `url` (as [`Store::open_postgres`] does) and
    /// migrates its `logs` table, which is versioned apart from the main tables.
    ///
    /// [`Store::open_postgres`]: crate::Store::open_postgres
    pub async fn open_postgres(url: &str) -> Result<LogStore> {
        Ok(LogStore { inner: Arc::new(LogInner::Postgres(PgLogs::open(url).await?)) })
    }

    /// The database file, or the PostgreSQL URL without its password.
    pub fn location(&self) -> &str {
        match &*self.inner {
            LogInner::Sqlite(db) => &db.location,
            LogInner::Postgres(db) => &db.location,
        }
    }

    fn postgres(&self) -> Option<&PgLogs> {
        match &*self.inner {
            LogInner::Sqlite(_) => None,
            LogInner::Postgres(db) => Some(db),
        }
    }

    async fn with<R, F>(&self, write: bool, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let LogInner::Sqlite(db) = &*inner else {
                return Err(StoreError::Database("not a SQLite log store".into()));
            };
            let conn = if write { &db.writer } else { &db.reader };
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Database(format!("A log database task failed: {e}")))?
    }

    /// The newest cursor: the position after which [`tail`](LogStore::tail) finds nothing now.
    pub async fn cursor(&self) -> Result<u64> {
        if let Some(db) = self.postgres() {
            return db.cursor().await;
        }
        Ok(self.next_id().await? - 1)
    }

    /// Up to `limit` (at most [`MAX_LOG_QUERY`]) lines stored after cursor `after`, in the
    /// order they were committed, whoever wrote them, and the cursor to continue from.
    pub async fn tail(&self, after: u64, limit: usize) -> Result<(Vec<LogRecord>, u64)> {
        if let Some(db) = self.postgres() {
            return db.tail(after, limit).await;
        }
        let lines = self.query_after_id_any_app(after, limit).await?;
        let next = lines.last().map_or(after, |l| l.id);
        Ok((lines, next))
    }

    async fn query_after_id_any_app(&self, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        let (after, limit) = (after.min(i64::MAX as u64) as i64, limit.min(MAX_LOG_QUERY) as i64);
        self.with(false, move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, time, app_id, function, version, level, request_id, system, message FROM logs
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = statement.query_map([after, limit], record_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// The newest cursor as it changes: lines this store inserted (SQLite), or that any node
    /// inserted (PostgreSQL, announced with `NOTIFY` on a connection that reconnects by itself
    /// and then looks at the table again). Fails with [`StoreError::Unavailable`] when
    /// PostgreSQL cannot be reached now.
    pub async fn watch(&self) -> Result<watch::Receiver<u64>> {
        match &*self.inner {
            LogInner::Sqlite(db) => Ok(db.newest.subscribe()),
            LogInner::Postgres(db) => db.watch().await,
        }
    }

    /// The id after the largest stored one (1 for an empty store).
    pub async fn next_id(&self) -> Result<u64> {
        if let Some(db) = self.postgres() {
            return db.next_id().await;
        }
        self.with(false, |conn| {
            let max: Option<i64> = conn.query_row("SELECT max(id) FROM logs", [], |r| r.get(0))?;
            Ok(max.map_or(1, |m| m as u64 + 1))
        })
        .await
    }

    /// Whether the store gives lines their ids itself (PostgreSQL: ids in commit order, unique
    /// across the nodes writing to it), rather than keeping the ids of the records inserted
    /// (SQLite). Then the ids a server numbered its lines with are not the stored ones, and a
    /// follower reads the store ([`watch`](LogStore::watch), [`tail`](LogStore::tail)) instead
    /// of the server's live feed.
    pub fn numbers_lines(&self) -> bool {
        self.postgres().is_some()
    }

    /// Stores `records` in one transaction. SQLite: a record whose id is already stored is
    /// skipped. PostgreSQL: the lines get the database's ids, in the order of the records' ids
    /// (see [`numbers_lines`](LogStore::numbers_lines)).
    pub async fn insert(&self, records: Vec<LogRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if let Some(db) = self.postgres() {
            return db.insert(records).await;
        }
        let newest = records.iter().map(|r| r.id).max().unwrap_or(0);
        self.with(true, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO logs (id, time, app_id, function, version, level, request_id, system, message)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for r in &records {
                    insert.execute(rusqlite::params![
                        r.id as i64,
                        r.time_us,
                        r.app_id,
                        r.function,
                        r.version,
                        r.level,
                        r.request_id,
                        r.system,
                        r.message
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        if let LogInner::Sqlite(db) = &*self.inner {
            db.newest.send_if_modified(|n| std::mem::replace(n, newest.max(*n)) != newest.max(*n));
        }
        Ok(())
    }

    /// The lines `query` asks for: by time (then id), or after an id in id order.
    pub async fn query(&self, query: LogQuery) -> Result<Vec<LogRecord>> {
        if let Some(db) = self.postgres() {
            return db.query(query).await;
        }
        self.with(false, move |conn| {
            let (sql, args) = query_sql(&query);
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params_from_iter(args), record_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Whether any line of this function is stored.
    pub async fn has_function(&self, app_id: &str, function: &str) -> Result<bool> {
        if let Some(db) = self.postgres() {
            return db.has_function(app_id, function).await;
        }
        let (app_id, function) = (app_id.to_string(), function.to_string());
        self.with(false, move |conn| {
            let found = conn
                .query_row(
                    "SELECT 1 FROM logs WHERE app_id = ?1 AND function = ?2 LIMIT 1",
                    [&app_id, &function],
                    |_| Ok(()),
                )
                .optional()?;
            Ok(found.is_some())
        })
        .await
    }

    /// How many lines are stored: all, one app's (`function` `None`) or one function's.
    pub async fn count(&self, app_id: Option<&str>, function: Option<&str>) -> Result<u64> {
        if let Some(db) = self.postgres() {
            return db.count(app_id, function).await;
        }
        let (app_id, function) = (app_id.map(str::to_string), function.map(str::to_string));
        self.with(false, move |conn| {
            let n: i64 = match (app_id, function) {
                (Some(app), Some(f)) => {
                    conn.query_row("SELECT count(*) FROM logs WHERE app_id = ?1 AND function = ?2", [app, f], |r| {
                        r.get(0)
                    })?
                }
                (Some(app), None) => {
                    conn.query_row("SELECT count(*) FROM logs WHERE app_id = ?1", [app], |r| r.get(0))?
                }
                _ => conn.query_row("SELECT count(*) FROM logs", [], |r| r.get(0))?,
            };
            Ok(n as u64)
        })
        .await
    }

    /// How many lines `function` printed itself (Homebase's own lines about it left out).
    pub async fn count_printed(&self, app_id: &str, function: &str) -> Result<u64> {
        if let Some(db) = self.postgres() {
            return db.count_printed(app_id, function).await;
        }
        let (app_id, function) = (app_id.to_string(), function.to_string());
        self.with(false, move |conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM logs WHERE app_id = ?1 AND function = ?2 AND system = 0",
                [app_id, function],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    /// Deletes lines older than `retention.max_age` (relative to `now_us`), then the oldest
    /// lines while they take more than `retention.max_bytes`, and gives freed pages back to the
    /// file system.
    pub async fn prune(&self, retention: Retention, now_us: i64) -> Result<PruneReport> {
        if let Some(db) = self.postgres() {
            return db.prune(retention, now_us).await;
        }
        self.with(true, move |conn| {
            let mut report = PruneReport::default();
            let cutoff = now_us.saturating_sub(retention.max_age.as_micros().min(i64::MAX as u128) as i64);
            // Ids grow with time: everything before the first young line is old. Scanning up to
            // it costs about as much as deleting what it passes.
            let first_young: Option<i64> = conn
                .query_row("SELECT id FROM logs WHERE time >= ?1 ORDER BY id LIMIT 1", [cutoff], |r| r.get(0))
                .optional()?;
            report.deleted_by_age = match first_young {
                Some(id) => conn.execute("DELETE FROM logs WHERE id < ?1", [id])? as u64,
                None => conn.execute("DELETE FROM logs", [])? as u64,
            };
            let mut used = used_bytes(conn)?;
            let target = retention.max_bytes / 10 * 9;
            // A few rounds at most: each deletes the share of lines that should bring the size
            // to the target.
            for _ in 0..8 {
                if used <= retention.max_bytes {
                    break;
                }
                let rows: i64 = conn.query_row("SELECT count(*) FROM logs", [], |r| r.get(0))?;
                if rows == 0 {
                    break;
                }
                let share = (used - target) as f64 / used as f64;
                let n = ((rows as f64 * share).ceil() as i64).clamp(1, rows);
                let deleted = conn.execute(
                    "DELETE FROM logs WHERE id <= (SELECT id FROM logs ORDER BY id LIMIT 1 OFFSET ?1)",
                    [n - 1],
                )? as u64;
                report.deleted_by_size += deleted;
                used = used_bytes(conn)?;
            }
            if report.deleted_by_age + report.deleted_by_size > 0 {
                // The vacuum shrinks the file as of the next checkpoint; run it now so that the
                // space is free at once and the WAL does not keep the deleted pages.
                // Each step of the pragma frees one page: run it to the end.
                let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
                let mut steps = vacuum.query([])?;
                while steps.next()?.is_some() {}
                drop(steps);
                drop(vacuum);
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            report.used_bytes = used;
            Ok(report)
        })
        .await
    }
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogRecord> {
    Ok(LogRecord {
        id: r.get::<_, i64>(0)? as u64,
        time_us: r.get(1)?,
        app_id: r.get(2)?,
        function: r.get(3)?,
        version: r.get(4)?,
        level: r.get(5)?,
        request_id: r.get(6)?,
        system: r.get(7)?,
        message: r.get(8)?,
    })
}

/// The statement and arguments for `query`.
///
/// A query after an id walks the table in rowid (id) order from that id and stops at the limit:
/// the `+` before `app_id` and `function` keeps SQLite from choosing the `(app_id, function,
/// time)` or `(app_id, time)` index instead, which would visit every line of the function and
/// sort them by id on each page (a client paging through N lines would cost O(N²)).
fn query_sql(query: &LogQuery) -> (String, Vec<rusqlite::types::Value>) {
    let after = query.after_id.is_some();
    let mut sql =
        String::from("SELECT id, time, app_id, function, version, level, request_id, system, message FROM logs WHERE ");
    sql.push_str(if after { "+app_id = ?" } else { "app_id = ?" });
    let mut args: Vec<rusqlite::types::Value> = vec![query.app_id.clone().into()];
    if !query.functions.is_empty() {
        sql.push_str(if after { " AND +function IN (" } else { " AND function IN (" });
        for (i, name) in query.functions.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(name.clone().into());
        }
        sql.push(')');
    }
    if let Some(since) = query.since_us {
        sql.push_str(if after { " AND +time >= ?" } else { " AND time >= ?" });
        args.push(since.into());
    }
    if let Some(until) = query.until_us {
        sql.push_str(if after { " AND +time < ?" } else { " AND time < ?" });
        args.push(until.into());
    }
    if let Some(level) = query.level {
        sql.push_str(" AND level = ?");
        args.push(i64::from(level).into());
    }
    if let Some(after) = query.after_id {
        sql.push_str(" AND id > ? ORDER BY id");
        args.push((after.min(i64::MAX as u64) as i64).into());
    } else if query.descending {
        sql.push_str(" ORDER BY time DESC, id DESC");
    } else {
        sql.push_str(" ORDER BY time, id");
    }
    sql.push_str(" LIMIT ?");
    args.push((query.limit.min(MAX_LOG_QUERY) as i64).into());
    (sql, args)
}

/// Pages in use (not on the free list) times the page size.
fn used_bytes(conn: &Connection) -> Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

fn migrate(conn: &mut Connection, location: &str) -> Result<()> {
    let supported = LOG_MIGRATIONS.len() as i64;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { location: location.to_string(), found, supported });
    }
    for (index, sql) in LOG_MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Database(format!("Log schema migration to version {} failed: {e}", index + 1)))?;
    }
    tx.pragma_update(None, "user_version", supported)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, time_us: i64, function: &str, level: u8, message: &str) -> LogRecord {
        LogRecord {
            id,
            time_us,
            app_id: "app".into(),
            function: function.into(),
            version: "v1".into(),
            level,
            request_id: None,
            message: message.into(),
            system: false,
        }
    }

    fn query(functions: &[&str]) -> LogQuery {
        LogQuery {
            app_id: "app".into(),
            functions: functions.iter().map(|f| f.to_string()).collect(),
            limit: 1000,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn lines_are_found_by_function_time_level_and_after_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::open(dir.path().join("logs.db")).await.unwrap();
        assert_eq!(logs.next_id().await.unwrap(), 1);
        let mut batch = Vec::new();
        for i in 1..=10u64 {
            let function = if i % 2 == 0 { "even" } else { "odd" };
            batch.push(record(i, 1_000 + i as i64, function, (i % 4) as u8, &format!("line {i}")));
        }
        logs.insert(batch.clone()).await.unwrap();
        logs.insert(batch[..2].to_vec()).await.unwrap(); // ids already stored are skipped
        assert_eq!(logs.count(None, None).await.unwrap(), 10);
        assert_eq!(logs.next_id().await.unwrap(), 11);

        let even = logs.query(query(&["even"])).await.unwrap();
        assert_eq!(even.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 4, 6, 8, 10]);
        let newest = logs.query(LogQuery { descending: true, limit: 2, ..query(&[]) }).await.unwrap();
        assert_eq!(newest.iter().map(|r| r.id).collect::<Vec<_>>(), [10, 9]);
        let window = logs.query(LogQuery { since_us: Some(1_003), until_us: Some(1_006), ..query(&[]) }).await.unwrap();
        assert_eq!(window.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4, 5]);
        let errors = logs.query(LogQuery { level: Some(3), ..query(&[]) }).await.unwrap();
        assert_eq!(errors.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 7]);
        let after =
            logs.query(LogQuery { after_id: Some(7), descending: true, ..query(&["odd", "even"]) }).await.unwrap();
        assert_eq!(after.iter().map(|r| r.id).collect::<Vec<_>>(), [8, 9, 10]);
        assert!(logs.has_function("app", "odd").await.unwrap());
        assert!(!logs.has_function("app", "none").await.unwrap());
        assert!(!logs.has_function("other", "odd").await.unwrap());
    }

    /// The plan SQLite picks for `query`, one line per step.
    fn plan(conn: &Connection, query: &LogQuery) -> String {
        let (sql, args) = query_sql(query);
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let steps = statement.query_map(params_from_iter(args), |r| r.get::<_, String>(3)).unwrap();
        steps.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    #[tokio::test]
    async fn queries_after_an_id_walk_the_ids_instead_of_sorting_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        let logs = LogStore::open(&path).await.unwrap();
        for chunk in 0..10u64 {
            let batch = (1..=3000u64).map(|i| {
                let id = chunk * 3000 + i;
                let function = if id % 10 == 0 { "rare" } else { "big" };
                record(id, id as i64 * 100, function, (id % 4) as u8, "x")
            });
            logs.insert(batch.collect()).await.unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        let after = |functions: &[&str]| LogQuery { after_id: Some(29_000), ..query(functions) };
        // Without statistics (a new store), then with them (what `ANALYZE` would leave).
        for analyzed in [false, true] {
            if analyzed {
                conn.execute_batch("ANALYZE").unwrap();
            }
            for q in [
                after(&[]),
                after(&["big"]),
                after(&["big", "rare"]),
                LogQuery { since_us: Some(100), level: Some(1), ..after(&["rare"]) },
            ] {
                let plan = plan(&conn, &q);
                assert!(plan.contains("USING INTEGER PRIMARY KEY (rowid>?)"), "{analyzed} {q:?}: {plan}");
                assert!(!plan.contains("TEMP B-TREE"), "{analyzed} {q:?}: {plan}");
            }
        }
        // Queries by time still use the indexes.
        let newest = plan(&conn, &LogQuery { descending: true, ..query(&["big"]) });
        assert!(newest.contains("logs_function_time"), "{newest}");
        let window = plan(&conn, &LogQuery { since_us: Some(1_000), ..query(&[]) });
        assert!(window.contains("logs_app_time"), "{window}");
        // And the answers are the same.
        let page = logs.query(LogQuery { limit: 5, ..after(&["rare"]) }).await.unwrap();
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [29_010, 29_020, 29_030, 29_040, 29_050]);
        assert_eq!(logs.count_printed("app", "rare").await.unwrap(), 3000);
    }

    #[tokio::test]
    async fn retention_deletes_old_lines_and_keeps_the_size_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        let logs = LogStore::open(&path).await.unwrap();
        let now = 10_000_000_000i64;
        let old: Vec<_> = (1..=100).map(|i| record(i, now - 3_600_000_000 - 1000 + i as i64, "f", 1, "old")).collect();
        logs.insert(old).await.unwrap();
        let young: Vec<_> = (101..=110).map(|i| record(i, now - 1000 + i as i64, "f", 1, "young")).collect();
        logs.insert(young).await.unwrap();
        let keep_an_hour = Retention { max_age: Duration::from_secs(1800), max_bytes: u64::MAX };
        let report = logs.prune(keep_an_hour, now).await.unwrap();
        assert_eq!(report.deleted_by_age, 100);
        assert_eq!(logs.count(None, None).await.unwrap(), 10);

        // 20,000 lines of 500 bytes (~10 MB) into a store allowed 2 MB.
        let text = "x".repeat(500);
        for chunk in 0..20u64 {
            let batch = (0..1000u64).map(|i| {
                let id = 1_000 + chunk * 1000 + i;
                record(id, now + id as i64, "f", 1, &text)
            });
            logs.insert(batch.collect()).await.unwrap();
        }
        let small = Retention { max_age: Duration::from_secs(3600), max_bytes: 2 * 1024 * 1024 };
        let report = logs.prune(small, now).await.unwrap();
        assert!(report.deleted_by_size > 15_000, "{report:?}");
        assert!(report.used_bytes <= small.max_bytes, "{report:?}");
        let left = logs.count(None, None).await.unwrap();
        assert!(left > 1000, "the newest lines stay: {left}");
        // The newest line survived, the oldest went first.
        let newest = logs.query(LogQuery { descending: true, limit: 1, ..query(&[]) }).await.unwrap();
        assert_eq!(newest[0].id, 1_000 + 19 * 1000 + 999);
        let file = std::fs::metadata(&path).unwrap().len();
        assert!(file <= 4 * 1024 * 1024, "freed pages go back to the file system: {file} bytes");
    }

    #[tokio::test]
    async fn lines_are_followed_by_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::open(dir.path().join("logs.db")).await.unwrap();
        assert_eq!(logs.cursor().await.unwrap(), 0);
        let mut newest = logs.watch().await.unwrap();
        logs.insert((1..=5).map(|i| record(i, i as i64, "f", 1, "x")).collect()).await.unwrap();
        assert!(newest.has_changed().unwrap());
        assert_eq!(*newest.borrow_and_update(), 5);
        let (lines, cursor) = logs.tail(2, 2).await.unwrap();
        assert_eq!((lines.iter().map(|l| l.id).collect::<Vec<_>>(), cursor), (vec![3, 4], 4));
        let (lines, cursor) = logs.tail(cursor, 100).await.unwrap();
        assert_eq!((lines.len(), cursor), (1, 5));
        assert_eq!(logs.tail(5, 100).await.unwrap(), (vec![], 5));
        logs.insert(vec![record(3, 3, "f", 1, "again")]).await.unwrap();
        assert!(!newest.has_changed().unwrap(), "a batch of stored ids moves nothing");
        drop(logs);
        assert_eq!(LogStore::open(dir.path().join("logs.db")).await.unwrap().cursor().await.unwrap(), 5);
    }

    #[tokio::test]
    async fn the_log_schema_is_versioned_apart_from_the_main_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        drop(LogStore::open(&path).await.unwrap());
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, LOG_MIGRATIONS.len() as i64);
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let error = LogStore::open(&path).await.unwrap_err();
        assert!(matches!(error, StoreError::SchemaTooNew { found: 99, .. }), "{error}");
    }
}

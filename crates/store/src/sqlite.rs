//! The SQLite backend: one writing connection behind a mutex and, for a file database, a few
//! read-only connections beside it, used on tokio's blocking threads. Reads run on the readers
//! (each in one transaction, so a multi-statement read sees one snapshot), so they never queue
//! behind a write: WAL lets them read the last committed state while a write is in progress. A
//! private in-memory database has only the one connection.
//!
//! A file database runs in WAL mode with foreign keys on, `synchronous = NORMAL` (a commit
//! survives a crash of the process; an OS crash may lose the last commits but never leaves a
//! partial one) and a busy timeout for other processes holding the write lock. Writes start
//! with `BEGIN IMMEDIATE` so that two writers never deadlock upgrading read locks.
//!
//! The schema is versioned with `PRAGMA user_version`: [`MIGRATIONS`] are applied in order, in
//! one transaction, when the database is opened; a database from a newer Homebase is refused.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::content::{self, PreparedDeployment, RollbackTarget};
use crate::error::{Result, StoreError};
use crate::model::{
    ActiveFunction, ApiKey, App, DeployFile, DeployOutcome, DeployStatus, Deployment, GcReport, HistoryEntry, KeyScope,
    StoreStats,
};

/// The schema, one migration per version: `MIGRATIONS[i]` takes version `i` to `i + 1`.
/// Never edit a released migration; append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: apps, keys, content-addressed deployments and their activation.
    r#"
    CREATE TABLE apps (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );

    -- `app_id` NULL: an admin key. Only the SHA-256 of a key is stored.
    CREATE TABLE api_keys (
        id            TEXT PRIMARY KEY NOT NULL,
        app_id        TEXT REFERENCES apps(id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        prefix        TEXT NOT NULL,
        hash          TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER
    );
    CREATE INDEX api_keys_app ON api_keys(app_id);

    -- File contents, once per distinct content (key: SHA-256 hex).
    CREATE TABLE blobs (
        hash     TEXT PRIMARY KEY NOT NULL,
        content  TEXT NOT NULL
    );

    -- Immutable; `id` is the content address of (entry, files, automations).
    CREATE TABLE deployments (
        id           TEXT PRIMARY KEY NOT NULL,
        entry        TEXT NOT NULL,
        automations  TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    );

    CREATE TABLE deployment_files (
        deployment_id  TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
        path           TEXT NOT NULL,
        blob_hash      TEXT NOT NULL REFERENCES blobs(hash),
        PRIMARY KEY (deployment_id, path)
    ) WITHOUT ROWID;
    CREATE INDEX deployment_files_blob ON deployment_files(blob_hash);

    -- The active deployment of each function.
    CREATE TABLE functions (
        app_id         TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name           TEXT NOT NULL,
        deployment_id  TEXT NOT NULL REFERENCES deployments(id),
        activated_at   INTEGER NOT NULL,
        PRIMARY KEY (app_id, name)
    );
    CREATE INDEX functions_deployment ON functions(deployment_id);

    -- Every activation (deploy or rollback) of each function; the newest is the active one.
    CREATE TABLE function_history (
        app_id         TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name           TEXT NOT NULL,
        sequence       INTEGER NOT NULL,
        deployment_id  TEXT NOT NULL REFERENCES deployments(id),
        activated_at   INTEGER NOT NULL,
        PRIMARY KEY (app_id, name, sequence)
    );
    CREATE INDEX function_history_deployment ON function_history(deployment_id);
    "#,
    // 2: app secrets, each value sealed with XChaCha20-Poly1305 under the master key.
    r#"
    CREATE TABLE secrets (
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        nonce       BLOB NOT NULL,
        ciphertext  BLOB NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (app_id, name)
    ) WITHOUT ROWID;
    "#,
    // 3: app users (Argon2id password hashes), their one-time codes (SHA-256), auth settings.
    r#"
    CREATE TABLE users (
        id             TEXT PRIMARY KEY NOT NULL,
        app_id         TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        email          TEXT NOT NULL COLLATE NOCASE,
        password_hash  TEXT,
        full_name      TEXT,
        role           TEXT NOT NULL CHECK (role IN ('user', 'admin')),
        is_verified    INTEGER NOT NULL,
        disabled       INTEGER NOT NULL,
        data           TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        UNIQUE (app_id, email)
    );

    CREATE TABLE user_codes (
        user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        purpose     TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
        code_hash   TEXT NOT NULL,
        expires_at  INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        PRIMARY KEY (user_id, purpose)
    ) WITHOUT ROWID;

    CREATE TABLE auth_settings (
        app_id                TEXT PRIMARY KEY NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        require_verification  INTEGER NOT NULL
    );
    "#,
    // 4: what an app's functions may reach on the network besides the public internet
    // (`function-net-allow`): a JSON array of entries, checked by the server before it is stored.
    r#"
    CREATE TABLE app_net_allow (
        app_id      TEXT PRIMARY KEY NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        entries     TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    "#,
    // 5: a session epoch per user, part of its password stamp: disabling a user bumps it, so the
    //    user's tokens stay void after it is enabled again. 0 keeps the stamps of before.
    r#"
    ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: rate-limit counters (login and mail limits): the count of the window that ends at
    // `expires_at` (milliseconds). Ended windows are swept.
    r#"
    CREATE TABLE limit_counters (
        key         TEXT PRIMARY KEY NOT NULL,
        count       INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE INDEX limit_counters_expiry ON limit_counters(expires_at);
    "#,
    // 7: app data (entities): schemas per app, records per (app, entity) with the built-in
    //    fields as columns and the declared fields as JSON text, and the change outbox: one row
    //    per committed create, update or delete, appended in the writing transaction.
    r#"
    CREATE TABLE entity_schemas (
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        entity      TEXT NOT NULL,      -- the name lowercased: names match ignoring case
        name        TEXT NOT NULL,      -- as declared
        schema      TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (app_id, entity)
    ) WITHOUT ROWID;

    CREATE TABLE entity_records (
        app_id         TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        entity         TEXT NOT NULL,   -- lowercased
        id             TEXT NOT NULL,
        created_date   TEXT NOT NULL,   -- ISO 8601, milliseconds, Z: text order is time order
        updated_date   TEXT NOT NULL,
        created_by     TEXT,
        created_by_id  TEXT,
        is_sample      INTEGER NOT NULL DEFAULT 0,
        data           TEXT NOT NULL,   -- the declared fields, a JSON object
        PRIMARY KEY (app_id, entity, id)
    );
    CREATE INDEX entity_records_created ON entity_records(app_id, entity, created_date, id);
    CREATE INDEX entity_records_updated ON entity_records(app_id, entity, updated_date, id);
    CREATE INDEX entity_records_created_by ON entity_records(app_id, entity, created_by, id);
    CREATE INDEX entity_records_created_by_id ON entity_records(app_id, entity, created_by_id, id);

    -- `seq` follows commit order (one writer at a time), so a reader past `seq` misses nothing.
    CREATE TABLE entity_changes (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        app_id      TEXT NOT NULL,
        entity      TEXT NOT NULL,      -- the entity's declared name
        record_id   TEXT NOT NULL,
        operation   TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
        after       TEXT,               -- the record after the write (JSON), NULL for a delete
        before      TEXT,               -- the record before it, NULL for a create
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX entity_changes_app ON entity_changes(app_id, seq);
    "#,
];

/// How long a statement waits for another process's write lock before failing with `Busy`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only connections of a file database.
const READERS: usize = 4;

/// Called inside a write transaction, after every row is written and before the commit; an
/// error aborts the transaction. Tests use it to fail or freeze a deploy halfway.
pub(crate) type BeforeCommitHook = Arc<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;

pub(crate) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections (empty for an in-memory database: reads use `conn`).
    readers: Arc<Vec<Mutex<Connection>>>,
    /// Where the next read starts looking for a free reader.
    next_reader: Arc<AtomicUsize>,
    /// The file, or `:memory:`.
    location: String,
    hook: Arc<Mutex<Option<BeforeCommitHook>>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            _ => StoreError::Database(error.to_string()),
        }
    }
}

/// Creates the database file `path` readable and writable by its owner only (`0600`), unless it
/// exists. SQLite opens an empty file as an empty database, and gives the `-wal` and `-shm`
/// files it makes beside it the same mode.
pub(crate) fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Io(format!("Could not create the database {}: {e}", path.display()))),
    }
}

/// Creates the new, empty file `path` readable and writable by its owner only (`0600`); an
/// existing file is an error and is left alone.
pub(crate) fn create_new_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StoreError::Io(format!("{} exists already; choose a new file", path.display())))
        }
        Err(e) => Err(StoreError::Io(format!("Could not create {}: {e}", path.display()))),
    }
}

impl Sqlite {
    /// Opens (creating if needed, `0600`) the database file at `path` and migrates it. Blocking.
    pub(crate) fn open(path: &Path) -> Result<Sqlite> {
        let location = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Io(format!("Could not create the folder {}: {e}", parent.display())))?;
        }
        create_private_file(path)?;
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Database(format!("Could not open the database {location}: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "The database {location} could not switch to WAL mode (it is in '{mode}' mode)"
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::setup(&mut conn, &location)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(path)
                .map_err(|e| StoreError::Database(format!("Could not open the database {location}: {e}")))?;
            reader.busy_timeout(BUSY_TIMEOUT)?;
            reader.pragma_update(None, "query_only", "ON")?;
            crate::entities::register_functions(&reader)?;
            readers.push(Mutex::new(reader));
        }
        let mut db = Sqlite::new(conn, location);
        db.readers = Arc::new(readers);
        Ok(db)
    }

    /// A private in-memory database, gone when the store is dropped.
    pub(crate) fn open_in_memory() -> Result<Sqlite> {
        let mut conn = Connection::open_in_memory()?;
        let location = ":memory:".to_string();
        Self::setup(&mut conn, &location)?;
        Ok(Sqlite::new(conn, location))
    }

    fn new(conn: Connection, location: String) -> Sqlite {
        Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Vec::new()),
            next_reader: Arc::new(AtomicUsize::new(0)),
            location,
            hook: Arc::new(Mutex::new(None)),
        }
    }

    fn setup(conn: &mut Connection, location: &str) -> Result<()> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        crate::entities::register_functions(conn)?;
        migrate(conn, location)
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn set_before_commit_hook(&self, hook: Option<BeforeCommitHook>) {
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    /// Runs `f` with the connection on a blocking thread.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Database(format!("A database task failed: {e}")))?
    }

    /// Runs `f` on a read-only connection (the writer for an in-memory database), in one
    /// deferred transaction so that all its statements read one snapshot.
    pub(crate) async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.call(move |conn| f(conn)).await;
        }
        let (readers, next) = (Arc::clone(&self.readers), Arc::clone(&self.next_reader));
        tokio::task::spawn_blocking(move || {
            // The first free reader from a rotating start, else wait for that start's.
            let start = next.fetch_add(1, Ordering::Relaxed);
            let free = (0..readers.len()).find_map(|i| readers[(start + i) % readers.len()].try_lock().ok());
            let mut conn = match free {
                Some(conn) => conn,
                None => readers[start % readers.len()].lock().unwrap_or_else(|e| e.into_inner()),
            };
            let tx = conn.transaction()?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(|e| StoreError::Database(format!("A database task failed: {e}")))?
    }

    /// Runs `f` in an immediate transaction. `f` returns its value and whether it wrote
    /// anything: if it did, the before-commit hook (told `op`) runs and the transaction commits;
    /// if not, or if anything fails, the transaction rolls back.
    pub(crate) async fn write<R, F>(&self, op: &'static str, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<(R, bool)> + Send + 'static,
    {
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (value, wrote) = f(&tx)?;
            if wrote {
                if let Some(hook) = hook {
                    hook(op).map_err(StoreError::Database)?;
                }
                tx.commit()?;
            }
            Ok(value)
        })
        .await
    }

    // ---- apps ----

    pub(crate) async fn insert_app(&self, app: App) -> Result<App> {
        self.write("create_app", move |tx| {
            tx.execute(
                "INSERT INTO apps (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![app.id, app.name, app.created_at],
            )?;
            Ok((app, true))
        })
        .await
    }

    pub(crate) async fn get_app(&self, id: String) -> Result<Option<App>> {
        self.read(move |conn| {
            Ok(conn
                .query_row("SELECT id, name, created_at FROM apps WHERE id = ?1", [id], |r| {
                    Ok(App { id: r.get(0)?, name: r.get(1)?, created_at: r.get(2)? })
                })
                .optional()?)
        })
        .await
    }

    pub(crate) async fn list_apps(&self) -> Result<Vec<App>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT id, name, created_at FROM apps ORDER BY created_at DESC, rowid DESC")?;
            let rows = stmt.query_map([], |r| Ok(App { id: r.get(0)?, name: r.get(1)?, created_at: r.get(2)? }))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    // ---- keys ----

    /// Inserts a key; when `ignore_existing`, a key with the same hash is kept as it is. Returns
    /// the stored key with that hash.
    pub(crate) async fn insert_key(&self, key: ApiKey, hash: String, ignore_existing: bool) -> Result<ApiKey> {
        self.write("create_key", move |tx| {
            if let Some(app_id) = key.scope.app_id() {
                ensure_app(tx, app_id)?;
            }
            let sql = if ignore_existing {
                "INSERT INTO api_keys (id, app_id, name, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (hash) DO NOTHING"
            } else {
                "INSERT INTO api_keys (id, app_id, name, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            };
            tx.execute(sql, params![key.id, key.scope.app_id(), key.name, key.prefix, hash, key.created_at])?;
            let stored = tx.query_row(&format!("{KEY_COLUMNS} WHERE hash = ?1"), [&hash], key_from_row)?;
            Ok((stored, true))
        })
        .await
    }

    /// The key with this hash, marking it used (at most once a minute).
    pub(crate) async fn verify_key(&self, hash: String, now: i64) -> Result<Option<ApiKey>> {
        let found = self
            .read(move |conn| {
                Ok(conn.query_row(&format!("{KEY_COLUMNS} WHERE hash = ?1"), [&hash], key_from_row).optional()?)
            })
            .await?;
        let Some(mut key) = found else { return Ok(None) };
        if key.last_used_at.is_none_or(|t| now - t >= 60_000) {
            let id = key.id.clone();
            // Best effort: a busy database must not fail an otherwise valid key.
            let marked = self
                .call(move |conn| {
                    Ok(conn.execute("UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2", params![now, id]))
                })
                .await?;
            if marked.is_ok() {
                key.last_used_at = Some(now);
            }
        }
        Ok(Some(key))
    }

    pub(crate) async fn list_keys(&self, app_id: Option<String>) -> Result<Vec<ApiKey>> {
        self.read(move |conn| {
            let order = "ORDER BY created_at DESC, rowid DESC";
            let keys = match app_id {
                Some(app_id) => {
                    let mut stmt = conn.prepare(&format!("{KEY_COLUMNS} WHERE app_id = ?1 {order}"))?;
                    stmt.query_map([app_id], key_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?
                }
                None => {
                    let mut stmt = conn.prepare(&format!("{KEY_COLUMNS} {order}"))?;
                    stmt.query_map([], key_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?
                }
            };
            Ok(keys)
        })
        .await
    }

    /// Deletes a key; the app it was scoped to (empty for an admin key) if there was one.
    pub(crate) async fn delete_key(&self, id: String) -> Result<Option<String>> {
        self.write("revoke_key", move |tx| {
            let deleted = tx
                .query_row("DELETE FROM api_keys WHERE id = ?1 RETURNING app_id", [id], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .optional()?
                .map(Option::unwrap_or_default);
            let wrote = deleted.is_some();
            Ok((deleted, wrote))
        })
        .await
    }

    // ---- deployments ----

    pub(crate) async fn deploy(
        &self,
        app_id: String,
        name: String,
        deployment: PreparedDeployment,
        now: i64,
        max_functions: Option<u64>,
    ) -> Result<DeployOutcome> {
        self.write("deploy", move |tx| {
            ensure_app(tx, &app_id)?;
            let id = deployment.id.clone();
            let active = active_deployment(tx, &app_id, &name)?;
            if active.as_deref() == Some(id.as_str()) {
                return Ok((DeployOutcome { deployment_id: id, status: DeployStatus::Unchanged }, false));
            }
            if active.is_none() && max_functions.is_some() {
                // The write lock (BEGIN IMMEDIATE) keeps the count until the commit.
                let count = count(tx, "SELECT COUNT(*) FROM functions WHERE app_id = ?1", [&app_id])?;
                content::check_function_limit(count, max_functions)?;
            }
            let inserted = tx.execute(
                "INSERT INTO deployments (id, entry, automations, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
                params![id, deployment.entry, deployment.automations, now],
            )?;
            if inserted > 0 {
                let mut blob = tx.prepare_cached(
                    "INSERT INTO blobs (hash, content) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING",
                )?;
                let mut file = tx.prepare_cached(
                    "INSERT INTO deployment_files (deployment_id, path, blob_hash) VALUES (?1, ?2, ?3)",
                )?;
                for f in &deployment.files {
                    blob.execute(params![f.hash, f.content])?;
                    file.execute(params![id, f.path, f.hash])?;
                }
            }
            activate(tx, &app_id, &name, &id, now)?;
            Ok((DeployOutcome { deployment_id: id, status: DeployStatus::Deployed }, true))
        })
        .await
    }

    /// The app's functions (or the one named) with their active deployments; file contents are
    /// left empty unless `contents`.
    pub(crate) async fn functions(
        &self,
        app_id: String,
        name: Option<String>,
        contents: bool,
    ) -> Result<Vec<ActiveFunction>> {
        self.read(move |conn| {
            let filter = if name.is_some() { "AND f.name = ?2" } else { "" };
            let args: Vec<&dyn rusqlite::ToSql> = match &name {
                Some(name) => vec![&app_id, name],
                None => vec![&app_id],
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT f.name, f.deployment_id, d.entry, d.automations, f.activated_at
                 FROM functions f JOIN deployments d ON d.id = f.deployment_id
                 WHERE f.app_id = ?1 {filter} ORDER BY f.name"
            ))?;
            let mut functions = stmt
                .query_map(args.as_slice(), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .map(|(name, deployment_id, entry, automations, activated_at)| {
                    Ok(ActiveFunction {
                        name,
                        deployment_id,
                        entry,
                        files: Vec::new(),
                        automations: parse_automations(&automations)?,
                        activated_at,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut stmt = conn.prepare(&format!(
                "SELECT df.deployment_id, df.path, {content}
                 FROM deployment_files df {join}
                 WHERE df.deployment_id IN (SELECT f.deployment_id FROM functions f WHERE f.app_id = ?1 {filter})
                 ORDER BY df.deployment_id, df.path",
                content = if contents { "b.content" } else { "''" },
                join = if contents { "JOIN blobs b ON b.hash = df.blob_hash" } else { "" },
            ))?;
            let mut files: HashMap<String, Vec<DeployFile>> = HashMap::new();
            let rows = stmt.query_map(args.as_slice(), |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))?;
            for row in rows {
                let (deployment_id, path, content) = row?;
                files.entry(deployment_id).or_default().push(DeployFile { path, content });
            }
            for function in &mut functions {
                function.files = files.get(&function.deployment_id).cloned().unwrap_or_default();
            }
            Ok(functions)
        })
        .await
    }

    pub(crate) async fn function_count(&self, app_id: String) -> Result<u64> {
        self.read(move |conn| count(conn, "SELECT COUNT(*) FROM functions WHERE app_id = ?1", [app_id])).await
    }

    pub(crate) async fn delete_function(&self, app_id: String, name: String) -> Result<bool> {
        self.write("delete_function", move |tx| {
            let Some(active) = active_deployment(tx, &app_id, &name)? else {
                return Ok((false, false));
            };
            let mut candidates: BTreeSet<String> = history(tx, &app_id, &name)?.into_iter().map(|(_, id)| id).collect();
            candidates.insert(active);
            tx.execute("DELETE FROM functions WHERE app_id = ?1 AND name = ?2", params![app_id, name])?;
            tx.execute("DELETE FROM function_history WHERE app_id = ?1 AND name = ?2", params![app_id, name])?;
            collect_garbage(tx, candidates)?;
            Ok((true, true))
        })
        .await
    }

    pub(crate) async fn history(&self, app_id: String, name: String) -> Result<Vec<HistoryEntry>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT sequence, deployment_id, activated_at FROM function_history
                 WHERE app_id = ?1 AND name = ?2 ORDER BY sequence DESC",
            )?;
            let rows = stmt.query_map(params![app_id, name], |r| {
                Ok(HistoryEntry {
                    sequence: r.get(0)?,
                    deployment_id: r.get(1)?,
                    activated_at: r.get(2)?,
                    active: false,
                })
            })?;
            let mut entries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            if let Some(first) = entries.first_mut() {
                first.active = true;
            }
            Ok(entries)
        })
        .await
    }

    /// The now active deployment, and whether the rollback changed it.
    pub(crate) async fn rollback(
        &self,
        app_id: String,
        name: String,
        to: Option<String>,
        now: i64,
    ) -> Result<(String, bool)> {
        self.write("rollback", move |tx| {
            let Some(active) = active_deployment(tx, &app_id, &name)? else {
                return Err(StoreError::not_found(format!("Function '{name}'")));
            };
            let ids: Vec<String> = history(tx, &app_id, &name)?.into_iter().map(|(_, id)| id).collect();
            match content::rollback_target(&name, &active, &ids, to.as_deref())? {
                RollbackTarget::AlreadyActive(id) => Ok(((id, false), false)),
                RollbackTarget::Activate(id) => {
                    activate(tx, &app_id, &name, &id, now)?;
                    Ok(((id, true), true))
                }
            }
        })
        .await
    }

    pub(crate) async fn deployment(&self, id: String) -> Result<Option<Deployment>> {
        self.read(move |conn| {
            let Some((entry, automations)) = conn
                .query_row("SELECT entry, automations FROM deployments WHERE id = ?1", [&id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = conn.prepare(
                "SELECT df.path, b.content FROM deployment_files df JOIN blobs b ON b.hash = df.blob_hash
                 WHERE df.deployment_id = ?1 ORDER BY df.path",
            )?;
            let files = stmt
                .query_map([&id], |r| Ok(DeployFile { path: r.get(0)?, content: r.get(1)? }))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(Deployment { entry, files, automations: parse_automations(&automations)? }))
        })
        .await
    }

    pub(crate) async fn gc(&self) -> Result<GcReport> {
        self.write("gc", |tx| {
            let deployments = tx.execute(
                "DELETE FROM deployments
                 WHERE id NOT IN (SELECT deployment_id FROM functions)
                   AND id NOT IN (SELECT deployment_id FROM function_history)",
                [],
            )?;
            let blobs =
                tx.execute("DELETE FROM blobs WHERE hash NOT IN (SELECT blob_hash FROM deployment_files)", [])?;
            let report = GcReport { deployments: deployments as u64, blobs: blobs as u64 };
            Ok((report, deployments + blobs > 0))
        })
        .await
    }

    pub(crate) async fn stats(&self) -> Result<StoreStats> {
        self.read(|conn| {
            let n = |table: &str| count(conn, &format!("SELECT COUNT(*) FROM {table}"), []);
            Ok(StoreStats {
                apps: n("apps")?,
                api_keys: n("api_keys")?,
                functions: n("functions")?,
                deployments: n("deployments")?,
                blobs: n("blobs")?,
                history_entries: n("function_history")?,
            })
        })
        .await
    }
}

impl Sqlite {
    // ---- secrets ----

    /// Upserts `(name, nonce, ciphertext)` rows for the app.
    pub(crate) async fn set_secrets(
        &self,
        app_id: String,
        sealed: Vec<(String, Vec<u8>, Vec<u8>)>,
        now: i64,
    ) -> Result<()> {
        self.write("set_secrets", move |tx| {
            ensure_app(tx, &app_id)?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO secrets (app_id, name, nonce, ciphertext, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (app_id, name) DO UPDATE SET nonce = excluded.nonce,
                     ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            )?;
            for (name, nonce, ciphertext) in &sealed {
                upsert.execute(params![app_id, name, nonce, ciphertext, now])?;
            }
            Ok(((), !sealed.is_empty()))
        })
        .await
    }

    pub(crate) async fn secret_names(&self, app_id: String) -> Result<Vec<String>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT name FROM secrets WHERE app_id = ?1 ORDER BY name")?;
            let rows = stmt.query_map([app_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// `(name, nonce, ciphertext)` of the app's secrets, by name.
    pub(crate) async fn sealed_secrets(&self, app_id: String) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT name, nonce, ciphertext FROM secrets WHERE app_id = ?1 ORDER BY name")?;
            let rows = stmt.query_map([app_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(crate) async fn delete_secret(&self, app_id: String, name: String) -> Result<bool> {
        self.write("delete_secret", move |tx| {
            let deleted = tx.execute("DELETE FROM secrets WHERE app_id = ?1 AND name = ?2", [app_id, name])? > 0;
            Ok((deleted, deleted))
        })
        .await
    }
}

const KEY_COLUMNS: &str = "SELECT id, app_id, name, prefix, created_at, last_used_at FROM api_keys";

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let app_id: Option<String> = r.get(1)?;
    Ok(ApiKey {
        id: r.get(0)?,
        scope: app_id.map_or(KeyScope::Admin, KeyScope::App),
        name: r.get(2)?,
        prefix: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
    })
}

fn count<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> Result<u64> {
    let n: i64 = conn.query_row(sql, params, |r| r.get(0))?;
    Ok(n as u64)
}

fn parse_automations(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Database(format!("A stored automations list is not JSON: {e}")))
}

pub(crate) fn ensure_app(conn: &Connection, app_id: &str) -> Result<()> {
    let exists = conn.query_row("SELECT 1 FROM apps WHERE id = ?1", [app_id], |_| Ok(())).optional()?.is_some();
    if exists { Ok(()) } else { Err(StoreError::not_found(format!("App '{app_id}'"))) }
}

fn active_deployment(conn: &Connection, app_id: &str, name: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT deployment_id FROM functions WHERE app_id = ?1 AND name = ?2", [app_id, name], |r| r.get(0))
        .optional()?)
}

/// `(sequence, deployment id)` of a function's history, newest first.
fn history(conn: &Connection, app_id: &str, name: &str) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT sequence, deployment_id FROM function_history WHERE app_id = ?1 AND name = ?2 ORDER BY sequence DESC",
    )?;
    let rows = stmt.query_map([app_id, name], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Points the function at `deployment_id`, records the activation, prunes the history and
/// collects the deployments that fell out of it. Inside the caller's transaction.
fn activate(tx: &Transaction<'_>, app_id: &str, name: &str, deployment_id: &str, now: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO functions (app_id, name, deployment_id, activated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (app_id, name) DO UPDATE SET deployment_id = excluded.deployment_id,
                                                  activated_at = excluded.activated_at",
        params![app_id, name, deployment_id, now],
    )?;
    tx.execute(
        "INSERT INTO function_history (app_id, name, sequence, deployment_id, activated_at)
         SELECT ?1, ?2, COALESCE(MAX(sequence), 0) + 1, ?3, ?4 FROM function_history WHERE app_id = ?1 AND name = ?2",
        params![app_id, name, deployment_id, now],
    )?;
    let entries = history(tx, app_id, name)?;
    let prune = content::entries_to_prune(&entries);
    if prune.is_empty() {
        return Ok(());
    }
    let mut candidates = BTreeSet::new();
    let mut delete =
        tx.prepare_cached("DELETE FROM function_history WHERE app_id = ?1 AND name = ?2 AND sequence = ?3")?;
    for (sequence, id) in entries.iter().filter(|(s, _)| prune.contains(s)) {
        delete.execute(params![app_id, name, sequence])?;
        candidates.insert(id.clone());
    }
    collect_garbage(tx, candidates)
}

/// Deletes those `candidates` that nothing references any more, and their blobs that nothing
/// else references.
fn collect_garbage(tx: &Transaction<'_>, candidates: BTreeSet<String>) -> Result<()> {
    let mut blobs = BTreeSet::new();
    for id in candidates {
        let referenced = tx
            .query_row(
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM functions WHERE deployment_id = ?1)
                             OR EXISTS (SELECT 1 FROM function_history WHERE deployment_id = ?1)",
                [&id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if referenced {
            continue;
        }
        let mut stmt = tx.prepare_cached("SELECT blob_hash FROM deployment_files WHERE deployment_id = ?1")?;
        for hash in stmt.query_map([&id], |r| r.get::<_, String>(0))? {
            blobs.insert(hash?);
        }
        tx.execute("DELETE FROM deployments WHERE id = ?1", [&id])?;
    }
    let mut delete = tx.prepare_cached(
        "DELETE FROM blobs WHERE hash = ?1 AND NOT EXISTS (SELECT 1 FROM deployment_files WHERE blob_hash = ?1)",
    )?;
    for hash in blobs {
        delete.execute([hash])?;
    }
    Ok(())
}

/// Brings the schema to the newest version, in one transaction.
fn migrate(conn: &mut Connection, location: &str) -> Result<()> {
    let supported = MIGRATIONS.len() as i64;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { location: location.to_string(), found, supported });
    }
    if found == supported {
        return Ok(());
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Database(format!("Migration to schema version {} failed: {e}", index + 1)))?;
    }
    tx.pragma_update(None, "user_version", supported)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::{DeployStatus, Store};

    /// The databases hold the apps' secrets, users and logs: new files are the owner's only,
    /// and so are SQLite's files beside them.
    #[test]
    fn new_database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        let db = Sqlite::open(&path).unwrap();
        let logs = tokio::runtime::Runtime::new().unwrap().block_on(crate::LogStore::open(dir.path().join("logs.db")));
        logs.unwrap();
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            seen.push((entry.file_name().to_string_lossy().into_owned(), mode));
        }
        assert!(seen.iter().any(|(name, _)| name == "homebase.db-wal"), "{seen:?}");
        assert!(seen.iter().all(|(_, mode)| *mode == 0o600), "{seen:?}");
        drop(db);
    }

    mod file {
        crate::conformance_tests!(|| async {
            let dir = tempfile::tempdir().unwrap();
            let key = crate::MasterKey::generate();
            let store = crate::Store::open_sqlite_with_key(dir.path().join("homebase.db"), key).await.unwrap();
            (store, dir)
        });
    }

    mod memory {
        crate::conformance_tests!(|| async { (crate::Store::open_sqlite_in_memory().await.unwrap(), ()) });
    }

    /// Every `pub async fn` of the conformance module is listed in `conformance_tests!`.
    #[test]
    fn every_conformance_case_runs() {
        let source = include_str!("conformance.rs");
        let (macro_part, cases_part) = source.split_once("fn file(").unwrap();
        let defined: BTreeSet<&str> =
            cases_part.split("pub async fn ").skip(1).map(|rest| rest.split('(').next().unwrap()).collect();
        let listed: BTreeSet<&str> = macro_part
            .split_once("@cases $fixture;")
            .unwrap()
            .1
            .split(");")
            .next()
            .unwrap()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        assert!(defined.len() > 20, "{defined:?}");
        assert_eq!(defined, listed);
    }

    fn raw(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    fn user_version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
    }

    fn integrity(conn: &Connection) {
        let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        let violations: i64 =
            conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(violations, 0, "foreign keys are intact");
    }

    fn with_conn<R>(store: &Store, f: impl FnOnce(&Connection) -> R) -> R {
        f(&store.sqlite().conn.lock().unwrap())
    }

    fn deployment(tag: &str, files: usize) -> Deployment {
        let mut files: Vec<DeployFile> = (0..files)
            .map(|i| DeployFile { path: format!("lib/m{i}.ts"), content: format!("version {tag} file {i}") })
            .collect();
        files.push(DeployFile { path: "entry.ts".into(), content: format!("version {tag} entry") });
        Deployment { entry: "entry.ts".into(), files, automations: serde_json::json!([]) }
    }

    #[tokio::test]
    async fn file_database_is_wal_with_foreign_keys_and_current_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/folder/homebase.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(store.backend_name(), "sqlite");
        assert_eq!(store.location(), path.display().to_string());
        with_conn(&store, |conn| {
            let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
            assert_eq!(fk, 1);
            let timeout: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap();
            assert_eq!(timeout, 5000);
        });
        let conn = raw(&path);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(user_version(&conn), MIGRATIONS.len() as i64);
        let memory = Store::open_sqlite_in_memory().await.unwrap();
        assert_eq!(memory.location(), ":memory:");
        with_conn(&memory, |conn| assert_eq!(user_version(conn), MIGRATIONS.len() as i64));
    }

    #[tokio::test]
    async fn reopening_finds_everything_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let app = store.create_app("Kept").await.unwrap();
        let (key, secret) = store.create_key(KeyScope::App(app.id.clone()), "ci").await.unwrap();
        store.deploy(&app.id, "f", deployment("1", 3)).await.unwrap();
        let v2 = store.deploy(&app.id, "f", deployment("2", 3)).await.unwrap();
        let function = store.function(&app.id, "f").await.unwrap().unwrap();
        let history = store.history(&app.id, "f").await.unwrap();
        let stats = store.stats().await.unwrap();
        drop(store);

        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(store.get_app(&app.id).await.unwrap(), Some(app.clone()));
        assert_eq!(store.verify_key(&secret).await.unwrap().map(|k| k.id), Some(key.id));
        assert_eq!(store.function(&app.id, "f").await.unwrap(), Some(function));
        assert_eq!(store.history(&app.id, "f").await.unwrap(), history);
        assert_eq!(store.stats().await.unwrap(), stats);
        let again = store.deploy(&app.id, "f", deployment("2", 3)).await.unwrap();
        assert_eq!((again.deployment_id, again.status), (v2.deployment_id, DeployStatus::Unchanged));
        drop(store);
        let conn = raw(&path);
        integrity(&conn);
        assert_eq!(user_version(&conn), MIGRATIONS.len() as i64, "opening twice migrates once");
    }

    /// A user stored before migration 5 keeps its password stamp (so its tokens) across the
    /// upgrade, until it is disabled.
    #[tokio::test]
    async fn session_epochs_keep_the_stamps_of_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let app = store.create_app("Kept").await.unwrap();
        let user = store
            .create_user(
                &app.id,
                crate::NewUser {
                    email: "ann@example.test".into(),
                    password: Some("password-1".into()),
                    full_name: None,
                    role: crate::UserRole::User,
                    is_verified: true,
                },
            )
            .await
            .unwrap();
        drop(store);
        // Back to schema 3, as an older Homebase left it.
        let conn = raw(&path);
        conn.execute_batch(
            "ALTER TABLE users DROP COLUMN session_epoch; DROP TABLE app_net_allow; DROP TABLE limit_counters;
             DROP TABLE entity_schemas; DROP TABLE entity_records; DROP TABLE entity_changes; PRAGMA user_version = 3;",
        )
        .unwrap();
        let hash: String =
            conn.query_row("SELECT password_hash FROM users WHERE id = ?1", [&user.id], |r| r.get(0)).unwrap();
        drop(conn);
        let old = format!("homebase password stamp\0{}\0{hash}", user.id);
        let old_stamp = crate::ids::sha256_hex(old.as_bytes())[..16].to_string();

        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(user_version(&raw(&path)), MIGRATIONS.len() as i64);
        let found = store.user(&app.id, &user.id).await.unwrap().unwrap();
        assert_eq!(found.password_stamp, old_stamp, "the stamp of before the upgrade");
        assert_eq!(found.password_stamp, user.password_stamp);
        let disable = crate::UserUpdate { disabled: Some(true), ..Default::default() };
        assert_ne!(store.update_user(&app.id, &user.id, disable).await.unwrap().password_stamp, old_stamp);
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        drop(Store::open_sqlite(&path).await.unwrap());
        let newer = MIGRATIONS.len() as i64 + 1;
        raw(&path).pragma_update(None, "user_version", newer).unwrap();
        let err = Store::open_sqlite(&path).await.unwrap_err();
        assert_eq!(err.code(), "schema_too_new");
        let message = err.to_string();
        assert!(message.contains(&format!("schema version {newer}")), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("upgrade Homebase"), "{message}");
        assert_eq!(user_version(&raw(&path)), newer, "the database is left alone");
    }

    #[tokio::test]
    async fn a_failing_migration_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        // A version-0 database that already has an `apps` table: migration 1 fails halfway.
        raw(&path).execute_batch("CREATE TABLE apps (legacy TEXT); INSERT INTO apps VALUES ('kept');").unwrap();
        let err = Store::open_sqlite(&path).await.unwrap_err();
        assert!(err.to_string().contains("Migration to schema version 1 failed"), "{err}");
        let conn = raw(&path);
        assert_eq!(user_version(&conn), 0);
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'api_keys'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(tables, 0, "no table of the failed migration remains");
        let legacy: String = conn.query_row("SELECT legacy FROM apps", [], |r| r.get(0)).unwrap();
        assert_eq!(legacy, "kept");
    }

    /// Every byte SQLite keeps for the database: the file, its WAL and shared memory.
    fn database_bytes(path: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(content) = std::fs::read(&file) {
                bytes.extend(content);
            }
        }
        bytes
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[tokio::test]
    async fn key_secrets_are_not_in_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let app = store.create_app("A").await.unwrap();
        let (_, admin) = store.create_key(KeyScope::Admin, "admin").await.unwrap();
        let (_, scoped) = store.create_key(KeyScope::App(app.id.clone()), "ci").await.unwrap();
        let imported = "b44k_importedimportedimportedimported42";
        store.import_key(imported, KeyScope::Admin, "env").await.unwrap();
        store.verify_key(&admin).await.unwrap().unwrap();
        let check = |when: &str| {
            let bytes = database_bytes(&path);
            for secret in [admin.as_str(), scoped.as_str(), imported] {
                assert!(!contains(&bytes, secret), "{when}: the secret {secret} is in the database");
                // The bytes read are where the keys live: their hashes and prefixes are there.
                assert!(contains(&bytes, &crate::ids::key_hash(secret)), "{when}: the hash is missing");
                assert!(contains(&bytes, &secret[..11]), "{when}: the prefix is missing");
            }
        };
        check("while open");
        drop(store);
        check("after close");
    }

    #[tokio::test]
    async fn passwords_and_codes_are_not_in_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let app = store.create_app("a").await.unwrap();
        let new = crate::NewUser {
            email: "ann@example.test".into(),
            password: Some("plaintext-password-xyz".into()),
            full_name: None,
            role: crate::UserRole::User,
            is_verified: false,
        };
        let user = store.create_user(&app.id, new).await.unwrap();
        store.put_code(&app.id, &user.id, crate::CodePurpose::Verify, "987123", 60_000).await.unwrap();
        let token = store.new_reset_token(&app.id, &user.id, 60_000).await.unwrap();
        let bytes = database_bytes(&path);
        assert!(contains(&bytes, "ann@example.test"), "the probe reads the database");
        assert!(contains(&bytes, "$argon2id$"), "the password is stored as an Argon2id hash");
        for plain in ["plaintext-password-xyz", "987123", &token[25..]] {
            assert!(!contains(&bytes, plain), "{plain} is in the database bytes");
        }
    }

    #[tokio::test]
    async fn secret_values_are_encrypted_and_need_the_right_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        let key = crate::MasterKey::generate();
        let store = Store::open_sqlite_with_key(&path, key.clone()).await.unwrap();
        let app = store.create_app("A").await.unwrap();
        let value = "plaintext-secret-value-7f3a9c";
        let secrets = [("API_TOKEN".to_string(), value.to_string())].into_iter().collect();
        store.set_secrets(&app.id, secrets).await.unwrap();
        let check = |when: &str| {
            let bytes = database_bytes(&path);
            assert!(!contains(&bytes, value), "{when}: the value is in the database");
            assert!(contains(&bytes, "API_TOKEN"), "{when}: the bytes read hold the secrets table");
        };
        check("while open");
        drop(store);
        check("after close");

        // The same key reads it back after a restart.
        let store = Store::open_sqlite_with_key(&path, key.clone()).await.unwrap();
        assert_eq!(store.secrets(&app.id).await.unwrap()["API_TOKEN"], value);
        drop(store);
        // Another key fails clearly, without showing anything of the value.
        let store = Store::open_sqlite_with_key(&path, crate::MasterKey::generate()).await.unwrap();
        assert_eq!(store.secret_names(&app.id).await.unwrap(), ["API_TOKEN"], "names stay readable");
        let err = store.secrets(&app.id).await.unwrap_err().to_string();
        assert!(err.contains("API_TOKEN") && err.contains("master key"), "{err}");
        assert!(!err.contains(value), "{err}");
        drop(store);
        // No key at all: a clear error, not a panic.
        let store = Store::open_sqlite(&path).await.unwrap();
        let err = store.secrets(&app.id).await.unwrap_err().to_string();
        assert!(err.contains("No master key"), "{err}");
        // A ciphertext moved to another name does not open.
        drop(store);
        let conn = raw(&path);
        conn.execute("UPDATE secrets SET name = 'OTHER'", []).unwrap();
        drop(conn);
        let store = Store::open_sqlite_with_key(&path, key).await.unwrap();
        let err = store.secrets(&app.id).await.unwrap_err().to_string();
        assert!(err.contains("'OTHER'") && err.contains("could not be decrypted"), "{err}");
    }

    #[tokio::test]
    async fn a_constraint_violation_mid_deploy_rolls_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path().join("homebase.db")).await.unwrap();
        let app = store.create_app("A").await.unwrap();
        let v1 = store.deploy(&app.id, "boom", deployment("1", 2)).await.unwrap();
        // From now on the history insert of `boom` violates a constraint: the blobs, the
        // deployment, its files and the active pointer are already written by then.
        with_conn(&store, |conn| {
            conn.execute_batch(
                "CREATE TRIGGER no_more_booms BEFORE INSERT ON function_history WHEN NEW.name = 'boom'
                 BEGIN SELECT RAISE(ABORT, 'injected constraint violation'); END;",
            )
            .unwrap()
        });
        let before = store.stats().await.unwrap();
        let err = store.deploy(&app.id, "boom", deployment("2", 5)).await.unwrap_err();
        assert!(err.to_string().contains("injected constraint violation"), "{err}");
        assert_eq!(store.function(&app.id, "boom").await.unwrap().unwrap().deployment_id, v1.deployment_id);
        assert_eq!(store.stats().await.unwrap(), before, "no partial rows");
        with_conn(&store, |conn| {
            let leaked: i64 =
                conn.query_row("SELECT COUNT(*) FROM blobs WHERE content LIKE 'version 2%'", [], |r| r.get(0)).unwrap();
            assert_eq!(leaked, 0);
            integrity(conn);
        });
        // Other functions deploy as usual.
        assert_eq!(store.deploy(&app.id, "fine", deployment("2", 5)).await.unwrap().status, DeployStatus::Deployed);
    }

    #[tokio::test]
    async fn materialize_rejects_tampered_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path().join("homebase.db")).await.unwrap();
        let app = store.create_app("A").await.unwrap();
        let root = dir.path().join("deployments");
        for (i, bad) in ["/tmp/evil.ts", "lib/../../../../../../../../../../../../../../../../../../../../x.ts", "a//b"]
            .into_iter()
            .enumerate()
        {
            let id = store.deploy(&app.id, "f", deployment(&i.to_string(), 1)).await.unwrap().deployment_id;
            with_conn(&store, |conn| {
                conn.execute(
                    "UPDATE deployment_files SET path = ?1 WHERE deployment_id = ?2 AND path = 'lib/m0.ts'",
                    [bad, &id],
                )
                .unwrap()
            });
            let err = store.materialize(&id, &root).await.unwrap_err();
            assert_eq!(err.code(), "invalid", "{bad}: {err}");
            assert!(!root.join(&id).exists());
        }
        assert!(!dir.path().join("tmp").exists());
        assert_eq!(std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0), 0, "nothing was written");
    }

    /// A deploy that holds the write lock (frozen before its commit) does not hold up reads:
    /// they answer from the last committed state, on the reader connections.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reads_do_not_queue_behind_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_sqlite_with_key(dir.path().join("homebase.db"), crate::MasterKey::generate()).await.unwrap();
        let app = store.create_app("A").await.unwrap();
        let (_, secret) = store.create_key(KeyScope::App(app.id.clone()), "ci").await.unwrap();
        let v1 = store.deploy(&app.id, "f", deployment("1", 2)).await.unwrap();
        let (entered, in_write) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (entered, released) = (Mutex::new(entered), Mutex::new(released));
        store.set_before_commit_hook(move |op| {
            if op == "deploy" {
                entered.lock().unwrap().send(()).unwrap();
                released.lock().unwrap().recv_timeout(Duration::from_secs(60)).unwrap();
            }
            Ok(())
        });
        let writer = {
            let (store, app_id) = (store.clone(), app.id.clone());
            tokio::spawn(async move { store.deploy(&app_id, "f", deployment("2", 2)).await })
        };
        tokio::task::spawn_blocking(move || in_write.recv_timeout(Duration::from_secs(30)).unwrap()).await.unwrap();
        // The write lock is held now; every read still answers at once.
        let reads = async {
            assert_eq!(store.function(&app.id, "f").await.unwrap().unwrap().deployment_id, v1.deployment_id);
            assert_eq!(store.history(&app.id, "f").await.unwrap().len(), 1);
            assert_eq!(store.list_apps().await.unwrap().len(), 1);
            assert_eq!(store.function_count(&app.id).await.unwrap(), 1);
            assert!(store.deployment(&v1.deployment_id).await.unwrap().is_some());
            assert!(store.secret_names(&app.id).await.unwrap().is_empty());
            assert!(store.list_users(&app.id).await.unwrap().is_empty());
            assert_eq!(store.stats().await.unwrap().history_entries, 1);
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (store, app_id) = (store.clone(), app.id.clone());
                    tokio::spawn(async move { store.functions(&app_id).await.unwrap().len() })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap(), 1);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reads).await.expect("reads do not wait for the write");
        release.send(()).unwrap();
        writer.await.unwrap().unwrap();
        store.clear_before_commit_hook();
        assert_ne!(store.function(&app.id, "f").await.unwrap().unwrap().deployment_id, v1.deployment_id);
        // A key verifies (and its use is recorded) as before.
        assert!(store.verify_key(&secret).await.unwrap().unwrap().last_used_at.is_some());
        assert!(store.list_keys(None).await.unwrap()[0].last_used_at.is_some());
        // The reader connections cannot write.
        let reader = store.sqlite().readers[0].lock().unwrap();
        let err = reader.execute("DELETE FROM apps", []).unwrap_err().to_string();
        assert!(err.contains("readonly"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_handles_on_one_file_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.db");
        let one = Store::open_sqlite(&path).await.unwrap();
        let two = Store::open_sqlite(&path).await.unwrap();
        let app = one.create_app("Shared").await.unwrap();
        assert_eq!(two.get_app(&app.id).await.unwrap(), Some(app.clone()));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            let app_id = app.id.clone();
            tasks.push(tokio::spawn(async move {
                store.deploy(&app_id, &format!("f{}", i % 4), deployment(&i.to_string(), 2)).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(one.function_count(&app.id).await.unwrap(), 4);
        assert_eq!(two.stats().await.unwrap().history_entries, 20);
        with_conn(&one, integrity);
    }

    // ---- kill -9 ----
    //
    // The parent test runs this test binary again, filtered to `kill_child`, and kills it with
    // SIGKILL in the middle of a deploy; then it opens the database and checks that the old or
    // the new deployment is active, complete, never a mix.

    const KILL_DB: &str = "HOMEBASE_STORE_KILL_DB";
    const KILL_MODE: &str = "HOMEBASE_STORE_KILL_MODE";
    const FILES_PER_VERSION: usize = 6;
    /// What the child prints (on a line of its own) when frozen before the commit, and after
    /// each committed deploy (followed by the version).
    const PAUSED: &str = "KILL-CHILD-PAUSED";
    const DEPLOYED: &str = "KILL-CHILD-DEPLOYED ";
    /// The child is killed after this long whatever happens, so that a broken child fails the
    /// test instead of hanging it.
    const CHILD_DEADLINE: Duration = Duration::from_secs(60);

    /// Not a test of its own: the child process of the kill tests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "run by the kill -9 tests as a child process"]
    async fn kill_child() {
        let (Ok(db), Ok(mode)) = (std::env::var(KILL_DB), std::env::var(KILL_MODE)) else {
            panic!("run only by the kill -9 tests");
        };
        let store = Store::open_sqlite(&db).await.unwrap();
        let app = store.list_apps().await.unwrap().remove(0);
        match mode.as_str() {
            "pause" => {
                // Freeze the deploy after every row is written, before the commit.
                store.set_before_commit_hook(|_| {
                    println!("\n{PAUSED}");
                    std::io::Write::flush(&mut std::io::stdout()).unwrap();
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                });
                store.deploy(&app.id, "f", deployment("2", FILES_PER_VERSION)).await.unwrap();
                unreachable!("the hook never returns");
            }
            _ => {
                for i in 100.. {
                    store.deploy(&app.id, "f", deployment(&i.to_string(), FILES_PER_VERSION)).await.unwrap();
                    println!("\n{DEPLOYED}{i}");
                }
            }
        }
    }

    /// Starts the child, reads its stdout until `until` says stop, then kills it with SIGKILL.
    /// Returns the lines read.
    fn run_and_kill(db: &Path, mode: &str, mut until: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["sqlite::tests::kill_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(KILL_DB, db)
            .env(KILL_MODE, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let child = Arc::new(Mutex::new(child));
        let (done, watchdog) = std::sync::mpsc::channel::<()>();
        let guard = {
            let child = Arc::clone(&child);
            std::thread::spawn(move || {
                if watchdog.recv_timeout(CHILD_DEADLINE).is_err() {
                    let _ = child.lock().unwrap().kill();
                }
            })
        };
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let stop = until(&line);
            lines.push(line);
            if stop {
                break;
            }
        }
        let _ = done.send(());
        guard.join().unwrap();
        let mut child = child.lock().unwrap();
        let _ = child.kill(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, it did not finish: {lines:?}");
        lines
    }

    /// Opens the killed database and checks that function `f` is whole: its active
    /// deployment is the newest history entry, has every file, and all of them are of one
    /// version. Returns that version.
    fn check_after_kill(path: &Path) -> String {
        integrity(&raw(path));
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Store::open_sqlite(path).await.unwrap();
            let app = store.list_apps().await.unwrap().remove(0);
            let f = store.function(&app.id, "f").await.unwrap().expect("a deployment is active");
            let history = store.history(&app.id, "f").await.unwrap();
            assert_eq!(history[0].deployment_id, f.deployment_id);
            assert_eq!(f.files.len(), FILES_PER_VERSION + 1);
            let tag = f.files[0].content.split(' ').nth(1).unwrap().to_string();
            for file in &f.files {
                assert!(file.content.starts_with(&format!("version {tag} ")), "a mix: {:?}", f.files);
            }
            // The active deployment is exactly what was deployed.
            let expected = crate::content::prepare(deployment(&tag, FILES_PER_VERSION)).unwrap();
            assert_eq!(f.deployment_id, expected.id);
            assert_eq!(store.gc().await.unwrap(), crate::GcReport::default(), "nothing was left unreferenced");
            tag
        })
    }

    fn prepare_kill_db(dir: &Path) -> PathBuf {
        let path = dir.join("homebase.db");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Store::open_sqlite(&path).await.unwrap();
            let app = store.create_app("Killed").await.unwrap();
            store.deploy(&app.id, "f", deployment("1", FILES_PER_VERSION)).await.unwrap();
        });
        path
    }

    #[test]
    fn kill_9_before_commit_leaves_the_old_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let path = prepare_kill_db(dir.path());
        let lines = run_and_kill(&path, "pause", |line| line == PAUSED);
        assert_eq!(lines.last().map(String::as_str), Some(PAUSED), "the child froze before the commit: {lines:?}");
        assert_eq!(check_after_kill(&path), "1");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Store::open_sqlite(&path).await.unwrap();
            let s = store.stats().await.unwrap();
            assert_eq!((s.deployments, s.blobs, s.history_entries), (1, FILES_PER_VERSION as u64 + 1, 1), "{s:?}");
        });
    }

    #[test]
    fn kill_9_at_any_moment_of_a_deploy_loop_leaves_one_whole_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let path = prepare_kill_db(dir.path());
        for round in 0..3u64 {
            let mut seen = 0;
            let lines = run_and_kill(&path, "loop", |line| {
                if line.starts_with(DEPLOYED) {
                    seen += 1;
                }
                if seen == 5 + round as usize * 7 {
                    // Kill at a varying point of the next deploy.
                    std::thread::sleep(Duration::from_micros(round * 700));
                    return true;
                }
                false
            });
            let committed: u64 = lines.iter().rev().find_map(|l| l.strip_prefix(DEPLOYED)).unwrap().parse().unwrap();
            let active: u64 = check_after_kill(&path).parse().unwrap();
            assert!(active >= committed, "round {round}: deploy {committed} was committed but {active} is active");
        }
    }
}

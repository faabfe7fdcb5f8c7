//! Homebase's persistence, behind one cheap-to-clone [`Store`] handle.
//!
//! This crate owns what Homebase keeps: apps, API keys (stored hashed), function deployments,
//! secrets (encrypted), app users (Argon2id password hashes, hashed one-time codes; see the
//! `users` module) and, in a database file of its own, function logs ([`LogStore`], see
//! [`logs`]). It does not speak HTTP and does not spawn processes; the server calls it and
//! maps its [`StoreError`]s to responses.
//!
//! * **Backends.** SQLite ([`Store::open_sqlite`], [`Store::open_sqlite_in_memory`]: bundled,
//!   WAL, versioned migrations) for one node, and PostgreSQL ([`Store::open_postgres`], see the
//!   `postgres` module: a `deadpool-postgres` pool, the same schema versions) for several
//!   nodes sharing one database, behind the same handle. Every decision (validation, content
//!   addressing, layout, history retention, the rollback target, the function limit) is made in
//!   backend-independent code; a backend only moves rows, each operation in one transaction.
//!   The behaviour suite is written once against a `Store` (the `conformance` module behind the
//!   `testing` feature, run with `conformance_tests!`) so that every backend runs it unchanged.
//! * **Changes** (deploys, rollbacks, deletes, secrets, users, net-allow lists, keys) are
//!   announced to [`Store::subscribe_changes`] subscribers: in-process on SQLite, through
//!   `LISTEN/NOTIFY` to every node on PostgreSQL (see [`changes`]). Changes of users' sign-in
//!   states also reach the [`Store::on_user_change`] listeners, on PostgreSQL whichever node
//!   made them.
//! * **Deployments** are immutable and content-addressed: the id is a hash of the entry, the
//!   files (sorted by path) and the automations (canonical JSON), so the same content always has
//!   the same id. File contents are stored once per distinct content. Per function `(app, name)`
//!   the store keeps the active deployment and a history of activations; [`Store::deploy`] and
//!   [`Store::rollback`] switch the active deployment in one transaction, so a crash leaves the
//!   old or the new deployment active, never a mix.
//! * **Retention.** The history keeps every activation of the 20 most recently activated
//!   distinct deployments of a function (so at least the last 10 deploys stay available for
//!   rollback); deployments and contents nothing refers to any more are deleted in the same
//!   transaction. [`Store::gc`] sweeps the whole database as well.
//! * **Backups.** [`backup::copy_sqlite`] copies a SQLite database (the store's or the log
//!   store's) as one consistent snapshot while a server writes to it, for `homebase backup`.
//! * **Materialisation.** [`Store::materialize`] writes a deployment's files to the node's disk
//!   under its content address, atomically, for the runtime to run;
//!   [`Store::materialize_function`] reads them only when that folder is missing, and
//!   [`Store::app_digests`] tells a node which apps changed since it loaded them (see the
//!   `node` module).
//! * **Rate limits** shared by the nodes (login and mail limits): [`Store::hit_limits`] checks
//!   and counts fixed-window counters in one transaction (see the `limits` module).
//!
//! The API is async; SQLite work runs on tokio's blocking threads. Times are milliseconds since
//! the Unix epoch.

/// Runs `$call` with `$db` bound to the store's backend, whichever it is: both backends have
/// the same row-moving operations.
macro_rules! on_backend {
    ($store:expr, $db:ident => $call:expr) => {
        match &$store.inner.backend {
            $crate::Backend::Sqlite($db) => $call,
            $crate::Backend::Postgres($db) => $call,
        }
    };
}

pub mod backup;
pub mod changes;
mod content;
pub mod entities;
mod error;
mod ids;
mod limits;
pub mod logs;
mod materialize;
mod model;
mod netallow;
mod node;
mod postgres;
mod secrets;
mod sqlite;
mod users;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod pg_testing;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use changes::{CHANGE_BUFFER, Change, ChangeKind, Changes};
pub use content::{MAX_HISTORY_ENTRIES, MAX_PATH_CLIMB, PreparedDeployment, RETAINED_DEPLOYMENTS};
pub use entities::{ChangeCursor, ChangeOp, EntityChange, NewRecord, SchemaChanges, WriteError};
pub use error::{Result, StoreError};
pub use ids::KEY_PREFIX;
pub use limits::{LimitCounter, LimitHit, MAX_LIMIT_KEY};
pub use logs::{LogQuery, LogRecord, LogStore, MAX_LOG_QUERY, PruneReport, Retention};
pub use model::{
    ActiveFunction, ApiKey, App, DeployFile, DeployOutcome, DeployStatus, Deployment, FunctionHead, GcReport,
    HistoryEntry, KeyScope, StoreStats,
};
pub use netallow::MAX_NET_ALLOW_ENTRIES;
pub use secrets::{MASTER_KEY_LEN, MasterKey, is_valid_secret_name};
pub use users::{
    CodeCheck, CodePurpose, MAX_CODE_ATTEMPTS, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, NewUser, User, UserChange,
    UserRole, UserUpdate, normalize_email, validate_password,
};

/// The handle to Homebase's persistent state. Cloning is cheap (an `Arc`); all clones share
/// one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// What secrets are encrypted under; `None` until [`Store::set_master_key`] for a file
    /// database (secret operations then fail), random for an in-memory one.
    master_key: RwLock<Option<MasterKey>>,
    /// Where committed changes go to the subscribers.
    changes: changes::ChangeHub,
    /// Told after every committed change of a user's sign-in state (see [`Store::on_user_change`]).
    user_listeners: Arc<users::UserListeners>,
}

/// The database behind the handle; both variants have the same operations.
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// The content address [`Store::deploy`] gives `deployment`, after the same checks; pure.
pub fn deployment_id(deployment: &Deployment) -> Result<String> {
    Ok(content::prepare(deployment.clone())?.id)
}

/// Writes a prepared deployment under `root/<id>/` without touching any database: for checking
/// a deploy (with Deno, say) before anything is stored. Returns the absolute path of the entry
/// file. Blocking.
pub fn materialize_unstored(deployment: &PreparedDeployment, root: &Path) -> Result<PathBuf> {
    materialize::materialize(&deployment.id, &deployment.entry, &deployment.file_contents(), root)
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend_name()).field("location", &self.location()).finish()
    }
}

impl Store {
    /// Opens the SQLite database file at `path`, creating it (and its folder) when missing and
    /// migrating it to the current schema. Fails with [`StoreError::SchemaTooNew`] for a
    /// database written by a newer Homebase.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let backend = tokio::task::spawn_blocking(move || sqlite::Sqlite::open(&path))
            .await
            .map_err(|e| StoreError::Database(format!("Opening the database failed: {e}")))??;
        Ok(Store::from_backend(Backend::Sqlite(backend)))
    }

    /// [`open_sqlite`](Store::open_sqlite) with the master key secrets are encrypted under.
    pub async fn open_sqlite_with_key(path: impl AsRef<Path>, key: MasterKey) -> Result<Store> {
        let store = Store::open_sqlite(path).await?;
        store.set_master_key(key);
        Ok(store)
    }

    /// A private in-memory SQLite database (for `dev` without persistence, and tests). Its
    /// secrets are encrypted under a random master key, as nothing outlives the process.
    pub async fn open_sqlite_in_memory() -> Result<Store> {
        let store = Store::from_backend(Backend::Sqlite(sqlite::Sqlite::open_in_memory()?));
        store.set_master_key(MasterKey::generate());
        Ok(store)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:5432/db`;
    /// `?options=-csearch_path%3Dname` picks the schema, which must exist; Homebase's own
    /// `pool_size=N` caps the pool, 16 by default) and migrates its schema. Everything lives
    /// there: apps, keys, deployments and their files, secrets, users, the shared server
    /// secrets. The store listens for the changes of every node from here on (one more
    /// connection, kept open). A server that cannot be reached is [`StoreError::Unavailable`]
    /// naming the URL without its password; a schema from a newer Homebase is
    /// [`StoreError::SchemaTooNew`].
    pub async fn open_postgres(url: &str) -> Result<Store> {
        let (hub, users) = (changes::ChangeHub::new(), Arc::new(users::UserListeners::default()));
        let backend = postgres::Postgres::open(url, hub.clone(), users.clone()).await?;
        Ok(Store::with_notices(Backend::Postgres(backend), hub, users))
    }

    /// [`open_postgres`](Store::open_postgres) with the master key secrets are encrypted under.
    pub async fn open_postgres_with_key(url: &str, key: MasterKey) -> Result<Store> {
        let store = Store::open_postgres(url).await?;
        store.set_master_key(key);
        Ok(store)
    }

    /// [`open_postgres`](Store::open_postgres) for a `postgres://` or `postgresql://` URL,
    /// [`open_sqlite`](Store::open_sqlite) for anything else (a file path).
    pub async fn open(url_or_path: &str) -> Result<Store> {
        if is_postgres_url(url_or_path) {
            Store::open_postgres(url_or_path).await
        } else {
            Store::open_sqlite(url_or_path).await
        }
    }

    fn from_backend(backend: Backend) -> Store {
        Store::with_notices(backend, changes::ChangeHub::new(), Arc::default())
    }

    fn with_notices(backend: Backend, changes: changes::ChangeHub, user_listeners: Arc<users::UserListeners>) -> Store {
        Store { inner: Arc::new(Inner { backend, master_key: RwLock::new(None), changes, user_listeners }) }
    }

    /// Committed changes from now on (see [`changes`]). On PostgreSQL the store listens from
    /// the moment it is opened (on a dedicated `LISTEN` connection), so every change committed
    /// after this returns (by any node) is delivered; losses of that connection are repaired in
    /// the background and reported to subscribers as [`ChangeKind::Resync`]. Notifications
    /// arrive asynchronously there, so a change committed just before this call may be
    /// delivered too (a subscriber that reloads on a change only reloads once more). Never
    /// fails today; the `Result` leaves room for a backend that connects here.
    pub async fn subscribe_changes(&self) -> Result<Changes> {
        Ok(self.inner.changes.subscribe())
    }

    /// Announces a committed change on SQLite (PostgreSQL announces it inside the transaction).
    fn announce(&self, change: Change) {
        if let Backend::Sqlite(_) = &self.inner.backend {
            self.inner.changes.send(change);
        }
    }

    /// Sets the key secrets are encrypted under (for every clone of this handle). Secrets
    /// stored under another key fail to decrypt with a clear error.
    pub fn set_master_key(&self, key: MasterKey) {
        *self.inner.master_key.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    fn master_key(&self) -> Result<MasterKey> {
        self.inner.master_key.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(|| {
            StoreError::Database(
                "No master key is set, so secrets cannot be stored or read (see Store::set_master_key)".into(),
            )
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Where the data lives: the database file, `:memory:`, or the PostgreSQL URL without its
    /// password (`postgres://user@host:port/db`).
    pub fn location(&self) -> &str {
        on_backend!(self, db => db.location())
    }

    #[cfg(test)]
    fn sqlite(&self) -> &sqlite::Sqlite {
        match &self.inner.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(_) => panic!("not a SQLite store"),
        }
    }

    /// Inserts an app and announces it.
    async fn insert_app(&self, app: App) -> Result<App> {
        let app = on_backend!(self, db => db.insert_app(app).await)?;
        self.announce(Change::app(&app.id, ChangeKind::App));
        Ok(app)
    }

    // ---- server secrets ----

    /// The server secret `name` (the token signing key, say): `len` random bytes made and
    /// stored by whichever node asks first, the stored bytes for everyone after. Race-free
    /// across processes: nodes that ask at once all get the one value that was stored.
    /// PostgreSQL only: with SQLite (one node) the server keeps such keys in files in its data
    /// folder, and this is [`StoreError::Invalid`].
    pub async fn server_secret(&self, name: &str, len: usize) -> Result<Vec<u8>> {
        if name.is_empty() || name.len() > 200 || len == 0 || len > 4096 {
            return Err(StoreError::invalid(format!(
                "A server secret needs a name of 1 to 200 bytes and 1 to 4096 bytes of value (got '{name}', {len})"
            )));
        }
        match &self.inner.backend {
            Backend::Postgres(db) => {
                let mut value = vec![0u8; len];
                rand::Rng::fill(&mut rand::rng(), value.as_mut_slice());
                db.server_secret(name.to_string(), value, ids::now_ms()).await
            }
            Backend::Sqlite(_) => Err(StoreError::invalid(
                "Server secrets are shared through PostgreSQL; with SQLite the server keeps its keys in files",
            )),
        }
    }

    // ---- apps ----

    /// Creates an app with a random 24-hex-character id. The name is trimmed and must not be
    /// empty.
    pub async fn create_app(&self, name: &str) -> Result<App> {
        let name = content::validate_app_name(name)?;
        let app = App { id: ids::new_app_id(), name, created_at: ids::now_ms() };
        self.insert_app(app).await
    }

    /// The app with this id.
    pub async fn get_app(&self, id: &str) -> Result<Option<App>> {
        on_backend!(self, db => db.get_app(id.to_string()).await)
    }

    /// Every app, newest first.
    pub async fn list_apps(&self) -> Result<Vec<App>> {
        on_backend!(self, db => db.list_apps().await)
    }

    // ---- API keys ----

    /// Creates a key (`b44k_` and 40 random characters) and returns it with its secret. The
    /// secret is returned only here: the store keeps its SHA-256 and a short prefix.
    pub async fn create_key(&self, scope: KeyScope, name: &str) -> Result<(ApiKey, String)> {
        let secret = ids::new_key_secret();
        let key = new_key(&secret, scope, name)?;
        let key = on_backend!(self, db => db.insert_key(key, ids::key_hash(&secret), false).await)?;
        self.announce(Change::app(key.scope.app_id().unwrap_or(""), ChangeKind::Keys));
        Ok((key, secret))
    }

    /// Stores a key given from outside (`HOMEBASE_ADMIN_KEY`). Idempotent: importing a key that
    /// is already stored with the same scope returns the stored key unchanged; with another
    /// scope it is a [`StoreError::Conflict`]. The key must look like `b44k_` followed by 16 to
    /// 200 letters, digits, `-` or `_`.
    pub async fn import_key(&self, secret: &str, scope: KeyScope, name: &str) -> Result<ApiKey> {
        ids::validate_key_secret(secret)?;
        let wanted = scope.clone();
        let key = new_key(secret, scope, name)?;
        let key = on_backend!(self, db => db.insert_key(key, ids::key_hash(secret), true).await)?;
        self.announce(Change::app(key.scope.app_id().unwrap_or(""), ChangeKind::Keys));
        if key.scope != wanted {
            return Err(StoreError::conflict(format!(
                "This key is already registered as '{}' with another scope; create a new key instead",
                key.name
            )));
        }
        Ok(key)
    }

    /// The key this secret belongs to, if any. Marks the key used (at most once a minute).
    pub async fn verify_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        if !secret.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        on_backend!(self, db => db.verify_key(ids::key_hash(secret), ids::now_ms()).await)
    }

    /// Keys, newest first: every key with `None`, the keys scoped to one app with `Some(app)`.
    pub async fn list_keys(&self, app_id: Option<&str>) -> Result<Vec<ApiKey>> {
        on_backend!(self, db => db.list_keys(app_id.map(str::to_string)).await)
    }

    /// Deletes a key; `false` when there was none with this id.
    pub async fn revoke_key(&self, id: &str) -> Result<bool> {
        let revoked = on_backend!(self, db => db.delete_key(id.to_string()).await)?;
        if let Some(app_id) = revoked.as_ref() {
            self.announce(Change::app(app_id, ChangeKind::Keys));
        }
        Ok(revoked.is_some())
    }

    // ---- functions and deployments ----

    /// Stores `deployment` (unless its content is already stored) and makes it the active
    /// deployment of function `name` of app `app_id`, in one transaction. `Unchanged` (and
    /// nothing written) when the function's active deployment already has this content.
    ///
    /// Checked here: the app exists; the name is non-empty; every path is relative and
    /// normalised, listed once, and has a place in the layout; the entry is among the files;
    /// `automations` is an array. The project rules (names, the function limit, sizes, the shape
    /// of automations) are the caller's; [`deploy_with_limit`](Store::deploy_with_limit) checks
    /// the function limit too.
    pub async fn deploy(&self, app_id: &str, name: &str, deployment: Deployment) -> Result<DeployOutcome> {
        self.deploy_within(app_id, name, content::prepare(deployment)?, None).await
    }

    /// [`deploy`](Store::deploy), refusing with [`StoreError::TooManyFunctions`] a deploy that
    /// would add a function to an app that already has `max_functions`. Checked inside the
    /// deploy's transaction, under a lock (SQLite's write lock; on PostgreSQL the app's
    /// function-count lock), so concurrent deploys on any number of handles or nodes cannot
    /// together pass the limit. Deploys of one function are one at a time in any case.
    pub async fn deploy_with_limit(
        &self,
        app_id: &str,
        name: &str,
        deployment: PreparedDeployment,
        max_functions: u64,
    ) -> Result<DeployOutcome> {
        self.deploy_within(app_id, name, deployment, Some(max_functions)).await
    }

    async fn deploy_within(
        &self,
        app_id: &str,
        name: &str,
        prepared: PreparedDeployment,
        max_functions: Option<u64>,
    ) -> Result<DeployOutcome> {
        content::validate_function_name(name)?;
        let (app, function, now) = (app_id.to_string(), name.to_string(), ids::now_ms());
        let outcome = on_backend!(self, db => db.deploy(app, function, prepared, now, max_functions).await)?;
        if outcome.status == DeployStatus::Deployed {
            self.announce(Change::function(app_id, ChangeKind::Deploy, name));
        }
        Ok(outcome)
    }

    /// The app's functions with their active deployments, sorted by name (bytewise).
    pub async fn functions(&self, app_id: &str) -> Result<Vec<ActiveFunction>> {
        on_backend!(self, db => db.functions(app_id.to_string(), None, true).await)
    }

    /// One function with its active deployment.
    pub async fn function(&self, app_id: &str, name: &str) -> Result<Option<ActiveFunction>> {
        let functions = on_backend!(self, db => db.functions(app_id.to_string(), Some(name.to_string()), true).await)?;
        Ok(functions.into_iter().next())
    }

    /// How many functions the app has (the caller enforces the limit).
    pub async fn function_count(&self, app_id: &str) -> Result<u64> {
        on_backend!(self, db => db.function_count(app_id.to_string()).await)
    }

    /// Deletes a function: its active pointer and its history (a later deploy of the same name
    /// starts a fresh history); deployments and contents nothing else refers to are deleted too.
    /// `false` when there was no such function.
    pub async fn delete_function(&self, app_id: &str, name: &str) -> Result<bool> {
        let deleted = on_backend!(self, db => db.delete_function(app_id.to_string(), name.to_string()).await)?;
        if deleted {
            self.announce(Change::function(app_id, ChangeKind::DeleteFunction, name));
        }
        Ok(deleted)
    }

    /// The function's activations, newest first; the first is the active one. Empty for an
    /// unknown function.
    pub async fn history(&self, app_id: &str, name: &str) -> Result<Vec<HistoryEntry>> {
        on_backend!(self, db => db.history(app_id.to_string(), name.to_string()).await)
    }

    /// Activates an earlier deployment of the function and records that as an activation.
    /// `to`: a deployment in the function's history (else [`StoreError::NotFound`]); by
    /// default the newest one that differs from the active one, so a second rollback swaps
    /// back ([`StoreError::Conflict`] when there is none). Asking for the active deployment
    /// changes nothing. Returns the now active deployment id.
    pub async fn rollback(&self, app_id: &str, name: &str, to: Option<&str>) -> Result<String> {
        let (app, function, to, now) = (app_id.to_string(), name.to_string(), to.map(str::to_string), ids::now_ms());
        let (id, changed) = on_backend!(self, db => db.rollback(app, function, to, now).await)?;
        if changed {
            self.announce(Change::function(app_id, ChangeKind::Rollback, name));
        }
        Ok(id)
    }

    /// A stored deployment's content, files sorted by path.
    pub async fn deployment(&self, id: &str) -> Result<Option<Deployment>> {
        on_backend!(self, db => db.deployment(id.to_string()).await)
    }

    /// Writes the deployment's files under `root/<deployment_id>/` and returns the absolute
    /// path of its entry file. Layout: the entry's folder is `functions/_/` (one `_` more per
    /// extra folder that the most-climbing path needs), so `../../shared/x.ts` lands in
    /// `root/<id>/shared/x.ts`. The folder is written under a temporary name and renamed into
    /// place; an existing folder is complete and is reused. Paths are checked again here.
    pub async fn materialize(&self, deployment_id: &str, root: &Path) -> Result<PathBuf> {
        if !content::is_deployment_id(deployment_id) {
            return Err(StoreError::invalid(format!("'{deployment_id}' is not a deployment id")));
        }
        let deployment = self
            .deployment(deployment_id)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("Deployment '{deployment_id}'")))?;
        let (id, root) = (deployment_id.to_string(), root.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let files: Vec<(&str, &str)> =
                deployment.files.iter().map(|f| (f.path.as_str(), f.content.as_str())).collect();
            materialize::materialize(&id, &deployment.entry, &files, &root)
        })
        .await
        .map_err(|e| StoreError::Io(format!("Materialising the deployment failed: {e}")))?
    }

    /// Deletes every deployment that no function and no history entry refers to, and every
    /// content no deployment refers to. Deploys, rollbacks and deletes already collect what
    /// they release; this sweeps whatever is left.
    pub async fn gc(&self) -> Result<GcReport> {
        on_backend!(self, db => db.gc().await)
    }

    // ---- secrets ----

    /// Sets (adds or replaces) the app's secrets, all in one transaction. Every name must be a
    /// valid environment-variable name (`^[A-Za-z_][A-Za-z0-9_]*$`); the first bad one fails
    /// the whole call with [`StoreError::Invalid`] naming it. Values are encrypted before they
    /// reach the database and never appear in errors.
    pub async fn set_secrets(&self, app_id: &str, secrets: BTreeMap<String, String>) -> Result<()> {
        for (name, value) in &secrets {
            secrets::validate(name, Some(value))?;
        }
        let key = self.master_key()?;
        let mut sealed = Vec::with_capacity(secrets.len());
        for (name, value) in &secrets {
            let (nonce, ciphertext) = key.seal(app_id, name, value)?;
            sealed.push((name.clone(), nonce, ciphertext));
        }
        let changed = !sealed.is_empty();
        on_backend!(self, db => db.set_secrets(app_id.to_string(), sealed, ids::now_ms()).await)?;
        if changed {
            self.announce(Change::app(app_id, ChangeKind::Secrets));
        }
        Ok(())
    }

    /// The names of the app's secrets, sorted (bytewise); empty for an unknown app.
    pub async fn secret_names(&self, app_id: &str) -> Result<Vec<String>> {
        on_backend!(self, db => db.secret_names(app_id.to_string()).await)
    }

    /// The app's secrets, decrypted: for handing to the app's functions only.
    pub async fn secrets(&self, app_id: &str) -> Result<BTreeMap<String, String>> {
        let rows = on_backend!(self, db => db.sealed_secrets(app_id.to_string()).await)?;
        if rows.is_empty() {
            return Ok(BTreeMap::new());
        }
        let key = self.master_key()?;
        rows.into_iter()
            .map(|(name, nonce, ciphertext)| {
                let value = key.open(app_id, &name, &nonce, &ciphertext)?;
                Ok((name, value))
            })
            .collect()
    }

    /// Deletes one secret; `false` when the app had none by this name.
    pub async fn delete_secret(&self, app_id: &str, name: &str) -> Result<bool> {
        let deleted = on_backend!(self, db => db.delete_secret(app_id.to_string(), name.to_string()).await)?;
        if deleted {
            self.announce(Change::app(app_id, ChangeKind::Secrets));
        }
        Ok(deleted)
    }

    /// Row counts.
    pub async fn stats(&self) -> Result<StoreStats> {
        on_backend!(self, db => db.stats().await)
    }

    /// Test hook: `hook(op)` runs inside every write transaction (`op` is `"deploy"`,
    /// `"rollback"`, `"delete_function"`, `"create_app"`, …) after all its rows are written and
    /// before the commit; an `Err` aborts the transaction with [`StoreError::Database`]. It
    /// stays until [`clear_before_commit_hook`](Store::clear_before_commit_hook).
    #[cfg(any(test, feature = "testing"))]
    pub fn set_before_commit_hook<F>(&self, hook: F)
    where
        F: Fn(&str) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        on_backend!(self, db => db.set_before_commit_hook(Some(Arc::new(hook))))
    }

    /// Removes the hook set by [`set_before_commit_hook`](Store::set_before_commit_hook).
    #[cfg(any(test, feature = "testing"))]
    pub fn clear_before_commit_hook(&self) {
        on_backend!(self, db => db.set_before_commit_hook(None))
    }
}

/// A PostgreSQL URL as it may be shown (in logs, errors, printed settings):
/// `postgres://user@host:port/database`, without the password or options.
pub fn display_database_url(url: &str) -> String {
    postgres::display_url(url)
}

/// Whether `text` is a PostgreSQL URL rather than a file path.
pub fn is_postgres_url(text: &str) -> bool {
    let lower = text.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

fn new_key(secret: &str, scope: KeyScope, name: &str) -> Result<ApiKey> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StoreError::invalid("The key name is empty; name keys after their use, e.g. 'ci'"));
    }
    Ok(ApiKey {
        id: ids::new_key_id(),
        scope,
        name: name.to_string(),
        prefix: ids::key_visible_prefix(secret),
        created_at: ids::now_ms(),
        last_used_at: None,
    })
}

#[cfg(test)]
mod unstored_tests {
    use super::*;

    #[tokio::test]
    async fn an_unstored_deployment_has_the_id_and_layout_a_stored_one_gets() {
        let deployment = Deployment {
            entry: "entry.ts".into(),
            files: vec![
                DeployFile { path: "entry.ts".into(), content: "import '../../shared/a.ts';".into() },
                DeployFile { path: "../../shared/a.ts".into(), content: "export {}".into() },
            ],
            automations: serde_json::json!([]),
        };
        let dir = tempfile::tempdir().unwrap();
        let prepared = PreparedDeployment::new(deployment.clone()).unwrap();
        let id = prepared.id().to_string();
        assert_eq!(deployment_id(&deployment).unwrap(), id);
        let entry = materialize_unstored(&prepared, dir.path()).unwrap();
        assert!(entry.ends_with("entry.ts") && entry.starts_with(dir.path().canonicalize().unwrap().join(&id)));
        let store = Store::open_sqlite_in_memory().await.unwrap();
        let app = store.create_app("a").await.unwrap();
        assert_eq!(store.deploy(&app.id, "f", deployment.clone()).await.unwrap().deployment_id, id);
        // A deployment that breaks a rule never gets prepared, so it cannot be written.
        let bad = Deployment { entry: "missing.ts".into(), ..deployment };
        assert!(PreparedDeployment::new(bad).unwrap_err().to_string().contains("not among the files"));
    }
}

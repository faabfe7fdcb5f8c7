//! The PostgreSQL backend: a `deadpool-postgres` pool of `tokio-postgres` connections, for
//! several Homebase nodes sharing one database.
//!
//! * **Same rows as SQLite.** The schema mirrors SQLite's migrations version by version
//!   ([`migrations`]), in the schema the connection's `search_path` names (so one database can
//!   hold several Homebase installations, and each test gets its own). Names that are listed in
//!   order (functions, files, secrets) are `COLLATE "C"`, bytewise as in SQLite.
//! * **One transaction per operation**, `READ COMMITTED`; the operations that read before they
//!   write take locks that make them safe across nodes: a deploy, rollback or delete locks its
//!   function (a transaction-scoped advisory lock), and a deploy that adds a function also locks
//!   the app's row before counting the app's functions, so two nodes cannot both pass the limit.
//!   Multi-statement reads run in a `REPEATABLE READ READ ONLY` transaction (one snapshot).
//! * **Changes** are announced with `pg_notify` inside the writing transaction (see
//!   [`crate::changes`]) on a channel named after the schema, with the random id of the
//!   writing store; [`listen`] keeps the dedicated `LISTEN` connection, opened with the store.
//!   It feeds the change subscribers and tells the `on_user_change` listeners about the
//!   sign-in changes of other stores (their own store told them as it committed), and about
//!   "everything" after a reconnect.
//! * **Errors.** A server that cannot be reached, or a connection lost while running, is
//!   [`StoreError::Unavailable`] (HTTP 503); serialisation failures and deadlocks are
//!   [`StoreError::Busy`]. The pool checks each connection before handing it out (one empty
//!   query) and replaces closed ones, so it recovers by itself once the server is back.
//!   Nothing the store reports carries the password of the URL.

mod apps;
mod deployments;
mod entities;
mod limits;
pub(crate) mod listen;
pub(crate) mod logs;
pub(crate) mod migrations;
mod netallow;
mod secrets;
mod users;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, NoTls, Row};

use crate::changes::{Change, ChangeHub, ChangeKind};
use crate::error::{Result, StoreError};
use crate::sqlite::BeforeCommitHook;
use crate::users::{UserChange, UserListeners};

/// Connections one store keeps at most unless the URL says otherwise with `pool_size=N` (one
/// more is the `LISTEN` connection).
pub(crate) const POOL_SIZE: usize = 16;
/// How long an operation waits for a free connection, and a new connection for the server.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A parsed connection URL, with the location to show in messages (never the password).
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: Config,
    pub(crate) location: String,
    pub(crate) pool_size: usize,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("location", &self.location).finish_non_exhaustive()
    }
}

impl Target {
    /// Parses `url` (`postgres://user:password@host:port/db?options`, or `key=value` pairs),
    /// with Homebase's defaults for what the URL leaves out.
    pub(crate) fn parse(url: &str) -> Result<Target> {
        let (url, pool_size) = take_pool_size(url)?;
        let mut config: Config = url.parse().map_err(|e| {
            StoreError::invalid(format!(
                "'{}' is not a PostgreSQL URL ({e}); write it like postgres://user:password@host:5432/database",
                redact(&url)
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("homebase");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Notice a dead peer on an idle connection (the LISTEN connection is idle most of the time).
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        let location = location(&config);
        Ok(Target { config, location, pool_size })
    }
}

/// Takes Homebase's own `pool_size=N` (1 to 1000) out of a URL's query, for the driver does not
/// know it.
fn take_pool_size(url: &str) -> Result<(String, usize)> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), POOL_SIZE)) };
    let mut size = POOL_SIZE;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("pool_size=") {
            Some(n) => {
                size = n.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    StoreError::invalid(format!("pool_size={n} in the database URL is not a number from 1 to 1000"))
                })?
            }
            None => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, size))
}

/// `postgres://user@host:port/database`, from the parsed configuration: never a password.
fn location(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config.get_ports().get(i).or(config.get_ports().first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// Where `url` points, to show: `postgres://user@host:port/database`, never a password (also
/// for a URL that does not parse).
pub(crate) fn display_url(url: &str) -> String {
    match Target::parse(url) {
        Ok(target) => target.location,
        Err(_) => redact(url),
    }
}

/// `url` with anything that may be a password taken out, for an error about a URL that does
/// not even parse.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            // The user part ends at the last `@` (a password may hold `/`, `?`, `#` or `@`
            // unencoded); the query, which may carry a password too, is dropped.
            let (user, hosts) = match rest.rsplit_once('@') {
                Some((user_info, hosts)) => {
                    (format!("{}@", user_info.split([':', '/', '?']).next().unwrap_or("")), hosts)
                }
                None => (String::new(), rest),
            };
            let hosts = hosts.split(['?', '#']).next().unwrap_or("");
            format!("{scheme}://{user}{hosts}")
        }
        None => "(a connection string)".to_string(),
    }
}

/// Maps a driver error: lost or refused connections are `Unavailable`, serialisation failures
/// and deadlocks `Busy`, the rest `Database` with the server's message.
pub(crate) fn pg(error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return match code {
            "40001" | "40P01" | "55P03" => StoreError::Busy,
            // admin_shutdown (pg_terminate_backend), crash_shutdown, cannot_connect_now,
            // too_many_connections, and the connection exceptions.
            "57P01" | "57P02" | "57P03" | "53300" => StoreError::Unavailable(db.message().to_string()),
            _ if code.starts_with("08") => StoreError::Unavailable(db.message().to_string()),
            _ => StoreError::Database(format!("{} ({code})", db.message())),
        };
    }
    let text = describe(&error);
    let io = std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>());
    if error.is_closed() || io || text.starts_with("error connecting") || text.starts_with("timeout") {
        StoreError::Unavailable(format!("the connection to the database was lost ({text})"))
    } else {
        StoreError::Database(text)
    }
}

/// The error and its causes, on one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn pool_error(location: &str, error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(e) => match pg(e) {
            StoreError::Unavailable(why) => {
                StoreError::Unavailable(format!("could not connect to the PostgreSQL database {location}: {why}"))
            }
            // A refused login, a database that does not exist.
            StoreError::Database(why) => {
                StoreError::Database(format!("Could not connect to the PostgreSQL database {location}: {why}"))
            }
            other => other,
        },
        PoolError::Timeout(_) => StoreError::Unavailable(format!(
            "no connection to the PostgreSQL database {location} could be had within {}s",
            WAIT_TIMEOUT.as_secs()
        )),
        other => StoreError::Database(format!("The connection pool failed: {other}")),
    }
}

pub(crate) struct Postgres {
    pool: Pool,
    target: Target,
    /// The schema the tables live in (`current_schema()`).
    schema: String,
    /// The `NOTIFY` channel of changes to this schema.
    channel: String,
    /// This store's random id, sent with its changes: its own sign-in changes reach its
    /// `on_user_change` listeners as they commit, not a second time from `LISTEN`.
    node: String,
    hook: Arc<Mutex<Option<BeforeCommitHook>>>,
    /// Held for its task: dropping the store stops listening.
    _listener: listen::Listener,
}

impl Postgres {
    /// Connects, checks the schema, migrates it and starts listening for changes (returning
    /// once it listens), which go to `changes` and, for the sign-in changes of other stores,
    /// to `users`.
    pub(crate) async fn open(url: &str, changes: ChangeHub, users: Arc<UserListeners>) -> Result<Postgres> {
        let target = Target::parse(url)?;
        let pool = new_pool(&target)?;
        let client = pool.get().await.map_err(|e| pool_error(&target.location, e))?;
        let schema = current_schema(&client, &target.location).await?;
        migrations::migrate(&client, &target.location, &schema, migrations::MAIN).await?;
        migrations::migrate(&client, &target.location, &schema, migrations::CLUSTER).await?;
        drop(client);
        let channel = listen::channel_name("homebase_changes", &schema);
        let node = crate::ids::hex(&rand::random::<[u8; 8]>());
        let (hub, listeners, me) = (changes.clone(), users.clone(), node.clone());
        let listener = listen::Listener::new(target.clone(), vec![channel.clone()], move |_, payload| {
            let (change, origin) = Change::parse(payload);
            // The listeners first: once a subscriber sees the change, they have heard it.
            match (&change.kind, &change.user) {
                (ChangeKind::Resync, _) => listeners.announce(UserChange::Everything),
                (ChangeKind::SignIn, Some(user_id)) if origin != me => {
                    listeners.announce(UserChange::User { app_id: &change.app_id, user_id })
                }
                _ => {}
            }
            hub.send(change)
        });
        listener
            .start(move || {
                users.announce(UserChange::Everything);
                changes.send(Change::resync());
            })
            .await?;
        Ok(Postgres { pool, target, schema, channel, node, hook: Arc::new(Mutex::new(None)), _listener: listener })
    }

    pub(crate) fn location(&self) -> &str {
        &self.target.location
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn set_before_commit_hook(&self, hook: Option<BeforeCommitHook>) {
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    /// A connection from the pool, checked to be open.
    pub(crate) async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| pool_error(&self.target.location, e))
    }

    /// Ends a write transaction: when it wrote, announces `change` (delivered on commit), runs
    /// the test hook and commits; otherwise rolls back.
    pub(crate) async fn finish(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        op: &str,
        wrote: bool,
        change: Option<Change>,
    ) -> Result<()> {
        if !wrote {
            return tx.rollback().await.map_err(pg);
        }
        if let Some(change) = change {
            execute(&tx, "SELECT pg_notify($1, $2)", &[&self.channel, &change.payload(&self.node)]).await?;
        }
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(hook) = hook {
            hook(op).map_err(StoreError::Database)?;
        }
        tx.commit().await.map_err(|e| match pg(e) {
            StoreError::Unavailable(why) => StoreError::Unavailable(format!(
                "{why}; the connection was lost while committing, so whether the change was stored is unknown"
            )),
            other => other,
        })
    }
}

pub(crate) fn new_pool(target: &Target) -> Result<Pool> {
    let manager = Manager::from_config(
        target.config.clone(),
        NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Verified },
    );
    Pool::builder(manager)
        .max_size(target.pool_size)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Database(format!("Could not build the connection pool: {e}")))
}

/// The schema `search_path` points at; an error naming the location when there is none.
pub(crate) async fn current_schema(client: &Object, location: &str) -> Result<String> {
    let row = client.query_one("SELECT current_schema()", &[]).await.map_err(pg)?;
    row.get::<_, Option<String>>(0).ok_or_else(|| {
        StoreError::Database(format!(
            "The PostgreSQL database {location} has no schema to create tables in: the search_path names \
             schemas that do not exist; create the schema or fix the search_path option"
        ))
    })
}

// ---- statement helpers: prepared once per connection, errors mapped ----

pub(crate) async fn query<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&statement, params).await.map_err(pg)
}

pub(crate) async fn query_opt<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query_opt(&statement, params).await.map_err(pg)
}

pub(crate) async fn query_one<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Row> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query_one(&statement, params).await.map_err(pg)
}

pub(crate) async fn execute<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<u64> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&statement, params).await.map_err(pg)
}

/// A transaction-scoped advisory lock on `parts` (hashed, with the schema, to a 64-bit key):
/// held until the transaction ends, on every node.
pub(crate) async fn lock<C: GenericClient>(c: &C, schema: &str, parts: &[&str]) -> Result<()> {
    let mut key = Vec::new();
    for part in std::iter::once(schema).chain(parts.iter().copied()) {
        key.extend_from_slice(part.as_bytes());
        key.push(0);
    }
    let digest = crate::ids::sha256_hex(&key);
    let key = u64::from_str_radix(&digest[..16], 16).unwrap_or(0) as i64;
    execute(c, "SELECT pg_advisory_xact_lock($1)", &[&key]).await?;
    Ok(())
}

#[cfg(test)]
mod tests;

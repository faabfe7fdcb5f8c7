//! A PostgreSQL schema of its own for each test, dropped when the test ends (also when it
//! fails), so that tests run in parallel on one server and leave nothing behind.
//!
//! The server is `HOMEBASE_TEST_POSTGRES_URL`, by default `postgres://postgres@127.0.0.1:5432/test`
//! (the machine's server with trust authentication; CI starts it). The database is created
//! when missing. A server that cannot be reached fails the test with a message saying so:
//! PostgreSQL tests are never skipped silently.
//!
//! Only enabled with the `testing` feature (and in this crate's tests).

use std::time::Duration;

use tokio_postgres::NoTls;

/// The server tests use unless `HOMEBASE_TEST_POSTGRES_URL` names another.
pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The URL of the test server.
pub fn server_url() -> String {
    std::env::var("HOMEBASE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_TEST_URL.to_string())
}

/// A fresh schema, dropped (with everything in it) when this is dropped.
#[derive(Debug)]
pub struct TestSchema {
    /// The server URL.
    pub server: String,
    /// The schema's name (`hb_test_` and 16 hex digits); also the `application_name` of the
    /// connections made with [`url`](TestSchema::url), so tests can find them.
    pub name: String,
    /// A URL whose connections work in the schema (with `pool_size=4`).
    pub url: String,
}

impl TestSchema {
    /// Creates the schema; panics with a clear message when PostgreSQL cannot be reached.
    pub async fn new() -> TestSchema {
        let server = server_url();
        let client = admin(&server).await;
        let random: [u8; 8] = rand::random();
        let name = format!("hb_test_{}", crate::ids::hex(&random));
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let separator = if server.contains('?') { '&' } else { '?' };
        // Few connections per store: many tests run at once on one server.
        let url = format!("{server}{separator}options=-csearch_path%3D{name}&application_name={name}&pool_size=4");
        TestSchema { server, name, url }
    }

    /// A connection to the server, outside the schema (for poking at it).
    pub async fn admin(&self) -> tokio_postgres::Client {
        admin(&self.server).await
    }

    /// Ends every connection the schema's stores have open (as a database restart would), and
    /// returns how many there were.
    pub async fn terminate_connections(&self) -> i64 {
        let client = self.admin().await;
        let row = client
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .unwrap();
        row.get(0)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs outside async; a thread of its own can block on a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&server, NoTls).await?;
                tokio::spawn(connection);
                // A test that failed may have left a transaction open (its runtime no longer
                // runs the task that would roll it back): end the schema's connections first.
                let end = "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                           WHERE application_name = $1 AND pid <> pg_backend_pid()";
                client.execute(end, &[&name]).await?;
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop the test schema {}: {dropped:?}", self.name);
        }
    }
}

/// Connects to `server`, creating its database when it is missing.
async fn admin(server: &str) -> tokio_postgres::Client {
    let connect = |url: String| async move {
        let (client, connection) = tokio::time::timeout(Duration::from_secs(15), tokio_postgres::connect(&url, NoTls))
            .await
            .map_err(|_| format!("timed out connecting to {url}"))?
            .map_err(|e| match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            })?;
        tokio::spawn(connection);
        Ok::<_, String>(client)
    };
    match connect(server.to_string()).await {
        Ok(client) => client,
        Err(error) if error.contains("does not exist") => {
            // The database is missing: create it from the maintenance database.
            let config: tokio_postgres::Config = server.parse().unwrap();
            let db = config.get_dbname().unwrap_or("test").to_string();
            let maintenance = server.replacen(&format!("/{db}"), "/postgres", 1);
            let client = connect(maintenance).await.unwrap_or_else(|e| unreachable_server(server, &e));
            if let Err(e) = client.batch_execute(&format!("CREATE DATABASE \"{db}\"")).await {
                // Another test may have created it meanwhile.
                assert!(e.code().is_some_and(|c| c.code() == "42P04"), "could not create the test database: {e}");
            }
            connect(server.to_string()).await.unwrap_or_else(|e| unreachable_server(server, &e))
        }
        Err(error) => unreachable_server(server, &error),
    }
}

fn unreachable_server(server: &str, error: &str) -> ! {
    panic!(
        "\n\nPostgreSQL is not reachable at {server}: {error}\n\
         The PostgreSQL tests need a server there (trust authentication for user postgres). Start the\n\
         machine's cluster (CI's .ci/run does: pg_ctlcluster <version> main start) or point\n\
         HOMEBASE_TEST_POSTGRES_URL at another server.\n"
    )
}

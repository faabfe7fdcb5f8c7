//! `homebase serve` on PostgreSQL (`database-url`), one node at a time: everything lives in the
//! database, a database that cannot be reached at start is a clear error without the password,
//! a connection lost while running answers `503 database_unavailable` and heals by itself, and
//! changes made while this node could not hear them reach it once it can. Several nodes at once
//! are `crates/cli/tests/nodes.rs`. Each test has a schema of its own (`pg_testing`).

use std::time::{Duration, Instant};

use homebase_store::pg_testing::TestSchema;
use homebase_store::{DeployFile, Deployment, LogStore, MasterKey, Store};
use homebase_testkit::{ADMIN_KEY, PlatformOptions, TEST_MASTER_KEY, TcpProxy, TestPlatform, json_of};
use serde_json::{Value, json};

async fn answer(response: reqwest::Response) -> (u16, Value) {
    (response.status().as_u16(), json_of(response).await)
}

fn on(url: &str) -> PlatformOptions {
    PlatformOptions { database_url: Some(url.to_string()), ..PlatformOptions::default() }
}

async fn create_app(server: &TestPlatform, name: &str) -> String {
    let response =
        server.client().post(server.at("/api/apps")).header("api_key", ADMIN_KEY).json(&json!({ "name": name })).send();
    let (status, body) = answer(response.await.unwrap()).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn code(version: &str) -> String {
    format!(
        "Deno.serve(() => Response.json({{ version: \"{version}\", secret: Deno.env.get(\"GREETING\") ?? null }}));\n"
    )
}

async fn deploy(server: &TestPlatform, app: &str, name: &str, version: &str) -> (u16, Value) {
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code(version) }] });
    let path = format!("/api/apps/{app}/backend-functions/{name}");
    answer(server.client().put(server.at(&path)).header("api_key", ADMIN_KEY).json(&body).send().await.unwrap()).await
}

async fn invoke(server: &TestPlatform, app: &str, name: &str) -> (u16, Value) {
    let url = server.at(&format!("/api/apps/{app}/functions/{name}"));
    answer(server.client().post(url).json(&json!({})).send().await.unwrap()).await
}

/// The same store the nodes use, opened directly (another node, as far as they can tell).
async fn direct(schema: &TestSchema) -> Store {
    Store::open_postgres_with_key(&schema.url, MasterKey::from_bytes(TEST_MASTER_KEY)).await.unwrap()
}

fn deployment(version: &str) -> Deployment {
    Deployment {
        entry: "entry.ts".into(),
        files: vec![DeployFile { path: "entry.ts".into(), content: code(version) }],
        automations: json!([]),
    }
}

/// Polls `f` every 20 ms for up to `limit`: for effects that travel through the database.
async fn within<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everything_lives_in_postgres_and_a_new_node_serves_it_from_there() {
    let schema = TestSchema::new().await;
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start_with(data.path(), on(&schema.url)).await;
    assert_eq!(server.store.backend_name(), "postgres");
    assert!(server.database.starts_with("postgres://postgres@127.0.0.1:5432/"), "{}", server.database);
    let app = create_app(&server, "pg").await;
    let (status, body) = deploy(&server, &app, "hello", "1").await;
    assert_eq!(status, 200, "{body}");
    let response = server
        .client()
        .post(server.at(&format!("/api/apps/{app}/secrets")))
        .header("api_key", ADMIN_KEY)
        .json(&json!({ "GREETING": "hello from postgres" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(invoke(&server, &app, "hello").await, (200, json!({ "version": "1", "secret": "hello from postgres" })));
    server.stop().await;

    // Nothing but caches and keys in the data folder: no SQLite database, no log file, no token key.
    for file in ["homebase.db", "logs.db", "auth.key"] {
        assert!(!data.path().join(file).exists(), "{file} in the data folder");
    }
    // The lines the function's worker printed about itself are in the log table.
    let logs = LogStore::open_postgres(&schema.url).await.unwrap();
    assert!(logs.count(Some(&app), Some("hello")).await.unwrap() > 0, "the log lines are in PostgreSQL");
    // The token signing key is a server secret of the database.
    let admin = schema.admin().await;
    let sql = format!("SELECT count(*) FROM {}.server_secrets WHERE name = 'token-signing-key'", schema.name);
    assert_eq!(admin.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0), 1);

    // Another node, with a data folder of its own, serves the app from the database.
    let other = tempfile::tempdir().unwrap();
    let second = TestPlatform::start_with(other.path(), on(&schema.url)).await;
    assert_eq!(invoke(&second, &app, "hello").await, (200, json!({ "version": "1", "secret": "hello from postgres" })));
    second.stop().await;

    // A node with another master key could not read the others' secrets: it does not start.
    let third = tempfile::tempdir().unwrap();
    std::fs::write(third.path().join("master.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    let mut config =
        homebase_server::config::Config { port: 0, database_url: Some(schema.url.clone()), ..Default::default() };
    config.host = std::net::IpAddr::from([127, 0, 0, 1]);
    let serve = homebase_server::serve::ServeConfig {
        admin_key: Some(ADMIN_KEY.into()),
        deno: Some(homebase_testkit::deno().await),
        ..homebase_server::serve::ServeConfig::new(config, third.path().to_path_buf())
    };
    let error = match homebase_server::serve::start(serve, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("a node with another master key started"),
        Err(error) => error,
    };
    let text = format!("{error}: {}", std::error::Error::source(&error).map(|s| s.to_string()).unwrap_or_default());
    assert!(text.contains("master key") && text.contains("HOMEBASE_MASTER_KEY"), "{text}");
}

#[tokio::test]
async fn an_unreachable_database_at_start_is_a_clear_error_without_the_password() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://homebase:hunter2@127.0.0.1:{port}/homebase");
    let data = tempfile::tempdir().unwrap();
    let error = match TestPlatform::try_start(data.path(), on(&url)).await {
        Ok(_) => panic!("started without a database"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains(&format!("postgres://homebase@127.0.0.1:{port}/homebase")), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert!(error.contains("unavailable"), "{error}");
}

/// The database goes away while the node runs (every connection cut, new ones refused, as in
/// a database restart or a network failure): routes that need it answer 503 with a JSON body,
/// `/readyz` says so, the function routes keep serving what was loaded, and everything comes
/// back by itself when the database does, with what changed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_database_answers_503_and_the_node_recovers_by_itself() {
    let schema = TestSchema::new().await;
    let (proxy, url) = TcpProxy::for_url(&schema.url).await;
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start_with(data.path(), on(&url)).await;
    let app = create_app(&server, "outage").await;
    assert_eq!(deploy(&server, &app, "f", "1").await.0, 200);
    assert_eq!(invoke(&server, &app, "f").await.1["version"], "1");
    let client = server.client();
    assert_eq!(client.get(server.at("/readyz")).send().await.unwrap().status(), 200);

    proxy.cut();
    let (status, body) =
        answer(client.get(server.at("/api/apps")).header("api_key", ADMIN_KEY).send().await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "database_unavailable", "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty() && !body["detail"].as_str().unwrap().is_empty(), "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "no driver text in the body: {body}");
    let ready = client.get(server.at("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // The app users' routes too.
    let login = client
        .post(server.at(&format!("/api/apps/{app}/auth/login")))
        .json(&json!({ "email": "ann@example.test", "password": "password-1" }))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(login).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("database_unavailable")), "{body}");
    // The function keeps answering from what this node loaded.
    assert_eq!(invoke(&server, &app, "f").await, (200, json!({ "version": "1", "secret": null })));

    // Meanwhile another node deploys version 2: this node cannot hear about it now.
    let other = direct(&schema).await;
    other.deploy(&app, "f", deployment("2")).await.unwrap();

    proxy.restore();
    within(Duration::from_secs(30), "readiness after the database came back", || {
        let (client, url) = (client.clone(), server.at("/readyz"));
        async move { client.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let (status, apps) =
        answer(client.get(server.at("/api/apps")).header("api_key", ADMIN_KEY).send().await.unwrap()).await;
    assert_eq!(status, 200, "{apps}");
    // The change made while it could not listen reaches it once it listens again.
    within(Duration::from_secs(30), "the deploy made during the outage to be served", || async {
        invoke(&server, &app, "f").await.1["version"] == "2"
    })
    .await;
    server.stop().await;
}

/// The database ends the node's connections (`pg_terminate_backend`, as an administrator or a
/// failover does): the pool replaces them at once, and change notifications resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_connections_are_replaced_and_changes_still_arrive() {
    let schema = TestSchema::new().await;
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start_with(data.path(), on(&schema.url)).await;
    let app = create_app(&server, "terminated").await;
    assert_eq!(deploy(&server, &app, "f", "1").await.0, 200);
    assert!(schema.terminate_connections().await > 0);
    let client = server.client();
    let (status, body) =
        answer(client.get(server.at("/api/apps")).header("api_key", ADMIN_KEY).send().await.unwrap()).await;
    assert_eq!(status, 200, "the next request gets a new connection: {body}");
    let other = direct(&schema).await;
    other.deploy(&app, "f", deployment("2")).await.unwrap();
    within(Duration::from_secs(30), "a deploy by another node after the connections were cut", || async {
        invoke(&server, &app, "f").await.1["version"] == "2"
    })
    .await;
    server.stop().await;
}

/// A change whose notification never arrives is healed by the periodic recheck of the apps'
/// digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missed_notification_is_healed_by_the_recheck() {
    let schema = TestSchema::new().await;
    let data = tempfile::tempdir().unwrap();
    let options = PlatformOptions { recheck_every: Duration::from_millis(300), ..on(&schema.url) };
    let server = TestPlatform::start_with(data.path(), options).await;
    let app = create_app(&server, "recheck").await;
    assert_eq!(deploy(&server, &app, "f", "1").await.0, 200);
    // Another node deploys g; this node hears of it.
    let other = direct(&schema).await;
    let id = other.deploy(&app, "g", deployment("g")).await.unwrap().deployment_id;
    within(Duration::from_secs(10), "the other node's deploy to be served", || async {
        invoke(&server, &app, "g").await.1["version"] == "g"
    })
    .await;
    // Then f is pointed at g's deployment behind every node's back: no notification is sent,
    // as when one is lost on the way.
    let admin = schema.admin().await;
    let sql = format!("UPDATE {}.functions SET deployment_id = $1 WHERE app_id = $2 AND name = 'f'", schema.name);
    assert_eq!(admin.execute(&sql, &[&id, &app]).await.unwrap(), 1);
    within(Duration::from_secs(10), "the recheck to notice the silent change", || async {
        invoke(&server, &app, "f").await.1["version"] == "g"
    })
    .await;
    assert_eq!(server.platform.recheck().await.unwrap(), 0, "nothing changed since the last recheck");
    server.stop().await;
}

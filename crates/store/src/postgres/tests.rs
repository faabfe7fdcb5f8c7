//! PostgreSQL-only behaviour: opening, schema versions, several handles (nodes) on one schema,
//! lost connections, the shared server secrets and the log table. Each test works in a schema
//! of its own (see [`crate::pg_testing`]); the backend-independent behaviour is the
//! conformance suite, instantiated here too.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::logs::{LogQuery, LogRecord, Retention};
use crate::pg_testing::TestSchema;
use crate::{Change, ChangeKind, Changes, DeployFile, Deployment, LogStore, MasterKey, Store};

mod conformance {
    crate::conformance_tests!(|| async {
        let schema = crate::pg_testing::TestSchema::new().await;
        let store = crate::Store::open_postgres_with_key(&schema.url, crate::MasterKey::generate()).await.unwrap();
        (store, schema)
    });
}

async fn open(schema: &TestSchema) -> Store {
    Store::open_postgres_with_key(&schema.url, MasterKey::from_bytes([7; 32])).await.unwrap()
}

fn version(tag: &str) -> Deployment {
    Deployment {
        entry: "entry.ts".into(),
        files: vec![DeployFile { path: "entry.ts".into(), content: format!("export default () => {tag:?};") }],
        automations: serde_json::json!([]),
    }
}

async fn next(changes: &mut Changes) -> Change {
    tokio::time::timeout(Duration::from_secs(10), changes.recv()).await.expect("a change within 10 s").unwrap()
}

/// Ends the schema's connections from a thread of its own (for use inside the sync hook).
fn terminate_blocking(server: &str, name: &str) -> i64 {
    let (server, name) = (server.to_string(), name.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let probe = TestSchemaRef { server, name };
            probe.terminate().await
        })
    })
    .join()
    .unwrap()
}

/// The part of a [`TestSchema`] that terminating its connections needs, without dropping it.
struct TestSchemaRef {
    server: String,
    name: String,
}

impl TestSchemaRef {
    async fn terminate(&self) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.server, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .unwrap()
            .get(0)
    }
}

#[test]
fn locations_never_show_the_password() {
    let target = Target::parse("postgres://ann:s3cr3t@db.internal:6543/homebase?sslmode=disable").unwrap();
    assert_eq!(target.location, "postgres://ann@db.internal:6543/homebase");
    let target = Target::parse("host=db user=ann password=s3cr3t dbname=hb").unwrap();
    assert_eq!(target.location, "postgres://ann@db:5432/hb");
    let err = Target::parse("postgres://ann:s3cr3t@db:notaport/x").unwrap_err().to_string();
    assert!(!err.contains("s3cr3t") && err.contains("postgres://ann@db:notaport/x"), "{err}");
    assert_eq!(redact("postgres://ann:pw@h/x?password=pw"), "postgres://ann@h/x");
    // Passwords with unencoded `/`, `?`, `#` or `@` in a URL that does not parse.
    for url in ["postgres://u:pa/ss@host:5x32/db", "postgres://u:p?a#s@s@host:5x32/db", "postgres://u:pa/s?s@h:x/db"] {
        let shown = redact(url);
        assert!(!shown.contains("pa") && !shown.contains("s@"), "{url} → {shown}");
        assert!(shown.starts_with("postgres://u@h"), "{url} → {shown}");
        let err = Target::parse(url).unwrap_err().to_string();
        assert!(!err.contains("pa/") && !err.contains("p?a"), "{err}");
    }
    let target = Target::parse("postgres://h/db?pool_size=3&application_name=x").unwrap();
    assert_eq!((target.pool_size, target.config.get_application_name()), (3, Some("x")));
    assert_eq!(Target::parse("postgres://h/db").unwrap().pool_size, POOL_SIZE);
    assert_eq!(Target::parse("postgres://h/db?pool_size=0").unwrap_err().code(), "invalid");
    assert!(crate::is_postgres_url("postgresql://h/db") && !crate::is_postgres_url("/var/lib/homebase.db"));
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() {
    // Port 1 on the loopback: nothing listens there, the connection is refused at once.
    let err = Store::open_postgres("postgres://ann:s3cr3t@127.0.0.1:1/homebase").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!((err.status(), err.code()), (503, "database_unavailable"));
    let message = err.to_string();
    assert!(message.contains("postgres://ann@127.0.0.1:1/homebase"), "{message}");
    assert!(!message.contains("s3cr3t"), "{message}");
    let err = LogStore::open_postgres("postgres://ann:s3cr3t@127.0.0.1:1/homebase").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)) && !err.to_string().contains("s3cr3t"), "{err:?}");
    // A schema that does not exist is named as the problem.
    let err =
        Store::open_postgres(&format!("{}?options=-csearch_path%3Dno_such_schema", crate::pg_testing::server_url()))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("search_path"), "{err}");
    // So is a database that does not exist.
    let err = Store::open_postgres("postgres://postgres@127.0.0.1:5432/hb_no_such_database").await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("postgres://postgres@127.0.0.1:5432/hb_no_such_database"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn open_picks_the_backend_from_the_url() {
    let schema = TestSchema::new().await;
    assert_eq!(Store::open(&schema.url).await.unwrap().backend_name(), "postgres");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("homebase.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!((store.backend_name(), store.location()), ("sqlite", path.to_str().unwrap()));
}

#[tokio::test]
async fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let schema = TestSchema::new().await;
    let store = open(&schema).await;
    assert_eq!(store.backend_name(), "postgres");
    assert!(store.location().starts_with("postgres://postgres@127.0.0.1:5432/"), "{}", store.location());
    drop(store);
    drop(open(&schema).await); // opening again migrates nothing
    let admin = schema.admin().await;
    async fn versions(admin: &tokio_postgres::Client, name: &str) -> Vec<(String, i64)> {
        let rows = admin
            .query(&format!("SELECT component, version FROM {name}.homebase_schema ORDER BY component"), &[])
            .await
            .unwrap();
        rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect()
    }
    let main = migrations::MAIN.migrations.len() as i64;
    assert_eq!(versions(&admin, &schema.name).await, [("cluster".to_string(), 1), ("main".to_string(), main)]);
    admin
        .batch_execute(&format!("UPDATE {}.homebase_schema SET version = 99 WHERE component = 'main'", schema.name))
        .await
        .unwrap();
    let err = Store::open_postgres(&schema.url).await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade Homebase"), "{err}");
    assert_eq!(versions(&admin, &schema.name).await[1], ("main".to_string(), 99), "the database is left alone");
}

#[tokio::test]
async fn a_failing_migration_changes_nothing() {
    let schema = TestSchema::new().await;
    let admin = schema.admin().await;
    // An `apps` table that is not ours: migration 1 fails halfway.
    admin
        .batch_execute(&format!(
            "CREATE TABLE {0}.apps (legacy TEXT); INSERT INTO {0}.apps VALUES ('kept');",
            schema.name
        ))
        .await
        .unwrap();
    let err = Store::open_postgres(&schema.url).await.unwrap_err();
    assert!(err.to_string().contains("Migration of the main tables to schema version 1 failed"), "{err}");
    let tables: Vec<String> = admin
        .query("SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = $1", &[&schema.name])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["apps"], "no table of the failed migration (nor the version table) remains");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_data_and_hear_each_others_changes() {
    let schema = TestSchema::new().await;
    let (one, two) = (open(&schema).await, open(&schema).await);
    let mut heard = two.subscribe_changes().await.unwrap();
    let app = one.create_app("Shared").await.unwrap();
    assert_eq!(next(&mut heard).await, Change::app(&app.id, ChangeKind::App));
    one.deploy(&app.id, "f", version("1")).await.unwrap();
    let deployed = next(&mut heard).await;
    assert_eq!((deployed.kind, deployed.function.as_deref()), (ChangeKind::Deploy, Some("f")));
    assert_eq!(two.function(&app.id, "f").await.unwrap().unwrap().files[0].content, "export default () => \"1\";");
    let secrets = [("TOKEN".to_string(), "v".to_string())].into_iter().collect();
    one.set_secrets(&app.id, secrets).await.unwrap();
    assert_eq!(next(&mut heard).await.kind, ChangeKind::Secrets);
    assert_eq!(two.secrets(&app.id).await.unwrap()["TOKEN"], "v", "the same master key reads it on every node");

    // Twenty deploys of four functions, interleaved over both nodes, limited to three functions.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            let app_id = app.id.clone();
            tokio::spawn(async move {
                store
                    .deploy_with_limit(
                        &app_id,
                        &format!("g{}", i % 4),
                        crate::PreparedDeployment::new(version(&i.to_string())).unwrap(),
                        3,
                    )
                    .await
            })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => {}
            Err(StoreError::TooManyFunctions { .. }) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    // `f` and two of the four `g`s fit; every deploy of the other two was refused.
    let names: Vec<String> = one.functions(&app.id).await.unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(refused, 10, "{names:?}");
    for name in names.iter().filter(|n| n.starts_with('g')) {
        let history = two.history(&app.id, name).await.unwrap();
        let sequences: Vec<i64> = history.iter().map(|h| h.sequence).collect();
        assert_eq!(sequences, (1..=5).rev().collect::<Vec<_>>(), "{name}: every deploy recorded once, in order");
    }
    assert_eq!(one.gc().await.unwrap(), crate::GcReport::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_secrets_are_created_once_for_every_node() {
    let schema = TestSchema::new().await;
    let (one, two) = (open(&schema).await, open(&schema).await);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move { store.server_secret("token-signing-key", 32).await })
        })
        .collect();
    let mut values = HashSet::new();
    for task in tasks {
        values.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(values.len(), 1, "every node got the one stored key");
    let key = values.into_iter().next().unwrap();
    assert_eq!(key.len(), 32);
    assert_ne!(key, vec![0; 32]);
    drop(one);
    let again = open(&schema).await;
    assert_eq!(again.server_secret("token-signing-key", 32).await.unwrap(), key, "kept across restarts");
    assert_ne!(again.server_secret("other", 32).await.unwrap(), key);
    assert_eq!(again.server_secret("", 32).await.unwrap_err().code(), "invalid");
    let sqlite = Store::open_sqlite_in_memory().await.unwrap();
    assert_eq!(sqlite.server_secret("token-signing-key", 32).await.unwrap_err().code(), "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_connection_is_unavailable_and_the_pool_recovers() {
    let schema = TestSchema::new().await;
    let store = open(&schema).await;
    let mut changes = store.subscribe_changes().await.unwrap();
    let app = store.create_app("a").await.unwrap();
    let v1 = store.deploy(&app.id, "f", version("1")).await.unwrap();
    assert_eq!(next(&mut changes).await.kind, ChangeKind::App);
    assert_eq!(next(&mut changes).await.kind, ChangeKind::Deploy);

    // Every connection of the store ends in the middle of a deploy, just before its commit (as
    // when the database restarts): a 503 error, and nothing of the deploy is stored.
    let probe = TestSchemaRef { server: schema.server.clone(), name: schema.name.clone() };
    let (server, name) = (schema.server.clone(), schema.name.clone());
    store.set_before_commit_hook(move |op| {
        if op == "deploy" {
            let terminated = terminate_blocking(&server, &name);
            assert!(terminated >= 2, "the deploy's and the LISTEN connection: {terminated}");
        }
        Ok(())
    });
    let err = store.deploy(&app.id, "f", version("2")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!((err.status(), err.code()), (503, "database_unavailable"));
    store.clear_before_commit_hook();

    // The pool recovers by itself: the next operations succeed.
    assert_eq!(store.function(&app.id, "f").await.unwrap().unwrap().deployment_id, v1.deployment_id);
    assert_eq!(store.history(&app.id, "f").await.unwrap().len(), 1);
    // So does the LISTEN connection: subscribers are told to resync, then hear changes again.
    assert_eq!(next(&mut changes).await, Change::resync());
    store.deploy(&app.id, "f", version("3")).await.unwrap();
    assert_eq!(next(&mut changes).await.kind, ChangeKind::Deploy);

    // Idle connections that died between operations are replaced before they are used.
    assert!(probe.terminate().await >= 1);
    for _ in 0..5 {
        store.list_apps().await.unwrap();
        store.deploy(&app.id, "g", version("g")).await.unwrap();
    }
    assert_eq!(next(&mut changes).await, Change::resync());
}

type Notices = tokio::sync::mpsc::UnboundedReceiver<(String, String)>;

/// What a store's `on_user_change` listeners hear, as `(app, user)` (`("*", "*")`: everything),
/// in order.
fn hear_user_changes(store: &Store) -> Notices {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    store.on_user_change(move |change| {
        let pair = match change {
            crate::UserChange::User { app_id, user_id } => (app_id.to_string(), user_id.to_string()),
            crate::UserChange::Everything => ("*".to_string(), "*".to_string()),
        };
        let _ = sender.send(pair);
    });
    receiver
}

/// The next user notice, waiting at most 10 s.
async fn notice(notices: &mut Notices) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(10), notices.recv()).await.expect("a user notice within 10 s").unwrap()
}

/// The notices heard so far, without waiting.
fn heard(notices: &mut Notices) -> Vec<(String, String)> {
    std::iter::from_fn(|| notices.try_recv().ok()).collect()
}

/// A node hears the sign-in changes another node commits, once each, and its own only once;
/// creations and profile changes are not sign-in changes; a lost `LISTEN` connection means
/// "everything" on every node once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_changes_reach_every_node_once() {
    let schema = TestSchema::new().await;
    let (one, two) = (open(&schema).await, open(&schema).await);
    let (mut notices_one, mut notices_two) = (hear_user_changes(&one), hear_user_changes(&two));
    let (mut changes_one, mut changes_two) =
        (one.subscribe_changes().await.unwrap(), two.subscribe_changes().await.unwrap());
    let app = one.create_app("Shared").await.unwrap();
    let new = crate::NewUser {
        email: "ann@example.test".into(),
        password: Some("password-1".into()),
        full_name: None,
        role: crate::UserRole::User,
        is_verified: true,
    };
    let ann = one.create_user(&app.id, new.clone()).await.unwrap();
    let me = (app.id.clone(), ann.id.clone());
    let sign_in = Change::user(&app.id, ChangeKind::SignIn, &ann.id);
    // Each node's subscriber has seen the change once its listeners have been told (or not).
    for changes in [&mut changes_one, &mut changes_two] {
        assert_eq!(next(changes).await, Change::app(&app.id, ChangeKind::App));
        assert_eq!(next(changes).await, Change::user(&app.id, ChangeKind::Users, &ann.id));
    }
    assert_eq!((heard(&mut notices_one), heard(&mut notices_two)), (vec![], vec![]), "a new user is no sign-in change");

    // A password set on one: one hears it as it commits, two from LISTEN; one's own LISTEN
    // notice adds nothing.
    one.set_password(&app.id, &ann.id, "password-2").await.unwrap();
    assert_eq!(heard(&mut notices_one), vec![me.clone()], "before set_password returned");
    assert_eq!(notice(&mut notices_two).await, me);
    assert_eq!(next(&mut changes_one).await, sign_in);
    assert_eq!(next(&mut changes_two).await, sign_in);
    assert_eq!((heard(&mut notices_one), heard(&mut notices_two)), (vec![], vec![]), "once each");

    // A profile change on two is no sign-in change; disabling on two is.
    let profile = crate::UserUpdate { full_name: Some(Some("Ann".into())), ..Default::default() };
    two.update_user(&app.id, &ann.id, profile).await.unwrap();
    let disable = crate::UserUpdate { disabled: Some(true), ..Default::default() };
    let disabled = two.update_user(&app.id, &ann.id, disable).await.unwrap();
    assert_eq!(heard(&mut notices_two), vec![me.clone()]);
    assert_eq!(notice(&mut notices_one).await, me, "the disabling, not the profile change");
    for changes in [&mut changes_one, &mut changes_two] {
        assert_eq!(next(changes).await.kind, ChangeKind::Users);
        assert_eq!(next(changes).await, sign_in);
    }
    assert_eq!((heard(&mut notices_one), heard(&mut notices_two)), (vec![], vec![]), "once each");
    assert_eq!(
        one.user(&app.id, &ann.id).await.unwrap().unwrap().password_stamp,
        disabled.password_stamp,
        "every node computes the new stamp"
    );

    // A deletion on one.
    assert!(one.delete_user(&app.id, &ann.id).await.unwrap());
    assert_eq!(heard(&mut notices_one), vec![me.clone()]);
    assert_eq!(notice(&mut notices_two).await, me);
    assert_eq!(two.user(&app.id, &ann.id).await.unwrap(), None);
    for changes in [&mut changes_one, &mut changes_two] {
        assert_eq!(next(changes).await, sign_in);
    }

    // Both nodes' LISTEN connections end (as when the database restarts): once each is back,
    // its listeners are told that changes may have been missed, and its subscribers to resync.
    assert!(schema.terminate_connections().await >= 2, "both LISTEN connections");
    let everything = ("*".to_string(), "*".to_string());
    assert_eq!(notice(&mut notices_one).await, everything);
    assert_eq!(notice(&mut notices_two).await, everything);
    assert_eq!(next(&mut changes_one).await, Change::resync());
    // And they hear the other node again.
    let bob = two.create_user(&app.id, crate::NewUser { email: "bob@example.test".into(), ..new }).await.unwrap();
    two.set_password(&app.id, &bob.id, "password-3").await.unwrap();
    assert_eq!(notice(&mut notices_one).await, (app.id.clone(), bob.id.clone()));
    assert_eq!(heard(&mut notices_two), [(app.id.clone(), bob.id.clone())]);
}

/// A user stored before migration 5 keeps its password stamp (so its tokens) across the
/// upgrade, until it is disabled.
#[tokio::test]
async fn session_epochs_keep_the_stamps_of_before() {
    let schema = TestSchema::new().await;
    let store = open(&schema).await;
    let app = store.create_app("Kept").await.unwrap();
    let new = crate::NewUser {
        email: "ann@example.test".into(),
        password: Some("password-1".into()),
        full_name: None,
        role: crate::UserRole::User,
        is_verified: true,
    };
    let user = store.create_user(&app.id, new).await.unwrap();
    drop(store);
    // Back to schema 3, as an older Homebase left it.
    let admin = schema.admin().await;
    admin
        .batch_execute(&format!(
            "SET search_path = {0}; ALTER TABLE users DROP COLUMN session_epoch; DROP TABLE app_net_allow;
             DROP TABLE limit_counters; DROP TABLE entity_schemas; DROP TABLE entity_records; DROP TABLE entity_changes;
             UPDATE homebase_schema SET version = 3 WHERE component = 'main';",
            schema.name
        ))
        .await
        .unwrap();
    let hash: String = admin
        .query_one(&format!("SELECT password_hash FROM {}.users WHERE id = $1", schema.name), &[&user.id])
        .await
        .unwrap()
        .get(0);
    let old = format!("homebase password stamp\0{}\0{hash}", user.id);
    let old_stamp = crate::ids::sha256_hex(old.as_bytes())[..16].to_string();

    let store = open(&schema).await;
    let version: i64 = admin
        .query_one(&format!("SELECT version FROM {}.homebase_schema WHERE component = 'main'", schema.name), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, migrations::MAIN.migrations.len() as i64, "migrated again");
    let found = store.user(&app.id, &user.id).await.unwrap().unwrap();
    assert_eq!(found.password_stamp, old_stamp, "the stamp of before the upgrade");
    assert_eq!(found.password_stamp, user.password_stamp);
    let disable = crate::UserUpdate { disabled: Some(true), ..Default::default() };
    assert_ne!(store.update_user(&app.id, &user.id, disable).await.unwrap().password_stamp, old_stamp);
    assert!(store.function_net_allow(&app.id).await.unwrap().is_empty(), "migration 4 ran again too");
}

#[tokio::test]
async fn secret_values_are_encrypted_in_the_table() {
    let schema = TestSchema::new().await;
    let store = open(&schema).await;
    let app = store.create_app("A").await.unwrap();
    let value = "plaintext-secret-value-7f3a9c";
    store.set_secrets(&app.id, [("API_TOKEN".to_string(), value.to_string())].into_iter().collect()).await.unwrap();
    let admin = schema.admin().await;
    let row =
        admin.query_one(&format!("SELECT name, nonce, ciphertext FROM {}.secrets", schema.name), &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "API_TOKEN");
    let ciphertext: Vec<u8> = row.get(2);
    assert!(!ciphertext.windows(value.len()).any(|w| w == value.as_bytes()));
    assert_eq!(row.get::<_, Vec<u8>>(1).len(), crate::secrets::NONCE_LEN);
    let other_key = Store::open_postgres_with_key(&schema.url, MasterKey::generate()).await.unwrap();
    assert!(other_key.secrets(&app.id).await.unwrap_err().to_string().contains("master key"));
}

// ---- logs ----

fn record(id: u64, time_us: i64, function: &str, level: u8, message: &str) -> LogRecord {
    LogRecord {
        id,
        time_us,
        app_id: "app".into(),
        function: function.into(),
        version: "v1".into(),
        level,
        request_id: id.is_multiple_of(3).then(|| format!("req-{id}")),
        message: message.into(),
        system: id.is_multiple_of(5),
    }
}

fn log_query(functions: &[&str]) -> LogQuery {
    LogQuery {
        app_id: "app".into(),
        functions: functions.iter().map(|f| f.to_string()).collect(),
        limit: 1000,
        ..Default::default()
    }
}

#[tokio::test]
async fn log_lines_are_found_by_function_time_level_and_after_an_id() {
    let schema = TestSchema::new().await;
    let logs = LogStore::open_postgres(&schema.url).await.unwrap();
    assert_eq!(logs.next_id().await.unwrap(), 1);
    let batch: Vec<_> = (1..=10u64)
        .map(|i| {
            record(i, 1_000 + i as i64, if i % 2 == 0 { "even" } else { "odd" }, (i % 4) as u8, &format!("line {i}"))
        })
        .collect();
    // The database numbers lines in the order of the given ids (the order they were printed).
    let mut shuffled = batch.clone();
    shuffled.reverse();
    logs.insert(shuffled).await.unwrap();
    assert!(logs.numbers_lines());
    assert_eq!(logs.count(None, None).await.unwrap(), 10);
    assert_eq!(logs.next_id().await.unwrap(), 11);
    let ids = |records: Vec<LogRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
    let even = logs.query(log_query(&["even"])).await.unwrap();
    assert_eq!(even, batch.iter().filter(|r| r.id % 2 == 0).cloned().collect::<Vec<_>>(), "every field round-trips");
    assert_eq!(ids(logs.query(LogQuery { descending: true, limit: 2, ..log_query(&[]) }).await.unwrap()), [10, 9]);
    let window = LogQuery { since_us: Some(1_003), until_us: Some(1_006), ..log_query(&[]) };
    assert_eq!(ids(logs.query(window).await.unwrap()), [3, 4, 5]);
    assert_eq!(ids(logs.query(LogQuery { level: Some(3), ..log_query(&[]) }).await.unwrap()), [3, 7]);
    let after = LogQuery { after_id: Some(7), descending: true, ..log_query(&["odd", "even"]) };
    assert_eq!(ids(logs.query(after).await.unwrap()), [8, 9, 10]);
    assert!(logs.has_function("app", "odd").await.unwrap());
    assert!(!logs.has_function("app", "none").await.unwrap());
    assert_eq!(logs.count(Some("app"), Some("odd")).await.unwrap(), 5);
    assert_eq!(logs.count_printed("app", "odd").await.unwrap(), 4, "line 5 is a system line");
    // NUL cannot be stored in PostgreSQL text: it is replaced, the line is kept.
    logs.insert(vec![record(11, 2_000, "odd", 1, "a\0b")]).await.unwrap();
    assert_eq!(logs.query(LogQuery { after_id: Some(10), ..log_query(&[]) }).await.unwrap()[0].message, "a\u{FFFD}b");
    // Ids grow across restarts.
    drop(logs);
    assert_eq!(LogStore::open_postgres(&schema.url).await.unwrap().next_id().await.unwrap(), 12);
}

#[tokio::test]
async fn log_retention_deletes_old_lines_and_keeps_the_size_bounded() {
    let schema = TestSchema::new().await;
    let logs = LogStore::open_postgres(&schema.url).await.unwrap();
    let now = 10_000_000_000i64;
    let old: Vec<_> = (1..=100).map(|i| record(i, now - 3_600_000_000 - 1000 + i as i64, "f", 1, "old")).collect();
    logs.insert(old).await.unwrap();
    let young: Vec<_> = (101..=110).map(|i| record(i, now - 1000 + i as i64, "f", 1, "young")).collect();
    logs.insert(young).await.unwrap();
    let keep_an_hour = Retention { max_age: Duration::from_secs(1800), max_bytes: u64::MAX };
    assert_eq!(logs.prune(keep_an_hour, now).await.unwrap().deleted_by_age, 100);
    assert_eq!(logs.count(None, None).await.unwrap(), 10);

    let text = "x".repeat(500);
    for chunk in 0..20u64 {
        let batch =
            (0..1000u64).map(|i| record(1_000 + chunk * 1000 + i, now + (chunk * 1000 + i) as i64, "f", 1, &text));
        logs.insert(batch.collect()).await.unwrap();
    }
    let small = Retention { max_age: Duration::from_secs(3600), max_bytes: 2 * 1024 * 1024 };
    let report = logs.prune(small, now).await.unwrap();
    assert!(report.deleted_by_size > 15_000, "{report:?}");
    assert!(report.used_bytes <= small.max_bytes, "{report:?}");
    assert!(logs.count(None, None).await.unwrap() > 1000, "the newest lines stay");
    let newest = logs.query(LogQuery { descending: true, limit: 1, ..log_query(&[]) }).await.unwrap();
    assert_eq!(newest[0].id, 110 + 20 * 1000, "the database's ids");
}

#[tokio::test]
async fn the_log_table_is_versioned_apart_from_the_main_tables() {
    let schema = TestSchema::new().await;
    drop(LogStore::open_postgres(&schema.url).await.unwrap());
    let admin = schema.admin().await;
    let sql = format!("SELECT version FROM {}.homebase_schema WHERE component = 'logs'", schema.name);
    assert_eq!(admin.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0), 2);
    // The main tables can live beside it.
    let store = open(&schema).await;
    store.create_app("a").await.unwrap();
    admin
        .batch_execute(&format!("UPDATE {}.homebase_schema SET version = 99 WHERE component = 'logs'", schema.name))
        .await
        .unwrap();
    let err = LogStore::open_postgres(&schema.url).await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");
    drop(open(&schema).await); // the main tables do not care
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_follows_the_lines_all_nodes_write_in_commit_order() {
    let schema = TestSchema::new().await;
    let (one, two) =
        (LogStore::open_postgres(&schema.url).await.unwrap(), LogStore::open_postgres(&schema.url).await.unwrap());
    let mut newest = two.watch().await.unwrap();
    let start = two.cursor().await.unwrap();
    assert_eq!(start, *newest.borrow());
    // Node one numbers its lines far above node two's, and stores them first; node two's
    // numbers collide with nothing stored, but would with each other's across nodes.
    one.insert((1..=3).map(|i| record(1_000_000 + i, i as i64, "f", 1, "from one")).collect()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), newest.wait_for(|seq| *seq > start)).await.unwrap().unwrap();
    two.insert((1..=2).map(|i| record(10 + i, 10 + i as i64, "f", 1, "from two")).collect()).await.unwrap();
    one.insert((1..=2).map(|i| record(10 + i, 20 + i as i64, "f", 1, "one again")).collect()).await.unwrap();
    let (lines, cursor) = two.tail(start, 100).await.unwrap();
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        messages,
        ["from one", "from one", "from one", "from two", "from two", "one again", "one again"],
        "every line kept, in commit order"
    );
    let ids: Vec<u64> = lines.iter().map(|l| l.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "the database's ids grow in commit order: {ids:?}");
    assert_eq!(cursor, two.cursor().await.unwrap());
    assert_eq!(cursor, *ids.last().unwrap());
    // A reader that saw the first batch gets the rest after its last id.
    let after_first = one.tail(start, 3).await.unwrap().1;
    assert_eq!(one.tail(after_first, 100).await.unwrap().0.len(), 4);
    let after = LogQuery { after_id: Some(after_first), ..log_query(&[]) };
    assert_eq!(one.query(after).await.unwrap().len(), 4, "queries after an id agree with the tail");
    tokio::time::timeout(Duration::from_secs(10), newest.wait_for(|seq| *seq >= cursor)).await.unwrap().unwrap();
}

/// A change whose transaction took its `seq` first but commits after a later one's is not
/// passed over: the reader does not see the later change until the earlier transaction ends,
/// then sees both, in an order its cursor follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_outbox_reader_never_passes_a_change_that_commits_later() {
    let schema = TestSchema::new().await;
    let store = open(&schema).await;
    let app = store.create_app("a").await.unwrap();
    let set = homebase_entities::Schemas::parse([("Task", &serde_json::json!({}))]).unwrap();
    store.set_entity_schemas(&app.id, &set).await.unwrap();
    let task = set.get("Task").unwrap().clone();
    let record = |title: &str| crate::NewRecord {
        data: serde_json::json!({"title": title}).as_object().unwrap().clone(),
        ..Default::default()
    };
    // The first create, by another node (a store on a runtime of its own, whose thread the
    // hook may block), stops before its commit until released.
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let first = {
        let (url, app, task) = (schema.url.clone(), app.id.clone(), task.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let node = Store::open_postgres_with_key(&url, MasterKey::from_bytes([7; 32])).await.unwrap();
                let released = std::sync::Mutex::new(Some(released));
                node.set_before_commit_hook(move |op: &str| {
                    if op == "create_records"
                        && let Some(released) = released.lock().unwrap().take()
                    {
                        arrived_tx.send(()).unwrap();
                        // Bounded, so that a failing test ends.
                        let _ = released.recv_timeout(Duration::from_secs(20));
                    }
                    Ok(())
                });
                node.create_records(&app, &task, vec![record("first")]).await.unwrap()
            })
        })
    };
    tokio::task::spawn_blocking(move || arrived.recv_timeout(Duration::from_secs(20)).unwrap()).await.unwrap();
    let second = store.create_records(&app.id, &task, vec![record("second")]).await.unwrap();
    let early = store.entity_changes(crate::ChangeCursor::default(), 10).await.unwrap();
    release.send(()).unwrap();
    assert!(early.is_empty(), "a change behind a running transaction waits for it: {early:?}");
    let first = tokio::task::spawn_blocking(move || first.join().unwrap()).await.unwrap();
    let (mut cursor, mut seen) = (crate::ChangeCursor::default(), Vec::new());
    for _ in 0..500 {
        for change in store.entity_changes(cursor, 1).await.unwrap() {
            cursor = change.cursor;
            seen.push(change.record_id);
        }
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, [first[0].id.clone(), second[0].id.clone()]);
}

#[tokio::test]
async fn log_lines_stored_before_the_database_numbered_them_are_renumbered() {
    let schema = TestSchema::new().await;
    let admin = schema.admin().await;
    // Version 1 of the log table, with lines numbered by two nodes' clocks.
    admin
        .batch_execute(&format!(
            "SET search_path TO {name};
             CREATE TABLE homebase_schema (component TEXT PRIMARY KEY, version BIGINT NOT NULL);
             INSERT INTO homebase_schema VALUES ('logs', 1);
             {v1}
             INSERT INTO logs (id, time, app_id, function, version, level, request_id, system, message, seq)
             VALUES (1700000000000002, 2, 'app', 'f', 'v', 1, NULL, false, 'second', nextval('logs_seq')),
                    (1700000000000001, 1, 'app', 'f', 'v', 1, NULL, false, 'first', nextval('logs_seq'));",
            name = schema.name,
            v1 = super::migrations::LOGS.migrations[0],
        ))
        .await
        .unwrap();
    let logs = LogStore::open_postgres(&schema.url).await.unwrap();
    logs.insert(vec![record(5, 3, "f", 1, "third")]).await.unwrap();
    let lines = logs.query(LogQuery { after_id: Some(0), ..log_query(&[]) }).await.unwrap();
    let lines: Vec<(u64, &str)> = lines.iter().map(|l| (l.id, l.message.as_str())).collect();
    assert_eq!(lines, [(1, "second"), (2, "first"), (3, "third")], "ids are the commit order");
}

// ---- several nodes ----

#[tokio::test]
async fn every_node_must_have_the_master_key_of_the_first() {
    let schema = TestSchema::new().await;
    let first = open(&schema).await;
    first.check_master_key().await.unwrap();
    open(&schema).await.check_master_key().await.unwrap();
    let other = Store::open_postgres_with_key(&schema.url, MasterKey::from_bytes([8; 32])).await.unwrap();
    let error = other.check_master_key().await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("HOMEBASE_MASTER_KEY") && message.contains("master.key"), "{message}");
    let sqlite = Store::open_sqlite_in_memory().await.unwrap();
    sqlite.check_master_key().await.unwrap();
}

/// Hits spread over two nodes meet one limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_across_nodes() {
    let schema = TestSchema::new().await;
    let (one, two) = (open(&schema).await, open(&schema).await);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move {
                let counters = [crate::LimitCounter { key: "login:ann".into(), max: 7, refuse: true }];
                store.hit_limits(&counters, Duration::from_secs(600)).await.unwrap()
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += matches!(task.await.unwrap(), crate::LimitHit::Counted { .. }) as usize;
    }
    assert_eq!(passed, 7);
}

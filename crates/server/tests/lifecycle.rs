//! The composition roots: the testkit's servers are `homebase dev` and `homebase serve` as the
//! commands start them (`homebase_server::dev::start`, `serve::start`), and stopping one
//! finishes what it started.

use std::time::{Duration, SystemTime};

use homebase_runtime::{Level, LogEvent, LogSink};
use homebase_server::dev::DevFile;
use homebase_store::LogStore;
use homebase_testkit::{TestPlatform, TestServer, fixture, json_of};

/// What `homebase exec --local` does: read `dev.json` and call the run's management routes
/// with its key. The test server mounts them because it is `dev`.
#[tokio::test]
async fn the_test_server_is_dev_with_its_management_routes_and_dev_json() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let found = homebase_project::Project::find(project.path()).unwrap();
    let file = DevFile::path(&found);
    let dev: DevFile = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!((dev.url.as_str(), dev.key.as_str()), (server.url.as_str(), server.key.as_str()));

    let url = server.at(&format!("/api/apps/{}/auth/token", dev.app_id));
    let response = server.client().get(&url).header("api_key", &dev.key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await["kind"], "service");
    let response = server.client().get(&url).header("api_key", "hbdev_not-this-runs-key").send().await.unwrap();
    assert_eq!(response.status(), 401);

    server.stop().await;
    assert!(!file.exists(), "stopping removes this run's dev.json");
}

/// `serve` stores every log line emitted before it stopped: stopping closes the log writer
/// after the workers and waits until the queue is stored and its task (retention sweeps
/// included) has ended.
#[tokio::test]
async fn stopping_serve_stores_every_line_emitted_before_it() {
    let data = tempfile::tempdir().unwrap();
    let platform = TestPlatform::start(data.path()).await;
    const LINES: usize = 50_000;
    for i in 0..LINES {
        platform.hub.emit(LogEvent {
            id: 0,
            time: SystemTime::now(),
            app_id: "lifecycle".into(),
            function: "f".into(),
            version: "v".into(),
            level: Level::Info,
            request_id: None,
            message: format!("line {i}"),
            system: false,
        });
    }
    let writer = platform.hub.writer().expect("serve stores logs").clone();
    platform.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), writer.failures().changed()).await;
    assert!(matches!(ended, Ok(Err(_))), "the writer's task has ended: {ended:?}");
    let store = LogStore::open(data.path().join("logs.db")).await.unwrap();
    assert_eq!(store.count(Some("lifecycle"), None).await.unwrap(), LINES as u64);
}

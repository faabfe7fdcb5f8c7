//! Several nodes: two real `homebase serve` processes on one PostgreSQL schema, each with a
//! data folder of its own, the same master key and admin key, behave as one server (issue 10,
//! "Several nodes"):
//!
//! - a deploy, rollback, delete, secret change or `function-net-allow` change made through one
//!   node is served by the other within one second;
//! - the 50-function limit and one deploy at a time per function hold across nodes;
//! - a token signed by one node verifies on the other; login and mail limits hold across them;
//! - `homebase logs --follow` on one node sees the lines of the other's workers;
//! - a node killed with SIGKILL mid-deploy leaves the old or the new deployment, never a mix,
//!   and the other node keeps serving.
//!
//! Times are measured from the moment the change's request returned to the moment the request
//! that first saw it on the other node was sent (its answer may include a worker's cold start).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Running;
use homebase_store::pg_testing::TestSchema;
use homebase_store::{DeployFile, Deployment, MasterKey, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const KEY: &str = "b44k_severalnodestest0000000000000000";
const MASTER: [u8; 32] = [0x5a; 32];
/// How soon the other node must serve a change.
const PROPAGATION: Duration = Duration::from_secs(1);

fn master_hex() -> String {
    MASTER.iter().map(|b| format!("{b:02x}")).collect()
}

/// `homebase --json serve` on 127.0.0.1:0 over `data`, storing everything in `url`.
async fn node(data: &Path, url: &str) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.args(["--json", "serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data).args(["--database-url", url]);
    let env = [("HOMEBASE_ADMIN_KEY", KEY.to_string()), ("HOMEBASE_MASTER_KEY", master_hex())];
    Running::spawn(cmd, &env, true).await
}

/// Two nodes on a schema of their own.
struct Cluster {
    a: Running,
    b: Running,
    schema: TestSchema,
    data: [tempfile::TempDir; 2],
}

impl Cluster {
    async fn start() -> Cluster {
        let schema = TestSchema::new().await;
        let data = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        // One after the other: the first creates the tables, the token key and the key check.
        let a = node(data[0].path(), &schema.url).await;
        let b = node(data[1].path(), &schema.url).await;
        Cluster { a, b, schema, data }
    }

    async fn store(&self) -> Store {
        Store::open_postgres_with_key(&self.schema.url, MasterKey::from_bytes(MASTER)).await.unwrap()
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn manage(node: &Running, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = http().request(method, node.at(path)).header("api_key", KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request.send().await.unwrap()).await
}

fn one_file(code: &str) -> Value {
    json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] })
}

/// A function that answers its version, the secret GREETING, and what it got from fetching the
/// URL in `?probe=` (null when that failed).
fn versioned(version: &str) -> Value {
    one_file(&format!(
        "Deno.serve(async (req) => {{
            const probe = new URL(req.url).searchParams.get('probe');
            let reached = null;
            if (probe) {{ try {{ reached = await (await fetch(probe)).text(); }} catch {{ reached = null; }} }}
            return Response.json({{ version: '{version}', greeting: Deno.env.get('GREETING') ?? null, reached }});
        }});\n"
    ))
}

async fn deploy(node: &Running, app: &str, name: &str, body: &Value) -> (u16, Value) {
    manage(node, reqwest::Method::PUT, &format!("/api/apps/{app}/backend-functions/{name}"), Some(body.clone())).await
}

async fn invoke(node: &Running, app: &str, name: &str, query: &str) -> (u16, Value) {
    let url = node.at(&format!("/api/apps/{app}/functions/{name}{query}"));
    answer(http().post(url).json(&json!({})).send().await.unwrap()).await
}

/// How long after `since` the first request to `node` was sent that `seen` accepted (polled;
/// fails after 30 s).
async fn seen_after(
    since: Instant,
    node: &Running,
    app: &str,
    name: &str,
    query: &str,
    seen: impl Fn(u16, &Value) -> bool,
) -> Duration {
    loop {
        let sent = Instant::now();
        let (status, body) = invoke(node, app, name, query).await;
        if seen(status, &body) {
            return sent.duration_since(since);
        }
        assert!(since.elapsed() < Duration::from_secs(30), "not seen within 30 s; last answer {status} {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP server on 127.0.0.1 answering `ok` (what functions may reach only when the
/// app's `function-net-allow` lets them).
async fn local_service() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_serve_each_others_changes_within_a_second() {
    let cluster = Cluster::start().await;
    let (a, b) = (&cluster.a, &cluster.b);
    let (status, app) = manage(a, reqwest::Method::POST, "/api/apps", Some(json!({ "name": "nodes" }))).await;
    assert_eq!(status, 201, "{app}");
    let app = app["id"].as_str().unwrap().to_string();
    let mut took = Vec::new();

    // A deploy through A.
    let (status, body) = deploy(a, &app, "f", &versioned("1")).await;
    assert_eq!(status, 200, "{body}");
    let t = seen_after(Instant::now(), b, &app, "f", "", |s, v| s == 200 && v["version"] == "1").await;
    took.push(("deploy through A, served by B", t));
    // A deploy through B.
    assert_eq!(deploy(b, &app, "f", &versioned("2")).await.0, 200);
    let t = seen_after(Instant::now(), a, &app, "f", "", |s, v| s == 200 && v["version"] == "2").await;
    took.push(("deploy through B, served by A", t));
    // A rollback through A.
    let (status, body) =
        manage(a, reqwest::Method::POST, &format!("/api/apps/{app}/backend-functions/f/rollback"), None).await;
    assert_eq!(status, 200, "{body}");
    let t = seen_after(Instant::now(), b, &app, "f", "", |s, v| s == 200 && v["version"] == "1").await;
    took.push(("rollback through A, served by B", t));
    // A secret set through A.
    let secrets = json!({ "GREETING": "hello from A" });
    assert_eq!(manage(a, reqwest::Method::POST, &format!("/api/apps/{app}/secrets"), Some(secrets)).await.0, 200);
    let t = seen_after(Instant::now(), b, &app, "f", "", |s, v| s == 200 && v["greeting"] == "hello from A").await;
    took.push(("secret set through A, seen by B's function", t));
    // The app's network allowance changed through A: B's function may now reach a local service.
    let port = local_service().await;
    let probe = format!("?probe=http://127.0.0.1:{port}/");
    let (status, before) = invoke(b, &app, "f", &probe).await;
    assert_eq!((status, &before["reached"]), (200, &Value::Null), "loopback is closed at first: {before}");
    let allow = json!({ "allow": ["127.0.0.1"] });
    let path = format!("/api/apps/{app}/function-net-allow");
    assert_eq!(manage(a, reqwest::Method::PUT, &path, Some(allow)).await.0, 200);
    let t = seen_after(Instant::now(), b, &app, "f", &probe, |s, v| s == 200 && v["reached"] == "ok").await;
    took.push(("function-net-allow set through A, applied by B", t));
    // A delete through B.
    let path = format!("/api/apps/{app}/backend-functions/f");
    assert_eq!(manage(b, reqwest::Method::DELETE, &path, None).await.0, 200);
    let t = seen_after(Instant::now(), a, &app, "f", "", |s, v| s == 404 && v["code"] == "function_not_found").await;
    took.push(("delete through B, gone from A", t));

    eprintln!("propagation: {took:?}");
    for (what, t) in took {
        assert!(t < PROPAGATION, "{what} took {t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_login_limits_and_log_follows_span_the_nodes() {
    let cluster = Cluster::start().await;
    let (a, b) = (&cluster.a, &cluster.b);
    let app = a.create_app(KEY, "identity").await;
    let user = json!({ "email": "ann@example.test", "password": "password-1", "is_verified": true });
    assert_eq!(manage(a, reqwest::Method::POST, &format!("/api/apps/{app}/users"), Some(user)).await.0, 201);
    // B must know the app before its user routes answer for it.
    let login = |node: &Running, password: &str| {
        let url = node.at(&format!("/api/apps/{app}/auth/login"));
        let body = json!({ "email": "ann@example.test", "password": password });
        async move { answer(http().post(url).json(&body).send().await.unwrap()).await }
    };
    let started = Instant::now();
    while login(b, "password-1").await.0 == 404 {
        assert!(started.elapsed() < Duration::from_secs(10), "B never learnt of the app");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A token A signed verifies on B.
    let (status, signed) = login(a, "password-1").await;
    assert_eq!(status, 200, "{signed}");
    let token = signed["access_token"].as_str().unwrap().to_string();
    let me = http().get(b.at(&format!("/api/apps/{app}/entities/User/me"))).bearer_auth(&token).send().await.unwrap();
    let (status, me) = answer(me).await;
    assert_eq!((status, me["email"].as_str()), (200, Some("ann@example.test")), "{me}");

    // Failed logins spread over both nodes meet one limit (5 per account).
    for (i, node) in [a, b, a, b, a].into_iter().enumerate() {
        assert_eq!(login(node, "wrong-password").await.0, 401, "failure {}", i + 1);
    }
    for node in [b, a] {
        let (status, body) = login(node, "password-1").await;
        assert_eq!(status, 429, "the account is locked on every node: {body}");
        assert!(body["message"].as_str().unwrap().contains("for this account"), "{body}");
    }
    // So do mail-sending requests (5 per recipient).
    let reset = |node: &Running| {
        let url = node.at(&format!("/api/apps/{app}/auth/reset-password-request"));
        async move { http().post(url).json(&json!({ "email": "bob@example.test" })).send().await.unwrap().status() }
    };
    for node in [a, b, a, b, a] {
        assert_eq!(reset(node).await, 200);
    }
    assert_eq!(reset(b).await, 429, "the sixth mail to one address, on the other node");

    // `homebase logs --follow` on B prints the lines A's workers print, and B's own.
    let code = "Deno.serve((req) => { console.log('marker ' + new URL(req.url).searchParams.get('m')); \
                return new Response('ok'); });\n";
    assert_eq!(deploy(a, &app, "chatty", &one_file(code)).await.0, 200);
    let mut follow = Command::new(env!("CARGO_BIN_EXE_homebase"))
        .args(["--json", "logs", "--follow", "--function", "chatty", "--url", &b.url, "--token", KEY, "--app-id", &app])
        .env("HOMEBASE_CONFIG_DIR", std::env::temp_dir().join("homebase-nodes-no-login"))
        .env_remove("HOMEBASE_URL")
        .env_remove("HOMEBASE_TOKEN")
        .env_remove("HOMEBASE_APP_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    // B serves the function too before it is asked to.
    let _ = seen_after(Instant::now(), b, &app, "chatty", "?m=warm-up", |s, _| s == 200).await;
    let mut seen = Vec::new();
    for (node, marker) in [(a, "one-from-a"), (b, "two-from-b"), (a, "three-from-a")] {
        // The first line may be stored before the follower's first query (which then shows
        // it); the others arrive through its stream. Each is printed once either way.
        let url = node.at(&format!("/api/apps/{app}/functions/chatty?m={marker}"));
        assert_eq!(http().get(url).send().await.unwrap().status(), 200);
        let started = Instant::now();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
            let line = line.expect("a log line within 30 s").unwrap().expect("the follower runs");
            let line: Value = serde_json::from_str(&line).unwrap();
            let message = line["message"].as_str().unwrap_or_default().to_string();
            if message.starts_with("marker ") {
                seen.push(message.clone());
            }
            if message == format!("marker {marker}") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{marker} never arrived: {seen:?}");
        }
    }
    let wanted = ["marker one-from-a", "marker two-from-b", "marker three-from-a"];
    let printed: Vec<&str> = seen.iter().map(String::as_str).filter(|m| wanted.contains(m)).collect();
    assert_eq!(printed, wanted, "each line once, in order");
    let _ = follow.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_function_limit_and_one_deploy_at_a_time_hold_across_nodes() {
    let cluster = Cluster::start().await;
    let (a, b) = (&cluster.a, &cluster.b);
    let app = a.create_app(KEY, "limits").await;
    // 48 functions straight into the store (each deploy through a node would run Deno).
    let store = cluster.store().await;
    for i in 0..48 {
        let deployment = Deployment {
            entry: "entry.ts".into(),
            files: vec![DeployFile {
                path: "entry.ts".into(),
                content: format!("Deno.serve(() => new Response('{i}'));"),
            }],
            automations: json!([]),
        };
        store.deploy(&app, &format!("seed-{i:02}"), deployment).await.unwrap();
    }
    // Six new functions at once, three through each node: two fit.
    let attempts: Vec<_> = (0..6)
        .map(|i| {
            let (url, app) = (if i % 2 == 0 { a.url.clone() } else { b.url.clone() }, app.clone());
            tokio::spawn(async move {
                let body = one_file(&format!("Deno.serve(() => new Response('new {i}'));\n"));
                let path = format!("{url}/api/apps/{app}/backend-functions/new-{i}");
                answer(http().put(path).header("api_key", KEY).json(&body).send().await.unwrap()).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.unwrap());
    }
    let passed = outcomes.iter().filter(|(status, _)| *status == 200).count();
    let refused: Vec<_> = outcomes.iter().filter(|(status, _)| *status == 422).collect();
    assert_eq!((passed, refused.len()), (2, 4), "{outcomes:?}");
    for (_, body) in refused {
        assert_eq!(body["code"], "too_many_functions", "{body}");
        assert!(body["message"].as_str().unwrap().contains("at most 50"), "{body}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    }
    assert_eq!(store.function_count(&app).await.unwrap(), 50);

    // Four deploys of one function at once, two through each node: each lands, one at a time.
    let attempts: Vec<_> = (0..4)
        .map(|i| {
            let (url, app) = (if i % 2 == 0 { a.url.clone() } else { b.url.clone() }, app.clone());
            tokio::spawn(async move {
                let body = one_file(&format!("Deno.serve(() => new Response('same {i}'));\n"));
                let path = format!("{url}/api/apps/{app}/backend-functions/seed-00");
                answer(http().put(path).header("api_key", KEY).json(&body).send().await.unwrap()).await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        assert_eq!(status, 200, "{body}");
        ids.insert(body["deployment_id"].as_str().unwrap().to_string());
    }
    let history = store.history(&app, "seed-00").await.unwrap();
    let sequences: Vec<i64> = history.iter().map(|h| h.sequence).collect();
    assert_eq!(sequences, [5, 4, 3, 2, 1], "one activation each, numbered in order");
    let active = store.function(&app, "seed-00").await.unwrap().unwrap();
    assert_eq!(active.deployment_id, history[0].deployment_id);
    assert!(ids.contains(&active.deployment_id));
    // Both nodes serve the last activation.
    let expected = active.files[0].content.clone();
    let wanted = expected.split('\'').nth(1).unwrap().to_string();
    for node in [a, b] {
        let _ = seen_after(Instant::now(), node, &app, "seed-00", "", |s, v| s == 200 && *v == wanted).await;
    }
}

/// Version `n`: the entry and the module it imports both carry it, so a deployment assembled
/// from two versions would answer with two different numbers.
fn two_files(n: u32) -> Value {
    json!({
        "entry": "entry.ts",
        "files": [
            { "path": "entry.ts", "content": format!("import {{ lib }} from './lib.ts';\nDeno.serve(() => Response.json({{ entry: {n}, lib }}));\n") },
            { "path": "lib.ts", "content": format!("export const lib = {n};\n") },
        ],
        "automations": [],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_deploy_leaves_old_or_new_and_the_other_keeps_serving() {
    let mut cluster = Cluster::start().await;
    let app = cluster.a.create_app(KEY, "crash").await;
    let started = Instant::now();
    assert_eq!(deploy(&cluster.a, &app, "f", &two_files(1)).await.0, 200);
    // How long a whole deploy takes now: the kills sweep 0 to 1.5 times that.
    let span = started.elapsed();
    let _ = seen_after(Instant::now(), &cluster.b, &app, "f", "", |s, v| s == 200 && v["entry"] == 1).await;

    // B is asked all along: every answer is one whole version, and none fails.
    let watch_url = cluster.b.at(&format!("/api/apps/{app}/functions/f"));
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut answers = 0u32;
            while !stop.is_cancelled() {
                let (status, body) = answer(http().post(&watch_url).json(&json!({})).send().await.unwrap()).await;
                assert_eq!(status, 200, "B failed while A was killed: {body}");
                assert_eq!(body["entry"], body["lib"], "B served a mix: {body}");
                answers += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        })
    };

    let (mut current, mut kept_old, mut got_new) = (1u32, 0, 0);
    let (mut delay, step) = (Duration::ZERO, span * 3 / 20);
    for round in 0..20u32 {
        if round >= 4 && kept_old > 0 && got_new > 0 {
            break;
        }
        let next = current + 1;
        let url = cluster.a.at(&format!("/api/apps/{app}/backend-functions/f"));
        let request = http().put(url).header("api_key", KEY).json(&two_files(next)).send();
        let in_flight = tokio::spawn(request);
        // The moment of the kill is what this test varies, so it waits on purpose.
        tokio::time::sleep(delay).await;
        cluster.a.signal(libc::SIGKILL);
        let _ = in_flight.await;
        let dead = std::mem::replace(&mut cluster.a, node(cluster.data[0].path(), &cluster.schema.url).await);
        let _ = dead.exit_code().await;

        // The store holds one whole version; both nodes come to serve it.
        let store = cluster.store().await;
        let active = store.function(&app, "f").await.unwrap().unwrap();
        let lib = active.files.iter().find(|f| f.path == "lib.ts").unwrap().content.clone();
        let entry: u32 = lib.trim_start_matches("export const lib = ").trim_end_matches(";\n").parse().unwrap();
        assert!(entry == current || entry == next, "round {round}: version {entry}, expected {current} or {next}");
        for node in [&cluster.a, &cluster.b] {
            let _ = seen_after(Instant::now(), node, &app, "f", "", |s, v| s == 200 && v["entry"] == entry).await;
        }
        if entry == next {
            got_new += 1;
            delay = delay.saturating_sub(step);
        } else {
            kept_old += 1;
            delay += step;
        }
        current = entry;
    }
    stop.cancel();
    let answers = watcher.await.expect("B answered every request whole");
    assert!(answers > 0);
    // The sweep must straddle the commit, or it proved nothing.
    assert!(kept_old > 0 && got_new > 0, "old kept {kept_old} times, new {got_new} times");
}

#[tokio::test]
async fn an_unreachable_database_stops_the_start_with_its_url_and_no_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://homebase:hunter2@127.0.0.1:{port}/homebase");
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_homebase"))
        .args(["--json", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("HOMEBASE_DATABASE_URL", &url)
        .env("HOMEBASE_DENO", homebase_testkit::deno().await)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let error: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(error["event"], "error", "{stdout}");
    let text = error.to_string();
    assert!(text.contains(&format!("postgres://homebase@127.0.0.1:{port}/homebase")), "{text}");
    assert!(!text.contains("hunter2") && !String::from_utf8_lossy(&output.stderr).contains("hunter2"), "{text}");
}

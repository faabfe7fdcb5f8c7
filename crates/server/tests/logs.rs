//! Function logs in `homebase serve`: every line stored, queried with filters through the wire
//! route, followed over SSE, and secret values masked. Real Deno runs the fixture functions,
//! deployed through the management API.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use homebase_runtime::{Level, LogEvent, LogSink};
use homebase_store::{LogStore, Retention};
use homebase_testkit::{ADMIN_KEY, TestPlatform, fixture, json_of};
use reqwest::Method;
use serde_json::{Value, json};

async fn answer(response: reqwest::Response) -> (u16, Value) {
    (response.status().as_u16(), json_of(response).await)
}

fn admin(server: &TestPlatform, method: Method, path: &str) -> reqwest::RequestBuilder {
    server.client().request(method, server.at(path)).header("api_key", ADMIN_KEY)
}

async fn create_app(server: &TestPlatform, name: &str) -> String {
    let response = admin(server, Method::POST, "/api/apps").json(&json!({ "name": name })).send().await.unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Deploys the fixture function `fixture_name` as `name`.
async fn deploy_fixture(server: &TestPlatform, app: &str, name: &str, fixture_name: &str) {
    let project = fixture("functions");
    let code =
        std::fs::read_to_string(project.path().join(format!("base44/functions/{fixture_name}/entry.ts"))).unwrap();
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let path = format!("/api/apps/{app}/backend-functions/{name}");
    let (status, outcome) = answer(admin(server, Method::PUT, &path).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 200, "{outcome}");
}

async fn invoke(server: &TestPlatform, app: &str, name_and_query: &str) -> Value {
    let url = server.at(&format!("/api/apps/{app}/functions/{name_and_query}"));
    let (status, body) = answer(server.client().post(url).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (polling every 20 ms, up to 60 s) until the store holds at least `n` lines that
/// `function` printed itself (Homebase's lines about it not counted): lines travel from the
/// worker's pipe to the store with no signal of their own.
async fn stored(server: &TestPlatform, app: &str, function: &str, n: u64) {
    for _ in 0..3000 {
        if server.log_store.count_printed(app, function).await.unwrap() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} lines of {function} were stored");
}

/// [`stored`], counting Homebase's lines about `function` too (for tests that look at them).
async fn stored_with_system(server: &TestPlatform, app: &str, function: &str, n: u64) {
    for _ in 0..3000 {
        if server.log_store.count(Some(app), Some(function)).await.unwrap() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} lines about {function} were stored");
}

async fn logs_of(server: &TestPlatform, app: &str, name: &str, query: &str) -> (u16, Value) {
    let path = format!("/api/apps/{app}/functions-mgmt/{name}/logs{query}");
    answer(admin(server, Method::GET, &path).send().await.unwrap()).await
}

/// Lines Homebase writes itself: worker starts and invocations.
fn is_system(message: &str) -> bool {
    message.starts_with("invocation: ") || message.starts_with("worker started")
}

fn messages(lines: &Value) -> Vec<String> {
    lines.as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_hundred_thousand_lines_are_all_kept_and_found() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "chatty").await;
    deploy_fixture(&server, &app, "chatty", "chatty").await;
    assert_eq!(invoke(&server, &app, "chatty?n=100000").await, json!({ "printed": 100000 }));
    stored(&server, &app, "chatty", 100_000).await;

    // Page through the API by id: every line once, in order.
    let mut seen = vec![false; 100_000];
    let mut after = 0u64;
    loop {
        let path = format!("/api/apps/{app}/functions-mgmt/logs?function=chatty&limit=1000&after={after}");
        let (status, page) = answer(admin(&server, Method::GET, &path).send().await.unwrap()).await;
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap();
        if page.is_empty() {
            break;
        }
        for line in page {
            let id = line["id"].as_u64().unwrap();
            assert!(id > after, "ids grow");
            after = id;
            if let Some(n) = line["message"].as_str().unwrap().strip_prefix("line ") {
                let n: usize = n.parse().unwrap();
                assert!(!seen[n], "line {n} twice");
                seen[n] = true;
            }
        }
    }
    let missing: Vec<usize> = seen.iter().enumerate().filter(|(_, s)| !**s).map(|(n, _)| n).take(5).collect();
    assert!(missing.is_empty(), "lines never found: {missing:?}");
    // The newest line through the wire route is the last one printed, or the invocation line.
    let (_, newest) = logs_of(&server, &app, "chatty", "?limit=2&order=desc").await;
    let newest = messages(&newest);
    assert!(newest.contains(&"line 99999".to_string()), "{newest:?}");
    server.stop().await;
}

#[tokio::test]
async fn queries_filter_by_level_time_order_and_limit_and_refuse_bad_input() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "filters").await;
    deploy_fixture(&server, &app, "logs", "logs").await;
    invoke(&server, &app, "logs").await;
    invoke(&server, &app, "logs").await;
    stored(&server, &app, "logs", 10).await; // 2 × 5 lines
    stored_with_system(&server, &app, "logs", 13).await; // and a worker start, 2 invocation lines

    // The wire shape: time (microseconds), level, message, and nothing else.
    let (status, all) = logs_of(&server, &app, "logs", "?order=asc&limit=1000").await;
    assert_eq!(status, 200, "{all}");
    let first = &all[0];
    assert_eq!(first.as_object().unwrap().keys().collect::<Vec<_>>(), ["level", "message", "time"]);
    assert_eq!(first["time"].as_str().unwrap().len(), "2026-01-01T00:00:00.000000Z".len());
    let all_messages = messages(&all);
    let own: Vec<_> = all_messages.iter().filter(|m| !is_system(m)).cloned().collect();
    assert_eq!(own[..5], ["a log line { n: 1 }", "an info line", "a debug line", "a warning line", "an error line"]);
    // One invocation line per request: the first a cold start, the second warm.
    let invocations: Vec<_> = all_messages.iter().filter(|m| m.starts_with("invocation: 200 in ")).collect();
    assert_eq!(invocations.len(), 2, "{all_messages:?}");
    assert!(invocations[0].contains("cold start, booted in"), "{}", invocations[0]);
    assert!(invocations[1].ends_with("(warm)"), "{}", invocations[1]);

    // level: that level only; warn is warning.
    for level in ["warning", "warn"] {
        let (_, lines) = logs_of(&server, &app, "logs", &format!("?level={level}")).await;
        assert_eq!(messages(&lines), ["a warning line", "a warning line"]);
        assert!(lines.as_array().unwrap().iter().all(|l| l["level"] == "warning"));
    }
    let (_, debug) = logs_of(&server, &app, "logs", "?level=debug").await;
    assert_eq!(messages(&debug), ["a debug line", "a debug line"]);

    // order and limit: the default is newest first.
    let (_, newest) = logs_of(&server, &app, "logs", "?limit=3").await;
    let reversed: Vec<_> = all_messages.iter().rev().take(3).cloned().collect();
    assert_eq!(messages(&newest), reversed);
    let (_, oldest) = logs_of(&server, &app, "logs", "?limit=2&order=asc").await;
    assert_eq!(messages(&oldest), all_messages[..2]);

    // since (inclusive) and until (exclusive), ISO or relative.
    let times: Vec<&str> = all.as_array().unwrap().iter().map(|l| l["time"].as_str().unwrap()).collect();
    let (_, window) =
        logs_of(&server, &app, "logs", &format!("?order=asc&limit=1000&since={}&until={}", times[1], times[3])).await;
    assert_eq!(messages(&window), all_messages[1..3]);
    let (_, recent) = logs_of(&server, &app, "logs", "?since=1h&limit=1000").await;
    assert_eq!(recent.as_array().unwrap().len(), all_messages.len());
    let (_, old) = logs_of(&server, &app, "logs", "?until=1h").await;
    assert_eq!(old, json!([]));
    let (status, _) = logs_of(&server, &app, "logs", "?env=prod&limit=1000").await;
    assert_eq!(status, 200);

    // Unknown function: 404. Bad parameters: 400 saying what is wrong and how to fix it.
    let (status, body) = logs_of(&server, &app, "nope", "").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("function_not_found")), "{body}");
    for (query, needle) in [
        ("?limit=5000", "not a limit"),
        ("?limit=0", "not a limit"),
        ("?order=sideways", "not an order"),
        ("?level=loud", "not a log level"),
        ("?since=soon", "not a time"),
        ("?env=staging", "not an environment"),
    ] {
        let (status, body) = logs_of(&server, &app, "logs", query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{query}: {body}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{query}: {body}");
    }

    // A deleted function's lines stay readable.
    let (status, _) = answer(
        admin(&server, Method::DELETE, &format!("/api/apps/{app}/backend-functions/logs")).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, lines) = logs_of(&server, &app, "logs", "?limit=1000").await;
    assert_eq!((status, lines.as_array().unwrap().len()), (200, all_messages.len()));

    // Scoped like the other management routes.
    let key = answer(admin(&server, Method::POST, &format!("/api/apps/{app}/keys")).send().await.unwrap()).await.1;
    let other = create_app(&server, "other").await;
    let path = format!("/api/apps/{other}/functions-mgmt/logs/logs");
    let response = server.client().get(server.at(&path)).bearer_auth(key["key"].as_str().unwrap()).send().await;
    assert_eq!(response.unwrap().status(), 403);
    let path = format!("/api/apps/{app}/functions-mgmt/logs/logs");
    assert_eq!(server.client().get(server.at(&path)).send().await.unwrap().status(), 401);
    server.stop().await;
}

/// Reads an SSE body chunk by chunk and splits it into events (blank-line separated blocks).
struct Events {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// Where the unread part of `buffer` starts.
    read: usize,
}

impl Events {
    async fn open(server: &TestPlatform, path: &str, last_id: Option<u64>) -> Events {
        let mut request = admin(server, Method::GET, path).header("accept", "text/event-stream");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events { body: Box::pin(response.bytes_stream()), buffer: String::new(), read: 0 }
    }

    /// Reads the opening of the stream: `: connected`, then the id it starts after.
    async fn opening(&mut self) -> u64 {
        assert_eq!(self.next().await.unwrap(), ": connected", "the stream opens with a comment");
        let start = self.next().await.unwrap();
        start.strip_prefix("id: ").unwrap_or_else(|| panic!("an id to resume from: {start}")).parse().unwrap()
    }

    /// The next event block; `None` when the stream ends. Fails after 30 s.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buffer[self.read..].find("\n\n") {
                let block = self.buffer[self.read..self.read + at].to_string();
                self.read += at + 2;
                return Some(block);
            }
            self.buffer.drain(..self.read);
            self.read = 0;
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next()).await.expect("an event");
            match chunk {
                Some(Ok(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                _ => return None,
            }
        }
    }

    /// The next data event that is the function's own output: its id and JSON.
    async fn next_line(&mut self) -> (u64, Value) {
        loop {
            let (id, line) = self.next_any_line().await;
            if !is_system(line["message"].as_str().unwrap()) {
                return (id, line);
            }
        }
    }

    /// The next data event: its id and JSON.
    async fn next_any_line(&mut self) -> (u64, Value) {
        loop {
            let block = self.next().await.expect("the stream goes on");
            // Comments, and events without data (which clients do not dispatch).
            if block.starts_with(':') || !block.lines().any(|l| l.starts_with("data: ")) {
                continue;
            }
            let id = block.lines().find_map(|l| l.strip_prefix("id: ")).unwrap().parse().unwrap();
            let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            return (id, serde_json::from_str(data).unwrap());
        }
    }
}

#[tokio::test]
async fn the_stream_delivers_new_lines_keeps_alive_resumes_and_ends_on_shutdown() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start_with(
        data.path(),
        homebase_testkit::PlatformOptions { keepalive: Duration::from_millis(300), ..Default::default() },
    )
    .await;
    let app = create_app(&server, "stream").await;
    deploy_fixture(&server, &app, "chatty", "chatty").await;
    deploy_fixture(&server, &app, "quiet", "chatty").await;
    let path = format!("/api/apps/{app}/functions-mgmt/logs/stream?function=chatty");
    let mut events = Events::open(&server, &path, None).await;
    let start = events.opening().await;
    assert_eq!(start, server.hub.next_id() - 1, "the stream starts after the last line numbered");

    // Lines printed after subscribing arrive, only of the asked-for function.
    invoke(&server, &app, "quiet?text=other").await;
    invoke(&server, &app, "chatty?text=hello&level=warn").await;
    let (first_id, line) = events.next_line().await;
    assert!(first_id > start);
    assert_eq!(line, json!({ "time": line["time"], "level": "warning", "function": "chatty", "message": "hello 0" }));
    let (_, invocation) = events.next_any_line().await;
    assert!(invocation["message"].as_str().unwrap().starts_with("invocation: 200"), "{invocation}");

    // A quiet stream sends keep-alive comments.
    assert_eq!(events.next().await.unwrap(), ": keep-alive");

    // Reconnecting with Last-Event-ID replays what came after it, once, then goes live.
    invoke(&server, &app, "chatty?text=again&n=3").await;
    let mut resumed = Events::open(&server, &path, Some(first_id)).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let (id, line) = resumed.next_line().await;
        assert!(id > first_id);
        got.push(line["message"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ["again 0", "again 1", "again 2"], "neither hello 0 again nor a gap");
    invoke(&server, &app, "chatty?text=live").await;
    assert_eq!(resumed.next_line().await.1["message"], "live 0");

    // Shutdown ends the stream with an end event the client may retry after.
    server.stop().await;
    let mut last = None;
    while let Some(block) = resumed.next().await {
        last = Some(block);
    }
    let last = last.unwrap();
    assert!(last.starts_with("event: end\ndata: "), "{last}");
    let end: Value = serde_json::from_str(last.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(end, json!({ "reason": "server_shutdown", "retriable": true }));
}

#[tokio::test]
async fn secret_values_a_function_prints_are_masked_in_stored_and_streamed_lines() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "masking").await;
    let token = "tok_live_5f3a9c21e7";
    let path = format!("/api/apps/{app}/secrets");
    let secrets = json!({ "API_TOKEN": token, "PIN": "1234" });
    assert_eq!(answer(admin(&server, Method::POST, &path).json(&secrets).send().await.unwrap()).await.0, 200);
    deploy_fixture(&server, &app, "leak", "leak-secret").await;
    let stream = format!("/api/apps/{app}/functions-mgmt/logs/stream");
    let mut events = Events::open(&server, &stream, None).await;
    events.next().await.unwrap();
    invoke(&server, &app, "leak").await;
    stored(&server, &app, "leak", 2).await;

    let (_, lines) = logs_of(&server, &app, "leak", "?order=asc").await;
    let lines: Vec<_> = messages(&lines).into_iter().filter(|m| !is_system(m)).collect();
    // A value shorter than 6 characters (the PIN) is left alone, by design.
    assert_eq!(lines[..2], ["token=******** pin=1234", "failed with ********"]);
    assert_eq!(events.next_line().await.1["message"], "token=******** pin=1234");
    assert!(server.logs.events().iter().all(|e| !e.message.contains(token)), "no sink saw the value");
    server.hub.writer().unwrap().flush().await;
    for file in ["logs.db", "logs.db-wal"] {
        let bytes = std::fs::read(data.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "{file} holds the value");
    }

    // A changed secret is masked from the next request on.
    let secrets = json!({ "API_TOKEN": "tok_rotated_000111" });
    assert_eq!(answer(admin(&server, Method::POST, &path).json(&secrets).send().await.unwrap()).await.0, 200);
    invoke(&server, &app, "leak").await;
    stored(&server, &app, "leak", 4).await;
    let (_, lines) = logs_of(&server, &app, "leak", "?level=info&order=asc").await;
    let printed: Vec<_> = messages(&lines).into_iter().filter(|m| m.starts_with("token=")).collect();
    assert_eq!(printed, ["token=******** pin=1234", "token=******** pin=1234"]);
    server.stop().await;
}

/// Replaces the secrets of `app`.
async fn put_secrets(server: &TestPlatform, app: &str, secrets: Value) {
    let path = format!("/api/apps/{app}/secrets");
    let (status, body) = answer(admin(server, Method::POST, &path).json(&secrets).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
}

/// A request to the `leak-later` fixture, held in flight until [`Held::release`].
struct Held {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    response: reqwest::Response,
}

impl Held {
    /// Sends the request and returns once the function has answered "holding": it runs on a
    /// worker and waits for the end of the request body.
    async fn start(server: &TestPlatform, app: &str, name: &str) -> Held {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        let url = server.at(&format!("/api/apps/{app}/functions/{name}"));
        let request = server.client().post(url).body(reqwest::Body::wrap_stream(stream)).send();
        let mut response = tokio::time::timeout(Duration::from_secs(30), request).await.expect("an answer").unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(&response.chunk().await.unwrap().unwrap()[..], b"holding\n");
        Held { tx, response }
    }

    /// Ends the request body: the function prints its secret, then answers "printed".
    async fn release(self) {
        drop(self.tx);
        assert_eq!(self.response.text().await.unwrap(), "printed\n");
    }
}

/// The stored lines of `function` that start with `prefix`, once there are `n` of them (polling
/// every 20 ms, up to 60 s: lines reach the store with no signal of their own).
async fn stored_starting_with(server: &TestPlatform, app: &str, function: &str, prefix: &str, n: usize) -> Vec<String> {
    for _ in 0..3000 {
        let (status, lines) = logs_of(server, app, function, "?order=asc&limit=1000").await;
        assert_eq!(status, 200, "{lines}");
        let found: Vec<String> = messages(&lines).into_iter().filter(|m| m.starts_with(prefix)).collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} lines of {function} start with {prefix:?}");
}

/// Neither the log database nor any sink holds `value`.
async fn nowhere(server: &TestPlatform, data: &std::path::Path, value: &str) {
    assert!(server.logs.events().iter().all(|e| !e.message.contains(value)), "a sink saw {value}");
    server.hub.writer().unwrap().flush().await;
    for file in ["logs.db", "logs.db-wal"] {
        let bytes = std::fs::read(data.join(file)).unwrap_or_default();
        assert!(!bytes.windows(value.len()).any(|w| w == value.as_bytes()), "{file} holds {value}");
    }
}

#[tokio::test]
async fn values_a_retired_worker_still_holds_stay_masked_in_its_lines() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "rotating").await;
    let (first, second) = ("tok_first_4f1d2c9a77", "tok_second_8b7e6a5310");
    put_secrets(&server, &app, json!({ "API_TOKEN": first })).await;
    deploy_fixture(&server, &app, "hold", "leak-later").await;

    // Rotated while a request that prints the old value is in flight on the old worker.
    let held = Held::start(&server, &app, "hold").await;
    put_secrets(&server, &app, json!({ "API_TOKEN": second })).await;
    held.release().await;
    assert_eq!(stored_starting_with(&server, &app, "hold", "token=", 1).await, ["token=********"]);

    // The app loses its last function (so it has no secrets left to mask) while a worker with
    // the second value still finishes a request.
    let held = Held::start(&server, &app, "hold").await;
    let path = format!("/api/apps/{app}/backend-functions/hold");
    let (status, body) = answer(admin(&server, Method::DELETE, &path).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    held.release().await;
    assert_eq!(stored_starting_with(&server, &app, "hold", "token=", 2).await, ["token=********", "token=********"]);

    nowhere(&server, data.path(), first).await;
    nowhere(&server, data.path(), second).await;
    server.stop().await;
}

#[tokio::test]
async fn a_secret_in_a_failed_start_or_a_crash_is_masked_in_the_error_body_and_the_lines() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "failing").await;
    let key = "sk_live_0c4f9e1b2a";
    put_secrets(&server, &app, json!({ "API_TOKEN": key, "FAIL_AT": "load" })).await;
    deploy_fixture(&server, &app, "fails", "leak-on-failure").await;
    let url = server.at(&format!("/api/apps/{app}/functions/fails"));

    // The module throws `bad key <value>` at load.
    let (status, body) = answer(server.client().post(&url).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "function_boot_failed");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("bad key ********"), "{body}");
    assert!(!body.to_string().contains(key), "{body}");
    let failed = stored_starting_with(&server, &app, "fails", "failed to start: ", 1).await;
    assert!(failed[0].contains("bad key ********"), "{failed:?}");

    // It loads, then writes the value to stderr and exits mid-request.
    put_secrets(&server, &app, json!({ "FAIL_AT": "request" })).await;
    let (status, body) = answer(server.client().post(&url).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "function_crashed");
    // `serve` answers the exit status; what the worker printed is in its log only.
    assert!(body["detail"].as_str().unwrap().contains("exited with code"), "{body}");
    assert!(!body.to_string().contains("dying with"), "{body}");
    assert!(!body.to_string().contains(key), "{body}");
    assert_eq!(stored_starting_with(&server, &app, "fails", "dying with ", 1).await, ["dying with ********"]);
    let crashed = stored_starting_with(&server, &app, "fails", "invocation: 502", 1).await;
    assert!(crashed[0].contains("dying with ********"), "{crashed:?}");

    // It throws `rejected key <value>` from the handler: the host's 500 body hides it too.
    put_secrets(&server, &app, json!({ "FAIL_AT": "handler" })).await;
    let (status, body) = answer(server.client().post(&url).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "function_error");
    assert_eq!(body["message"], "rejected key ********", "{body}");
    assert!(!body["detail"].as_str().unwrap().contains("rejected key"), "the stack stays in the log: {body}");
    assert!(!body.to_string().contains(key), "{body}");

    nowhere(&server, data.path(), key).await;
    server.stop().await;
}

/// A line printed by `function` of `app`, as a worker's output reaches the hub.
fn printed(app: &str, function: &str, message: String) -> LogEvent {
    LogEvent {
        id: 0,
        time: SystemTime::now(),
        app_id: app.into(),
        function: function.into(),
        version: "v".into(),
        level: Level::Info,
        request_id: None,
        message,
        system: false,
    }
}

fn stream_path(app: &str) -> String {
    format!("/api/apps/{app}/functions-mgmt/logs/stream")
}

/// A follower that falls behind the live feed before it printed anything catches up from where
/// it started, not from the app's first line. (The test runs on one thread: the follower is
/// not polled while the burst is printed.)
#[tokio::test]
async fn a_new_follower_that_lags_catches_up_from_where_it_started() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let a = create_app(&server, "a").await;
    let b = create_app(&server, "b").await;
    for i in 0..10 {
        server.hub.emit(printed(&a, "f", format!("old {i}")));
    }
    let last_old = server.hub.next_id() - 1;
    server.hub.writer().unwrap().flush().await;
    let mut events = Events::open(&server, &stream_path(&a), None).await;
    assert_eq!(events.opening().await, last_old);
    // Another app prints more than the live feed holds.
    for i in 0..5000 {
        server.hub.emit(printed(&b, "f", format!("b {i}")));
    }
    server.hub.emit(printed(&a, "f", "new".into()));
    let (id, line) = events.next_any_line().await;
    assert_eq!(line["message"], "new", "old lines are not replayed to a follower that never had them");
    assert_eq!(id, last_old + 5001);
    server.stop().await;
}

/// However many stored lines come after Last-Event-ID, all of them arrive, in order, then the
/// live ones: nothing is skipped.
#[tokio::test]
async fn a_resumed_stream_replays_every_stored_line_then_goes_live() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let a = create_app(&server, "a").await;
    let first = server.hub.next_id();
    const LINES: u64 = 60_000;
    for i in 0..LINES {
        server.hub.emit(printed(&a, "f", format!("l {i}")));
    }
    server.hub.writer().unwrap().flush().await;
    let mut events = Events::open(&server, &stream_path(&a), Some(first - 1)).await;
    assert_eq!(events.opening().await, first - 1);
    for n in 0..LINES {
        let (id, line) = events.next_any_line().await;
        assert_eq!((id, line["message"].as_str().unwrap()), (first + n, format!("l {n}").as_str()));
        if n == LINES / 2 {
            server.hub.emit(printed(&a, "f", "live".into()));
        }
    }
    let (id, line) = events.next_any_line().await;
    assert_eq!((id, line["message"].as_str().unwrap()), (first + LINES, "live"));
    server.stop().await;
}

/// After a restart, ids continue above every id of the earlier run, even when retention emptied
/// the store meanwhile; a Last-Event-ID this run has not reached (from a run that numbered
/// ahead) resumes from the current line instead of waiting for the ids to pass it.
#[tokio::test]
async fn ids_keep_growing_across_restarts_and_resuming_clients_see_new_lines() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let a = create_app(&server, "a").await;
    for i in 0..100 {
        server.hub.emit(printed(&a, "f", format!("l {i}")));
    }
    let last = server.hub.next_id() - 1;
    server.hub.writer().unwrap().flush().await;
    server.stop().await;
    let store = LogStore::open(data.path().join("logs.db")).await.unwrap();
    let far_future = homebase_logs::micros(SystemTime::now()) + 30 * 24 * 3600 * 1_000_000;
    store.prune(Retention::default(), far_future).await.unwrap(); // what 7 idle days do
    assert_eq!(store.count(None, None).await.unwrap(), 0);
    drop(store);

    let server = TestPlatform::start(data.path()).await;
    assert!(server.hub.next_id() > last, "{} after {last}", server.hub.next_id());
    let mut events = Events::open(&server, &stream_path(&a), Some(last)).await;
    assert_eq!(events.opening().await, last);
    let ahead = server.hub.next_id() + 1_000_000;
    let mut from_ahead = Events::open(&server, &stream_path(&a), Some(ahead)).await;
    assert_eq!(from_ahead.opening().await, server.hub.next_id() - 1);
    server.hub.emit(printed(&a, "f", "after restart".into()));
    let (id, line) = events.next_any_line().await;
    assert_eq!(line["message"], "after restart");
    assert!(id > last);
    assert_eq!(from_ahead.next_any_line().await, (id, line));
    server.stop().await;
}

/// `function=` lists at most 100 names, and relative times that overflow are refused: 400s that
/// say so, on the stream and the queries alike.
#[tokio::test]
async fn too_many_functions_and_overflowing_times_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "a").await;
    let names = (0..3000).map(|i| format!("f{i}")).collect::<Vec<_>>().join(",");
    for path in [
        format!("/api/apps/{app}/functions-mgmt/logs/stream?function={names}"),
        format!("/api/apps/{app}/functions-mgmt/logs?function={names}"),
        format!("/api/apps/{app}/functions-mgmt/logs?since=99999999999999w"),
        format!("/api/apps/{app}/functions-mgmt/logs?until=18446744073709551615ms"),
    ] {
        let (status, body) = answer(admin(&server, Method::GET, &path).send().await.unwrap()).await;
        assert_eq!(status, 400, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("at most 100") || message.contains("too far back"), "{body}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    }
    server.stop().await;
}

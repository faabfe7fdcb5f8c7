//! The limits that protect the host from its functions, each with its refusal and its recovery,
//! through a real server and real Deno: `function-memory` (a worker past it is stopped,
//! `502 out_of_memory`, the next call gets a fresh worker), `function-concurrency` (a bounded
//! queue, then `503 concurrency_limit`) and `max-workers` (idle workers stopped least recently
//! used first, `503 too_many_workers` when none is idle).
//!
//! Nothing here waits for time to pass: requests are held open by the client (`duplex` answers
//! once its request body starts and ends when it ends; `sse` until `/sse/release`), and the
//! functions that outgrow their memory allocate until they are stopped, whichever limit stops
//! them first.

use std::time::Duration;

use bytes::Bytes;
use homebase_runtime::Level;
use homebase_testkit::{
    ADMIN_KEY, PlatformOptions, TestPlatform, TestServer, eventually, fixture, json_of, process_alive,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A failure bound, not a pace: every wait below ends on an event long before this.
const PATIENCE: Duration = Duration::from_secs(60);

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(&url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, json_of(response).await)
}

/// Checks a refusal's body: code, and a message and detail that name the setting.
fn check_refusal(body: &Value, code: &str, setting: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(setting), "the detail names {setting}: {body}");
}

#[tokio::test]
async fn a_worker_over_function_memory_is_stopped_and_the_next_call_gets_a_fresh_one() {
    let project = fixture("functions");
    project.write(
        "base44/functions/greedy-boot/entry.ts",
        "const held: Uint8Array[] = [];\nfor (;;) {\n  try {\n    held.push(new Uint8Array(8 << 20).fill(1));\n  \
         } catch {\n    // past the address-space cap: hold on and try again\n  }\n  \
         await new Promise((resolve) => setTimeout(resolve, 1));\n}\n",
    );
    let config = homebase_server::config::Config { function_memory: 128 << 20, ..TestServer::config() };
    let server = TestServer::start_with(project.path(), config).await;
    let client = server.client();
    let (_, other) = get(&client, server.at("/functions/spin")).await;
    let (_, first) = get(&client, server.at("/functions/memory")).await;

    for kind in ["buffers", "heap"] {
        let response = client.post(server.at(&format!("/functions/memory?kind={kind}"))).send().await.unwrap();
        assert_eq!(response.status(), 502, "{kind}");
        let body = json_of(response).await;
        check_refusal(&body, "out_of_memory", "function-memory");
        assert_eq!(body["message"], "Function 'memory' ran out of memory", "{body}");
        assert!(body["detail"].as_str().unwrap().contains("128 MiB"), "{body}");
    }
    // The function's log says why its worker stopped.
    let stopped: Vec<String> = server
        .logs
        .events()
        .into_iter()
        .filter(|e| e.function == "memory" && e.level == Level::Error && e.message.contains("out_of_memory"))
        .map(|e| e.message)
        .collect();
    assert!(stopped.len() >= 2, "one line per stopped worker: {stopped:?}");

    // A module that outgrows the limit while it loads is stopped the same way.
    let response = get(&client, server.at("/functions/greedy-boot")).await;
    assert_eq!(response.0, 502, "{}", response.1);
    check_refusal(&response.1, "out_of_memory", "function-memory");

    // A fresh worker answers; the other function's worker and the server were untouched.
    let (status, again) = get(&client, server.at("/functions/memory")).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["pid"], first["pid"], "a fresh worker");
    let pid = first["pid"].as_u64().unwrap() as u32;
    eventually("the stopped worker is gone", || !process_alive(pid)).await;
    assert_eq!(get(&client, server.at("/functions/spin")).await.1["pid"], other["pid"], "the other worker lives on");
    server.stop().await;
}

#[tokio::test]
async fn serve_stops_a_sandboxed_worker_over_function_memory_with_the_same_answer() {
    let data = tempfile::tempdir().unwrap();
    let options = PlatformOptions { function_memory: 128 << 20, ..Default::default() };
    let server = TestPlatform::start_with(data.path(), options).await;
    let client = server.client();
    let created = client.post(server.at("/api/apps")).header("api_key", ADMIN_KEY).json(&json!({ "name": "mem" }));
    let app = json_of(created.send().await.unwrap()).await["id"].as_str().unwrap().to_string();
    let code = std::fs::read_to_string(fixture("functions").path().join("base44/functions/memory/entry.ts")).unwrap();
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let deployed = client
        .put(server.at(&format!("/api/apps/{app}/backend-functions/memory")))
        .header("api_key", ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 200);
    let url = server.at(&format!("/api/apps/{app}/functions/memory"));
    let (_, first) = get(&client, url.clone()).await;
    let response = client.post(format!("{url}?kind=buffers")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    check_refusal(&json_of(response).await, "out_of_memory", "function-memory");
    let (status, again) = get(&client, url).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["pid"], first["pid"]);
    server.stop().await;
}

/// A request to `duplex` whose body the test holds open: the function answers once the first
/// chunk arrives and ends its answer when the body ends. Returns the response and the body's
/// sender (drop it to end the request).
async fn held(
    client: &reqwest::Client,
    url: String,
) -> (reqwest::Response, mpsc::Sender<Result<Bytes, std::io::Error>>) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(Ok(Bytes::from_static(b"held"))).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let response = tokio::time::timeout(PATIENCE, client.post(url).body(body).send()).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    (response, tx)
}

fn tokio_stream_of<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

#[tokio::test]
async fn function_concurrency_queues_as_many_again_then_refuses_with_retry_after() {
    let project = fixture("functions");
    let config = homebase_server::config::Config { function_concurrency: 1, ..TestServer::config() };
    let server = TestServer::start_with(project.path(), config).await;
    let client = server.client();
    let url = server.at("/functions/duplex");

    // One request in flight holds the function's only turn.
    let (first, body) = held(&client, url.clone()).await;
    // Two more: one waits in the queue (of one), the other is refused at once.
    let send = |text: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let response = client.post(url).body(text).send().await.unwrap();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), retry_after, response.text().await.unwrap())
        })
    };
    let mut b = send("b");
    let mut c = send("c");
    let (refused, mut queued) = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            out = &mut b => (out.unwrap(), c),
            out = &mut c => (out.unwrap(), b),
        }
    })
    .await
    .expect("one of the two is answered at once");
    assert_eq!(refused.0, 503, "{refused:?}");
    assert_eq!(refused.1.as_deref(), Some("1"), "Retry-After");
    let refusal: Value = serde_json::from_str(&refused.2).unwrap();
    check_refusal(&refusal, "concurrency_limit", "function-concurrency");
    assert!(refusal["detail"].as_str().unwrap().contains("allows 1 at once"), "{refusal}");
    assert!(!queued.is_finished(), "the other waits for its turn");
    let noted = server.logs.events().into_iter().any(|e| {
        e.function == "duplex" && e.message == "1 request(s) refused with 503 (concurrency_limit): function-concurrency allows 1 in flight and as many waiting"
    });
    assert!(noted, "the function's log says what refused it");

    // The held request ends: the queued one gets its turn.
    drop(body);
    assert_eq!(first.text().await.unwrap(), "first:held\nrest:0\n");
    let (status, _, text) = tokio::time::timeout(PATIENCE, &mut queued).await.unwrap().unwrap();
    assert_eq!(status, 200, "{text}");
    // And afterwards all is well.
    let response = client.post(&url).body("d").send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (200, "first:d\nrest:0\n".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn max_workers_stops_the_least_recently_used_idle_worker_and_refuses_when_none_is_idle() {
    let project = fixture("functions");
    let config = homebase_server::config::Config { max_workers: 2, ..TestServer::config() };
    let server = TestServer::start_with(project.path(), config).await;
    let client = server.client();
    let running = || {
        let mut names: Vec<String> = server.runtime.workers().into_iter().map(|w| w.function).collect();
        names.sort();
        names
    };

    // Two workers, then a third function: the one used least recently makes room.
    assert_eq!(get(&client, server.at("/functions/echo")).await.0, 200);
    assert_eq!(get(&client, server.at("/functions/spin")).await.0, 200);
    assert_eq!(get(&client, server.at("/functions/modern")).await.0, 200);
    assert_eq!(running(), ["modern", "spin"]);
    assert_eq!(server.runtime.worker_places(), (2, 2));
    let made_room =
        server.logs.events().into_iter().any(|e| {
            e.function == "echo" && e.message.starts_with("worker stopped to make room for 'modern'") && e.system
        });
    assert!(made_room, "echo's log says why it stopped");

    // Both places held by workers with a request in flight: a third function is refused.
    let mut sse = client.get(server.at("/functions/sse")).send().await.unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(&sse.chunk().await.unwrap().unwrap()[..], b"data: first\n\n");
    let (duplex, body) = held(&client, server.at("/functions/duplex")).await;
    assert_eq!(running(), ["duplex", "sse"]);
    let response = client.get(server.at("/functions/echo")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let refusal = json_of(response).await;
    check_refusal(&refusal, "too_many_workers", "max-workers");
    assert!(refusal["detail"].as_str().unwrap().contains("'echo'"), "{refusal}");
    let noted = server.logs.events().into_iter().any(|e| {
        e.function == "echo"
            && e.message.starts_with("1 request(s) refused with 503 (too_many_workers): max-workers (2)")
    });
    assert!(noted, "the function's log says what refused it");

    // One of them finishes: its worker is idle and makes room.
    let released = client.get(server.at("/functions/sse/release")).send().await.unwrap();
    assert_eq!(released.status(), 200);
    assert_eq!(sse.text().await.unwrap(), "data: second\n\n");
    let (status, echoed) = get(&client, server.at("/functions/echo")).await;
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(running(), ["duplex", "echo"]);
    drop(body);
    assert_eq!(duplex.text().await.unwrap(), "first:held\nrest:0\n");
    server.stop().await;
}

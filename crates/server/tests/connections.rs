//! Client connections against the real `serve` router (issue 9): the cap answers a JSON 503 and
//! never stops established clients; half-open connections (a partial request head) and idle ones
//! are closed after their timeouts; HTTP/2 still works with the connection's own address.
//! The flood of 20,000 half-open connections against the binary is in the CLI's tests.

use std::time::{Duration, Instant};

use homebase_server::ConnectionLimits;
use homebase_testkit::{ADMIN_KEY, PlatformOptions, TestPlatform, json_of};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn platform(limits: ConnectionLimits) -> (TestPlatform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestPlatform::start_with(dir.path(), PlatformOptions { connections: limits, ..Default::default() }).await;
    (server, dir)
}

fn addr(server: &TestPlatform) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// Opens a connection and sends the start of a request head, never its end.
async fn half_open(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    stream
}

/// Reads until the server closes the connection (bounded); returns what it sent.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    out
}

#[tokio::test]
async fn past_the_cap_a_connection_gets_a_json_503_while_established_clients_keep_their_answers() {
    let limits =
        ConnectionLimits { max_connections: 20, header_read_timeout: Duration::from_secs(60), ..Default::default() };
    let (server, _dir) = platform(limits).await;
    // An established client, with its connection kept alive.
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    assert_eq!(client.get(server.at("/healthz")).send().await.unwrap().status(), 200);
    // 19 half-open connections fill the cap.
    let mut held = Vec::new();
    for _ in 0..19 {
        held.push(half_open(&addr(&server)).await);
    }
    // One more: 503 with a JSON body, then closed.
    let mut extra = TcpStream::connect(addr(&server)).await.unwrap();
    extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let text = String::from_utf8(read_to_close(&mut extra, Duration::from_secs(10)).await).unwrap();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: application/json"), "{text}");
    let body: serde_json::Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "too_many_connections");
    assert!(body["message"].is_string() && body["detail"].as_str().unwrap().contains("20"), "{body}");
    // The established client still gets answers, management calls included.
    for _ in 0..3 {
        assert_eq!(client.get(server.at("/healthz")).send().await.unwrap().status(), 200);
    }
    let response = client.post(server.at("/api/apps")).header("api_key", ADMIN_KEY).json(&json!({ "name": "a" }));
    assert_eq!(response.send().await.unwrap().status(), 201);
    // Once the half-open ones go, new connections are served again.
    drop(held);
    let mut served = false;
    for _ in 0..200 {
        let fresh = reqwest::Client::new();
        if let Ok(response) = fresh.get(server.at("/healthz")).send().await
            && response.status() == 200
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await; // the server notices the closes
    }
    assert!(served, "a new connection is served once the cap has room");
    server.stop().await;
}

#[tokio::test]
async fn half_open_and_idle_connections_are_closed_after_their_timeouts() {
    let limits = ConnectionLimits {
        max_connections: 1000,
        header_read_timeout: Duration::from_millis(600),
        keep_alive_timeout: Duration::from_millis(900),
    };
    let (server, _dir) = platform(limits).await;
    // Half-open: a partial head, or nothing at all.
    let started = Instant::now();
    let mut partial: Vec<TcpStream> = Vec::new();
    for _ in 0..50 {
        partial.push(half_open(&addr(&server)).await);
    }
    let mut silent = TcpStream::connect(addr(&server)).await.unwrap();
    for stream in &mut partial {
        assert!(read_to_close(stream, Duration::from_secs(10)).await.is_empty(), "closed without an answer");
    }
    assert!(read_to_close(&mut silent, Duration::from_secs(10)).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(550), "not before the header timeout");

    // Kept alive after a response: closed after the keep-alive timeout, longer than the header one.
    let mut idle = TcpStream::connect(addr(&server)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    read_to_close(&mut idle, Duration::from_secs(10)).await;
    assert!(answered.elapsed() >= Duration::from_millis(850), "kept for the keep-alive timeout");

    // After a response, a next head that never completes: closed by the header timeout.
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n").await.unwrap();
    let text = String::from_utf8(read_to_close(&mut slow, Duration::from_secs(10)).await).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{text}");

    // A request that takes longer than both timeouts is not cut: a request in flight has none.
    let client = reqwest::Client::new();
    let app = json_of(
        client
            .post(server.at("/api/apps"))
            .header("api_key", ADMIN_KEY)
            .json(&json!({ "name": "s" }))
            .send()
            .await
            .unwrap(),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let code =
        "Deno.serve(async () => { await new Promise((r) => setTimeout(r, 1500)); return new Response(\"late\"); });\n";
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let deploy = client.put(server.at(&format!("/api/apps/{app}/backend-functions/late"))).header("api_key", ADMIN_KEY);
    assert_eq!(deploy.json(&body).send().await.unwrap().status(), 200);
    let response = client.get(server.at(&format!("/api/apps/{app}/functions/late"))).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "late");
    server.stop().await;
}

#[tokio::test]
async fn http2_is_served_and_functions_see_the_connections_own_address() {
    let (server, _dir) = platform(ConnectionLimits::default()).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = client.get(server.at("/healthz")).send().await.unwrap();
    assert_eq!((response.version(), response.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    let app = json_of(
        client
            .post(server.at("/api/apps"))
            .header("api_key", ADMIN_KEY)
            .json(&json!({ "name": "h2" }))
            .send()
            .await
            .unwrap(),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = "Deno.serve((req) => Response.json({ api: req.headers.get(\"base44-api-url\") }));\n";
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let deploy =
        client.put(server.at(&format!("/api/apps/{app}/backend-functions/where"))).header("api_key", ADMIN_KEY);
    assert_eq!(deploy.json(&body).send().await.unwrap().status(), 200);
    let response = client.post(server.at(&format!("/api/apps/{app}/functions/where"))).header("host", "evil.example");
    let seen = json_of(response.send().await.unwrap()).await;
    assert_eq!(seen["api"], server.url, "{seen}");
    server.stop().await;
}

/// Creates an app with the admin key and deploys `code` as its function `name`; returns the app id.
async fn app_with_function(server: &TestPlatform, app_name: &str, name: &str, code: &str) -> String {
    let client = reqwest::Client::new();
    let created = client.post(server.at("/api/apps")).header("api_key", ADMIN_KEY).json(&json!({ "name": app_name }));
    let app = json_of(created.send().await.unwrap()).await["id"].as_str().unwrap().to_string();
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let deploy =
        client.put(server.at(&format!("/api/apps/{app}/backend-functions/{name}"))).header("api_key", ADMIN_KEY);
    let response = deploy.json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    app
}

/// The review's attack (issue 9): unauthenticated HTTP/2 clients, each with many streams, to a
/// slow function. Every request in flight held a connection to the worker, so the server ran out
/// of descriptors (`502 Too many open files`, `/healthz` timing out). Now each HTTP/2 connection
/// carries at most 32 requests at once, and the runtime holds at most a quarter of the worker
/// socket budget (the connection cap, here 64) to one worker: the excess is answered `503` at
/// once, while `/healthz` and another app's function keep answering.
#[tokio::test]
async fn http2_streams_to_a_slow_function_cannot_exhaust_descriptors_or_starve_other_functions() {
    let limits = ConnectionLimits { max_connections: 64, ..Default::default() };
    let (server, _dir) = platform(limits).await;
    assert_eq!(server.runtime.worker_connection_limits(), (64, 16), "the budget follows the connection cap");
    let slow = "Deno.serve(async () => { await new Promise((r) => setTimeout(r, 90_000)); return new Response(\"late\"); });\n";
    let victim = app_with_function(&server, "victim", "slow", slow).await;
    let other = app_with_function(&server, "other", "hello", "Deno.serve(() => new Response(\"hello\"));\n").await;
    let hello = server.at(&format!("/api/apps/{other}/functions/hello"));
    assert_eq!(reqwest::get(&hello).await.unwrap().text().await.unwrap(), "hello");

    // 4 HTTP/2 connections, 24 streams each, all to the slow function.
    let slow_url = server.at(&format!("/api/apps/{victim}/functions/slow"));
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let mut flood = Vec::new();
    for _ in 0..4 {
        let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
        for _ in 0..24 {
            let (client, url, tx) = (client.clone(), slow_url.clone(), tx.clone());
            flood.push(tokio::spawn(async move {
                let response = client.post(url).body("x").send().await.unwrap();
                assert_eq!(response.version(), reqwest::Version::HTTP_2);
                let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                let _ = tx.send((response.status().as_u16(), retry, json_of(response).await));
            }));
        }
    }
    // 16 are held by the worker; the other 80 are refused at once.
    for _ in 0..80 {
        let (status, retry, body) =
            tokio::time::timeout(Duration::from_secs(60), answers.recv()).await.expect("refused at once").unwrap();
        assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
        assert_eq!(body["code"], "function_busy", "{body}");
        assert!(body["message"].as_str().unwrap().contains("slow"), "{body}");
        assert!(body["detail"].as_str().unwrap().contains("16"), "{body}");
    }
    let worker = server.runtime.workers().into_iter().find(|w| w.function == "slow").unwrap();
    assert_eq!((worker.in_flight, worker.open_connections), (16, 16), "{worker:?}");
    assert!(server.runtime.worker_connections() <= 64);

    // The server and the other app's function still answer, over HTTP/1 and HTTP/2.
    let fresh = reqwest::Client::new();
    assert_eq!(fresh.get(server.at("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(fresh.get(&hello).send().await.unwrap().text().await.unwrap(), "hello");
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    assert_eq!(h2.get(&hello).send().await.unwrap().text().await.unwrap(), "hello");
    // The function's log says why, once, not once per request.
    let refusals = server
        .logs
        .events()
        .into_iter()
        .filter(|e| e.function == "slow" && e.message.contains("refused with 503"))
        .count();
    assert_eq!(refusals, 1);
    assert!(answers.try_recv().is_err(), "the 16 held requests are still in flight");
    for task in flood {
        task.abort();
    }
    server.stop().await;
}

/// One HTTP/2 connection carries at most 32 requests at once: the server says so in its first
/// SETTINGS frame (hyper's default was 200).
#[tokio::test]
async fn http2_connections_are_limited_to_32_concurrent_streams() {
    let (server, _dir) = platform(ConnectionLimits::default()).await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    // The client preface and an empty SETTINGS frame.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 4, "the server starts with SETTINGS");
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|s| (u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]])))
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
    assert!(settings.contains(&(3, 32)), "{settings:?}");
    server.stop().await;
}

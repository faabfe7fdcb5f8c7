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

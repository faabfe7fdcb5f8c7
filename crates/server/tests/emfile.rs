//! The accept loop when the process runs out of file descriptors (issue 9): `accept` fails with
//! `EMFILE`; the loop pauses instead of spinning or ending, and serves the waiting connection
//! once descriptors are free again. Alone in its test binary, as it exhausts the process's own
//! descriptors.

use std::time::Duration;

use homebase_testkit::TestPlatform;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// EMFILE on Linux.
const EMFILE: i32 = 24;

#[tokio::test]
async fn running_out_of_descriptors_pauses_the_accept_loop_until_some_are_free() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(dir.path()).await;
    let addr = server.url.trim_start_matches("http://").parse().unwrap();
    // The client's socket is made first: there will be no descriptor left for it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let mut filler = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => filler.push(file),
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(EMFILE), "{error}");
                break;
            }
        }
        assert!(filler.len() < 5_000_000, "the open-file limit is never reached");
    }
    // The kernel completes the handshake; the server cannot accept it yet.
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "no descriptor, no answer: {}", String::from_utf8_lossy(&answer));
    drop(filler);
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("ok"), "{text}");
    // And the loop goes on accepting.
    let response = reqwest::get(server.at("/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await;
}

//! Helpers for the tests of this crate and of the crates above it (the `testing` feature).

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Mail received by [`smtp_sink`]: `(envelope recipient, message data)`.
pub type ReceivedMail = (String, String);

/// A tiny SMTP server on 127.0.0.1:0 that accepts every message; returns its port and a
/// receiver of `(envelope recipient, data)`.
pub async fn smtp_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<ReceivedMail>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = tokio::io::BufReader::new(read);
                write.write_all(b"220 sink\r\n").await.unwrap();
                let (mut to, mut data, mut in_data) = (String::new(), String::new(), false);
                let mut line = String::new();
                while read.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let reply: &[u8] = if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            let _ = tx.send((to.clone(), data.clone()));
                            b"250 queued\r\n"
                        } else {
                            data.push_str(&line);
                            b""
                        }
                    } else if line.starts_with("EHLO") {
                        b"250-sink\r\n250 AUTH PLAIN\r\n"
                    } else if line.starts_with("AUTH PLAIN") {
                        b"235 ok\r\n"
                    } else if let Some(rcpt) = line.strip_prefix("RCPT TO:") {
                        to = rcpt.trim().trim_matches(['<', '>']).to_string();
                        b"250 ok\r\n"
                    } else if line.starts_with("DATA") {
                        in_data = true;
                        b"354 go\r\n"
                    } else if line.starts_with("QUIT") {
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                    line.clear();
                }
            });
        }
    });
    (port, rx)
}

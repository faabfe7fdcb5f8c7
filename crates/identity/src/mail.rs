//! Outgoing e-mail for verification codes, reset tokens and invitations.
//!
//! With `smtp-url` configured (`smtp://[user:password@]host[:port]`, port 25 by default), mail
//! goes through a minimal SMTP client: `EHLO`, optional `AUTH PLAIN`, `MAIL FROM`, `RCPT TO`,
//! `DATA` with dot-stuffing, `QUIT`. It speaks plain SMTP without TLS, so point it at a relay on
//! the same host or a trusted network. Without it, each mail is written to the server log, which
//! is how `homebase dev` shows codes. Mail is sent in the background: a slow or failing relay
//! never delays or changes an API answer (which would also tell accounts apart).

use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum Mailer {
    /// Written to the server log.
    Log,
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    pub from: String,
}

impl SmtpConfig {
    /// Parses `smtp://[user:password@]host[:port]`.
    pub fn parse(url: &str, from: &str) -> Result<SmtpConfig, String> {
        let rest = url
            .strip_prefix("smtp://")
            .ok_or_else(|| format!("'{url}' is not an smtp:// URL; write smtp://[user:password@]host[:port]"))?;
        let rest = rest.trim_end_matches('/');
        let (credentials, server) = match rest.rsplit_once('@') {
            Some((userinfo, server)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((user.to_string(), password.to_string())), server)
            }
            None => (None, rest),
        };
        let (host, port) = match server.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || !port.is_empty() => {
                (host, port.parse().map_err(|_| format!("'{port}' in the SMTP URL is not a port number"))?)
            }
            _ => (server, 25),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("The SMTP URL names no host".into());
        }
        if !from.contains('@') {
            return Err(format!("The sender '{from}' is not an e-mail address; set smtp-from"));
        }
        Ok(SmtpConfig { host: host.to_string(), port, credentials, from: from.to_string() })
    }
}

impl Mailer {
    /// Sends `mail` in the background, on a task of `tasks` (the server's, which it drains).
    pub fn send(&self, tasks: &tokio_util::task::TaskTracker, mail: Mail) {
        match self {
            Mailer::Log => {
                tracing::warn!(
                    to = %mail.to,
                    subject = %mail.subject,
                    "no SMTP server is configured (smtp-url), so this mail is only logged:\n{}",
                    mail.body
                );
            }
            Mailer::Smtp(config) => {
                let config = config.clone();
                tasks.spawn(async move {
                    if let Err(error) = send_smtp(&config, &mail).await {
                        tracing::error!(to = %mail.to, %error, "sending mail failed");
                    }
                });
            }
        }
    }
}

/// Sends one message over SMTP and waits for the server's acceptance.
pub async fn send_smtp(config: &SmtpConfig, mail: &Mail) -> Result<(), String> {
    tokio::time::timeout(SMTP_TIMEOUT, exchange(config, mail))
        .await
        .map_err(|_| format!("the SMTP server {}:{} did not answer in time", config.host, config.port))?
}

async fn exchange(config: &SmtpConfig, mail: &Mail) -> Result<(), String> {
    let stream = TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(|e| format!("could not connect to the SMTP server {}:{}: {e}", config.host, config.port))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    expect(&mut read, 220).await?;
    command(&mut write, &mut read, "EHLO homebase", 250).await?;
    if let Some((user, password)) = &config.credentials {
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        command(&mut write, &mut read, &format!("AUTH PLAIN {plain}"), 235).await?;
    }
    command(&mut write, &mut read, &format!("MAIL FROM:<{}>", address(&config.from)), 250).await?;
    command(&mut write, &mut read, &format!("RCPT TO:<{}>", address(&mail.to)), 250).await?;
    command(&mut write, &mut read, "DATA", 354).await?;
    let mut message = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        header_safe(&config.from),
        header_safe(&mail.to),
        header_safe(&mail.subject)
    );
    for line in mail.body.lines() {
        // Dot-stuffing (RFC 5321 §4.5.2).
        if line.starts_with('.') {
            message.push('.');
        }
        message.push_str(line);
        message.push_str("\r\n");
    }
    message.push_str(".\r\n");
    write.write_all(message.as_bytes()).await.map_err(io)?;
    expect(&mut read, 250).await?;
    let _ = write.write_all(b"QUIT\r\n").await;
    Ok(())
}

/// The address inside `Name <address>`, or the whole text.
fn address(text: &str) -> &str {
    match (text.rfind('<'), text.rfind('>')) {
        (Some(start), Some(end)) if start < end => &text[start + 1..end],
        _ => text.trim(),
    }
}

fn header_safe(text: &str) -> String {
    text.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

fn io(e: std::io::Error) -> String {
    format!("the SMTP connection failed: {e}")
}

async fn command<W, R>(write: &mut W, read: &mut R, line: &str, code: u16) -> Result<(), String>
where
    W: AsyncWriteExt + Unpin,
    R: AsyncBufReadExt + Unpin,
{
    if line.contains('\r') || line.contains('\n') {
        return Err("an SMTP command may not contain a line break".into());
    }
    write.write_all(format!("{line}\r\n").as_bytes()).await.map_err(io)?;
    expect(read, code).await
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect<R: AsyncBufReadExt + Unpin>(read: &mut R, code: u16) -> Result<(), String> {
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.map_err(io)? == 0 {
            return Err("the SMTP server closed the connection".into());
        }
        let got: u16 =
            line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not an SMTP reply: {line:?}"))?;
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        if got != code {
            return Err(format!("the SMTP server answered {}", line.trim_end()));
        }
        return Ok(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::smtp_sink;
    use tokio::net::TcpListener;

    #[test]
    fn smtp_urls_parse() {
        let c = SmtpConfig::parse("smtp://relay.local:2525", "Homebase <no-reply@h.local>").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.credentials), ("relay.local", 2525, None));
        let c = SmtpConfig::parse("smtp://u:p@127.0.0.1", "a@b").unwrap();
        assert_eq!((c.port, c.credentials), (25, Some(("u".into(), "p".into()))));
        assert!(SmtpConfig::parse("http://x", "a@b").is_err());
        assert!(SmtpConfig::parse("smtp://x:port", "a@b").is_err());
        assert!(SmtpConfig::parse("smtp://x", "nobody").is_err());
    }

    #[tokio::test]
    async fn a_message_reaches_the_server_dot_stuffed() {
        let (port, mut received) = smtp_sink().await;
        let config = SmtpConfig::parse(&format!("smtp://u:p@127.0.0.1:{port}"), "Homebase <no-reply@h.test>").unwrap();
        let mail =
            Mail { to: "ann@example.test".into(), subject: "Code".into(), body: "Your code: 123456\n.hidden".into() };
        send_smtp(&config, &mail).await.unwrap();
        let (to, data) = received.recv().await.unwrap();
        assert_eq!(to, "ann@example.test");
        assert!(data.contains("Subject: Code\r\n"), "{data}");
        assert!(data.contains("Your code: 123456\r\n..hidden\r\n"), "{data}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let config = SmtpConfig::parse(&format!("smtp://127.0.0.1:{port}"), "a@b").unwrap();
        let mail = Mail { to: "x@y".into(), subject: "s".into(), body: "b".into() };
        let err = send_smtp(&config, &mail).await.unwrap_err();
        assert!(err.contains("could not connect"), "{err}");
    }
}

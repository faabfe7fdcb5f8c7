//! The dedicated `LISTEN` connection: opened by [`Listener::start`] (the store's when the store
//! opens, the log store's for its first watcher), kept open, and reopened with backoff (100 ms
//! doubling to 5 s) when it is lost. A connection that was lost may have missed notifications,
//! so after each reconnect `on_reconnect` runs (subscribers are told to resync). An idle
//! connection is checked every [`PING_EVERY`] so that a silently dead one is noticed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::{Target, pg};
use crate::error::Result;

const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

type OnNotify = Arc<dyn Fn(&str, &str) + Send + Sync>;
type OnReconnect = Arc<dyn Fn() + Send + Sync>;

/// A `NOTIFY` channel name for `prefix` and the schema: at most 63 bytes (PostgreSQL's limit),
/// so a long schema name is replaced by a hash of it.
pub(crate) fn channel_name(prefix: &str, schema: &str) -> String {
    let name = format!("{prefix}_{schema}");
    if name.len() <= 63 { name } else { format!("{prefix}_{}", &crate::ids::sha256_hex(schema.as_bytes())[..32]) }
}

/// `"name"`, quoted as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) struct Listener {
    target: Target,
    channels: Vec<String>,
    on_notify: OnNotify,
    on_reconnect: Mutex<Option<OnReconnect>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

/// An open `LISTEN` connection: the client, and the notifications its driver task forwards
/// (the channel closes when the connection is lost).
struct Connection {
    client: Client,
    notifications: mpsc::UnboundedReceiver<(String, String)>,
}

impl Listener {
    pub(crate) fn new(
        target: Target,
        channels: Vec<String>,
        on_notify: impl Fn(&str, &str) + Send + Sync + 'static,
    ) -> Listener {
        Listener {
            target,
            channels,
            on_notify: Arc::new(on_notify),
            on_reconnect: Mutex::new(None),
            task: Mutex::new(None),
        }
    }

    /// Starts listening unless it already does, and returns once the first `LISTEN` went
    /// through (so every notification committed after this returns is delivered). Fails with
    /// `Unavailable` when the database cannot be reached now.
    pub(crate) async fn start(&self, on_reconnect: impl Fn() + Send + Sync + 'static) -> Result<()> {
        let mut task = self.task.lock().await;
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let on_reconnect: OnReconnect = Arc::new(on_reconnect);
        *self.on_reconnect.lock().await = Some(on_reconnect.clone());
        let connection = connect(&self.target, &self.channels).await?;
        let (target, channels, on_notify) = (self.target.clone(), self.channels.clone(), self.on_notify.clone());
        *task = Some(tokio::spawn(run(target, channels, connection, on_notify, on_reconnect)));
        Ok(())
    }
}

async fn connect(target: &Target, channels: &[String]) -> Result<Connection> {
    let (client, mut connection) = target.config.connect(NoTls).await.map_err(pg)?;
    let (sender, notifications) = mpsc::unbounded_channel();
    // Drives the connection: forwards notifications, ends when the connection does.
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if sender.send((n.channel().to_string(), n.payload().to_string())).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    for channel in channels {
        client.batch_execute(&format!("LISTEN {}", quote_ident(channel))).await.map_err(pg)?;
    }
    Ok(Connection { client, notifications })
}

async fn run(
    target: Target,
    channels: Vec<String>,
    mut connection: Connection,
    on_notify: OnNotify,
    on_reconnect: OnReconnect,
) {
    loop {
        serve(&mut connection, &on_notify).await;
        let mut delay = FIRST_RETRY;
        connection = loop {
            tokio::time::sleep(delay).await;
            match connect(&target, &channels).await {
                Ok(connection) => break connection,
                Err(error) => {
                    tracing::warn!(location = %target.location, %error, "the LISTEN connection is still down");
                    delay = (delay * 2).min(LAST_RETRY);
                }
            }
        };
        tracing::info!(location = %target.location, "the LISTEN connection is back");
        on_reconnect();
    }
}

/// Hands notifications to `on_notify` until the connection is lost.
async fn serve(connection: &mut Connection, on_notify: &OnNotify) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            message = connection.notifications.recv() => match message {
                Some((channel, payload)) => on_notify(&channel, &payload),
                None => return,
            },
            _ = ping.tick() => {
                let alive = tokio::time::timeout(PING_TIMEOUT, connection.client.simple_query("")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

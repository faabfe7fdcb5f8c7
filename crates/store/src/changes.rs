//! Change notifications: what other parts of a node (and other nodes) need to hear about.
//!
//! Every committed write that changes what an app runs or who may use it is announced as a
//! [`Change`]: `(app id, kind)` and, for function changes, the function. [`Store::subscribe_changes`]
//! hands out a [`Changes`] stream of them.
//!
//! * **SQLite**: the store announces a change in-process after its transaction committed, to
//!   the subscribers of this handle and its clones (SQLite serves one node).
//! * **PostgreSQL**: the transaction itself sends `pg_notify` (so a change is announced if and
//!   only if it committed, on every node); each store keeps one dedicated `LISTEN` connection
//!   (opened by the first subscriber, reconnecting with backoff) that feeds its subscribers.
//!
//! A subscriber that may have missed changes (its connection was lost, or it fell more than
//! [`CHANGE_BUFFER`] changes behind) receives [`ChangeKind::Resync`]: reload everything.
//!
//! [`Store::subscribe_changes`]: crate::Store::subscribe_changes

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Changes a slow subscriber may fall behind before it gets a [`ChangeKind::Resync`] instead.
pub const CHANGE_BUFFER: usize = 1024;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new deployment became the function's active one.
    Deploy,
    /// An earlier deployment became the function's active one.
    Rollback,
    /// The function was deleted.
    DeleteFunction,
    /// The app's secrets were set or deleted.
    Secrets,
    /// An app user was created or changed (password, role, state), or the app's auth settings.
    Users,
    /// An API key was created or revoked (`app_id` empty for an admin key).
    Keys,
    /// The app was created.
    App,
    /// Changes may have been missed: reload everything (`app_id` is empty).
    Resync,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Change {
    /// The app; empty for [`ChangeKind::Resync`] and for admin keys.
    #[serde(rename = "a")]
    pub app_id: String,
    #[serde(rename = "k")]
    pub kind: ChangeKind,
    /// The function, for deploys, rollbacks and deletes.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// The longest payload PostgreSQL's `NOTIFY` takes is 8000 bytes; a change whose function
/// name does not fit leaves the function out (subscribers then reload the whole app).
const MAX_PAYLOAD: usize = 7900;

impl Change {
    pub(crate) fn app(app_id: &str, kind: ChangeKind) -> Change {
        Change { app_id: app_id.to_string(), kind, function: None }
    }

    pub(crate) fn function(app_id: &str, kind: ChangeKind, function: &str) -> Change {
        Change { app_id: app_id.to_string(), kind, function: Some(function.to_string()) }
    }

    /// "Anything may have changed".
    pub fn resync() -> Change {
        Change { app_id: String::new(), kind: ChangeKind::Resync, function: None }
    }

    /// The text sent with `NOTIFY`.
    pub(crate) fn payload(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        if text.len() <= MAX_PAYLOAD {
            return text;
        }
        let whole_app = Change { function: None, ..self.clone() };
        serde_json::to_string(&whole_app).unwrap_or_default()
    }

    /// Reads a `NOTIFY` payload; an unreadable one means "resync".
    pub(crate) fn parse(payload: &str) -> Change {
        serde_json::from_str(payload).unwrap_or_else(|_| Change::resync())
    }
}

/// Where a store's changes are fanned out to its subscribers.
#[derive(Clone)]
pub(crate) struct ChangeHub {
    sender: broadcast::Sender<Change>,
}

impl ChangeHub {
    pub(crate) fn new() -> ChangeHub {
        ChangeHub { sender: broadcast::channel(CHANGE_BUFFER).0 }
    }

    pub(crate) fn send(&self, change: Change) {
        // No subscriber is not an error.
        let _ = self.sender.send(change);
    }

    pub(crate) fn subscribe(&self) -> Changes {
        Changes { receiver: self.sender.subscribe() }
    }
}

/// A stream of committed changes (see the module docs).
pub struct Changes {
    receiver: broadcast::Receiver<Change>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").finish_non_exhaustive()
    }
}

impl Changes {
    /// The next change; a [`ChangeKind::Resync`] when this subscriber fell behind. `None` once
    /// the store is gone.
    pub async fn recv(&mut self) -> Option<Change> {
        match self.receiver.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::resync()),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next change if one is waiting.
    pub fn try_recv(&mut self) -> Option<Change> {
        match self.receiver.try_recv() {
            Ok(change) => Some(change),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Change::resync()),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_stay_under_the_notify_limit() {
        let change = Change::function("app", ChangeKind::Deploy, "email/send");
        assert_eq!(change.payload(), r#"{"a":"app","k":"deploy","f":"email/send"}"#);
        assert_eq!(Change::parse(&change.payload()), change);
        let long = Change::function("app", ChangeKind::Rollback, &"x".repeat(10_000));
        assert!(long.payload().len() < 8000);
        assert_eq!(Change::parse(&long.payload()), Change::app("app", ChangeKind::Rollback));
        assert_eq!(Change::parse("garbage"), Change::resync());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_resync() {
        let hub = ChangeHub::new();
        let mut changes = hub.subscribe();
        for _ in 0..CHANGE_BUFFER + 5 {
            hub.send(Change::app("a", ChangeKind::Secrets));
        }
        assert_eq!(changes.recv().await, Some(Change::resync()));
        assert_eq!(changes.recv().await, Some(Change::app("a", ChangeKind::Secrets)));
    }
}

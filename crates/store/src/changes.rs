//! Change notifications: what other parts of a node (and other nodes) need to hear about.
//!
//! Every committed write that changes what an app runs or who may use it is announced as a
//! [`Change`]: `(app id, kind)` and, for function changes, the function; for user changes, the
//! user. [`Store::subscribe_changes`] hands out a [`Changes`] stream of them.
//!
//! * **SQLite**: the store announces a change in-process after its transaction committed, to
//!   the subscribers of this handle and its clones (SQLite serves one node).
//! * **PostgreSQL**: the transaction itself sends `pg_notify` (so a change is announced if and
//!   only if it committed, on every node); each store keeps one dedicated `LISTEN` connection
//!   (opened with the store, reconnecting with backoff) that feeds its subscribers. The
//!   payload also names the store that wrote it (a random id per handle), so that the
//!   [`Store::on_user_change`] listeners, which hear their own node's writes as they commit,
//!   hear another node's [`ChangeKind::SignIn`] from here, and their own only once.
//!
//! A subscriber that may have missed changes (its connection was lost, or it fell more than
//! [`CHANGE_BUFFER`] changes behind) receives [`ChangeKind::Resync`]: reload everything. The
//! `on_user_change` listeners get `UserChange::Everything` when the `LISTEN` connection was
//! lost.
//!
//! [`Store::subscribe_changes`]: crate::Store::subscribe_changes
//! [`Store::on_user_change`]: crate::Store::on_user_change

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
    /// An app user was created or its profile changed (name, role, verification, custom
    /// fields: `user` names it), or the app's auth settings changed (`user` is `None`).
    Users,
    /// A user's sign-in state changed: its password was set, it was disabled or enabled, or it
    /// was deleted (`user` names it). Tokens it was given before may be void now.
    SignIn,
    /// The app's `function-net-allow` list was set.
    NetAllow,
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
    /// The user, for [`ChangeKind::SignIn`] and the changes of one user of [`ChangeKind::Users`].
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What travels with `NOTIFY`: the change and the store that wrote it.
#[derive(Serialize, Deserialize)]
struct Notice<C> {
    #[serde(flatten)]
    change: C,
    #[serde(rename = "o", default)]
    origin: String,
}

/// The longest payload PostgreSQL's `NOTIFY` takes is 8000 bytes; a change whose function
/// name does not fit leaves the function out (subscribers then reload the whole app).
const MAX_PAYLOAD: usize = 7900;

impl Change {
    pub(crate) fn app(app_id: &str, kind: ChangeKind) -> Change {
        Change { app_id: app_id.to_string(), kind, function: None, user: None }
    }

    pub(crate) fn function(app_id: &str, kind: ChangeKind, function: &str) -> Change {
        Change { function: Some(function.to_string()), ..Change::app(app_id, kind) }
    }

    pub(crate) fn user(app_id: &str, kind: ChangeKind, user_id: &str) -> Change {
        Change { user: Some(user_id.to_string()), ..Change::app(app_id, kind) }
    }

    /// "Anything may have changed".
    pub fn resync() -> Change {
        Change::app("", ChangeKind::Resync)
    }

    /// The text sent with `NOTIFY` by the store `origin`.
    pub(crate) fn payload(&self, origin: &str) -> String {
        let text = serde_json::to_string(&Notice { change: self, origin: origin.to_string() }).unwrap_or_default();
        if text.len() <= MAX_PAYLOAD {
            return text;
        }
        let whole_app = Change { function: None, ..self.clone() };
        serde_json::to_string(&Notice { change: &whole_app, origin: origin.to_string() }).unwrap_or_default()
    }

    /// Reads a `NOTIFY` payload: the change and the store that wrote it. An unreadable one (from
    /// a newer Homebase, say) means "resync".
    pub(crate) fn parse(payload: &str) -> (Change, String) {
        match serde_json::from_str::<Notice<Change>>(payload) {
            Ok(notice) => (notice.change, notice.origin),
            Err(_) => (Change::resync(), String::new()),
        }
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
        assert_eq!(change.payload("n1"), r#"{"a":"app","k":"deploy","f":"email/send","o":"n1"}"#);
        assert_eq!(Change::parse(&change.payload("n1")), (change, "n1".to_string()));
        let user = Change::user("app", ChangeKind::SignIn, "u1");
        assert_eq!(user.payload("n2"), r#"{"a":"app","k":"sign_in","u":"u1","o":"n2"}"#);
        assert_eq!(Change::parse(&user.payload("n2")), (user, "n2".to_string()));
        let long = Change::function("app", ChangeKind::Rollback, &"x".repeat(10_000));
        assert!(long.payload("n1").len() < 8000);
        assert_eq!(Change::parse(&long.payload("n1")).0, Change::app("app", ChangeKind::Rollback));
        assert_eq!(Change::parse("garbage").0, Change::resync());
        assert_eq!(Change::parse(r#"{"a":"app","k":"something_new","o":"n1"}"#).0, Change::resync(), "a newer kind");
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

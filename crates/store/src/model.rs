//! The records the store hands out and takes in.
//!
//! Times are milliseconds since the Unix epoch (UTC) as `i64`, the same in every backend.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An app: the unit that owns functions and app-scoped keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// 24 lowercase hex characters, random.
    pub id: String,
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// What an API key may touch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Every app, and the management of apps and keys.
    Admin,
    /// One app, by id.
    App(String),
}

impl KeyScope {
    /// The app id of an app-scoped key; `None` for an admin key.
    pub fn app_id(&self) -> Option<&str> {
        match self {
            KeyScope::Admin => None,
            KeyScope::App(id) => Some(id),
        }
    }
}

/// A stored API key. The secret itself is never stored, only its SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// `key_` + 16 hex characters; what `revoke_key` takes.
    pub id: String,
    pub scope: KeyScope,
    pub name: String,
    /// The first characters of the secret (`b44k_` and a few more), to tell keys apart in lists.
    pub prefix: String,
    pub created_at: i64,
    /// Updated on successful verification, at most once a minute.
    pub last_used_at: Option<i64>,
}

/// One file of a deployment. `path` is relative to the entry's folder with `/` separators and
/// may climb out of it (`../../shared/util.ts`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeployFile {
    pub path: String,
    pub content: String,
}

/// The content of a deployment: what `PUT …/backend-functions/{name}` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The entry file; one of `files[].path`.
    pub entry: String,
    pub files: Vec<DeployFile>,
    /// A JSON array of automations, stored as given (validated by the caller).
    pub automations: Value,
}

/// Whether a deploy changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    /// A new deployment became active.
    Deployed,
    /// The function's active deployment already had this content; nothing was written.
    Unchanged,
}

/// The result of [`Store::deploy`](crate::Store::deploy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployOutcome {
    pub deployment_id: String,
    pub status: DeployStatus,
}

/// A function and the content of its active deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFunction {
    pub name: String,
    pub deployment_id: String,
    pub entry: String,
    /// Sorted by path.
    pub files: Vec<DeployFile>,
    pub automations: Value,
    /// When the active deployment was activated (deployed or rolled back to).
    pub activated_at: i64,
}

/// A function's active deployment without its files' contents: what a node needs to run it
/// once the files are on its disk ([`Store::materialize_function`](crate::Store::materialize_function)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionHead {
    pub name: String,
    pub deployment_id: String,
    pub entry: String,
    /// The files' paths, sorted.
    pub paths: Vec<String>,
    pub activated_at: i64,
}

/// One activation of a function: a deploy or a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Increases by one with every activation of the function.
    pub sequence: i64,
    pub deployment_id: String,
    pub activated_at: i64,
    /// True for the newest entry: the activation that is in effect.
    pub active: bool,
}

/// Row counts, for operations and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    pub apps: u64,
    pub api_keys: u64,
    /// Functions with an active deployment.
    pub functions: u64,
    pub deployments: u64,
    /// Distinct file contents.
    pub blobs: u64,
    pub history_entries: u64,
}

/// What [`Store::gc`](crate::Store::gc) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub deployments: u64,
    pub blobs: u64,
}

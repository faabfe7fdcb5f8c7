//! The catalog of `homebase serve`: apps and their deployed functions, from the store.
//!
//! The catalog the function routes read is an in-memory snapshot per app, rebuilt from the store
//! after every change (deploy, delete, rollback) and at start. Each active deployment is
//! materialised on this node's disk by its content address (read from the store only when the
//! folder is missing), and its id is the worker's version: a new deployment retires the old
//! worker once its in-flight requests are done, so activation needs no downtime.
//!
//! **Changes made through other nodes.** [`Platform::follow_changes`] (a task the server runs
//! and drains) listens to the store's change stream: a deploy, rollback, delete, secrets or
//! `function-net-allow` change, or a new app, made through any node sharing the database
//! reloads that app here (PostgreSQL delivers the notification to every node as the change
//! commits); a [`ChangeKind::Resync`] (the notification connection was lost) reloads every
//! app. Every [`RECHECK_EVERY`] it also compares each app's digest ([`Store::app_digests`],
//! one query) with the one it last loaded and reloads the apps that differ, so a notification
//! that never arrived is healed within that time. The function routes keep serving the last
//! snapshot while the database is unreachable.
//!
//! An app's secrets are each worker's environment. The version is the deployment id plus a short
//! hash of the secrets, so a change of secrets also retires the old workers after their
//! in-flight requests, and the next request starts a worker that sees the new values. The same
//! goes for the app's `function-net-allow` list, which is part of the version too.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use homebase_logs::LogHub;
use homebase_runtime::{FunctionSpec, NetAllow, Runtime};
use homebase_store::{Change, ChangeKind, Changes, FunctionHead, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::{AppFunctions, Catalog};

/// How often [`Platform::follow_changes`] compares the apps' digests with what it loaded.
pub const RECHECK_EVERY: Duration = Duration::from_secs(10);

pub struct Platform {
    pub store: Store,
    pub runtime: Runtime,
    /// Where active deployments are materialised (`<data dir>/deployments`).
    deployments_dir: PathBuf,
    /// Where deploys are checked before they are stored (`<data dir>/scratch`).
    scratch_dir: PathBuf,
    apps: RwLock<HashMap<String, Arc<AppFunctions>>>,
    /// Each app's digest ([`Store::app_digests`]) as last read before a reload by
    /// [`recheck`](Platform::recheck).
    digests: std::sync::Mutex<BTreeMap<String, String>>,
    /// Held across a whole refresh: two overlapping refreshes could otherwise finish in the wrong
    /// order and leave the older snapshot (and retire the newer worker).
    refresh_lock: tokio::sync::Mutex<()>,
    /// Random per process: keys the hash of the secrets in worker versions, so that a version
    /// seen in a log says nothing about the values.
    secrets_salt: [u8; 32],
    /// The log hub, which masks each app's secret values in its lines.
    logs: Option<Arc<LogHub>>,
    /// `(app, secret name)` already logged as withheld from workers.
    withheld: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Platform {
    /// Loads every app and materialises its active deployments under `data_dir`.
    pub async fn open(store: Store, runtime: Runtime, data_dir: &Path) -> Result<Arc<Platform>, StoreError> {
        Platform::open_with_logs(store, runtime, data_dir, None).await
    }

    /// [`open`](Platform::open), with each app's secret values masked in the log lines of
    /// `logs`.
    pub async fn open_with_logs(
        store: Store,
        runtime: Runtime,
        data_dir: &Path,
        logs: Option<Arc<LogHub>>,
    ) -> Result<Arc<Platform>, StoreError> {
        let scratch_dir = data_dir.join("scratch");
        // Checks interrupted by a crash leave folders here; none is needed after a restart.
        let _ = std::fs::remove_dir_all(&scratch_dir);
        std::fs::create_dir_all(&scratch_dir)
            .map_err(|e| StoreError::Io(format!("Could not create {}: {e}", scratch_dir.display())))?;
        let platform = Arc::new(Platform {
            store,
            runtime,
            deployments_dir: data_dir.join("deployments"),
            scratch_dir,
            apps: RwLock::new(HashMap::new()),
            digests: Default::default(),
            refresh_lock: tokio::sync::Mutex::new(()),
            secrets_salt: rand::random(),
            logs,
            withheld: Default::default(),
        });
        // Read before loading: a change that lands in between makes the next recheck reload.
        let digests = platform.store.app_digests().await?;
        for app in platform.store.list_apps().await? {
            platform.refresh(&app.id).await?;
        }
        *platform.digests.lock().unwrap() = digests;
        Ok(platform)
    }

    /// Keeps this node's snapshots in step with the store until `shutdown` (see the module
    /// docs): reloads the app of every change from `changes` (what [`Store::subscribe_changes`]
    /// gave; subscribe before the first load to miss nothing), every app on a resync, and
    /// every `recheck_every` the apps whose digests changed. A reload that fails is logged and
    /// healed by the next recheck.
    pub async fn follow_changes(
        self: Arc<Self>,
        mut changes: Changes,
        recheck_every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + recheck_every, recheck_every);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let work = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    // A burst (a project deployed function by function) reloads each app once.
                    let mut batch = vec![change];
                    while let Some(more) = changes.try_recv() {
                        batch.push(more);
                    }
                    Work::Apply(batch)
                }
                _ = recheck.tick() => Work::Recheck,
            };
            // A database that hangs must not hold up stopping.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = self.work(work, recheck_every) => {}
            }
        }
    }

    async fn work(&self, work: Work, recheck_every: Duration) {
        match work {
            Work::Apply(changes) => self.apply(changes).await,
            Work::Recheck => {
                if let Err(error) = self.recheck().await {
                    tracing::warn!(%error, "could not check the apps for changes; trying again in {}s", recheck_every.as_secs_f64());
                }
            }
        }
    }

    /// Reloads the apps `changes` touched (every app for a resync).
    async fn apply(&self, changes: Vec<Change>) {
        let mut apps = BTreeSet::new();
        for change in changes {
            match change.kind {
                ChangeKind::Resync => {
                    tracing::info!("change notifications may have been missed; reloading every app");
                    if let Err(error) = self.reload_all().await {
                        tracing::warn!(%error, "could not reload the apps; the next recheck tries again");
                    }
                    return;
                }
                ChangeKind::Deploy
                | ChangeKind::Rollback
                | ChangeKind::DeleteFunction
                | ChangeKind::Secrets
                | ChangeKind::NetAllow
                | ChangeKind::App => {
                    apps.insert(change.app_id);
                }
                // Users' sign-in states have listeners of their own; keys are read per request.
                ChangeKind::Users | ChangeKind::SignIn | ChangeKind::Keys => {}
            }
        }
        for app_id in apps {
            if let Err(error) = self.refresh(&app_id).await {
                tracing::warn!(app = %app_id, %error, "could not reload the app after a change; the next recheck tries again");
            }
        }
    }

    /// Reloads every app.
    async fn reload_all(&self) -> Result<(), StoreError> {
        let digests = self.store.app_digests().await?;
        for app in self.store.list_apps().await? {
            self.refresh(&app.id).await?;
        }
        *self.digests.lock().unwrap() = digests;
        Ok(())
    }

    /// Reloads the apps whose digests differ from those last loaded; returns how many.
    pub async fn recheck(&self) -> Result<usize, StoreError> {
        let digests = self.store.app_digests().await?;
        let stale: Vec<(String, String)> = {
            let seen = self.digests.lock().unwrap();
            digests.into_iter().filter(|(app, digest)| seen.get(app) != Some(digest)).collect()
        };
        for (app_id, digest) in &stale {
            self.refresh(app_id).await?;
            self.digests.lock().unwrap().insert(app_id.clone(), digest.clone());
        }
        if !stale.is_empty() {
            tracing::debug!(apps = stale.len(), "reloaded apps whose stored state changed");
        }
        Ok(stale.len())
    }

    /// Rebuilds the snapshot of `app_id` from the store and retires workers of code that is no
    /// longer active.
    pub async fn refresh(&self, app_id: &str) -> Result<(), StoreError> {
        let _serial = self.refresh_lock.lock().await;
        let functions = self.store.function_heads(app_id).await?;
        let secrets = if functions.is_empty() { BTreeMap::new() } else { self.store.secrets(app_id).await? };
        let secrets_tag = secrets_fingerprint(&self.secrets_salt, app_id, &secrets);
        if let Some(logs) = &self.logs {
            logs.set_secrets(app_id, secrets.values());
        }
        let env = self.worker_secrets(app_id, secrets);
        let net_allow = if functions.is_empty() { NetAllow::none() } else { self.net_allow(app_id).await? };
        // A change of the list is a new version too: old workers finish, new ones get the list.
        let tag = match net_allow.is_empty() {
            true => secrets_tag,
            false => format!("{secrets_tag}n{}", net_fingerprint(&net_allow)),
        };
        let mut next = AppFunctions { app_id: app_id.to_string(), ..Default::default() };
        for function in &functions {
            let spec = self.spec_for(app_id, function, &env, &tag, &net_allow).await?;
            next.functions.insert(function.name.clone(), Arc::new(spec));
        }
        let versions = next.functions.iter().map(|(name, spec)| (name.clone(), spec.version.clone())).collect();
        self.apps.write().unwrap().insert(app_id.to_string(), Arc::new(next));
        self.runtime.retire_outdated(app_id, &versions);
        Ok(())
    }

    /// The secrets a worker of `app_id` gets: those whose names may reach a process's
    /// environment. Any other (stored before such names were refused) is kept in the store but
    /// never passed, and logged once per app and name.
    fn worker_secrets(&self, app_id: &str, secrets: BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut env = Vec::with_capacity(secrets.len());
        for (name, value) in secrets {
            match homebase_runtime::secret_name_problem(&name) {
                None => env.push((name, value)),
                Some(problem) => {
                    if self.withheld.lock().unwrap().insert((app_id.to_string(), name.clone())) {
                        tracing::warn!(app = app_id, "{problem}; the stored secret is not passed to functions");
                    }
                }
            }
        }
        env
    }

    pub fn scratch_dir(&self) -> &Path {
        &self.scratch_dir
    }

    /// The app's `function-net-allow` list. One that no longer parses (written by a newer
    /// Homebase, say) allows nothing, and says so in the log.
    async fn net_allow(&self, app_id: &str) -> Result<NetAllow, StoreError> {
        let entries = self.store.function_net_allow(app_id).await?;
        Ok(NetAllow::parse(&entries).unwrap_or_else(|problem| {
            tracing::error!(app_id, %problem, "the app's function-net-allow list is not valid; it allows nothing");
            NetAllow::none()
        }))
    }

    async fn spec_for(
        &self,
        app_id: &str,
        function: &FunctionHead,
        env: &[(String, String)],
        secrets_tag: &str,
        net_allow: &NetAllow,
    ) -> Result<FunctionSpec, StoreError> {
        let entry = self.store.materialize_function(function, &self.deployments_dir).await?;
        Ok(FunctionSpec {
            app_id: app_id.to_string(),
            name: function.name.clone(),
            read_paths: vec![deployment_root(&entry, &self.deployments_dir, &function.deployment_id)],
            entry,
            version: if secrets_tag.is_empty() {
                function.deployment_id.clone()
            } else {
                format!("{}+{secrets_tag}", function.deployment_id)
            },
            env: env.to_vec(),
            net_allow: net_allow.clone(),
        })
    }
}

/// What [`Platform::follow_changes`] does next.
enum Work {
    Apply(Vec<Change>),
    Recheck,
}

/// 8 hex digits of a hash of the list, for worker versions.
fn net_fingerprint(allow: &NetAllow) -> String {
    let mut hasher = Sha256::new();
    for entry in allow.entries() {
        hasher.update((entry.len() as u64).to_le_bytes());
        hasher.update(entry.as_bytes());
    }
    hasher.finalize()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// 16 hex digits of a hash of the app's secrets (names and values) salted with the process's
/// random salt and the app id, or `""` when it has none. It changes whenever a secret is set to
/// another value, added or deleted.
fn secrets_fingerprint(salt: &[u8], app_id: &str, secrets: &BTreeMap<String, String>) -> String {
    if secrets.is_empty() {
        return String::new();
    }
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(app_id.as_bytes());
    for (name, value) in secrets {
        for part in [name.as_bytes(), value.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hasher.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `<deployments dir>/<deployment id>`: the folder a worker of that deployment may read.
fn deployment_root(entry: &Path, dir: &Path, id: &str) -> PathBuf {
    entry.ancestors().find(|a| a.file_name().is_some_and(|n| n == id)).map_or_else(|| dir.join(id), Path::to_path_buf)
}

impl Catalog for Platform {
    fn app(&self, app_id: &str) -> Option<Arc<AppFunctions>> {
        self.apps.read().unwrap().get(app_id).cloned()
    }

    /// The only app, when there is exactly one (so `/functions/…` works on a one-app server).
    fn default_app(&self) -> Option<Arc<AppFunctions>> {
        let apps = self.apps.read().unwrap();
        if apps.len() == 1 { apps.values().next().cloned() } else { None }
    }

    fn mask_text<'a>(&self, app_id: &str, text: &'a str) -> Cow<'a, str> {
        match &self.logs {
            Some(logs) => logs.mask_text(app_id, text),
            None => Cow::Borrowed(text),
        }
    }
}

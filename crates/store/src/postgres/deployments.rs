//! Functions and their content-addressed deployments on PostgreSQL.
//!
//! Locks, so that nodes sharing the database cannot interleave badly:
//! * a deploy, rollback or delete of a function holds the function's advisory lock until it
//!   commits (one at a time per function: the history's sequence numbers and the rollback
//!   target are read and written under it);
//! * a deploy that adds a function also holds the app's function-count lock while it counts
//!   and inserts (so two nodes cannot both pass the limit);
//! * a deploy that reuses a stored deployment or blob locks its row `FOR SHARE`, and garbage
//!   collection locks a row `FOR UPDATE` before it checks that nothing refers to it, so a
//!   deployment or blob is never deleted from under a deploy that is about to refer to it.

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::IsolationLevel;

use super::apps::ensure_app;
use super::{Postgres, execute, lock, pg, query, query_one, query_opt};
use crate::changes::{Change, ChangeKind};
use crate::content::{self, PreparedDeployment, RollbackTarget};
use crate::error::{Result, StoreError};
use crate::model::{
    ActiveFunction, DeployFile, DeployOutcome, DeployStatus, Deployment, GcReport, HistoryEntry, StoreStats,
};

fn parse_automations(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Database(format!("A stored automations list is not JSON: {e}")))
}

impl Postgres {
    pub(crate) async fn deploy(
        &self,
        app_id: String,
        name: String,
        deployment: PreparedDeployment,
        now: i64,
        max_functions: Option<u64>,
    ) -> Result<DeployOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        ensure_app(&tx, &app_id).await?;
        lock(&tx, &self.schema, &[&app_id, "function", &name]).await?;
        let id = deployment.id.clone();
        let active = active_deployment(&tx, &app_id, &name).await?;
        if active.as_deref() == Some(id.as_str()) {
            self.finish(tx, "deploy", false, None).await?;
            return Ok(DeployOutcome { deployment_id: id, status: DeployStatus::Unchanged });
        }
        if active.is_none() && max_functions.is_some() {
            lock(&tx, &self.schema, &[&app_id, "function count"]).await?;
            let count: i64 =
                query_one(&tx, "SELECT COUNT(*) FROM functions WHERE app_id = $1", &[&app_id]).await?.get(0);
            content::check_function_limit(count as u64, max_functions)?;
        }
        store_deployment(&tx, &deployment, now).await?;
        activate(&tx, &app_id, &name, &id, now).await?;
        self.finish(tx, "deploy", true, Some(Change::function(&app_id, ChangeKind::Deploy, &name))).await?;
        Ok(DeployOutcome { deployment_id: id, status: DeployStatus::Deployed })
    }

    /// The app's functions (or the one named) with their active deployments; file contents are
    /// left empty unless `contents`.
    pub(crate) async fn functions(
        &self,
        app_id: String,
        name: Option<String>,
        contents: bool,
    ) -> Result<Vec<ActiveFunction>> {
        let mut client = self.client().await?;
        let tx = read_only(&mut client).await?;
        let filter = if name.is_some() { "AND f.name = $2" } else { "" };
        let args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match &name {
            Some(name) => vec![&app_id, name],
            None => vec![&app_id],
        };
        let rows = query(
            &tx,
            &format!(
                "SELECT f.name, f.deployment_id, d.entry, d.automations, f.activated_at
                 FROM functions f JOIN deployments d ON d.id = f.deployment_id
                 WHERE f.app_id = $1 {filter} ORDER BY f.name"
            ),
            &args,
        )
        .await?;
        let mut functions = rows
            .iter()
            .map(|r| {
                Ok(ActiveFunction {
                    name: r.get(0),
                    deployment_id: r.get(1),
                    entry: r.get(2),
                    files: Vec::new(),
                    automations: parse_automations(r.get(3))?,
                    activated_at: r.get(4),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = query(
            &tx,
            &format!(
                "SELECT df.deployment_id, df.path, {content}
                 FROM deployment_files df {join}
                 WHERE df.deployment_id IN (SELECT f.deployment_id FROM functions f WHERE f.app_id = $1 {filter})
                 ORDER BY df.deployment_id, df.path",
                content = if contents { "b.content" } else { "''" },
                join = if contents { "JOIN blobs b ON b.hash = df.blob_hash" } else { "" },
            ),
            &args,
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        let mut files: HashMap<String, Vec<DeployFile>> = HashMap::new();
        for r in rows {
            files.entry(r.get(0)).or_default().push(DeployFile { path: r.get(1), content: r.get(2) });
        }
        for function in &mut functions {
            function.files = files.get(&function.deployment_id).cloned().unwrap_or_default();
        }
        Ok(functions)
    }

    pub(crate) async fn function_count(&self, app_id: String) -> Result<u64> {
        let client = self.client().await?;
        let n: i64 = query_one(&client, "SELECT COUNT(*) FROM functions WHERE app_id = $1", &[&app_id]).await?.get(0);
        Ok(n as u64)
    }

    pub(crate) async fn delete_function(&self, app_id: String, name: String) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        lock(&tx, &self.schema, &[&app_id, "function", &name]).await?;
        let Some(active) = active_deployment(&tx, &app_id, &name).await? else {
            self.finish(tx, "delete_function", false, None).await?;
            return Ok(false);
        };
        let mut candidates: BTreeSet<String> =
            history(&tx, &app_id, &name).await?.into_iter().map(|(_, id)| id).collect();
        candidates.insert(active);
        execute(&tx, "DELETE FROM functions WHERE app_id = $1 AND name = $2", &[&app_id, &name]).await?;
        execute(&tx, "DELETE FROM function_history WHERE app_id = $1 AND name = $2", &[&app_id, &name]).await?;
        collect_garbage(&tx, candidates).await?;
        let change = Change::function(&app_id, ChangeKind::DeleteFunction, &name);
        self.finish(tx, "delete_function", true, Some(change)).await?;
        Ok(true)
    }

    pub(crate) async fn history(&self, app_id: String, name: String) -> Result<Vec<HistoryEntry>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT sequence, deployment_id, activated_at FROM function_history
             WHERE app_id = $1 AND name = $2 ORDER BY sequence DESC",
            &[&app_id, &name],
        )
        .await?;
        let mut entries: Vec<HistoryEntry> = rows
            .iter()
            .map(|r| HistoryEntry {
                sequence: r.get(0),
                deployment_id: r.get(1),
                activated_at: r.get(2),
                active: false,
            })
            .collect();
        if let Some(first) = entries.first_mut() {
            first.active = true;
        }
        Ok(entries)
    }

    /// The now active deployment, and whether the rollback changed it.
    pub(crate) async fn rollback(
        &self,
        app_id: String,
        name: String,
        to: Option<String>,
        now: i64,
    ) -> Result<(String, bool)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        lock(&tx, &self.schema, &[&app_id, "function", &name]).await?;
        let Some(active) = active_deployment(&tx, &app_id, &name).await? else {
            return Err(StoreError::not_found(format!("Function '{name}'")));
        };
        let ids: Vec<String> = history(&tx, &app_id, &name).await?.into_iter().map(|(_, id)| id).collect();
        match content::rollback_target(&name, &active, &ids, to.as_deref())? {
            RollbackTarget::AlreadyActive(id) => {
                self.finish(tx, "rollback", false, None).await?;
                Ok((id, false))
            }
            RollbackTarget::Activate(id) => {
                activate(&tx, &app_id, &name, &id, now).await?;
                let change = Change::function(&app_id, ChangeKind::Rollback, &name);
                self.finish(tx, "rollback", true, Some(change)).await?;
                Ok((id, true))
            }
        }
    }

    pub(crate) async fn deployment(&self, id: String) -> Result<Option<Deployment>> {
        let mut client = self.client().await?;
        let tx = read_only(&mut client).await?;
        let Some(row) = query_opt(&tx, "SELECT entry, automations FROM deployments WHERE id = $1", &[&id]).await?
        else {
            return Ok(None);
        };
        let files = query(
            &tx,
            "SELECT df.path, b.content FROM deployment_files df JOIN blobs b ON b.hash = df.blob_hash
             WHERE df.deployment_id = $1 ORDER BY df.path",
            &[&id],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        let files = files.iter().map(|r| DeployFile { path: r.get(0), content: r.get(1) }).collect();
        Ok(Some(Deployment { entry: row.get(0), files, automations: parse_automations(row.get(1))? }))
    }

    pub(crate) async fn gc(&self) -> Result<GcReport> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let unreferenced: Vec<String> = query(
            &tx,
            "SELECT id FROM deployments
             WHERE id NOT IN (SELECT deployment_id FROM functions)
               AND id NOT IN (SELECT deployment_id FROM function_history)",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let (deployments, mut blobs) = collect_garbage_counted(&tx, unreferenced.into_iter().collect()).await?;
        // Blobs no deployment refers to (left by an interrupted deploy of an older version).
        let orphans: Vec<String> =
            query(&tx, "SELECT hash FROM blobs WHERE hash NOT IN (SELECT blob_hash FROM deployment_files)", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
        blobs += delete_blobs(&tx, orphans.into_iter().collect()).await?;
        let report = GcReport { deployments, blobs };
        let wrote = deployments + blobs > 0;
        self.finish(tx, "gc", wrote, None).await?;
        Ok(report)
    }

    pub(crate) async fn stats(&self) -> Result<StoreStats> {
        let client = self.client().await?;
        let row = query_one(
            &client,
            "SELECT (SELECT COUNT(*) FROM apps), (SELECT COUNT(*) FROM api_keys), (SELECT COUNT(*) FROM functions),
                    (SELECT COUNT(*) FROM deployments), (SELECT COUNT(*) FROM blobs),
                    (SELECT COUNT(*) FROM function_history)",
            &[],
        )
        .await?;
        let n = |i: usize| row.get::<_, i64>(i) as u64;
        Ok(StoreStats {
            apps: n(0),
            api_keys: n(1),
            functions: n(2),
            deployments: n(3),
            blobs: n(4),
            history_entries: n(5),
        })
    }
}

/// A read-only transaction on one snapshot.
async fn read_only(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>> {
    client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await.map_err(pg)
}

/// Stores the deployment and its blobs unless they are stored, and locks what it reuses so
/// that no concurrent garbage collection deletes it before this transaction commits.
async fn store_deployment(tx: &Transaction<'_>, deployment: &PreparedDeployment, now: i64) -> Result<()> {
    let id = &deployment.id;
    // A concurrent collection may delete a stored deployment between the insert that found it
    // and the lock; then insert it again.
    for _ in 0..3 {
        let inserted = execute(
            tx,
            "INSERT INTO deployments (id, entry, automations, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
            &[id, &deployment.entry, &deployment.automations, &now],
        )
        .await?;
        if inserted == 0 {
            if query_opt(tx, "SELECT 1 FROM deployments WHERE id = $1 FOR SHARE", &[id]).await?.is_some() {
                return Ok(());
            }
            continue;
        }
        let mut hashes: Vec<&str> = deployment.files.iter().map(|f| f.hash.as_str()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        for _ in 0..3 {
            for f in &deployment.files {
                execute(
                    tx,
                    "INSERT INTO blobs (hash, content) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                    &[&f.hash, &f.content],
                )
                .await?;
            }
            let locked: i64 = query_one(
                tx,
                "SELECT COUNT(*) FROM (SELECT 1 FROM blobs WHERE hash = ANY($1) ORDER BY hash FOR SHARE) b",
                &[&hashes],
            )
            .await?
            .get(0);
            if locked as usize == hashes.len() {
                break;
            }
        }
        for f in &deployment.files {
            execute(
                tx,
                "INSERT INTO deployment_files (deployment_id, path, blob_hash) VALUES ($1, $2, $3)",
                &[id, &f.path, &f.hash],
            )
            .await?;
        }
        return Ok(());
    }
    Err(StoreError::Busy)
}

async fn active_deployment<C: GenericClient>(c: &C, app_id: &str, name: &str) -> Result<Option<String>> {
    Ok(query_opt(c, "SELECT deployment_id FROM functions WHERE app_id = $1 AND name = $2", &[&app_id, &name])
        .await?
        .map(|r| r.get(0)))
}

/// `(sequence, deployment id)` of a function's history, newest first.
async fn history<C: GenericClient>(c: &C, app_id: &str, name: &str) -> Result<Vec<(i64, String)>> {
    let rows = query(
        c,
        "SELECT sequence, deployment_id FROM function_history WHERE app_id = $1 AND name = $2 ORDER BY sequence DESC",
        &[&app_id, &name],
    )
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Points the function at `deployment_id`, records the activation, prunes the history and
/// collects the deployments that fell out of it. Under the function's lock.
async fn activate(tx: &Transaction<'_>, app_id: &str, name: &str, deployment_id: &str, now: i64) -> Result<()> {
    execute(
        tx,
        "INSERT INTO functions (app_id, name, deployment_id, activated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app_id, name) DO UPDATE SET deployment_id = excluded.deployment_id,
                                                  activated_at = excluded.activated_at",
        &[&app_id, &name, &deployment_id, &now],
    )
    .await?;
    execute(
        tx,
        "INSERT INTO function_history (app_id, name, sequence, deployment_id, activated_at)
         SELECT $1::TEXT, $2::TEXT, COALESCE(MAX(sequence), 0) + 1, $3::TEXT, $4::BIGINT
         FROM function_history WHERE app_id = $1 AND name = $2",
        &[&app_id, &name, &deployment_id, &now],
    )
    .await?;
    let entries = history(tx, app_id, name).await?;
    let prune = content::entries_to_prune(&entries);
    if prune.is_empty() {
        return Ok(());
    }
    let mut candidates = BTreeSet::new();
    for (sequence, id) in entries.iter().filter(|(s, _)| prune.contains(s)) {
        execute(
            tx,
            "DELETE FROM function_history WHERE app_id = $1 AND name = $2 AND sequence = $3",
            &[&app_id, &name, sequence],
        )
        .await?;
        candidates.insert(id.clone());
    }
    collect_garbage(tx, candidates).await
}

async fn collect_garbage(tx: &Transaction<'_>, candidates: BTreeSet<String>) -> Result<()> {
    collect_garbage_counted(tx, candidates).await.map(|_| ())
}

/// Deletes those `candidates` that nothing references any more, and their blobs that nothing
/// else references. Returns how many deployments and blobs went.
async fn collect_garbage_counted(tx: &Transaction<'_>, candidates: BTreeSet<String>) -> Result<(u64, u64)> {
    let mut blobs = BTreeSet::new();
    let mut deployments = 0;
    for id in candidates {
        // Lock first, then look for references in a new snapshot: a deploy that locked the row
        // to reuse it has committed its reference by the time the lock is ours.
        if query_opt(tx, "SELECT 1 FROM deployments WHERE id = $1 FOR UPDATE", &[&id]).await?.is_none() {
            continue;
        }
        let referenced = query_opt(
            tx,
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM functions WHERE deployment_id = $1)
                         OR EXISTS (SELECT 1 FROM function_history WHERE deployment_id = $1)",
            &[&id],
        )
        .await?
        .is_some();
        if referenced {
            continue;
        }
        for row in query(tx, "SELECT blob_hash FROM deployment_files WHERE deployment_id = $1", &[&id]).await? {
            blobs.insert(row.get::<_, String>(0));
        }
        deployments += execute(tx, "DELETE FROM deployments WHERE id = $1", &[&id]).await?;
    }
    let blobs = delete_blobs(tx, blobs).await?;
    Ok((deployments, blobs))
}

/// Deletes the blobs among `hashes` that no file refers to, locking each before checking.
async fn delete_blobs(tx: &Transaction<'_>, hashes: BTreeSet<String>) -> Result<u64> {
    let mut deleted = 0;
    for hash in hashes {
        if query_opt(tx, "SELECT 1 FROM blobs WHERE hash = $1 FOR UPDATE", &[&hash]).await?.is_none() {
            continue;
        }
        deleted += execute(
            tx,
            "DELETE FROM blobs WHERE hash = $1 AND NOT EXISTS (SELECT 1 FROM deployment_files WHERE blob_hash = $1)",
            &[&hash],
        )
        .await?;
    }
    Ok(deleted)
}

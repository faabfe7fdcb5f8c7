//! What a node needs to serve what the store holds, cheaply enough to ask often.
//!
//! * [`Store::function_heads`] lists an app's active deployments without their files' contents,
//!   and [`Store::materialize_function`] reads the contents only when the node's disk lacks the
//!   deployment's folder (its content address): a node that reloads an app for a change of
//!   secrets, or for a deploy made through another node, reads only what it does not have.
//! * [`Store::app_digests`] sums up, per app, everything its workers depend on (the active
//!   deployments, the secrets, the `function-net-allow` list) in one read: a node compares the
//!   digests with those it loaded to find the apps a missed change notification left behind.
//! * [`Store::check_master_key`] makes sure that the nodes sharing a PostgreSQL database use
//!   one master key, before any of them seals a secret the others cannot open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::params;
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};
use crate::model::FunctionHead;
use crate::secrets::NONCE_LEN;
use crate::{Backend, Store, content, sqlite::Sqlite};

/// The server secret that holds a value sealed under the master key the first node used.
const MASTER_KEY_CHECK: &str = "master-key-check";

/// The rows [`Store::app_digests`] hashes: `(app id, kind, a, b)`.
pub(crate) type DigestRow = (String, String, String, String);

impl Store {
    /// The app's functions with their active deployments' entries and file paths (no contents),
    /// sorted by name (bytewise).
    pub async fn function_heads(&self, app_id: &str) -> Result<Vec<FunctionHead>> {
        let functions = on_backend!(self, db => db.functions(app_id.to_string(), None, false).await)?;
        Ok(functions
            .into_iter()
            .map(|f| FunctionHead {
                name: f.name,
                deployment_id: f.deployment_id,
                entry: f.entry,
                paths: f.files.into_iter().map(|file| file.path).collect(),
                activated_at: f.activated_at,
            })
            .collect())
    }

    /// [`materialize`](Store::materialize) for a function's active deployment: the path of its
    /// entry under `root/<deployment id>/`, whose files are read from the database only when
    /// that folder is missing (a folder with a deployment's name is always complete).
    pub async fn materialize_function(&self, head: &FunctionHead, root: &Path) -> Result<PathBuf> {
        if !content::is_deployment_id(&head.deployment_id) {
            return Err(StoreError::invalid(format!("'{}' is not a deployment id", head.deployment_id)));
        }
        let layout = content::layout(&head.entry, head.paths.iter().map(String::as_str))?;
        let folder = root.join(&head.deployment_id);
        if folder.is_dir() {
            let root = root
                .canonicalize()
                .map_err(|e| StoreError::Io(format!("Could not resolve {}: {e}", root.display())))?;
            return Ok(root.join(&head.deployment_id).join(layout.entry));
        }
        self.materialize(&head.deployment_id, root).await
    }

    /// For every app, a digest of what its workers run on: its functions' active deployments,
    /// its secrets (each sealing is new, so setting a secret to any value changes it) and its
    /// `function-net-allow` list. Equal digests: nothing changed.
    pub async fn app_digests(&self) -> Result<BTreeMap<String, String>> {
        let mut rows = on_backend!(self, db => db.digest_rows().await)?;
        rows.sort_unstable();
        let mut digests: BTreeMap<String, Sha256> = BTreeMap::new();
        for (app_id, kind, a, b) in rows {
            let hasher = digests.entry(app_id).or_default();
            for part in [kind.as_bytes(), a.as_bytes(), b.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        }
        Ok(digests.into_iter().map(|(app, hasher)| (app, crate::ids::hex(&hasher.finalize()[..16]))).collect())
    }

    /// PostgreSQL: fails with [`StoreError::Conflict`] when this store's master key is not the
    /// one the first node that asked used (the database keeps a value sealed under that key),
    /// so that a node started with another key refuses to start rather than fail to open the
    /// secrets the others store. Nothing to check on SQLite (one node).
    pub async fn check_master_key(&self) -> Result<()> {
        let Backend::Postgres(db) = &self.inner.backend else { return Ok(()) };
        let key = self.master_key()?;
        let (nonce, ciphertext) = key.seal("", MASTER_KEY_CHECK, "homebase")?;
        let sealed = [nonce, ciphertext].concat();
        let stored = db.server_secret(MASTER_KEY_CHECK.to_string(), sealed, crate::ids::now_ms()).await?;
        let opened = stored.len() > NONCE_LEN
            && key.open("", MASTER_KEY_CHECK, &stored[..NONCE_LEN], &stored[NONCE_LEN..]).is_ok();
        if !opened {
            return Err(StoreError::conflict(format!(
                "The master key of this node is not the one the other nodes of {} use, so it could not read \
                 their secrets: give every node the same key (HOMEBASE_MASTER_KEY, or the same master.key in \
                 each data folder)",
                self.location()
            )));
        }
        Ok(())
    }
}

const DIGEST_SQL: &str = "SELECT id, 'a', '', '' FROM apps
     UNION ALL SELECT app_id, 'f', name, deployment_id FROM functions
     UNION ALL SELECT app_id, 's', name, {hex} FROM secrets
     UNION ALL SELECT app_id, 'n', entries, '' FROM app_net_allow";

impl Sqlite {
    pub(crate) async fn digest_rows(&self) -> Result<Vec<DigestRow>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(&DIGEST_SQL.replace("{hex}", "hex(nonce)"))?;
            let rows = statement.query_map(params![], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

impl crate::postgres::Postgres {
    pub(crate) async fn digest_rows(&self) -> Result<Vec<DigestRow>> {
        let client = self.client().await?;
        let sql =
            DIGEST_SQL.replace("{hex}", "encode(nonce, 'hex')").replace("'a', '', ''", "'a'::TEXT, ''::TEXT, ''::TEXT");
        let rows = crate::postgres::query(&client, &sql, &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
    }
}

//! App secrets and the nodes' shared server secrets on PostgreSQL.

use super::apps::ensure_app;
use super::{Postgres, execute, pg, query, query_one};
use crate::changes::{Change, ChangeKind};
use crate::error::Result;

impl Postgres {
    /// Upserts `(name, nonce, ciphertext)` rows for the app.
    pub(crate) async fn set_secrets(
        &self,
        app_id: String,
        sealed: Vec<(String, Vec<u8>, Vec<u8>)>,
        now: i64,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        ensure_app(&tx, &app_id).await?;
        for (name, nonce, ciphertext) in &sealed {
            execute(
                &tx,
                "INSERT INTO secrets (app_id, name, nonce, ciphertext, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (app_id, name) DO UPDATE SET nonce = excluded.nonce,
                     ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                &[&app_id, name, nonce, ciphertext, &now],
            )
            .await?;
        }
        let change = Change::app(&app_id, ChangeKind::Secrets);
        self.finish(tx, "set_secrets", !sealed.is_empty(), Some(change)).await
    }

    pub(crate) async fn secret_names(&self, app_id: String) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = query(&client, "SELECT name FROM secrets WHERE app_id = $1 ORDER BY name", &[&app_id]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// `(name, nonce, ciphertext)` of the app's secrets, by name.
    pub(crate) async fn sealed_secrets(&self, app_id: String) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>> {
        let client = self.client().await?;
        let rows =
            query(&client, "SELECT name, nonce, ciphertext FROM secrets WHERE app_id = $1 ORDER BY name", &[&app_id])
                .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    pub(crate) async fn delete_secret(&self, app_id: String, name: String) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let deleted = execute(&tx, "DELETE FROM secrets WHERE app_id = $1 AND name = $2", &[&app_id, &name]).await? > 0;
        self.finish(tx, "delete_secret", deleted, Some(Change::app(&app_id, ChangeKind::Secrets))).await?;
        Ok(deleted)
    }

    /// The server secret `name`, stored as `value` unless another node stored it first (then
    /// that one). One statement pair in one transaction: the insert waits for a concurrent
    /// insert of the same name to commit and then does nothing, and the select that follows
    /// sees the winner's row.
    pub(crate) async fn server_secret(&self, name: String, value: Vec<u8>, now: i64) -> Result<Vec<u8>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        execute(
            &tx,
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            &[&name, &value, &now],
        )
        .await?;
        let stored: Vec<u8> =
            query_one(&tx, "SELECT value FROM server_secrets WHERE name = $1", &[&name]).await?.get(0);
        self.finish(tx, "server_secret", true, None).await?;
        Ok(stored)
    }
}

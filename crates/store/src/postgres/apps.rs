//! Apps and API keys on PostgreSQL.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{Postgres, execute, pg, query, query_one, query_opt};
use crate::changes::{Change, ChangeKind};
use crate::error::{Result, StoreError};
use crate::model::{ApiKey, App, KeyScope};

const KEY_COLUMNS: &str = "SELECT id, app_id, name, prefix, created_at, last_used_at FROM api_keys";

fn key_from_row(r: &Row) -> ApiKey {
    let app_id: Option<String> = r.get(1);
    ApiKey {
        id: r.get(0),
        scope: app_id.map_or(KeyScope::Admin, KeyScope::App),
        name: r.get(2),
        prefix: r.get(3),
        created_at: r.get(4),
        last_used_at: r.get(5),
    }
}

fn app_from_row(r: &Row) -> App {
    App { id: r.get(0), name: r.get(1), created_at: r.get(2) }
}

/// `NotFound` unless the app exists.
pub(crate) async fn ensure_app<C: GenericClient>(c: &C, app_id: &str) -> Result<()> {
    match query_opt(c, "SELECT 1 FROM apps WHERE id = $1", &[&app_id]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::not_found(format!("App '{app_id}'"))),
    }
}

impl Postgres {
    pub(crate) async fn insert_app(&self, app: App) -> Result<App> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        execute(
            &tx,
            "INSERT INTO apps (id, name, created_at) VALUES ($1, $2, $3)",
            &[&app.id, &app.name, &app.created_at],
        )
        .await?;
        self.finish(tx, "create_app", true, Some(Change::app(&app.id, ChangeKind::App))).await?;
        Ok(app)
    }

    pub(crate) async fn get_app(&self, id: String) -> Result<Option<App>> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT id, name, created_at FROM apps WHERE id = $1", &[&id]).await?;
        Ok(row.as_ref().map(app_from_row))
    }

    pub(crate) async fn list_apps(&self) -> Result<Vec<App>> {
        let client = self.client().await?;
        let rows =
            query(&client, "SELECT id, name, created_at FROM apps ORDER BY created_at DESC, rowid DESC", &[]).await?;
        Ok(rows.iter().map(app_from_row).collect())
    }

    pub(crate) async fn insert_key(&self, key: ApiKey, hash: String, ignore_existing: bool) -> Result<ApiKey> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if let Some(app_id) = key.scope.app_id() {
            ensure_app(&tx, app_id).await?;
        }
        let sql = if ignore_existing {
            "INSERT INTO api_keys (id, app_id, name, prefix, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (hash) DO NOTHING"
        } else {
            "INSERT INTO api_keys (id, app_id, name, prefix, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        };
        let app_id = key.scope.app_id();
        execute(&tx, sql, &[&key.id, &app_id, &key.name, &key.prefix, &hash, &key.created_at]).await?;
        let stored = key_from_row(&query_one(&tx, &format!("{KEY_COLUMNS} WHERE hash = $1"), &[&hash]).await?);
        let change = Change::app(stored.scope.app_id().unwrap_or(""), ChangeKind::Keys);
        self.finish(tx, "create_key", true, Some(change)).await?;
        Ok(stored)
    }

    pub(crate) async fn verify_key(&self, hash: String, now: i64) -> Result<Option<ApiKey>> {
        let client = self.client().await?;
        let Some(row) = query_opt(&client, &format!("{KEY_COLUMNS} WHERE hash = $1"), &[&hash]).await? else {
            return Ok(None);
        };
        let mut key = key_from_row(&row);
        // Best effort: a busy database must not fail an otherwise valid key.
        if key.last_used_at.is_none_or(|t| now - t >= 60_000)
            && execute(&client, "UPDATE api_keys SET last_used_at = $1 WHERE id = $2", &[&now, &key.id]).await.is_ok()
        {
            key.last_used_at = Some(now);
        }
        Ok(Some(key))
    }

    pub(crate) async fn list_keys(&self, app_id: Option<String>) -> Result<Vec<ApiKey>> {
        let client = self.client().await?;
        let order = "ORDER BY created_at DESC, rowid DESC";
        let rows = match app_id {
            Some(app_id) => query(&client, &format!("{KEY_COLUMNS} WHERE app_id = $1 {order}"), &[&app_id]).await?,
            None => query(&client, &format!("{KEY_COLUMNS} {order}"), &[]).await?,
        };
        Ok(rows.iter().map(key_from_row).collect())
    }

    /// Deletes a key; the app it was scoped to (empty for an admin key) if there was one.
    pub(crate) async fn delete_key(&self, id: String) -> Result<Option<String>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let row = query_opt(&tx, "DELETE FROM api_keys WHERE id = $1 RETURNING app_id", &[&id]).await?;
        let deleted = row.map(|r| r.get::<_, Option<String>>(0).unwrap_or_default());
        let change = deleted.as_ref().map(|app_id| Change::app(app_id, ChangeKind::Keys));
        self.finish(tx, "revoke_key", deleted.is_some(), change).await?;
        Ok(deleted)
    }
}

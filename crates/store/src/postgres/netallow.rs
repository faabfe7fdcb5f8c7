//! Apps' `function-net-allow` lists on PostgreSQL (the rules are in [`crate::netallow`]).

use super::apps::ensure_app;
use super::{Postgres, execute, pg, query_opt};
use crate::changes::{Change, ChangeKind};
use crate::error::Result;
use crate::netallow::entries_text;

impl Postgres {
    /// The stored list (JSON), if any.
    pub(crate) async fn function_net_allow(&self, app_id: String) -> Result<Option<String>> {
        let client = self.client().await?;
        Ok(query_opt(&client, "SELECT entries FROM app_net_allow WHERE app_id = $1", &[&app_id])
            .await?
            .map(|r| r.get(0)))
    }

    pub(crate) async fn set_function_net_allow(&self, app_id: String, entries: Vec<String>, now: i64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        ensure_app(&tx, &app_id).await?;
        if entries.is_empty() {
            execute(&tx, "DELETE FROM app_net_allow WHERE app_id = $1", &[&app_id]).await?;
        } else {
            execute(
                &tx,
                "INSERT INTO app_net_allow (app_id, entries, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (app_id) DO UPDATE SET entries = excluded.entries, updated_at = excluded.updated_at",
                &[&app_id, &entries_text(&entries), &now],
            )
            .await?;
        }
        self.finish(tx, "set_function_net_allow", true, Some(Change::app(&app_id, ChangeKind::NetAllow))).await
    }
}

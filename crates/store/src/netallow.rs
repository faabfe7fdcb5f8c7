//! An app's `function-net-allow` list: what its functions may reach on the network besides the
//! public internet. The store keeps the entries as given (the server checks them first) and
//! returns them in the order they were set. Setting the list is announced as
//! [`ChangeKind::NetAllow`](crate::ChangeKind::NetAllow).

use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::{Change, ChangeKind, Store, sqlite::Sqlite};

/// The most entries one app's list may have.
pub const MAX_NET_ALLOW_ENTRIES: usize = 256;

impl Store {
    /// The app's `function-net-allow` entries; empty when never set.
    pub async fn function_net_allow(&self, app_id: &str) -> Result<Vec<String>> {
        let text = on_backend!(self, db => db.function_net_allow(app_id.to_string()).await)?;
        text.as_deref().map_or(Ok(Vec::new()), parse_entries)
    }

    /// Replaces the app's `function-net-allow` entries; an empty list removes them.
    pub async fn set_function_net_allow(&self, app_id: &str, entries: Vec<String>) -> Result<()> {
        if entries.len() > MAX_NET_ALLOW_ENTRIES {
            return Err(StoreError::invalid(format!(
                "{} entries is too many; an app may have at most {MAX_NET_ALLOW_ENTRIES}",
                entries.len()
            )));
        }
        if let Some(bad) = entries.iter().find(|e| e.trim().is_empty() || e.len() > 100) {
            return Err(StoreError::invalid(format!(
                "'{}' is not an entry",
                bad.chars().take(100).collect::<String>()
            )));
        }
        let (app, now) = (app_id.to_string(), crate::ids::now_ms());
        on_backend!(self, db => db.set_function_net_allow(app, entries, now).await)?;
        self.announce(Change::app(app_id, ChangeKind::NetAllow));
        Ok(())
    }
}

/// The stored form of a list: a JSON array of strings.
pub(crate) fn entries_text(entries: &[String]) -> String {
    serde_json::to_string(entries).expect("strings serialise")
}

fn parse_entries(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Database(format!("A stored function-net-allow list is not JSON: {e}")))
}

impl Sqlite {
    /// The stored list (JSON), if any.
    pub(crate) async fn function_net_allow(&self, app_id: String) -> Result<Option<String>> {
        self.read(move |conn| {
            Ok(conn
                .query_row("SELECT entries FROM app_net_allow WHERE app_id = ?1", [app_id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    pub(crate) async fn set_function_net_allow(&self, app_id: String, entries: Vec<String>, now: i64) -> Result<()> {
        let text = entries_text(&entries);
        self.write("set_function_net_allow", move |tx| {
            crate::sqlite::ensure_app(tx, &app_id)?;
            if entries.is_empty() {
                tx.execute("DELETE FROM app_net_allow WHERE app_id = ?1", [&app_id])?;
            } else {
                tx.execute(
                    "INSERT INTO app_net_allow (app_id, entries, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (app_id) DO UPDATE SET entries = excluded.entries, updated_at = excluded.updated_at",
                    params![app_id, text, now],
                )?;
            }
            Ok(((), true))
        })
        .await
    }
}

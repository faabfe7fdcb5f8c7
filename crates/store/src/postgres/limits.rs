//! Rate-limit counters on PostgreSQL (the rules are in [`crate::limits`]).
//!
//! A hit upserts each counter's row (in key order, so that two hits on the same counters lock
//! them in the same order and never deadlock), which locks it until the commit: a concurrent
//! hit on another node waits, then sees the count this one left.

use super::{Postgres, execute, pg, query_one};
use crate::error::Result;
use crate::limits::{LimitCounter, LimitHit, decide};

const UPSERT: &str = "INSERT INTO limit_counters (key, count, expires_at) VALUES ($1, 0, $2)
     ON CONFLICT (key) DO UPDATE SET
         count = CASE WHEN limit_counters.expires_at <= $3 THEN 0 ELSE limit_counters.count END,
         expires_at = CASE WHEN limit_counters.expires_at <= $3 THEN $2 ELSE limit_counters.expires_at END
     RETURNING count, expires_at";

impl Postgres {
    pub(crate) async fn hit_limits(&self, counters: Vec<LimitCounter>, window: i64, now: i64) -> Result<LimitHit> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let mut order: Vec<usize> = (0..counters.len()).collect();
        order.sort_by(|a, b| counters[*a].key.cmp(&counters[*b].key));
        let mut states = vec![(0, 0); counters.len()];
        for i in order {
            let row = query_one(&tx, UPSERT, &[&counters[i].key, &(now + window), &now]).await?;
            states[i] = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        }
        let hit = decide(&counters, &states, now);
        let counted = matches!(hit, LimitHit::Counted { .. });
        if counted {
            let keys: Vec<&str> = counters.iter().map(|c| c.key.as_str()).collect();
            execute(&tx, "UPDATE limit_counters SET count = count + 1 WHERE key = ANY($1)", &[&keys]).await?;
        }
        // A refused hit rolls back: nothing is counted.
        self.finish(tx, "hit_limits", counted, None).await?;
        Ok(hit)
    }

    pub(crate) async fn reset_limit(&self, key: String) -> Result<()> {
        let client = self.client().await?;
        execute(&client, "DELETE FROM limit_counters WHERE key = $1", &[&key]).await?;
        Ok(())
    }

    pub(crate) async fn give_back_limit(&self, key: String, now: i64) -> Result<()> {
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE limit_counters SET count = count - 1 WHERE key = $1 AND count > 0 AND expires_at > $2",
            &[&key, &now],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn sweep_limits(&self, now: i64) -> Result<u64> {
        let client = self.client().await?;
        execute(&client, "DELETE FROM limit_counters WHERE expires_at <= $1", &[&now]).await
    }
}

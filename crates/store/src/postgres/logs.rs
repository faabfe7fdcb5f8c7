//! The log store on PostgreSQL: a `logs` table of its own (versioned as the `logs` component),
//! behind the same [`LogStore`](crate::LogStore) interface as the SQLite log file.
//!
//! * **Ids are the database's**, unlike SQLite's (where the server numbers lines as they are
//!   printed): several nodes write to the table, and numbers each of them gave out would
//!   collide. Inserts hold a lock while they take numbers from a sequence and commit, and a
//!   line's id is that number (also stored as `seq`): ids grow in commit order across nodes,
//!   so a reader that has seen every line up to an id never gets an older one later, and a
//!   client that resumes after an id (`after_id` queries) misses nothing. The ids the caller
//!   gives only order the lines of a batch. The writer retries a batch that failed; one whose
//!   commit was cut off (the outcome unknown) may then be stored twice: logs are kept at least
//!   once.
//! * **Following other nodes' lines.** Each insert announces its largest id with `NOTIFY`;
//!   [`PgLogs::watch`] follows that (from a `LISTEN` connection of its own that reconnects and
//!   then re-reads the newest id), and [`PgLogs::tail`] reads the lines after an id.
//! * **Retention** is SQLite's: by age from the oldest id on, then by size. The size is an
//!   estimate of what the rows take (`pg_column_size` of each row plus a fixed allowance for
//!   its tuple header and index entries); computing it reads the table, so one node at a time
//!   prunes (the others skip that round).

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::listen::{Listener, channel_name};
use super::{Target, execute, lock, new_pool, pg, query, query_one, query_opt};
use crate::error::Result;
use crate::logs::{LogQuery, LogRecord, MAX_LOG_QUERY, PruneReport, Retention};

/// Bytes counted per row besides its columns: the tuple header and line pointer (~28) and an
/// entry in each of the four indexes (~30 each).
const ROW_OVERHEAD: i64 = 150;

const COLUMNS: &str = "id, time, app_id, function, version, level, request_id, system, message";

pub(crate) struct PgLogs {
    pool: Pool,
    pub(crate) location: String,
    schema: String,
    newest: watch::Sender<u64>,
    listener: Listener,
}

fn record(r: &Row) -> LogRecord {
    LogRecord {
        id: r.get::<_, i64>(0) as u64,
        time_us: r.get(1),
        app_id: r.get(2),
        function: r.get(3),
        version: r.get(4),
        level: r.get::<_, i16>(5).clamp(0, 255) as u8,
        request_id: r.get(6),
        system: r.get(7),
        message: r.get(8),
    }
}

impl PgLogs {
    pub(crate) async fn open(url: &str) -> Result<PgLogs> {
        let target = Target::parse(url)?;
        let pool = new_pool(&target)?;
        let client = pool.get().await.map_err(|e| super::pool_error(&target.location, e))?;
        let schema = super::current_schema(&client, &target.location).await?;
        super::migrations::migrate(&client, &target.location, &schema, super::migrations::LOGS).await?;
        let newest: i64 = query_one(&client, "SELECT COALESCE(MAX(seq), 0) FROM logs", &[]).await?.get(0);
        drop(client);
        let (newest, _) = watch::channel(newest as u64);
        let channel = channel_name("homebase_logs", &schema);
        let sender = newest.clone();
        let listener = Listener::new(target.clone(), vec![channel], move |_, payload| {
            if let Ok(seq) = payload.parse::<u64>() {
                sender.send_if_modified(|n| std::mem::replace(n, seq.max(*n)) != seq.max(*n));
            }
        });
        Ok(PgLogs { pool, location: target.location, schema, newest, listener })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| super::pool_error(&self.location, e))
    }

    pub(crate) async fn next_id(&self) -> Result<u64> {
        let client = self.client().await?;
        let max: Option<i64> = query_one(&client, "SELECT MAX(id) FROM logs", &[]).await?.get(0);
        Ok(max.map_or(1, |m| m as u64 + 1))
    }

    pub(crate) async fn insert(&self, records: Vec<LogRecord>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Held to the commit: `seq` numbers are taken and committed in one order.
        lock(&tx, &self.schema, &["logs insert"]).await?;
        let ids: Vec<i64> = records.iter().map(|r| r.id.min(i64::MAX as u64) as i64).collect();
        let times: Vec<i64> = records.iter().map(|r| r.time_us).collect();
        let apps: Vec<&str> = records.iter().map(|r| r.app_id.as_str()).collect();
        let functions: Vec<&str> = records.iter().map(|r| r.function.as_str()).collect();
        let versions: Vec<&str> = records.iter().map(|r| r.version.as_str()).collect();
        let levels: Vec<i16> = records.iter().map(|r| i16::from(r.level)).collect();
        let requests: Vec<Option<&str>> = records.iter().map(|r| r.request_id.as_deref()).collect();
        let systems: Vec<bool> = records.iter().map(|r| r.system).collect();
        // PostgreSQL text cannot hold NUL; a line that prints one keeps a visible mark instead.
        let messages: Vec<String> = records.iter().map(|r| r.message.replace('\0', "\u{FFFD}")).collect();
        // Numbered in the order of the caller's ids (the order the lines were printed).
        let row = query_one(
            &tx,
            &format!(
                "WITH inserted AS (
                     INSERT INTO logs ({COLUMNS}, seq)
                     SELECT n, time, app_id, function, version, level, request_id, system, message, n FROM (
                         SELECT nextval('logs_seq') AS n, t.* FROM (
                             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
                                                  $6::SMALLINT[], $7::TEXT[], $8::BOOLEAN[], $9::TEXT[])
                                 AS u(ord, time, app_id, function, version, level, request_id, system, message)
                             ORDER BY ord
                         ) t
                     ) numbered
                     RETURNING seq
                 )
                 SELECT MAX(seq) FROM inserted"
            ),
            &[&ids, &times, &apps, &functions, &versions, &levels, &requests, &systems, &messages],
        )
        .await?;
        let newest: Option<i64> = row.get(0);
        if let Some(seq) = newest {
            let channel = channel_name("homebase_logs", &self.schema);
            execute(&tx, "SELECT pg_notify($1, $2)", &[&channel, &seq.to_string()]).await?;
        }
        tx.commit().await.map_err(pg)?;
        if let Some(seq) = newest {
            self.newest.send_if_modified(|n| std::mem::replace(n, (seq as u64).max(*n)) != (seq as u64).max(*n));
        }
        Ok(())
    }

    pub(crate) async fn query(&self, q: LogQuery) -> Result<Vec<LogRecord>> {
        let mut sql = format!("SELECT {COLUMNS} FROM logs WHERE app_id = $1");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(q.app_id.clone())];
        let mut arg = |sql: &mut String, text: &str, value: Box<dyn ToSql + Sync + Send>| {
            args.push(value);
            sql.push_str(&text.replace('?', &format!("${}", args.len())));
        };
        if !q.functions.is_empty() {
            arg(&mut sql, " AND function = ANY(?)", Box::new(q.functions.clone()));
        }
        if let Some(since) = q.since_us {
            arg(&mut sql, " AND time >= ?", Box::new(since));
        }
        if let Some(until) = q.until_us {
            arg(&mut sql, " AND time < ?", Box::new(until));
        }
        if let Some(level) = q.level {
            arg(&mut sql, " AND level = ?", Box::new(i16::from(level)));
        }
        if let Some(after) = q.after_id {
            arg(&mut sql, " AND id > ? ORDER BY id", Box::new(after.min(i64::MAX as u64) as i64));
        } else if q.descending {
            sql.push_str(" ORDER BY time DESC, id DESC");
        } else {
            sql.push_str(" ORDER BY time, id");
        }
        arg(&mut sql, " LIMIT ?", Box::new(q.limit.min(MAX_LOG_QUERY) as i64));
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        Ok(query(&client, &sql, &params).await?.iter().map(record).collect())
    }

    pub(crate) async fn has_function(&self, app_id: &str, function: &str) -> Result<bool> {
        let client = self.client().await?;
        let sql = "SELECT 1 FROM logs WHERE app_id = $1 AND function = $2 LIMIT 1";
        Ok(query_opt(&client, sql, &[&app_id, &function]).await?.is_some())
    }

    pub(crate) async fn count(&self, app_id: Option<&str>, function: Option<&str>) -> Result<u64> {
        let client = self.client().await?;
        let row = match (app_id, function) {
            (Some(app), Some(f)) => {
                query_one(&client, "SELECT COUNT(*) FROM logs WHERE app_id = $1 AND function = $2", &[&app, &f]).await?
            }
            (Some(app), None) => query_one(&client, "SELECT COUNT(*) FROM logs WHERE app_id = $1", &[&app]).await?,
            _ => query_one(&client, "SELECT COUNT(*) FROM logs", &[]).await?,
        };
        Ok(row.get::<_, i64>(0) as u64)
    }

    pub(crate) async fn count_printed(&self, app_id: &str, function: &str) -> Result<u64> {
        let client = self.client().await?;
        let sql = "SELECT COUNT(*) FROM logs WHERE app_id = $1 AND function = $2 AND NOT system";
        Ok(query_one(&client, sql, &[&app_id, &function]).await?.get::<_, i64>(0) as u64)
    }

    pub(crate) async fn prune(&self, retention: Retention, now_us: i64) -> Result<PruneReport> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let mut report = PruneReport::default();
        let key = lock_key(&self.schema, "logs prune");
        let ours: bool = query_one(&tx, "SELECT pg_try_advisory_xact_lock($1)", &[&key]).await?.get(0);
        if !ours {
            // Another node is pruning right now.
            report.used_bytes = used_bytes(&tx).await?;
            return Ok(report);
        }
        let cutoff = now_us.saturating_sub(retention.max_age.as_micros().min(i64::MAX as u128) as i64);
        // Ids grow with time: everything before the first young line is old.
        let first_young =
            query_opt(&tx, "SELECT id FROM logs WHERE time >= $1 ORDER BY id LIMIT 1", &[&cutoff]).await?;
        report.deleted_by_age = match first_young {
            Some(row) => execute(&tx, "DELETE FROM logs WHERE id < $1", &[&row.get::<_, i64>(0)]).await?,
            None => execute(&tx, "DELETE FROM logs", &[]).await?,
        };
        let mut used = used_bytes(&tx).await?;
        let target = retention.max_bytes / 10 * 9;
        for _ in 0..8 {
            if used <= retention.max_bytes {
                break;
            }
            let rows: i64 = query_one(&tx, "SELECT COUNT(*) FROM logs", &[]).await?.get(0);
            if rows == 0 {
                break;
            }
            let share = (used - target) as f64 / used as f64;
            let n = ((rows as f64 * share).ceil() as i64).clamp(1, rows);
            report.deleted_by_size += execute(
                &tx,
                "DELETE FROM logs WHERE id <= (SELECT id FROM logs ORDER BY id LIMIT 1 OFFSET $1)",
                &[&(n - 1)],
            )
            .await?;
            used = used_bytes(&tx).await?;
        }
        tx.commit().await.map_err(pg)?;
        report.used_bytes = used;
        Ok(report)
    }

    /// The newest `seq` stored (0 for none).
    pub(crate) async fn cursor(&self) -> Result<u64> {
        let client = self.client().await?;
        let newest: i64 = query_one(&client, "SELECT COALESCE(MAX(seq), 0) FROM logs", &[]).await?.get(0);
        Ok(newest as u64)
    }

    /// Up to `limit` lines committed after `after` (a `seq`), in commit order, and the `seq` to
    /// continue from.
    pub(crate) async fn tail(&self, after: u64, limit: usize) -> Result<(Vec<LogRecord>, u64)> {
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!("SELECT {COLUMNS}, seq FROM logs WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&(after.min(i64::MAX as u64) as i64), &(limit.min(MAX_LOG_QUERY) as i64)],
        )
        .await?;
        let next = rows.last().map_or(after, |r| r.get::<_, i64>(9) as u64);
        Ok((rows.iter().map(record).collect(), next))
    }

    /// The newest `seq` any node announced, as it changes. Starts the `LISTEN` connection.
    pub(crate) async fn watch(&self) -> Result<watch::Receiver<u64>> {
        let (pool, location, sender) = (self.pool.clone(), self.location.clone(), self.newest.clone());
        self.listener
            .start(move || {
                // Lines may have been announced while the connection was down: look.
                let (pool, location, sender) = (pool.clone(), location.clone(), sender.clone());
                tokio::spawn(async move {
                    let Ok(client) = pool.get().await.map_err(|e| super::pool_error(&location, e)) else { return };
                    if let Ok(row) = query_one(&client, "SELECT COALESCE(MAX(seq), 0) FROM logs", &[]).await {
                        let seq = row.get::<_, i64>(0) as u64;
                        sender.send_if_modified(|n| std::mem::replace(n, seq.max(*n)) != seq.max(*n));
                    }
                });
            })
            .await?;
        // Anything committed between opening and listening.
        let seq = self.cursor().await?;
        self.newest.send_if_modified(|n| std::mem::replace(n, seq.max(*n)) != seq.max(*n));
        Ok(self.newest.subscribe())
    }
}

fn lock_key(schema: &str, name: &str) -> i64 {
    let digest = crate::ids::sha256_hex(format!("{schema}\0{name}\0").as_bytes());
    u64::from_str_radix(&digest[..16], 16).unwrap_or(0) as i64
}

async fn used_bytes<C: deadpool_postgres::GenericClient>(c: &C) -> Result<u64> {
    let row = query_one(
        c,
        "SELECT COALESCE(SUM(pg_column_size(l.*)::BIGINT + $1::BIGINT), 0)::BIGINT FROM logs l",
        &[&ROW_OVERHEAD],
    )
    .await?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

//! App data on PostgreSQL (the rules and the outbox's reading order are in
//! [`crate::entities`]).

use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;

use homebase_entities::sql::{self, Dialect, SqlParam};
use homebase_entities::{EntitySchema, Filter, ListQuery, Record};

use super::apps::ensure_app;
use super::{Postgres, execute, lock, pg, query};
use crate::entities::{
    ChangeCursor, ChangeOp, EntityChange, SchemaChanges, WriteError, entity_key, parse_data, select,
};
use crate::error::{Result, StoreError};

const COLUMNS: &str = "r.id, r.created_date, r.updated_date, r.created_by, r.created_by_id, r.is_sample, r.data::text";

type Param = Box<dyn ToSql + Sync + Send>;

fn params(app: &str, entity: &str, extra: Vec<SqlParam>) -> Vec<Param> {
    let mut out: Vec<Param> = vec![Box::new(app.to_string()), Box::new(entity.to_string())];
    for p in extra {
        out.push(match p {
            SqlParam::Text(t) => Box::new(t),
            SqlParam::Int(i) => Box::new(i),
            SqlParam::Real(f) => Box::new(f),
            SqlParam::Bool(b) => Box::new(b),
        });
    }
    out
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

fn record(row: &tokio_postgres::Row) -> Result<Record> {
    Ok(Record {
        id: row.get(0),
        created_date: row.get(1),
        updated_date: row.get(2),
        created_by: row.get(3),
        created_by_id: row.get(4),
        is_sample: row.get(5),
        data: parse_data(row.get::<_, &str>(6))?,
    })
}

async fn records<C: GenericClient>(c: &C, statement: &str, params: &[Param]) -> Result<Vec<Record>> {
    query(c, statement, &refs(params)).await?.iter().map(record).collect()
}

async fn insert_change<C: GenericClient>(
    c: &C,
    app: &str,
    entity: &str,
    id: &str,
    op: ChangeOp,
    after: Option<&Record>,
    before: Option<&Record>,
) -> Result<()> {
    let json = |r: Option<&Record>| r.map(|r| r.to_json().to_string());
    execute(
        c,
        "INSERT INTO entity_changes (app_id, entity, record_id, operation, after, before, created_at)
         VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7)",
        &[&app, &entity, &id, &op.as_str(), &json(after), &json(before), &crate::ids::now_ms()],
    )
    .await?;
    Ok(())
}

impl Postgres {
    pub(crate) async fn set_entity_schemas(
        &self,
        app_id: String,
        rows: Vec<(String, String, String)>,
        indexes: Vec<(String, String)>,
        now: i64,
    ) -> Result<SchemaChanges> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        ensure_app(&tx, &app_id).await?;
        lock(&tx, &self.schema, &["entity-schemas", &app_id]).await?;
        let stored: Vec<(String, String, String)> =
            query(&tx, "SELECT entity, name, schema FROM entity_schemas WHERE app_id = $1", &[&app_id])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
        let changes = SchemaChanges::between(stored, &rows);
        execute(&tx, "DELETE FROM entity_schemas WHERE app_id = $1", &[&app_id]).await?;
        for (key, name, schema) in &rows {
            execute(
                &tx,
                "INSERT INTO entity_schemas (app_id, entity, name, schema, updated_at) VALUES ($1, $2, $3, $4, $5)",
                &[&app_id, key, name, schema, &now],
            )
            .await?;
        }
        for (index, expr) in &indexes {
            lock(&tx, &self.schema, &["entity-index", index]).await?;
            tx.batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS {index} ON entity_records (app_id, entity, ({expr}) NULLS FIRST, id)"
            ))
            .await
            .map_err(pg)?;
        }
        self.finish(tx, "set_entity_schemas", true, None).await?;
        Ok(changes)
    }

    pub(crate) async fn entity_schemas(&self, app_id: String) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        let rows =
            query(&client, "SELECT name, schema FROM entity_schemas WHERE app_id = $1 ORDER BY entity", &[&app_id])
                .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(crate) async fn insert_records(
        &self,
        app_id: String,
        entity: String,
        records: Vec<Record>,
    ) -> Result<Vec<Record>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        ensure_app(&tx, &app_id).await?;
        let key = entity_key(&entity);
        // One statement for the records and one for their changes, whatever their number.
        let column = |f: fn(&Record) -> String| records.iter().map(f).collect::<Vec<String>>();
        let ids = column(|r| r.id.clone());
        let created = column(|r| r.created_date.clone());
        let updated = column(|r| r.updated_date.clone());
        let by: Vec<Option<String>> = records.iter().map(|r| r.created_by.clone()).collect();
        let by_id: Vec<Option<String>> = records.iter().map(|r| r.created_by_id.clone()).collect();
        let sample: Vec<bool> = records.iter().map(|r| r.is_sample).collect();
        let data = column(|r| Value::Object(r.data.clone()).to_string());
        execute(
            &tx,
            "INSERT INTO entity_records (app_id, entity, id, created_date, updated_date, created_by, created_by_id,
             is_sample, data)
             SELECT $1, $2, u.id, u.created, u.updated, u.by, u.by_id, u.sample, u.data::jsonb
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], $9::text[])
               WITH ORDINALITY AS u(id, created, updated, by, by_id, sample, data, n)
             ORDER BY u.n",
            &[&app_id, &key, &ids, &created, &updated, &by, &by_id, &sample, &data],
        )
        .await?;
        let after = column(|r| r.to_json().to_string());
        execute(
            &tx,
            "INSERT INTO entity_changes (app_id, entity, record_id, operation, after, created_at)
             SELECT $1, $2, u.id, 'create', u.after::jsonb, $5
             FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS u(id, after, n)
             ORDER BY u.n",
            &[&app_id, &entity, &ids, &after, &crate::ids::now_ms()],
        )
        .await?;
        self.finish(tx, "create_records", true, None).await?;
        Ok(records)
    }

    pub(crate) async fn list_records(
        &self,
        app_id: String,
        schema: EntitySchema,
        query: ListQuery,
    ) -> Result<Vec<Record>> {
        let base = select(Dialect::Postgres, COLUMNS, &schema, &query.filter);
        let n = base.params.len() + 2;
        let statement = format!(
            "{} ORDER BY {} LIMIT ${}::bigint OFFSET ${}::bigint",
            base.sql,
            sql::order_by(Dialect::Postgres, &query.sort, Some(&schema)),
            n + 1,
            n + 2
        );
        let mut all = params(&app_id, &entity_key(&schema.name), base.params);
        all.push(Box::new(query.limit.map(|l| l.min(i64::MAX as u64) as i64)));
        all.push(Box::new(query.skip.min(i64::MAX as u64) as i64));
        let client = self.client().await?;
        records(&client, &statement, &all).await
    }

    pub(crate) async fn count_records(&self, app_id: String, schema: EntitySchema, filter: Filter) -> Result<u64> {
        let base = select(Dialect::Postgres, "COUNT(*)", &schema, &filter);
        let all = params(&app_id, &entity_key(&schema.name), base.params);
        let client = self.client().await?;
        let rows = query(&client, &base.sql, &refs(&all)).await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
    }

    pub(crate) async fn update_record<E, F>(
        &self,
        app_id: String,
        schema: EntitySchema,
        filter: Filter,
        now: String,
        change: F,
    ) -> std::result::Result<Option<Record>, WriteError<E>>
    where
        E: Send + 'static,
        F: FnOnce(&Record) -> std::result::Result<Map<String, Value>, E> + Send + 'static,
    {
        let key = entity_key(&schema.name);
        let base = select(Dialect::Postgres, COLUMNS, &schema, &filter);
        let statement = format!("{} FOR UPDATE", base.sql);
        let all = params(&app_id, &key, base.params);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let Some(before) = records(&tx, &statement, &all).await?.pop() else {
            tx.rollback().await.map_err(pg)?;
            return Ok(None);
        };
        let data = match change(&before) {
            Ok(data) => data,
            Err(e) => {
                tx.rollback().await.map_err(pg)?;
                return Err(WriteError::Rejected(e));
            }
        };
        let after = Record { data, updated_date: now, ..before.clone() };
        execute(
            &tx,
            "UPDATE entity_records SET data = $4::text::jsonb, updated_date = $5 WHERE app_id = $1 AND entity = $2 AND id = $3",
            &[&app_id, &key, &after.id, &Value::Object(after.data.clone()).to_string(), &after.updated_date],
        )
        .await?;
        insert_change(&tx, &app_id, &schema.name, &after.id, ChangeOp::Update, Some(&after), Some(&before)).await?;
        self.finish(tx, "update_record", true, None).await?;
        Ok(Some(after))
    }

    pub(crate) async fn update_records<E, F>(
        &self,
        app_id: String,
        schema: EntitySchema,
        filter: Filter,
        limit: u64,
        now: String,
        mut change: F,
    ) -> std::result::Result<(Vec<Record>, bool), WriteError<E>>
    where
        E: Send + 'static,
        F: FnMut(&Record) -> std::result::Result<Map<String, Value>, E> + Send + 'static,
    {
        let key = entity_key(&schema.name);
        let base = select(Dialect::Postgres, COLUMNS, &schema, &filter);
        let n = base.params.len() + 2;
        let statement = format!("{} ORDER BY r.id LIMIT ${}::bigint FOR UPDATE", base.sql, n + 1);
        let mut all = params(&app_id, &key, base.params);
        all.push(Box::new(limit.saturating_add(1).min(i64::MAX as u64) as i64));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let mut found = records(&tx, &statement, &all).await?;
        let more = found.len() as u64 > limit;
        found.truncate(limit as usize);
        let mut updated = Vec::with_capacity(found.len());
        for before in &found {
            let data = match change(before) {
                Ok(data) => data,
                Err(e) => {
                    tx.rollback().await.map_err(pg)?;
                    return Err(WriteError::Rejected(e));
                }
            };
            let after = Record { data, updated_date: now.clone(), ..before.clone() };
            execute(
                &tx,
                "UPDATE entity_records SET data = $4::text::jsonb, updated_date = $5 WHERE app_id = $1 AND entity = $2 AND id = $3",
                &[&app_id, &key, &after.id, &Value::Object(after.data.clone()).to_string(), &after.updated_date],
            )
            .await?;
            insert_change(&tx, &app_id, &schema.name, &after.id, ChangeOp::Update, Some(&after), Some(before)).await?;
            updated.push(after);
        }
        self.finish(tx, "update_records", !updated.is_empty(), None).await?;
        Ok((updated, more))
    }

    pub(crate) async fn delete_records(
        &self,
        app_id: String,
        schema: EntitySchema,
        filter: Filter,
    ) -> Result<Vec<Record>> {
        let key = entity_key(&schema.name);
        let fragment = sql::where_clause(Dialect::Postgres, &filter, Some(&schema), 3);
        let statement = format!(
            "DELETE FROM entity_records AS r WHERE r.app_id = $1 AND r.entity = $2 AND {} RETURNING {COLUMNS}",
            fragment.sql
        );
        let all = params(&app_id, &key, fragment.params);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let deleted = records(&tx, &statement, &all).await?;
        for record in &deleted {
            insert_change(&tx, &app_id, &schema.name, &record.id, ChangeOp::Delete, None, Some(record)).await?;
        }
        self.finish(tx, "delete_records", !deleted.is_empty(), None).await?;
        Ok(deleted)
    }

    pub(crate) async fn entity_changes(&self, after: ChangeCursor, limit: i64) -> Result<Vec<EntityChange>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT seq, tx::text, app_id, entity, record_id, operation, after::text, before::text, created_at
             FROM entity_changes
             WHERE (tx, seq) > ($1::text::xid8, $2) AND tx < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY tx, seq LIMIT $3",
            &[&after.tx.to_string(), &after.seq, &limit],
        )
        .await?;
        let json = |t: Option<&str>| t.and_then(|t| serde_json::from_str(t).ok());
        rows.iter()
            .map(|r| {
                let tx: &str = r.get(1);
                Ok(EntityChange {
                    cursor: ChangeCursor {
                        tx: tx
                            .parse()
                            .map_err(|_| StoreError::Database(format!("A change's transaction is '{tx}'")))?,
                        seq: r.get(0),
                    },
                    app_id: r.get(2),
                    entity: r.get(3),
                    record_id: r.get(4),
                    operation: ChangeOp::parse(r.get(5))?,
                    after: json(r.get(6)),
                    before: json(r.get(7)),
                    at: r.get(8),
                })
            })
            .collect()
    }
}

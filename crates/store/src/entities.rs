//! App data: entity schemas, records and the change outbox (issue 11, reference §3).
//!
//! The rules (validation, the query language, access rules) are `homebase-entities`'s: it
//! compiles filters and sorts to SQL for each dialect, and this module runs them. Records live
//! in one table, `entity_records`, keyed by `(app, entity, id)`: the built-in fields are columns
//! (indexed: `created_date`, `updated_date`, `created_by`, `created_by_id`; `id` is the key),
//! the declared fields a JSON object (`data`, JSON text on SQLite, `jsonb` on PostgreSQL).
//! Entity names are stored lowercased, as they match ignoring case.
//!
//! * **Schemas.** [`Store::set_entity_schemas`] replaces an app's whole set and says what was
//!   created, updated and deleted. Records of a deleted entity are kept (a schema pushed again
//!   finds them). For every declared top-level string, number or boolean field an expression
//!   index is made (once per distinct field and type, shared by all apps), so equality and
//!   range filters and sorts on it use an index.
//! * **The change outbox.** Every committed create, update and delete, the bulk and
//!   many-record forms included, appends one `entity_changes` row (app, entity, id, operation,
//!   record after, record before) in the writing transaction: a change is stored if and only if
//!   its write committed. [`Store::entity_changes`] reads them in an order that never lets a
//!   reader pass a change that commits later: on SQLite, one writer at a time, `seq` is commit
//!   order; on PostgreSQL a reader only takes rows whose writing transaction is older than every
//!   transaction still running (`pg_snapshot_xmin`) and orders them by (transaction, seq), so
//!   rows committed later always sort after its cursor. A reader that keeps its cursor sees
//!   every change exactly once.
//! * **Writes under rules.** Reads, updates and deletes take a [`Filter`] (the caller's access
//!   rule, already resolved) that the record must pass, inside the same statement or
//!   transaction; a record that fails it is treated as missing.

use rusqlite::{Connection, Transaction, params, params_from_iter};
use serde_json::{Map, Value};

use homebase_entities::sql::{self, Dialect, Fragment, SqlParam};
use homebase_entities::{EntitySchema, Filter, ListQuery, Record, Schemas};

use crate::error::{Result, StoreError};
use crate::sqlite::Sqlite;
use crate::{Store, ids};

/// What [`Store::set_entity_schemas`] changed, by entity name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaChanges {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
}

impl SchemaChanges {
    /// What replacing the `stored` schemas by `rows` changes; both are `(key, name, schema)`,
    /// the key being the entity's case-folded name. Both backends decide it here.
    pub(crate) fn between(
        mut stored: Vec<(String, String, String)>,
        rows: &[(String, String, String)],
    ) -> SchemaChanges {
        let mut changes = SchemaChanges::default();
        for (key, name, schema) in rows {
            match stored.iter().position(|(k, _, _)| k == key) {
                Some(i) => {
                    let (_, old_name, old_schema) = stored.remove(i);
                    if old_name != *name || old_schema != *schema {
                        changes.updated.push(name.clone());
                    }
                }
                None => changes.created.push(name.clone()),
            }
        }
        changes.deleted = stored.into_iter().map(|(_, name, _)| name).collect();
        changes
    }
}

/// A record to create: its data (validated by the caller) and who made it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewRecord {
    pub data: Map<String, Value>,
    pub created_by: Option<String>,
    pub created_by_id: Option<String>,
    pub is_sample: bool,
}

/// A write that failed in the store, or that the caller's check refused.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError<E> {
    Store(StoreError),
    Rejected(E),
}

impl<E> From<StoreError> for WriteError<E> {
    fn from(error: StoreError) -> Self {
        WriteError::Store(error)
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<ChangeOp> {
        match text {
            "create" => Ok(ChangeOp::Create),
            "update" => Ok(ChangeOp::Update),
            "delete" => Ok(ChangeOp::Delete),
            other => Err(StoreError::Database(format!("A stored change has the operation '{other}'"))),
        }
    }
}

/// A position in the change outbox: the changes after it are the ones not read yet.
/// `ChangeCursor::default()` is the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ChangeCursor {
    /// The writing transaction (PostgreSQL; 0 on SQLite).
    pub tx: u64,
    pub seq: i64,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityChange {
    pub cursor: ChangeCursor,
    pub app_id: String,
    /// The entity's declared name.
    pub entity: String,
    pub record_id: String,
    pub operation: ChangeOp,
    /// The record after the write (`None` for a delete), as the API shows it.
    pub after: Option<Value>,
    /// The record before the write (`None` for a create).
    pub before: Option<Value>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// The most changes one [`Store::entity_changes`] call returns.
pub const MAX_CHANGES_READ: usize = 10_000;

/// The columns a record is read from, in this order.
pub(crate) const RECORD_COLUMNS: &str =
    "r.id, r.created_date, r.updated_date, r.created_by, r.created_by_id, r.is_sample, r.data";

/// The lowercased key an entity is stored under.
pub(crate) fn entity_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// A new record id: 24 hex characters, random.
fn new_record_id() -> String {
    ids::hex(&rand::random::<[u8; 12]>())
}

/// The indexes the declared scalar fields of `schemas` want: `(name, expression)` for
/// `dialect`.
pub(crate) fn field_indexes(dialect: Dialect, schemas: &Schemas) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for schema in schemas.iter() {
        for name in schema.properties.keys() {
            let Ok(path) = homebase_entities::FieldPath::parse(name) else { continue };
            if let Some(expr) = sql::index_expression(dialect, schema, &path) {
                let index = format!("entity_field_{}", &ids::sha256_hex(expr.as_bytes())[..16]);
                if !out.iter().any(|(n, _)| *n == index) {
                    out.push((index, expr));
                }
            }
        }
    }
    out
}

impl Store {
    /// Replaces the app's entity schemas with `schemas` (all of them: entities left out are
    /// deleted, their records kept). Names are compared ignoring case; an entity whose schema
    /// is unchanged is neither created nor updated.
    pub async fn set_entity_schemas(&self, app_id: &str, schemas: &Schemas) -> Result<SchemaChanges> {
        let rows: Vec<(String, String, String)> =
            schemas.iter().map(|s| (entity_key(&s.name), s.name.clone(), s.raw.to_string())).collect();
        let dialect = match &self.inner.backend {
            crate::Backend::Sqlite(_) => Dialect::Sqlite,
            crate::Backend::Postgres(_) => Dialect::Postgres,
        };
        let indexes = field_indexes(dialect, schemas);
        let (app, now) = (app_id.to_string(), ids::now_ms());
        on_backend!(self, db => db.set_entity_schemas(app, rows, indexes, now).await)
    }

    /// The app's entity schemas. A stored schema that no longer parses is left out, with a
    /// warning in the log.
    pub async fn entity_schemas(&self, app_id: &str) -> Result<Schemas> {
        let rows = on_backend!(self, db => db.entity_schemas(app_id.to_string()).await)?;
        let mut schemas = Schemas::default();
        for (name, text) in rows {
            let parsed = serde_json::from_str::<Value>(&text)
                .map_err(|e| e.to_string())
                .and_then(|raw| EntitySchema::parse(&name, &raw).map_err(|e| e.to_string()));
            match parsed {
                Ok(schema) => schemas.insert(schema),
                Err(e) => tracing::warn!(app_id, entity = name, "a stored entity schema is left out: {e}"),
            }
        }
        Ok(schemas)
    }

    /// Creates records (all or none), each with a new id and the current time, and their
    /// `create` changes.
    pub async fn create_records(
        &self,
        app_id: &str,
        schema: &EntitySchema,
        new: Vec<NewRecord>,
    ) -> Result<Vec<Record>> {
        let now = homebase_entities::record::iso_millis(ids::now_ms());
        let records: Vec<Record> = new
            .into_iter()
            .map(|n| Record {
                id: new_record_id(),
                created_date: now.clone(),
                updated_date: now.clone(),
                created_by: n.created_by,
                created_by_id: n.created_by_id,
                is_sample: n.is_sample,
                data: n.data,
            })
            .collect();
        if records.is_empty() {
            return Ok(records);
        }
        let (app, entity) = (app_id.to_string(), schema.name.clone());
        on_backend!(self, db => db.insert_records(app, entity, records).await)
    }

    /// The records `query` selects, in its order and page.
    pub async fn list_records(&self, app_id: &str, schema: &EntitySchema, query: &ListQuery) -> Result<Vec<Record>> {
        let (app, schema, query) = (app_id.to_string(), schema.clone(), query.clone());
        on_backend!(self, db => db.list_records(app, schema, query).await)
    }

    /// How many records pass `filter`.
    pub async fn count_records(&self, app_id: &str, schema: &EntitySchema, filter: &Filter) -> Result<u64> {
        let (app, schema, filter) = (app_id.to_string(), schema.clone(), filter.clone());
        on_backend!(self, db => db.count_records(app, schema, filter).await)
    }

    /// The record `id`, if it exists and passes `filter`.
    pub async fn get_record(
        &self,
        app_id: &str,
        schema: &EntitySchema,
        id: &str,
        filter: &Filter,
    ) -> Result<Option<Record>> {
        let by_id = id_filter(id).and(filter.clone());
        let query = ListQuery { filter: by_id, sort: homebase_entities::Sort::newest_first(), limit: Some(1), skip: 0 };
        Ok(self.list_records(app_id, schema, &query).await?.pop())
    }

    /// Updates the record `id` if it exists and passes `filter`: `change` gets the stored
    /// record and returns its new data (or refuses), inside the transaction, so concurrent
    /// updates of one record apply one after the other. Sets `updated_date` and appends the
    /// `update` change. `Ok(None)` when there is no such record.
    pub async fn update_record<E, F>(
        &self,
        app_id: &str,
        schema: &EntitySchema,
        id: &str,
        filter: &Filter,
        change: F,
    ) -> std::result::Result<Option<Record>, WriteError<E>>
    where
        E: Send + 'static,
        F: FnOnce(&Record) -> std::result::Result<Map<String, Value>, E> + Send + 'static,
    {
        let by_id = id_filter(id).and(filter.clone());
        let now = homebase_entities::record::iso_millis(ids::now_ms());
        let (app, schema) = (app_id.to_string(), schema.clone());
        on_backend!(self, db => db.update_record(app, schema, by_id, now, change).await)
    }

    /// Updates up to `limit` records that pass `filter` (in `id` order), all in one transaction:
    /// `change` gets each stored record and returns its new data, or refuses (and nothing is
    /// written). Sets `updated_date` and appends an `update` change each. Returns the updated
    /// records and whether more records passed the filter.
    pub async fn update_records<E, F>(
        &self,
        app_id: &str,
        schema: &EntitySchema,
        filter: &Filter,
        limit: u64,
        change: F,
    ) -> std::result::Result<(Vec<Record>, bool), WriteError<E>>
    where
        E: Send + 'static,
        F: FnMut(&Record) -> std::result::Result<Map<String, Value>, E> + Send + 'static,
    {
        let now = homebase_entities::record::iso_millis(ids::now_ms());
        let (app, schema, filter) = (app_id.to_string(), schema.clone(), filter.clone());
        on_backend!(self, db => db.update_records(app, schema, filter, limit.max(1), now, change).await)
    }

    /// Deletes the record `id` if it exists and passes `filter`, with its `delete` change;
    /// returns it.
    pub async fn delete_record(
        &self,
        app_id: &str,
        schema: &EntitySchema,
        id: &str,
        filter: &Filter,
    ) -> Result<Option<Record>> {
        let deleted = self.delete_records(app_id, schema, &id_filter(id).and(filter.clone())).await?;
        Ok(deleted.into_iter().next())
    }

    /// Deletes every record that passes `filter` (all in one transaction, a `delete` change
    /// each); returns them.
    pub async fn delete_records(&self, app_id: &str, schema: &EntitySchema, filter: &Filter) -> Result<Vec<Record>> {
        let (app, schema, filter) = (app_id.to_string(), schema.clone(), filter.clone());
        on_backend!(self, db => db.delete_records(app, schema, filter).await)
    }

    /// Up to `limit` (at most [`MAX_CHANGES_READ`]) committed changes after `after`, in order.
    /// A reader that passes the last one's cursor back gets each change once.
    pub async fn entity_changes(&self, after: ChangeCursor, limit: usize) -> Result<Vec<EntityChange>> {
        let limit = limit.clamp(1, MAX_CHANGES_READ) as i64;
        on_backend!(self, db => db.entity_changes(after, limit).await)
    }
}

fn id_filter(id: &str) -> Filter {
    Filter::Field(
        homebase_entities::FieldPath::parse("id").expect("a path"),
        homebase_entities::Test::Eq(homebase_entities::Scalar::Text(id.to_string())),
    )
}

/// `SELECT … FROM entity_records r WHERE app_id = ?1 AND entity = ?2 AND <filter>`, for
/// `dialect`, with the filter's parameters (numbered from 3).
pub(crate) fn select(dialect: Dialect, columns: &str, schema: &EntitySchema, filter: &Filter) -> Fragment {
    let fragment = sql::where_clause(dialect, filter, Some(schema), 3);
    let (a, e) = match dialect {
        Dialect::Sqlite => ("?1", "?2"),
        Dialect::Postgres => ("$1", "$2"),
    };
    Fragment {
        sql: format!(
            "SELECT {columns} FROM entity_records r WHERE r.app_id = {a} AND r.entity = {e} AND {}",
            fragment.sql
        ),
        params: fragment.params,
    }
}

// ---- SQLite ----

/// Registers the SQL functions the compiled queries call (`hb_regexp`).
pub(crate) fn register_functions(conn: &Connection) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "hb_regexp",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let pattern: String = ctx.get(0)?;
            let ignore_case: bool = ctx.get(1)?;
            let text: Option<String> = ctx.get(2).ok();
            Ok(text.is_some_and(|t| homebase_entities::regex::is_match(&pattern, ignore_case, &t)))
        },
    )?;
    Ok(())
}

fn sqlite_value(param: SqlParam) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match param {
        SqlParam::Text(t) => V::Text(t),
        SqlParam::Int(i) => V::Integer(i),
        SqlParam::Real(f) => V::Real(f),
        SqlParam::Bool(b) => V::Integer(i64::from(b)),
    }
}

fn sqlite_params(app: &str, entity: &str, params: Vec<SqlParam>) -> Vec<rusqlite::types::Value> {
    let mut out = vec![rusqlite::types::Value::Text(app.to_string()), rusqlite::types::Value::Text(entity.to_string())];
    out.extend(params.into_iter().map(sqlite_value));
    out
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Record, String)> {
    Ok((
        Record {
            id: row.get(0)?,
            created_date: row.get(1)?,
            updated_date: row.get(2)?,
            created_by: row.get(3)?,
            created_by_id: row.get(4)?,
            is_sample: row.get::<_, i64>(5)? != 0,
            data: Map::new(),
        },
        row.get(6)?,
    ))
}

pub(crate) fn parse_data(text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Database("A stored record's data is not a JSON object".into())),
    }
}

fn query_records(conn: &Connection, statement: &str, params: Vec<rusqlite::types::Value>) -> Result<Vec<Record>> {
    let mut stmt = conn.prepare_cached(statement)?;
    let rows = stmt.query_map(params_from_iter(params), record_from_row)?;
    let mut out = Vec::new();
    for row in rows {
        let (mut record, data) = row?;
        record.data = parse_data(&data)?;
        out.push(record);
    }
    Ok(out)
}

fn insert_change(
    tx: &Transaction<'_>,
    app: &str,
    entity: &str,
    id: &str,
    op: ChangeOp,
    after: Option<&Record>,
    before: Option<&Record>,
) -> Result<()> {
    let json = |r: Option<&Record>| r.map(|r| r.to_json().to_string());
    tx.prepare_cached(
        "INSERT INTO entity_changes (app_id, entity, record_id, operation, after, before, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![app, entity, id, op.as_str(), json(after), json(before), ids::now_ms()])?;
    Ok(())
}

impl Sqlite {
    pub(crate) async fn set_entity_schemas(
        &self,
        app_id: String,
        rows: Vec<(String, String, String)>,
        indexes: Vec<(String, String)>,
        now: i64,
    ) -> Result<SchemaChanges> {
        self.write("set_entity_schemas", move |tx| {
            crate::sqlite::ensure_app(tx, &app_id)?;
            let stored: Vec<(String, String, String)> = {
                let mut stmt = tx.prepare("SELECT entity, name, schema FROM entity_schemas WHERE app_id = ?1")?;
                stmt.query_map([&app_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let changes = SchemaChanges::between(stored, &rows);
            tx.execute("DELETE FROM entity_schemas WHERE app_id = ?1", [&app_id])?;
            for (key, name, schema) in &rows {
                tx.execute(
                    "INSERT INTO entity_schemas (app_id, entity, name, schema, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![app_id, key, name, schema, now],
                )?;
            }
            for (index, expr) in &indexes {
                tx.execute_batch(&format!(
                    "CREATE INDEX IF NOT EXISTS {index} ON entity_records (app_id, entity, {expr}, id)"
                ))?;
            }
            Ok((changes, true))
        })
        .await
    }

    pub(crate) async fn entity_schemas(&self, app_id: String) -> Result<Vec<(String, String)>> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT name, schema FROM entity_schemas WHERE app_id = ?1 ORDER BY entity")?;
            let rows = stmt.query_map([&app_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(crate) async fn insert_records(
        &self,
        app_id: String,
        entity: String,
        records: Vec<Record>,
    ) -> Result<Vec<Record>> {
        self.write("create_records", move |tx| {
            crate::sqlite::ensure_app(tx, &app_id)?;
            let key = entity_key(&entity);
            for record in &records {
                tx.prepare_cached(
                    "INSERT INTO entity_records (app_id, entity, id, created_date, updated_date, created_by, created_by_id,
                     is_sample, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    app_id,
                    key,
                    record.id,
                    record.created_date,
                    record.updated_date,
                    record.created_by,
                    record.created_by_id,
                    record.is_sample,
                    Value::Object(record.data.clone()).to_string()
                ])?;
                insert_change(tx, &app_id, &entity, &record.id, ChangeOp::Create, Some(record), None)?;
            }
            Ok((records, true))
        })
        .await
    }

    pub(crate) async fn list_records(
        &self,
        app_id: String,
        schema: EntitySchema,
        query: ListQuery,
    ) -> Result<Vec<Record>> {
        self.read(move |conn| {
            let base = select(Dialect::Sqlite, RECORD_COLUMNS, &schema, &query.filter);
            let n = base.params.len() + 2;
            let statement = format!(
                "{} ORDER BY {} LIMIT ?{} OFFSET ?{}",
                base.sql,
                sql::order_by(Dialect::Sqlite, &query.sort, Some(&schema)),
                n + 1,
                n + 2
            );
            let mut params = sqlite_params(&app_id, &entity_key(&schema.name), base.params);
            params.push(rusqlite::types::Value::Integer(query.limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64)));
            params.push(rusqlite::types::Value::Integer(query.skip.min(i64::MAX as u64) as i64));
            query_records(conn, &statement, params)
        })
        .await
    }

    pub(crate) async fn count_records(&self, app_id: String, schema: EntitySchema, filter: Filter) -> Result<u64> {
        self.read(move |conn| {
            let base = select(Dialect::Sqlite, "COUNT(*)", &schema, &filter);
            let params = sqlite_params(&app_id, &entity_key(&schema.name), base.params);
            let count: i64 = conn.prepare_cached(&base.sql)?.query_row(params_from_iter(params), |r| r.get(0))?;
            Ok(count as u64)
        })
        .await
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
        let outcome = self
            .write("update_record", move |tx| {
                let key = entity_key(&schema.name);
                let base = select(Dialect::Sqlite, RECORD_COLUMNS, &schema, &filter);
                let Some(before) = query_records(tx, &base.sql, sqlite_params(&app_id, &key, base.params))?.pop() else {
                    return Ok((Ok(None), false));
                };
                let data = match change(&before) {
                    Ok(data) => data,
                    Err(e) => return Ok((Err(e), false)),
                };
                let after = Record { data, updated_date: now, ..before.clone() };
                tx.prepare_cached(
                    "UPDATE entity_records SET data = ?4, updated_date = ?5 WHERE app_id = ?1 AND entity = ?2 AND id = ?3",
                )?
                .execute(params![app_id, key, after.id, Value::Object(after.data.clone()).to_string(), after.updated_date])?;
                insert_change(tx, &app_id, &schema.name, &after.id, ChangeOp::Update, Some(&after), Some(&before))?;
                Ok((Ok(Some(after)), true))
            })
            .await?;
        outcome.map_err(WriteError::Rejected)
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
        let outcome = self
            .write("update_records", move |tx| {
                let key = entity_key(&schema.name);
                let base = select(Dialect::Sqlite, RECORD_COLUMNS, &schema, &filter);
                let n = base.params.len() + 2;
                let statement = format!("{} ORDER BY r.id LIMIT ?{}", base.sql, n + 1);
                let mut params = sqlite_params(&app_id, &key, base.params);
                params.push(rusqlite::types::Value::Integer(limit.saturating_add(1).min(i64::MAX as u64) as i64));
                let mut found = query_records(tx, &statement, params)?;
                let more = found.len() as u64 > limit;
                found.truncate(limit as usize);
                let mut updated = Vec::with_capacity(found.len());
                for before in &found {
                    let data = match change(before) {
                        Ok(data) => data,
                        Err(e) => return Ok((Err(e), false)),
                    };
                    let after = Record { data, updated_date: now.clone(), ..before.clone() };
                    tx.prepare_cached(
                        "UPDATE entity_records SET data = ?4, updated_date = ?5 WHERE app_id = ?1 AND entity = ?2 AND id = ?3",
                    )?
                    .execute(params![app_id, key, after.id, Value::Object(after.data.clone()).to_string(), after.updated_date])?;
                    insert_change(tx, &app_id, &schema.name, &after.id, ChangeOp::Update, Some(&after), Some(before))?;
                    updated.push(after);
                }
                let wrote = !updated.is_empty();
                Ok((Ok((updated, more)), wrote))
            })
            .await?;
        outcome.map_err(WriteError::Rejected)
    }

    pub(crate) async fn delete_records(
        &self,
        app_id: String,
        schema: EntitySchema,
        filter: Filter,
    ) -> Result<Vec<Record>> {
        self.write("delete_records", move |tx| {
            let key = entity_key(&schema.name);
            let base = select(Dialect::Sqlite, RECORD_COLUMNS, &schema, &filter);
            let records = query_records(tx, &base.sql, sqlite_params(&app_id, &key, base.params))?;
            for record in &records {
                tx.prepare_cached("DELETE FROM entity_records WHERE app_id = ?1 AND entity = ?2 AND id = ?3")?
                    .execute(params![app_id, key, record.id])?;
                insert_change(tx, &app_id, &schema.name, &record.id, ChangeOp::Delete, None, Some(record))?;
            }
            let wrote = !records.is_empty();
            Ok((records, wrote))
        })
        .await
    }

    pub(crate) async fn entity_changes(&self, after: ChangeCursor, limit: i64) -> Result<Vec<EntityChange>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, app_id, entity, record_id, operation, after, before, created_at FROM entity_changes
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after.seq, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, app_id, entity, record_id, op, after, before, at) = row?;
                let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
                out.push(EntityChange {
                    cursor: ChangeCursor { tx: 0, seq },
                    app_id,
                    entity,
                    record_id,
                    operation: ChangeOp::parse(&op)?,
                    after: json(after),
                    before: json(before),
                    at,
                });
            }
            Ok(out)
        })
        .await
    }
}

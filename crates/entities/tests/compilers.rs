//! Both SQL compilers, run on real databases (SQLite in memory, PostgreSQL in a schema of this
//! test's own), against a plain evaluator of the query language written here from its
//! documented semantics (`homebase_entities::query`), on random records and random queries with
//! random sorts and pages. The crate's own in-memory matcher (`Filter::matches`) is checked
//! against the same evaluator.

use std::cmp::Ordering;
use std::sync::Mutex;

use homebase_entities::sql::{self, Dialect, SqlParam};
use homebase_entities::{EntitySchema, Filter, Sort};
use homebase_store::pg_testing::TestSchema;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

// ---- the plain evaluator ----

fn resolve<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(record, |value, key| value.as_object()?.get(key))
}

fn candidates(value: Option<&Value>) -> Vec<&Value> {
    match value {
        None => vec![],
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => false,
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

fn equal(value: Option<&Value>, operand: &Value) -> bool {
    if operand.is_null() {
        return matches!(value, None | Some(Value::Null));
    }
    candidates(value).into_iter().any(|c| same(c, operand))
}

fn eval(query: &Value, record: &Value) -> bool {
    query.as_object().unwrap().iter().all(|(key, cond)| match key.as_str() {
        "$and" => cond.as_array().unwrap().iter().all(|q| eval(q, record)),
        "$or" => cond.as_array().unwrap().iter().any(|q| eval(q, record)),
        "$nor" => !cond.as_array().unwrap().iter().any(|q| eval(q, record)),
        path => eval_field(resolve(record, path), cond),
    })
}

fn eval_field(value: Option<&Value>, cond: &Value) -> bool {
    match cond {
        Value::Object(ops) if ops.keys().all(|k| k.starts_with('$')) => {
            ops.iter().all(|(op, operand)| eval_op(value, op, operand, ops.get("$options")))
        }
        Value::Array(items) => items.iter().any(|item| equal(value, item)),
        scalar => equal(value, scalar),
    }
}

fn eval_op(value: Option<&Value>, op: &str, operand: &Value, options: Option<&Value>) -> bool {
    let compare =
        |want: fn(Ordering) -> bool| candidates(value).into_iter().any(|c| order(c, operand).is_some_and(want));
    match op {
        "$eq" => equal(value, operand),
        "$ne" => !equal(value, operand),
        "$gt" => compare(|o| o == Ordering::Greater),
        "$gte" => compare(|o| o != Ordering::Less),
        "$lt" => compare(|o| o == Ordering::Less),
        "$lte" => compare(|o| o != Ordering::Greater),
        "$in" => operand.as_array().unwrap().iter().any(|x| equal(value, x)),
        "$nin" => !operand.as_array().unwrap().iter().any(|x| equal(value, x)),
        "$exists" => value.is_some() == operand.as_bool().unwrap(),
        "$options" => true,
        "$regex" => {
            let re = regex::RegexBuilder::new(operand.as_str().unwrap())
                .case_insensitive(options.and_then(Value::as_str) == Some("i"))
                .dot_matches_new_line(true)
                .build()
                .unwrap();
            candidates(value).into_iter().any(|c| c.as_str().is_some_and(|s| re.is_match(s)))
        }
        "$all" => {
            let items = operand.as_array().unwrap();
            !items.is_empty() && items.iter().all(|x| equal(value, x))
        }
        "$size" => matches!(value, Some(Value::Array(a)) if a.len() as u64 == operand.as_u64().unwrap()),
        "$elemMatch" => match value {
            Some(Value::Array(items)) => items.iter().any(|item| {
                let ops = operand.as_object().unwrap();
                if ops.keys().all(|k| k.starts_with('$')) {
                    eval_field(Some(item), operand)
                } else {
                    eval(operand, item)
                }
            }),
            _ => false,
        },
        "$not" => !eval_field(value, operand),
        other => panic!("the generator made {other}"),
    }
}

fn rank(value: Option<&Value>) -> u8 {
    match value {
        None | Some(Value::Null) => 0,
        Some(Value::Number(_)) => 1,
        Some(Value::String(_)) => 2,
        Some(Value::Object(_)) => 3,
        Some(Value::Array(_)) => 4,
        Some(Value::Bool(_)) => 5,
    }
}

fn sort_key_cmp(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x), Some(y)) => order(x, y).unwrap_or(Ordering::Equal),
        _ => Ordering::Equal,
    })
}

/// The ids the query selects, in order, paged.
fn expected(records: &[Value], query: &Value, sort: &[(String, bool)], limit: u64, skip: u64) -> Vec<String> {
    let mut hits: Vec<&Value> = records.iter().filter(|r| eval(query, r)).collect();
    let last_desc = sort.last().is_some_and(|(_, d)| *d);
    hits.sort_by(|a, b| {
        for (path, desc) in sort {
            let o = sort_key_cmp(resolve(a, path), resolve(b, path));
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = a["id"].as_str().unwrap().cmp(b["id"].as_str().unwrap());
        if last_desc { o.reverse() } else { o }
    });
    hits.into_iter().skip(skip as usize).take(limit as usize).map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

// ---- generators ----

fn text() -> impl Strategy<Value = Value> {
    prop::sample::select(vec!["a", "b", "ab", "B", "", "ba"]).prop_map(|s| json!(s))
}

fn number() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![json!(-1), json!(0), json!(1), json!(1.5), json!(2), json!(10), json!(2.0)])
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![text(), number(), any::<bool>().prop_map(Value::Bool)]
}

fn anything() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => Just(Value::Null),
        2 => prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        1 => scalar().prop_map(|x| json!({"x": x})),
        1 => prop::collection::vec(scalar().prop_map(|x| json!({"x": x})), 0..3).prop_map(Value::Array),
    ]
}

fn maybe(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![3 => value.prop_map(Some), 1 => Just(Some(Value::Null)), 1 => Just(None)]
}

fn record(index: usize) -> impl Strategy<Value = Value> {
    let declared = (
        maybe(text()),
        maybe(number()),
        maybe(any::<bool>().prop_map(Value::Bool)),
        maybe(prop::collection::vec(scalar(), 0..4).prop_map(Value::Array)),
    );
    let rest = (
        maybe(maybe(number()).prop_map(|x| match x {
            Some(x) => json!({"x": x}),
            None => json!({}),
        })),
        maybe(anything()),
        prop::sample::select(vec!["2024-01-01T00:00:00.000Z", "2024-06-01T12:00:00.000Z", "2025-01-01T00:00:00.000Z"]),
        prop::option::of(prop::sample::select(vec!["ann@x.test", "bob@x.test"])),
        any::<bool>(),
    );
    (declared, rest).prop_map(move |((s, n, b, tags), (obj, u, date, by, sample))| {
        let mut map = Map::new();
        for (key, value) in [("s", s), ("n", n), ("b", b), ("tags", tags), ("obj", obj), ("u", u)] {
            if let Some(value) = value {
                map.insert(key.into(), value);
            }
        }
        map.insert("id".into(), json!(format!("r{index:02}")));
        map.insert("created_date".into(), json!(date));
        map.insert("updated_date".into(), json!(date));
        map.insert("created_by".into(), json!(by));
        map.insert("created_by_id".into(), json!(by.map(|b| format!("id-{b}"))));
        map.insert("is_sample".into(), json!(sample));
        Value::Object(map)
    })
}

fn records() -> impl Strategy<Value = Vec<Value>> {
    (0usize..14).prop_flat_map(|n| (0..n).map(record).collect::<Vec<_>>())
}

const FIELDS: &[&str] = &[
    "s",
    "n",
    "b",
    "tags",
    "obj",
    "obj.x",
    "u",
    "u.x",
    "missing",
    "id",
    "created_by",
    "created_by_id",
    "created_date",
    "is_sample",
    "id.x",
];

fn operand_cond() -> impl Strategy<Value = Value> {
    let regex = prop::sample::select(vec!["^a", "b$", "a|B", "^$", "[ab]+", "^.$"]);
    prop_oneof![
        scalar(),
        Just(Value::Null),
        prop::collection::vec(prop_oneof![scalar(), Just(Value::Null)], 0..3).prop_map(Value::Array),
        scalar().prop_map(|v| json!({"$eq": v})),
        scalar().prop_map(|v| json!({"$ne": v})),
        Just(json!({"$ne": null})),
        (prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]), prop_oneof![text(), number()])
            .prop_map(|(op, v)| json!({op: v})),
        prop::collection::vec(scalar(), 0..3).prop_map(|v| json!({"$in": v})),
        prop::collection::vec(scalar(), 0..3).prop_map(|v| json!({"$nin": v})),
        any::<bool>().prop_map(|b| json!({"$exists": b})),
        (regex, any::<bool>()).prop_map(|(r, i)| if i {
            json!({"$regex": r, "$options": "i"})
        } else {
            json!({"$regex": r})
        }),
        prop::collection::vec(scalar(), 0..3).prop_map(|v| json!({"$all": v})),
        (0u64..4).prop_map(|n| json!({"$size": n})),
        prop_oneof![text(), number()].prop_map(|v| json!({"$elemMatch": {"$gte": v}})),
        scalar().prop_map(|v| json!({"$elemMatch": {"x": v}})),
        (prop::sample::select(vec!["$gt", "$lt"]), number()).prop_map(|(op, v)| json!({"$not": {op: v}})),
        (number(), number()).prop_map(|(a, b)| json!({"$gte": a, "$lt": b})),
    ]
}

fn query() -> impl Strategy<Value = Value> {
    let leaf = (prop::sample::select(FIELDS.to_vec()), operand_cond()).prop_map(|(f, c)| json!({f: c}));
    leaf.prop_recursive(3, 12, 3, |inner| {
        (prop::sample::select(vec!["$and", "$or", "$nor"]), prop::collection::vec(inner.clone(), 1..3), inner).prop_map(
            |(op, list, other)| {
                let mut q = other.as_object().unwrap().clone();
                q.insert(op.into(), Value::Array(list));
                Value::Object(q)
            },
        )
    })
}

fn sort() -> impl Strategy<Value = Vec<(String, bool)>> {
    prop::collection::vec((prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string), any::<bool>()), 1..3)
}

// ---- the databases ----

fn schema() -> EntitySchema {
    EntitySchema::parse(
        "T",
        &json!({"properties": {
            "s": {"type": "string"}, "n": {"type": "number"}, "b": {"type": "boolean"},
            "tags": {"type": "array"}, "obj": {"type": "object", "properties": {"x": {"type": "number"}}}
        }}),
    )
    .unwrap()
}

fn data_of(record: &Value) -> String {
    let mut map = record.as_object().unwrap().clone();
    for key in homebase_entities::BUILT_IN_FIELDS {
        map.remove(key);
    }
    Value::Object(map).to_string()
}

fn sqlite() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE records (id TEXT PRIMARY KEY, created_date TEXT NOT NULL, updated_date TEXT NOT NULL,
         created_by TEXT, created_by_id TEXT, is_sample INTEGER NOT NULL, data TEXT NOT NULL)",
    )
    .unwrap();
    conn.create_scalar_function("hb_regexp", 3, rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        let pattern: String = ctx.get(0)?;
        let ci: bool = ctx.get(1)?;
        let text: Option<String> = ctx.get(2).ok();
        Ok(text.is_some_and(|t| homebase_entities::regex::is_match(&pattern, ci, &t)))
    })
    .unwrap();
    conn
}

fn sqlite_run(
    conn: &rusqlite::Connection,
    records: &[Value],
    filter: &Filter,
    sort: &Sort,
    limit: u64,
    skip: u64,
) -> Result<Vec<String>, String> {
    conn.execute("DELETE FROM records", []).unwrap();
    for r in records {
        conn.execute(
            "INSERT INTO records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                r["id"].as_str(),
                r["created_date"].as_str(),
                r["updated_date"].as_str(),
                r["created_by"].as_str(),
                r["created_by_id"].as_str(),
                r["is_sample"].as_bool(),
                data_of(r)
            ],
        )
        .unwrap();
    }
    let schema = schema();
    let fragment = sql::where_clause(Dialect::Sqlite, filter, Some(&schema), 1);
    let n = fragment.params.len();
    let statement = format!(
        "SELECT r.id FROM records r WHERE {} ORDER BY {} LIMIT ?{} OFFSET ?{}",
        fragment.sql,
        sql::order_by(Dialect::Sqlite, sort, Some(&schema)),
        n + 1,
        n + 2
    );
    let mut params: Vec<Box<dyn rusqlite::ToSql>> = fragment
        .params
        .into_iter()
        .map(|p| -> Box<dyn rusqlite::ToSql> {
            match p {
                SqlParam::Text(t) => Box::new(t),
                SqlParam::Int(i) => Box::new(i),
                SqlParam::Real(f) => Box::new(f),
                SqlParam::Bool(b) => Box::new(b),
            }
        })
        .collect();
    params.push(Box::new(limit as i64));
    params.push(Box::new(skip as i64));
    let mut stmt = conn.prepare(&statement).map_err(|e| format!("{e}: {statement}"))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params.iter()), |row| row.get::<_, String>(0))
        .map_err(|e| format!("{e}: {statement}"))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| format!("{e}: {statement}"))
}

async fn pg_connect(schema: &TestSchema) -> tokio_postgres::Client {
    let url = schema.url.replace("&pool_size=4", "");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE records (id TEXT COLLATE \"C\" PRIMARY KEY, created_date TEXT COLLATE \"C\" NOT NULL,
             updated_date TEXT COLLATE \"C\" NOT NULL, created_by TEXT COLLATE \"C\", created_by_id TEXT COLLATE \"C\",
             is_sample BOOLEAN NOT NULL, data JSONB NOT NULL)",
        )
        .await
        .unwrap();
    client
}

async fn pg_run(
    client: &tokio_postgres::Client,
    records: &[Value],
    filter: &Filter,
    sort: &Sort,
    limit: u64,
    skip: u64,
) -> Result<Vec<String>, String> {
    client.execute("DELETE FROM records", &[]).await.unwrap();
    for r in records {
        client
            .execute(
                "INSERT INTO records VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)",
                &[
                    &r["id"].as_str(),
                    &r["created_date"].as_str(),
                    &r["updated_date"].as_str(),
                    &r["created_by"].as_str(),
                    &r["created_by_id"].as_str(),
                    &r["is_sample"].as_bool(),
                    &data_of(r),
                ],
            )
            .await
            .unwrap();
    }
    let schema = schema();
    let fragment = sql::where_clause(Dialect::Postgres, filter, Some(&schema), 1);
    let n = fragment.params.len();
    let statement = format!(
        "SELECT r.id FROM records r WHERE {} ORDER BY {} LIMIT ${}::bigint OFFSET ${}::bigint",
        fragment.sql,
        sql::order_by(Dialect::Postgres, sort, Some(&schema)),
        n + 1,
        n + 2
    );
    let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = fragment
        .params
        .into_iter()
        .map(|p| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
            match p {
                SqlParam::Text(t) => Box::new(t),
                SqlParam::Int(i) => Box::new(i),
                SqlParam::Real(f) => Box::new(f),
                SqlParam::Bool(b) => Box::new(b),
            }
        })
        .collect();
    params.push(Box::new(limit as i64));
    params.push(Box::new(skip as i64));
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
    let rows = client.query(&statement, &refs).await.map_err(|e| format!("{e:?}: {statement}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[test]
fn both_compilers_agree_with_the_plain_evaluator() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let pg_schema = runtime.block_on(TestSchema::new());
    let client = runtime.block_on(pg_connect(&pg_schema));
    let conn = Mutex::new(sqlite());
    let cases = std::env::var("HOMEBASE_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (records(), prop::collection::vec((query(), sort(), 0u64..12, 0u64..4), 1..4));
    let result = runner.run(&strategy, |(records, queries)| {
        for (query, sort_keys, limit, skip) in queries {
            let filter = Filter::parse(&query).map_err(|e| TestCaseError::fail(format!("{query}: {e}")))?;
            let text: Vec<String> =
                sort_keys.iter().map(|(f, d)| format!("{}{f}", if *d { "-" } else { "" })).collect();
            let sort = Sort::parse(&text.join(",")).unwrap();
            let want = expected(&records, &query, &sort_keys, limit, skip);
            for record in &records {
                prop_assert_eq!(filter.matches(record), eval(&query, record), "matcher: {} on {}", query, record);
            }
            let got = sqlite_run(&conn.lock().unwrap(), &records, &filter, &sort, limit, skip)
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(&got, &want, "SQLite: q={} sort={:?} limit={} skip={}", query, text, limit, skip);
            let got = runtime
                .block_on(pg_run(&client, &records, &filter, &sort, limit, skip))
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(&got, &want, "PostgreSQL: q={} sort={:?} limit={} skip={}", query, text, limit, skip);
        }
        Ok(())
    });
    drop(client);
    if let Err(e) = result {
        panic!("{e}");
    }
}

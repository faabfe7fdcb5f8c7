//! `entities`: what app data costs in the store, on SQLite and (with `--postgres`) PostgreSQL,
//! side by side: inserting `--records` records (bulks of 500, then single creates), and the
//! median time of an indexed equality filter, an indexed range filter, a filter no index
//! serves (a regular expression), a sort by a declared field with a limit, the default sort
//! (newest first) with a limit, and a count. Store level, no HTTP: the floor under the records
//! API. Prints a Markdown table.
//!
//! `cargo run --release -p homebase-bench --bin entities -- --postgres 'postgres://…?options=-csearch_path%3Dbench'`
//! (the schema must exist and should be empty).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use homebase_entities::{Filter, ListQuery, Schemas, Sort};
use homebase_store::{NewRecord, Store};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Records to insert.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Single creates to time after the bulk insert.
    #[arg(long, default_value_t = 2_000)]
    creates: usize,
    /// Runs per query (the median is reported).
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// A PostgreSQL URL (its schema empty) to measure too.
    #[arg(long)]
    postgres: Option<String>,
}

struct Row {
    what: &'static str,
    values: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut stores = vec![("SQLite", Store::open_sqlite(dir.path().join("bench.db")).await?)];
    if let Some(url) = &args.postgres {
        stores.push(("PostgreSQL", Store::open_postgres(url).await.context("opening PostgreSQL")?));
    }
    let mut rows: Vec<Row> = Vec::new();
    for (i, (name, store)) in stores.iter().enumerate() {
        eprintln!("{name}: inserting {} records…", args.records);
        for (j, (what, value)) in measure(store, &args).await?.into_iter().enumerate() {
            if i == 0 {
                rows.push(Row { what, values: Vec::new() });
            }
            rows[j].values.push(value);
        }
    }
    let names: Vec<&str> = stores.iter().map(|(n, _)| *n).collect();
    println!("| {} records | {} |", args.records, names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for row in rows {
        println!("| {} | {} |", row.what, row.values.join(" | "));
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn median<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f().await?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

async fn measure(store: &Store, args: &Args) -> anyhow::Result<Vec<(&'static str, String)>> {
    let app = store.create_app("bench").await?;
    let raw = json!({"properties": {
        "title": {"type": "string"}, "status": {"type": "string"}, "n": {"type": "number"}, "done": {"type": "boolean"}
    }});
    let schemas = Schemas::parse([("Task", &raw)])?;
    store.set_entity_schemas(&app.id, &schemas).await?;
    let task = schemas.get("Task").context("the schema")?.clone();
    let record = |i: usize| NewRecord {
        data:
            json!({"title": format!("t{i:06}"), "status": format!("s{}", i % 50), "n": i, "done": i.is_multiple_of(2)})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        created_by: Some(format!("user{}@example.test", i % 100)),
        ..Default::default()
    };
    let mut out = Vec::new();
    let start = Instant::now();
    for chunk in (0..args.records).collect::<Vec<_>>().chunks(500) {
        store.create_records(&app.id, &task, chunk.iter().map(|i| record(*i)).collect()).await?;
    }
    let elapsed = start.elapsed();
    out.push(("bulk insert (500 per call)", format!("{:.0} records/s", args.records as f64 / elapsed.as_secs_f64())));
    let start = Instant::now();
    for i in 0..args.creates {
        store.create_records(&app.id, &task, vec![record(args.records + i)]).await?;
    }
    out.push((
        "single creates, one after another",
        format!("{:.0} /s", args.creates as f64 / start.elapsed().as_secs_f64()),
    ));

    let list = |query: serde_json::Value, sort: &str, limit: u64| {
        let (store, app, task) = (store.clone(), app.id.clone(), task.clone());
        let query = ListQuery {
            filter: Filter::parse(&query).unwrap(),
            sort: Sort::parse(sort).unwrap(),
            limit: Some(limit),
            skip: 0,
        };
        move || {
            let (store, app, task, query) = (store.clone(), app.clone(), task.clone(), query.clone());
            async move {
                store.list_records(&app, &task, &query).await?;
                Ok(())
            }
        }
    };
    let runs = args.runs;
    out.push((
        "indexed equality `{status}` (2% match), limit 50",
        ms(median(runs, list(json!({"status": "s7"}), "-created_date", 50)).await?),
    ));
    out.push((
        "indexed range `{n: {$gte, $lt}}`, limit 100",
        ms(median(runs, list(json!({"n": {"$gte": 5000, "$lt": 5100}}), "n", 100)).await?),
    ));
    out.push((
        "built-in `{created_by}`, limit 50",
        ms(median(runs, list(json!({"created_by": "user7@example.test"}), "-created_date", 50)).await?),
    ));
    out.push(("sort by a declared field, limit 50", ms(median(runs, list(json!({}), "-n", 50)).await?)));
    out.push(("newest first, limit 50", ms(median(runs, list(json!({}), "-created_date", 50)).await?)));
    out.push((
        "no index: `$regex` on title, limit 50",
        ms(median(runs.min(20), list(json!({"title": {"$regex": "^t0999"}}), "-created_date", 50)).await?),
    ));
    let count = {
        let (store, app, task) = (store.clone(), app.id.clone(), task.clone());
        let filter = Filter::parse(&json!({"status": "s7"})).unwrap();
        move || {
            let (store, app, task, filter) = (store.clone(), app.clone(), task.clone(), filter.clone());
            async move {
                store.count_records(&app, &task, &filter).await?;
                Ok(())
            }
        }
    };
    out.push(("count `{status}`", ms(median(runs, count).await?)));
    Ok(out)
}

//! `homebase apps list`: the apps the key may see (all of them for an admin key).

use clap::Args;
use serde_json::{Value, json};

use crate::api::Api;
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::{self, TargetArgs};

#[derive(Debug, Args)]
pub struct ListArgs {}

pub async fn run(_args: ListArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = target::optional_project(target_args)?;
    let target = target::target(target_args, project.as_ref())?;
    let apps: Value = Api::new(&target)?.get("/api/apps").await.map_err(|e| e.into_anyhow())?;
    let apps = apps.as_array().cloned().unwrap_or_default();
    if global.json {
        output::json_line(&json!({ "apps": apps }));
        return Ok(());
    }
    if apps.is_empty() {
        println!("No apps on {}. Create one with `homebase apps create NAME`.", target.url.value);
        return Ok(());
    }
    let linked = project.as_ref().and_then(|p| p.app_id.clone());
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|app| {
            let id = app["id"].as_str().unwrap_or_default();
            let mark = if linked.as_deref() == Some(id) { " (this project)" } else { "" };
            vec![
                id.to_string(),
                format!("{}{mark}", app["name"].as_str().unwrap_or_default()),
                app["created_at"].as_i64().map(output::time_ms).unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["ID", "NAME", "CREATED"], &rows);
    Ok(())
}

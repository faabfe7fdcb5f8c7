//! `homebase functions list`: the app's deployed functions. With `--json`, the server's answer
//! `{functions: [{name, deployment_id, entry, files, automations}]}` as one line.

use clap::Args;
use serde_json::Value;

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct ListArgs {}

pub async fn run(_args: ListArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (api, app_id) = Api::for_app(target_args)?;
    let app_id = app_id.as_str();
    let list = api.get(&Api::function_path(app_id, None, "")).await.map_err(ApiError::into_anyhow)?;
    if global.json {
        output::json_line(&list);
        return Ok(());
    }
    let functions = list["functions"].as_array().cloned().unwrap_or_default();
    if functions.is_empty() {
        println!("App {app_id} has no functions. Deploy some with `homebase functions deploy`.");
        return Ok(());
    }
    let count = |value: &Value| value.as_array().map_or(0, Vec::len).to_string();
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            vec![
                f["name"].as_str().unwrap_or_default().to_string(),
                f["deployment_id"].as_str().unwrap_or_default().to_string(),
                count(&f["files"]),
                count(&f["automations"]),
            ]
        })
        .collect();
    output::table(&["NAME", "DEPLOYMENT", "FILES", "AUTOMATIONS"], &rows);
    Ok(())
}

//! `homebase secrets list`: the names of the app's secrets, sorted. With `--json`,
//! `{"secrets": [names]}` as one line. Values are never shown.

use clap::Args;
use serde_json::json;

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct ListArgs {}

pub async fn run(_args: ListArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (api, app_id) = Api::for_app(target_args)?;
    let app_id = app_id.as_str();
    let answer = api.get(&super::secrets_path(app_id)).await.map_err(ApiError::into_anyhow)?;
    // Only the keys are read: whatever the server sends as values stays unprinted.
    let mut names: Vec<String> = answer.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    names.sort();
    if global.json {
        crate::output::json_line(&json!({ "secrets": names }));
    } else if names.is_empty() {
        println!("App {app_id} has no secrets. Set some with `homebase secrets set NAME=VALUE`.");
    } else {
        for name in names {
            println!("{name}");
        }
    }
    Ok(())
}

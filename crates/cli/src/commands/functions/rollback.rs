//! `homebase functions rollback NAME [--to DEPLOYMENT_ID]`: makes an earlier deployment of a
//! function active again (default: the one before the active one) and prints the now-active id.
//! `--to` takes a full id or an unambiguous start of one from `homebase functions deployments`.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The function.
    name: String,
    /// The deployment to activate (default: the previous one).
    #[arg(long, value_name = "DEPLOYMENT_ID")]
    to: Option<String>,
}

pub async fn run(args: RollbackArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (api, app_id) = Api::for_app(target_args)?;
    let app_id = app_id.as_str();
    // A full id or any unique start of one, checked against the function's history.
    let to = match args.to.as_deref().map(str::trim) {
        None => None,
        Some(prefix) => Some(expand(&api, app_id, &args.name, prefix).await?),
    };
    let answer = api
        .post(&Api::function_path(app_id, Some(&args.name), "/rollback"), &json!({ "deployment_id": to }))
        .await
        .map_err(ApiError::into_anyhow)?;
    let active = answer["deployment_id"].as_str().context("the server's answer has no deployment id")?;
    if global.json {
        output::json_line(&json!({ "event": "rolled_back", "name": args.name, "deployment_id": active }));
    } else {
        println!("{} now runs deployment {active}", args.name);
    }
    Ok(())
}

/// The one deployment in the function's history whose id starts with `prefix`.
async fn expand(api: &Api, app_id: &str, name: &str, prefix: &str) -> anyhow::Result<String> {
    let history =
        api.get(&Api::function_path(app_id, Some(name), "/deployments")).await.map_err(ApiError::into_anyhow)?;
    let mut ids: Vec<&str> = history["deployments"]
        .as_array()
        .map(|entries| entries.iter().filter_map(|e| e["deployment_id"].as_str()).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    let matching: Vec<&str> = ids.into_iter().filter(|id| !prefix.is_empty() && id.starts_with(prefix)).collect();
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("No deployment of '{name}' starts with '{prefix}'; see `homebase functions deployments {name}`"),
        many => bail!("'{prefix}' matches {} deployments of '{name}'; give more of the id", many.len()),
    }
}

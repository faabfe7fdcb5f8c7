//! `homebase functions deployments NAME`: a function's deployment history, newest first, the
//! active one marked. `--json` prints the server's `{deployments: […]}`.

use clap::Args;

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    /// The function.
    name: String,
}

pub async fn run(args: DeploymentsArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (api, app_id) = Api::for_app(target_args)?;
    let app_id = app_id.as_str();
    let history =
        api.get(&Api::function_path(app_id, Some(&args.name), "/deployments")).await.map_err(ApiError::into_anyhow)?;
    if global.json {
        output::json_line(&history);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = history["deployments"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    vec![
                        e["sequence"].as_i64().map(|n| n.to_string()).unwrap_or_default(),
                        e["deployment_id"].as_str().unwrap_or_default().to_string(),
                        e["activated_at"].as_i64().map(output::time_ms).unwrap_or_default(),
                        if e["active"] == true { "active".into() } else { String::new() },
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    output::table(&["#", "DEPLOYMENT", "ACTIVATED", ""], &rows);
    Ok(())
}

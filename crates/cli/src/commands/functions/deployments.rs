//! `homebase functions deployments NAME`: a function's deployment history, newest first, the
//! active one marked. `--json` prints the server's `{deployments: […]}`.

use clap::Args;

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::{self, TargetArgs};

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    /// The function.
    name: String,
}

pub async fn run(args: DeploymentsArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = target::optional_project(target_args)?;
    let target = target::target(target_args, project.as_ref())?;
    let app_id = target.app_id()?;
    let history = Api::new(&target)?
        .get(&Api::function_path(app_id, Some(&args.name), "/deployments"))
        .await
        .map_err(ApiError::into_anyhow)?;
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

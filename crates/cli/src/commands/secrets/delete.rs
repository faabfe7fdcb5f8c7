//! `homebase secrets delete NAMES…`: deletes secrets. A name the app does not have is reported
//! as "not found" and makes the exit code 1; the others are still deleted.

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::api::Api;
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::{self, TargetArgs};

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The secrets to delete.
    #[arg(required = true)]
    names: Vec<String>,
}

pub async fn run(args: DeleteArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = target::optional_project(target_args)?;
    let target = target::target(target_args, project.as_ref())?;
    let app_id = target.app_id()?;
    let api = Api::new(&target)?;
    let mut problems = Vec::new();
    for name in &args.names {
        let path = format!("{}?secret_name={}", super::secrets_path(app_id), crate::target::encode_segment(name));
        let (status, error) = match api.delete(&path).await {
            Ok(_) => ("deleted", None),
            Err(error) if error.status == 404 && error.code == "secret_not_found" => {
                problems.push(format!("app {app_id} has no secret named '{name}'"));
                ("not_found", None)
            }
            Err(error) => {
                problems.push(format!("could not delete '{name}': {error}"));
                ("failed", Some(error))
            }
        };
        if global.json {
            let mut line = json!({ "event": "secret", "name": name, "status": status });
            if let Some(error) = &error {
                line["message"] = error.message.as_str().into();
                line["detail"] = error.detail.as_str().into();
            }
            output::json_line(&line);
        } else {
            match &error {
                None if status == "deleted" => println!("{name} … deleted"),
                None => println!("{name} … not found"),
                Some(error) => println!("{name} … failed: {error}"),
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

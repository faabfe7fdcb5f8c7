//! `homebase functions delete NAMES…`: deletes deployed functions. A name the app does not have
//! is reported as "not found" and makes the exit code 1; the others are still deleted.

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::api::Api;
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::{self, TargetArgs};

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The functions to delete.
    #[arg(required = true)]
    names: Vec<String>,
}

pub async fn run(args: DeleteArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = target::optional_project(target_args)?;
    let target = target::target(target_args, project.as_ref())?;
    let app_id = target.app_id()?;
    let api = Api::new(&target)?;
    let mut not_found = Vec::new();
    let mut failed = Vec::new();
    for name in &args.names {
        let (status, error) = match api.delete(&Api::function_path(app_id, Some(name), "")).await {
            Ok(_) => ("deleted", None),
            Err(error) if error.status == 404 && error.code != "app_not_found" => {
                not_found.push(name.clone());
                ("not_found", None)
            }
            Err(error) => {
                failed.push(name.clone());
                ("failed", Some(error))
            }
        };
        if global.json {
            let mut line = json!({ "event": "function", "name": name, "status": status });
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
    let mut problems = Vec::new();
    if !not_found.is_empty() {
        problems.push(format!("app {app_id} has no function named {}", quoted(&not_found)));
    }
    if !failed.is_empty() {
        problems.push(format!("could not delete {}", quoted(&failed)));
    }
    if !problems.is_empty() {
        bail!("{}", capitalized(&problems.join("; ")));
    }
    Ok(())
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

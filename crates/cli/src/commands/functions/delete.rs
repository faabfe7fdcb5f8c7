//! `homebase functions delete NAMES…`: deletes deployed functions. A name the app does not have
//! is reported as "not found" and makes the exit code 1; the others are still deleted.

use anyhow::bail;
use clap::Args;

use crate::api::Api;
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The functions to delete.
    #[arg(required = true)]
    names: Vec<String>,
}

pub async fn run(args: DeleteArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (api, app_id) = Api::for_app(target_args)?;
    let app_id = app_id.as_str();
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
        output::item_result(global.json, "function", name, status, error.as_ref());
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

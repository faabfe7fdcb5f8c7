//! `homebase secrets delete NAMES…`: deletes secrets. A name the app does not have is reported
//! as "not found" and makes the exit code 1; the others are still deleted.

use anyhow::bail;
use clap::Args;

use crate::api::Api;
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The secrets to delete.
    #[arg(required = true)]
    names: Vec<String>,
}

pub async fn run(args: DeleteArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (api, app_id) = Api::for_app(target_args)?;
    let app_id = app_id.as_str();
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
        output::item_result(global.json, "secret", name, status, error.as_ref());
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

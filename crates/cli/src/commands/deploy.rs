//! `homebase deploy`: deploys all of the project's resources to its app. Today that is its
//! functions, exactly as `homebase functions deploy` with no names; entities, agents and the
//! rest follow when the server takes them.

use clap::Args;
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::commands::functions::deploy::deploy_functions;
use crate::output;
use crate::target::{self, TargetArgs};

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    target: TargetArgs,
}

pub async fn run(args: DeployArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = target::project(&args.target)?;
    let target = target::target(&args.target, Some(&project))?;
    deploy_functions(&project, &target, &[], false, global.json).await?;
    let entities = project.load_entities().entities.len();
    let note = if entities > 0 {
        format!(
            "Deployed functions only: the {entities} entity schema{} in {} {} not deployed yet (entities, agents \
             and connectors come later).",
            if entities == 1 { "" } else { "s" },
            project.entities_dir().strip_prefix(&project.root).unwrap_or(&project.entities_dir()).display(),
            if entities == 1 { "is" } else { "are" }
        )
    } else {
        "Deployed functions only: entities, agents and connectors come later.".to_string()
    };
    if global.json {
        output::json_line(&json!({ "event": "note", "message": note, "entities_skipped": entities }));
    } else {
        println!("{note}");
    }
    Ok(())
}

//! `homebase apps create NAME [--link | --no-link]`: creates an app and prints its id.
//!
//! Linking writes `{"id": …}` to the project's `base44/.app.jsonc`, which is where the other
//! commands find the app. Run inside a project that has no `.app.jsonc` yet, the new app is
//! linked by default (`--no-link` to skip). An existing link is only replaced with `--link`.
//! Outside a project nothing is written, and `--link` is an error.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::api::Api;
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::{self, TargetArgs};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The app's name.
    name: String,
    /// Write the new id to the project's base44/.app.jsonc, replacing an existing one.
    #[arg(long, conflicts_with = "no_link")]
    link: bool,
    /// Do not write base44/.app.jsonc.
    #[arg(long)]
    no_link: bool,
}

pub async fn run(args: CreateArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let project = target::optional_project(target_args)?;
    if args.link && project.is_none() {
        bail!("--link needs a project: run this inside one, or pass --project DIR");
    }
    let name = args.name.trim();
    if name.is_empty() {
        bail!("The app name is empty");
    }
    let target = target::target(target_args, project.as_ref())?;
    let api = Api::new(&target)?;
    let app: Value = api.post("/api/apps", &json!({ "name": name })).await.map_err(|e| e.into_anyhow())?;
    let id = app["id"].as_str().context("the server's answer has no app id")?.to_string();

    let mut linked = None;
    let mut kept = None;
    if let Some(project) = &project {
        let file = project.base_dir.join(".app.jsonc");
        let link = !args.no_link && (args.link || project.app_id.is_none());
        if link {
            std::fs::write(&file, format!("{{\"id\": \"{id}\"}}\n"))
                .with_context(|| format!("created app {id}, but could not write {}", file.display()))?;
            linked = Some(file);
        } else if let Some(existing) = &project.app_id
            && !args.no_link
        {
            kept = Some(existing.clone());
        }
    }
    if global.json {
        output::json_line(&json!({ "event": "app_created", "app": app, "linked": linked }));
        return Ok(());
    }
    println!("Created app '{name}': {id}");
    if let Some(file) = linked {
        println!("Linked the project to it in {}.", file.display());
    } else if let Some(existing) = kept {
        println!("The project stays linked to {existing}; pass --link to link it to the new app.");
    }
    Ok(())
}

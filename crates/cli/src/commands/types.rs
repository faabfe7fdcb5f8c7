//! `homebase types generate`: TypeScript types for the project's entities and function names.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use homebase_project::{Project, generate_types};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct TypesArgs {
    #[command(subcommand)]
    command: TypesCommand,
}

#[derive(Debug, Subcommand)]
enum TypesCommand {
    /// Write base44/.types/types.d.ts (and add it to tsconfig.json's include).
    Generate {
        /// The project folder (default: the current folder or its nearest ancestor project).
        #[arg(default_value = ".")]
        project: PathBuf,
    },
}

pub async fn run(args: TypesArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let TypesCommand::Generate { project } = args.command;
    let project = Project::find(&project).map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = generate_types(&project).map_err(|e| anyhow::anyhow!("{e}")).context("generating types")?;
    let problems: Vec<String> = out.problems.iter().map(ToString::to_string).collect();
    if global.json {
        println!(
            "{}",
            serde_json::json!({
                "path": out.path,
                "entities": out.entities,
                "functions": out.functions,
                "tsconfig_updated": out.tsconfig_updated,
                "problems": problems,
            })
        );
    } else {
        for problem in &problems {
            eprintln!("warning: left out: {problem}");
        }
        println!(
            "Wrote {} ({} entities, {} functions){}",
            out.path.display(),
            out.entities,
            out.functions,
            if out.tsconfig_updated { "; added it to tsconfig.json" } else { "" }
        );
    }
    Ok(())
}

//! `homebase secrets set|list|delete`: an app's secrets on a server (docs/serve.md#secrets).
//! Values go to the server and are never printed, in text or with `--json`.

pub mod delete;
pub mod list;
pub mod set;

use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::target::TargetArgs;
use crate::target::encode_segment;

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Set secrets: NAME=VALUE pairs and/or the lines of an env file.
    Set(set::SetArgs),
    /// List the names of the app's secrets (values are never shown).
    List(list::ListArgs),
    /// Delete secrets by name.
    Delete(delete::DeleteArgs),
}

pub async fn run(args: SecretsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let target = &args.target;
    match args.command {
        SecretsCommand::Set(command) => set::run(command, target, global).await,
        SecretsCommand::List(command) => list::run(command, target, global).await,
        SecretsCommand::Delete(command) => delete::run(command, target, global).await,
    }
}

/// `/api/apps/{app}/secrets`.
fn secrets_path(app_id: &str) -> String {
    format!("/api/apps/{}/secrets", encode_segment(app_id))
}

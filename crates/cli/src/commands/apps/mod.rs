//! `homebase apps create|list`: the apps of a server.

pub mod create;
pub mod list;

use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    command: AppsCommand,
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an app (needs an admin key) and link the current project to it.
    Create(create::CreateArgs),
    /// List the apps this key may see.
    List(list::ListArgs),
}

pub async fn run(args: AppsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        AppsCommand::Create(command) => create::run(command, &args.target, global).await,
        AppsCommand::List(command) => list::run(command, &args.target, global).await,
    }
}

//! `homebase functions deploy|pull|list|delete|rollback|deployments`: a project's functions on
//! a server, through the management API (docs/serve.md).

pub mod delete;
pub mod deploy;
pub mod deployments;
pub mod list;
pub mod pull;
pub mod rollback;

use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct FunctionsArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    command: FunctionsCommand,
}

#[derive(Debug, Subcommand)]
enum FunctionsCommand {
    /// Deploy the project's functions (all, or the names given).
    Deploy(deploy::DeployArgs),
    /// Write the deployed functions into the project, byte for byte.
    Pull(pull::PullArgs),
    /// List the app's deployed functions.
    List(list::ListArgs),
    /// Delete deployed functions.
    Delete(delete::DeleteArgs),
    /// Make an earlier deployment of a function active again (default: the previous one).
    Rollback(rollback::RollbackArgs),
    /// A function's deployment history, newest first.
    Deployments(deployments::DeploymentsArgs),
}

pub async fn run(args: FunctionsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let target = &args.target;
    match args.command {
        FunctionsCommand::Deploy(command) => deploy::run(command, target, global).await,
        FunctionsCommand::Pull(command) => pull::run(command, target, global).await,
        FunctionsCommand::List(command) => list::run(command, target, global).await,
        FunctionsCommand::Delete(command) => delete::run(command, target, global).await,
        FunctionsCommand::Rollback(command) => rollback::run(command, target, global).await,
        FunctionsCommand::Deployments(command) => deployments::run(command, target, global).await,
    }
}

/// The `name` of every function in a `GET …/backend-functions` answer.
fn remote_names(list: &serde_json::Value) -> Vec<String> {
    list["functions"]
        .as_array()
        .map(|functions| functions.iter().filter_map(|f| f["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

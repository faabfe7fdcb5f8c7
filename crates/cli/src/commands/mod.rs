//! One module per command.

pub mod dev;
pub mod serve;
pub mod types;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => dev::run(args, &cli.global).await,
        Command::Serve(args) => serve::run(args, &cli.global).await,
        Command::Types(args) => types::run(args, &cli.global).await,
    }
}

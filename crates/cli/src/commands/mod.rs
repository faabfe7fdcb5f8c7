//! One module per command.

pub mod apps;
pub mod backup;
pub mod deploy;
pub mod dev;
pub mod exec;
pub mod functions;
pub mod login;
pub mod logout;
pub mod logs;
pub mod secrets;
pub mod serve;
pub mod types;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => dev::run(args, &cli.global).await,
        Command::Serve(args) => serve::run(args, &cli.global).await,
        Command::Backup(args) => backup::run(args, &cli.global).await,
        Command::Types(args) => types::run(args, &cli.global).await,
        Command::Login(args) => login::run(args, &cli.global).await,
        Command::Logout(args) => logout::run(args, &cli.global).await,
        Command::Apps(args) => apps::run(args, &cli.global).await,
        Command::Functions(args) => functions::run(args, &cli.global).await,
        Command::Deploy(args) => deploy::run(args, &cli.global).await,
        Command::Secrets(args) => secrets::run(args, &cli.global).await,
        Command::Exec(args) => exec::run(args, &cli.global).await,
        Command::Logs(args) => logs::run(args, &cli.global).await,
    }
}

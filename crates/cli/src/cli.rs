//! The command line: global flags and one subcommand per file in `commands/`.

use clap::{Args, Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(name = "homebase", version, about = "Self-hosted, Base44-compatible backend functions")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON (one object per line) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More diagnostic output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a project's functions locally, reloading on change.
    Dev(commands::dev::DevArgs),
    /// Run the production server: many apps, deploys through the management API.
    Serve(commands::serve::ServeArgs),
    /// Copy a serve data folder (SQLite databases and keys) while it serves.
    Backup(commands::backup::BackupArgs),
    /// Generate TypeScript types for entities and function names.
    Types(commands::types::TypesArgs),
    /// Check a server URL and API key and save them for the other commands.
    Login(commands::login::LoginArgs),
    /// Forget the saved login.
    Logout(commands::logout::LogoutArgs),
    /// Create and list apps on a server.
    Apps(commands::apps::AppsArgs),
    /// Deploy, pull, list, delete and roll back functions on a server.
    Functions(commands::functions::FunctionsArgs),
    /// Deploy all of the project's resources (today: its functions).
    Deploy(commands::deploy::DeployArgs),
    /// Set, list and delete an app's secrets on a server (values are never printed).
    Secrets(commands::secrets::SecretsArgs),
    /// Run a script with a pre-authenticated Base44 client as the global `base44`.
    Exec(commands::exec::ExecArgs),
    /// Show an app's function logs, or follow them live with --follow.
    Logs(commands::logs::LogsArgs),
}

/// The limits of function workers, flags of both `dev` and `serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WorkerLimitArgs {
    /// The most memory one function worker may use, e.g. 512MB or 1GB (default 512MB); a worker
    /// past it is stopped and its requests answered 502 out_of_memory.
    #[arg(long, value_name = "SIZE")]
    pub function_memory: Option<String>,
    /// Requests one function handles at once; as many more wait, the rest get 503 (default 0: no
    /// limit of its own).
    #[arg(long, value_name = "N")]
    pub function_concurrency: Option<usize>,
    /// Function workers alive at once; the least recently used idle one is stopped to start
    /// another (default 100).
    #[arg(long, value_name = "N")]
    pub max_workers: Option<usize>,
}

impl WorkerLimitArgs {
    /// `layer` with these flags set in it.
    pub fn apply(self, layer: homebase_server::config::ConfigLayer) -> homebase_server::config::ConfigLayer {
        homebase_server::config::ConfigLayer {
            function_memory: self.function_memory.map(Into::into),
            function_concurrency: self.function_concurrency,
            max_workers: self.max_workers,
            ..layer
        }
    }
}

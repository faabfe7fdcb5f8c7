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
    /// Generate TypeScript types for entities and function names.
    Types(commands::types::TypesArgs),
}

//! `homebase logout`: forgets the saved login.

use clap::Args;
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::output;
use crate::target;

#[derive(Debug, Args)]
pub struct LogoutArgs {}

pub async fn run(_args: LogoutArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (removed, path) = target::remove_credentials()?;
    if global.json {
        output::json_line(&json!({ "event": "logged_out", "removed": removed, "path": path }));
    } else if removed {
        println!("Logged out: removed {}.", path.display());
    } else {
        println!("Not logged in (no {}).", path.display());
    }
    Ok(())
}

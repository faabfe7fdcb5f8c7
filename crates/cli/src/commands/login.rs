//! `homebase login [--url URL] [--token KEY]`: checks the key against the server and saves both
//! to `<user config folder>/homebase/credentials.json` (mode 0600) for the other commands.
//! Nothing is prompted for: the URL and key come from the flags or the environment.

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::api::Api;
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::{self, Credentials, TargetArgs};

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    target: TargetArgs,
}

pub async fn run(args: LoginArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // The saved login is what this replaces, so it is not a source here.
    let target = target::resolve(&args.target, &target::process_env, None, None)
        .context("`homebase login` saves a server URL and an API key")?;
    let api = Api::new(&target)?;
    let apps = api.get("/api/apps").await.map_err(|e| e.into_anyhow())?;
    let visible = apps.as_array().map_or(0, Vec::len);
    let path = target::save_credentials(&Credentials { url: target.url.value.clone(), token: target.token.value })?;
    if global.json {
        output::json_line(&json!({ "event": "logged_in", "url": target.url.value, "apps": visible, "path": path }));
    } else {
        println!(
            "Logged in to {} ({visible} app{} visible with this key). Saved to {}.",
            target.url.value,
            if visible == 1 { "" } else { "s" },
            path.display()
        );
    }
    Ok(())
}

//! `homebase exec [SCRIPT]`: runs a script in Deno with a pre-authenticated Base44 client as the
//! global `base44` (docs/auth.md#scripts-with-exec).
//!
//! The script is a file, or stdin when no file (or `-`) is given. Homebase asks the server
//! (`--local`: the project's running `homebase dev`, found through `base44/.homebase/dev.json`)
//! for a token (`GET /api/apps/{app}/auth/token`: a service token, `?user=EMAIL` for one user)
//! and for the app's URL (`GET /api/apps/platform/{app}/published-url`), then runs the script
//! under a small wrapper that builds the client with the official SDK:
//!
//! - by default the token is the client's bearer, as `base44 exec` does: the script acts with
//!   the key's authority, and `base44.auth.me()` is the service pseudo-user;
//! - `--as EMAIL`: the script acts as that app user (`me()` is them, their permissions);
//! - `--as-service`: `base44` is the client's `asServiceRole`.
//!
//! The script's output is its own; its exit code becomes ours.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use clap::Args;
use homebase_server::dev::DevFile;

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::commands::dev::read_dev_file;
use crate::target::{Source, TargetArgs, encode_segment};

/// The wrapper that builds the client and imports the script.
const WRAPPER: &str = include_str!("../../assets/exec.js");

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The script to run (TypeScript or JavaScript); `-` or nothing reads it from stdin.
    script: Option<PathBuf>,
    /// Run against the project's running `homebase dev` instead of a server.
    #[arg(long)]
    local: bool,
    /// Act as this app user (their e-mail or id).
    #[arg(long = "as", value_name = "EMAIL", conflicts_with = "as_service")]
    as_user: Option<String>,
    /// Act with the service role: `base44` is the client's `asServiceRole`.
    #[arg(long)]
    as_service: bool,
    /// The data environment to act on (`dev` or `prod`), sent as X-Data-Env.
    #[arg(long, value_name = "ENV", value_parser = ["dev", "prod"])]
    data_env: Option<String>,
}

pub async fn run(args: ExecArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let work = tempfile::Builder::new().prefix("homebase-exec-").tempdir().context("creating a temp folder")?;
    let script = script_url(args.script.as_deref(), work.path())?;
    let (api, app_id) = if args.local {
        let project = crate::target::project(&args.target)?;
        let dev = read_dev_file(&project)?;
        (Api::with_key(&dev.url, &dev.key, Source::AppFile(DevFile::path(&project)))?, dev.app_id)
    } else {
        Api::for_app(&args.target)?
    };

    let token_path = token_path(&app_id, args.as_user.as_deref());
    let url_path = format!("/api/apps/platform/{}/published-url", encode_segment(&app_id));
    let (token, url) = tokio::try_join!(api.get(&token_path), api.get(&url_path)).map_err(ApiError::into_anyhow)?;
    let token = token["token"].as_str().context("The server's token answer has no `token`")?;
    let url = url["url"].as_str().context("The server's published-url answer has no `url`")?;

    let json = global.json;
    let deno = homebase_runtime::deno::locate_or_install(&move |line: &str| crate::output::note(json, "deno", line))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let wrapper = work.path().join("exec.js");
    std::fs::write(&wrapper, WRAPPER).context("writing the exec wrapper")?;

    let mut command = tokio::process::Command::new(&deno.path);
    command
        .args(["run", "--allow-all", "--no-prompt"])
        .arg(&wrapper)
        .env("HOMEBASE_EXEC_SCRIPT", script)
        .env("BASE44_APP_ID", &app_id)
        .env("BASE44_APP_BASE_URL", url)
        .env("BASE44_ACCESS_TOKEN", token)
        .env("HOMEBASE_EXEC_ROLE", if args.as_service { "service" } else { "user" })
        .env("DENO_NO_UPDATE_CHECK", "1")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(data_env) = &args.data_env {
        command.env("BASE44_DATA_ENV", data_env);
    }
    let status = command.status().await.with_context(|| format!("running {}", deno.path.display()))?;
    drop(work);
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("The script was stopped by a signal ({status})"),
    }
}

/// The token endpoint: a service token, or `as_user`'s token.
fn token_path(app_id: &str, as_user: Option<&str>) -> String {
    let mut path = format!("/api/apps/{}/auth/token", encode_segment(app_id));
    if let Some(email) = as_user {
        path.push_str("?user=");
        path.push_str(&encode_segment(email));
    }
    path
}

/// The file URL of the script: the file itself (so its relative imports work), or stdin saved
/// to `work/script.ts`.
fn script_url(script: Option<&Path>, work: &Path) -> anyhow::Result<String> {
    let path = match script {
        Some(path) if path != Path::new("-") => {
            std::fs::canonicalize(path).with_context(|| format!("The script {} cannot be read", path.display()))?
        }
        _ => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!(
                    "No script to run: give a file (`homebase exec script.ts`) or pipe one in (`echo '…' | homebase exec`)"
                );
            }
            let mut code = String::new();
            stdin.read_to_string(&mut code).context("reading the script from stdin")?;
            if code.trim().is_empty() {
                bail!("The script on stdin is empty: pipe in some code, or give a file");
            }
            let path = work.join("script.ts");
            std::fs::write(&path, code).context("saving the script")?;
            path
        }
    };
    Ok(url_of(&path))
}

/// `file://` URL of an absolute path, each segment percent-encoded.
fn url_of(path: &Path) -> String {
    let segments: Vec<String> = path.to_string_lossy().split('/').map(encode_segment).collect();
    format!("file://{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_paths_name_the_identity() {
        assert_eq!(token_path("a1", None), "/api/apps/a1/auth/token");
        assert_eq!(token_path("a1", Some("ada@x.io")), "/api/apps/a1/auth/token?user=ada%40x.io");
    }

    #[test]
    fn script_urls_are_encoded_file_urls() {
        assert_eq!(url_of(Path::new("/tmp/my script/ä.ts")), "file:///tmp/my%20script/%C3%A4.ts");
    }
}

//! `homebase secrets set NAME=VALUE… [--env-file FILE]`: sets secrets, all in one request (the
//! server stores all or none). Pairs on the command line win over the file. Prints the names
//! set, never the values; with `--json`, `{"event": "secrets_set", "names": […]}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
pub struct SetArgs {
    /// NAME=VALUE pairs.
    pairs: Vec<String>,
    /// Also read NAME=VALUE lines from this file (`.env` syntax: `#` comments, optional
    /// `export`, single or double quotes).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
}

pub async fn run(args: SetArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut secrets = BTreeMap::new();
    if let Some(file) = &args.env_file {
        secrets.extend(read_env_file(file)?);
    }
    for (index, pair) in args.pairs.iter().enumerate() {
        // The error does not repeat the argument: it may be a value.
        let Some((name, value)) = pair.split_once('=') else {
            bail!("Argument {} is not NAME=VALUE", index + 1);
        };
        secrets.insert(name.trim().to_string(), value.to_string());
    }
    if secrets.is_empty() {
        bail!("Nothing to set: give NAME=VALUE pairs or --env-file FILE");
    }
    let (api, app_id) = Api::for_app(target_args)?;
    let app_id = app_id.as_str();
    api.post(&super::secrets_path(app_id), &secrets).await.map_err(ApiError::into_anyhow)?;
    let names: Vec<&String> = secrets.keys().collect();
    if global.json {
        crate::output::json_line(&json!({ "event": "secrets_set", "app_id": app_id, "names": names }));
    } else {
        let list = names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
        println!("Set {} secret{} on app {app_id}: {list}", names.len(), if names.len() == 1 { "" } else { "s" });
    }
    Ok(())
}

fn read_env_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    parse_env(&text).map_err(|line| anyhow::anyhow!("{}:{line}: expected NAME=VALUE", path.display()))
}

/// `NAME=VALUE` lines; blank lines and `#` comments are skipped, `export ` is allowed, a value
/// in matching quotes loses them (double quotes also turn `\n` into a newline), and an unquoted
/// value loses a trailing ` # comment`. `Err(line number)` for a line without `=`.
pub(crate) fn parse_env(text: &str) -> Result<BTreeMap<String, String>, usize> {
    let mut out = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) = line.split_once('=').ok_or(index + 1)?;
        let value = value.trim();
        let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            value[1..value.len() - 1].replace("\\n", "\n").replace("\\\"", "\"")
        } else if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
            value[1..value.len() - 1].to_string()
        } else {
            value.split(" #").next().unwrap_or_default().trim_end().to_string()
        };
        out.insert(name.trim().to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse_like_dotenv() {
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\\nline\"\nD='single'\nE=x # note\nF=\nG=a=b\n";
        let parsed = parse_env(text).unwrap();
        let want: BTreeMap<String, String> = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted # not a comment\nline"),
            ("D", "single"),
            ("E", "x"),
            ("F", ""),
            ("G", "a=b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(parsed, want);
        assert_eq!(parse_env("A=1\nnot a pair\n"), Err(2));
    }
}

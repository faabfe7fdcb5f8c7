//! Which server, API key and app a client command talks to, and the saved login.
//!
//! Each of the three is resolved on its own; the first source that has it wins:
//!
//! 1. the flags `--url`, `--token`, `--app-id`;
//! 2. `HOMEBASE_URL`, `HOMEBASE_TOKEN`, `HOMEBASE_APP_ID`;
//! 3. `BASE44_API_URL`, `BASE44_API_KEY`, `BASE44_APP_ID` (what the official CLI reads);
//! 4. the project's `base44/.app.jsonc` (the app id only);
//! 5. the saved login, `homebase login` (URL and key).
//!
//! One guard on top: the saved key is only sent to the saved URL. When the URL comes from
//! somewhere else and differs, the key must come from somewhere else too, so a key never leaks
//! to a server it was not saved for.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use homebase_project::{ErrorKind, Project};
use serde::{Deserialize, Serialize};

/// Flags shared by the client commands (`login`, `apps`, `functions`, `deploy`).
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// The Homebase server, e.g. http://127.0.0.1:8080 (else HOMEBASE_URL, BASE44_API_URL, the saved login).
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The API key, b44k_… (else HOMEBASE_TOKEN, BASE44_API_KEY, the saved login).
    #[arg(long, global = true, value_name = "KEY")]
    pub token: Option<String>,
    /// The app (else HOMEBASE_APP_ID, BASE44_APP_ID, the project's base44/.app.jsonc).
    #[arg(long, global = true, value_name = "ID")]
    pub app_id: Option<String>,
    /// The project folder (default: the current folder or its nearest ancestor project).
    #[arg(long, global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
}

/// Where a setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    AppFile(PathBuf),
    Login(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "the {flag} flag"),
            Source::Env(name) => write!(f, "{name}"),
            Source::AppFile(path) => write!(f, "{}", path.display()),
            Source::Login(path) => write!(f, "the saved login ({})", path.display()),
        }
    }
}

/// A setting and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced {
    pub value: String,
    pub source: Source,
}

/// The server and key a command talks to, and the app when one was found.
#[derive(Clone)]
pub struct Target {
    pub url: Sourced,
    pub token: Sourced,
    app_id: Option<Sourced>,
}

impl std::fmt::Debug for Target {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("token_source", &self.token.source)
            .field("app_id", &self.app_id)
            .finish()
    }
}

impl Target {
    /// The app id, or an error naming every way to set it.
    pub fn app_id(&self) -> anyhow::Result<&str> {
        match &self.app_id {
            Some(app) => Ok(&app.value),
            None => Err(anyhow::anyhow!(
                "pass --app-id, set HOMEBASE_APP_ID (or BASE44_APP_ID), write {{\"id\": \"<app id>\"}} to the \
                 project's base44/.app.jsonc, or run `homebase apps create NAME` inside the project to create and \
                 link one."
            )
            .context("No app was given")),
        }
    }
}

/// `{url, token}` as `homebase login` saves it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub url: String,
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Reads an environment variable; empty counts as unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty values treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn first(candidates: Vec<(Option<String>, Source)>) -> Option<Sourced> {
    candidates.into_iter().find_map(|(value, source)| {
        let value = value?.trim().to_string();
        (!value.is_empty()).then_some(Sourced { value, source })
    })
}

/// The URL, key and app id from flags, the environment, the project and the saved login.
pub fn resolve(
    args: &TargetArgs,
    env: Env,
    project: Option<&Project>,
    login: Option<&(Credentials, PathBuf)>,
) -> anyhow::Result<Target> {
    let mut urls = vec![
        (args.url.clone(), Source::Flag("--url")),
        (env("HOMEBASE_URL"), Source::Env("HOMEBASE_URL")),
        (env("BASE44_API_URL"), Source::Env("BASE44_API_URL")),
    ];
    if let Some((saved, path)) = login {
        urls.push((Some(saved.url.clone()), Source::Login(path.clone())));
    }
    let url = first(urls).ok_or_else(|| {
        anyhow::anyhow!(
            "pass --url, set HOMEBASE_URL (or BASE44_API_URL), or save one with `homebase login --url URL --token KEY`."
        )
        .context("No server URL was given")
    })?;
    let url = Sourced { value: normalize_url(&url.value).with_context(|| format!("from {}", url.source))?, ..url };

    // A key goes only to the server it belongs with: the saved key to the saved server, and
    // BASE44_API_KEY (often a key for Base44's own cloud) only to BASE44_API_URL.
    let base44_key = if url.source == Source::Env("BASE44_API_URL") { env("BASE44_API_KEY") } else { None };
    let mut tokens = vec![
        (args.token.clone(), Source::Flag("--token")),
        (env("HOMEBASE_TOKEN"), Source::Env("HOMEBASE_TOKEN")),
        (base44_key, Source::Env("BASE44_API_KEY")),
    ];
    if let Some((saved, path)) = login
        && normalize_url(&saved.url).ok().as_deref() == Some(url.value.as_str())
    {
        tokens.push((Some(saved.token.clone()), Source::Login(path.clone())));
    }
    let token = first(tokens).ok_or_else(|| {
        let saved_elsewhere = match login {
            Some((saved, _)) => format!(" (the saved login is for {}, not {})", saved.url, url.value),
            None => String::new(),
        };
        let login = format!("homebase login --url {} --token KEY", url.value);
        anyhow::anyhow!(
            "pass --token, set HOMEBASE_TOKEN (or BASE44_API_KEY), or save one with `{login}`{saved_elsewhere}."
        )
        .context("No API key was given")
    })?;

    let app_file = project.map(|p| p.base_dir.join(".app.jsonc")).unwrap_or_default();
    let app_id = first(vec![
        (args.app_id.clone(), Source::Flag("--app-id")),
        (env("HOMEBASE_APP_ID"), Source::Env("HOMEBASE_APP_ID")),
        (env("BASE44_APP_ID"), Source::Env("BASE44_APP_ID")),
        (project.and_then(|p| p.app_id.clone()), Source::AppFile(app_file)),
    ]);
    Ok(Target { url, token, app_id })
}

/// Trims a server URL and its trailing slashes; it must be http or https.
pub fn normalize_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(url.to_string()),
        _ => bail!("'{url}' is not a server URL; use one like http://127.0.0.1:8080"),
    }
}

/// The project of `--project`, or the one around the current folder if there is one. A missing
/// project is an error only when `--project` names one; a broken one always is.
pub fn optional_project(args: &TargetArgs) -> anyhow::Result<Option<Project>> {
    let start = args.project.clone().unwrap_or_else(|| PathBuf::from("."));
    match Project::find(&start) {
        Ok(project) => Ok(Some(project)),
        Err(error) if error.kind == ErrorKind::NotFound && args.project.is_none() => Ok(None),
        Err(error) => Err(anyhow::anyhow!("{error}")),
    }
}

/// The project of `--project` or around the current folder; an error when there is none.
pub fn project(args: &TargetArgs) -> anyhow::Result<Project> {
    let start = args.project.clone().unwrap_or_else(|| PathBuf::from("."));
    Project::find(&start).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Resolves the target of a command from the process environment and the saved login.
pub fn target(args: &TargetArgs, project: Option<&Project>) -> anyhow::Result<Target> {
    let login = load_credentials()?;
    resolve(args, &process_env, project, login.as_ref())
}

/// `HOMEBASE_CONFIG_DIR`, or `homebase` in the user's config folder.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = process_env("HOMEBASE_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = dirs::config_dir().context("no config folder is known for this user; set HOMEBASE_CONFIG_DIR")?;
    Ok(base.join("homebase"))
}

/// Where `homebase login` saves the URL and key.
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("credentials.json"))
}

/// The saved login and its file, if there is one.
pub fn load_credentials() -> anyhow::Result<Option<(Credentials, PathBuf)>> {
    let path = credentials_path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    let credentials: Credentials = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a saved login; run `homebase login` again or delete it", path.display()))?;
    Ok(Some((credentials, path)))
}

/// Saves the login: the folder is created 0700, the file written 0600 (through a temporary
/// file, so a crash never leaves half a file).
pub fn save_credentials(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let path = credentials_path()?;
    write_private(&path, &(serde_json::to_string_pretty(credentials)? + "\n"))
        .with_context(|| format!("could not save the login to {}", path.display()))?;
    Ok(path)
}

pub use homebase_server::files::write_private;

/// Removes the saved login; whether there was one.
pub fn remove_credentials() -> anyhow::Result<(bool, PathBuf)> {
    let path = credentials_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok((true, path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((false, path)),
        Err(e) => Err(e).with_context(|| format!("could not remove {}", path.display())),
    }
}

/// A function name as one URL path segment: `email/send` → `email%2Fsend`.
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned().filter(|v| !v.is_empty())
    }

    fn login(url: &str, token: &str) -> (Credentials, PathBuf) {
        (Credentials { url: url.into(), token: token.into() }, PathBuf::from("/c/credentials.json"))
    }

    fn project_with_app(id: Option<&str>) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("base44")).unwrap();
        std::fs::write(dir.path().join("base44/config.jsonc"), "{\"name\": \"p\"}").unwrap();
        if let Some(id) = id {
            std::fs::write(dir.path().join("base44/.app.jsonc"), format!("{{\"id\": \"{id}\"}}")).unwrap();
        }
        let project = Project::find(dir.path()).unwrap();
        (dir, project)
    }

    #[test]
    fn flags_beat_homebase_env_beats_base44_env_beats_project_and_login() {
        let (_dir, project) = project_with_app(Some("from-file"));
        let saved = login("http://saved:1", "k_saved");
        let all_env = env_of(&[
            ("HOMEBASE_URL", "http://hb:2/"),
            ("HOMEBASE_TOKEN", "k_hb"),
            ("HOMEBASE_APP_ID", "app_hb"),
            ("BASE44_API_URL", "http://b44:3"),
            ("BASE44_API_KEY", "k_b44"),
            ("BASE44_APP_ID", "app_b44"),
        ]);
        let flags = TargetArgs {
            url: Some("http://flag:4".into()),
            token: Some("k_flag".into()),
            app_id: Some("app_flag".into()),
            project: None,
        };
        let t = resolve(&flags, &all_env, Some(&project), Some(&saved)).unwrap();
        assert_eq!((t.url.value.as_str(), t.token.value.as_str()), ("http://flag:4", "k_flag"));
        assert_eq!(t.app_id().unwrap(), "app_flag");
        assert_eq!(t.url.source, Source::Flag("--url"));

        let t = resolve(&TargetArgs::default(), &all_env, Some(&project), Some(&saved)).unwrap();
        assert_eq!((t.url.value.as_str(), t.token.value.as_str()), ("http://hb:2", "k_hb"));
        assert_eq!(t.app_id().unwrap(), "app_hb");

        let b44 = env_of(&[("BASE44_API_URL", "http://b44:3"), ("BASE44_API_KEY", "k_b44"), ("BASE44_APP_ID", "a")]);
        let t = resolve(&TargetArgs::default(), &b44, Some(&project), Some(&saved)).unwrap();
        assert_eq!((t.url.value.as_str(), t.token.value.as_str()), ("http://b44:3", "k_b44"));
        assert_eq!(t.app_id().unwrap(), "a");

        let none = env_of(&[]);
        let t = resolve(&TargetArgs::default(), &none, Some(&project), Some(&saved)).unwrap();
        assert_eq!((t.url.value.as_str(), t.token.value.as_str()), ("http://saved:1", "k_saved"));
        assert_eq!(t.token.source, Source::Login(PathBuf::from("/c/credentials.json")));
        assert_eq!(t.app_id().unwrap(), "from-file");
        assert!(matches!(t.app_id, Some(Sourced { source: Source::AppFile(_), .. })));
    }

    #[test]
    fn each_item_resolves_on_its_own() {
        let saved = login("http://saved:1/", "k_saved");
        // A key from the environment, the URL from the saved login.
        let t = resolve(&TargetArgs::default(), &env_of(&[("HOMEBASE_TOKEN", "k_env")]), None, Some(&saved)).unwrap();
        assert_eq!((t.url.value.as_str(), t.token.value.as_str()), ("http://saved:1", "k_env"));
        // The same server named differently still gets the saved key.
        let same = env_of(&[("HOMEBASE_URL", "http://saved:1")]);
        assert_eq!(resolve(&TargetArgs::default(), &same, None, Some(&saved)).unwrap().token.value, "k_saved");
        // The empty string counts as unset.
        let empty = env_of(&[("HOMEBASE_URL", ""), ("HOMEBASE_TOKEN", "")]);
        assert_eq!(resolve(&TargetArgs::default(), &empty, None, Some(&saved)).unwrap().url.value, "http://saved:1");
    }

    #[test]
    fn the_saved_key_is_never_sent_to_another_server() {
        let saved = login("http://saved:1", "k_saved");
        let other = env_of(&[("HOMEBASE_URL", "http://other:9")]);
        let err = resolve(&TargetArgs::default(), &other, None, Some(&saved)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.starts_with("No API key was given"), "{text}");
        assert!(text.contains("the saved login is for http://saved:1, not http://other:9"), "{text}");
    }

    #[test]
    fn missing_items_name_every_way_to_set_them() {
        let none = env_of(&[]);
        let err = format!("{:#}", resolve(&TargetArgs::default(), &none, None, None).unwrap_err());
        for way in ["--url", "HOMEBASE_URL", "BASE44_API_URL", "homebase login"] {
            assert!(err.contains(way), "{way}: {err}");
        }
        let url_only = env_of(&[("HOMEBASE_URL", "http://h:1")]);
        let err = format!("{:#}", resolve(&TargetArgs::default(), &url_only, None, None).unwrap_err());
        for way in ["--token", "HOMEBASE_TOKEN", "BASE44_API_KEY", "homebase login"] {
            assert!(err.contains(way), "{way}: {err}");
        }
        let (_dir, project) = project_with_app(None);
        let both = env_of(&[("HOMEBASE_URL", "http://h:1"), ("HOMEBASE_TOKEN", "k")]);
        let t = resolve(&TargetArgs::default(), &both, Some(&project), None).unwrap();
        let err = format!("{:#}", t.app_id().unwrap_err());
        for way in ["--app-id", "HOMEBASE_APP_ID", "BASE44_APP_ID", ".app.jsonc", "homebase apps create"] {
            assert!(err.contains(way), "{way}: {err}");
        }
    }

    #[test]
    fn urls_are_checked_and_trimmed() {
        assert_eq!(normalize_url(" https://h.example:8080// ").unwrap(), "https://h.example:8080");
        assert!(normalize_url("h:8080").is_err());
        assert!(normalize_url("http://").is_err());
        let bad = env_of(&[("HOMEBASE_URL", "localhost:8080"), ("HOMEBASE_TOKEN", "k")]);
        let err = format!("{:#}", resolve(&TargetArgs::default(), &bad, None, None).unwrap_err());
        assert!(err.contains("from HOMEBASE_URL") && err.contains("is not a server URL"), "{err}");
    }

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(encode_segment("email/send"), "email%2Fsend");
        assert_eq!(encode_segment("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(encode_segment("hello-world_1"), "hello-world_1");
    }
}

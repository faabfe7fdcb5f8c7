//! Finding a usable Deno, or provisioning one from the npm registry.
//!
//! Order: `HOMEBASE_DENO`, `deno` on `PATH`, Homebase's cached copy, then `npm install deno@2`
//! into that cache. Anything older than Deno 2.0 is refused.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::RuntimeError;

/// A Deno executable that answered `--version` with 2.0 or newer.
#[derive(Debug, Clone)]
pub struct DenoInstall {
    pub path: PathBuf,
    pub version: String,
    /// Where the executable came from, for messages ("HOMEBASE_DENO", "PATH", "cache", "npm").
    pub source: &'static str,
}

/// The folder Homebase keeps its own Deno in (`<user cache>/homebase/deno`).
pub fn cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("homebase").join("deno")
}

/// Deno's module cache (`DENO_DIR`, else Deno's default under the user cache folder). Workers
/// may read it; nothing else outside their function.
pub fn deno_dir() -> PathBuf {
    match std::env::var_os("DENO_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("deno"),
    }
}

/// What the lookup reads from the environment, gathered so it can be tested without touching
/// the process environment.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// `HOMEBASE_DENO`.
    pub explicit: Option<PathBuf>,
    /// `PATH`.
    pub path: Option<std::ffi::OsString>,
    /// Homebase's cache folder ([`cache_dir`]).
    pub cache: PathBuf,
    /// Where verified versions are remembered, so that later starts skip `deno --version`.
    pub versions: Option<PathBuf>,
}

impl Lookup {
    pub fn from_env() -> Lookup {
        Lookup {
            explicit: std::env::var_os("HOMEBASE_DENO").filter(|p| !p.is_empty()).map(PathBuf::from),
            path: std::env::var_os("PATH"),
            cache: cache_dir(),
            versions: cache_dir().parent().map(|dir| dir.join("deno-versions.json")),
        }
    }
}

/// Finds Deno, installing it with npm when there is none. `progress` receives one line per step
/// of a download.
pub async fn locate_or_install(progress: &(dyn Fn(&str) + Send + Sync)) -> Result<DenoInstall, RuntimeError> {
    locate_with(&Lookup::from_env(), progress).await
}

pub async fn locate_with(
    lookup: &Lookup,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<DenoInstall, RuntimeError> {
    if let Some(path) = &lookup.explicit {
        return check(path, "HOMEBASE_DENO", lookup.versions.as_deref()).await.map_err(|e| match e {
            RuntimeError::Deno { message } => {
                RuntimeError::Deno { message: format!("HOMEBASE_DENO points at {}: {message}", path.display()) }
            }
            other => other,
        });
    }
    if let Some(path) = find_on_path(lookup.path.as_deref(), "deno") {
        return check(&path, "PATH", lookup.versions.as_deref()).await;
    }
    if let Some(path) = cached_binary(&lookup.cache) {
        return check(&path, "cache", lookup.versions.as_deref()).await;
    }
    let Some(npm) = find_on_path(lookup.path.as_deref(), "npm") else {
        return Err(RuntimeError::Deno {
            message: "Deno 2 was not found and npm is not available to install it. Install Deno 2 \
                      and put it on PATH (or set HOMEBASE_DENO to its path), or install Node.js \
                      with npm so that Homebase can fetch Deno from the npm registry."
                .into(),
        });
    };
    install_with_npm(&npm, &lookup.cache, lookup.versions.as_deref(), progress).await
}

fn find_on_path(paths: Option<&std::ffi::OsStr>, name: &str) -> Option<PathBuf> {
    std::env::split_paths(paths?).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The native binary inside an `npm install deno` folder: `node_modules/deno/deno` once the
/// package's install script has run, else the platform package's own copy.
fn cached_binary(prefix: &Path) -> Option<PathBuf> {
    let modules = prefix.join("node_modules");
    let main = modules.join("deno").join("deno");
    if is_executable(&main) {
        return Some(main);
    }
    let platforms = std::fs::read_dir(modules.join("@deno")).ok()?;
    platforms.flatten().map(|entry| entry.path().join("deno")).find(|candidate| is_executable(candidate))
}

async fn install_with_npm(
    npm: &Path,
    prefix: &Path,
    versions: Option<&Path>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<DenoInstall, RuntimeError> {
    std::fs::create_dir_all(prefix)
        .map_err(|e| RuntimeError::Deno { message: format!("could not create {}: {e}", prefix.display()) })?;
    progress(&format!("Deno not found; installing deno@2 from the npm registry into {} …", prefix.display()));
    let started = std::time::Instant::now();
    let output = Command::new(npm)
        .args(["install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error", "--prefix"])
        .arg(prefix)
        .arg("deno@2")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| RuntimeError::Deno { message: format!("could not run npm: {e}") })?;
    if !output.status.success() {
        return Err(RuntimeError::Deno {
            message: format!(
                "`npm install deno@2` failed ({}): {}. Install Deno 2 yourself and set HOMEBASE_DENO.",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let Some(path) = cached_binary(prefix) else {
        return Err(RuntimeError::Deno {
            message: format!(
                "`npm install deno@2` finished but no Deno binary for this platform is in {}. \
                 Install Deno 2 yourself and set HOMEBASE_DENO.",
                prefix.display()
            ),
        });
    };
    let install = check(&path, "npm", versions).await?;
    progress(&format!("Installed Deno {} in {:.1}s", install.version, started.elapsed().as_secs_f64()));
    Ok(install)
}

/// Runs `deno --version` (or finds its answer in `versions`, remembered for this very file) and
/// refuses anything older than 2.0.
async fn check(path: &Path, source: &'static str, versions: Option<&Path>) -> Result<DenoInstall, RuntimeError> {
    let identity = FileIdentity::of(path);
    let remembered = versions.zip(identity.as_ref()).and_then(|(file, id)| remembered_version(file, path, id));
    let version = match remembered {
        Some(version) => version,
        None => {
            let version = run_version(path).await?;
            if let (Some(file), Some(id)) = (versions, &identity) {
                remember_version(file, path, id, &version);
            }
            version
        }
    };
    let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if major < 2 {
        return Err(RuntimeError::Deno {
            message: format!(
                "Deno {version} at {} is too old; Homebase needs Deno 2.0 or newer. Upgrade it \
                 (`deno upgrade`), or set HOMEBASE_DENO to a newer one.",
                path.display()
            ),
        });
    }
    Ok(DenoInstall { path: path.to_path_buf(), version, source })
}

async fn run_version(path: &Path) -> Result<String, RuntimeError> {
    let mut attempt = 0;
    let output = loop {
        let result =
            Command::new(path).arg("--version").env("DENO_NO_UPDATE_CHECK", "1").stdin(Stdio::null()).output().await;
        match result {
            // A just-written executable is briefly "busy" while another thread's fork still
            // holds it open; that passes.
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempt < 5 => {
                attempt += 1;
                tokio::task::yield_now().await;
            }
            result => {
                break result
                    .map_err(|e| RuntimeError::Deno { message: format!("could not run {}: {e}", path.display()) })?;
            }
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text).ok_or_else(|| RuntimeError::Deno {
        message: format!(
            "{} did not report a Deno version (it printed {:?})",
            path.display(),
            text.lines().next().unwrap_or("")
        ),
    })
}

/// What identifies one build of an executable without reading it: size and modification time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FileIdentity {
    len: u64,
    modified_ns: u128,
}

impl FileIdentity {
    fn of(path: &Path) -> Option<FileIdentity> {
        let meta = std::fs::metadata(path).ok()?;
        let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(FileIdentity { len: meta.len(), modified_ns: modified.as_nanos() })
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct RememberedVersions {
    entries: Vec<RememberedVersion>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RememberedVersion {
    path: PathBuf,
    identity: FileIdentity,
    version: String,
}

fn remembered_version(file: &Path, path: &Path, identity: &FileIdentity) -> Option<String> {
    let text = std::fs::read(file).ok()?;
    let known: RememberedVersions = serde_json::from_slice(&text).ok()?;
    known.entries.into_iter().find(|e| e.path == path && e.identity == *identity).map(|e| e.version)
}

/// Best effort: a cache that cannot be written only costs the next start a `deno --version`.
fn remember_version(file: &Path, path: &Path, identity: &FileIdentity, version: &str) {
    let mut known: RememberedVersions =
        std::fs::read(file).ok().and_then(|text| serde_json::from_slice(&text).ok()).unwrap_or_default();
    known.entries.retain(|e| e.path != path);
    known.entries.push(RememberedVersion {
        path: path.to_path_buf(),
        identity: identity.clone(),
        version: version.to_string(),
    });
    let Ok(text) = serde_json::to_vec_pretty(&known) else { return };
    let Some(dir) = file.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    // Write beside and rename, so a concurrent reader never sees half a file.
    let temp = dir.join(format!(".deno-versions.{}.tmp", std::process::id()));
    if std::fs::write(&temp, text).is_ok() && std::fs::rename(&temp, file).is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

/// `deno 2.1.4 (stable, release, …)` → `2.1.4`.
fn parse_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let rest = first.strip_prefix("deno ")?;
    let version = rest.split_whitespace().next()?;
    version.chars().next().filter(char::is_ascii_digit).map(|_| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_deno_version_lines() {
        assert_eq!(
            parse_version("deno 2.9.6 (stable, release, x86_64-unknown-linux-gnu)\nv8 15").as_deref(),
            Some("2.9.6")
        );
        assert_eq!(parse_version("deno 1.46.3 (release)").as_deref(), Some("1.46.3"));
        assert_eq!(parse_version("node v20"), None);
        assert_eq!(parse_version(""), None);
    }

    fn fake_deno(dir: &Path, version_line: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("deno");
        std::fs::write(&path, format!("#!/bin/sh\necho '{version_line}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn refuses_deno_older_than_two() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_deno(dir.path(), "deno 1.46.3 (stable, release)");
        let err = check(&path, "PATH", None).await.unwrap_err().to_string();
        assert!(err.contains("Deno 1.46.3"), "{err}");
        assert!(err.contains("2.0 or newer"), "{err}");
    }

    #[tokio::test]
    async fn accepts_deno_two() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_deno(dir.path(), "deno 2.0.0 (stable, release)");
        let install = check(&path, "PATH", None).await.unwrap();
        assert_eq!(install.version, "2.0.0");
    }

    #[tokio::test]
    async fn rejects_a_program_that_is_not_deno() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_deno(dir.path(), "something else");
        let err = check(&path, "PATH", None).await.unwrap_err().to_string();
        assert!(err.contains("did not report a Deno version"), "{err}");
    }

    fn lookup(explicit: Option<PathBuf>, path_dirs: &[&Path], cache: &Path) -> Lookup {
        Lookup {
            explicit,
            path: Some(std::env::join_paths(path_dirs).unwrap()),
            cache: cache.to_path_buf(),
            versions: None,
        }
    }

    #[tokio::test]
    async fn lookup_order_is_explicit_then_path_then_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (explicit, on_path, cache) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        for d in [&explicit, &on_path] {
            std::fs::create_dir_all(d).unwrap();
        }
        let cached_dir = cache.join("node_modules/deno");
        std::fs::create_dir_all(&cached_dir).unwrap();
        let explicit_bin = fake_deno(&explicit, "deno 2.1.0 (x)");
        fake_deno(&on_path, "deno 2.2.0 (x)");
        fake_deno(&cached_dir, "deno 2.3.0 (x)");
        let quiet = |_: &str| {};

        let found = locate_with(&lookup(Some(explicit_bin), &[&on_path], &cache), &quiet).await.unwrap();
        assert_eq!((found.version.as_str(), found.source), ("2.1.0", "HOMEBASE_DENO"));
        let found = locate_with(&lookup(None, &[&on_path], &cache), &quiet).await.unwrap();
        assert_eq!((found.version.as_str(), found.source), ("2.2.0", "PATH"));
        let found = locate_with(&lookup(None, &[&explicit.join("none")], &cache), &quiet).await.unwrap();
        assert_eq!((found.version.as_str(), found.source), ("2.3.0", "cache"));
    }

    #[tokio::test]
    async fn a_bad_explicit_deno_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let old = fake_deno(dir.path(), "deno 1.40.0 (x)");
        let err = locate_with(&lookup(Some(old), &[], dir.path()), &|_| {}).await.unwrap_err().to_string();
        assert!(err.contains("HOMEBASE_DENO points at"), "{err}");
        assert!(err.contains("too old"), "{err}");
    }

    #[tokio::test]
    async fn without_deno_or_npm_the_error_names_both_remedies() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate_with(&lookup(None, &[dir.path()], &dir.path().join("cache")), &|_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOMEBASE_DENO"), "{err}");
        assert!(err.contains("npm"), "{err}");
        assert!(err.contains("PATH"), "{err}");
    }

    /// The real thing: `npm install deno@2` from the npm registry into an empty cache.
    #[tokio::test]
    async fn provisions_deno_from_npm_into_an_empty_cache() {
        let npm = find_on_path(std::env::var_os("PATH").as_deref(), "npm").expect("the tests need npm");
        let npm_dir = npm.parent().unwrap().to_path_buf();
        let cache = tempfile::tempdir().unwrap();
        let lines = std::sync::Mutex::new(Vec::new());
        let progress = |line: &str| lines.lock().unwrap().push(line.to_string());
        let lookup = lookup(None, &[&npm_dir], cache.path());
        let found = locate_with(&lookup, &progress).await.unwrap();
        if found.source == "PATH" {
            return; // this machine has deno next to npm; nothing was installed
        }
        assert_eq!(found.source, "npm");
        assert!(found.version.starts_with("2."), "{}", found.version);
        assert!(found.path.starts_with(cache.path()));
        let lines = lines.into_inner().unwrap();
        assert!(lines[0].contains("installing deno@2"), "{lines:?}");
        assert!(lines.last().unwrap().starts_with("Installed Deno 2."), "{lines:?}");
        // The second lookup finds the cached copy without npm.
        let again = locate_with(&Lookup { path: None, ..lookup }, &|_| {}).await.unwrap();
        assert_eq!((again.source, again.path), ("cache", found.path));
    }

    #[tokio::test]
    async fn a_verified_version_is_remembered_until_the_file_changes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let deno = dir.path().join("deno");
        let script =
            |version: &str| format!("#!/bin/sh\necho run >> '{}'\necho 'deno {version} (x)'\n", runs.display());
        std::fs::write(&deno, script("2.1.0")).unwrap();
        std::fs::set_permissions(&deno, std::fs::Permissions::from_mode(0o755)).unwrap();
        let versions = dir.path().join("versions.json");
        let count = || std::fs::read_to_string(&runs).unwrap_or_default().lines().count();

        assert_eq!(check(&deno, "PATH", Some(&versions)).await.unwrap().version, "2.1.0");
        assert_eq!(check(&deno, "PATH", Some(&versions)).await.unwrap().version, "2.1.0");
        assert_eq!(count(), 1, "the second check used the remembered version");

        std::fs::write(&deno, script("2.10.0")).unwrap(); // a new build: another size
        assert_eq!(check(&deno, "PATH", Some(&versions)).await.unwrap().version, "2.10.0");
        assert_eq!(count(), 2);
    }

    #[test]
    fn finds_the_binary_of_an_npm_install() {
        let dir = tempfile::tempdir().unwrap();
        assert!(cached_binary(dir.path()).is_none());
        let platform = dir.path().join("node_modules/@deno/linux-x64-glibc");
        std::fs::create_dir_all(&platform).unwrap();
        let bin = fake_deno(&platform, "deno 2.0.0");
        assert_eq!(cached_binary(dir.path()), Some(bin));
        let main = dir.path().join("node_modules/deno");
        std::fs::create_dir_all(&main).unwrap();
        let bin = fake_deno(&main, "deno 2.0.0");
        assert_eq!(cached_binary(dir.path()), Some(bin));
    }
}

//! Deploy checks: Deno lists a deployment's module graph (`deno info --json`), downloading what it
//! imports into the package cache, before anything is stored.
//!
//! A check is bounded three ways: at most [`RuntimeConfig::max_checks`](crate::RuntimeConfig) run
//! at once (past that, [`RuntimeError::Busy`]), each is killed at
//! [`RuntimeConfig::check_timeout`](crate::RuntimeConfig), and in `serve` it runs in the same
//! sandbox as a worker ([`crate::sandbox`]): a clean environment, and Landlock letting it read
//! only the deployment's own files, the host's module and the system files Deno needs, and write
//! only the package cache and its own folder (removed afterwards).
//!
//! What it answers only ever quotes the deployment's own files. A local module outside the
//! deployment is refused by name, as its importer wrote it, before any Deno text is looked at;
//! Deno's messages are shown with the deployment's paths made relative to the entry's folder,
//! and replaced by a generic sentence if they still mention any other path.
//!
//! The same listing, run once per entry with the app's own `DENO_DIR`, refills the package cache
//! before a worker starts ([`warm`]): workers only read it, so an entry whose packages are missing
//! (a wiped cache, a Deno upgrade, a deployment older than the sandbox) gets them first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::RuntimeError;
use crate::sandbox::{self, Caches, Rules};
use crate::worker::file_url;

/// Seconds a caller is asked to wait when every check slot is taken.
pub const CHECK_RETRY_AFTER: u64 = 5;

/// The checks in flight and their limits: at most `max` run at once and as many more wait for a
/// slot (up to the timeout); a deploy beyond both is refused at once.
pub(crate) struct Checks {
    permits: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
}

/// A deploy check's hold on a running slot (and its admission).
pub(crate) struct Slot {
    _running: tokio::sync::OwnedSemaphorePermit,
    _admitted: tokio::sync::OwnedSemaphorePermit,
}

/// How one `deno info` runs.
pub(crate) struct Listing<'a> {
    pub deno: &'a Path,
    pub entry: &'a Path,
    /// The deployment's folder: its files may be imported and quoted.
    pub root: &'a Path,
    /// The host folder (`base44:runtime`).
    pub host_dir: &'a Path,
    /// The import map: the host's, or one with the function's SDK substitutions ([`crate::sdk`]).
    pub import_map: &'a Path,
    /// Its `DENO_DIR`, HOME, TMPDIR and working folder.
    pub deno_dir: &'a Path,
    pub tmp: &'a Path,
    /// `Some` in `serve`: a clean environment, and Landlock when `confine`.
    pub caches: Option<&'a Caches>,
    pub confine: bool,
}

impl Checks {
    pub fn new(max: usize, timeout: Duration) -> Checks {
        let max = max.max(1);
        Checks { permits: Arc::new(Semaphore::new(max)), admitted: Arc::new(Semaphore::new(2 * max)), max, timeout }
    }

    /// A running slot for a deploy check: at once, or after waiting behind at most `max` others
    /// for at most the check timeout; else [`RuntimeError::Busy`].
    pub async fn slot(&self) -> Result<Slot, RuntimeError> {
        let busy = || RuntimeError::Busy {
            detail: format!(
                "{} deploys are being checked and as many wait; retry in {CHECK_RETRY_AFTER} seconds. An operator \
                 can raise max-deploy-checks.",
                self.max
            ),
            retry_after: Duration::from_secs(CHECK_RETRY_AFTER),
        };
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| busy())?;
        match tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(running)) => Ok(Slot { _running: running, _admitted: admitted }),
            _ => Err(busy()),
        }
    }

    /// Runs `deno info --json` under the timeout; its JSON, or the error to answer.
    pub async fn list(&self, listing: &Listing<'_>) -> Result<Value, RuntimeError> {
        let mut cmd = tokio::process::Command::new(listing.deno);
        cmd.arg("info")
            .arg("--json")
            .arg("--no-config")
            .arg(format!("--import-map={}", listing.import_map.display()))
            .arg(listing.entry)
            .current_dir(listing.tmp)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(caches) = listing.caches {
            cmd.env_clear().envs(sandbox::base_env(listing.tmp, listing.deno_dir)).env("RUST_BACKTRACE", "0");
            if listing.confine {
                let mut rules = Rules::for_deno(listing.deno);
                rules.read(listing.root).read(listing.host_dir).write(listing.deno_dir).write(listing.tmp);
                for dir in caches.packages() {
                    rules.write(dir);
                }
                rules.apply(&mut cmd)?;
            }
        } else {
            cmd.env("DENO_NO_PACKAGE_JSON", "1").env("DENO_NO_UPDATE_CHECK", "1").env("NO_COLOR", "1");
        }
        crate::worker::die_with_parent(&mut cmd);
        let child = cmd.spawn()?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(output) => output?,
            // Dropping the child kills it (kill_on_drop).
            Err(_) => return Err(RuntimeError::CheckTimeout { timeout: self.timeout }),
        };
        let parsed = serde_json::from_slice::<Value>(&output.stdout).ok().filter(|_| output.status.success());
        match parsed {
            Some(info) => Ok(info),
            None => {
                let text = String::from_utf8_lossy(&output.stderr);
                let text = text.split("\nStack backtrace:").next().unwrap_or_default().trim();
                let text = text.strip_prefix("error: ").unwrap_or(text);
                Err(RuntimeError::ModuleInvalid { detail: Shown::new(listing.entry, listing.root).text(text) })
            }
        }
    }
}

/// The first reason the graph `info` may not be deployed: a local module outside `root` (and
/// the host folder), then the first error Deno met on a module that is imported statically (a
/// failing dynamic import is the function's business at run time, as with `deno cache`).
pub(crate) fn verdict(info: &Value, entry: &Path, root: &Path, host_dir: &Path) -> Result<(), String> {
    let shown = Shown::new(entry, root);
    let inside = |specifier: &str| match file_path(specifier) {
        Some(path) => path.starts_with(root) || path.starts_with(host_dir),
        None => true, // npm:, jsr:, https:, node:, data: …
    };
    let empty = Vec::new();
    let modules = info["modules"].as_array().unwrap_or(&empty);
    let by_specifier: HashMap<&str, &Value> =
        modules.iter().filter_map(|m| Some((m["specifier"].as_str()?, m))).collect();

    // 1. Local modules outside the deployment, named as the author wrote them.
    for module in modules {
        let importer = module["specifier"].as_str().unwrap_or_default();
        for dep in module["dependencies"].as_array().unwrap_or(&empty) {
            for kind in ["code", "type"] {
                let Some(resolved) = dep[kind]["specifier"].as_str() else { continue };
                if !inside(resolved) {
                    let written = dep["specifier"].as_str().unwrap_or(resolved);
                    let place = shown.place(importer, &dep[kind]["span"]);
                    return Err(outside(written, &place));
                }
            }
        }
    }
    let stray = modules
        .iter()
        .filter_map(|m| m["specifier"].as_str())
        .chain(info["redirects"].as_object().into_iter().flat_map(|r| r.values().filter_map(Value::as_str)));
    for specifier in stray {
        if !inside(specifier) {
            return Err(outside(specifier, ""));
        }
    }

    // 2. Errors on the static graph, from the roots.
    let redirects = info["redirects"].as_object();
    let follow = |specifier: &str| -> String {
        let mut current = specifier.to_string();
        for _ in 0..10 {
            match redirects.and_then(|r| r.get(&current)).and_then(Value::as_str) {
                Some(next) => current = next.to_string(),
                None => break,
            }
        }
        current
    };
    let mut queue: VecDeque<(String, Option<String>)> = info["roots"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(Value::as_str)
        .map(|s| (follow(s), None))
        .collect();
    let mut seen = HashSet::new();
    while let Some((specifier, imported_at)) = queue.pop_front() {
        if !seen.insert(specifier.clone()) {
            continue;
        }
        let Some(module) = by_specifier.get(specifier.as_str()) else { continue };
        if let Some(error) = module["error"].as_str() {
            let mut text = error.to_string();
            if let Some(place) = imported_at.filter(|_| !text.contains("\n    at ")) {
                text.push_str(&format!("\n    at {place}"));
            }
            return Err(shown.text(&text));
        }
        for dep in module["dependencies"].as_array().unwrap_or(&empty) {
            if dep["isDynamic"].as_bool() == Some(true) {
                continue;
            }
            let code = &dep["code"];
            let place = shown.place(&specifier, &code["span"]);
            if let Some(error) = code["error"].as_str() {
                return Err(shown.text(&format!("{error}\n    at {place}")));
            }
            if let Some(next) = code["specifier"].as_str() {
                queue.push_back((follow(next), Some(place)));
            }
        }
    }
    Ok(())
}

fn outside(written: &str, place: &str) -> String {
    let written: String = written.chars().take(200).collect();
    let at = if place.is_empty() { String::new() } else { format!(" (imported at {place})") };
    format!(
        "'{written}'{at} is outside the deployment: a function can only import its own deployment's files, npm:, \
         jsr: and https: modules."
    )
}

/// The local path of a `file:` URL.
fn file_path(specifier: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let rest = specifier.strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let path = PathBuf::from(std::ffi::OsString::from_vec(out));
    // `..` never survives URL resolution; refuse it anyway rather than trust a prefix test.
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Some(PathBuf::from("/.."));
    }
    Some(path)
}

/// Shows Deno's text with the deployment's file URLs relative to the entry's folder, as the
/// author wrote the paths, and nothing else of the machine's files.
struct Shown {
    /// `(URL prefix, replacement)`, deepest first: the entry's folder, then each parent up to
    /// the deployment's root.
    prefixes: Vec<(String, String)>,
}

impl Shown {
    fn new(entry: &Path, root: &Path) -> Shown {
        let mut prefixes = Vec::new();
        let mut up = String::new();
        for dir in entry.ancestors().skip(1) {
            prefixes.push((format!("{}/", file_url(dir)), up.clone()));
            if dir == root || !dir.starts_with(root) {
                break;
            }
            up.push_str("../");
        }
        Shown { prefixes }
    }

    fn url(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (prefix, replacement) in &self.prefixes {
            text = text.replace(prefix.as_str(), replacement);
        }
        text
    }

    /// `entry.ts:3:8` for a span (0-based in Deno's JSON) of the module `specifier`.
    fn place(&self, specifier: &str, span: &Value) -> String {
        let line = span["start"]["line"].as_u64().unwrap_or(0) + 1;
        let column = span["start"]["character"].as_u64().unwrap_or(0) + 1;
        format!("{}:{line}:{column}", self.url(specifier))
    }

    /// Deno's message for the caller: relative paths, or a generic sentence when another path
    /// would remain. Quoted source lines (`12 | …`) come from the module the error is about,
    /// which step 1 of [`verdict`] proved to be the deployment's own.
    fn text(&self, text: &str) -> String {
        let text = self.url(text);
        let leaks = text.lines().filter(|line| !is_source_line(line)).any(mentions_path);
        if leaks {
            tracing::warn!(message = %text, "a deploy check's message mentioned files outside the deployment; answered without it");
            return "Deno could not load the function's modules, and its message named files outside the \
                    deployment, so it is not shown. Check the imports: a function can only import its own \
                    deployment's files, npm:, jsr: and https: modules."
                .into();
        }
        text
    }
}

/// A line of source Deno quotes under an error: `12 | code` or `   |    ~`.
fn is_source_line(line: &str) -> bool {
    let trimmed = line.trim_start();
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    trimmed[digits..].starts_with(" |") || trimmed.starts_with('|')
}

/// Whether `line` names a local file: a `file:` URL or an absolute path.
fn mentions_path(line: &str) -> bool {
    if line.contains("file:") {
        return true;
    }
    let bytes = line.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        let starts = i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'"' | b'\'' | b'`' | b'(' | b'[' | b'=' | b',');
        b == b'/' && starts && bytes.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric() || matches!(n, b'.' | b'_'))
    })
}

/// The file that notes the packages of `entry` in the deployment folder `root` as cached for
/// this Deno executable. Keyed by the folder's name (the deployment's content address) and the
/// entry's place in it, so the deploy check of a scratch copy and the worker of the stored
/// deployment agree, and by the SDK table, which decides the versions its SDK imports load.
pub(crate) fn warm_marker(caches: &Caches, deno: &Path, entry: &Path, root: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let stamp = std::fs::metadata(deno).ok().map(|m| (m.len(), m.modified().ok()));
    let relative = entry.strip_prefix(root).unwrap_or(entry);
    let key = Sha256::new()
        .chain_update(deno.as_os_str().as_encoded_bytes())
        .chain_update(format!("{stamp:?}\0"))
        .chain_update(root.file_name().unwrap_or_default().as_encoded_bytes())
        .chain_update(b"\0")
        .chain_update(relative.as_os_str().as_encoded_bytes())
        .chain_update(b"\0")
        .chain_update(crate::sdk::table_stamp())
        .finalize();
    let key: String = key[..16].iter().map(|b| format!("{b:02x}")).collect();
    caches.warm_dir().join(key)
}

/// Lists an entry's graph with the app's own `DENO_DIR` (waiting for a check slot), so that the
/// packages it imports are in the shared cache, and creates `marker` when that worked. Failures
/// are left to the worker's own start, whose error is the precise one.
pub(crate) async fn warm(checks: &Checks, listing: &Listing<'_>, marker: &Path) {
    let Ok(_permit) = checks.permits.clone().acquire_owned().await else { return };
    match checks.list(listing).await {
        Ok(info) if verdict(&info, listing.entry, listing.root, listing.host_dir).is_ok() => {
            let _ = std::fs::write(marker, b"");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, entry = %listing.entry.display(), "caching a function's packages failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOT: &str = "/data/scratch/check-1/d_x";
    const ENTRY: &str = "/data/scratch/check-1/d_x/functions/_/entry.ts";
    const HOST: &str = "/cache/host/abc";

    fn edge(written: &str, resolved: &str, line: u64, dynamic: bool) -> Value {
        let span = json!({ "start": { "line": line, "character": 7 }, "end": { "line": line, "character": 9 } });
        json!({ "specifier": written, "code": { "specifier": resolved, "span": span }, "isDynamic": dynamic })
    }

    fn graph(deps: Vec<Value>, more: Vec<Value>) -> Value {
        let mut modules = vec![json!({ "kind": "esm", "specifier": format!("file://{ENTRY}"), "dependencies": deps })];
        modules.extend(more);
        json!({ "roots": [format!("file://{ENTRY}")], "modules": modules, "redirects": {} })
    }

    fn check(info: &Value) -> Result<(), String> {
        verdict(info, Path::new(ENTRY), Path::new(ROOT), Path::new(HOST))
    }

    #[test]
    fn local_modules_outside_the_deployment_are_refused_by_their_written_name() {
        for (written, resolved) in [
            ("/etc/passwd", "file:///etc/passwd".to_string()),
            ("../../../x.ts", "file:///data/scratch/check-1/x.ts".to_string()),
            ("/proc/1/environ", "file:///proc/1/environ".to_string()),
            ("./a%2F..%2F..%2Fb.ts", format!("file://{ROOT}/functions/_/a/%2E%2E/%2E%2E/%2E%2E/b.ts")),
        ] {
            let info = graph(
                vec![edge(written, &resolved, 1, true)],
                vec![json!({ "specifier": resolved, "error": "root:x:0:0" })],
            );
            let detail = check(&info).unwrap_err();
            assert!(
                detail.starts_with(&format!("'{written}' (imported at entry.ts:2:8) is outside the deployment")),
                "{detail}"
            );
            assert!(!detail.contains("root:x"), "{detail}");
        }
        let fine = graph(
            vec![
                edge("./lib.ts", &format!("file://{ROOT}/functions/_/lib.ts"), 0, false),
                edge("../../shared/x.ts", &format!("file://{ROOT}/shared/x.ts"), 1, false),
                edge("base44:runtime", &format!("file://{HOST}/runtime.js"), 2, false),
                edge("npm:left-pad@1", "npm:left-pad@1", 3, false),
                edge("https://example.test/x.ts", "https://example.test/x.ts", 4, false),
            ],
            vec![],
        );
        assert_eq!(check(&fine), Ok(()));
    }

    #[test]
    fn static_errors_are_shown_relative_to_the_entry_and_dynamic_ones_ignored() {
        let missing = format!("file://{ROOT}/functions/_/nope.ts");
        let info = graph(
            vec![edge("./nope.ts", &missing, 0, false)],
            vec![json!({ "specifier": missing, "error": format!("Module not found \"{missing}\".") })],
        );
        assert_eq!(check(&info).unwrap_err(), "Module not found \"nope.ts\".\n    at entry.ts:1:8");
        let info = graph(
            vec![edge("./nope.ts", &missing, 0, true)],
            vec![json!({ "specifier": missing, "error": "Module not found" })],
        );
        assert_eq!(check(&info), Ok(()));
        let shared = format!("file://{ROOT}/shared/x.ts");
        let syntax = format!("SyntaxError: Expression expected\n  |\n1 | x(;\n  |   ~\n    at {shared}:1:3");
        let info = graph(
            vec![edge("../../shared/x.ts", &shared, 0, false)],
            vec![json!({ "specifier": shared, "error": syntax })],
        );
        assert_eq!(
            check(&info).unwrap_err(),
            "SyntaxError: Expression expected\n  |\n1 | x(;\n  |   ~\n    at ../../shared/x.ts:1:3"
        );
    }

    #[test]
    fn messages_naming_other_paths_are_replaced() {
        let shown = Shown::new(Path::new(ENTRY), Path::new(ROOT));
        let leak = shown.text("Failed reading /data/deno/shared/npm/x/package.json: denied");
        assert!(!leak.contains("/data"), "{leak}");
        assert!(shown.text("error in file:///etc/x").contains("not shown"));
        let quoted = "SyntaxError: bad\n  |\n3 | const re = /etc/passwd/;\n  |   ~\n    at entry.ts:3:1";
        assert_eq!(shown.text(quoted), quoted, "the deployment's own quoted source stays");
        assert_eq!(shown.text("npm package 'x' does not exist."), "npm package 'x' does not exist.");
        assert_eq!(
            shown.text("Import 'https://a.test/b/c.ts' failed: 404"),
            "Import 'https://a.test/b/c.ts' failed: 404"
        );
    }

    /// The raw listing of an entry that imports a file outside its deployment, confined or not.
    async fn list_outside(confine: bool) -> String {
        let deno = crate::deno::locate_or_install(&|line| eprintln!("{line}")).await.expect("tests need Deno").path;
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("deployment");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("entry.ts"), "import \"../outside.ts\";\n").unwrap();
        std::fs::write(temp.path().join("outside.ts"), "root:x:0:0:the-outside-secret\n").unwrap();
        let host = temp.path().join("host");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("import_map.json"), "{\"imports\":{}}").unwrap();
        let caches = Caches::open(&temp.path().join("cache")).unwrap();
        let deno_dir = temp.path().join("check");
        caches.deno_dir_at(&deno_dir).unwrap();
        let tmp = temp.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let entry = root.join("entry.ts");
        let import_map = host.join("import_map.json");
        let listing = Listing {
            deno: &deno,
            entry: &entry,
            root: &root,
            host_dir: &host,
            import_map: &import_map,
            deno_dir: &deno_dir,
            tmp: &tmp,
            caches: Some(&caches),
            confine,
        };
        let info = Checks::new(1, Duration::from_secs(60)).list(&listing).await.unwrap();
        let verdict = verdict(&info, &entry, &root, &host).unwrap_err();
        assert!(
            verdict.starts_with("'../outside.ts' (imported at entry.ts:1:8) is outside the deployment"),
            "{verdict}"
        );
        info.to_string()
    }

    #[tokio::test]
    async fn landlock_keeps_a_deploy_check_from_reading_outside_its_rules() {
        assert!(crate::sandbox::Support::probe().available(), "these tests need a kernel with Landlock");
        assert!(
            list_outside(false).await.contains("the-outside-secret"),
            "control: unconfined, Deno reads and quotes it"
        );
        let confined = list_outside(true).await;
        assert!(!confined.contains("the-outside-secret"), "{confined}");
    }
}

//! The catalog of `homebase dev`: one project folder, reloaded when its files change.
//!
//! The project's functions become the catalog of one app (the project's app id, or `local`).
//! Every request sees one consistent snapshot; a reload swaps the snapshot and retires workers
//! whose code changed (they finish their requests first). A broken function is reported and
//! answers with its error; the healthy ones keep serving.
//!
//! Local secrets come from the environment Homebase runs in and from the project root's `.env`
//! and `.env.local` (the environment wins, then `.env.local`). Editing those files is a reload
//! like any other: every function gets a new version, so in-flight requests finish on the old
//! values and the next request sees the new ones. Their values are masked in the log lines.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use homebase_logs::LogHub;
use homebase_project::{DOTENV_FILES, FunctionDef, Project, ProjectError, load_dotenv};
use homebase_runtime::{FunctionSpec, Runtime};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{AppFunctions, Catalog};

/// App id used when the project has no `base44/.app.jsonc`.
pub const LOCAL_APP_ID: &str = "local";
/// How long the watcher waits for a burst of file events to settle.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// What happened to the project, for the terminal.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DevEvent {
    /// The project was read (at start or after a change).
    Loaded {
        project: String,
        app_id: String,
        functions: Vec<String>,
        /// Functions whose code changed since the last load (empty at start).
        changed: Vec<String>,
        removed: Vec<String>,
        problems: Vec<String>,
        reload: bool,
    },
    /// The project could not be read at all; the previous state keeps serving.
    Failed { error: String },
}

pub type DevListener = Arc<dyn Fn(&DevEvent) + Send + Sync>;

pub struct DevApp {
    start_dir: PathBuf,
    watch_dirs: Vec<PathBuf>,
    /// The project root when it is not already watched: watched alone for the `.env` files.
    env_dir: Option<PathBuf>,
    app_id: String,
    current: RwLock<Arc<AppFunctions>>,
    runtime: Runtime,
    listener: DevListener,
    /// Masks the `.env` values in the functions' log lines.
    logs: Arc<LogHub>,
}

impl DevApp {
    /// Reads the project found from `start_dir`. Fails only when there is no readable project;
    /// broken functions are reported through `listener` and served as errors.
    /// `logs` is the hub the runtime's lines go through: it masks the `.env` values in them.
    pub fn load(
        start_dir: &Path,
        runtime: Runtime,
        logs: Arc<LogHub>,
        listener: DevListener,
    ) -> Result<Arc<DevApp>, ProjectError> {
        let project = Project::find(start_dir)?;
        let app_id = project.app_id.clone().unwrap_or_else(|| LOCAL_APP_ID.to_string());
        let app = Arc::new(DevApp {
            start_dir: start_dir.to_path_buf(),
            watch_dirs: watch_dirs(&project),
            env_dir: (project.base_dir != project.root).then(|| project.root.clone()),
            app_id,
            current: RwLock::new(Arc::new(AppFunctions::default())),
            runtime,
            listener,
            logs,
        });
        app.apply(&project, false);
        Ok(app)
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The folders watched for changes.
    pub fn watch_dirs(&self) -> &[PathBuf] {
        &self.watch_dirs
    }

    pub fn snapshot(&self) -> Arc<AppFunctions> {
        self.current.read().unwrap().clone()
    }

    /// Reads the project again and swaps in the result.
    pub fn reload(&self) {
        match Project::find(&self.start_dir) {
            Ok(project) => self.apply(&project, true),
            Err(error) => (self.listener)(&DevEvent::Failed { error: error.to_string() }),
        }
    }

    fn apply(&self, project: &Project, reload: bool) {
        let discovery = project.discover_functions();
        let shared = project.shared_dir();
        let mut next = AppFunctions { app_id: self.app_id.clone(), ..Default::default() };
        let (secrets, env_problems) = local_secrets(&project.root);
        self.logs.set_secrets(&self.app_id, secrets.env.iter().map(|(_, value)| value));
        let mut problems: Vec<String> = env_problems.iter().map(ToString::to_string).collect();
        problems.extend(secrets.skipped.iter().cloned());
        for def in &discovery.functions {
            let spec = spec_for(&self.app_id, def, &shared, &secrets);
            next.functions.insert(def.name.clone(), Arc::new(spec));
        }
        for problem in &discovery.problems {
            problems.push(problem.to_string());
            if let Some(name) = problem.function.as_deref()
                && !next.functions.contains_key(name)
            {
                next.broken.insert(name.to_string(), problem.to_string());
            }
        }

        let previous = self.current.read().unwrap().clone();
        let changed = changed_names(&previous, &next, reload);
        let removed: Vec<String> =
            previous.functions.keys().filter(|name| !next.functions.contains_key(*name)).cloned().collect();
        let versions: HashMap<String, String> =
            next.functions.iter().map(|(name, spec)| (name.clone(), spec.version.clone())).collect();
        *self.current.write().unwrap() = Arc::new(next.clone());
        self.runtime.retire_outdated(&self.app_id, &versions);

        (self.listener)(&DevEvent::Loaded {
            project: project.config.name.clone(),
            app_id: self.app_id.clone(),
            functions: next.functions.keys().cloned().collect(),
            changed,
            removed,
            problems,
            reload,
        });
    }

    /// Watches the project folder and reloads after changes settle, until `shutdown`, on a task
    /// of `tasks`.
    pub fn watch(self: &Arc<Self>, tasks: &TaskTracker, shutdown: CancellationToken) -> notify::Result<()> {
        use notify::Watcher;
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let env_dir = self.env_dir.clone();
        let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            if let Ok(event) = result
                && is_content_change(&event.kind)
                && event.paths.iter().any(|path| match &env_dir {
                    // The root is watched for its `.env` files only.
                    Some(root) if path.parent() == Some(root.as_path()) => is_dotenv(path),
                    _ => is_source_change(path),
                })
            {
                let _ = tx.send(());
            }
        })?;
        for dir in &self.watch_dirs {
            watcher.watch(dir, notify::RecursiveMode::Recursive)?;
        }
        if let Some(root) = &self.env_dir {
            watcher.watch(root, notify::RecursiveMode::NonRecursive)?;
        }
        let app = self.clone();
        tasks.spawn(async move {
            let _watcher = watcher; // dropping it stops the watch
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    event = rx.recv() => if event.is_none() { return },
                }
                // Debounce: an editor's save or a `git checkout` is a burst of events.
                loop {
                    match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || app.reload()).await;
            }
        });
        Ok(())
    }
}

/// `base44/`, plus the functions, entities and shared folders when the config puts them
/// elsewhere. Folders that do not exist yet are not watched.
fn watch_dirs(project: &Project) -> Vec<PathBuf> {
    let mut dirs = vec![project.base_dir.clone()];
    for dir in [project.functions_dir(), project.entities_dir(), project.shared_dir()] {
        if dir.is_dir() && !dirs.iter().any(|watched| dir.starts_with(watched)) {
            dirs.push(dir);
        }
    }
    dirs
}

impl Catalog for DevApp {
    /// In dev every app id reaches the project: the SDK in a local front end uses the real app
    /// id, and there is only one app.
    fn app(&self, _app_id: &str) -> Option<Arc<AppFunctions>> {
        Some(self.snapshot())
    }

    fn default_app(&self) -> Option<Arc<AppFunctions>> {
        Some(self.snapshot())
    }

    fn mask_text<'a>(&self, app_id: &str, text: &'a str) -> Cow<'a, str> {
        self.logs.mask_text(app_id, text)
    }
}

/// The local secrets functions get on top of the environment they inherit: the `.env` files'
/// values for names the environment does not set, and a hash of them that becomes part of every
/// function's version.
struct LocalSecrets {
    env: Vec<(String, String)>,
    hash: u64,
    /// Why names of the `.env` files were left out (the loader, Deno or Homebase read them).
    skipped: Vec<String>,
}

fn local_secrets(root: &Path) -> (LocalSecrets, Vec<ProjectError>) {
    let (values, problems) = load_dotenv(root);
    let mut skipped = Vec::new();
    let env: Vec<(String, String)> = values
        .into_iter()
        .filter(|(name, _)| match homebase_runtime::secret_name_problem(name) {
            None => true,
            Some(problem) => {
                skipped.push(format!("{problem}; the .env value is not passed to functions"));
                false
            }
        })
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect();
    let mut hasher = DefaultHasher::new();
    env.hash(&mut hasher);
    (LocalSecrets { env, hash: hasher.finish(), skipped }, problems)
}

fn spec_for(app_id: &str, def: &FunctionDef, shared: &Path, secrets: &LocalSecrets) -> FunctionSpec {
    let folders = code_folders(def, shared);
    let code = fingerprint(def, &folders);
    FunctionSpec {
        app_id: app_id.to_string(),
        name: def.name.clone(),
        entry: def.entry.clone(),
        version: if secrets.env.is_empty() { code } else { format!("{code}-{:016x}", secrets.hash) },
        read_paths: folders,
        env: secrets.env.clone(),
        net_allow: homebase_runtime::NetAllow::none(),
    }
}

fn is_dotenv(path: &Path) -> bool {
    path.file_name().is_some_and(|name| DOTENV_FILES.iter().any(|f| name == *f))
}

/// The folders a function's code lives in: its own, its entry's (a `function.jsonc` may point
/// elsewhere) and `shared/`. The worker may read these; a change in them is a new version.
fn code_folders(def: &FunctionDef, shared: &Path) -> Vec<PathBuf> {
    let mut folders = vec![def.dir.clone()];
    if let Some(entry_dir) = def.entry.parent()
        && !entry_dir.starts_with(&def.dir)
    {
        folders.push(entry_dir.to_path_buf());
    }
    if shared.is_dir() {
        folders.push(shared.to_path_buf());
    }
    folders
}

/// A hash of every file in the function's code folders (path, size, modification time): it
/// changes when any file the function may import does, whatever its extension.
fn fingerprint(def: &FunctionDef, folders: &[PathBuf]) -> String {
    let mut files = Vec::new();
    for folder in folders {
        collect_files(folder, &mut files);
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    def.entry.hash(&mut hasher);
    for file in files {
        file.hash(&mut hasher);
        if let Ok(meta) = std::fs::metadata(&file) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    format!("{:016x}", hasher.finish())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.') || entry.file_name() == "node_modules";
        match entry.file_type() {
            Ok(kind) if kind.is_dir() && !hidden => collect_files(&path, out),
            Ok(kind) if kind.is_file() => out.push(path),
            _ => {}
        }
    }
}

fn changed_names(previous: &AppFunctions, next: &AppFunctions, reload: bool) -> Vec<String> {
    if !reload {
        return Vec::new();
    }
    let old: BTreeMap<&String, &String> = previous.functions.iter().map(|(n, s)| (n, &s.version)).collect();
    next.functions
        .iter()
        .filter(|(name, spec)| old.get(name) != Some(&&spec.version))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Files created, written, renamed or removed; not reads (our own reads of the project, and
/// Deno's, must not trigger reloads) and not metadata-only changes.
fn is_content_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Editor swap files, our own state and generated types do not trigger a reload.
fn is_source_change(path: &Path) -> bool {
    !path.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        c == ".homebase" || c == ".types" || c == "node_modules" || c == ".git"
    }) && !path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.ends_with('~') || n.ends_with(".swp") || n.starts_with(".#")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_changes_reload() {
        use notify::EventKind;
        use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind};
        assert!(is_content_change(&EventKind::Create(CreateKind::File)));
        assert!(is_content_change(&EventKind::Remove(RemoveKind::Folder)));
        assert!(is_content_change(&EventKind::Modify(ModifyKind::Data(DataChange::Content))));
        assert!(!is_content_change(&EventKind::Access(AccessKind::Read)));
        assert!(!is_content_change(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))));
    }

    #[test]
    fn the_environment_wins_over_dotenv_files_and_reserved_names_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (present, _) = std::env::vars()
            .find(|(name, _)| homebase_runtime::secret_name_problem(name).is_none())
            .expect("the test runs with some ordinary variable set");
        let dotenv = format!("{present}=/nowhere\nLD_PRELOAD=/tmp/x.so\nDENO_DIR=/tmp\nDOTENV_ONLY_VALUE=x\n");
        std::fs::write(dir.path().join(".env"), dotenv).unwrap();
        let (secrets, problems) = local_secrets(dir.path());
        assert!(problems.is_empty());
        assert_eq!(secrets.env, vec![("DOTENV_ONLY_VALUE".to_string(), "x".to_string())]);
        assert_eq!(secrets.skipped.len(), 2, "{:?}", secrets.skipped);
        assert!(
            secrets.skipped.iter().any(|s| s.contains("'LD_PRELOAD' cannot be a secret name")),
            "{:?}",
            secrets.skipped
        );
        assert!(is_dotenv(&dir.path().join(".env.local")) && !is_dotenv(&dir.path().join("package.json")));
    }

    #[test]
    fn generated_and_editor_files_do_not_reload() {
        assert!(is_source_change(Path::new("/p/base44/functions/a/entry.ts")));
        assert!(is_source_change(Path::new("/p/base44/config.jsonc")));
        assert!(!is_source_change(Path::new("/p/base44/.types/types.d.ts")));
        assert!(!is_source_change(Path::new("/p/base44/.homebase/data.db")));
        assert!(!is_source_change(Path::new("/p/base44/functions/a/.entry.ts.swp")));
        assert!(!is_source_change(Path::new("/p/base44/functions/a/entry.ts~")));
    }
}

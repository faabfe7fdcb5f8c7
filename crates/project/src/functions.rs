//! Function discovery under the functions folder, and the files a deploy uploads.
//!
//! Rules (reference §6), with the choices made where it is silent:
//!
//! * Any `function.jsonc` / `function.json` declares a function `{name, entry, automations?}`.
//!   When both exist in one folder, `function.jsonc` is used and the other is reported.
//! * Any `entry.ts` / `entry.js` in a folder without a function config is a zero-config function
//!   named after its folder path (`email/send`). When both exist, `entry.ts` is served and
//!   `entry.js` is reported.
//! * Folders with a dot anywhere in their name (`.hidden`, `a.b`) and `node_modules` are not
//!   searched, for configs as for entries.
//! * An `entry.ts`/`entry.js` directly in the functions folder is reported (a `function.jsonc`
//!   there is allowed: its name is explicit).
//! * Duplicate names: the first by file path is kept, each later one is reported and not served.
//! * More than [`MAX_FUNCTIONS`] is reported once; all functions are still returned.
//! * A broken `function.jsonc` (syntax, shape, name, missing entry, invalid automation) is
//!   reported for that function only.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MAX_FUNCTIONS;
use crate::automation::{Automation, parse_automations};
use crate::error::{ErrorKind, ProjectError};
use crate::fsutil::{Listing, normalize, relative_slash, segments, walk_dirs};
use crate::jsonc::Doc;
use crate::project::Project;

/// One function found in the project.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDef {
    pub name: String,
    /// Folder of the `function.jsonc`, or of the zero-config entry file.
    pub dir: PathBuf,
    /// Absolute path of the entry file.
    pub entry: PathBuf,
    /// The `function.jsonc` / `function.json`, when there is one.
    pub config_file: Option<PathBuf>,
    pub automations: Vec<Automation>,
}

/// A file a deploy uploads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceFile {
    /// Relative to the entry's folder, with `/` separators (may start with `../`).
    pub path: String,
    pub abs: PathBuf,
}

/// The result of [`Project::discover_functions`]: healthy functions and the problems found.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Sorted by name.
    pub functions: Vec<FunctionDef>,
    pub problems: Vec<ProjectError>,
}

impl Discovery {
    /// The function with this name.
    pub fn get(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The names of the functions, sorted.
    pub fn names(&self) -> Vec<String> {
        self.functions.iter().map(|f| f.name.clone()).collect()
    }
}

/// The body of `PUT /api/apps/{app}/backend-functions/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployPayload {
    /// The entry file, relative to the folder every `files[].path` is relative to.
    pub entry: String,
    pub files: Vec<DeployFile>,
    #[serde(default)]
    pub automations: Vec<Automation>,
}

/// One uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployFile {
    pub path: String,
    pub content: String,
}

#[derive(Deserialize)]
struct RawFunctionConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    entry: Option<String>,
    #[serde(default)]
    automations: Option<Value>,
}

const SOURCE_EXTENSIONS: [&str; 4] = ["js", "ts", "json", "jsonc"];

fn is_source_name(name: &str) -> bool {
    !name.starts_with('.')
        && Path::new(name).extension().and_then(|e| e.to_str()).is_some_and(|e| SOURCE_EXTENSIONS.contains(&e))
}

impl FunctionDef {
    /// The entry file name relative to its folder (the folder `source_files` paths are
    /// relative to), e.g. `entry.ts`.
    pub fn entry_path(&self) -> String {
        self.entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// The files a deploy uploads, sorted by path: every `**/*.{js,ts,json,jsonc}` under the
    /// function's folder (and under the entry's folder when the entry lies outside it), then
    /// every such file in the project's shared folder. Folders and files starting with `.` and
    /// `node_modules` are skipped; the entry itself is always included. `path` is relative to
    /// the entry's folder, so shared files look like `../../shared/x.ts`.
    pub fn source_files(&self, project: &Project) -> io::Result<Vec<SourceFile>> {
        let entry = normalize(&self.entry);
        let entry_dir = entry.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = normalize(&self.dir);
        let mut roots = vec![dir.clone()];
        if !entry_dir.starts_with(&dir) {
            roots.push(entry_dir.clone());
        }
        let shared = normalize(&project.shared_dir());
        if shared.is_dir() {
            roots.push(shared);
        }
        let mut abs_files = vec![entry.clone()];
        for root in &roots {
            let mut errors = Vec::new();
            let listings = walk_dirs(root, &|n| n.starts_with('.') || n == "node_modules", &mut errors);
            if let Some((path, err)) = errors.into_iter().next() {
                return Err(io::Error::new(err.kind(), format!("{}: {err}", path.display())));
            }
            for Listing { rel, files } in listings {
                for file in files.iter().filter(|f| is_source_name(f)) {
                    abs_files.push(root.join(&rel).join(file));
                }
            }
        }
        abs_files.sort();
        abs_files.dedup();
        let mut out: Vec<SourceFile> =
            abs_files.into_iter().map(|abs| SourceFile { path: relative_slash(&entry_dir, &abs), abs }).collect();
        out.sort();
        Ok(out)
    }

    /// The deploy payload: `entry`, the contents of [`source_files`](Self::source_files) (UTF-8
    /// text), and the automations.
    pub fn deploy_payload(&self, project: &Project) -> io::Result<DeployPayload> {
        let mut files = Vec::new();
        for file in self.source_files(project)? {
            let content = fs::read_to_string(&file.abs)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.abs.display())))?;
            files.push(DeployFile { path: file.path, content });
        }
        Ok(DeployPayload { entry: self.entry_path(), files, automations: self.automations.clone() })
    }
}

/// The rule [`name_problem`] enforces, as error messages state it.
pub const NAME_RULE: &str =
    "a function name may use only letters, digits, '-' and '_', with '/' between segments (like 'email/send')";

/// What is wrong with a function name, if anything. A name is what the SDK and a URL call, so it
/// is one or more segments of ASCII letters, digits, `-` and `_`, joined by `/`: no dot (Base44
/// forbids them too), no empty segment, no space, no other character (a URL would have to
/// encode it, and bidi controls or look-alike letters would make one name pose as another).
/// The same rule applies to names in a project, to zero-config folder names, and to names a
/// deploy brings.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("The function `name` is empty".into());
    }
    let shown = shown_name(name);
    if name.contains('.') {
        return Some(format!(
            "Function name '{shown}' contains a dot; rename its folder or the `name` in function.jsonc"
        ));
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some(format!("Function name '{shown}' has an empty path segment; use names like 'email/send'"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))) {
        let what = match bad {
            ' ' => "a space".to_string(),
            c if c.is_ascii_graphic() => format!("'{c}'"),
            c => format!("the character U+{:04X}", c as u32),
        };
        return Some(format!("Function name '{shown}' contains {what}; {NAME_RULE}"));
    }
    None
}

/// `name` safe to print: characters other than printable ASCII as `\u{…}` escapes, so that a
/// bidi control cannot reorder the message around it.
fn shown_name(name: &str) -> String {
    name.chars()
        .map(|c| if c == ' ' || c.is_ascii_graphic() { c.to_string() } else { format!("\\u{{{:x}}}", c as u32) })
        .collect()
}

/// Reads a `function.jsonc`; `default_name` is the folder path, for a config without `name`
/// (`None` for a config directly in the functions folder).
fn load_function_config(dir: &Path, path: &Path, default_name: Option<String>) -> Result<FunctionDef, ProjectError> {
    let text = fs::read_to_string(path).map_err(|e| ProjectError::io(path, "read", &e))?;
    let doc = Doc::parse(path, &text)?;
    if !doc.value.is_object() {
        return Err(ProjectError::new(
            ErrorKind::Parse,
            "A function config must be an object like {\"name\": \"my-fn\", \"entry\": \"entry.ts\"}",
        )
        .with_file(path)
        .at_opt(Some(doc.position(&[]))));
    }
    let raw: RawFunctionConfig = doc.deserialize(path)?;
    let at = |segs: &[&str]| Some(doc.position(segs));
    // Both keys are optional: the name defaults to the folder path (as for a zero-config
    // function), the entry to `entry.ts`, else `entry.js`, beside the config.
    let name = match raw.name.as_deref().map(str::trim) {
        Some(name) => name.to_string(),
        None => default_name.ok_or_else(|| {
            ProjectError::new(ErrorKind::Invalid, "The function config has no `name`")
                .with_file(path)
                .at_opt(at(&[]))
                .with_hint(
                    "A function.jsonc directly in the functions folder must name its function: add \"name\": \"<function name>\", or move it into a folder named after the function",
                )
        })?,
    };
    if let Some(message) = name_problem(&name) {
        return Err(ProjectError::new(ErrorKind::Invalid, message)
            .with_file(path)
            .at_opt(at(&["name"]))
            .for_function(&name)
            .with_hint(format!("Rename it: {NAME_RULE}")));
    }
    let entry_rel = match raw.entry.as_deref().map(str::trim) {
        Some("") => {
            return Err(ProjectError::new(ErrorKind::Invalid, format!("Function '{name}' has an empty `entry`"))
                .with_file(path)
                .at_opt(at(&["entry"]))
                .for_function(&name)
                .with_hint("Set \"entry\" to the entry file, relative to this file, or leave it out to use entry.ts"));
        }
        Some(entry) => entry.to_string(),
        None => match ["entry.ts", "entry.js"].into_iter().find(|f| dir.join(f).is_file()) {
            Some(found) => found.to_string(),
            None => {
                return Err(ProjectError::new(
                    ErrorKind::EntryNotFound,
                    format!("Function '{name}' has no `entry` and there is no entry.ts or entry.js beside its config"),
                )
                .with_file(path)
                .at_opt(at(&[]))
                .for_function(&name)
                .with_hint("Create entry.ts next to function.jsonc, or set \"entry\" to the entry file, e.g. \"entry\": \"main.ts\""));
            }
        },
    };
    let entry = normalize(&dir.join(entry_rel));
    if !entry.is_file() {
        return Err(ProjectError::new(
            ErrorKind::EntryNotFound,
            format!("The entry file {} of function '{name}' does not exist", entry.display()),
        )
        .with_file(path)
        .at_opt(at(&["entry"]))
        .for_function(&name)
        .with_hint("Create the file or fix `entry`; it is relative to the function config"));
    }
    let automations = match &raw.automations {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => parse_automations(&name, value).map_err(|e| {
            let mut segs: Vec<String> = vec!["automations".into()];
            if let Some(i) = e.index {
                segs.push(i.to_string());
            }
            segs.extend(e.field_segments());
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let mut err = ProjectError::new(ErrorKind::InvalidAutomation, format!("Function '{name}': {e}"))
                .with_file(path)
                .at_opt(at(&segs))
                .for_function(&name);
            if let Some(hint) = e.hint {
                err = err.with_hint(hint);
            }
            err
        })?,
    };
    Ok(FunctionDef { name, dir: dir.to_path_buf(), entry, config_file: Some(path.to_path_buf()), automations })
}

impl Project {
    /// Finds every function under the functions folder. Never fails as a whole: a missing
    /// functions folder means no functions, and each problem is reported in
    /// [`Discovery::problems`] while the healthy functions are still returned.
    pub fn discover_functions(&self) -> Discovery {
        let root = self.functions_dir();
        let mut problems = Vec::new();
        if !root.exists() {
            return Discovery::default();
        }
        if !root.is_dir() {
            problems.push(
                ProjectError::new(ErrorKind::Invalid, format!("The functions path {} is not a folder", root.display()))
                    .with_file(&self.config_path)
                    .with_hint("Point `functionsDir` in the config at a folder"),
            );
            return Discovery { functions: Vec::new(), problems };
        }
        let mut io_errors = Vec::new();
        let listings = walk_dirs(&root, &|n| n.contains('.') || n == "node_modules", &mut io_errors);
        for (path, err) in io_errors {
            problems.push(ProjectError::io(&path, "read", &err));
        }
        let functions_label = relative_slash(&self.base_dir, &root);
        // (origin file, function) in walk order.
        let mut candidates: Vec<(PathBuf, FunctionDef)> = Vec::new();
        for listing in &listings {
            let dir = root.join(&listing.rel);
            let (jsonc, json) = (listing.has("function.jsonc"), listing.has("function.json"));
            if jsonc || json {
                let config = dir.join(if jsonc { "function.jsonc" } else { "function.json" });
                if jsonc && json {
                    problems.push(
                        ProjectError::new(
                            ErrorKind::Duplicate,
                            format!(
                                "Both function.jsonc and function.json exist in {}; function.json is ignored",
                                dir.display()
                            ),
                        )
                        .with_file(dir.join("function.json"))
                        .with_hint("Delete one of the two files"),
                    );
                }
                let default_name = (!listing.rel.as_os_str().is_empty()).then(|| segments(&listing.rel).join("/"));
                match load_function_config(&dir, &config, default_name) {
                    Ok(def) => candidates.push((config, def)),
                    // A config too broken to name its function is charged to the folder's
                    // name: that is the URL its author most likely calls.
                    Err(err) if err.function.is_none() && !listing.rel.as_os_str().is_empty() => {
                        problems.push(err.for_function(segments(&listing.rel).join("/")))
                    }
                    Err(err) => problems.push(err),
                }
                continue;
            }
            let (ts, js) = (listing.has("entry.ts"), listing.has("entry.js"));
            if !ts && !js {
                continue;
            }
            if listing.rel.as_os_str().is_empty() {
                for file in ["entry.ts", "entry.js"].into_iter().filter(|f| listing.has(f)) {
                    problems.push(
                        ProjectError::new(
                            ErrorKind::Invalid,
                            format!(
                                "{file} directly in the functions folder is not allowed; move it to {functions_label}/<name>/{file}"
                            ),
                        )
                        .with_file(dir.join(file))
                        .with_hint("Each function lives in its own folder; the folder path is its name"),
                    );
                }
                continue;
            }
            let name = segments(&listing.rel).join("/");
            let entry = dir.join(if ts { "entry.ts" } else { "entry.js" });
            if let Some(message) = name_problem(&name) {
                problems.push(
                    ProjectError::new(ErrorKind::Invalid, message)
                        .with_file(&entry)
                        .for_function(&name)
                        .with_hint(format!("Rename its folder: {NAME_RULE}")),
                );
                continue;
            }
            if ts && js {
                problems.push(
                    ProjectError::new(
                        ErrorKind::Duplicate,
                        format!(
                            "Function '{name}' has both entry.ts and entry.js; entry.ts is used and entry.js is ignored"
                        ),
                    )
                    .with_file(dir.join("entry.js"))
                    .for_function(&name)
                    .with_hint("Delete one of the two entry files"),
                );
            }
            candidates
                .push((entry.clone(), FunctionDef { name, dir, entry, config_file: None, automations: Vec::new() }));
        }
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let mut functions: Vec<FunctionDef> = Vec::new();
        let mut origins: Vec<PathBuf> = Vec::new();
        for (origin, def) in candidates {
            if let Some(i) = functions.iter().position(|f| f.name == def.name) {
                problems.push(
                    ProjectError::new(
                        ErrorKind::Duplicate,
                        format!(
                            "Function name '{}' is declared twice: by {} and by {}; the second is ignored",
                            def.name,
                            origins[i].display(),
                            origin.display()
                        ),
                    )
                    .with_file(&origin)
                    .for_function(&def.name)
                    .with_hint("Rename one of them (its folder, or `name` in function.jsonc)"),
                );
                continue;
            }
            origins.push(origin);
            functions.push(def);
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        if functions.len() > MAX_FUNCTIONS {
            problems.push(
                ProjectError::new(
                    ErrorKind::TooMany,
                    format!(
                        "The project has {} functions; at most {MAX_FUNCTIONS} are allowed per project",
                        functions.len()
                    ),
                )
                .with_file(&root)
                .with_hint("Merge related functions into one (route on the request body) or remove unused ones"),
            );
        }
        Discovery { functions, problems }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::automation::EntityEvent;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A project at a temp root with `base44/config.jsonc`.
    fn project(config: &str) -> (tempfile::TempDir, Project) {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "base44/config.jsonc", config);
        let p = Project::find(tmp.path()).unwrap();
        (tmp, p)
    }

    fn basic() -> (tempfile::TempDir, Project) {
        project("{\"name\": \"app\"}")
    }

    fn names(d: &Discovery) -> Vec<&str> {
        d.functions.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn missing_functions_folder_is_zero_functions() {
        let (_tmp, p) = basic();
        let d = p.discover_functions();
        assert!(d.functions.is_empty());
        assert!(d.problems.is_empty());
    }

    #[test]
    fn functions_path_that_is_a_file_is_a_problem() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions", "");
        let d = p.discover_functions();
        assert_eq!(d.problems.len(), 1);
        assert!(d.problems[0].message.contains("is not a folder"));
    }

    #[test]
    fn zero_config_nested_names_sorted() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/zeta/entry.ts", "");
        write(tmp.path(), "base44/functions/email/send/entry.ts", "");
        write(tmp.path(), "base44/functions/email/entry.js", "");
        write(tmp.path(), "base44/functions/notes/readme.md", "");
        let d = p.discover_functions();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(names(&d), vec!["email", "email/send", "zeta"]);
        let send = d.get("email/send").unwrap();
        assert_eq!(send.dir, tmp.path().join("base44/functions/email/send"));
        assert_eq!(send.entry, tmp.path().join("base44/functions/email/send/entry.ts"));
        assert_eq!(send.config_file, None);
        assert_eq!(send.entry_path(), "entry.ts");
        assert_eq!(d.get("email").unwrap().entry_path(), "entry.js");
    }

    #[test]
    fn custom_functions_dir() {
        let (tmp, p) = project("{\"name\": \"app\", \"functionsDir\": \"backend\"}");
        write(tmp.path(), "base44/backend/hello/entry.ts", "");
        write(tmp.path(), "base44/functions/ignored/entry.ts", "");
        let d = p.discover_functions();
        assert_eq!(names(&d), vec!["hello"]);
    }

    #[test]
    fn dotted_segments_and_node_modules_are_ignored() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/.hidden/x/entry.ts", "");
        write(tmp.path(), "base44/functions/a.b/entry.ts", "");
        write(tmp.path(), "base44/functions/ok/v1.2/entry.ts", "");
        write(tmp.path(), "base44/functions/ok/node_modules/pkg/entry.js", "");
        write(tmp.path(), "base44/functions/ok/entry.ts", "");
        write(tmp.path(), "base44/functions/.tmp/function.jsonc", "{\"name\": \"sneaky\", \"entry\": \"x.ts\"}");
        let d = p.discover_functions();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(names(&d), vec!["ok"]);
    }

    #[test]
    fn entry_in_functions_root_is_an_error() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/entry.ts", "");
        write(tmp.path(), "base44/functions/good/entry.ts", "");
        let d = p.discover_functions();
        assert_eq!(names(&d), vec!["good"]);
        assert_eq!(d.problems.len(), 1);
        let e = &d.problems[0];
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_eq!(
            e.message,
            "entry.ts directly in the functions folder is not allowed; move it to functions/<name>/entry.ts"
        );
        assert_eq!(e.file, Some(tmp.path().join("base44/functions/entry.ts")));
    }

    #[test]
    fn function_jsonc_declares_name_entry_and_automations() {
        let (tmp, p) = basic();
        write(
            tmp.path(),
            "base44/functions/orders/function.jsonc",
            r#"{
  // the order hook
  "name": "  order-hook ",
  "entry": "src/main.ts",
  "automations": [
    {"name": "on-create", "type": "entity", "entity_name": "Order", "event_types": ["create"]},
  ],
}"#,
        );
        write(tmp.path(), "base44/functions/orders/src/main.ts", "");
        let d = p.discover_functions();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let f = d.get("order-hook").unwrap();
        assert_eq!(f.dir, tmp.path().join("base44/functions/orders"));
        assert_eq!(f.entry, tmp.path().join("base44/functions/orders/src/main.ts"));
        assert_eq!(f.config_file, Some(tmp.path().join("base44/functions/orders/function.jsonc")));
        assert_eq!(f.entry_path(), "main.ts");
        assert_eq!(f.automations.len(), 1);
        assert!(
            matches!(&f.automations[0], Automation::Entity { event_types, .. } if event_types == &[EntityEvent::Create])
        );
    }

    #[test]
    fn function_json_also_works_and_jsonc_wins() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/a/function.json", "{\"name\": \"from-json\", \"entry\": \"entry.ts\"}");
        write(tmp.path(), "base44/functions/a/entry.ts", "");
        assert_eq!(names(&p.discover_functions()), vec!["from-json"]);
        write(tmp.path(), "base44/functions/a/function.jsonc", "{\"name\": \"from-jsonc\", \"entry\": \"entry.ts\"}");
        let d = p.discover_functions();
        assert_eq!(names(&d), vec!["from-jsonc"]);
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].kind, ErrorKind::Duplicate);
        assert!(d.problems[0].message.contains("function.json is ignored"));
    }

    #[test]
    fn config_folder_is_not_zero_config() {
        let (tmp, p) = basic();
        // The entry.ts next to function.jsonc belongs to the declared function only.
        write(tmp.path(), "base44/functions/a/function.jsonc", "{\"name\": \"named\", \"entry\": \"entry.ts\"}");
        write(tmp.path(), "base44/functions/a/entry.ts", "");
        let d = p.discover_functions();
        assert_eq!(names(&d), vec!["named"]);
    }

    #[test]
    fn entry_ts_preferred_over_entry_js_and_reported() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/both/entry.ts", "");
        write(tmp.path(), "base44/functions/both/entry.js", "");
        let d = p.discover_functions();
        assert_eq!(d.get("both").unwrap().entry_path(), "entry.ts");
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].kind, ErrorKind::Duplicate);
        assert_eq!(d.problems[0].function.as_deref(), Some("both"));
        assert!(d.problems[0].message.contains("entry.js is ignored"));
    }

    #[test]
    fn dot_in_declared_name_is_an_error() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/x/function.jsonc", "{\n  \"name\": \"a.b\",\n  \"entry\": \"entry.ts\"\n}");
        write(tmp.path(), "base44/functions/x/entry.ts", "");
        let d = p.discover_functions();
        assert!(d.functions.is_empty());
        let e = &d.problems[0];
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_eq!(e.message, "Function name 'a.b' contains a dot; rename its folder or the `name` in function.jsonc");
        assert_eq!((e.line, e.column), (Some(2), Some(11)));
        assert_eq!(e.function.as_deref(), Some("a.b"));
    }

    #[test]
    fn names_are_what_a_url_can_call() {
        for good in ["hello", "email/send", "a-b_c/D9", "x"] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        let problem = name_problem("my fn").unwrap();
        assert!(problem.contains("contains a space") && problem.contains(NAME_RULE), "{problem}");
        assert!(name_problem("caf\u{e9}").unwrap().contains("U+00E9"));
        let bidi = name_problem("admin\u{202e}gpj").unwrap();
        assert!(bidi.contains("U+202E") && bidi.contains("admin\\u{202e}gpj"), "{bidi}");
        assert!(!bidi.contains('\u{202e}'), "the message never carries the control itself");
        assert!(name_problem("a?b").unwrap().contains("'?'"));
        assert!(name_problem("a%20b").unwrap().contains("'%'"));
        assert!(name_problem("a\\b").unwrap().contains("'\\'"));
    }

    #[test]
    fn folders_that_are_not_names_are_reported() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/my fn/entry.ts", "");
        write(tmp.path(), "base44/functions/caf\u{e9}/entry.ts", "");
        write(tmp.path(), "base44/functions/ok/entry.ts", "");
        let d = p.discover_functions();
        assert_eq!(names(&d), vec!["ok"]);
        let messages: Vec<&str> = d.problems.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("'my fn' contains a space")), "{messages:?}");
        assert!(d.problems.iter().all(|e| e.hint.as_deref().is_some_and(|h| h.contains(NAME_RULE))));
    }

    #[test]
    fn empty_missing_or_bad_names_are_errors() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/a/function.jsonc", "{\"name\": \"  \", \"entry\": \"e.ts\"}");
        write(tmp.path(), "base44/functions/b/function.jsonc", "{\"entry\": \"e.ts\"}");
        write(tmp.path(), "base44/functions/c/function.jsonc", "{\"name\": \"x//y\", \"entry\": \"e.ts\"}");
        write(tmp.path(), "base44/functions/d/function.jsonc", "{\"name\": \"d\", \"entry\": \" \"}");
        write(tmp.path(), "base44/functions/e/function.jsonc", "[1]");
        write(tmp.path(), "base44/functions/f/function.jsonc", "{\"name\": \"f\"}");
        write(tmp.path(), "base44/functions/function.jsonc", "{\"entry\": \"a/e.ts\"}");
        for d in ["a", "b", "c", "d"] {
            write(tmp.path(), &format!("base44/functions/{d}/e.ts"), "");
        }
        let d = p.discover_functions();
        // `b` has no name: it is named after its folder, and its entry is the one it names.
        assert_eq!(names(&d), vec!["b"]);
        let msgs: Vec<&str> = d.problems.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs.len(), 6, "{msgs:?}");
        assert_eq!(msgs[0], "The function config has no `name`", "{msgs:?}");
        assert!(d.problems[0].hint.as_deref().unwrap().contains("move it into a folder"));
        assert_eq!(msgs[1], "The function `name` is empty");
        assert!(msgs[2].contains("empty path segment"));
        assert_eq!(msgs[3], "Function 'd' has an empty `entry`");
        assert!(msgs[4].contains("must be an object"));
        assert_eq!(msgs[5], "Function 'f' has no `entry` and there is no entry.ts or entry.js beside its config");
        assert_eq!(d.problems[5].kind, ErrorKind::EntryNotFound);
    }

    #[test]
    fn name_and_entry_are_optional_in_function_jsonc() {
        let (tmp, p) = basic();
        // Neither key: the folder path names it, entry.ts is its entry.
        write(tmp.path(), "base44/functions/email/send/function.jsonc", "{}");
        write(tmp.path(), "base44/functions/email/send/entry.ts", "");
        // A name but no entry: entry.js when there is no entry.ts.
        write(tmp.path(), "base44/functions/js/function.jsonc", "{\"name\": \"legacy\"}");
        write(tmp.path(), "base44/functions/js/entry.js", "");
        // Automations without names are named after the function and their position.
        write(
            tmp.path(),
            "base44/functions/digest/function.jsonc",
            r#"{"automations": [
                {"type": "entity", "entity_name": "Order", "event_types": ["create"]},
                {"name": "nightly", "type": "entity", "entity_name": "Order", "event_types": ["delete"]},
                {"name": "", "type": "entity", "entity_name": "Order", "event_types": ["update"]}]}"#,
        );
        write(tmp.path(), "base44/functions/digest/entry.ts", "");
        let d = p.discover_functions();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(names(&d), vec!["digest", "email/send", "legacy"]);
        let send = d.get("email/send").unwrap();
        assert_eq!(send.entry, tmp.path().join("base44/functions/email/send/entry.ts"));
        assert_eq!(d.get("legacy").unwrap().entry_path(), "entry.js");
        let automations: Vec<&str> = d.get("digest").unwrap().automations.iter().map(|a| a.name()).collect();
        assert_eq!(automations, vec!["digest #1", "nightly", "digest #3"]);
    }

    #[test]
    fn missing_entry_names_the_path() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/a/function.jsonc", "{\"name\": \"a\",\n \"entry\": \"./lib/../main.ts\"}");
        let d = p.discover_functions();
        assert!(d.functions.is_empty());
        let e = &d.problems[0];
        assert_eq!(e.kind, ErrorKind::EntryNotFound);
        assert_eq!(e.code(), "entry_not_found");
        let missing = tmp.path().join("base44/functions/a/main.ts");
        assert!(e.message.contains(&missing.display().to_string()), "{}", e.message);
        assert_eq!((e.line, e.column), (Some(2), Some(11)));
        assert!(e.hint.is_some());
    }

    #[test]
    fn broken_function_jsonc_only_affects_that_function() {
        let (tmp, p) = basic();
        write(
            tmp.path(),
            "base44/functions/bad/function.jsonc",
            "{\n  \"name\": \"bad\"\n  \"entry\": \"entry.ts\"\n}",
        );
        write(tmp.path(), "base44/functions/bad/entry.ts", "");
        write(tmp.path(), "base44/functions/good/entry.ts", "");
        write(tmp.path(), "base44/functions/typed/function.jsonc", "{\"name\": 42, \"entry\": \"e.ts\"}");
        let d = p.discover_functions();
        assert_eq!(names(&d), vec!["good"]);
        assert_eq!(d.problems.len(), 2);
        let e = &d.problems[0];
        assert_eq!(e.kind, ErrorKind::Parse);
        assert_eq!(e.file, Some(tmp.path().join("base44/functions/bad/function.jsonc")));
        assert_eq!((e.line, e.column), (Some(3), Some(3)));
        assert_eq!(e.function.as_deref(), Some("bad"), "charged to the folder's name");
        assert_eq!(d.problems[1].kind, ErrorKind::Parse);
        assert_eq!(d.problems[1].function.as_deref(), Some("typed"));
        assert!(d.problems[1].message.contains("invalid type: integer `42`"));
    }

    #[test]
    fn invalid_automation_makes_the_function_a_problem() {
        let (tmp, p) = basic();
        write(
            tmp.path(),
            "base44/functions/report/function.jsonc",
            r#"{
  "name": "report",
  "entry": "entry.ts",
  "automations": [
    {"name": "ok", "type": "scheduled", "schedule_mode": "one-time", "one_time_date": "2030-01-01T00:00:00Z"},
    {
      "name": "nightly",
      "type": "scheduled",
      "schedule_mode": "recurring",
      "schedule_type": "cron",
      "cron_expression": "*/2 * * * *"
    }
  ]
}"#,
        );
        write(tmp.path(), "base44/functions/report/entry.ts", "");
        write(tmp.path(), "base44/functions/other/entry.ts", "");
        let d = p.discover_functions();
        assert_eq!(names(&d), vec!["other"]);
        let e = &d.problems[0];
        assert_eq!(e.kind, ErrorKind::InvalidAutomation);
        assert_eq!(e.function.as_deref(), Some("report"));
        assert_eq!(
            e.message,
            "Function 'report': automations[1] 'nightly': `cron_expression` \"*/2 * * * *\" would run every 2 minutes; the minimum interval is 5 minutes"
        );
        assert_eq!((e.line, e.column), (Some(11), Some(26)));
        assert!(e.hint.is_some());
    }

    #[test]
    fn automation_errors_point_at_the_item_when_the_field_is_missing() {
        let (tmp, p) = basic();
        write(
            tmp.path(),
            "base44/functions/f/function.jsonc",
            "{\"name\": \"f\", \"entry\": \"entry.ts\", \"automations\": [\n  {\"name\": \"e\", \"type\": \"entity\", \"event_types\": [\"create\"]}\n]}",
        );
        write(tmp.path(), "base44/functions/f/entry.ts", "");
        let d = p.discover_functions();
        let e = &d.problems[0];
        assert_eq!((e.line, e.column), (Some(2), Some(3)));
        assert!(e.message.contains("automations[0] 'e': `entity_name` is required"));
        write(
            tmp.path(),
            "base44/functions/f/function.jsonc",
            "{\"name\": \"f\", \"entry\": \"entry.ts\", \"automations\": {}}",
        );
        let e = &p.discover_functions().problems[0];
        assert!(e.message.contains("`automations` must be a list"), "{}", e.message);
    }

    #[test]
    fn duplicate_names_keep_the_first_by_path() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/a/function.jsonc", "{\"name\": \"mail\", \"entry\": \"entry.ts\"}");
        write(tmp.path(), "base44/functions/a/entry.ts", "");
        write(tmp.path(), "base44/functions/mail/entry.ts", "");
        let d = p.discover_functions();
        assert_eq!(names(&d), vec!["mail"]);
        let kept = d.get("mail").unwrap();
        assert_eq!(kept.dir, tmp.path().join("base44/functions/a"));
        assert_eq!(d.problems.len(), 1);
        let e = &d.problems[0];
        assert_eq!(e.kind, ErrorKind::Duplicate);
        let first = tmp.path().join("base44/functions/a/function.jsonc");
        let second = tmp.path().join("base44/functions/mail/entry.ts");
        assert!(e.message.contains(&first.display().to_string()));
        assert!(e.message.contains(&second.display().to_string()));
        assert_eq!(e.file, Some(second));
    }

    #[test]
    fn more_than_fifty_functions_is_reported_but_returned() {
        let (tmp, p) = basic();
        for i in 0..50 {
            write(tmp.path(), &format!("base44/functions/f{i:02}/entry.ts"), "");
        }
        let d = p.discover_functions();
        assert_eq!(d.functions.len(), 50);
        assert!(d.problems.is_empty());
        for i in 50..53 {
            write(tmp.path(), &format!("base44/functions/f{i:02}/entry.ts"), "");
        }
        let d = p.discover_functions();
        assert_eq!(d.functions.len(), 53);
        assert_eq!(d.problems.len(), 1);
        let e = &d.problems[0];
        assert_eq!(e.kind, ErrorKind::TooMany);
        assert_eq!(e.message, "The project has 53 functions; at most 50 are allowed per project");
        assert!(e.hint.as_deref().unwrap().contains("Merge"));
    }

    #[test]
    fn fifty_one_functions_is_too_many() {
        let (tmp, p) = basic();
        for i in 0..51 {
            write(tmp.path(), &format!("base44/functions/g/f{i:02}/entry.js"), "");
        }
        let d = p.discover_functions();
        assert_eq!(d.functions.len(), 51);
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].message, "The project has 51 functions; at most 50 are allowed per project");
    }

    #[test]
    fn source_files_include_nested_and_shared_with_relative_paths() {
        let (tmp, p) = basic();
        let f = "base44/functions/email/send";
        write(tmp.path(), &format!("{f}/entry.ts"), "export default {}");
        write(tmp.path(), &format!("{f}/lib/util.ts"), "");
        write(tmp.path(), &format!("{f}/deno.json"), "{}");
        write(tmp.path(), &format!("{f}/config.jsonc"), "{}");
        write(tmp.path(), &format!("{f}/README.md"), "");
        write(tmp.path(), &format!("{f}/.env.ts"), "");
        write(tmp.path(), &format!("{f}/.cache/x.ts"), "");
        write(tmp.path(), &format!("{f}/node_modules/m/index.js"), "");
        write(tmp.path(), &format!("{f}/v1.2/helper.js"), "");
        write(tmp.path(), "base44/shared/db.ts", "");
        write(tmp.path(), "base44/shared/sub/fmt.js", "");
        write(tmp.path(), "base44/shared/notes.txt", "");
        let d = p.discover_functions();
        let func = d.get("email/send").unwrap();
        let files = func.source_files(&p).unwrap();
        let paths: Vec<&str> = files.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "../../../shared/db.ts",
                "../../../shared/sub/fmt.js",
                "config.jsonc",
                "deno.json",
                "entry.ts",
                "lib/util.ts",
                "v1.2/helper.js",
            ]
        );
        assert_eq!(files[0].abs, tmp.path().join("base44/shared/db.ts"));
        // One level up from the functions folder: ../../shared.
        write(tmp.path(), "base44/functions/top/entry.ts", "");
        let top = p.discover_functions();
        let top = top.get("top").unwrap().source_files(&p).unwrap();
        assert_eq!(top[0].path, "../../shared/db.ts");
        assert_eq!(top.last().unwrap().path, "entry.ts");
    }

    #[test]
    fn parent_function_uploads_nested_function_files() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/email/entry.ts", "");
        write(tmp.path(), "base44/functions/email/send/entry.ts", "");
        let d = p.discover_functions();
        let paths: Vec<String> =
            d.get("email").unwrap().source_files(&p).unwrap().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, vec!["entry.ts", "send/entry.ts"]);
    }

    #[test]
    fn entry_in_a_subfolder_makes_paths_relative_to_it() {
        let (tmp, p) = basic();
        write(tmp.path(), "base44/functions/api/function.jsonc", "{\"name\": \"api\", \"entry\": \"src/main.mts\"}");
        write(tmp.path(), "base44/functions/api/src/main.mts", "1");
        write(tmp.path(), "base44/functions/api/lib/x.ts", "2");
        write(tmp.path(), "base44/shared/s.ts", "3");
        let d = p.discover_functions();
        let f = d.get("api").unwrap();
        let payload = f.deploy_payload(&p).unwrap();
        assert_eq!(payload.entry, "main.mts");
        let paths: Vec<&str> = payload.files.iter().map(|f| f.path.as_str()).collect();
        // The entry is included even though .mts is not a source extension.
        assert_eq!(paths, vec!["../../../shared/s.ts", "../function.jsonc", "../lib/x.ts", "main.mts"]);
        assert_eq!(payload.files[3].content, "1");
        let json = serde_json::to_value(&payload).unwrap();
        assert_eq!(json["entry"], "main.mts");
        assert_eq!(json["automations"], serde_json::json!([]));
        let back: DeployPayload = serde_json::from_value(json).unwrap();
        assert_eq!(back, payload);
    }
}

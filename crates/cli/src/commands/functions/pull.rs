//! `homebase functions pull [NAMES…]`: writes the deployed functions into the project.
//!
//! A function `name` lands in `<functionsDir>/<name>/`: its files byte for byte, with paths
//! relative to the entry's folder, so `../../shared/x.ts` lands in the project's shared folder.
//! When its `function.jsonc` travels above the entry's folder (an entry in a subfolder, e.g.
//! `"entry": "src/main.ts"`), the entry's folder is placed so that the config sits in
//! `<functionsDir>/<name>/`.
//!
//! A `function.jsonc` `{name, entry, automations}` is written only when the files carry none and
//! the function needs one to be found again as deployed: it has automations, or its entry is
//! not `entry.ts` / `entry.js`. Files whose content is already identical are not touched
//! ("unchanged"); local files that the server does not have are left alone. A path that would
//! leave the project's functions or shared folder (both inside `base44/`) is refused, and
//! nothing of that function is written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use homebase_project::{DeployFile, Project, name_problem, parse_jsonc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::output;
use crate::target::{self, TargetArgs};

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Functions to pull (default: all of the app's).
    names: Vec<String>,
}

/// One function of `GET …/backend-functions`.
#[derive(Debug, Deserialize)]
struct RemoteFunction {
    name: String,
    entry: String,
    files: Vec<DeployFile>,
    #[serde(default)]
    automations: Value,
}

/// Where each of a function's files goes.
#[derive(Debug, PartialEq)]
struct Plan {
    files: Vec<(PathBuf, String)>,
}

pub async fn run(args: PullArgs, target_args: &TargetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let json = global.json;
    let project = target::project(target_args)?;
    let target = target::target(target_args, Some(&project))?;
    let app_id = target.app_id()?;
    let api = Api::new(&target)?;
    let list = api.get(&Api::function_path(app_id, None, "")).await.map_err(ApiError::into_anyhow)?;
    let mut functions: Vec<RemoteFunction> = serde_json::from_value(list["functions"].clone())
        .context("the server's list of functions is not in the expected shape")?;
    functions.sort_by(|a, b| a.name.cmp(&b.name));

    let missing: Vec<String> =
        args.names.iter().filter(|n| !functions.iter().any(|f| &f.name == *n)).cloned().collect();
    if !args.names.is_empty() {
        functions.retain(|f| args.names.contains(&f.name));
    }
    if functions.is_empty() && missing.is_empty() {
        output::note(json, "nothing_to_pull", &format!("App {app_id} has no functions; nothing to pull."));
        return Ok(());
    }

    let total = functions.len() + missing.len();
    let mut written_this_run: HashMap<PathBuf, (String, String)> = HashMap::new();
    let (mut written_total, mut unchanged_total, mut failed) = (0, 0, 0);
    for (i, function) in functions.iter().enumerate() {
        let index = i + 1;
        let plan = match plan(&project, function) {
            Ok(plan) => plan,
            Err(error) => {
                failed += 1;
                report(json, index, total, &function.name, "failed", &[], 0, Some(&format!("{error:#}")));
                continue;
            }
        };
        let mut written = Vec::new();
        let mut unchanged = 0;
        let mut error = None;
        for (path, content) in &plan.files {
            if let Some((earlier, earlier_content)) = written_this_run.get(path) {
                if earlier_content != content {
                    let warning = format!(
                        "{} differs between functions '{earlier}' and '{}'; kept the one of '{earlier}'",
                        shown(&project, path),
                        function.name
                    );
                    if json {
                        output::json_line(&json!({ "event": "warning", "message": warning }));
                    } else {
                        eprintln!("warning: {warning}");
                    }
                }
                unchanged += 1;
                continue;
            }
            match write_if_changed(path, content) {
                Ok(true) => written.push(shown(&project, path)),
                Ok(false) => unchanged += 1,
                Err(e) => {
                    error = Some(format!("could not write {}: {e}", path.display()));
                    break;
                }
            }
            written_this_run.insert(path.clone(), (function.name.clone(), content.clone()));
        }
        written_total += written.len();
        unchanged_total += unchanged;
        let status = match (&error, written.is_empty()) {
            (Some(_), _) => "failed",
            (None, true) => "unchanged",
            (None, false) => "pulled",
        };
        if error.is_some() {
            failed += 1;
        }
        report(json, index, total, &function.name, status, &written, unchanged, error.as_deref());
    }
    for (i, name) in missing.iter().enumerate() {
        let message = format!("App {app_id} has no function named '{name}'");
        report(json, functions.len() + i + 1, total, name, "not_found", &[], 0, Some(&message));
    }

    let folder = shown(&project, &project.functions_dir());
    if json {
        output::json_line(&json!({
            "event": "summary",
            "app_id": app_id,
            "functions_dir": project.functions_dir(),
            "pulled": functions.len() - failed,
            "files_written": written_total,
            "files_unchanged": unchanged_total,
            "failed": failed,
            "not_found": missing,
        }));
    } else {
        let pulled = functions.len() - failed;
        println!(
            "Pulled {pulled} function{} into {folder}: {written_total} file{} written, {unchanged_total} unchanged.",
            plural(pulled),
            plural(written_total)
        );
    }
    if failed > 0 || !missing.is_empty() {
        let mut parts = Vec::new();
        if failed > 0 {
            parts.push(format!("{failed} function{} could not be written", plural(failed)));
        }
        if !missing.is_empty() {
            parts.push(format!("not found: {}", missing.join(", ")));
        }
        bail!("{}", parts.join("; "));
    }
    Ok(())
}

/// Where every file of `function` goes, checked before anything is written.
fn plan(project: &Project, function: &RemoteFunction) -> anyhow::Result<Plan> {
    if let Some(problem) = name_problem(&function.name) {
        bail!("{problem}");
    }
    let functions_dir = project.functions_dir();
    let shared_dir = project.shared_dir();
    let root = functions_dir.join(&function.name);
    let landing = entry_folder(&root, function);
    let mut files = Vec::with_capacity(function.files.len() + 1);
    for file in &function.files {
        let path = resolve(&landing, &file.path)
            .with_context(|| format!("function '{}' has a file path that is not allowed", function.name))?;
        // Only the function's own folder and `shared/`: never another function's files.
        let inside = (path.starts_with(&root) && path != root) || (path.starts_with(&shared_dir) && path != shared_dir);
        if !inside {
            bail!(
                "function '{}' has a file '{}' that would land outside its own folder and the shared folder \
                 ({}); nothing of it was written",
                function.name,
                file.path,
                path.display()
            );
        }
        files.push((path, file.content.clone()));
    }
    let has_config = files.iter().any(|(p, _)| *p == root.join("function.jsonc") || *p == root.join("function.json"));
    if !has_config && needs_config(function) {
        files.push((root.join("function.jsonc"), function_config(function)));
    }
    Ok(Plan { files })
}

/// The folder the entry lands in: `root`, unless a `function.jsonc` travels above the entry's
/// folder (`../function.jsonc` with `"entry": "src/main.ts"`); then `root/src`.
fn entry_folder(root: &Path, function: &RemoteFunction) -> PathBuf {
    for file in &function.files {
        let mut ups = 0;
        let mut rest = file.path.as_str();
        while let Some(next) = rest.strip_prefix("../") {
            ups += 1;
            rest = next;
        }
        if ups == 0 || !(rest == "function.jsonc" || rest == "function.json") {
            continue;
        }
        let Ok(config) = parse_jsonc::<Value>(Path::new(&file.path), &file.content) else { continue };
        let Some(entry) = config["entry"].as_str() else { continue };
        let segments: Vec<&str> = entry.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
        let entry_name = function.entry.rsplit('/').next().unwrap_or_default();
        if segments.len() == ups + 1 && segments.last() == Some(&entry_name) && !segments.contains(&"..") {
            return root.join(segments[..ups].join("/"));
        }
    }
    root.to_path_buf()
}

/// `landing` joined with a relative `/`-separated path, `..` folded lexically.
fn resolve(landing: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    if relative.is_empty() || relative.starts_with('/') || relative.contains(['\\', '\0']) {
        bail!("'{relative}' is not a relative path with / separators");
    }
    let mut path = landing.to_path_buf();
    let mut depth = landing.components().count();
    for segment in relative.split('/') {
        match segment {
            "" => bail!("'{relative}' has an empty segment"),
            "." => {}
            ".." => {
                if depth <= 1 {
                    bail!("'{relative}' climbs above the file system root");
                }
                path.pop();
                depth -= 1;
            }
            name => {
                path.push(name);
                depth += 1;
            }
        }
    }
    Ok(path)
}

/// Whether discovery would find the function as deployed only with a `function.jsonc`.
fn needs_config(function: &RemoteFunction) -> bool {
    let has_automations = function.automations.as_array().is_some_and(|a| !a.is_empty());
    let shadowed_js = function.entry == "entry.js" && function.files.iter().any(|f| f.path == "entry.ts");
    has_automations || !matches!(function.entry.as_str(), "entry.ts" | "entry.js") || shadowed_js
}

/// `{name, entry, automations}` in that order, two-space indented.
fn function_config(function: &RemoteFunction) -> String {
    let mut text = format!("{{\n  \"name\": {},\n  \"entry\": {}", json!(function.name), json!(function.entry));
    if function.automations.as_array().is_some_and(|a| !a.is_empty()) {
        let automations = serde_json::to_string_pretty(&function.automations).unwrap_or_default();
        text.push_str(&format!(",\n  \"automations\": {}", automations.replace('\n', "\n  ")));
    }
    text.push_str("\n}\n");
    text
}

/// Writes `content` unless the file already has exactly it; whether it wrote.
fn write_if_changed(path: &Path, content: &str) -> std::io::Result<bool> {
    if std::fs::read(path).is_ok_and(|existing| existing == content.as_bytes()) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)?;
    Ok(true)
}

/// A path relative to the project root, for messages.
fn shown(project: &Project, path: &Path) -> String {
    path.strip_prefix(&project.root).unwrap_or(path).display().to_string()
}

#[allow(clippy::too_many_arguments)]
fn report(
    json: bool,
    index: usize,
    total: usize,
    name: &str,
    status: &str,
    written: &[String],
    unchanged: usize,
    error: Option<&str>,
) {
    if json {
        let mut line = json!({
            "event": "function",
            "index": index,
            "total": total,
            "name": name,
            "status": status,
            "written": written,
            "unchanged": unchanged,
        });
        if let Some(error) = error {
            line["message"] = error.into();
        }
        output::json_line(&line);
        return;
    }
    let counts = match status {
        "pulled" => format!(" ({} written, {unchanged} unchanged)", written.len()),
        _ => String::new(),
    };
    println!("[{index}/{total}] {name} … {status}{counts}");
    for path in written {
        println!("      wrote {path}");
    }
    if let Some(error) = error {
        println!("      {error}");
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("base44")).unwrap();
        std::fs::write(dir.path().join("base44/config.jsonc"), "{\"name\": \"p\"}").unwrap();
        let project = Project::find(dir.path()).unwrap();
        (dir, project)
    }

    fn remote(name: &str, entry: &str, files: &[(&str, &str)], automations: Value) -> RemoteFunction {
        RemoteFunction {
            name: name.into(),
            entry: entry.into(),
            files: files.iter().map(|(p, c)| DeployFile { path: p.to_string(), content: c.to_string() }).collect(),
            automations,
        }
    }

    fn paths(project: &Project, plan: &Plan) -> Vec<String> {
        plan.files.iter().map(|(p, _)| shown(project, p)).collect()
    }

    #[test]
    fn files_land_beside_the_entry_and_shared_files_in_shared() {
        let (_dir, p) = project();
        let f = remote(
            "orders/summary",
            "entry.ts",
            &[("../../../shared/format.ts", "s"), ("entry.ts", "e"), ("lib/x.ts", "x")],
            json!([]),
        );
        let plan = plan(&p, &f).unwrap();
        assert_eq!(
            paths(&p, &plan),
            vec![
                "base44/shared/format.ts",
                "base44/functions/orders/summary/entry.ts",
                "base44/functions/orders/summary/lib/x.ts"
            ]
        );
    }

    #[test]
    fn paths_leaving_the_functions_and_shared_folders_are_refused() {
        let (_dir, p) = project();
        for bad in [
            "../../config.jsonc",
            "../../../x.ts",
            "/etc/passwd",
            "a//b.ts",
            "a\\b.ts",
            "../../.app.jsonc",
            "../other/entry.ts",
        ] {
            let f = remote("hello", "entry.ts", &[("entry.ts", ""), (bad, "")], json!([]));
            assert!(plan(&p, &f).is_err(), "{bad} was allowed");
        }
        let f = remote("a.b", "entry.ts", &[("entry.ts", "")], json!([]));
        assert!(plan(&p, &f).is_err());
    }

    #[test]
    fn a_functions_folder_outside_base44_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("base44")).unwrap();
        std::fs::write(dir.path().join("base44/config.jsonc"), r#"{"name": "p", "functionsDir": "../backend"}"#)
            .unwrap();
        let p = Project::find(dir.path()).unwrap();
        let f = remote("hello", "entry.ts", &[("entry.ts", "e")], json!([]));
        let planned = plan(&p, &f).unwrap();
        assert!(planned.files[0].0.ends_with("backend/hello/entry.ts"), "{:?}", planned.files[0].0);
    }

    #[test]
    fn a_config_is_written_only_when_needed() {
        let (_dir, p) = project();
        let plain = remote("hello", "entry.ts", &[("entry.ts", "")], json!([]));
        assert_eq!(plan(&p, &plain).unwrap().files.len(), 1);
        let automations = json!([{ "name": "nightly", "type": "scheduled" }]);
        let scheduled = remote("report", "entry.ts", &[("entry.ts", "")], automations);
        let plan_ = plan(&p, &scheduled).unwrap();
        assert_eq!(paths(&p, &plan_)[1], "base44/functions/report/function.jsonc");
        let config: Value = serde_json::from_str(&plan_.files[1].1).unwrap();
        assert_eq!(config["name"], "report");
        assert_eq!(config["entry"], "entry.ts");
        assert_eq!(config["automations"][0]["name"], "nightly");
        assert!(
            plan_.files[1]
                .1
                .starts_with("{\n  \"name\": \"report\",\n  \"entry\": \"entry.ts\",\n  \"automations\": [\n    {")
        );
        let odd_entry = remote("api", "main.ts", &[("main.ts", "")], json!([]));
        let config = &plan(&p, &odd_entry).unwrap().files[1].1;
        assert_eq!(config, "{\n  \"name\": \"api\",\n  \"entry\": \"main.ts\"\n}\n");
        // A config among the files is written as it is, not replaced.
        let carried = remote("api", "main.ts", &[("function.jsonc", "{}"), ("main.ts", "")], json!([]));
        assert_eq!(plan(&p, &carried).unwrap().files.len(), 2);
    }

    #[test]
    fn an_entry_in_a_subfolder_keeps_its_config_in_the_function_folder() {
        let (_dir, p) = project();
        let f = remote(
            "api",
            "main.mts",
            &[
                ("../../../shared/s.ts", ""),
                ("../function.jsonc", "{\"name\": \"api\", \"entry\": \"src/main.mts\"}"),
                ("../lib/x.ts", ""),
                ("main.mts", ""),
            ],
            json!([]),
        );
        assert_eq!(
            paths(&p, &plan(&p, &f).unwrap()),
            vec![
                "base44/shared/s.ts",
                "base44/functions/api/function.jsonc",
                "base44/functions/api/lib/x.ts",
                "base44/functions/api/src/main.mts"
            ]
        );
    }

    #[test]
    fn unchanged_files_are_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.ts");
        assert!(write_if_changed(&path, "x").unwrap());
        assert!(!write_if_changed(&path, "x").unwrap());
        assert!(write_if_changed(&path, "y").unwrap());
        assert_eq!(std::fs::read_to_string(path).unwrap(), "y");
    }
}

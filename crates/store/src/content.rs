//! Backend-independent rules for deployments: validation, content addressing, the on-disk
//! layout, history retention and the choice of a rollback target. Backends only move rows; every
//! decision is made here so that all backends decide alike.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::ids::{hex, sha256_hex};
use crate::model::{DeployFile, Deployment};
use sha2::{Digest, Sha256};

/// History entries are kept for this many most recently activated distinct deployments of a
/// function; older deployments drop out of the history and are garbage-collected.
pub const RETAINED_DEPLOYMENTS: usize = 20;
/// Beyond this many history entries, entries that repeat a deployment with a newer entry are
/// dropped (rollbacks back and forth would otherwise grow the history without bound).
pub const MAX_HISTORY_ENTRIES: usize = 100;
/// How many folders a file path may climb above the entry's folder.
pub const MAX_PATH_CLIMB: usize = 16;
/// The longest accepted function name and file path, in bytes.
const MAX_NAME_BYTES: usize = 256;
const MAX_PATH_BYTES: usize = 1024;
/// Folder names of the synthetic base a deployment's paths are resolved against.
const LAYOUT_TOP: &str = "functions";
const LAYOUT_PLACEHOLDER: &str = "_";

/// A deployment ready to store: validated, sorted by path, hashed, once
/// ([`PreparedDeployment::new`]). A deploy checks, materialises and stores this one value, so its
/// content is hashed once and the id checked is the id stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedDeployment {
    /// `d_` + 32 hex characters of the content hash.
    pub(crate) id: String,
    pub(crate) entry: String,
    /// Canonical JSON of the automations array.
    pub(crate) automations: String,
    /// Sorted by path.
    pub(crate) files: Vec<PreparedFile>,
}

impl PreparedDeployment {
    /// Checks `deployment` as [`Store::deploy`](crate::Store::deploy) does (a non-empty list of
    /// files with normalised relative paths, listed once, the entry among them, an automations
    /// array) and computes its content address.
    pub fn new(deployment: Deployment) -> Result<PreparedDeployment> {
        prepare(deployment)
    }

    /// The content address: the deployment id this content always has.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `(path, content)` of every file, sorted by path.
    pub(crate) fn file_contents(&self) -> Vec<(&str, &str)> {
        self.files.iter().map(|f| (f.path.as_str(), f.content.as_str())).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreparedFile {
    pub path: String,
    /// SHA-256 of the content, 64 hex characters: the blob key.
    pub hash: String,
    pub content: String,
}

/// Checks a function name. The project model has stricter rules, enforced by the caller; the
/// store only needs a usable key (names never become paths).
pub(crate) fn validate_function_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid("The function name is empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(StoreError::invalid(format!("The function name is longer than {MAX_NAME_BYTES} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid(format!("The function name {name:?} contains a control character")));
    }
    Ok(())
}

/// Checks an app name.
pub(crate) fn validate_app_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StoreError::invalid("The app name is empty; give the app a name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(StoreError::invalid(format!("The app name is longer than {MAX_NAME_BYTES} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid("The app name contains a control character"));
    }
    Ok(name.to_string())
}

/// Checks that `path` is a normalised relative path: `/` separators, no empty, `.` or inner
/// `..` segments, any `..` only at the start, and a name at the end. Returns how many folders it
/// climbs (its leading `..` segments).
pub(crate) fn check_relative_path(path: &str) -> Result<usize> {
    let bad = |why: &str| Err(StoreError::invalid(format!("The file path {path:?} {why}")));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad(&format!("is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.starts_with('/') {
        return bad("is absolute; paths are relative to the entry's folder");
    }
    if path.contains('\\') {
        return bad("contains a backslash; use '/' as the separator");
    }
    if path.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    let mut climb = 0;
    let mut named = false;
    for segment in path.split('/') {
        match segment {
            "" => return bad("has an empty segment"),
            "." => return bad("is not normalised ('.' segment)"),
            ".." if named => return bad("is not normalised ('..' after a folder name)"),
            ".." => climb += 1,
            _ => named = true,
        }
    }
    if !named {
        return bad("names no file");
    }
    if climb > MAX_PATH_CLIMB {
        return bad(&format!("climbs more than {MAX_PATH_CLIMB} folders"));
    }
    Ok(climb)
}

/// Validates a deployment and computes its content address.
pub(crate) fn prepare(deployment: Deployment) -> Result<PreparedDeployment> {
    let Deployment { entry, mut files, automations } = deployment;
    let Value::Array(_) = &automations else {
        return Err(StoreError::invalid("`automations` must be a JSON array"));
    };
    if files.is_empty() {
        return Err(StoreError::invalid("The deployment has no files"));
    }
    check_relative_path(&entry)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for pair in files.windows(2) {
        if pair[0].path == pair[1].path {
            return Err(StoreError::invalid(format!("The file path {:?} is listed twice", pair[0].path)));
        }
    }
    for file in &files {
        check_relative_path(&file.path)?;
    }
    if !files.iter().any(|f| f.path == entry) {
        return Err(StoreError::invalid(format!("The entry {entry:?} is not among the files")));
    }
    // The layout must place every file; this also rejects paths that land on one another.
    layout(&entry, files.iter().map(|f| f.path.as_str()))?;

    let automations = canonical_json(&automations);
    let files: Vec<PreparedFile> = files
        .into_iter()
        .map(|DeployFile { path, content }| PreparedFile { hash: sha256_hex(content.as_bytes()), path, content })
        .collect();
    let id = deployment_id(&entry, &automations, files.iter().map(|f| (f.path.as_str(), f.hash.as_str())));
    Ok(PreparedDeployment { id, entry, automations, files })
}

/// The content address of a deployment: `d_` and the first 32 hex characters of the SHA-256 of
/// a canonical encoding of the entry, the `(path, content hash)` pairs sorted by path, and the
/// canonical automations JSON.
fn deployment_id<'a>(entry: &str, automations: &str, files: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let files: BTreeSet<(&str, &str)> = files.collect();
    let files: Vec<Value> = files.into_iter().map(|(p, h)| Value::from(vec![p, h])).collect();
    let mut hasher = Sha256::new();
    hasher.update(b"homebase-deployment-v1\n");
    hasher.update(canonical_json(&Value::String(entry.into())).as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical_json(&Value::Array(files)).as_bytes());
    hasher.update(b"\n");
    hasher.update(automations.as_bytes());
    format!("d_{}", &hex(&hasher.finalize())[..32])
}

/// Whether `id` looks like a deployment id (safe to use as a folder name).
pub(crate) fn is_deployment_id(id: &str) -> bool {
    id.len() == 34 && id.starts_with("d_") && id[2..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// JSON with object keys sorted and no whitespace, whatever `serde_json` features are enabled.
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Where a deployment's files go under its folder, as relative `/`-separated paths: each path
/// is resolved against a synthetic base `functions/_/…/` deep enough for the most-climbing path,
/// so that `../../shared/x.ts` (a function one folder deep) and `../../../shared/x.ts` (two
/// folders deep) both land in `shared/x.ts` while the entry sits in `functions/_/…/`.
/// The base never names the function: one deployment may serve several names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// `(path as given, resolved path)`, in the order given.
    pub files: Vec<(String, String)>,
    pub entry: String,
}

/// Computes the [`Layout`]; fails on a path that is not normalised, that would leave the
/// deployment folder, or that lands on another file.
pub(crate) fn layout<'a>(entry: &str, paths: impl Iterator<Item = &'a str> + Clone) -> Result<Layout> {
    let mut depth = 2;
    for path in paths.clone() {
        depth = depth.max(check_relative_path(path)?);
    }
    let mut base = vec![LAYOUT_TOP];
    base.resize(depth, LAYOUT_PLACEHOLDER);
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for path in paths {
        let resolved = resolve(&base, path)?;
        if !seen.insert(resolved.clone()) {
            return Err(StoreError::invalid(format!(
                "The file path {path:?} lands on the same file as another path of the deployment"
            )));
        }
        files.push((path.to_string(), resolved));
    }
    let entry = resolve(&base, entry)?;
    if !seen.contains(&entry) {
        return Err(StoreError::invalid(format!("The entry {entry:?} is not among the files")));
    }
    Ok(Layout { files, entry })
}

/// Resolves a relative path against `base`; an error when it would climb above the root.
pub(crate) fn resolve(base: &[&str], path: &str) -> Result<String> {
    check_relative_path(path)?;
    let mut segments: Vec<&str> = base.to_vec();
    for segment in path.split('/') {
        if segment == ".." {
            if segments.pop().is_none() {
                return Err(StoreError::invalid(format!("The file path {path:?} escapes the deployment folder")));
            }
        } else {
            segments.push(segment);
        }
    }
    Ok(segments.join("/"))
}

/// The history entries (by sequence) to drop, given a function's history newest first.
/// Kept: every entry of the [`RETAINED_DEPLOYMENTS`] most recently activated distinct
/// deployments, except that entries past position [`MAX_HISTORY_ENTRIES`] are dropped when a
/// newer entry of the same deployment exists. The newest entry is always kept.
pub(crate) fn entries_to_prune(history: &[(i64, String)]) -> Vec<i64> {
    let mut recent: Vec<&str> = Vec::new();
    let mut prune = Vec::new();
    for (position, (sequence, deployment)) in history.iter().enumerate() {
        let (rank, repeated) = match recent.iter().position(|d| *d == deployment.as_str()) {
            Some(rank) => (rank, true),
            None => {
                recent.push(deployment);
                (recent.len() - 1, false)
            }
        };
        if rank >= RETAINED_DEPLOYMENTS || (repeated && position >= MAX_HISTORY_ENTRIES) {
            prune.push(*sequence);
        }
    }
    prune
}

/// Checks the per-app function limit for a deploy that adds a new function to an app that has
/// `count` functions: [`StoreError::TooManyFunctions`] when `max` of them are already there.
/// Backends call it inside the deploy's transaction, under the lock that keeps the count
/// from changing until the commit.
pub(crate) fn check_function_limit(count: u64, max: Option<u64>) -> Result<()> {
    match max {
        Some(limit) if count >= limit => Err(StoreError::TooManyFunctions { count, limit }),
        _ => Ok(()),
    }
}

/// What a rollback does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RollbackTarget {
    /// The requested deployment is already active: nothing to write.
    AlreadyActive(String),
    /// Activate this deployment.
    Activate(String),
}

/// Chooses the deployment a rollback activates. `history` is newest first and its first entry
/// is the active deployment; `to` is the requested deployment, if any. By default: the newest
/// entry whose deployment differs from the active one (so two rollbacks in a row swap back,
/// like `cd -`).
pub(crate) fn rollback_target(
    name: &str,
    active: &str,
    history: &[String],
    to: Option<&str>,
) -> Result<RollbackTarget> {
    match to {
        Some(id) if id == active => Ok(RollbackTarget::AlreadyActive(id.to_string())),
        Some(id) if history.iter().any(|h| h == id) => Ok(RollbackTarget::Activate(id.to_string())),
        Some(id) => Err(StoreError::not_found(format!("Deployment '{id}' in the history of function '{name}'"))),
        None => history.iter().find(|h| *h != active).map(|h| RollbackTarget::Activate(h.clone())).ok_or_else(|| {
            StoreError::conflict(format!(
                "Function '{name}' has no earlier deployment to roll back to; deploy a new version instead"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(path: &str, content: &str) -> DeployFile {
        DeployFile { path: path.into(), content: content.into() }
    }

    fn deployment(entry: &str, files: &[(&str, &str)]) -> Deployment {
        Deployment {
            entry: entry.into(),
            files: files.iter().map(|(p, c)| file(p, c)).collect(),
            automations: json!([]),
        }
    }

    #[test]
    fn relative_paths_must_be_normalised() {
        assert_eq!(check_relative_path("entry.ts").unwrap(), 0);
        assert_eq!(check_relative_path("lib/a.ts").unwrap(), 0);
        assert_eq!(check_relative_path("../../shared/x.ts").unwrap(), 2);
        let too_deep = format!("{}x.ts", "../".repeat(MAX_PATH_CLIMB + 1));
        assert_eq!(check_relative_path(&format!("{}x.ts", "../".repeat(MAX_PATH_CLIMB))).unwrap(), MAX_PATH_CLIMB);
        for bad in [
            "",
            "/etc/passwd",
            "a//b.ts",
            "a/",
            "./a.ts",
            "a/./b.ts",
            "a/../b.ts",
            "..",
            "../..",
            "a\\b.ts",
            "a\0b",
            too_deep.as_str(),
        ] {
            assert!(check_relative_path(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": null, "y": "s"}], "c": true}});
        assert_eq!(canonical_json(&a), r#"{"a":{"c":true,"d":[1,{"y":"s","z":null}]},"b":1}"#);
    }

    #[test]
    fn ids_ignore_file_order_and_see_every_byte() {
        let one = prepare(deployment("entry.ts", &[("entry.ts", "x"), ("lib.ts", "y")])).unwrap();
        let two = prepare(deployment("entry.ts", &[("lib.ts", "y"), ("entry.ts", "x")])).unwrap();
        assert_eq!(one.id, two.id);
        assert!(is_deployment_id(&one.id), "{}", one.id);
        let changed = prepare(deployment("entry.ts", &[("entry.ts", "x"), ("lib.ts", "z")])).unwrap();
        assert_ne!(one.id, changed.id);
        let renamed = prepare(deployment("entry.ts", &[("entry.ts", "x"), ("lib2.ts", "y")])).unwrap();
        assert_ne!(one.id, renamed.id);
        let other_entry = prepare(deployment("lib.ts", &[("entry.ts", "x"), ("lib.ts", "y")])).unwrap();
        assert_ne!(one.id, other_entry.id);
        let mut with_automation = deployment("entry.ts", &[("entry.ts", "x"), ("lib.ts", "y")]);
        with_automation.automations = json!([{"name": "a", "type": "entity"}]);
        let with_automation = prepare(with_automation).unwrap();
        assert_ne!(one.id, with_automation.id);
        let mut reordered_keys = deployment("entry.ts", &[("entry.ts", "x"), ("lib.ts", "y")]);
        reordered_keys.automations = json!([{"type": "entity", "name": "a"}]);
        assert_eq!(prepare(reordered_keys).unwrap().id, with_automation.id);
        // The encoding is unambiguous: moving a byte between path and content changes the id.
        let a = prepare(deployment("e.ts", &[("e.ts", "ab")])).unwrap();
        let b = prepare(deployment("e.ts", &[("e.ts", "a"), ("b", "")])).unwrap();
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn prepare_rejects_bad_deployments() {
        let cases = [
            (deployment("entry.ts", &[]), "no files"),
            (deployment("main.ts", &[("entry.ts", "x")]), "not among the files"),
            (deployment("entry.ts", &[("entry.ts", "x"), ("entry.ts", "y")]), "listed twice"),
            (deployment("entry.ts", &[("entry.ts", "x"), ("/abs.ts", "y")]), "absolute"),
            (deployment("entry.ts", &[("entry.ts", "x"), ("a/../b.ts", "y")]), "not normalised"),
        ];
        for (d, expected) in cases {
            let err = prepare(d).unwrap_err();
            assert!(err.to_string().contains(expected), "{err} does not mention {expected}");
        }
        let mut not_array = deployment("entry.ts", &[("entry.ts", "x")]);
        not_array.automations = json!({});
        assert!(prepare(not_array).unwrap_err().to_string().contains("array"));
    }

    #[test]
    fn layout_resolves_shared_paths_at_any_depth() {
        let l = layout("entry.ts", ["entry.ts", "lib/a.ts", "../../shared/x.ts"].into_iter()).unwrap();
        assert_eq!(l.entry, "functions/_/entry.ts");
        let resolved: Vec<&str> = l.files.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(resolved, ["functions/_/entry.ts", "functions/_/lib/a.ts", "shared/x.ts"]);
        // A function two folders deep sends its shared files three levels up.
        let l = layout("entry.ts", ["entry.ts", "../../../shared/x.ts", "../sibling.ts"].into_iter()).unwrap();
        assert_eq!(l.entry, "functions/_/_/entry.ts");
        let resolved: Vec<&str> = l.files.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(resolved, ["functions/_/_/entry.ts", "shared/x.ts", "functions/_/sibling.ts"]);
        // Only the entry's own folder: still `functions/_/`.
        assert_eq!(layout("e.js", ["e.js"].into_iter()).unwrap().entry, "functions/_/e.js");
    }

    #[test]
    fn layout_rejects_collisions_and_resolve_rejects_escapes() {
        let err = layout("e.ts", ["e.ts", "../x.ts", "../../_/x.ts", "../../../s.ts"].into_iter()).unwrap_err();
        assert!(err.to_string().contains("same file"), "{err}");
        let err = resolve(&["functions", "_"], "../../../etc/passwd").unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err}");
        assert_eq!(resolve(&["functions", "_"], "../../x").unwrap(), "x");
    }

    fn history(ids: &[&str]) -> Vec<(i64, String)> {
        let n = ids.len() as i64;
        ids.iter().enumerate().map(|(i, id)| (n - i as i64, id.to_string())).collect()
    }

    #[test]
    fn pruning_keeps_the_most_recent_distinct_deployments() {
        // 25 distinct deployments, newest first: d24 … d0. The 5 oldest go.
        let ids: Vec<String> = (0..25).rev().map(|i| format!("d{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let h = history(&refs);
        assert_eq!(entries_to_prune(&h), vec![5, 4, 3, 2, 1]);
        // Few deployments: nothing goes.
        assert!(entries_to_prune(&history(&["b", "a", "b", "a"])).is_empty());
    }

    #[test]
    fn pruning_bounds_back_and_forth_rollbacks_without_losing_deployments() {
        // 150 entries alternating a/b, then 3 older distinct deployments.
        let mut ids: Vec<&str> = (0..150).map(|i| if i % 2 == 0 { "a" } else { "b" }).collect();
        ids.extend(["c", "d", "e"]);
        let h = history(&ids);
        let pruned: HashSet<i64> = entries_to_prune(&h).into_iter().collect();
        let kept: Vec<&str> = h.iter().filter(|(s, _)| !pruned.contains(s)).map(|(_, d)| d.as_str()).collect();
        assert_eq!(kept.len(), 103, "{kept:?}");
        for id in ["a", "b", "c", "d", "e"] {
            assert!(kept.contains(&id), "{id} was pruned");
        }
        assert_eq!(kept[0], "a");
    }

    #[test]
    fn rollback_targets() {
        let h: Vec<String> = ["c", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(rollback_target("f", "c", &h, None).unwrap(), RollbackTarget::Activate("b".into()));
        assert_eq!(rollback_target("f", "c", &h, Some("a")).unwrap(), RollbackTarget::Activate("a".into()));
        assert_eq!(rollback_target("f", "c", &h, Some("c")).unwrap(), RollbackTarget::AlreadyActive("c".into()));
        assert_eq!(rollback_target("f", "c", &h, Some("zz")).unwrap_err().code(), "not_found");
        let only: Vec<String> = vec!["c".into(), "c".into()];
        assert_eq!(rollback_target("f", "c", &only, None).unwrap_err().code(), "conflict");
    }
}

//! Writing a deployment's files to the node's disk, by content address, for the runtime to run.
//!
//! `root/<deployment id>/` holds one deployment, laid out as [`content::layout`] says (the entry
//! in `functions/_/…/`, shared files in `shared/`). A folder is written under a temporary name
//! beside its final one and renamed into place, so a folder with a deployment's name is always
//! complete and is reused as it is. The folder is a cache: deleting `root` loses nothing.

use std::fs;
use std::path::{Path, PathBuf};

use crate::content;
use crate::error::{Result, StoreError};

/// Prefix of the temporary folders a materialisation writes into.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Writes the deployment `id` (its `entry` and `(path, content)` files) under `root/<id>/` unless
/// it is already there, and returns the absolute path of its entry file. Blocking.
pub(crate) fn materialize(id: &str, entry: &str, files: &[(&str, &str)], root: &Path) -> Result<PathBuf> {
    if !content::is_deployment_id(id) {
        return Err(StoreError::invalid(format!("'{id}' is not a deployment id")));
    }
    // Paths come from the database; check them again rather than trust them.
    let layout = content::layout(entry, files.iter().map(|(path, _)| *path))?;
    fs::create_dir_all(root).map_err(|e| io_error("create", root, &e))?;
    let root = root.canonicalize().map_err(|e| io_error("resolve", root, &e))?;
    let target = root.join(id);
    let entry = target.join(&layout.entry);
    if target.is_dir() {
        return Ok(entry);
    }
    let temp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{id}-"))
        .tempdir_in(&root)
        .map_err(|e| io_error("create a temporary folder in", &root, &e))?;
    for ((_, content), (_, resolved)) in files.iter().zip(&layout.files) {
        let path = temp.path().join(resolved);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error("create", parent, &e))?;
        }
        fs::write(&path, content).map_err(|e| io_error("write", &path, &e))?;
    }
    match fs::rename(temp.path(), &target) {
        Ok(()) => {
            // The temporary folder is gone (renamed); nothing is left to clean up.
            let _ = temp.keep();
            Ok(entry)
        }
        // Another materialisation of the same deployment won the race: its folder is complete.
        // `temp` is removed when dropped.
        Err(_) if target.is_dir() => Ok(entry),
        Err(e) => Err(io_error("move into place", &target, &e)),
    }
}

fn io_error(action: &str, path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Io(format!("Could not {action} {}: {error}", path.display()))
}

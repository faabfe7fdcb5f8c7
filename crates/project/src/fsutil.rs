//! Small, lexical path helpers and a sorted directory walker.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// How deep the walker descends (guards against symlink loops).
const MAX_DEPTH: usize = 64;

/// Removes `.` segments and folds `..` into their parent, without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_is_normal = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    out.pop();
                } else if !matches!(out.components().next_back(), Some(Component::RootDir | Component::Prefix(_))) {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `to` relative to the folder `from`, with `/` separators (both normalized lexically).
pub(crate) fn relative_slash(from: &Path, to: &Path) -> String {
    let from = normalize(from);
    let to = normalize(to);
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..from.len() {
        parts.push("..".to_string());
    }
    for comp in &to[common..] {
        parts.push(comp.as_os_str().to_string_lossy().into_owned());
    }
    parts.join("/")
}

/// Path segments of a relative path, as strings.
pub(crate) fn segments(rel: &Path) -> Vec<String> {
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect()
}

/// One folder seen by [`walk_dirs`]: its path relative to the root and its file names (sorted).
#[derive(Debug)]
pub(crate) struct Listing {
    pub rel: PathBuf,
    pub files: Vec<String>,
}

impl Listing {
    pub fn has(&self, name: &str) -> bool {
        self.files.iter().any(|f| f == name)
    }
}

/// Lists `root` and its sub-folders depth-first in name order, skipping folders for which
/// `skip_dir(name)` is true. Symlinks are followed. Unreadable folders are reported in `errors`.
pub(crate) fn walk_dirs(
    root: &Path,
    skip_dir: &dyn Fn(&str) -> bool,
    errors: &mut Vec<(PathBuf, io::Error)>,
) -> Vec<Listing> {
    let mut out = Vec::new();
    visit(root, Path::new(""), 0, skip_dir, &mut out, errors);
    out
}

fn visit(
    root: &Path,
    rel: &Path,
    depth: usize,
    skip_dir: &dyn Fn(&str) -> bool,
    out: &mut Vec<Listing>,
    errors: &mut Vec<(PathBuf, io::Error)>,
) {
    let dir = root.join(rel);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) => {
            errors.push((dir, err));
            return;
        }
    };
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                errors.push((dir.clone(), err));
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let (is_dir, is_file) = match entry.file_type() {
            Ok(ft) if ft.is_symlink() => match fs::metadata(entry.path()) {
                Ok(meta) => (meta.is_dir(), meta.is_file()),
                Err(_) => (false, false), // dangling link
            },
            Ok(ft) => (ft.is_dir(), ft.is_file()),
            Err(err) => {
                errors.push((entry.path(), err));
                continue;
            }
        };
        if is_dir {
            if !skip_dir(&name) {
                dirs.push(name);
            }
        } else if is_file {
            files.push(name);
        }
    }
    files.sort();
    dirs.sort();
    out.push(Listing { rel: rel.to_path_buf(), files });
    if depth < MAX_DEPTH {
        for name in dirs {
            visit(root, &rel.join(name), depth + 1, skip_dir, out, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_dots() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
        assert_eq!(normalize(Path::new("/../a")), PathBuf::from("/a"));
        assert_eq!(normalize(Path::new("base44/.")), PathBuf::from("base44"));
    }

    #[test]
    fn relative_paths_climb_with_dotdot() {
        assert_eq!(
            relative_slash(Path::new("/p/base44/functions/a/b"), Path::new("/p/base44/shared/x.ts")),
            "../../../shared/x.ts"
        );
        assert_eq!(relative_slash(Path::new("/p/f"), Path::new("/p/f/sub/x.ts")), "sub/x.ts");
        assert_eq!(relative_slash(Path::new("/p/f"), Path::new("/p/f")), "");
    }

    #[test]
    fn walk_is_sorted_and_skips() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["b/x", "a", ".hidden", "node_modules/m"] {
            fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        fs::write(tmp.path().join("b/x/f2"), "").unwrap();
        fs::write(tmp.path().join("b/x/f1"), "").unwrap();
        let mut errors = Vec::new();
        let list = walk_dirs(tmp.path(), &|n| n.starts_with('.') || n == "node_modules", &mut errors);
        let rels: Vec<_> = list.iter().map(|l| l.rel.clone()).collect();
        assert_eq!(rels, vec![PathBuf::from(""), PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("b/x")]);
        assert_eq!(list[3].files, vec!["f1", "f2"]);
        assert!(errors.is_empty());
        let mut errors = Vec::new();
        let list = walk_dirs(&tmp.path().join("missing"), &|_| false, &mut errors);
        assert!(list.is_empty());
        assert_eq!(errors.len(), 1);
    }
}

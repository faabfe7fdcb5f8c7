//! `serve`'s data folder is private to the server's user: it holds the keys (`master.key`,
//! `admin.key`, `auth.key`), the databases (`homebase.db` with the apps' encrypted secrets and
//! users, `logs.db` with every line functions printed) and the deployed code of every app.
//!
//! A new folder is created `0700`. An existing one that other users may enter or read is
//! tightened to `0700`, and so are its keys and databases to `0600`, with a warning that says
//! what changed. (The databases are created `0600` by the store; the keys by `write_private`.)

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The files of the data folder that only the server's user may read: keys and databases (with
/// SQLite's `-wal` and `-shm` beside them).
fn is_private_file(name: &str) -> bool {
    [".key", ".db", ".db-wal", ".db-shm", ".db-journal"].iter().any(|suffix| name.ends_with(suffix))
}

/// Creates `dir` (mode `0700`) or tightens it and the keys and databases in it; returns one
/// sentence for each thing it tightened, for a warning.
pub fn make_private(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut tightened = Vec::new();
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        return Ok(tightened);
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tightened.push(format!("the data folder {} was mode {mode:04o}, now 0700", dir.display()));
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Not through links: a link's target is not ours to change.
        let Ok(meta) = entry.metadata() else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && is_private_file(&name) && mode & 0o077 != 0 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            tightened.push(format!("{name} was mode {mode:04o}, now 0600"));
        }
    }
    Ok(tightened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_folder_is_private_and_an_open_one_is_tightened() {
        let temp = tempfile::tempdir().unwrap();
        let fresh = temp.path().join("a/data");
        assert!(make_private(&fresh).unwrap().is_empty());
        assert_eq!(mode(&fresh), 0o700);

        let open = temp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (name, file_mode) in
            [("homebase.db", 0o644), ("logs.db-wal", 0o640), ("master.key", 0o600), ("notes.txt", 0o644)]
        {
            std::fs::write(open.join(name), "x").unwrap();
            std::fs::set_permissions(open.join(name), std::fs::Permissions::from_mode(file_mode)).unwrap();
        }
        let said = make_private(&open).unwrap();
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(said[0].contains("0755") && said[0].contains("0700"), "{said:?}");
        assert_eq!(mode(&open), 0o700);
        assert_eq!((mode(&open.join("homebase.db")), mode(&open.join("logs.db-wal"))), (0o600, 0o600));
        assert_eq!((mode(&open.join("master.key")), mode(&open.join("notes.txt"))), (0o600, 0o644));
        assert!(make_private(&open).unwrap().is_empty(), "nothing left to tighten");
    }
}

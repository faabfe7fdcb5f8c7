//! Files of Homebase's own (keys, `dev.json`): written whole and private; and `serve`'s data
//! folder, private to the server's user ([`make_private_dir`]): it holds the keys
//! (`master.key`, `admin.key`, `auth.key`), the databases (`homebase.db` with the apps' encrypted
//! secrets and users, `logs.db` with every line functions printed) and every app's deployed code.
//! A new folder is created `0700`; an existing one that other users may enter or read is
//! tightened to `0700`, and its keys and databases to `0600`, and the caller says what changed.
//! (The store creates its database files `0600`; keys are written by [`write_private`].)

use std::path::Path;

/// Writes `text` to `path` readable by its owner only (0600), creating the folder 0700 if needed,
/// through a uniquely named temporary file renamed into place: a reader never sees half a file,
/// and two writers never share a temporary file.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    // tempfile creates the file with mode 0600.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The files of the data folder that only the server's user may read: keys and databases (with
/// SQLite's `-wal` and `-shm` beside them).
fn is_private_file(name: &str) -> bool {
    [".key", ".db", ".db-wal", ".db-shm", ".db-journal"].iter().any(|suffix| name.ends_with(suffix))
}

/// Creates `dir` (mode `0700`) or tightens it and the keys and databases in it; returns one
/// sentence for each thing it tightened, for a warning.
pub fn make_private_dir(dir: &Path) -> std::io::Result<Vec<String>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
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
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_folder_is_private_and_an_open_one_is_tightened() {
        let temp = tempfile::tempdir().unwrap();
        let fresh = temp.path().join("a/data");
        assert!(make_private_dir(&fresh).unwrap().is_empty());
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
        let said = make_private_dir(&open).unwrap();
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(said[0].contains("0755") && said[0].contains("0700"), "{said:?}");
        assert_eq!(mode(&open), 0o700);
        assert_eq!((mode(&open.join("homebase.db")), mode(&open.join("logs.db-wal"))), (0o600, 0o600));
        assert_eq!((mode(&open.join("master.key")), mode(&open.join("notes.txt"))), (0o600, 0o644));
        assert!(make_private_dir(&open).unwrap().is_empty(), "nothing left to tighten");
    }
}

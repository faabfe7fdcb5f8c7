//! Files of Homebase's own (keys, `dev.json`): written whole and private.

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

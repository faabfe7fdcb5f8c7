//! Backing up `serve`'s data folder while it serves (`homebase backup`).
//!
//! A backup is a new folder (`0700`) with what a server needs to start where the original was:
//!
//! - `homebase.db` and `logs.db`, each copied as one consistent snapshot while the server keeps
//!   writing ([`homebase_store::backup::copy_sqlite`]);
//! - the keys: `master.key` (without it the copy's secrets cannot be read), `admin.key` and
//!   `auth.key` (signed-in users stay signed in); and `homebase.toml` when there is one;
//! - last, `backup.json`: what was copied, from where, when, at which schema version. A folder
//!   without it is not a finished backup.
//!
//! Every file is `0600`. Caches are left out: `deployments/` is written again from the database
//! when a server starts on the copy, and `deno/` fills again as functions run (downloading their
//! `npm:` and `jsr:` packages again). Restoring is starting `serve` with `--data-dir` on the copy,
//! or copying its files back into a data folder while no server runs on it.
//!
//! A server whose data is in PostgreSQL is refused: its database is backed up with `pg_dump`
//! (see `docs/serve.md`, "Backups").

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use homebase_store::StoreError;
use homebase_store::backup::{CopyProgress, copy_sqlite};
use serde::Serialize;

/// The databases of a data folder, in the order they are copied; the first one is required.
pub const DATABASES: [&str; 2] = ["homebase.db", "logs.db"];
/// The keys of a data folder (see `serve`), and the optional configuration file.
pub const KEY_FILES: [&str; 3] = ["master.key", "admin.key", "auth.key"];
pub const CONFIG_FILE: &str = "homebase.toml";
/// What a finished backup writes last.
pub const MANIFEST: &str = "backup.json";

/// Where the data is, as far as a backup must know: what the server's `database-url` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSetting {
    /// The SQLite files of the data folder.
    Sqlite,
    /// PostgreSQL, set by `set_by` (an environment variable or a file).
    Postgres { set_by: String },
}

impl DatabaseSetting {
    /// What `serve` would use with the configuration file `config_file` and the value of
    /// `HOMEBASE_DATABASE_URL` (`env`): a `postgres://` (or `postgresql://`) URL in either
    /// means PostgreSQL. The file is read leniently: a backup needs this one key, whatever else
    /// the file says.
    pub fn detect(config_file: &Path, env: Option<&str>) -> DatabaseSetting {
        let is_postgres = |url: &str| {
            let url = url.trim().to_ascii_lowercase();
            url.starts_with("postgres://") || url.starts_with("postgresql://")
        };
        if env.is_some_and(is_postgres) {
            return DatabaseSetting::Postgres { set_by: "HOMEBASE_DATABASE_URL".into() };
        }
        let file = std::fs::read_to_string(config_file).ok().and_then(|text| text.parse::<toml::Table>().ok());
        match file.as_ref().and_then(|table| table.get("database-url")).and_then(|url| url.as_str()) {
            Some(url) if is_postgres(url) => {
                DatabaseSetting::Postgres { set_by: format!("database-url in {}", config_file.display()) }
            }
            _ => DatabaseSetting::Sqlite,
        }
    }
}

/// Why a backup was not made. Nothing is left behind in the destination.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "the server keeps its data in PostgreSQL ({set_by}), which homebase backup does not copy; back it up \
         with pg_dump (see docs/serve.md, Backups), and keep master.key (or HOMEBASE_MASTER_KEY) with it"
    )]
    Postgres { set_by: String },
    #[error(
        "{} is not a data folder of homebase serve: it has no homebase.db (give the folder serve uses with \
         --data-dir or HOMEBASE_DATA_DIR)",
        .0.display()
    )]
    NotADataFolder(PathBuf),
    #[error("{} exists and is not empty; give a new folder, or an empty one", .0.display())]
    DestinationNotEmpty(PathBuf),
    #[error("{} is the data folder itself; give a new folder", .0.display())]
    DestinationIsSource(PathBuf),
    #[error(
        "{} belongs to another user than the data folder, who could change the copy; give a new folder, or one the data folder's owner owns",
        .0.display()
    )]
    DestinationNotOwned(PathBuf),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a backup is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// A database is being copied: `copied` of `total` bytes.
    Copying { file: &'a str, copied: u64, total: u64 },
    /// A file is done.
    Copied { file: &'a str, bytes: u64 },
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopiedFile {
    pub name: String,
    pub bytes: u64,
}

/// A finished backup; also what `backup.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The Homebase version that made it.
    pub homebase_version: String,
    /// Milliseconds since the Unix epoch, when the copying began.
    pub created_at: u64,
    pub data_dir: PathBuf,
    pub dest: PathBuf,
    /// The schema version of `homebase.db` in the copy (`PRAGMA user_version`).
    pub schema_version: i64,
    pub files: Vec<CopiedFile>,
    /// What the copy lacks and how to make up for it (a missing `master.key`, say).
    pub warnings: Vec<String>,
}

/// Copies the data folder `data_dir` into `dest`, a new or empty folder, while a server may be
/// serving it (see the module docs); `progress` hears about each step. Blocking. A failure
/// removes what was copied.
pub fn backup(
    data_dir: &Path,
    dest: &Path,
    database: &DatabaseSetting,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<BackupReport, BackupError> {
    if let DatabaseSetting::Postgres { set_by } = database {
        return Err(BackupError::Postgres { set_by: set_by.clone() });
    }
    if !data_dir.join(DATABASES[0]).is_file() {
        return Err(BackupError::NotADataFolder(data_dir.to_path_buf()));
    }
    let created = prepare_destination(data_dir, dest)?;
    let mut written = Vec::new();
    let result = copy_all(data_dir, dest, progress, &mut written);
    if result.is_err() {
        if created {
            let _ = std::fs::remove_dir_all(dest);
        } else {
            for name in written {
                let _ = std::fs::remove_file(dest.join(name));
            }
        }
    }
    result
}

/// Creates `dest` (`0700`), or checks that it is an empty folder and makes it `0700`; whether it
/// was created.
fn prepare_destination(data_dir: &Path, dest: &Path) -> Result<bool, BackupError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |what: String| move |source| BackupError::Io { what, source };
    if dest.exists() {
        if let (Ok(a), Ok(b)) = (dest.canonicalize(), data_dir.canonicalize())
            && a == b
        {
            return Err(BackupError::DestinationIsSource(dest.to_path_buf()));
        }
        // A folder another user owns stays theirs to change after the copy: refuse it.
        {
            use std::os::unix::fs::MetadataExt;
            let owner = |path: &Path| std::fs::metadata(path).map(|m| m.uid());
            if let (Ok(dest_owner), Ok(data_owner)) = (owner(dest), owner(data_dir))
                && dest_owner != data_owner
            {
                return Err(BackupError::DestinationNotOwned(dest.to_path_buf()));
            }
        }
        let mut entries = std::fs::read_dir(dest).map_err(io(format!("could not read {}", dest.display())))?;
        if entries.next().is_some() {
            return Err(BackupError::DestinationNotEmpty(dest.to_path_buf()));
        }
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("could not make {} private", dest.display())))?;
        return Ok(false);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dest)
        .map_err(io(format!("could not create {}", dest.display())))?;
    Ok(true)
}

fn copy_all(
    data_dir: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
    written: &mut Vec<String>,
) -> Result<BackupReport, BackupError> {
    let created_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut report = BackupReport {
        homebase_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at,
        data_dir: data_dir.to_path_buf(),
        dest: dest.to_path_buf(),
        schema_version: 0,
        files: Vec::new(),
        warnings: Vec::new(),
    };
    for name in DATABASES {
        let source = data_dir.join(name);
        if name != DATABASES[0] && !source.is_file() {
            report.warnings.push(format!("{name} is not in the data folder: there were no stored log lines to copy"));
            continue;
        }
        written.push(name.to_string());
        let copied = copy_sqlite(&source, &dest.join(name), &mut |CopyProgress { copied, total }| {
            progress(Progress::Copying { file: name, copied, total })
        })?;
        if name == DATABASES[0] {
            report.schema_version = copied.schema_version;
        }
        progress(Progress::Copied { file: name, bytes: copied.bytes });
        report.files.push(CopiedFile { name: name.to_string(), bytes: copied.bytes });
    }
    for name in KEY_FILES.into_iter().chain([CONFIG_FILE]) {
        let source = data_dir.join(name);
        let text = match std::fs::read_to_string(&source) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(warning) = missing(name) {
                    report.warnings.push(warning.to_string());
                }
                continue;
            }
            Err(source_error) => {
                return Err(BackupError::Io {
                    what: format!("could not read {}", source.display()),
                    source: source_error,
                });
            }
        };
        written.push(name.to_string());
        crate::files::write_private(&dest.join(name), &text).map_err(|source| BackupError::Io {
            what: format!("could not write {}", dest.join(name).display()),
            source,
        })?;
        progress(Progress::Copied { file: name, bytes: text.len() as u64 });
        report.files.push(CopiedFile { name: name.to_string(), bytes: text.len() as u64 });
    }
    let manifest = serde_json::to_string_pretty(&report).expect("a report serializes");
    written.push(MANIFEST.to_string());
    crate::files::write_private(&dest.join(MANIFEST), &format!("{manifest}\n")).map_err(|source| BackupError::Io {
        what: format!("could not write {}", dest.join(MANIFEST).display()),
        source,
    })?;
    // The new names are durable too, not only the files' contents.
    if let Ok(dir) = std::fs::File::open(dest) {
        let _ = dir.sync_all();
    }
    Ok(report)
}

/// What a copy without the key `name` means, and what to do about it.
fn missing(name: &str) -> Option<&'static str> {
    match name {
        "master.key" => Some(
            "master.key is not in the data folder, so the server takes its master key from HOMEBASE_MASTER_KEY: \
             keep that key with this copy, or its secrets cannot be read",
        ),
        "admin.key" => Some(
            "admin.key is not in the data folder (the admin key comes from HOMEBASE_ADMIN_KEY): the admin keys in \
             the database still work with a server started on this copy",
        ),
        "auth.key" => Some(
            "auth.key is not in the data folder: a server started on this copy makes a new one, and app users \
             sign in again",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_in_the_environment_or_the_file_means_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("homebase.toml");
        assert_eq!(DatabaseSetting::detect(&file, None), DatabaseSetting::Sqlite);
        let env = DatabaseSetting::detect(&file, Some("postgres://homebase:pw@db:5432/homebase"));
        assert_eq!(env, DatabaseSetting::Postgres { set_by: "HOMEBASE_DATABASE_URL".into() });
        std::fs::write(&file, "port = 8080\ndatabase-url = \"postgresql://db/homebase\"\nnew-key = 1\n").unwrap();
        let DatabaseSetting::Postgres { set_by: source } = DatabaseSetting::detect(&file, Some("")) else { panic!() };
        assert!(source.starts_with("database-url in ") && source.ends_with("homebase.toml"), "{source}");
        let err = BackupError::Postgres { set_by: source };
        assert!(err.to_string().contains("pg_dump") && !err.to_string().contains("db/homebase"), "{err}");
    }

    #[test]
    fn a_folder_without_homebase_db_or_a_full_destination_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (data, dest) = (dir.path().join("data"), dir.path().join("copy"));
        std::fs::create_dir(&data).unwrap();
        let err = backup(&data, &dest, &DatabaseSetting::Sqlite, &mut |_| {}).unwrap_err();
        assert!(matches!(err, BackupError::NotADataFolder(_)), "{err}");
        assert!(!dest.exists());
        std::fs::write(data.join("homebase.db"), "").unwrap();
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("notes.txt"), "mine").unwrap();
        let err = backup(&data, &dest, &DatabaseSetting::Sqlite, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("exists and is not empty"), "{err}");
        assert_eq!(std::fs::read_to_string(dest.join("notes.txt")).unwrap(), "mine");
        let err = backup(&data, &data, &DatabaseSetting::Sqlite, &mut |_| {}).unwrap_err();
        assert!(matches!(err, BackupError::DestinationIsSource(_)), "{err}");
    }

    #[test]
    fn an_empty_destination_another_user_owns_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (data, dest) = (dir.path().join("data"), dir.path().join("theirs"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("homebase.db"), "").unwrap();
        std::fs::create_dir(&dest).unwrap();
        let other = std::fs::metadata(&data).unwrap().uid() + 1;
        if std::os::unix::fs::chown(&dest, Some(other), None).is_err() {
            // Only a privileged user can give a folder away; CI runs as root.
            assert_ne!(std::fs::metadata(&data).unwrap().uid(), 0, "root can chown");
            return;
        }
        let err = backup(&data, &dest, &DatabaseSetting::Sqlite, &mut |_| {}).unwrap_err();
        assert!(matches!(err, BackupError::DestinationNotOwned(_)), "{err}");
        assert!(err.to_string().contains("belongs to another user"), "{err}");
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "nothing was written");
    }
}

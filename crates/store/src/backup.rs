//! Consistent copies of a SQLite database while another process serves it (`homebase backup`).
//!
//! [`copy_sqlite`] opens the source as it is (never creating or migrating it), starts a read
//! transaction that pins one snapshot of it, and copies that snapshot page by page with SQLite's
//! online backup API into a new file made `0600`. In WAL mode (every database Homebase writes)
//! the server keeps committing meanwhile, and since the snapshot is held across the steps the copy
//! never restarts, however busy the server is; between steps it reports its progress. The copy
//! is checked with `PRAGMA quick_check` before it is reported done.
//!
//! A copy is a database like any other: opening it with [`crate::Store::open_sqlite`] (or
//! `homebase serve --data-dir` on its folder) migrates it as usual.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, StoreError};

/// Pages copied per step (1 MiB with SQLite's default 4 KiB pages): small enough for progress
/// every few milliseconds, large enough that steps cost nothing next to the copying.
const PAGES_PER_STEP: i32 = 256;
/// How long the source may be locked (a checkpoint, WAL recovery) before the copy gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How far a copy is: bytes of the snapshot copied so far, of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyProgress {
    pub copied: u64,
    pub total: u64,
}

/// A finished copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyReport {
    /// The size of the copy.
    pub bytes: u64,
    /// The schema version the snapshot had (`PRAGMA user_version`).
    pub schema_version: i64,
}

/// Copies the SQLite database `source` to the new file `dest` (which must not exist) as one
/// consistent snapshot, while other connections and processes keep writing to `source`; calls
/// `progress` after each step. On failure `dest` is removed. Blocking.
pub fn copy_sqlite(source: &Path, dest: &Path, progress: &mut dyn FnMut(CopyProgress)) -> Result<CopyReport> {
    if !source.is_file() {
        return Err(StoreError::Io(format!("There is no database at {}", source.display())));
    }
    crate::sqlite::create_new_private_file(dest)?;
    let copied = copy(source, dest, progress);
    if copied.is_err() {
        let _ = std::fs::remove_file(dest);
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut sidecar = dest.as_os_str().to_owned();
            sidecar.push(suffix);
            let _ = std::fs::remove_file(sidecar);
        }
    }
    copied
}

fn copy(source: &Path, dest: &Path, progress: &mut dyn FnMut(CopyProgress)) -> Result<CopyReport> {
    let (from, to) = (source.display(), dest.display());
    let database = |e: rusqlite::Error| StoreError::Database(format!("Copying {from} to {to} failed: {e}"));
    // Read and write, never create: reading a WAL database takes its shared-memory file.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let src = Connection::open_with_flags(source, flags)
        .map_err(|e| StoreError::Database(format!("Could not open the database {from}: {e}")))?;
    src.busy_timeout(BUSY_TIMEOUT).map_err(database)?;
    src.pragma_update(None, "query_only", "ON").map_err(database)?;
    // The snapshot: held until the copy is done, so that the backup's steps all read it and
    // never restart for the server's commits.
    src.execute_batch("BEGIN DEFERRED").map_err(database)?;
    let schema_version: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(database)?;
    let page_size: i64 = src.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(database)?;
    let page_size = page_size.max(512) as u64;

    let mut dst =
        Connection::open(dest).map_err(|e| StoreError::Database(format!("Could not create the database {to}: {e}")))?;
    {
        let backup = Backup::new(&src, &mut dst).map_err(database)?;
        loop {
            let step = backup.step(PAGES_PER_STEP).map_err(database)?;
            let state = backup.progress();
            let total = state.pagecount.max(0) as u64 * page_size;
            let copied = total.saturating_sub(state.remaining.max(0) as u64 * page_size);
            progress(CopyProgress { copied, total });
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                // The copy's own file, or a lock of the source the busy timeout did not cover.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    src.execute_batch("COMMIT").map_err(database)?;
    drop(src);
    let check: String = dst.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(database)?;
    if check != "ok" {
        return Err(StoreError::Database(format!("The copy {to} of {from} does not check out: {check}")));
    }
    // A copy of a WAL database is one: leave it whole in one file.
    dst.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(database)?;
    dst.close().map_err(|(_, e)| database(e))?;
    let bytes = std::fs::metadata(dest).map_err(|e| StoreError::Io(format!("{to}: {e}")))?.len();
    Ok(CopyReport { bytes, schema_version })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;

    /// A WAL database with two tables that every transaction grows together, about 8 MiB.
    fn database(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
        conn.execute_batch(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, pad BLOB); CREATE TABLE b (id INTEGER PRIMARY KEY, pad BLOB);
             PRAGMA user_version = 7;",
        )
        .unwrap();
        conn.execute_batch("BEGIN").unwrap();
        for _ in 0..1000 {
            conn.execute("INSERT INTO a (pad) VALUES (randomblob(4000))", []).unwrap();
            conn.execute("INSERT INTO b (pad) VALUES (randomblob(4000))", []).unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        conn
    }

    /// The copy of a database that another connection writes all along is one snapshot (both
    /// tables the same size), private, checked, whole in one file, and copied in one pass: its
    /// progress never goes back, as it would if a step restarted after the writer's commits.
    #[test]
    fn a_database_being_written_is_copied_as_one_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("homebase.db"), dir.path().join("copy").join("homebase.db"));
        drop(database(&source));
        std::fs::create_dir(dir.path().join("copy")).unwrap();
        let (stop, commits) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let writer = {
            let (source, stop, commits) = (source.clone(), stop.clone(), commits.clone());
            std::thread::spawn(move || {
                let conn = Connection::open(&source).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    conn.execute_batch(
                        "BEGIN IMMEDIATE; INSERT INTO a (pad) VALUES (randomblob(4000));
                         INSERT INTO b (pad) VALUES (randomblob(4000)); COMMIT;",
                    )
                    .unwrap();
                    commits.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let mut steps = Vec::new();
        let mut progress = |p: CopyProgress| {
            // Let the writer commit between the copy's steps.
            let before = commits.load(Ordering::Relaxed);
            while commits.load(Ordering::Relaxed) < before + 2 {
                std::thread::yield_now();
            }
            steps.push(p);
            assert!(steps.len() < 200, "the copy restarts after commits: {:?}", &steps[..20]);
        };
        let report = copy_sqlite(&source, &dest, &mut progress).unwrap();
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();

        assert!(steps.len() > 4, "copied in steps: {steps:?}");
        assert!(steps.windows(2).all(|w| w[1].copied >= w[0].copied && w[1].total == w[0].total), "{steps:?}");
        let last = steps.last().unwrap();
        assert_eq!(last.copied, last.total);
        assert_eq!(report.schema_version, 7);
        assert_eq!(report.bytes, std::fs::metadata(&dest).unwrap().len());
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("copy")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["homebase.db"], "no -wal or -shm beside the copy");
        let copy = Connection::open(&dest).unwrap();
        let count = |table: &str| copy.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0));
        let (a, b) = (count("a").unwrap(), count("b").unwrap());
        assert_eq!(a, b, "one snapshot");
        assert!(a >= 1000);
        let source_rows: i64 =
            Connection::open(&source).unwrap().query_row("SELECT count(*) FROM a", [], |r| r.get(0)).unwrap();
        assert!(source_rows > a, "the writer went on after the snapshot ({source_rows} > {a})");
    }

    #[test]
    fn a_missing_source_or_an_existing_copy_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("homebase.db"), dir.path().join("copy.db"));
        let err = copy_sqlite(&source, &dest, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("no database at"), "{err}");
        assert!(!source.exists() && !dest.exists(), "nothing was created");
        drop(database(&source));
        std::fs::write(&dest, "mine").unwrap();
        let err = copy_sqlite(&source, &dest, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "mine", "an existing file is never overwritten");
    }
}

//! `homebase serve`'s data folder is private to the server's user (issue 9): the review found
//! `homebase.db` and `logs.db` readable by every local user (0644) and `deployments/` open
//! (0755). The real binary, started on a new folder and on an open one.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::Running;
use tokio::process::Command;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// `homebase --json serve` on `data`, with no admin key in the environment (it writes admin.key),
/// once it listens.
async fn serve(data: &Path) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.args(["--json", "serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data).env_remove("HOMEBASE_ADMIN_KEY");
    Running::spawn(cmd, &[], true).await
}

/// The folder and every key and database in it are the owner's only.
fn assert_private(data: &Path) {
    assert_eq!(mode(data), 0o700, "the data folder");
    for name in ["homebase.db", "logs.db", "master.key", "admin.key", "auth.key"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    for entry in std::fs::read_dir(data).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".db-wal") || name.ends_with(".db-shm") {
            assert_eq!(mode(&entry.path()), 0o600, "{name}");
        }
    }
}

#[tokio::test]
async fn serve_keeps_its_data_folder_private_and_tightens_an_open_one() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let server = serve(&data).await;
    assert_eq!(reqwest::get(server.at("/healthz")).await.unwrap().status(), 200);
    assert_private(&data);
    server.signal(libc::SIGTERM);
    server.exit_code().await;

    // An operator opened it up (or an older Homebase made it so): the next start closes it again
    // and says what it changed.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["homebase.db", "logs.db", "master.key"] {
        std::fs::set_permissions(data.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut server = serve(&data).await;
    let warning = server.wait_for(|line| line["event"] == "data_dir_tightened").await;
    let text = warning["message"].as_str().unwrap();
    assert!(text.contains("0755") && text.contains("homebase.db") && text.contains("master.key"), "{text}");
    assert_private(&data);
    server.signal(libc::SIGTERM);
    server.exit_code().await;
}

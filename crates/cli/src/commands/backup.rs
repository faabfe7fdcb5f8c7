//! `homebase backup DEST`: a consistent copy of `serve`'s data folder, made while it serves
//! (docs/serve.md#backups). The copying is `homebase_server::backup`'s; this prints its progress
//! (on stderr for people, `progress` lines with `--json`) and what it made.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use homebase_server::backup::{self, BackupReport, DatabaseSetting, Progress};
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::output;

/// How often progress is shown while a database is copied.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The folder to write the copy to: a new one, or an empty one.
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    /// The data folder of the server (default: as for serve, homebase in the user's data folder).
    #[arg(long, value_name = "DIR", env = "HOMEBASE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The server's configuration file, to tell whether its data is in PostgreSQL (default:
    /// homebase.toml in the data folder).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub async fn run(args: BackupArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => super::serve::default_data_dir()?,
    };
    let config_file = args.config.unwrap_or_else(|| data_dir.join(backup::CONFIG_FILE));
    let env = std::env::var("HOMEBASE_DATABASE_URL").ok();
    let database = DatabaseSetting::detect(&config_file, env.as_deref());
    let (json, dest) = (global.json, args.dest);
    let report = tokio::task::spawn_blocking(move || {
        let mut shown = Shown::new(json);
        let report = backup::backup(&data_dir, &dest, &database, &mut |progress| shown.show(progress));
        shown.finish_line();
        report
    })
    .await
    .context("the backup stopped unexpectedly")??;
    print_report(json, &report);
    Ok(())
}

/// The progress display: one update per [`PROGRESS_EVERY`] while a database is copied (none
/// for a quick one), one line per file done.
struct Shown {
    json: bool,
    terminal: bool,
    /// When the database being copied last showed its progress (or began).
    last: Option<Instant>,
    /// Whether a `\r` progress line is open on the terminal.
    open_line: bool,
}

impl Shown {
    fn new(json: bool) -> Shown {
        Shown { json, terminal: std::io::stderr().is_terminal(), last: None, open_line: false }
    }

    fn show(&mut self, progress: Progress<'_>) {
        match progress {
            Progress::Copying { file, copied, total } => {
                // Nothing for a copy that takes less than PROGRESS_EVERY, then one update per
                // PROGRESS_EVERY.
                let Some(last) = self.last else {
                    self.last = Some(Instant::now());
                    return;
                };
                if copied == total || last.elapsed() < PROGRESS_EVERY {
                    return;
                }
                self.last = Some(Instant::now());
                if self.json {
                    output::json_line(&json!({ "event": "progress", "file": file, "copied": copied, "total": total }));
                } else {
                    let percent = (copied * 100).checked_div(total).unwrap_or(100);
                    let text = format!("Copying {file}: {percent}% ({} of {})", size(copied), size(total));
                    if self.terminal {
                        eprint!("\r{text}\x1b[K");
                        let _ = std::io::stderr().flush();
                        self.open_line = true;
                    } else {
                        eprintln!("{text}");
                    }
                }
            }
            Progress::Copied { file, bytes } => {
                self.last = None;
                if self.json {
                    output::json_line(&json!({ "event": "copied", "file": file, "bytes": bytes }));
                } else {
                    self.finish_line();
                    eprintln!("Copied {file} ({})", size(bytes));
                }
            }
        }
    }

    fn finish_line(&mut self) {
        if std::mem::take(&mut self.open_line) {
            eprint!("\r\x1b[K");
        }
    }
}

fn print_report(json: bool, report: &BackupReport) {
    if json {
        let mut line = serde_json::to_value(report).unwrap_or_default();
        line["event"] = json!("backup");
        output::json_line(&line);
        return;
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let total: u64 = report.files.iter().map(|f| f.bytes).sum();
    println!(
        "Backed up {} to {} ({} files, {}; schema version {}).",
        report.data_dir.display(),
        report.dest.display(),
        report.files.len(),
        size(total),
        report.schema_version
    );
    println!(
        "To restore: stop serve, then start it with --data-dir {} (or copy these files back into its data folder).",
        report.dest.display()
    );
}

/// `812 B`, `12.0 KB`, `3.4 MB`, `1.2 GB` (powers of 1024).
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

//! What commands print: text for people, one JSON object per line for scripts (`--json`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;

use homebase_runtime::{Level, LogEvent, LogSink};
use homebase_server::dev::DevEvent;
use tracing_subscriber::EnvFilter;

/// Homebase's own diagnostics go to stderr; `-v` for more, `RUST_LOG` to choose.
pub fn init_tracing(json: bool, verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.without_time().init();
    }
}

/// Prints a failure and returns the exit code for it.
pub fn fail(json: bool, error: &anyhow::Error) -> std::process::ExitCode {
    if json {
        let chain: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
        println!(
            "{}",
            serde_json::json!({ "event": "error", "message": error.to_string(), "detail": chain.join(": ") })
        );
    } else {
        eprintln!("error: {error:#}");
    }
    std::process::ExitCode::FAILURE
}

/// A one-line status note.
pub fn note(json: bool, event: &str, text: &str) {
    if json {
        println!("{}", serde_json::json!({ "event": event, "message": text }));
    } else {
        println!("{text}");
    }
}

pub fn listening(json: bool, url: &str, wanted: SocketAddr, got: SocketAddr, app_id: &str, functions: &[String]) {
    let moved = (wanted.port() != 0 && wanted.port() != got.port()).then_some(wanted.port());
    if json {
        println!(
            "{}",
            serde_json::json!({ "event": "listening", "url": url, "app_id": app_id, "port_taken": moved, "functions": functions })
        );
        return;
    }
    if let Some(port) = moved {
        println!("Port {port} is taken; using {} instead.", got.port());
    }
    println!("Homebase dev listening on {url}");
    for name in functions {
        println!("  {url}/functions/{name}");
    }
}

pub fn dev_event(json: bool, event: &DevEvent) {
    if json {
        println!("{}", serde_json::to_string(event).unwrap_or_default());
        return;
    }
    match event {
        DevEvent::Loaded { project, functions, changed, removed, problems, reload, .. } => {
            if *reload {
                let mut parts = Vec::new();
                if !changed.is_empty() {
                    parts.push(format!("changed {}", changed.join(", ")));
                }
                if !removed.is_empty() {
                    parts.push(format!("removed {}", removed.join(", ")));
                }
                if parts.is_empty() {
                    parts.push("no function changed".into());
                }
                println!("Reloaded: {}", parts.join("; "));
            } else {
                println!("Project '{project}': {} function(s)", functions.len());
            }
            for problem in problems {
                println!("{}", paint("31", &format!("✗ {problem}")));
            }
        }
        DevEvent::Failed { error } => {
            println!("{}", paint("31", &format!("✗ {error} (still serving the last good state)")))
        }
    }
}

/// Prints function logs: `HH:MM:SS.mmm LEVEL function  message`, or JSON lines.
pub struct TerminalLogs {
    json: bool,
}

impl TerminalLogs {
    pub fn new(json: bool) -> Self {
        TerminalLogs { json }
    }
}

impl LogSink for TerminalLogs {
    fn emit(&self, event: LogEvent) {
        let mut out = std::io::stdout().lock();
        if self.json {
            let mut line = serde_json::to_value(&event).unwrap_or_default();
            line["event"] = "log".into();
            let _ = writeln!(out, "{line}");
            return;
        }
        let time = homebase_runtime::logs::rfc3339_micros(event.time);
        let clock = &time[11..23];
        let (color, label) = match event.level {
            Level::Debug => ("2", "DEBUG"),
            Level::Info => ("32", "INFO "),
            Level::Warning => ("33", "WARN "),
            Level::Error => ("31", "ERROR"),
        };
        let function = if event.system { format!("[{}]", event.function) } else { event.function.clone() };
        let mut lines = event.message.lines();
        let first = lines.next().unwrap_or("");
        let _ = writeln!(out, "{} {} {} {first}", paint("2", clock), paint(color, label), paint("36", &function));
        for more in lines {
            let _ = writeln!(out, "{:>12} {more}", "");
        }
    }
}

fn paint(code: &str, text: &str) -> String {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Prints one JSON object as a line.
pub fn json_line(value: &serde_json::Value) {
    println!("{value}");
}

/// One item's result in a command that acts on several names (`deleted`, `not_found`,
/// `failed`): a JSON line `{event, name, status, message?, detail?}`, or `name … status`.
pub fn item_result(json: bool, event: &str, name: &str, status: &str, error: Option<&crate::api::ApiError>) {
    if json {
        let mut line = serde_json::json!({ "event": event, "name": name, "status": status });
        if let Some(error) = error {
            line["message"] = error.message.as_str().into();
            line["detail"] = error.detail.as_str().into();
        }
        json_line(&line);
    } else {
        match error {
            Some(error) => println!("{name} … failed: {error}"),
            None => println!("{name} … {}", status.replace('_', " ")),
        }
    }
}

/// Prints rows as left-aligned columns under a header, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(header, rows));
}

fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Milliseconds since the Unix epoch as an RFC 3339 time (UTC, seconds).
pub fn time_ms(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["hello".to_string(), "deployed".into(), "0.4s".into()],
            vec!["orders/summary".into(), "unchanged".into(), "0.1s".into()],
        ];
        assert_eq!(
            render_table(&["FUNCTION", "STATUS", "TIME"], &rows),
            "FUNCTION        STATUS     TIME\nhello           deployed   0.4s\norders/summary  unchanged  0.1s\n"
        );
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(time_ms(0), "1970-01-01T00:00:00Z");
    }
}

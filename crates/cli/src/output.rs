//! What commands print: text for people, one JSON object per line for scripts (`--json`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use homebase_logs::Sink;
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
///
/// Off the request path: `emit` only appends the event to a batch and wakes the printing
/// thread when the batch was empty; the thread formats a whole batch and writes it in one
/// system call, then lingers a moment so that a busy server's lines gather into few batches
/// (a wake-up and a write per line cost more than the rest of a request's logging).
pub struct TerminalLogs {
    shared: Arc<Printer>,
}

struct Printer {
    pending: Mutex<Pending>,
    ready: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<Arc<LogEvent>>,
    /// Lines left out because [`MAX_PENDING`] were already waiting.
    dropped: u64,
    /// Told once the lines before them are written.
    flushes: Vec<std::sync::mpsc::Sender<()>>,
}

/// How long the printing thread waits after a batch before it takes the next one.
const LINGER: Duration = Duration::from_millis(5);
/// The most lines that wait for a terminal that does not keep up (a stuck pipe, Ctrl-S); later
/// ones are counted and left out, since `emit` may not wait. `serve` stores every line anyway.
const MAX_PENDING: usize = 100_000;

impl TerminalLogs {
    pub fn new(json: bool) -> Self {
        let colour = !json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let shared = Arc::new(Printer { pending: Mutex::new(Pending::default()), ready: Condvar::new() });
        let printer = shared.clone();
        std::thread::Builder::new()
            .name("terminal-logs".into())
            .spawn(move || {
                let mut buffer = Vec::with_capacity(64 * 1024);
                loop {
                    let batch = {
                        let mut pending = printer.pending.lock().unwrap();
                        while pending.lines.is_empty() && pending.flushes.is_empty() && pending.dropped == 0 {
                            pending = printer.ready.wait(pending).unwrap();
                        }
                        std::mem::take(&mut *pending)
                    };
                    for event in &batch.lines {
                        format_log(&mut buffer, event, json, colour);
                    }
                    if batch.dropped > 0 {
                        let note = format!("{} log lines were not shown: the terminal did not keep up", batch.dropped);
                        if json {
                            let _ = writeln!(
                                buffer,
                                "{}",
                                serde_json::json!({ "event": "logs_dropped", "count": batch.dropped, "message": note })
                            );
                        } else {
                            let _ = writeln!(buffer, "{note}");
                        }
                    }
                    let _ = std::io::stdout().lock().write_all(&buffer);
                    buffer.clear();
                    for done in batch.flushes {
                        let _ = done.send(());
                    }
                    std::thread::sleep(LINGER);
                }
            })
            .expect("the terminal log thread starts");
        TerminalLogs { shared }
    }

    fn push(&self, add: impl FnOnce(&mut Pending)) {
        let mut pending = self.shared.pending.lock().unwrap();
        let was_empty = pending.lines.is_empty() && pending.flushes.is_empty() && pending.dropped == 0;
        add(&mut pending);
        drop(pending);
        if was_empty {
            self.shared.ready.notify_one();
        }
    }
}

impl Sink for TerminalLogs {
    /// Returns once every line emitted so far is written.
    fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        self.push(|pending| pending.flushes.push(done));
        let _ = wait.recv();
    }
}

impl LogSink for TerminalLogs {
    fn emit(&self, event: LogEvent) {
        self.emit_shared(&Arc::new(event));
    }

    fn emit_shared(&self, event: &Arc<LogEvent>) {
        self.push(|pending| {
            if pending.lines.len() < MAX_PENDING {
                pending.lines.push(event.clone());
            } else {
                pending.dropped += 1;
            }
        });
    }
}

/// Appends one event as text (time, level, function, message; continuation lines indented) or
/// as a JSON line with `"event": "log"`.
fn format_log(out: &mut Vec<u8>, event: &LogEvent, json: bool, colour: bool) {
    if json {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            event: &'static str,
            #[serde(flatten)]
            log: &'a LogEvent,
        }
        let _ = serde_json::to_writer(&mut *out, &Line { event: "log", log: event });
        out.push(b'\n');
        return;
    }
    let time = homebase_runtime::logs::rfc3339_micros(event.time);
    let clock = &time[11..23];
    let (code, label) = match event.level {
        Level::Debug => ("2", "DEBUG"),
        Level::Info => ("32", "INFO "),
        Level::Warning => ("33", "WARN "),
        Level::Error => ("31", "ERROR"),
    };
    let paint = |out: &mut Vec<u8>, code: &str, text: &str| {
        if colour {
            let _ = write!(out, "\x1b[{code}m{text}\x1b[0m");
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    };
    paint(out, "2", clock);
    out.push(b' ');
    paint(out, code, label);
    out.push(b' ');
    if event.system {
        paint(out, "36", &format!("[{}]", event.function));
    } else {
        paint(out, "36", &event.function);
    }
    let mut lines = event.message.lines();
    let _ = writeln!(out, " {}", lines.next().unwrap_or(""));
    for more in lines {
        let _ = writeln!(out, "{:>12} {more}", "");
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

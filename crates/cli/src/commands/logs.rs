//! `homebase logs`: an app's function logs from a server (docs/serve.md#logs).
//!
//! Lines come from the app-wide query route (`GET …/functions-mgmt/logs`, all functions or
//! `--function a,b`). For people: `time level function message`, aligned, coloured on a terminal
//! (not with `NO_COLOR`). With `--json`: one object per line (`{id, time, level, function,
//! message, request_id?}`). Without `--order`, the newest `-n` lines are shown oldest first, like
//! `tail`.
//!
//! `--follow` then streams new lines over SSE (`…/functions-mgmt/logs/stream`), always sending
//! `Last-Event-ID`: the id of the last line printed, or of the newest line stored before the
//! first query (0 when there was none), so that lines printed while the query ran are streamed
//! too. When the stream ends, breaks or stays silent for 60 s (the server sends a keep-alive
//! every 15 s), it reconnects with growing pauses (0.5 s doubling up to 10 s) and the server
//! replays what came after that id: no line is shown twice or skipped. Ctrl-C ends it.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use serde_json::Value;

use crate::api::{Api, ApiError};
use crate::cli::GlobalArgs;
use crate::target::{TargetArgs, encode_segment};

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Only these functions (comma-separated); default: every function of the app.
    #[arg(long, value_name = "NAMES")]
    function: Option<String>,
    /// From this time on: ISO 8601 (2026-01-31T12:00:00Z) or relative (30m, 1h, 2d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before this time: ISO 8601 or relative.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this level: debug, info, warning or error.
    #[arg(long, value_name = "LEVEL")]
    level: Option<String>,
    /// How many lines (1-1000).
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 100)]
    limit: usize,
    /// asc (oldest first) or desc (newest first); default: the newest lines, oldest first.
    #[arg(long, value_name = "ORDER")]
    order: Option<String>,
    /// Keep printing new lines as they arrive (Ctrl-C to stop).
    #[arg(short, long)]
    follow: bool,
}

pub async fn run(args: LogsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if !(1..=1000).contains(&args.limit) {
        anyhow::bail!("-n/--limit must be from 1 to 1000 (got {})", args.limit);
    }
    let (api, app_id) = Api::for_app(&args.target)?;
    let base = format!("/api/apps/{}/functions-mgmt/logs", encode_segment(&app_id));
    let mut query = vec![("limit", args.limit.to_string())];
    for (name, value) in [
        ("function", &args.function),
        ("since", &args.since),
        ("until", &args.until),
        ("level", &args.level),
        ("order", &args.order),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    if args.order.is_none() {
        query.push(("order", "desc".into()));
    }
    // Where following starts: the newest line of these functions before the query, whatever the
    // other filters, so that lines printed while the query runs are streamed, not lost.
    let mut last_id = 0;
    if args.follow {
        let mut newest = vec![("limit", "1".to_string()), ("order", "desc".to_string())];
        if let Some(functions) = &args.function {
            newest.push(("function", functions.clone()));
        }
        let answer = api.get(&with_query(&base, &newest)).await.map_err(ApiError::into_anyhow)?;
        last_id = answer[0]["id"].as_u64().unwrap_or(0);
    }
    let answer = api.get(&with_query(&base, &query)).await.map_err(ApiError::into_anyhow)?;
    let mut lines = answer.as_array().cloned().context("the server's answer is not a list of lines")?;
    if args.order.is_none() {
        lines.reverse();
    }
    let printer = Printer::new(global.json);
    for line in &lines {
        printer.print(line);
        last_id = last_id.max(line["id"].as_u64().unwrap_or(0));
    }
    if lines.is_empty() && !global.json && !args.follow {
        eprintln!("No log lines matched.");
    }
    if args.follow {
        let mut query = Vec::new();
        if let Some(functions) = &args.function {
            query.push(("function", functions.clone()));
        }
        follow(&api, &with_query(&format!("{base}/stream"), &query), last_id, args.level.as_deref(), &printer).await?;
    }
    Ok(())
}

fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode_segment(v))).collect();
    format!("{path}?{}", query.join("&"))
}

/// How long a stream may stay silent (the server sends a keep-alive every 15 s) before it is
/// taken for broken and reconnected.
const SILENCE: Duration = Duration::from_secs(60);

/// Streams lines after `last_id` (0: every line stored from now on) until Ctrl-C, reconnecting
/// with backoff.
async fn follow(api: &Api, path: &str, mut last_id: u64, level: Option<&str>, printer: &Printer) -> anyhow::Result<()> {
    let level = level.map(|l| homebase_runtime::Level::parse(&l.to_ascii_lowercase()).map(|l| l.as_str()));
    let level = match level {
        Some(None) => anyhow::bail!("--level must be debug, info, warning or error"),
        Some(Some(level)) => Some(level),
        None => None,
    };
    let mut pause = Duration::from_millis(500);
    loop {
        // Always resume, from 0 too: a fresh stream would miss what was printed since the query.
        match api.stream(path, Some(last_id)).await {
            Ok(response) => {
                let mut body = response.bytes_stream();
                // Bytes, not text: a character may be split across two chunks.
                let mut buffer: Vec<u8> = Vec::new();
                let mut delivered = false;
                'read: while let Ok(Some(chunk)) = tokio::time::timeout(SILENCE, body.next()).await {
                    let Ok(chunk) = chunk else { break };
                    buffer.extend_from_slice(&chunk);
                    while let Some(at) = buffer.windows(2).position(|pair| pair == b"\n\n") {
                        let block: Vec<u8> = buffer.drain(..at + 2).collect();
                        match parse_event(&String::from_utf8_lossy(&block)) {
                            Event::Line(id, line) => {
                                delivered = true;
                                if id > last_id {
                                    last_id = id;
                                    if level.is_none_or(|l| line["level"] == l) {
                                        let mut line = line;
                                        line["id"] = id.into();
                                        printer.print(&line);
                                    }
                                }
                            }
                            Event::End => break 'read,
                            Event::Comment => delivered = true,
                        }
                    }
                }
                if delivered {
                    pause = Duration::from_millis(500);
                }
            }
            Err(error) if (400..500).contains(&error.status) => return Err(error.into_anyhow()),
            Err(error) => tracing::debug!("log stream: {error}"),
        }
        printer.note("reconnecting to the log stream…");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

enum Event {
    Line(u64, Value),
    End,
    Comment,
}

fn parse_event(block: &str) -> Event {
    let (mut id, mut data, mut name) = (None, String::new(), None);
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        } else if let Some(value) = line.strip_prefix("event:") {
            name = Some(value.trim().to_string());
        }
    }
    if name.as_deref() == Some("end") {
        return Event::End;
    }
    match (id, serde_json::from_str::<Value>(&data)) {
        (Some(id), Ok(line)) => Event::Line(id, line),
        _ => Event::Comment,
    }
}

/// Prints lines for people (aligned, coloured on a terminal) or as JSON.
struct Printer {
    json: bool,
    color: bool,
}

impl Printer {
    fn new(json: bool) -> Printer {
        let color = !json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Printer { json, color }
    }

    fn print(&self, line: &Value) {
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            return;
        }
        let text = |name: &str| line[name].as_str().unwrap_or_default().to_string();
        let (time, level, function, message) = (text("time"), text("level"), text("function"), text("message"));
        // 2026-01-31T12:00:00.123456Z → 2026-01-31 12:00:00.123
        let shown_time = if time.len() >= 23 { format!("{} {}", &time[..10], &time[11..23]) } else { time };
        let color = match level.as_str() {
            "error" => "31",
            "warning" => "33",
            "debug" => "2",
            _ => "32",
        };
        let paint = |code: &str, text: &str| {
            if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
        };
        let mut rows = message.lines();
        let first = rows.next().unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {} {} {first}",
            paint("2", &shown_time),
            paint(color, &format!("{:<7}", level.to_uppercase())),
            paint("36", &format!("{function:<16}")),
        );
        for more in rows {
            let _ = writeln!(out, "{:>49}{more}", "");
        }
        let _ = out.flush();
    }

    fn note(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_become_lines_ends_and_comments() {
        let line = "id: 7\ndata: {\"time\":\"t\",\"level\":\"info\",\"function\":\"f\",\"message\":\"hi\"}\n\n";
        assert!(matches!(parse_event(line), Event::Line(7, v) if v["message"] == "hi"));
        let end = "event: end\ndata: {\"reason\":\"server_shutdown\",\"retriable\":true}\n\n";
        assert!(matches!(parse_event(end), Event::End));
        assert!(matches!(parse_event(": keep-alive\n\n"), Event::Comment));
    }

    #[test]
    fn queries_are_encoded() {
        let path = with_query("/l", &[("function", "a,email/send".into()), ("since", "1h".into())]);
        assert_eq!(path, "/l?function=a%2Cemail%2Fsend&since=1h");
    }
}

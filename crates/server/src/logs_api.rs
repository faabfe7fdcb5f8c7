//! The logs API of `homebase serve` (reference §5.3): query a function's stored lines, and
//! follow an app's lines live as server-sent events. Authenticated and scoped like the rest of
//! the management API ([`crate::manage`]).
//!
//! - `GET /api/apps/{app}/functions-mgmt/{name}/logs`: `[{time, level, message}]`, as Base44
//!   answers. Query: `since` and `until` (ISO 8601, or relative to now: `90s`, `30m`, `1h`,
//!   `2d`, `1w`), `level` (`debug`, `info`/`log`, `warning`/`warn`, `error`: that level only),
//!   `limit` (1–1000, default 100), `order` (`asc`, or `desc`: the default, newest first), `env`
//!   (`prod`/`preview`: Homebase has one environment, so both read the same lines). 404 for a
//!   function that was never deployed and has no lines; 400 for a bad parameter.
//! - `GET /api/apps/{app}/functions-mgmt/logs` (Homebase's own): the same query over the whole
//!   app or `function=a,b` (at most [`MAX_FUNCTIONS`] names), each line with its `id`,
//!   `function` and `request_id`; `after=ID` returns the lines after that id in id order (how a
//!   client catches up).
//! - `GET /api/apps/{app}/functions-mgmt/logs/stream` (`function=a,b`): SSE. Each line is an
//!   unnamed event with `id: N` and `data: {time, level, function, message}`; a comment line
//!   (`: connected`) opens the stream, then `id: N` alone (no data: clients set their last id
//!   and dispatch nothing) gives the point the stream starts after; `: keep-alive` comments
//!   follow every keep-alive interval; on shutdown `event: end` with `{"reason":
//!   "server_shutdown", "retriable": true}` closes it. A client that reconnects with
//!   `Last-Event-ID` (or `after=ID`) first gets every stored line after that id, a page at a
//!   time, then the live ones: nothing repeats, nothing is skipped. A follower that falls behind
//!   the live feed catches up from the store the same way; if the store cannot be read, the
//!   stream ends with a retriable `event: end` (`logs_unavailable`) rather than skip lines.
//!
//! **Several nodes.** On PostgreSQL the database numbers the lines (in commit order, unique
//! across the nodes: [`LogStore::numbers_lines`]), and a stream follows the store rather than
//! this node's live feed: it waits for the newest stored id to move ([`LogStore::watch`],
//! announced by every node's inserts with `NOTIFY`) and reads the app's lines after the last
//! one it sent, so a follower on any node sees the lines of every node's workers, each once,
//! in order. The ids in `id:` are the stored ids on either backend.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use homebase_catalog::Platform;
use homebase_logs::{LogHub, level_number, level_of, micros};
use homebase_runtime::logs::rfc3339_micros;
use homebase_runtime::{Level, LogEvent};
use homebase_store::{LogQuery, LogRecord, LogStore, MAX_LOG_QUERY};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ErrorCode, store_error};
use crate::manage::{Caller, app_for};

/// Lines a query returns when it names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The most function names `function=a,b,…` may list.
pub const MAX_FUNCTIONS: usize = 100;

/// What the logs routes need: the store, the hub (live lines) and the server's shutdown.
pub struct LogService {
    pub store: LogStore,
    pub hub: Arc<LogHub>,
    /// Cancelled when the server shuts down: open streams then end with `event: end`.
    pub shutdown: CancellationToken,
    /// How often a quiet stream sends a `: keep-alive` comment.
    pub keepalive: Duration,
}

/// The logs routes over `logs`; `platform` authenticates callers and knows what was deployed.
pub fn router(platform: Arc<Platform>, logs: LogService) -> Router {
    Router::new()
        .route("/api/apps/{app_id}/functions-mgmt/logs/stream", get(stream))
        .route("/api/apps/{app_id}/functions-mgmt/logs", get(app_logs))
        .route("/api/apps/{app_id}/functions-mgmt/{name}/logs", get(function_logs))
        .layer(Extension(Arc::new(logs)))
        .with_state(platform)
}

fn bad_param(message: impl Into<String>, detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message, detail)
}

/// The query parameters both query routes share, checked.
fn parse_query(app_id: &str, params: &HashMap<String, String>) -> Result<LogQuery, ApiError> {
    let get = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let now = SystemTime::now();
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        get(name)
            .map(|text| match parse_time(text, now) {
                Ok(time) => Ok(time),
                Err(TimeError::Invalid) => Err(bad_param(
                    format!("'{text}' is not a time for '{name}'"),
                    "Give an ISO 8601 time (2026-01-31T12:00:00Z) or a time relative to now (30s, 15m, 1h, 2d, 1w).",
                )),
                Err(TimeError::OutOfRange) => Err(bad_param(
                    format!("'{text}' is too far back for '{name}'"),
                    "A relative time counts back at most about 292,000 years; give a smaller number or an ISO 8601 time.",
                )),
            })
            .transpose()
    };
    let since_us = time("since")?;
    let until_us = time("until")?;
    if let (Some(since), Some(until)) = (since_us, until_us)
        && since > until
    {
        return Err(bad_param("'since' is after 'until'", "Swap them: since is the start of the window."));
    }
    let level = get("level")
        .map(|text| {
            Level::parse(&text.to_ascii_lowercase()).map(level_number).ok_or_else(|| {
                bad_param(format!("'{text}' is not a log level"), "Use one of debug, info, warning, error.")
            })
        })
        .transpose()?;
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LOG_QUERY).contains(&n) => n,
            _ => {
                return Err(bad_param(
                    format!("'{text}' is not a limit"),
                    format!("The limit is a whole number from 1 to {MAX_LOG_QUERY}."),
                ));
            }
        },
    };
    let descending = match get("order").map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => {
            return Err(bad_param(
                format!("'{}' is not an order", get("order").unwrap_or_default()),
                "Use asc (oldest first) or desc (newest first).",
            ));
        }
    };
    match get("env").map(str::to_ascii_lowercase).as_deref() {
        None | Some("prod" | "production" | "preview") => {}
        Some(other) => {
            return Err(bad_param(
                format!("'{other}' is not an environment"),
                "Use prod or preview, or leave env out.",
            ));
        }
    }
    let after_id = get("after")
        .map(|text| {
            text.parse::<u64>().map_err(|_| bad_param(format!("'{text}' is not a line id"), "Give the id of a line."))
        })
        .transpose()?;
    Ok(LogQuery {
        app_id: app_id.to_string(),
        functions: function_list(params)?,
        since_us,
        until_us,
        level,
        after_id,
        limit,
        descending,
    })
}

/// `function=a,b` (and repeated or empty entries tolerated), at most [`MAX_FUNCTIONS`] names.
fn function_list(params: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    let mut names: Vec<String> = params
        .get("function")
        .map(|v| v.split(',').map(str::trim).filter(|f| !f.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names.dedup();
    if names.len() > MAX_FUNCTIONS {
        return Err(bad_param(
            format!("'function' names {} functions; at most {MAX_FUNCTIONS} are allowed", names.len()),
            "Name fewer functions, or leave 'function' out for every function of the app.",
        ));
    }
    Ok(names)
}

fn time_text(time_us: i64) -> String {
    rfc3339_micros(SystemTime::UNIX_EPOCH + Duration::from_micros(time_us.max(0) as u64))
}

/// `GET …/functions-mgmt/{name}/logs`: the wire shape, `[{time, level, message}]`.
async fn function_logs(
    State(platform): State<Arc<Platform>>,
    Extension(logs): Extension<Arc<LogService>>,
    caller: Caller,
    Path((app_id, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let mut query = parse_query(&app_id, &params)?;
    query.functions = vec![name.clone()];
    let deployed = platform.store.function(&app_id, &name).await.map_err(store_error)?.is_some();
    if !deployed && !logs.store.has_function(&app_id, &name).await.map_err(store_error)? {
        return Err(ApiError::new(
            ErrorCode::FunctionNotFound,
            format!("No function named '{name}'"),
            "It was never deployed and has no logs; list functions with GET …/backend-functions.",
        ));
    }
    let lines = logs.store.query(query).await.map_err(store_error)?;
    let body: Vec<Value> = lines
        .iter()
        .map(|r| json!({ "time": time_text(r.time_us), "level": level_of(r.level).as_str(), "message": r.message }))
        .collect();
    Ok(Json(body).into_response())
}

/// `GET …/functions-mgmt/logs`: lines of the app or of `function=a,b`, with ids.
async fn app_logs(
    State(platform): State<Arc<Platform>>,
    Extension(logs): Extension<Arc<LogService>>,
    caller: Caller,
    Path(app_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let query = parse_query(&app_id, &params)?;
    if query.after_id.is_some()
        && let Some(writer) = logs.hub.writer()
    {
        writer.flush().await; // a catching-up client wants every line up to now
    }
    let lines = logs.store.query(query).await.map_err(store_error)?;
    Ok(Json(lines.iter().map(full_line).collect::<Vec<_>>()).into_response())
}

fn full_line(r: &LogRecord) -> Value {
    let mut line = json!({
        "id": r.id,
        "time": time_text(r.time_us),
        "level": level_of(r.level).as_str(),
        "function": r.function,
        "message": r.message,
    });
    if let Some(id) = &r.request_id {
        line["request_id"] = json!(id);
    }
    line
}

/// `GET …/functions-mgmt/logs/stream`.
async fn stream(
    State(platform): State<Arc<Platform>>,
    Extension(logs): Extension<Arc<LogService>>,
    caller: Caller,
    Path(app_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    app_for(&platform, &caller, &app_id).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(params.get("after").map(String::as_str))
        .map(|text| {
            text.trim().parse::<u64>().map_err(|_| {
                bad_param(format!("'{text}' is not a line id"), "Last-Event-ID is the id of the last event received.")
            })
        })
        .transpose()?;
    let functions: HashSet<String> = function_list(&params)?.into_iter().collect();
    // Subscribe before reading the store, so that no line falls between the two: every line
    // after `position` reaches `live` (or the store if this follower lags), or on PostgreSQL
    // moves `stored` past it.
    let (live, stored, position) = if logs.store.numbers_lines() {
        let newest = logs.store.watch().await.map_err(store_error)?;
        let position = *newest.borrow();
        (None, Some(newest), position)
    } else {
        let (live, position) = logs.hub.subscribe_at();
        (Some(live), None, position)
    };
    let last_id = match resume {
        // An id this run has not given out comes from an earlier run that numbered ahead of
        // this one: the client has every stored line, and goes on from here.
        Some(after) if after > position => position,
        Some(after) => after,
        None => position,
    };
    // The `id:` line (an event without data, which clients do not dispatch) gives every client
    // a point to resume from, even before the first line.
    let opening = Bytes::from(format!(": connected\n\nid: {last_id}\n\n"));
    let state = Follow {
        pending: Some(opening),
        live,
        stored,
        scanned: 0,
        last_id,
        catching_up: resume.is_some(),
        flushed: false,
        app_id,
        functions,
        store: logs.store.clone(),
        hub: logs.hub.clone(),
        shutdown: logs.shutdown.clone(),
        keepalive: tokio::time::interval_at(tokio::time::Instant::now() + logs.keepalive, logs.keepalive),
        done: false,
    };
    let body = futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next().await?;
        Some((Ok::<_, Infallible>(chunk), state))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .expect("static headers are valid"))
}

/// One follower's position in the stream.
struct Follow {
    pending: Option<Bytes>,
    /// This node's live lines (SQLite: the hub's ids are the stored ones).
    live: Option<broadcast::Receiver<Arc<LogEvent>>>,
    /// The newest id stored by any node (PostgreSQL): the stream reads the store when it moves.
    stored: Option<watch::Receiver<u64>>,
    /// Every stored line up to this id has been looked at (PostgreSQL: the lines of other apps
    /// need not be read again).
    scanned: u64,
    /// The id of the last line sent (or that the client had).
    last_id: u64,
    /// The stored lines after `last_id` are sent, a page at a time, before live ones: after
    /// `Last-Event-ID`, or when this follower fell behind the live feed.
    catching_up: bool,
    /// Whether this catch-up waited for the lines queued for the store.
    flushed: bool,
    app_id: String,
    functions: HashSet<String>,
    store: LogStore,
    hub: Arc<LogHub>,
    shutdown: CancellationToken,
    keepalive: tokio::time::Interval,
    done: bool,
}

impl Follow {
    fn wants(&self, app_id: &str, function: &str) -> bool {
        app_id == self.app_id && (self.functions.is_empty() || self.functions.contains(function))
    }

    /// Starts sending the stored lines after `last_id`.
    fn catch_up(&mut self) {
        self.catching_up = true;
        self.flushed = false;
    }

    /// The next step of a catch-up: a page of stored lines (none once caught up), or what ends
    /// or keeps up the stream meanwhile.
    async fn catch_up_step(&mut self) -> Option<Bytes> {
        if self.shutdown.is_cancelled() {
            self.done = true;
            return Some(end_chunk("server_shutdown", true));
        }
        if !self.flushed {
            // Every line numbered so far is stored first: the pages then hold all of them up
            // to the point the live feed takes over.
            let hub = self.hub.clone();
            if let Some(writer) = hub.writer() {
                tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => {
                        self.done = true;
                        return Some(end_chunk("server_shutdown", true));
                    }
                    () = writer.flush() => {}
                    _ = self.keepalive.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                }
            }
            self.flushed = true;
        }
        // Every line up to the newest announced id was committed before it was announced.
        let horizon = self.stored.as_ref().map(|newest| *newest.borrow());
        let query = LogQuery {
            app_id: self.app_id.clone(),
            functions: self.functions.iter().cloned().collect(),
            after_id: Some(self.last_id.max(self.scanned)),
            limit: MAX_LOG_QUERY,
            ..Default::default()
        };
        let lines = match self.store.query(query).await {
            Ok(lines) => lines,
            Err(error) => {
                // Going live now would skip the lines not read: the client reconnects from
                // its last id instead.
                tracing::warn!(%error, "a log stream could not catch up from the store; ending it");
                self.done = true;
                return Some(end_chunk("logs_unavailable", true));
            }
        };
        if lines.len() < MAX_LOG_QUERY {
            self.catching_up = false;
            self.scanned = self.scanned.max(horizon.unwrap_or(0));
        }
        let last = lines.last()?;
        self.last_id = last.id;
        self.keepalive.reset();
        let mut page = Vec::with_capacity(lines.len() * 160);
        for line in &lines {
            let time = time_text(line.time_us);
            page.extend_from_slice(&event_chunk(line.id, &time, level_of(line.level), &line.function, &line.message));
        }
        Some(Bytes::from(page))
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.take() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                if let Some(chunk) = self.catch_up_step().await {
                    return Some(chunk);
                }
                continue;
            }
            if let Some(newest) = &mut self.stored {
                // PostgreSQL: the store is the feed.
                tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => {
                        self.done = true;
                        return Some(end_chunk("server_shutdown", true));
                    }
                    changed = newest.changed() => match changed {
                        Ok(()) => {
                            if *newest.borrow_and_update() > self.last_id.max(self.scanned) {
                                // Read what was stored; this node's queue need not be waited for.
                                self.catching_up = true;
                                self.flushed = true;
                            }
                        }
                        Err(_) => {
                            self.done = true;
                            return Some(end_chunk("server_shutdown", true));
                        }
                    },
                    _ = self.keepalive.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                }
                continue;
            }
            let live = self.live.as_mut().expect("a stream has the live feed or the store's");
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    self.done = true;
                    return Some(end_chunk("server_shutdown", true));
                }
                received = live.recv() => match received {
                    Ok(event) => {
                        if event.id > self.last_id && self.wants(&event.app_id, &event.function) {
                            self.last_id = event.id;
                            self.keepalive.reset();
                            let time = rfc3339_micros(event.time);
                            return Some(event_chunk(event.id, &time, event.level, &event.function, &event.message));
                        }
                    }
                    // This follower fell behind the live feed: the lines it missed are in the
                    // store.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(),
                    Err(broadcast::error::RecvError::Closed) => {
                        self.done = true;
                        return Some(end_chunk("server_shutdown", true));
                    }
                },
                _ = self.keepalive.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
            }
        }
    }
}

fn event_chunk(id: u64, time: &str, level: Level, function: &str, message: &str) -> Bytes {
    let data = json!({ "time": time, "level": level.as_str(), "function": function, "message": message });
    Bytes::from(format!("id: {id}\ndata: {data}\n\n"))
}

fn end_chunk(reason: &str, retriable: bool) -> Bytes {
    Bytes::from(format!("event: end\ndata: {}\n\n", json!({ "reason": reason, "retriable": retriable })))
}

/// Why a text is not a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Neither ISO 8601 nor relative.
    Invalid,
    /// A relative time too far back to count in microseconds (about 292,000 years).
    OutOfRange,
}

/// An ISO 8601 time (`2026-01-31`, `2026-01-31T12:00`, `…:05`, `…:05.123456`, with `Z`, an
/// offset like `+02:00`, or nothing for UTC) or a time before `now` (`90s`, `30m`, `1h`, `2d`,
/// `1w`, `500ms`), as microseconds since the Unix epoch.
pub fn parse_time(text: &str, now: SystemTime) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Some(ago) = parse_relative(text) {
        let ago = ago.ok_or(TimeError::OutOfRange)?;
        return i64::try_from(ago.as_micros())
            .ok()
            .and_then(|ago| micros(now).checked_sub(ago))
            .ok_or(TimeError::OutOfRange);
    }
    parse_iso(text).ok_or(TimeError::Invalid)
}

/// `Some(None)`: a relative time too large to hold.
fn parse_relative(text: &str) -> Option<Option<Duration>> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    // All digits: a number too large for u64 is out of range, not malformed.
    let n: Option<u64> = number.parse().ok();
    let seconds = match unit {
        "ms" => return Some(n.map(Duration::from_millis)),
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hr" | "hrs" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "wk" | "weeks" => 7 * 86_400,
        _ => return None,
    };
    Some(n.and_then(|n| n.checked_mul(seconds)).map(Duration::from_secs))
}

fn parse_iso(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let mut micros_of_day = 0i64;
    let mut rest = &text[10..];
    if let Some(time) = rest.strip_prefix(['T', 't', ' ']) {
        let b = time.as_bytes();
        if b.len() < 5 || b[2] != b':' {
            return None;
        }
        let hour = time.get(0..2)?.parse::<i64>().ok()?;
        let minute = time.get(3..5)?.parse::<i64>().ok()?;
        let mut second = 0;
        let mut fraction = 0;
        rest = &time[5..];
        if let Some(after) = rest.strip_prefix(':') {
            second = after.get(0..2)?.parse::<i64>().ok()?;
            rest = &after[2..];
            if let Some(frac) = rest.strip_prefix(['.', ',']) {
                let len = frac.find(|c: char| !c.is_ascii_digit()).unwrap_or(frac.len());
                if len == 0 {
                    return None;
                }
                let padded = format!("{:0<6}", &frac[..len.min(6)]);
                fraction = padded.parse::<i64>().ok()?;
                rest = &frac[len..];
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        micros_of_day = ((hour * 60 + minute) * 60 + second) * 1_000_000 + fraction;
    }
    let offset_minutes = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = rest[1..].replace(':', "");
            if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            sign * (zone[0..2].parse::<i64>().ok()? * 60 + zone[2..4].parse::<i64>().ok()?)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400_000_000 + micros_of_day - offset_minutes * 60_000_000)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_or_relative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now_us = micros(now);
        assert_eq!(parse_time("1h", now), Ok(now_us - 3_600_000_000));
        assert_eq!(parse_time("30m", now), Ok(now_us - 1_800_000_000));
        assert_eq!(parse_time("2d", now), Ok(now_us - 2 * 86_400_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z", now), Ok(0));
        assert_eq!(parse_time("1970-01-02", now), Ok(86_400_000_000));
        assert_eq!(parse_time("2026-11-18T11:06:40.123456Z", now), Ok(1_795_000_000_123_456));
        assert_eq!(parse_time("2026-11-18T13:06:40.123456+02:00", now), Ok(1_795_000_000_123_456));
        assert_eq!(parse_time("2026-11-18T11:06:40.5Z", now), Ok(1_795_000_000_500_000));
        assert_eq!(parse_time("2000-02-29T00:00", now), Ok(951_782_400_000_000));
        let round_trip = rfc3339_micros(SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_000_654_321));
        assert_eq!(parse_time(&round_trip, now), Ok(1_795_000_000_654_321));
        for bad in ["yesterday", "2026-13-01", "2026-02-30", "1x", "2026-01-01T25:00", "2026-01-01T10:00+5", ""] {
            assert_eq!(parse_time(bad, now), Err(TimeError::Invalid), "{bad}");
        }
        // Relative times too large to count are refused, not wrapped around.
        for huge in ["9999999999999999w", "18446744073709551616s", "18446744073709551615ms", "300000000w"] {
            assert_eq!(parse_time(huge, now), Err(TimeError::OutOfRange), "{huge}");
        }
        assert_eq!(parse_time("3000w", now), Ok(now_us - 3000 * 7 * 86_400_000_000), "before 1970 is fine");
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let params = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let ok = parse_query("a", &params(&[("level", "warn"), ("limit", "1000"), ("order", "asc")])).unwrap();
        assert_eq!((ok.level, ok.limit, ok.descending), (Some(2), 1000, false));
        let default = parse_query("a", &params(&[])).unwrap();
        let names = |n: usize| (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>().join(",");
        let hundred = parse_query("a", &params(&[("function", format!("{},f0, ,", names(100)).as_str())])).unwrap();
        assert_eq!(hundred.functions.len(), 100, "repeated and empty names do not count");
        let many = names(5000);
        assert_eq!((default.limit, default.descending, default.level), (DEFAULT_LIMIT, true, None));
        for (pairs, needle) in [
            (params(&[("limit", "1001")]), "not a limit"),
            (params(&[("limit", "0")]), "not a limit"),
            (params(&[("order", "up")]), "not an order"),
            (params(&[("level", "loud")]), "not a log level"),
            (params(&[("since", "soon")]), "not a time for 'since'"),
            (params(&[("since", "1h"), ("until", "2h")]), "after 'until'"),
            (params(&[("env", "staging")]), "not an environment"),
            (params(&[("since", "99999999999999w")]), "too far back for 'since'"),
            (params(&[("until", "99999999999999999999d")]), "too far back for 'until'"),
            (params(&[("function", many.as_str())]), "at most 100 are allowed"),
        ] {
            let error = parse_query("a", &pairs).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            assert!(error.message.contains(needle), "{needle}: {}", error.message);
            assert!(!error.detail.is_empty());
        }
    }
}

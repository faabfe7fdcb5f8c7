//! Log events: every line a worker prints, and the runtime's own notes about workers.

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

/// Log level, with the names of the Base44 logs API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }

    /// Parses the level names the host and the logs API use (`warn` and `log` included).
    pub fn parse(name: &str) -> Option<Level> {
        Some(match name {
            "debug" | "trace" => Level::Debug,
            "info" | "log" | "" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" => Level::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One log line, tagged with where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct LogEvent {
    /// Numbers lines in the order the server received them (0 until a numbering sink, the
    /// server's log hub, stamps it). Stored and streamed lines carry it, so a client can resume
    /// after the last one it saw.
    #[serde(skip_serializing_if = "is_zero")]
    pub id: u64,
    #[serde(serialize_with = "serialize_time")]
    pub time: SystemTime,
    pub app_id: String,
    pub function: String,
    /// The deployment (or, in dev, the source fingerprint) the worker runs.
    pub version: String,
    pub level: Level,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub message: String,
    /// True for lines Homebase writes about the worker (start, stop, crash), false for the
    /// function's own output.
    pub system: bool,
}

fn is_zero(id: &u64) -> bool {
    *id == 0
}

fn serialize_time<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_micros(*time))
}

/// `2026-11-21T10:11:12.123456Z`.
pub fn rfc3339_micros(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Where log events go. Implementations must be cheap and must not block: they are called from
/// the tasks that read worker output.
pub trait LogSink: Send + Sync + 'static {
    fn emit(&self, event: LogEvent);

    /// The same, for an event that is shared with other consumers; a sink that can keep the
    /// `Arc` instead of a copy overrides it.
    fn emit_shared(&self, event: &std::sync::Arc<LogEvent>) {
        self.emit(LogEvent::clone(event));
    }

    /// A worker of `spec` is starting. From now until the matching [`worker_gone`], lines of
    /// `spec.app_id` may quote the values of the worker's environment (`spec.env`, the secrets)
    /// even when the app's secrets have changed meanwhile: a sink that masks secret values keeps
    /// masking these. Called before the worker's output is read.
    ///
    /// [`worker_gone`]: LogSink::worker_gone
    fn worker_started(&self, spec: &crate::FunctionSpec) {
        let _ = spec;
    }

    /// The worker of an earlier [`worker_started`](LogSink::worker_started) is gone: its process
    /// has exited, its output is drained, and no more lines are written about it.
    fn worker_gone(&self, spec: &crate::FunctionSpec) {
        let _ = spec;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_times_with_microseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456);
        assert_eq!(rfc3339_micros(t), "2026-11-18T11:06:40.123456Z");
        assert_eq!(rfc3339_micros(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_micros(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn parses_level_names() {
        assert_eq!(Level::parse("warn"), Some(Level::Warning));
        assert_eq!(Level::parse("log"), Some(Level::Info));
        assert_eq!(Level::parse("error"), Some(Level::Error));
        assert_eq!(Level::parse("loud"), None);
    }
}

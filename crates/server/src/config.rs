//! Server configuration: one struct, layered defaults < file < `HOMEBASE_*` environment < flags.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use homebase_runtime::NetAllow;
use homebase_runtime::SandboxMode;
use serde::{Deserialize, Serialize};

use crate::connections::ConnectionLimits;
use crate::proxies::TrustedProxies;

/// The resolved configuration, validated and printable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on; in dev, the next free port is used when it is taken. 0 picks any.
    pub port: u16,
    /// How long one function request may run.
    #[serde(with = "humantime_serde_str")]
    pub function_timeout: Duration,
    /// A worker with no request for this long is stopped.
    #[serde(with = "humantime_serde_str")]
    pub idle_timeout: Duration,
    /// How long a function's module may take to load.
    #[serde(with = "humantime_serde_str")]
    pub boot_timeout: Duration,
    /// On shutdown, how long in-flight requests get to finish.
    #[serde(with = "humantime_serde_str")]
    pub shutdown_timeout: Duration,
    /// The URL functions use to call back (`Base44-Api-Url`); default: the URL the caller used.
    pub public_url: Option<String>,
    /// Browser origins allowed to call functions, besides loopback ones; `*` for any.
    pub cors_origins: Vec<String>,
    /// Where app-user mail (codes, reset tokens) goes: `smtp://[user:password@]host[:port]`;
    /// none writes it to the server log.
    pub smtp_url: Option<String>,
    /// The sender of that mail.
    pub smtp_from: String,
    /// `serve`: stored log lines older than this are deleted.
    #[serde(with = "humantime_serde_str")]
    pub log_retention: Duration,
    /// `serve`: when stored log lines take more bytes than this, the oldest are deleted.
    pub log_max_size: u64,
    /// `serve`: without Landlock, refuse to start (`required`) or run without it (`best-effort`).
    #[serde(serialize_with = "display")]
    pub sandbox: SandboxMode,
    /// `serve`: how long Deno may take to check a deploy.
    #[serde(with = "humantime_serde_str")]
    pub deploy_check_timeout: Duration,
    /// `serve`: how many deploys may be checked at once; more are answered 429.
    pub max_deploy_checks: usize,
    /// Client connections served at once; one more is answered 503 and closed. Lowered at start
    /// to fit the open-file limit (see `connections`).
    pub max_connections: usize,
    /// How long a client may take to send a request head.
    #[serde(with = "humantime_serde_str")]
    pub header_read_timeout: Duration,
    /// How long a client connection may stay open with no request.
    #[serde(with = "humantime_serde_str")]
    pub keep_alive_timeout: Duration,
    /// What functions may reach on the network besides the public internet: addresses, CIDR
    /// blocks, or `*` for everything (the default of `dev`; `serve` starts from none). Canonical
    /// entries (see `homebase_runtime::netpolicy`).
    pub function_net_allow: Vec<String>,
    /// The most records one list or filter call answers (Base44 cuts pages at 5,000 silently;
    /// Homebase logs a warning whenever it cuts one).
    pub entity_page_cap: usize,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` name the client the login and mail
    /// limits count (addresses, CIDR blocks; canonical, see [`crate::proxies`]). Empty: none.
    pub trusted_proxies: Vec<String>,
    /// The most memory one function worker may use, in bytes; past it the worker is stopped and
    /// its requests answered `502 out_of_memory`.
    pub function_memory: u64,
    /// Requests one function handles at once (as many more wait); 0: no limit of its own.
    pub function_concurrency: usize,
    /// Function workers alive at once; to start one more, the least recently used idle one stops.
    pub max_workers: usize,
    /// `serve`: the PostgreSQL database everything lives in (`postgres://…`), which several
    /// nodes may share; none keeps it in SQLite files in the data folder. Printed without its
    /// password.
    #[serde(serialize_with = "database_location")]
    pub database_url: Option<String>,
}

fn database_location<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&homebase_store::display_database_url(url)),
        None => s.serialize_none(),
    }
}

fn display<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 4400,
            function_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(300),
            boot_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            public_url: None,
            cors_origins: Vec::new(),
            smtp_url: None,
            smtp_from: "Homebase <no-reply@localhost>".into(),
            log_retention: Duration::from_secs(7 * 24 * 3600),
            log_max_size: 1024 * 1024 * 1024,
            sandbox: SandboxMode::Required,
            deploy_check_timeout: Duration::from_secs(60),
            max_deploy_checks: homebase_runtime::default_max_checks(),
            max_connections: ConnectionLimits::default().max_connections,
            header_read_timeout: ConnectionLimits::default().header_read_timeout,
            keep_alive_timeout: ConnectionLimits::default().keep_alive_timeout,
            function_net_allow: vec!["*".into()],
            entity_page_cap: 5000,
            trusted_proxies: Vec::new(),
            function_memory: homebase_runtime::DEFAULT_FUNCTION_MEMORY,
            function_concurrency: 0,
            max_workers: homebase_runtime::DEFAULT_MAX_WORKERS,
            database_url: None,
        }
    }
}

/// One layer of settings; every field optional. The file uses these names in kebab-case
/// (`function-timeout = "30s"`), the environment `HOMEBASE_FUNCTION_TIMEOUT`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigLayer {
    pub host: Option<Host>,
    pub port: Option<u16>,
    pub function_timeout: Option<DurationValue>,
    pub idle_timeout: Option<DurationValue>,
    pub boot_timeout: Option<DurationValue>,
    pub shutdown_timeout: Option<DurationValue>,
    pub public_url: Option<String>,
    pub cors_origins: Option<Vec<String>>,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub log_retention: Option<DurationValue>,
    pub log_max_size: Option<SizeValue>,
    pub sandbox: Option<String>,
    pub deploy_check_timeout: Option<DurationValue>,
    pub max_deploy_checks: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<DurationValue>,
    pub keep_alive_timeout: Option<DurationValue>,
    pub function_net_allow: Option<Vec<String>>,
    pub entity_page_cap: Option<usize>,
    pub trusted_proxies: Option<Vec<String>>,
    pub function_memory: Option<SizeValue>,
    pub function_concurrency: Option<usize>,
    pub max_workers: Option<usize>,
    pub database_url: Option<String>,
}

/// A size as written: `"512MB"`, `"1GiB"`, `"800k"`, or a number of bytes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl From<String> for SizeValue {
    fn from(text: String) -> Self {
        SizeValue::Text(text)
    }
}

impl SizeValue {
    fn parse(&self) -> Result<u64, String> {
        match self {
            SizeValue::Bytes(bytes) => Ok(*bytes),
            SizeValue::Text(text) => parse_size(text),
        }
    }
}

/// `1048576`, `800k`, `512MB`, `1GiB`, `2 GB`: decimal and binary units both mean powers of 1024
/// (as disk tools usually do), case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("'{text}' is not a size; write e.g. \"512MB\" or \"2GB\"");
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if !number.is_finite() || number < 0.0 {
        return Err(bad());
    }
    Ok((number * factor as f64) as u64)
}

/// A duration as written: `"30s"`, `"5m"`, or a number of seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl From<String> for DurationValue {
    fn from(text: String) -> Self {
        DurationValue::Text(text)
    }
}

impl From<&str> for DurationValue {
    fn from(text: &str) -> Self {
        DurationValue::Text(text.to_string())
    }
}

impl DurationValue {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Text(text) => parse_duration(text),
            DurationValue::Seconds(seconds) => parse_duration(&seconds.to_string()),
        }
    }
}

/// An IP address, or `localhost` (127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Host(pub IpAddr);

impl TryFrom<String> for Host {
    type Error = String;
    fn try_from(text: String) -> Result<Host, String> {
        text.parse()
    }
}

impl std::str::FromStr for Host {
    type Err = String;
    fn from_str(text: &str) -> Result<Host, String> {
        if text.eq_ignore_ascii_case("localhost") {
            return Ok(Host(IpAddr::from([127, 0, 0, 1])));
        }
        text.parse().map(Host).map_err(|_| format!("'{text}' is not an IP address (or localhost)"))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// Where the bad value came from: a file path, an environment variable, a flag.
    pub source_name: String,
    pub message: String,
}

const ENV_KEYS: [&str; 25] = [
    "database-url",
    "trusted-proxies",
    "function-memory",
    "function-concurrency",
    "max-workers",
    "function-net-allow",
    "sandbox",
    "deploy-check-timeout",
    "max-deploy-checks",
    "smtp-url",
    "smtp-from",
    "host",
    "port",
    "function-timeout",
    "idle-timeout",
    "boot-timeout",
    "shutdown-timeout",
    "public-url",
    "cors-origins",
    "log-retention",
    "log-max-size",
    "max-connections",
    "header-read-timeout",
    "keep-alive-timeout",
    "entity-page-cap",
];

impl ConfigLayer {
    /// Reads a TOML file. A missing file is an empty layer unless `required`.
    pub fn from_file(path: &Path, required: bool) -> Result<ConfigLayer, ConfigError> {
        let error = |message: String| ConfigError { source_name: path.display().to_string(), message };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(ConfigLayer::default()),
            Err(e) => return Err(error(e.to_string())),
        };
        toml::from_str(&text).map_err(|e| error(e.to_string()))
    }

    /// Reads `HOMEBASE_*` variables from `vars`.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<ConfigLayer, ConfigError> {
        let mut layer = ConfigLayer::default();
        for (key, value) in vars {
            let Some(name) = key.strip_prefix("HOMEBASE_") else { continue };
            let name = name.to_ascii_lowercase().replace('_', "-");
            if !ENV_KEYS.contains(&name.as_str()) {
                continue;
            }
            let bad = |message: String| ConfigError { source_name: key.clone(), message };
            match name.as_str() {
                "host" => layer.host = Some(value.parse().map_err(bad)?),
                "port" => layer.port = Some(value.parse().map_err(|_| bad(format!("'{value}' is not a port number")))?),
                "function-timeout" => layer.function_timeout = Some(value.into()),
                "idle-timeout" => layer.idle_timeout = Some(value.into()),
                "boot-timeout" => layer.boot_timeout = Some(value.into()),
                "shutdown-timeout" => layer.shutdown_timeout = Some(value.into()),
                "smtp-url" => layer.smtp_url = Some(value),
                "smtp-from" => layer.smtp_from = Some(value),
                "log-retention" => layer.log_retention = Some(value.into()),
                "log-max-size" => layer.log_max_size = Some(value.into()),
                "sandbox" => layer.sandbox = Some(value),
                "deploy-check-timeout" => layer.deploy_check_timeout = Some(value.into()),
                "max-deploy-checks" => {
                    layer.max_deploy_checks =
                        Some(value.trim().parse().map_err(|_| bad(format!("'{value}' is not a number")))?)
                }
                "max-connections" => {
                    layer.max_connections = Some(
                        value.trim().parse().map_err(|_| bad(format!("'{value}' is not a number of connections")))?,
                    )
                }
                "entity-page-cap" => {
                    layer.entity_page_cap =
                        Some(value.trim().parse().map_err(|_| bad(format!("'{value}' is not a number of records")))?)
                }
                "header-read-timeout" => layer.header_read_timeout = Some(value.into()),
                "keep-alive-timeout" => layer.keep_alive_timeout = Some(value.into()),
                "function-memory" => layer.function_memory = Some(value.into()),
                "function-concurrency" | "max-workers" => {
                    let number = Some(value.trim().parse().map_err(|_| bad(format!("'{value}' is not a number")))?);
                    match name.as_str() {
                        "max-workers" => layer.max_workers = number,
                        _ => layer.function_concurrency = number,
                    }
                }
                "cors-origins" => layer.cors_origins = Some(comma_list(&value)),
                "function-net-allow" => layer.function_net_allow = Some(comma_list(&value)),
                "trusted-proxies" => layer.trusted_proxies = Some(comma_list(&value)),
                "database-url" => layer.database_url = Some(value),
                _ => layer.public_url = Some(value),
            }
        }
        Ok(layer)
    }
}

/// `a, b,c` → `["a", "b", "c"]`; empty items are dropped, so `""` is an empty list.
fn comma_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|o| !o.is_empty()).map(String::from).collect()
}

impl Config {
    /// Applies `layers` in order over the defaults; later layers win. Each layer is named for
    /// error messages.
    pub fn resolve(layers: &[(&str, ConfigLayer)]) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (source, layer) in layers {
            let duration = |value: &Option<DurationValue>, current: Duration, key: &str| match value {
                None => Ok(current),
                Some(value) => {
                    value.parse().map_err(|message| ConfigError { source_name: format!("{source} ({key})"), message })
                }
            };
            config.host = layer.host.map_or(config.host, |h| h.0);
            config.port = layer.port.unwrap_or(config.port);
            config.function_timeout = duration(&layer.function_timeout, config.function_timeout, "function-timeout")?;
            config.idle_timeout = duration(&layer.idle_timeout, config.idle_timeout, "idle-timeout")?;
            config.boot_timeout = duration(&layer.boot_timeout, config.boot_timeout, "boot-timeout")?;
            config.shutdown_timeout = duration(&layer.shutdown_timeout, config.shutdown_timeout, "shutdown-timeout")?;
            config.log_retention = duration(&layer.log_retention, config.log_retention, "log-retention")?;
            config.deploy_check_timeout =
                duration(&layer.deploy_check_timeout, config.deploy_check_timeout, "deploy-check-timeout")?;
            if let Some(mode) = &layer.sandbox {
                config.sandbox = mode
                    .parse()
                    .map_err(|message| ConfigError { source_name: format!("{source} (sandbox)"), message })?;
            }
            config.max_deploy_checks = layer.max_deploy_checks.unwrap_or(config.max_deploy_checks);
            config.header_read_timeout =
                duration(&layer.header_read_timeout, config.header_read_timeout, "header-read-timeout")?;
            config.keep_alive_timeout =
                duration(&layer.keep_alive_timeout, config.keep_alive_timeout, "keep-alive-timeout")?;
            config.max_connections = layer.max_connections.unwrap_or(config.max_connections);
            config.entity_page_cap = layer.entity_page_cap.unwrap_or(config.entity_page_cap);
            if let Some(size) = &layer.log_max_size {
                config.log_max_size = size
                    .parse()
                    .map_err(|message| ConfigError { source_name: format!("{source} (log-max-size)"), message })?;
            }
            if let Some(size) = &layer.function_memory {
                config.function_memory = size
                    .parse()
                    .map_err(|message| ConfigError { source_name: format!("{source} (function-memory)"), message })?;
            }
            config.function_concurrency = layer.function_concurrency.unwrap_or(config.function_concurrency);
            config.max_workers = layer.max_workers.unwrap_or(config.max_workers);
            if let Some(url) = &layer.public_url {
                config.public_url = Some(url.trim_end_matches('/').to_string());
            }
            if let Some(origins) = &layer.cors_origins {
                config.cors_origins = origins.clone();
            }
            if let Some(url) = &layer.smtp_url {
                config.smtp_url = Some(url.clone()).filter(|u| !u.trim().is_empty());
            }
            if let Some(from) = &layer.smtp_from {
                config.smtp_from = from.clone();
            }
            if let Some(url) = &layer.database_url {
                let url = url.trim();
                if !url.is_empty() && !homebase_store::is_postgres_url(url) {
                    return Err(ConfigError {
                        source_name: format!("{source} (database-url)"),
                        message: format!(
                            "'{}' is not a PostgreSQL URL; write postgres://user:password@host:5432/database, or \
                             leave database-url out to keep everything in SQLite in the data folder",
                            homebase_store::display_database_url(url)
                        ),
                    });
                }
                config.database_url = Some(url.to_string()).filter(|u| !u.is_empty());
            }
            if let Some(entries) = &layer.function_net_allow {
                config.function_net_allow = NetAllow::parse(entries)
                    .map_err(|message| ConfigError { source_name: format!("{source} (function-net-allow)"), message })?
                    .entries();
            }
            if let Some(entries) = &layer.trusted_proxies {
                config.trusted_proxies = TrustedProxies::parse(entries)
                    .map_err(|message| ConfigError { source_name: format!("{source} (trusted-proxies)"), message })?
                    .entries();
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError { source_name: key.into(), message: message.into() };
        if self.function_timeout.is_zero() {
            return Err(invalid("function-timeout", "must be longer than zero, e.g. \"30s\" or \"5m\""));
        }
        if self.boot_timeout.is_zero() {
            return Err(invalid("boot-timeout", "must be longer than zero"));
        }
        if self.idle_timeout.is_zero() {
            return Err(invalid("idle-timeout", "must be longer than zero, e.g. \"5m\""));
        }
        if self.log_retention.is_zero() {
            return Err(invalid("log-retention", "must be longer than zero, e.g. \"7d\" or \"12h\""));
        }
        if self.deploy_check_timeout.is_zero() {
            return Err(invalid("deploy-check-timeout", "must be longer than zero, e.g. \"60s\""));
        }
        if self.max_deploy_checks == 0 {
            return Err(invalid("max-deploy-checks", "must be at least 1"));
        }
        if self.log_max_size < 1024 * 1024 {
            return Err(invalid("log-max-size", "must be at least 1MB, e.g. \"512MB\" or \"2GB\""));
        }
        if self.entity_page_cap == 0 {
            return Err(invalid("entity-page-cap", "must be at least 1, e.g. 5000"));
        }
        if self.max_connections == 0 {
            return Err(invalid("max-connections", "must be at least 1, e.g. 10000"));
        }
        if self.header_read_timeout.is_zero() {
            return Err(invalid("header-read-timeout", "must be longer than zero, e.g. \"10s\""));
        }
        if self.keep_alive_timeout.is_zero() {
            return Err(invalid("keep-alive-timeout", "must be longer than zero, e.g. \"75s\""));
        }
        if self.function_memory < homebase_runtime::limits::MIN_FUNCTION_MEMORY {
            return Err(invalid(
                "function-memory",
                "must be at least 128MB (Deno and the SDK take about 70MB), e.g. \"512MB\"",
            ));
        }
        if self.max_workers == 0 {
            return Err(invalid("max-workers", "must be at least 1, e.g. 100"));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("public-url", "must start with http:// or https://"));
        }
        self.mailer().map_err(|message| invalid("smtp-url", &message))?;
        Ok(())
    }

    /// The limits on client connections.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
        }
    }

    /// What functions may reach besides the public internet (`function-net-allow`).
    pub fn net_allow(&self) -> NetAllow {
        NetAllow::parse(&self.function_net_allow).expect("checked when resolved")
    }

    /// The proxies whose forwarding headers name the client (`trusted-proxies`).
    pub fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies::parse(&self.trusted_proxies).expect("checked when resolved")
    }

    /// Where app-user mail goes: SMTP when `smtp-url` is set, else the server log.
    pub fn mailer(&self) -> Result<homebase_identity::mail::Mailer, String> {
        match &self.smtp_url {
            None => Ok(homebase_identity::mail::Mailer::Log),
            Some(url) => homebase_identity::mail::SmtpConfig::parse(url, &self.smtp_from)
                .map(homebase_identity::mail::Mailer::Smtp),
        }
    }
}

/// `30s`, `5m`, `1500ms`, `1h 30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok(Duration::from_secs_f64(seconds));
        }
        return Err(format!("'{text}' is not a duration"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration ({e}); write e.g. \"30s\" or \"5m\""))
}

mod humantime_serde_str {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ConfigLayer {
        ConfigLayer::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn later_layers_win() {
        let file: ConfigLayer = toml::from_str("function-timeout = \"30s\"\nport = 5000").unwrap();
        let env = env(&[("HOMEBASE_FUNCTION_TIMEOUT", "45s"), ("OTHER", "x")]);
        let flags = ConfigLayer { port: Some(0), ..Default::default() };
        let flags = ConfigLayer { host: Some("localhost".parse().unwrap()), ..flags };
        let config = Config::resolve(&[("file", file), ("env", env), ("flags", flags)]).unwrap();
        assert_eq!(config.function_timeout, Duration::from_secs(45));
        assert_eq!(config.port, 0);
        assert_eq!(config.idle_timeout, Config::default().idle_timeout);
        assert_eq!(config.host, IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn file_durations_may_be_numbers_and_origins_a_list() {
        let file: ConfigLayer = toml::from_str("idle-timeout = 90\ncors-origins = [\"https://app.example\"]").unwrap();
        let boot = env(&[("HOMEBASE_BOOT_TIMEOUT", "2.5")]);
        let config = Config::resolve(&[("file", file), ("env", boot)]).unwrap();
        assert_eq!(config.idle_timeout, Duration::from_secs(90));
        assert_eq!(config.boot_timeout, Duration::from_millis(2500));
        assert_eq!(config.cors_origins, vec!["https://app.example".to_string()]);
        let origins = env(&[("HOMEBASE_CORS_ORIGINS", "https://a.example, https://b.example")]);
        assert_eq!(origins.cors_origins.unwrap().len(), 2);
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = Config::resolve(&[("env", env(&[("HOMEBASE_FUNCTION_TIMEOUT", "soon")]))]).unwrap_err();
        assert_eq!(err.source_name, "env (function-timeout)");
        assert!(err.message.contains("'soon' is not a duration"), "{err}");
        let err = ConfigLayer::from_env([("HOMEBASE_PORT".to_string(), "http".to_string())]).unwrap_err();
        assert_eq!(err.to_string(), "HOMEBASE_PORT: 'http' is not a port number");
        let err = ConfigLayer::from_env([("HOMEBASE_HOST".to_string(), "example".to_string())]).unwrap_err();
        assert_eq!(err.to_string(), "HOMEBASE_HOST: 'example' is not an IP address (or localhost)");
        let idle = ConfigLayer { idle_timeout: Some(DurationValue::Seconds(0.0)), ..Default::default() };
        assert_eq!(Config::resolve(&[("flags", idle)]).unwrap_err().source_name, "idle-timeout");
        let err =
            Config::resolve(&[("flags", ConfigLayer { function_timeout: Some("0s".into()), ..Default::default() })])
                .unwrap_err();
        assert_eq!(err.source_name, "function-timeout");
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homebase.toml");
        std::fs::write(&path, "function-timout = \"1s\"\n").unwrap();
        let err = ConfigLayer::from_file(&path, false).unwrap_err();
        assert!(err.message.contains("function-timout"), "{err}");
        let missing = dir.path().join("missing.toml");
        assert!(ConfigLayer::from_file(&missing, false).is_ok());
        assert!(ConfigLayer::from_file(&missing, true).is_err(), "an explicit --config must exist");
    }

    #[test]
    fn smtp_settings_are_checked() {
        let layer = env(&[("HOMEBASE_SMTP_URL", "smtp://127.0.0.1:2525"), ("HOMEBASE_SMTP_FROM", "app@example.test")]);
        let config = Config::resolve(&[("env", layer)]).unwrap();
        assert!(matches!(config.mailer(), Ok(homebase_identity::mail::Mailer::Smtp(_))));
        assert!(matches!(Config::default().mailer(), Ok(homebase_identity::mail::Mailer::Log)));
        let err = Config::resolve(&[("env", env(&[("HOMEBASE_SMTP_URL", "mail.example.test")]))]).unwrap_err();
        assert_eq!(err.source_name, "smtp-url");
        assert!(err.message.contains("smtp://"), "{err}");
    }

    #[test]
    fn log_retention_and_size_come_from_every_layer() {
        let file: ConfigLayer = toml::from_str("log-retention = \"2d\"\nlog-max-size = \"512MB\"").unwrap();
        let config = Config::resolve(&[("file", file.clone())]).unwrap();
        assert_eq!(config.log_retention, Duration::from_secs(2 * 86_400));
        assert_eq!(config.log_max_size, 512 << 20);
        let vars = env(&[("HOMEBASE_LOG_MAX_SIZE", "2GiB"), ("HOMEBASE_LOG_RETENTION", "12h")]);
        let config = Config::resolve(&[("file", file), ("env", vars)]).unwrap();
        assert_eq!((config.log_retention, config.log_max_size), (Duration::from_secs(12 * 3600), 2 << 30));
        let bytes: ConfigLayer = toml::from_str("log-max-size = 2000000").unwrap();
        assert_eq!(Config::resolve(&[("file", bytes)]).unwrap().log_max_size, 2_000_000);
        let err = Config::resolve(&[("env", env(&[("HOMEBASE_LOG_MAX_SIZE", "lots")]))]).unwrap_err();
        assert_eq!(err.source_name, "env (log-max-size)");
        assert!(err.message.contains("'lots' is not a size"), "{err}");
        let tiny = env(&[("HOMEBASE_LOG_MAX_SIZE", "10k")]);
        assert_eq!(Config::resolve(&[("env", tiny)]).unwrap_err().source_name, "log-max-size");
        assert_eq!(parse_size("1.5k"), Ok(1536));
    }

    #[test]
    fn sandbox_and_deploy_check_settings_come_from_every_layer() {
        let defaults = Config::default();
        assert_eq!(defaults.sandbox, SandboxMode::Required);
        assert_eq!(defaults.deploy_check_timeout, Duration::from_secs(60));
        assert!(defaults.max_deploy_checks >= 2);
        let file: ConfigLayer =
            toml::from_str("sandbox = \"best-effort\"\ndeploy-check-timeout = \"2m\"\nmax-deploy-checks = 3").unwrap();
        let config = Config::resolve(&[("file", file.clone())]).unwrap();
        assert_eq!(
            (config.sandbox, config.deploy_check_timeout, config.max_deploy_checks),
            (SandboxMode::BestEffort, Duration::from_secs(120), 3)
        );
        let vars = env(&[
            ("HOMEBASE_SANDBOX", "required"),
            ("HOMEBASE_DEPLOY_CHECK_TIMEOUT", "5s"),
            ("HOMEBASE_MAX_DEPLOY_CHECKS", "1"),
        ]);
        let config = Config::resolve(&[("file", file), ("env", vars)]).unwrap();
        assert_eq!(
            (config.sandbox, config.deploy_check_timeout, config.max_deploy_checks),
            (SandboxMode::Required, Duration::from_secs(5), 1)
        );
        let err = Config::resolve(&[("env", env(&[("HOMEBASE_SANDBOX", "off")]))]).unwrap_err();
        assert_eq!(err.source_name, "env (sandbox)");
        let err = Config::resolve(&[("env", env(&[("HOMEBASE_MAX_DEPLOY_CHECKS", "0")]))]).unwrap_err();
        assert_eq!(err.source_name, "max-deploy-checks");
        let err = ConfigLayer::from_env([("HOMEBASE_MAX_DEPLOY_CHECKS".to_string(), "many".to_string())]).unwrap_err();
        assert_eq!(err.to_string(), "HOMEBASE_MAX_DEPLOY_CHECKS: 'many' is not a number");
        let json = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(json["sandbox"], "required");
    }

    #[test]
    fn connection_limits_come_from_every_layer() {
        let defaults = Config::default().connection_limits();
        assert_eq!(defaults, ConnectionLimits::default());
        let file: ConfigLayer =
            toml::from_str("max-connections = 500\nheader-read-timeout = \"5s\"\nkeep-alive-timeout = 30").unwrap();
        let vars = env(&[("HOMEBASE_HEADER_READ_TIMEOUT", "2s")]);
        let flags = ConfigLayer { max_connections: Some(700), ..Default::default() };
        let limits = Config::resolve(&[("file", file), ("env", vars), ("flags", flags)]).unwrap().connection_limits();
        assert_eq!(limits.max_connections, 700);
        assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(limits.keep_alive_timeout, Duration::from_secs(30));
        let err = ConfigLayer::from_env([("HOMEBASE_MAX_CONNECTIONS".to_string(), "many".to_string())]).unwrap_err();
        assert_eq!(err.to_string(), "HOMEBASE_MAX_CONNECTIONS: 'many' is not a number of connections");
        let zero = ConfigLayer { max_connections: Some(0), ..Default::default() };
        assert_eq!(Config::resolve(&[("flags", zero)]).unwrap_err().source_name, "max-connections");
        let zero = env(&[("HOMEBASE_HEADER_READ_TIMEOUT", "0s")]);
        assert_eq!(Config::resolve(&[("env", zero)]).unwrap_err().source_name, "header-read-timeout");
    }

    #[test]
    fn function_net_allow_comes_from_every_layer_and_is_checked() {
        assert_eq!(Config::default().function_net_allow, ["*"], "dev is open by default");
        assert!(Config::default().net_allow().is_any());
        let file: ConfigLayer = toml::from_str("function-net-allow = [\"10.0.0.5\", \"192.168.1.7/24\"]").unwrap();
        let config = Config::resolve(&[("file", file.clone())]).unwrap();
        assert_eq!(config.function_net_allow, ["10.0.0.5", "192.168.1.0/24"]);
        assert!(!config.net_allow().is_any());
        let vars = env(&[("HOMEBASE_FUNCTION_NET_ALLOW", "127.0.0.1, fd00::/8")]);
        let config = Config::resolve(&[("file", file.clone()), ("env", vars)]).unwrap();
        assert_eq!(config.function_net_allow, ["127.0.0.1", "fd00::/8"], "a later layer replaces the list");
        let none = env(&[("HOMEBASE_FUNCTION_NET_ALLOW", "")]);
        assert!(Config::resolve(&[("env", none)]).unwrap().function_net_allow.is_empty(), "empty: restricted");
        let flags = ConfigLayer { function_net_allow: Some(vec!["*".into()]), ..Default::default() };
        assert!(Config::resolve(&[("file", file), ("flags", flags)]).unwrap().net_allow().is_any());
        let bad = env(&[("HOMEBASE_FUNCTION_NET_ALLOW", "10.0.0.5, 127.0.0.1:5432")]);
        let err = Config::resolve(&[("env", bad)]).unwrap_err();
        assert_eq!(err.source_name, "env (function-net-allow)");
        assert!(
            err.message.contains("'127.0.0.1:5432' names a port") && err.message.contains("write 127.0.0.1"),
            "{err}"
        );
        let named: ConfigLayer = toml::from_str("function-net-allow = [\"db.internal\"]").unwrap();
        let err = Config::resolve(&[("homebase.toml", named)]).unwrap_err();
        assert!(err.message.contains("host names are not accepted"), "{err}");
    }

    #[test]
    fn trusted_proxies_come_from_every_layer_and_are_checked() {
        assert!(Config::default().trusted_proxies().is_empty(), "no proxy is trusted by default");
        let file: ConfigLayer = toml::from_str("trusted-proxies = [\"127.0.0.1\", \"10.1.2.3/16\"]").unwrap();
        let config = Config::resolve(&[("file", file.clone())]).unwrap();
        assert_eq!(config.trusted_proxies, ["127.0.0.1", "10.1.0.0/16"]);
        assert!(config.trusted_proxies().trusts("10.1.9.9".parse().unwrap()));
        let vars = env(&[("HOMEBASE_TRUSTED_PROXIES", "::1, fd00::/8")]);
        let config = Config::resolve(&[("file", file.clone()), ("env", vars)]).unwrap();
        assert_eq!(config.trusted_proxies, ["::1", "fd00::/8"], "a later layer replaces the list");
        let flags = ConfigLayer { trusted_proxies: Some(Vec::new()), ..Default::default() };
        assert!(Config::resolve(&[("file", file), ("flags", flags)]).unwrap().trusted_proxies.is_empty());
        let err = Config::resolve(&[("env", env(&[("HOMEBASE_TRUSTED_PROXIES", "proxy.internal")]))]).unwrap_err();
        assert_eq!(err.source_name, "env (trusted-proxies)");
        assert!(err.message.contains("'proxy.internal' is not an IP address"), "{err}");
    }

    #[test]
    fn worker_limits_come_from_every_layer_and_are_checked() {
        let defaults = Config::default();
        assert_eq!(
            (defaults.function_memory, defaults.function_concurrency, defaults.max_workers),
            (512 << 20, 0, 100)
        );
        let file: ConfigLayer =
            toml::from_str("function-memory = \"1GB\"\nfunction-concurrency = 20\nmax-workers = 40").unwrap();
        let config = Config::resolve(&[("file", file.clone())]).unwrap();
        assert_eq!((config.function_memory, config.function_concurrency, config.max_workers), (1 << 30, 20, 40));
        let vars = env(&[
            ("HOMEBASE_FUNCTION_MEMORY", "256MiB"),
            ("HOMEBASE_FUNCTION_CONCURRENCY", "5"),
            ("HOMEBASE_MAX_WORKERS", "8"),
        ]);
        let flags = ConfigLayer { max_workers: Some(9), ..Default::default() };
        let config = Config::resolve(&[("file", file), ("env", vars), ("flags", flags)]).unwrap();
        assert_eq!((config.function_memory, config.function_concurrency, config.max_workers), (256 << 20, 5, 9));
        let small = env(&[("HOMEBASE_FUNCTION_MEMORY", "64MB")]);
        let err = Config::resolve(&[("env", small)]).unwrap_err();
        assert_eq!(err.source_name, "function-memory");
        assert!(err.message.contains("at least 128MB"), "{err}");
        let err = Config::resolve(&[("env", env(&[("HOMEBASE_FUNCTION_MEMORY", "lots")]))]).unwrap_err();
        assert_eq!(err.source_name, "env (function-memory)");
        let none = ConfigLayer { max_workers: Some(0), ..Default::default() };
        assert_eq!(Config::resolve(&[("flags", none)]).unwrap_err().source_name, "max-workers");
        let err = ConfigLayer::from_env([("HOMEBASE_MAX_WORKERS".to_string(), "all".to_string())]).unwrap_err();
        assert_eq!(err.to_string(), "HOMEBASE_MAX_WORKERS: 'all' is not a number");
    }

    #[test]
    fn the_database_url_comes_from_every_layer_and_is_printed_without_its_password() {
        assert_eq!(Config::default().database_url, None, "SQLite in the data folder");
        let file: ConfigLayer =
            toml::from_str("database-url = \"postgres://hb:secret@db.internal:5432/homebase\"").unwrap();
        let config = Config::resolve(&[("file", file.clone())]).unwrap();
        assert_eq!(config.database_url.as_deref(), Some("postgres://hb:secret@db.internal:5432/homebase"));
        let printed = serde_json::to_value(&config).unwrap();
        assert_eq!(printed["database_url"], "postgres://hb@db.internal:5432/homebase");
        assert!(!printed.to_string().contains("secret"));
        let vars = env(&[("HOMEBASE_DATABASE_URL", "postgresql://other@127.0.0.1/hb")]);
        let config = Config::resolve(&[("file", file.clone()), ("env", vars)]).unwrap();
        assert_eq!(config.database_url.as_deref(), Some("postgresql://other@127.0.0.1/hb"));
        let empty = env(&[("HOMEBASE_DATABASE_URL", "")]);
        assert_eq!(Config::resolve(&[("file", file), ("env", empty)]).unwrap().database_url, None, "empty: SQLite");
        let flags = ConfigLayer { database_url: Some("mysql://root:pw@db/x".into()), ..Default::default() };
        let err = Config::resolve(&[("flags", flags)]).unwrap_err();
        assert_eq!(err.source_name, "flags (database-url)");
        assert!(err.message.contains("not a PostgreSQL URL") && !err.message.contains("pw"), "{err}");
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1").is_err());
    }
}

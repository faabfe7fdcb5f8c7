//! A small client of the management API of `homebase serve` (docs/serve.md): JSON in and out,
//! the key sent as `Authorization: Bearer`, and the server's `{message, detail, code}` errors
//! kept whole so that commands can show them and branch on the status.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use crate::target::{Source, Target, encode_segment};

/// A failed call: the server's answer, or the reason there was none (`status` 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub detail: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.detail.is_empty() && self.detail != self.message {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// As an `anyhow` error whose message is the server's `message` and whose cause is its
    /// `detail`, so `--json` prints them apart and text prints `message: detail`.
    pub fn into_anyhow(self) -> anyhow::Error {
        if self.detail.is_empty() || self.detail == self.message {
            anyhow::anyhow!(self.message)
        } else {
            anyhow::anyhow!(self.detail).context(self.message)
        }
    }
}

/// The management API of one server, with one key.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    token: String,
    token_source: Source,
}

impl std::fmt::Debug for Api {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Api {
    /// The client for the server and key `args` resolve to, and the app id they name (a project
    /// found from `args` lends its `.app.jsonc`).
    pub fn for_app(args: &crate::target::TargetArgs) -> anyhow::Result<(Api, String)> {
        let project = crate::target::optional_project(args)?;
        let target = crate::target::target(args, project.as_ref())?;
        let app_id = target.app_id()?.to_string();
        Ok((Api::new(&target)?, app_id))
    }

    pub fn new(target: &Target) -> anyhow::Result<Api> {
        Api::with_key(&target.url.value, &target.token.value, target.token.source.clone())
    }

    /// The client for `base` with `key`, which came from `source`.
    pub fn with_key(base: &str, key: &str, source: Source) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("homebase-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Api { http, base: base.to_string(), token: key.to_string(), token_source: source })
    }

    /// `/api/apps/{app}/backend-functions[/{name}[/{rest}]]`.
    pub fn function_path(app_id: &str, name: Option<&str>, rest: &str) -> String {
        let mut path = format!("/api/apps/{}/backend-functions", encode_segment(app_id));
        if let Some(name) = name {
            path.push('/');
            path.push_str(&encode_segment(name));
        }
        path.push_str(rest);
        path
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.call(Method::DELETE, path, None::<&()>).await
    }

    pub async fn post<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Value, ApiError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Value, ApiError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// Opens a server-sent event stream at `path`, resuming after the event id `last_id`
    /// (`Last-Event-ID`). An error status becomes an [`ApiError`] like any other call's.
    pub async fn stream(&self, path: &str, last_id: Option<u64>) -> Result<reqwest::Response, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url).bearer_auth(&self.token).header("accept", "text/event-stream");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.map_err(|error| ApiError {
            status: 0,
            code: "unreachable".into(),
            message: format!("Could not reach the server at {}", self.base),
            detail: error_chain(&error),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let value: Value = response.json().await.unwrap_or_default();
        let field = |name: &str| value[name].as_str().unwrap_or_default().to_string();
        Err(ApiError { status, code: field("code"), message: field("message"), detail: field("detail") })
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| ApiError {
            status: 0,
            code: "unreachable".into(),
            message: format!("Could not reach the server at {}", self.base),
            detail: format!("{}; is `homebase serve` running there?", error_chain(&error)),
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|error| ApiError {
            status,
            code: "unreachable".into(),
            message: format!("The server at {} stopped answering", self.base),
            detail: error_chain(&error),
        })?;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return value.ok_or_else(|| ApiError {
                status,
                code: "bad_response".into(),
                message: format!("The server at {} answered something that is not JSON", self.base),
                detail: snippet(&bytes),
            });
        }
        let field = |name: &str| value.as_ref().and_then(|v| v[name].as_str()).unwrap_or_default().to_string();
        let mut error = ApiError { status, code: field("code"), message: field("message"), detail: field("detail") };
        if error.message.is_empty() {
            error.message = format!("The server answered {status}");
            error.detail = snippet(&bytes);
        }
        if status == 401 {
            error.message = format!("The server at {} refused the API key: {}", self.base, error.message);
            error.detail = format!(
                "The key came from {}. Log in again with `homebase login --url {} --token KEY`, or pass --token.",
                self.token_source, self.base
            );
        }
        Err(error)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_show_message_then_detail() {
        let error = ApiError { status: 422, code: "c".into(), message: "m".into(), detail: "d".into() };
        assert_eq!(error.to_string(), "m: d");
        let anyhow = error.clone().into_anyhow();
        assert_eq!(anyhow.to_string(), "m");
        assert_eq!(format!("{anyhow:#}"), "m: d");
        let bare = ApiError { detail: String::new(), ..error };
        assert_eq!(bare.into_anyhow().chain().count(), 1);
    }

    #[test]
    fn function_paths_encode_nested_names() {
        assert_eq!(Api::function_path("a1", None, ""), "/api/apps/a1/backend-functions");
        assert_eq!(
            Api::function_path("a1", Some("email/send"), "/rollback"),
            "/api/apps/a1/backend-functions/email%2Fsend/rollback"
        );
    }
}

//! Which apps and functions exist, and what runs them: the [`Catalog`] that the server's
//! function routes resolve requests against.
//!
//! It owns the snapshot of an app's functions ([`AppFunctions`], replaced whole on every change,
//! with longest-name resolution) and the two catalogs: [`dev::DevApp`], one project folder read
//! into [`FunctionSpec`]s with local `.env` secrets and reloaded by a watcher, and
//! [`platform::Platform`], the apps of `serve` from the store, each active deployment
//! materialised on disk by its content address, with the app's secrets and network list in the
//! worker's version. Both retire outdated workers after a change and hand the apps' secret
//! values to the log hub for masking. It knows nothing of HTTP: routes, keys and error bodies
//! are the server's.

pub mod dev;
pub mod platform;

pub use dev::{DevApp, DevEvent, DevListener};
pub use platform::Platform;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use homebase_runtime::FunctionSpec;

/// The functions of one app at one moment. Replaced whole when the app changes (a reload in dev,
/// a deploy in serve), so a request sees one consistent set.
#[derive(Debug, Clone, Default)]
pub struct AppFunctions {
    pub app_id: String,
    pub functions: BTreeMap<String, Arc<FunctionSpec>>,
    /// Functions that exist but cannot run (invalid config), with the reason.
    pub broken: BTreeMap<String, String>,
}

/// The outcome of matching a request path against an app's functions.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<'a> {
    Function(&'a Arc<FunctionSpec>),
    Broken { name: &'a str, reason: &'a str },
    Unknown,
}

impl AppFunctions {
    /// Finds the function for `path` (the part after `/functions/`, e.g. `email/send/x`): the
    /// longest function name that is a whole-segment prefix of it wins.
    pub fn resolve(&self, path: &str) -> Resolved<'_> {
        let path = path.trim_start_matches('/');
        let mut end = path.len();
        loop {
            let candidate = &path[..end];
            if let Some(spec) = self.functions.get(candidate) {
                return Resolved::Function(spec);
            }
            if let Some((name, reason)) = self.broken.get_key_value(candidate) {
                return Resolved::Broken { name, reason };
            }
            match candidate.rfind('/') {
                Some(slash) => end = slash,
                None => return Resolved::Unknown,
            }
        }
    }

    /// The names of every function, healthy or not, for "did you mean" messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.functions.keys().chain(self.broken.keys()).map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// Where the router finds apps and their functions.
pub trait Catalog: Send + Sync + 'static {
    /// The functions of `app_id`, if that app exists.
    fn app(&self, app_id: &str) -> Option<Arc<AppFunctions>>;
    /// The app to use when a request does not name one (dev: the project's app).
    fn default_app(&self) -> Option<Arc<AppFunctions>>;
    /// `text` with the secret values of `app_id` masked as in its log lines: the router masks
    /// the detail of a crash or a failed start with it, as that quotes the worker's output.
    /// Without secrets to mask, `text` as it is.
    fn mask_text<'a>(&self, app_id: &str, text: &'a str) -> Cow<'a, str> {
        let _ = app_id;
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> Arc<FunctionSpec> {
        Arc::new(FunctionSpec {
            app_id: "a".into(),
            name: name.into(),
            entry: format!("/p/{name}/entry.ts").into(),
            read_paths: vec![],
            version: "1".into(),
            env: vec![],
            net_allow: Default::default(),
        })
    }

    fn app(names: &[&str]) -> AppFunctions {
        AppFunctions {
            app_id: "a".into(),
            functions: names.iter().map(|n| (n.to_string(), spec(n))).collect(),
            broken: BTreeMap::from([("bad".to_string(), "invalid".to_string())]),
        }
    }

    #[test]
    fn the_longest_whole_segment_name_wins() {
        let app = app(&["email", "email/send", "hello"]);
        let name = |path| match app.resolve(path) {
            Resolved::Function(spec) => spec.name.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(name("email/send"), "email/send");
        assert_eq!(name("email/send/now"), "email/send");
        assert_eq!(name("email/other"), "email");
        assert_eq!(name("email"), "email");
        assert_eq!(name("/hello/a/b"), "hello");
        assert_eq!(name("hello2"), "Unknown");
        assert_eq!(name("emails"), "Unknown");
        assert_eq!(name(""), "Unknown");
    }

    #[test]
    fn broken_functions_resolve_with_their_reason() {
        let app = app(&["hello"]);
        assert_eq!(app.resolve("bad/x"), Resolved::Broken { name: "bad", reason: "invalid" });
        assert_eq!(app.names(), vec!["bad", "hello"]);
    }
}

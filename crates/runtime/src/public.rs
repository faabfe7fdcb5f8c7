//! What `serve` shows callers of a function's failure: its text with this machine's paths hidden.
//!
//! An uncaught exception's message and a load error quote paths, because Deno resolves a
//! function's file names against where its deployment, temp folder and caches are on this
//! machine (`readfile '/srv/homebase/deployments/d_…/functions/f/x.html'`). [`PathMask`] rewrites
//! them, as plain paths and as `file:` URLs alike:
//!
//! - the deployment's own files relative to the entry's folder, as their author wrote them
//!   (`x.html`, `../shared/lib.ts`);
//! - the worker's temp folder as `$TMPDIR`, its Deno cache as `$DENO_DIR` (the shared package
//!   caches as `$DENO_DIR/npm` and `$DENO_DIR/remote`), the names the function itself sees;
//! - Homebase's own folders (the worker host, the work folder with its sockets, Homebase's cache)
//!   as `<homebase>`, and the private folders of the configuration (`serve`'s data folder) as
//!   `<data>`;
//! - any other `file:` URL cut to its file name ([`first_line_without_paths`]).
//!
//! Two kinds of text go through it, in one place: the one-line reasons of a failed start or a
//! crash ([`PathMask::line`]), and the error answers the worker's host writes itself. The host
//! marks those with [`FAILURE_HEADER`], whose value is a random token of the worker that the
//! function cannot read (it is removed from the environment before the function loads), and the
//! runtime rewrites their `message` and `detail` ([`rewrite_failure`]). A function's own answers
//! are never touched; the header is removed from them.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::worker::{file_url, first_line_without_paths};

/// The header the worker's host puts on the error answers it writes (see the module
/// documentation). Never passed on to the caller.
pub(crate) const FAILURE_HEADER: http::HeaderName = http::HeaderName::from_static("x-homebase-failure");

/// The largest host error body rewritten; the host's are a few hundred bytes.
pub(crate) const MAX_FAILURE_BODY: usize = 64 * 1024;

/// Rewrites paths in text, longest folder first.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathMask {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// A folder as a plain path or a `file:` URL, without a trailing slash.
    prefix: String,
    /// What `prefix/` becomes.
    under: String,
    /// What `prefix` alone becomes.
    itself: String,
}

/// The folders a worker's texts may mention, with what to show for each.
#[derive(Debug, Default)]
pub(crate) struct Places<'a> {
    /// The entry module and its deployment's root (`None` in `dev`: only the entry's folder).
    pub entry: Option<&'a Path>,
    pub root: Option<&'a Path>,
    pub tmp: Option<&'a Path>,
    pub deno_dir: Option<&'a Path>,
    /// The shared package caches (`npm`, `remote`), shown under `$DENO_DIR`.
    pub packages: &'a [PathBuf],
    /// Homebase's own folders.
    pub homebase: &'a [PathBuf],
    /// The configuration's private folders (the data folder).
    pub private: &'a [PathBuf],
}

impl PathMask {
    pub fn new(places: &Places<'_>) -> PathMask {
        let mut mask = PathMask::default();
        if let Some(entry) = places.entry {
            let mut up = String::new();
            for dir in entry.ancestors().skip(1) {
                let itself = if up.is_empty() { ".".to_string() } else { up.trim_end_matches('/').to_string() };
                mask.add(dir, &up, &itself);
                if places.root.is_none_or(|root| dir == root || !dir.starts_with(root)) {
                    break;
                }
                up.push_str("../");
            }
        }
        if let Some(tmp) = places.tmp {
            mask.add(tmp, "$TMPDIR/", "$TMPDIR");
        }
        if let Some(deno_dir) = places.deno_dir {
            mask.add(deno_dir, "$DENO_DIR/", "$DENO_DIR");
        }
        for cache in places.packages {
            let name = cache.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            mask.add(cache, &format!("$DENO_DIR/{name}/"), &format!("$DENO_DIR/{name}"));
        }
        for dir in places.homebase {
            mask.add(dir, "<homebase>/", "<homebase>");
        }
        for dir in places.private {
            mask.add(dir, "<data>/", "<data>");
        }
        // Longest first: a folder inside another is rewritten by its own rule.
        mask.rules.sort_by_key(|rule| std::cmp::Reverse(rule.prefix.len()));
        mask
    }

    /// A rule for `dir` as written and as resolved (links, `..`), each as a path and a URL.
    fn add(&mut self, dir: &Path, under: &str, itself: &str) {
        let mut forms = vec![dir.to_path_buf()];
        if let Ok(real) = dir.canonicalize()
            && real != dir
        {
            forms.push(real);
        }
        for form in forms {
            let plain = form.to_string_lossy().trim_end_matches('/').to_string();
            if plain.is_empty() || !form.is_absolute() {
                continue;
            }
            let url = file_url(Path::new(&plain));
            for prefix in [url, plain] {
                if !self.rules.iter().any(|r| r.prefix == prefix) {
                    self.rules.push(Rule { prefix, under: under.to_string(), itself: itself.to_string() });
                }
            }
        }
    }

    /// `text` with every path under a known folder rewritten.
    pub fn apply(&self, text: &str) -> String {
        if self.rules.is_empty() {
            return text.to_string();
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        'scan: while i < text.len() {
            // Every prefix starts with `/` or `file:`, never inside a longer path or URL.
            let starts = matches!(bytes[i], b'/' | b'f') && (i == 0 || !is_path_byte(bytes[i - 1]));
            if starts {
                for rule in &self.rules {
                    if !text[i..].starts_with(rule.prefix.as_str()) {
                        continue;
                    }
                    let end = i + rule.prefix.len();
                    match bytes.get(end) {
                        Some(b'/') => {
                            out.push_str(&rule.under);
                            i = end + 1;
                            continue 'scan;
                        }
                        // A longer name that starts the same: not this folder.
                        Some(&b) if is_path_byte(b) => {}
                        _ => {
                            out.push_str(&rule.itself);
                            i = end;
                            continue 'scan;
                        }
                    }
                }
            }
            let c = text[i..].chars().next().expect("i is on a character boundary");
            out.push(c);
            i += c.len_utf8();
        }
        out
    }

    /// The first line of `text` as a caller may see it: paths rewritten, other `file:` URLs cut
    /// to their file name.
    pub fn line(&self, text: &str) -> String {
        first_line_without_paths(&self.apply(text))
    }
}

/// Bytes that continue a path or a URL.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~' | b'%' | b'+' | b'@') || b >= 0x80
}

/// The error body the host wrote (`{"message", "detail", "code"}`), with its message's first line
/// and its detail passed through `mask`. Anything else (it never is) becomes a generic body:
/// nothing the host did not mean to show gets out.
pub(crate) fn rewrite_failure(body: Option<&[u8]>, mask: &PathMask, request_id: Option<&str>) -> Bytes {
    let parsed = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str());
    let value = match (field("message"), field("detail"), field("code")) {
        (Some(message), Some(detail), Some(code)) => serde_json::json!({
            "message": mask.line(message),
            "detail": mask.apply(detail),
            "code": code,
        }),
        _ => serde_json::json!({
            "message": "The function threw an error",
            "detail": format!(
                "Its logs have the details (request {}).",
                request_id.unwrap_or("id unknown")
            ),
            "code": "function_error",
        }),
    };
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask() -> PathMask {
        let packages = [PathBuf::from("/data/deno/shared/npm")];
        let homebase = [PathBuf::from("/run/hb-1"), PathBuf::from("/root/.cache/homebase")];
        let private = [PathBuf::from("/data")];
        PathMask::new(&Places {
            entry: Some(Path::new("/data/deployments/d_1/functions/f/entry.ts")),
            root: Some(Path::new("/data/deployments/d_1")),
            tmp: Some(Path::new("/run/hb-1/tmp/w3")),
            deno_dir: Some(Path::new("/data/deno/apps/ab12")),
            packages: &packages,
            homebase: &homebase,
            private: &private,
        })
    }

    #[test]
    fn deployment_paths_are_shown_relative_to_the_entry() {
        let mask = mask();
        let text =
            "NotFound: No such file or directory (os error 2): readfile '/data/deployments/d_1/functions/f/x.html'";
        assert_eq!(mask.apply(text), "NotFound: No such file or directory (os error 2): readfile 'x.html'");
        assert_eq!(mask.apply("at file:///data/deployments/d_1/functions/f/entry.ts:3:9"), "at entry.ts:3:9");
        assert_eq!(mask.apply("'/data/deployments/d_1/shared/lib.ts'"), "'../../shared/lib.ts'");
        assert_eq!(mask.apply("readdir '/data/deployments/d_1/functions/f'"), "readdir '.'");
        assert_eq!(mask.apply("readdir '/data/deployments/d_1'"), "readdir '../..'");
    }

    #[test]
    fn the_machines_folders_are_named_not_shown() {
        let mask = mask();
        for (text, shown) in [
            ("open '/run/hb-1/tmp/w3/out.txt'", "open '$TMPDIR/out.txt'"),
            ("open '/run/hb-1/tmp/w4/out.txt'", "open '<homebase>/tmp/w4/out.txt'"),
            ("'/data/deno/apps/ab12/gen/x.js'", "'$DENO_DIR/gen/x.js'"),
            ("file:///data/deno/shared/npm/registry/pkg/index.js", "$DENO_DIR/npm/registry/pkg/index.js"),
            ("'/data/homebase.db'", "'<data>/homebase.db'"),
            ("/root/.cache/homebase/host/abc/host.js:12", "<homebase>/host/abc/host.js:12"),
            ("/data", "<data>"),
            ("/data: permission denied", "<data>: permission denied"),
        ] {
            assert_eq!(mask.apply(text), shown, "{text}");
        }
    }

    #[test]
    fn only_whole_folder_names_match() {
        let mask = mask();
        for text in
            ["/database/x", "/run/hb-10/x", "/api/data/x", "https://host/data/x", "file:///etc/passwd", "é/data"]
        {
            assert_eq!(mask.apply(text), text);
        }
        assert_eq!(mask.line("Module not found \"file:///etc/x/lib.ts\"."), "Module not found \"lib.ts\".");
    }

    #[test]
    fn host_failures_are_rewritten_and_anything_else_is_replaced() {
        let mask = mask();
        let body = br#"{"message":"readfile '/data/deployments/d_1/functions/f/x.html'","detail":"see logs","code":"function_error"}"#;
        let out: serde_json::Value = serde_json::from_slice(&rewrite_failure(Some(body), &mask, Some("r1"))).unwrap();
        assert_eq!(out["message"], "readfile 'x.html'");
        assert_eq!((out["detail"].as_str(), out["code"].as_str()), (Some("see logs"), Some("function_error")));
        let out: serde_json::Value =
            serde_json::from_slice(&rewrite_failure(Some(b"/data/x"), &mask, Some("r1"))).unwrap();
        assert_eq!(out["code"], "function_error");
        assert!(!out.to_string().contains("/data") && out["detail"].as_str().unwrap().contains("r1"), "{out}");
    }
}

//! The official `@base44/sdk`, bundled for the browser, in headless Chromium: a page on an
//! allowed origin signs in, reads `me`, invokes and fetches a function and reads a 404 against
//! `serve` ([`TestPlatform`], real Deno); the same page on another origin gets nothing through.
//!
//! Needs Chromium: `chromium`, `chromium-browser`, `google-chrome` or `google-chrome-stable` on
//! `PATH`, or `HOMEBASE_TEST_CHROMIUM=/path/to/chrome` (Debian: `apt-get install chromium`).
//! Without one the test is skipped with a message saying so, unless `HOMEBASE_REQUIRE_BROWSER`
//! is set, which makes a missing browser a failure. The same policy is checked with explicit
//! `Origin` headers, without a browser, in `cors.rs`. The SDK is bundled with `deno bundle`
//! from the npm registry (the tests' Deno).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use homebase_testkit::{ADMIN_KEY, OFFICIAL_SDK_VERSION, PlatformOptions, TestPlatform, deno, json_of};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const WHO: &str = r#"Deno.serve((req) => Response.json(
  { function: "who", method: req.method, authorization: req.headers.get("authorization")?.split(" ")[0] ?? null },
  { headers: { "x-who": "who" } },
));
"#;

/// The page: runs the SDK against the server in `config` and posts what happened to `/result`.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>Homebase CORS</title>
<script type="module">
const config = __CONFIG__;
const out = { origin: location.origin };
const status = (e) => e?.status ?? e?.response?.status ?? null;
try {
  await import("/sdk.js");
  const base44 = globalThis.createClient({ serverUrl: config.server, appId: config.app, analytics: { enabled: false } });
  try {
    const { user } = await base44.auth.loginViaEmailPassword(config.email, config.password);
    out.login = user.email;
    out.me = (await base44.auth.me()).email;
  } catch (e) {
    out.loginError = String(e?.message ?? e);
    out.loginStatus = status(e);
  }
  try {
    const answer = await base44.functions.invoke("who", { hello: 1 });
    out.invoke = answer.data;
    out.exposed = answer.headers["x-who"] ?? null;
  } catch (e) {
    out.invokeError = String(e?.message ?? e);
    out.invokeStatus = status(e);
  }
  try {
    await base44.functions.invoke("nope", {});
    out.missing = "answered";
  } catch (e) {
    out.missingStatus = status(e);
  }
  try {
    const response = await base44.functions.fetch("/who", { method: "PUT", headers: { "x-extra": "1" } });
    out.fetch = (await response.json()).method;
  } catch (e) {
    out.fetchError = String(e?.message ?? e);
  }
} catch (e) {
  out.fatal = String(e?.stack ?? e);
}
await fetch("/result", { method: "POST", body: JSON.stringify(out) });
</script>
"#;

/// The Chromium to run, if any.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HOMEBASE_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The official SDK as one browser module that sets `globalThis.createClient`.
async fn sdk_bundle(dir: &Path) -> Vec<u8> {
    let entry = dir.join("entry.js");
    std::fs::write(
        &entry,
        format!(
            "import {{ createClient }} from \"npm:@base44/sdk@{OFFICIAL_SDK_VERSION}\";\nglobalThis.createClient = createClient;\n"
        ),
    )
    .unwrap();
    let out = dir.join("sdk.js");
    let output = tokio::process::Command::new(deno().await)
        .args(["bundle", "--platform", "browser", "--quiet", "-o"])
        .arg(&out)
        .arg(&entry)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "deno bundle failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::read(out).unwrap()
}

#[derive(Clone)]
struct Pages {
    html: String,
    sdk: std::sync::Arc<Vec<u8>>,
    results: mpsc::UnboundedSender<Value>,
}

/// Serves the page, the bundle and `/result` on `listener`.
fn serve_pages(listener: TcpListener, pages: Pages) -> tokio::task::JoinHandle<()> {
    let router = Router::new()
        .route("/", get(|State(p): State<Pages>| async move { Html(p.html) }))
        .route(
            "/sdk.js",
            get(|State(p): State<Pages>| async move {
                ([("content-type", "text/javascript")], p.sdk.as_ref().clone()).into_response()
            }),
        )
        .route(
            "/result",
            post(|State(p): State<Pages>, body: String| async move {
                let _ = p.results.send(serde_json::from_str(&body).unwrap_or(Value::String(body)));
                "ok"
            }),
        )
        .with_state(pages);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })
}

/// Opens `url` in headless Chromium and returns what the page posted.
async fn visit(chromium: &Path, url: &str, results: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    let profile = tempfile::tempdir().unwrap();
    let log = profile.path().join("chromium.log");
    let mut child = tokio::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check"])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(90), results.recv()).await;
    // Chromium starts helper processes in its group: end the whole group we started.
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
    }
    let _ = child.wait().await;
    match result {
        Ok(Some(result)) => result,
        _ => {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().filter(|l| !l.contains("dbus")).rev().take(20).collect();
            panic!("the page at {url} reported nothing; Chromium said:\n{}", tail.join("\n"));
        }
    }
}

#[tokio::test]
async fn the_official_sdk_in_a_browser_works_from_an_allowed_origin_only() {
    let Some(chromium) = chromium() else {
        let message = "no Chromium found (apt-get install chromium, or set HOMEBASE_TEST_CHROMIUM); \
                       the CORS policy is still checked with explicit Origin headers in tests/cors.rs";
        assert!(
            std::env::var_os("HOMEBASE_REQUIRE_BROWSER").is_none(),
            "HOMEBASE_REQUIRE_BROWSER is set but {message}"
        );
        eprintln!("SKIPPED the_official_sdk_in_a_browser_works_from_an_allowed_origin_only: {message}");
        return;
    };
    // Two page origins: one allowed, one not.
    let allowed_pages = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_pages = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed = format!("http://127.0.0.1:{}", allowed_pages.local_addr().unwrap().port());
    let other = format!("http://127.0.0.1:{}", other_pages.local_addr().unwrap().port());

    let data = tempfile::tempdir().unwrap();
    let options = PlatformOptions { cors_origins: vec![allowed.clone()], ..Default::default() };
    let platform = TestPlatform::start_with(data.path(), options).await;
    let admin = |method: Method, path: &str, body: Value| {
        platform.client().request(method, platform.at(path)).header("api_key", ADMIN_KEY).json(&body).send()
    };
    let app = json_of(admin(Method::POST, "/api/apps", json!({"name": "Shop"})).await.unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deploy = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": WHO }], "automations": [] });
    let response = admin(Method::PUT, &format!("/api/apps/{app}/backend-functions/who"), deploy).await.unwrap();
    assert_eq!(response.status(), 200);
    let user = json!({"email": "ann@example.test", "password": "pw-123456"});
    let response = admin(Method::POST, &format!("/api/apps/{app}/users"), user).await.unwrap();
    assert_eq!(response.status(), 201);

    let bundle_dir = tempfile::tempdir().unwrap();
    let sdk = std::sync::Arc::new(sdk_bundle(bundle_dir.path()).await);
    let config = json!({ "server": platform.url, "app": app, "email": "ann@example.test", "password": "pw-123456" });
    let (results, mut received) = mpsc::unbounded_channel();
    let pages = Pages { html: PAGE.replace("__CONFIG__", &config.to_string()), sdk, results };
    let servers = [serve_pages(allowed_pages, pages.clone()), serve_pages(other_pages, pages)];

    let seen = visit(&chromium, &format!("{allowed}/"), &mut received).await;
    assert_eq!(seen["origin"], allowed.as_str(), "{seen}");
    assert!(seen.get("fatal").is_none(), "{seen}");
    assert_eq!(
        (seen["login"].as_str(), seen["me"].as_str()),
        (Some("ann@example.test"), Some("ann@example.test")),
        "{seen}"
    );
    assert_eq!(seen["invoke"]["function"], "who", "{seen}");
    assert_eq!(seen["invoke"]["authorization"], "Bearer", "the signed-in user's token reached the function: {seen}");
    assert_eq!(seen["exposed"], "who", "the function's own header is readable: {seen}");
    assert_eq!(seen["missingStatus"], 404, "Homebase's own error is readable: {seen}");
    assert_eq!(seen["fetch"], "PUT", "functions.fetch with a preflight: {seen}");

    let seen = visit(&chromium, &format!("{other}/"), &mut received).await;
    assert_eq!(seen["origin"], other.as_str(), "{seen}");
    assert!(seen.get("fatal").is_none(), "{seen}");
    assert!(seen.get("login").is_none(), "another origin signed in: {seen}");
    assert_eq!(seen["loginStatus"], Value::Null, "the browser hid the answer: {seen}");
    assert!(seen.get("invoke").is_none() && seen["invokeStatus"].is_null(), "{seen}");
    assert!(seen["missingStatus"].is_null(), "{seen}");
    assert!(seen.get("fetch").is_none(), "{seen}");

    for server in servers {
        server.abort();
    }
    platform.stop().await;
}

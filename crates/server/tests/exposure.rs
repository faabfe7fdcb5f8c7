//! What `homebase serve` tells a caller who does not hold a key (issue 9): error bodies are JSON
//! with `message`, `detail` and `code` on every route; uncaught exceptions, crashes and failed
//! starts answer a short reason and the request id, never stack traces, paths, the Deno binary
//! or the worker's output; an unknown function's 404 lists the app's functions only to its key
//! holders; deploys refuse names a URL cannot call. Real `serve` router, real Deno.

use homebase_testkit::{ADMIN_KEY, TestPlatform, TestServer, deno, fixture, json_of};
use reqwest::Method;
use serde_json::{Value, json};

async fn answer(response: reqwest::Response) -> (u16, Value) {
    (response.status().as_u16(), json_of(response).await)
}

fn admin(server: &TestPlatform, method: Method, path: &str) -> reqwest::RequestBuilder {
    server.client().request(method, server.at(path)).header("api_key", ADMIN_KEY)
}

async fn create_app(server: &TestPlatform, name: &str) -> String {
    let response = admin(server, Method::POST, "/api/apps").json(&json!({ "name": name })).send().await.unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn app_key(server: &TestPlatform, app: &str) -> String {
    let response = admin(server, Method::POST, &format!("/api/apps/{app}/keys")).send().await.unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_string()
}

fn code(entry: &str) -> Value {
    json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": entry }], "automations": [] })
}

async fn deploy(server: &TestPlatform, app: &str, name: &str, entry: &str) -> (u16, Value) {
    let path = format!("/api/apps/{app}/backend-functions/{name}");
    answer(admin(server, Method::PUT, &path).json(&code(entry)).send().await.unwrap()).await
}

async fn deployed(server: &TestPlatform, app: &str, name: &str, entry: &str) {
    let (status, body) = deploy(server, app, name, entry).await;
    assert_eq!(status, 200, "{name}: {body}");
}

/// Calls a function anonymously with a known request id.
async fn call(server: &TestPlatform, app: &str, name: &str, request_id: &str) -> (u16, Value) {
    let url = server.at(&format!("/api/apps/{app}/functions/{name}"));
    answer(server.client().post(url).header("x-request-id", request_id).send().await.unwrap()).await
}

/// What no anonymous answer may contain: paths of this machine, stack frames, the Deno binary.
fn assert_nothing_internal(body: &Value, data_dir: &std::path::Path, deno_path: &std::path::Path) {
    let text = body.to_string();
    for leak in ["file://", "    at ", "Stack backtrace", "C stack", "/tmp/", "deployments/"] {
        assert!(!text.contains(leak), "{leak:?} leaked: {text}");
    }
    assert!(!text.contains(&data_dir.display().to_string()), "the data folder leaked: {text}");
    assert!(!text.contains(&deno_path.display().to_string()), "the Deno path leaked: {text}");
    assert!(!text.contains("deno"), "Deno's name leaked: {text}");
}

#[tokio::test]
async fn uncaught_exceptions_crashes_and_failed_starts_answer_a_reason_and_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(dir.path()).await;
    let deno_path = deno().await;
    let app = create_app(&server, "leaky").await;
    let secrets = json!({ "API_TOKEN": "tok_live_123456789" });
    let response = admin(&server, Method::POST, &format!("/api/apps/{app}/secrets")).json(&secrets).send().await;
    assert_eq!(response.unwrap().status(), 200);

    // An uncaught exception: its message's first line, masked, and the request id.
    let throws = "function helper() {\n  throw new Error(`token ${Deno.env.get(\"API_TOKEN\")} refused\\nsecond line`);\n}\n\
                  Deno.serve(() => helper());\n";
    deployed(&server, &app, "throws", throws).await;
    let (status, body) = call(&server, &app, "throws", "req-throws-1").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "function_error");
    assert_eq!(body["message"], "token ******** refused", "the first line, the secret masked: {body}");
    assert!(body["detail"].as_str().unwrap().contains("req-throws-1"), "{body}");
    assert_nothing_internal(&body, dir.path(), &deno_path);
    // The stack is in the function's log, for the key holders.
    homebase_testkit::eventually("the stack in the log", || {
        server
            .logs
            .events()
            .iter()
            .any(|e| e.message.contains("Uncaught error in handler") && e.message.contains("helper"))
    })
    .await;

    // A crash while handling a request: the exit status, not the stderr dump.
    let crashes = "Deno.serve(() => {\n  Deno.stderr.writeSync(new TextEncoder().encode(\"panic at /srv/secret/place.rs:1\\n\"));\n  \
                   Deno.exit(3);\n});\n";
    deployed(&server, &app, "crashes", crashes).await;
    let (status, body) = call(&server, &app, "crashes", "req-crash-1").await;
    assert_eq!((status, body["code"].as_str()), (502, Some("function_crashed")), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("exited with code 3") && detail.contains("req-crash-1"), "{body}");
    assert!(!detail.contains("/srv/secret"), "stderr leaked: {body}");
    assert_nothing_internal(&body, dir.path(), &deno_path);

    // A module that fails at load: its error's first line, the file named without its path.
    let load = "import \"./helper.ts\";\nDeno.serve(() => new Response(\"never\"));\n";
    let files = json!({ "entry": "entry.ts", "automations": [], "files": [
        { "path": "entry.ts", "content": load },
        { "path": "helper.ts", "content": "throw new Error(\"cannot start without config\");\n" },
    ]});
    let path = format!("/api/apps/{app}/backend-functions/loads");
    let (status, outcome) = answer(admin(&server, Method::PUT, &path).json(&files).send().await.unwrap()).await;
    assert_eq!(status, 200, "{outcome}");
    let (status, body) = call(&server, &app, "loads", "req-load-1").await;
    assert_eq!((status, body["code"].as_str()), (502, Some("function_boot_failed")), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("cannot start without config") && detail.contains("req-load-1"), "{body}");
    assert_nothing_internal(&body, dir.path(), &deno_path);

    // A worker that dies at start after printing to stderr: the exit status only.
    let dies = "Deno.stderr.writeSync(new TextEncoder().encode(\"#\\n# Fatal error in v8 at /opt/dump\\n\"));\nDeno.exit(7);\n";
    deployed(&server, &app, "dies", dies).await;
    let (status, body) = call(&server, &app, "dies", "req-dies-1").await;
    assert_eq!((status, body["code"].as_str()), (502, Some("function_boot_failed")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("exited with code 7"), "{body}");
    assert!(!body.to_string().contains("Fatal error"), "{body}");
    assert_nothing_internal(&body, dir.path(), &deno_path);
    server.stop().await;
}

/// The review's finding (issue 9): an uncaught error about a file answered the file's absolute
/// path (`readfile '/…/data/deployments/d_…/functions/_/x.html'`), because only `file://` URLs were
/// stripped. Now the deployment's paths are shown relative to the function, as its author wrote
/// them, and the machine's folders by the names the function knows them by.
#[tokio::test]
async fn file_errors_show_paths_relative_to_the_function_and_name_the_machines_folders() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(dir.path()).await;
    let deno_path = deno().await;
    let app = create_app(&server, "paths").await;
    let reads = |path: &str| format!("Deno.serve(async () => new Response(await Deno.readTextFile({path})));\n");
    let cases = [
        ("template", reads("new URL(\"./template.html\", import.meta.url)"), "readfile 'template.html'"),
        ("shared", reads("new URL(\"../../shared/x.ts\", import.meta.url)"), "readfile '../../shared/x.ts'"),
        ("tmp", reads("Deno.env.get(\"TMPDIR\") + \"/nope.txt\""), "readfile '$TMPDIR/nope.txt'"),
        ("cache", reads("Deno.env.get(\"DENO_DIR\") + \"/nope.txt\""), "readfile '$DENO_DIR/nope.txt'"),
        ("data", reads("new URL(\"../../../../homebase.db\", import.meta.url)"), "\"<data>/homebase.db\""),
        (
            "plugin",
            "Deno.serve(async () => { await import(\"./plugins/\" + \"missing.ts\"); return new Response(\"x\"); });\n"
                .to_string(),
            "plugins/missing.ts",
        ),
    ];
    for (name, entry, shown) in &cases {
        deployed(&server, &app, name, entry).await;
        let url = server.at(&format!("/api/apps/{app}/functions/{name}"));
        let response = server.client().post(url).header("x-request-id", format!("req-{name}")).send().await.unwrap();
        assert!(response.headers().get("x-homebase-failure").is_none(), "the host's mark stays inside");
        let (status, body) = answer(response).await;
        assert_eq!((status, body["code"].as_str()), (500, Some("function_error")), "{name}: {body}");
        assert!(body["message"].as_str().unwrap().contains(shown), "{name}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(&format!("req-{name}")), "{name}: {body}");
        assert_nothing_internal(&body, dir.path(), &deno_path);
    }

    // A failed start quotes its file the same way.
    let at_load = "const settings = Deno.readTextFileSync(new URL(\"./settings.json\", import.meta.url));\n\
                   Deno.serve(() => new Response(settings));\n";
    deployed(&server, &app, "settings", at_load).await;
    let (status, body) = call(&server, &app, "settings", "req-settings").await;
    assert_eq!((status, body["code"].as_str()), (502, Some("function_boot_failed")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("readfile 'settings.json'"), "{body}");
    assert_nothing_internal(&body, dir.path(), &deno_path);

    // A function's own answer is its own, even if it imitates the host's mark.
    let imitates = "Deno.serve(() => new Response(JSON.stringify({ message: \"/srv/mine\" }), \
                    { status: 500, headers: { \"x-homebase-failure\": \"guess\" } }));\n";
    deployed(&server, &app, "imitates", imitates).await;
    let url = server.at(&format!("/api/apps/{app}/functions/imitates"));
    let response = server.client().post(url).send().await.unwrap();
    assert!(response.headers().get("x-homebase-failure").is_none());
    assert_eq!(response.text().await.unwrap(), "{\"message\":\"/srv/mine\"}");
    server.stop().await;
}

#[tokio::test]
async fn dev_keeps_showing_stacks_and_names() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let (status, body) = answer(server.client().get(server.at("/functions/throws")).send().await.unwrap()).await;
    assert_eq!(status, 500, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("    at "), "dev shows the stack: {body}");
    let (status, body) = answer(server.client().get(server.at("/functions/nope")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert!(body["detail"].as_str().unwrap().contains("echo"), "dev lists the functions: {body}");
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_function_names_the_apps_functions_only_to_its_key_holders() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(dir.path()).await;
    let app = create_app(&server, "secretive").await;
    let other = create_app(&server, "other").await;
    deployed(&server, &app, "internal-billing-export", "Deno.serve(() => new Response(\"ok\"));\n").await;
    let mine = app_key(&server, &app).await;
    let theirs = app_key(&server, &other).await;
    let not_found = |request: reqwest::RequestBuilder| async move {
        let (status, body) = answer(request.send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("function_not_found")), "{body}");
        assert!(body["message"].is_string() && body["detail"].is_string(), "{body}");
        body["detail"].as_str().unwrap().contains("internal-billing-export")
    };
    let invoke = server.at(&format!("/api/apps/{app}/functions/nope"));
    let client = server.client();
    assert!(!not_found(client.post(&invoke)).await, "anonymous callers get no list");
    assert!(!not_found(client.post(&invoke).header("api_key", "b44k_forged")).await, "a wrong key gets none");
    assert!(!not_found(client.post(&invoke).header("api_key", &theirs)).await, "another app's key gets none");
    assert!(not_found(client.post(&invoke).header("api_key", &mine)).await, "the app's key sees the list");
    assert!(not_found(client.post(&invoke).header("api_key", ADMIN_KEY)).await, "and an admin key");
    // The webhook route (where an SDK route would take the bearer for an app user's token).
    let webhook = server.at("/functions/nope");
    let hook = || client.post(&webhook).header("x-app-id", &app);
    assert!(!not_found(hook()).await);
    assert!(!not_found(hook().bearer_auth("not-a-key")).await);
    assert!(!not_found(hook().bearer_auth(&theirs)).await);
    assert!(not_found(hook().header("api_key", &mine)).await);
    assert!(not_found(hook().bearer_auth(&mine)).await, "a key as a bearer");
    server.stop().await;
}

#[tokio::test]
async fn every_error_body_is_json_with_message_detail_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(dir.path()).await;
    let app = create_app(&server, "errors").await;
    let client = server.client();
    let check = |response: reqwest::Response, status: u16, code: &'static str| async move {
        let headers = response.headers().clone();
        let (got, body) = answer(response).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        assert!(!body["message"].as_str().unwrap().is_empty() && !body["detail"].as_str().unwrap().is_empty());
        (headers, body)
    };

    // 405: a known path, another method; `Allow` stays.
    let response = client.patch(server.at("/api/apps")).header("api_key", ADMIN_KEY).send().await.unwrap();
    let (headers, body) = check(response, 405, "method_not_allowed").await;
    assert!(headers.contains_key("allow"), "{headers:?}");
    assert!(body["message"].as_str().unwrap().contains("PATCH"), "{body}");
    // 413: past a route's body limit (2 MB outside the management API).
    let big = vec![b'a'; 3 << 20];
    let login = server.at(&format!("/api/apps/{app}/auth/login"));
    let response = client.post(&login).header("content-type", "application/json").body(big).send().await.unwrap();
    check(response, 413, "body_too_large").await;
    // A Path extractor's rejection: the app id is not UTF-8.
    let response = client.get(server.at("/api/apps/%FF/backend-functions")).header("api_key", ADMIN_KEY).send().await;
    let (_, body) = check(response.unwrap(), 400, "bad_request").await;
    assert!(body["detail"].as_str().unwrap().contains("UTF-8") || body["detail"].as_str().unwrap().contains("URL"));
    // A Query extractor's rejection: a field given twice.
    let token = server.at(&format!("/api/apps/{app}/auth/token?user=a&user=b"));
    let response = client.get(token).header("api_key", ADMIN_KEY).send().await.unwrap();
    check(response, 400, "bad_request").await;
    // The fallback.
    let response = client.get(server.at("/nowhere")).send().await.unwrap();
    check(response, 404, "route_not_found").await;
    // A function's own error answer is passed on as it is.
    deployed(&server, &app, "teapot", "Deno.serve(() => new Response(\"short and stout\", { status: 418 }));\n").await;
    let response = client.get(server.at(&format!("/api/apps/{app}/functions/teapot"))).send().await.unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.text().await.unwrap(), "short and stout");
    server.stop().await;
}

#[tokio::test]
async fn deploys_refuse_names_a_url_cannot_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(dir.path()).await;
    let app = create_app(&server, "names").await;
    let ok = "Deno.serve(() => new Response(\"ok\"));\n";
    for (name, shown) in
        [("my%20fn", "a space"), ("caf%C3%A9", "U+00E9"), ("admin%E2%80%AEgpj", "U+202E"), ("a%3Fb", "'?'")]
    {
        let (status, body) = deploy(&server, &app, name, ok).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("invalid_name")), "{name}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(shown) && message.contains("letters, digits, '-' and '_'"), "{name}: {body}");
        assert!(!message.contains('\u{202e}'), "the bidi control is not echoed: {body}");
    }
    // What the rule allows deploys and is callable by its name.
    deployed(&server, &app, "Report_v2-final%2Fdaily", ok).await;
    let response = server.client().get(server.at(&format!("/api/apps/{app}/functions/Report_v2-final/daily"))).send();
    assert_eq!(response.await.unwrap().text().await.unwrap(), "ok");
    server.stop().await;
}

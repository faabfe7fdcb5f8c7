//! The function routes end to end: the real router on 127.0.0.1:0, real Deno running the
//! fixture project's functions (crates/testkit/fixtures/functions).

use std::collections::HashSet;
use std::time::Duration;

use homebase_runtime::Level;
use homebase_server::config::Config;
use homebase_testkit::{TestServer, eventually, fixture, json_of, process_alive};
use serde_json::json;

fn pids_of(server: &TestServer, function: &str) -> Vec<u32> {
    server.runtime.workers().into_iter().filter(|w| w.function == function).filter_map(|w| w.pid).collect()
}

#[tokio::test]
async fn sdk_invoke_route_passes_everything_through_and_injects_context() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    // A user token is only accepted for a user that exists (with the password stamp it carries).
    let new = homebase_store::NewUser {
        email: "ann@example.test".into(),
        password: Some("pw-123456".into()),
        full_name: None,
        role: homebase_store::UserRole::User,
        is_verified: true,
    };
    let user = server.auth.store.create_user("fixture-app", new).await.unwrap();
    let user_token = server.auth.user_token(&user);
    let response = server
        .client()
        .post(server.at("/api/apps/fixture-app/functions/echo?status=201"))
        .header("authorization", format!("Bearer {user_token}"))
        .header("x-app-id", "fixture-app")
        .header("base44-service-authorization", "Bearer forged")
        .header("base44-api-url", "http://evil.invalid")
        .json(&json!({ "orderId": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-echo"], "yes");
    let seen = json_of(response).await;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/echo");
    assert_eq!(seen["search"], "?status=201");
    assert_eq!(seen["url"].as_str().unwrap(), format!("{}/echo?status=201", server.url));
    assert_eq!(seen["body"], r#"{"orderId":7}"#);
    let headers = &seen["headers"];
    assert_eq!(headers["authorization"], format!("Bearer {user_token}").as_str());
    assert_eq!(headers["base44-app-id"], "fixture-app");
    assert_eq!(headers["base44-api-url"], server.url.as_str());
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["x-request-id"].as_str().unwrap().starts_with("req_"));
    let service = headers["base44-service-authorization"].as_str().unwrap();
    assert_ne!(service, "Bearer forged");
    let token = service.strip_prefix("Bearer ").expect("a bearer service token");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    server.stop().await;
}

#[tokio::test]
async fn sdk_fetch_route_keeps_sub_path_and_query() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let seen = json_of(
        server
            .client()
            .put(server.at("/api/functions/echo/users/profile?x=1&y=two"))
            .header("x-app-id", "fixture-app")
            .body("raw body")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["path"], "/echo/users/profile");
    assert_eq!(seen["search"], "?x=1&y=two");
    assert_eq!(seen["body"], "raw body");
    // Without X-App-Id the project's app is used.
    let seen = json_of(server.client().get(server.at("/api/functions/echo")).send().await.unwrap()).await;
    assert_eq!(seen["headers"]["base44-app-id"], "fixture-app");
    server.stop().await;
}

#[tokio::test]
async fn http2_callers_reach_functions_with_their_host() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = client.get(server.at("/functions/echo/h2")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let seen = json_of(response).await;
    assert_eq!(seen["url"].as_str().unwrap(), format!("{}/echo/h2", server.url));
    server.stop().await;
}

#[tokio::test]
async fn a_forged_host_never_becomes_the_url_functions_call_back() {
    // The function's SDK sends its service token to Base44-Api-Url: a Host header that a caller
    // made up must not decide where that goes.
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    for path in ["/functions/echo", "/api/apps/fixture-app/functions/echo", "/api/functions/echo"] {
        let seen =
            json_of(server.client().get(server.at(path)).header("host", trap.to_string()).send().await.unwrap()).await;
        assert_eq!(seen["headers"]["base44-api-url"], server.url.as_str(), "{path}: {seen}");
    }
    server.stop().await;
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let response = server
        .client()
        .get(server.at("/api/functions/echo"))
        .header("authorization", "Bearer one")
        .header("authorization", "Bearer two")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = json_of(response).await;
    assert_eq!(body["code"], "duplicate_authorization");
    assert!(body["detail"].as_str().unwrap().contains("one `Authorization"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn webhook_route_never_carries_a_user() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let seen = json_of(
        server
            .client()
            .post(server.at("/functions/echo/hook"))
            .header("authorization", "Bearer user-token")
            .header("x-data-env", "prod")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let headers = &seen["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers["base44-service-authorization"].as_str().unwrap().starts_with("Bearer "));
    assert_eq!(headers["x-data-env"], "prod");
    assert_eq!(seen["path"], "/echo/hook");
    // A non-Bearer Authorization through the SDK routes is dropped too (the SDK would throw).
    let seen = json_of(
        server
            .client()
            .get(server.at("/api/functions/echo"))
            .header("authorization", "Basic dXNlcjpwdw==")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(seen["headers"].get("authorization").is_none());
    server.stop().await;
}

#[tokio::test]
async fn every_method_reaches_the_function() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let client = server.client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client.request(method.clone(), server.at("/functions/echo")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(json_of(response).await["method"], method.as_str());
    }
    let head = client.head(server.at("/functions/echo")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-echo"], "yes");
    server.stop().await;
}

#[tokio::test]
async fn sequential_requests_reuse_one_worker_connection() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let client = server.client();
    for i in 0..20 {
        // Bodies of every kind: JSON, none (HEAD), a large upload, empty (202).
        let response = match i % 4 {
            0 => client.get(server.at("/functions/echo")).send().await.unwrap(),
            1 => client.head(server.at("/functions/echo")).send().await.unwrap(),
            2 => client.post(server.at("/functions/echo")).body(vec![b'x'; 100_000]).send().await.unwrap(),
            _ => client.post(server.at("/functions/wait-until")).send().await.unwrap(),
        };
        assert!(response.status().is_success(), "request {i}: {}", response.status());
        response.bytes().await.unwrap();
    }
    let workers = server.runtime.workers();
    for name in ["echo", "wait-until"] {
        let worker = workers.iter().find(|w| w.function == name).unwrap();
        assert_eq!(worker.connections, 1, "{name}: every request reused the first connection");
    }
    server.stop().await;
}

#[tokio::test]
async fn both_handler_shapes_and_all_serve_forms_work() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let cases = [
        ("modern", "export default function"),
        ("fetch-object", "export default { fetch }"),
        ("serve-options", "Deno.serve(options, handler)"),
        ("serve-handler-option", "Deno.serve({ handler })"),
    ];
    for (name, shape) in cases {
        let response = server.client().get(server.at(&format!("/functions/{name}"))).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(json_of(response).await["shape"], shape, "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn nested_names_and_function_configs_route_by_longest_match() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let get = |path: &'static str| {
        let client = server.client();
        let url = server.at(path);
        async move { json_of(client.post(url).send().await.unwrap()).await }
    };
    let sent = get("/api/apps/fixture-app/functions/email/send").await;
    assert_eq!(sent["function"], "email/send");
    assert_eq!(sent["path"], "/email/send");
    let parent = get("/api/apps/fixture-app/functions/email/archive").await;
    assert_eq!(parent["function"], "email");
    assert_eq!(parent["path"], "/email/archive");
    assert_eq!(get("/functions/email/send/now").await["function"], "email/send");
    assert_eq!(get("/functions/renamed").await["function"], "renamed");
    // An entry outside the config's own folder is readable too.
    assert_eq!(get("/functions/pointer").await["function"], "pointer");
    server.stop().await;
}

#[tokio::test]
async fn unknown_hidden_and_invalid_functions_answer_clear_errors() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let client = server.client();

    let response = client.post(server.at("/api/apps/fixture-app/functions/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body = json_of(response).await;
    assert_eq!(body["code"], "function_not_found");
    assert_eq!(body["message"], "No function matches 'nope'");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("echo") && detail.contains("email/send"), "{detail}");
    assert!(!detail.contains("ignored"), "hidden functions are not listed: {detail}");

    let response = client.get(server.at("/functions/.hidden/ignored")).send().await.unwrap();
    assert_eq!(response.status(), 404);

    let response = client.get(server.at("/functions/bad-automation")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body = json_of(response).await;
    assert_eq!(body["code"], "function_invalid");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("function.jsonc") && detail.contains("nightly"), "{detail}");

    let response = client.get(server.at("/no/such/route")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body = json_of(response).await;
    assert_eq!(body["code"], "route_not_found");
    assert!(body["detail"].as_str().unwrap().contains("/functions/"));
    server.stop().await;
}

#[tokio::test]
async fn sse_first_event_arrives_while_the_handler_is_still_writing() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let mut response = server.client().get(server.at("/api/functions/sse")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // The handler cannot finish until /sse/release is called, so this chunk was streamed.
    let first = tokio::time::timeout(Duration::from_secs(20), response.chunk()).await.expect("first chunk").unwrap();
    assert_eq!(first.as_deref(), Some(&b"data: first\n\n"[..]));
    let released = server.client().get(server.at("/functions/sse/release")).send().await.unwrap();
    assert_eq!(json_of(released).await["released"], true);
    let rest = response.text().await.unwrap();
    assert_eq!(rest, "data: second\n\n");
    server.stop().await;
}

#[tokio::test]
async fn request_bodies_stream_to_the_function() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    tx.send(Ok(b"hello".to_vec())).await.unwrap();
    let request = server.client().post(server.at("/functions/duplex")).body(reqwest::Body::wrap_stream(stream)).send();
    let mut response =
        tokio::time::timeout(Duration::from_secs(20), request).await.expect("answer before the upload ends").unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"first:hello\n");
    tx.send(Ok(vec![b'x'; 1000])).await.unwrap();
    drop(tx);
    assert_eq!(response.text().await.unwrap(), "rest:1000\n");
    server.stop().await;
}

#[tokio::test]
async fn multipart_uploads_arrive_intact() {
    use sha2::Digest;
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name("photo.png").mime_str("image/png").unwrap(),
        )
        .text("filter", "sepia")
        .text("options", r#"{"quality":80}"#);
    let response =
        server.client().post(server.at("/api/apps/fixture-app/functions/upload")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = json_of(response).await;
    assert_eq!(seen["image"]["name"], "photo.png");
    assert_eq!(seen["image"]["type"], "image/png");
    assert_eq!(seen["image"]["size"], bytes.len());
    assert_eq!(seen["image"]["sha256"], digest.as_str());
    assert_eq!(seen["filter"], "sepia");
    assert_eq!(seen["options"], r#"{"quality":80}"#);
    server.stop().await;
}

#[tokio::test]
async fn load_failures_answer_502_with_the_error() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let cases = [
        ("broken", vec!["broken/entry.ts", ":3"]),
        ("no-handler", vec!["Deno.serve", "export default"]),
        ("missing-import", vec!["does-not-exist.ts"]),
    ];
    for (name, needles) in cases {
        let response = server.client().get(server.at(&format!("/functions/{name}"))).send().await.unwrap();
        assert_eq!(response.status(), 502, "{name}");
        let body = json_of(response).await;
        assert_eq!(body["code"], "function_boot_failed", "{name}");
        assert_eq!(body["message"], format!("Function '{name}' failed to start"));
        let detail = body["detail"].as_str().unwrap();
        for needle in needles {
            assert!(detail.contains(needle), "{name}: {needle:?} not in {detail}");
        }
        let logged = server
            .logs
            .events()
            .into_iter()
            .any(|e| e.function == name && e.level == Level::Error && e.message.contains("failed to start"));
        assert!(logged, "{name}: the load error is logged");
    }
    // The healthy functions keep answering.
    let response = server.client().get(server.at("/functions/modern")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn an_uncaught_exception_is_a_500_with_its_message() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let response = server.client().post(server.at("/api/apps/fixture-app/functions/throws")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body = json_of(response).await;
    assert_eq!(body["message"], "kaboom: the order service is down");
    assert_eq!(body["code"], "function_error");
    assert!(body["detail"].as_str().unwrap().contains("throws/entry.ts"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_request_past_the_timeout_is_a_504_and_the_worker_is_replaced() {
    let project = fixture("functions");
    let config = Config { function_timeout: Duration::from_secs(2), ..TestServer::config() };
    let server = TestServer::start_with(project.path(), config).await;
    let client = server.client();
    assert_eq!(client.get(server.at("/functions/slow/fast")).send().await.unwrap().status(), 200);
    let old = pids_of(&server, "slow");
    assert_eq!(old.len(), 1);

    let slow = client.get(server.at("/functions/slow")).send();
    let other = async {
        // Other functions answer while the slow one hangs.
        let response = client.get(server.at("/functions/modern")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    };
    let (response, ()) = tokio::join!(slow, other);
    let response = response.unwrap();
    assert_eq!(response.status(), 504);
    let body = json_of(response).await;
    assert_eq!(body["code"], "function_timeout");
    assert!(body["message"].as_str().unwrap().contains("within 2s"), "{body}");

    assert_eq!(client.get(server.at("/functions/slow/fast")).send().await.unwrap().status(), 200);
    let new = pids_of(&server, "slow");
    assert_eq!(new.len(), 1);
    assert_ne!(new, old, "the timed-out worker was replaced");
    eventually("the old worker to exit", || !process_alive(old[0])).await;
    server.stop().await;
}

#[tokio::test]
async fn a_crashed_worker_is_replaced_on_the_next_request() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let client = server.client();
    let first = json_of(client.get(server.at("/functions/exits")).send().await.unwrap()).await["pid"].as_u64().unwrap();
    let response = client.get(server.at("/functions/exits/now")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body = json_of(response).await;
    assert_eq!(body["code"], "function_crashed");
    assert!(body["detail"].as_str().unwrap().contains("exited with code 1"), "{body}");
    let second =
        json_of(client.get(server.at("/functions/exits")).send().await.unwrap()).await["pid"].as_u64().unwrap();
    assert_ne!(first, second);
    assert!(!process_alive(first as u32));
    server.stop().await;
}

#[tokio::test]
async fn concurrent_first_requests_share_one_worker() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let requests = (0..16).map(|_| {
        let client = server.client();
        let url = server.at("/functions/slow-boot");
        async move { json_of(client.get(url).send().await.unwrap()).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let pids: HashSet<u64> = answers.iter().map(|a| a["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 1, "{answers:?}");
    let served: HashSet<u64> = answers.iter().map(|a| a["served"].as_u64().unwrap()).collect();
    assert_eq!(served.len(), 16, "every request reached the one worker");
    assert_eq!(pids_of(&server, "slow-boot").len(), 1);
    let starts = server
        .logs
        .events()
        .into_iter()
        .filter(|e| e.function == "slow-boot" && e.message.starts_with("worker started"))
        .count();
    assert_eq!(starts, 1);
    server.stop().await;
}

#[tokio::test]
async fn idle_workers_stop() {
    let project = fixture("functions");
    let config = Config { idle_timeout: Duration::from_millis(300), ..TestServer::config() };
    let server = TestServer::start_with(project.path(), config).await;
    assert_eq!(server.client().get(server.at("/functions/modern")).send().await.unwrap().status(), 200);
    let pids = pids_of(&server, "modern");
    assert_eq!(pids.len(), 1);
    eventually("the idle worker to stop", || pids_of(&server, "modern").is_empty() && !process_alive(pids[0])).await;
    // The next request starts a new one.
    assert_eq!(server.client().get(server.at("/functions/modern")).send().await.unwrap().status(), 200);
    assert_eq!(pids_of(&server, "modern").len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn console_output_becomes_tagged_log_events() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let response =
        server.client().get(server.at("/functions/logs")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let lines = || -> Vec<(Level, String, Option<String>)> {
        server
            .logs
            .events()
            .into_iter()
            .filter(|e| e.function == "logs" && !e.system)
            .map(|e| (e.level, e.message, e.request_id))
            .collect()
    };
    eventually("five log lines", || lines().len() >= 5).await;
    let trace = Some("trace-42".to_string());
    assert_eq!(
        lines(),
        vec![
            (Level::Info, "a log line { n: 1 }".to_string(), trace.clone()),
            (Level::Info, "an info line".to_string(), trace.clone()),
            (Level::Debug, "a debug line".to_string(), trace.clone()),
            (Level::Warning, "a warning line".to_string(), trace.clone()),
            (Level::Error, "an error line".to_string(), trace.clone()),
        ]
    );
    let event = server.logs.events().into_iter().find(|e| e.function == "logs").unwrap();
    assert_eq!(event.app_id, "fixture-app");
    assert!(!event.version.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn workers_run_with_least_privilege() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let seen = json_of(server.client().get(server.at("/functions/sandbox")).send().await.unwrap()).await;
    assert_eq!(
        seen,
        json!({
            "writeOwnFolder": "NotCapable",
            "writeTemp": "allowed",
            "readOwnFile": "allowed",
            "readEtc": "NotCapable",
            "run": "NotCapable",
            "ffi": "NotCapable",
            "env": "allowed",
        })
    );
    server.stop().await;
}

#[tokio::test]
async fn npm_imports_ignore_the_projects_package_json_and_deno_json() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let response = server.client().post(server.at("/api/apps/fixture-app/functions/sdk")).send().await.unwrap();
    let status = response.status();
    let body = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "ok": true, "hasServiceRole": true }));
    server.stop().await;
}

#[tokio::test]
async fn shared_code_is_importable() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let response =
        server.client().post(server.at("/functions/shared-import")).json(&json!({"name": "Ada"})).send().await.unwrap();
    assert_eq!(json_of(response).await["message"], "Hello, Ada!");
    server.stop().await;
}

#[tokio::test]
async fn edits_are_picked_up_without_a_restart() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let client = server.client();
    let reloads = || {
        server
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, homebase_server::dev::DevEvent::Loaded { reload: true, .. }))
            .count()
    };
    let get = |path: &str| client.get(server.at(path)).send();

    assert_eq!(json_of(get("/functions/modern").await.unwrap()).await["shape"], "export default function");
    project.write("base44/functions/modern/entry.ts", "export default () => Response.json({ shape: 'edited' });\n");
    eventually("a reload after the edit", || reloads() >= 1).await;
    assert_eq!(json_of(get("/functions/modern").await.unwrap()).await["shape"], "edited");

    // A shared file change reaches the functions that import it.
    project.write("base44/shared/greet.ts", "export const greet = (name: string) => `Hi ${name}`;\n");
    eventually("a reload after the shared edit", || reloads() >= 2).await;
    let response =
        client.post(server.at("/functions/shared-import")).json(&json!({"name": "Ada"})).send().await.unwrap();
    assert_eq!(json_of(response).await["message"], "Hi Ada");

    // A broken edit is reported; the rest keep serving.
    project.write("base44/functions/modern/entry.ts", "export default () => {\n");
    eventually("a reload after the broken edit", || reloads() >= 3).await;
    assert_eq!(get("/functions/modern").await.unwrap().status(), 502);
    assert_eq!(get("/functions/fetch-object").await.unwrap().status(), 200);

    // Any file the function imports counts, whatever its extension.
    project.write("base44/functions/mjs-user/lib.mjs", "export const word = 'one';\n");
    project.write(
        "base44/functions/mjs-user/entry.ts",
        "import { word } from './lib.mjs';\nexport default () => Response.json({ word });\n",
    );
    eventually("the new function", || server.app.snapshot().functions.contains_key("mjs-user")).await;
    assert_eq!(json_of(get("/functions/mjs-user").await.unwrap()).await["word"], "one");
    let before = reloads();
    project.write("base44/functions/mjs-user/lib.mjs", "export const word = 'two';\n");
    eventually("a reload after the .mjs edit", || reloads() > before).await;
    assert_eq!(json_of(get("/functions/mjs-user").await.unwrap()).await["word"], "two");

    // New functions appear, removed ones go.
    project.write("base44/functions/brand-new/entry.ts", "Deno.serve(() => Response.json({ fresh: true }));\n");
    std::fs::remove_dir_all(project.path().join("base44/functions/echo")).unwrap();
    eventually("a reload after adding and removing", || {
        reloads() >= 4
            && server.app.snapshot().functions.contains_key("brand-new")
            && !server.app.snapshot().functions.contains_key("echo")
    })
    .await;
    assert_eq!(json_of(get("/functions/brand-new").await.unwrap()).await["fresh"], true);
    assert_eq!(get("/functions/echo").await.unwrap().status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_every_worker() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    for name in ["modern", "echo", "fetch-object"] {
        assert_eq!(server.client().get(server.at(&format!("/functions/{name}"))).send().await.unwrap().status(), 200);
    }
    let pids: Vec<u32> = server.runtime.workers().into_iter().filter_map(|w| w.pid).collect();
    assert_eq!(pids.len(), 3);
    let runtime = server.runtime.clone();
    server.stop().await;
    assert!(runtime.workers().is_empty());
    for pid in pids {
        assert!(!process_alive(pid), "worker {pid} outlived shutdown");
    }
}

#[tokio::test]
async fn background_work_finishes_before_a_worker_stops() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let response = server.client().post(server.at("/functions/wait-until")).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let logs = server.logs.clone();
    // Stopping retires the worker at once; its waitUntil task still runs to the end.
    server.stop().await;
    let finished = logs.events().iter().any(|e| e.function == "wait-until" && e.message == "background finished");
    assert!(finished, "the waitUntil task was cut off");
}

#[tokio::test]
async fn local_front_ends_get_cors_and_other_origins_reach_the_function() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let client = server.client();
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.at("/api/apps/fixture-app/functions/echo"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "http://localhost:5173");
    assert_eq!(preflight.headers()["access-control-allow-headers"], "authorization, content-type");

    let response = client
        .post(server.at("/api/apps/fixture-app/functions/echo"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "http://localhost:5173");
    assert_eq!(response.headers()["access-control-allow-credentials"], "true");
    // Errors from Homebase itself are readable by the page too.
    let missing = client
        .post(server.at("/api/apps/fixture-app/functions/nope"))
        .header("origin", "http://127.0.0.1:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["access-control-allow-origin"], "http://127.0.0.1:3000");

    // Another origin's preflight is the function's business.
    let foreign = client
        .request(reqwest::Method::OPTIONS, server.at("/functions/echo"))
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 200);
    assert!(foreign.headers().get("access-control-allow-origin").is_none());
    assert_eq!(json_of(foreign).await["method"], "OPTIONS");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_requests_log_under_their_own_ids() {
    let project = fixture("functions");
    let server = TestServer::start(project.path()).await;
    let client = server.client();
    let call = |n: String| {
        let request =
            client.get(server.at(&format!("/functions/tagged?n={n}"))).header("x-request-id", format!("id-{n}"));
        async move { assert_eq!(request.send().await.unwrap().status(), 200) }
    };
    // A line is never charged to the wrong request. Untagged lines are allowed only until the
    // worker has loaded its request context, shortly after its first response.
    for round in 0..50 {
        let (a, b) = (format!("{round}a"), format!("{round}b"));
        tokio::join!(call(a.clone()), call(b.clone()));
        let line = |n: &str| {
            let want = format!("line {n}");
            let events = server.logs.events();
            events.iter().find(|e| e.message == want).map(|e| e.request_id.clone())
        };
        eventually("both lines", || line(&a).is_some() && line(&b).is_some()).await;
        let (tag_a, tag_b) = (line(&a).unwrap(), line(&b).unwrap());
        for (n, tag) in [(&a, &tag_a), (&b, &tag_b)] {
            if let Some(tag) = tag {
                assert_eq!(tag, &format!("id-{n}"), "line {n} charged to another request");
            }
        }
        if tag_a.is_some() && tag_b.is_some() {
            server.stop().await;
            return;
        }
    }
    panic!("concurrent lines were never tagged");
}

#[tokio::test]
async fn dotenv_files_are_local_secrets_and_edits_reach_the_next_request() {
    let project = fixture("functions");
    project.write(".env", "FIXTURE_SECRET=from-env-file\nnot a line\n");
    let server = TestServer::start(project.path()).await;
    let client = server.client();
    let secret = || async {
        let body = json_of(client.get(server.at("/functions/runtime-module")).send().await.unwrap()).await;
        (body["secret"].clone(), body["env"].clone())
    };
    assert_eq!(secret().await, (json!("from-env-file"), json!("from-env-file")));
    let problems = |events: &[homebase_server::dev::DevEvent]| -> Vec<String> {
        events
            .iter()
            .flat_map(|e| match e {
                homebase_server::dev::DevEvent::Loaded { problems, .. } => problems.clone(),
                _ => Vec::new(),
            })
            .collect()
    };
    let reported = problems(&server.events.lock().unwrap());
    assert!(reported.iter().any(|p| p.contains(".env:2:1") && p.contains("has no `=`")), "{reported:?}");

    // `.env.local` wins over `.env`; the edit is picked up without a restart.
    let pid = pids_of(&server, "runtime-module");
    project.write(".env.local", "FIXTURE_SECRET=\"from local\"\n");
    eventually("the new value", || {
        server.app.snapshot().functions["runtime-module"].env
            == vec![("FIXTURE_SECRET".to_string(), "from local".to_string())]
    })
    .await;
    assert_eq!(secret().await, (json!("from local"), json!("from local")));
    assert_ne!(pids_of(&server, "runtime-module"), pid, "a new worker holds the new value");

    server.stop().await;
}

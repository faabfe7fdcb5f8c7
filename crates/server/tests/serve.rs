//! `homebase serve` end to end: the router `serve` builds (function routes and the management
//! API) on 127.0.0.1:0, over a SQLite store in a temp data folder, with real Deno checking and
//! running what is deployed.

use futures_util::StreamExt;
use homebase_testkit::{ADMIN_KEY, TestPlatform, eventually, json_of, process_alive};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

/// Status and JSON body of a response.
async fn answer(response: reqwest::Response) -> (u16, Value) {
    (response.status().as_u16(), json_of(response).await)
}

/// A management request with `key` in the `api_key` header (as the official CLI sends it).
fn with_key(server: &TestPlatform, key: &str, method: Method, path: &str) -> RequestBuilder {
    server.client().request(method, server.at(path)).header("api_key", key)
}

fn admin(server: &TestPlatform, method: Method, path: &str) -> RequestBuilder {
    with_key(server, ADMIN_KEY, method, path)
}

async fn create_app(server: &TestPlatform, name: &str) -> String {
    let response = admin(server, Method::POST, "/api/apps").json(&json!({ "name": name })).send().await.unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// A deploy body.
fn payload(entry: &str, files: &[(&str, &str)]) -> Value {
    let files: Vec<Value> = files.iter().map(|(path, content)| json!({ "path": path, "content": content })).collect();
    json!({ "entry": entry, "files": files, "automations": [] })
}

/// A function that answers `{"version": version}`.
fn answering(version: &str) -> Value {
    let code = format!("Deno.serve(() => Response.json({{ version: \"{version}\" }}));\n");
    payload("entry.ts", &[("entry.ts", &code)])
}

/// `PUT …/backend-functions/{name}` (`name` as it goes in the URL) with `key`.
async fn deploy_with(server: &TestPlatform, key: &str, app: &str, name: &str, body: &Value) -> (u16, Value) {
    let path = format!("/api/apps/{app}/backend-functions/{name}");
    answer(with_key(server, key, Method::PUT, &path).json(body).send().await.unwrap()).await
}

async fn deploy(server: &TestPlatform, app: &str, name: &str, body: &Value) -> (u16, Value) {
    deploy_with(server, ADMIN_KEY, app, name, body).await
}

/// Deploys and expects a new deployment; returns its id.
async fn deployed(server: &TestPlatform, app: &str, name: &str, body: &Value) -> String {
    let (status, outcome) = deploy(server, app, name, body).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "deployed", "{outcome}");
    let id = outcome["deployment_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("d_") && id.len() == 34, "{id}");
    id
}

/// SDK invoke of `name` (unencoded, may contain `/`).
async fn invoke(server: &TestPlatform, app: &str, name: &str) -> (u16, Value) {
    let url = server.at(&format!("/api/apps/{app}/functions/{name}"));
    answer(server.client().post(url).json(&json!({})).send().await.unwrap()).await
}

/// `(name, deployment_id)` of every function of the app, as the management API lists them.
async fn listed(server: &TestPlatform, app: &str) -> Vec<(String, String)> {
    let path = format!("/api/apps/{app}/backend-functions");
    let (status, body) = answer(admin(server, Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["deployment_id"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn every_management_route_needs_a_key_and_app_keys_stay_in_their_app() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let client = server.client();

    let (status, body) = answer(client.get(server.at("/api/apps")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(body["message"], "No API key was sent");
    assert!(body["detail"].as_str().unwrap().contains("api_key"), "{body}");

    let not_keys = [
        ("api_key", "b44k_notthekey00000000000000000000000".to_string()),
        ("authorization", "Bearer b44k_notthekey00000000000000000000000".to_string()),
        ("api_key", ADMIN_KEY[..ADMIN_KEY.len() - 1].to_string()),
        // A user token (a JWT) is not an API key.
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl".to_string()),
    ];
    for (header, value) in &not_keys {
        let (status, body) =
            answer(client.get(server.at("/api/apps")).header(*header, value).send().await.unwrap()).await;
        assert_eq!(status, 401, "{header}: {value}");
        assert_eq!(body["code"], "unauthorized");
        assert_eq!(body["message"], "The API key is not valid");
    }

    // The admin key as a bearer works like the api_key header.
    let response =
        client.post(server.at("/api/apps")).bearer_auth(ADMIN_KEY).json(&json!({ "name": "mine" })).send().await;
    let (status, mine) = answer(response.unwrap()).await;
    assert_eq!(status, 201, "{mine}");
    let mine = mine["id"].as_str().unwrap().to_string();
    let other = create_app(&server, "other").await;
    let (status, apps) = answer(client.get(server.at("/api/apps")).bearer_auth(ADMIN_KEY).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(apps.as_array().unwrap().len(), 2, "{apps}");

    let response =
        admin(&server, Method::POST, &format!("/api/apps/{mine}/keys")).json(&json!({ "name": "ci" })).send().await;
    let (status, minted) = answer(response.unwrap()).await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(minted["app_id"], mine.as_str());
    assert_eq!(minted["name"], "ci");
    let app_key = minted["key"].as_str().unwrap().to_string();
    assert!(app_key.starts_with("b44k_"), "{app_key}");

    // Its own app: deploy, list, read.
    let (status, outcome) = deploy_with(&server, &app_key, &mine, "hello", &answering("mine")).await;
    assert_eq!((status, &outcome["status"]), (200, &json!("deployed")), "{outcome}");
    let path = format!("/api/apps/{mine}/backend-functions");
    let (status, list) = answer(client.get(server.at(&path)).bearer_auth(&app_key).send().await.unwrap()).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["functions"][0]["name"], "hello");
    let (status, app) =
        answer(with_key(&server, &app_key, Method::GET, &format!("/api/apps/{mine}")).send().await.unwrap()).await;
    assert_eq!((status, &app["name"]), (200, &json!("mine")));
    let (status, apps) = answer(with_key(&server, &app_key, Method::GET, "/api/apps").send().await.unwrap()).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = apps.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [mine.as_str()], "an app key sees only its app");
    assert_eq!(invoke(&server, &mine, "hello").await, (200, json!({ "version": "mine" })));

    // Another app, and admin-only routes: 403.
    let forbidden = [
        with_key(&server, &app_key, Method::PUT, &format!("/api/apps/{other}/backend-functions/hello"))
            .json(&answering("intruder")),
        with_key(&server, &app_key, Method::GET, &format!("/api/apps/{other}/backend-functions")),
        with_key(&server, &app_key, Method::GET, &format!("/api/apps/{other}")),
        with_key(&server, &app_key, Method::POST, "/api/apps").json(&json!({ "name": "sneaky" })),
        with_key(&server, &app_key, Method::POST, &format!("/api/apps/{mine}/keys")),
    ];
    for request in forbidden {
        let (status, body) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "forbidden");
        assert!(body["message"].is_string() && body["detail"].is_string(), "{body}");
    }
    assert!(listed(&server, &other).await.is_empty(), "nothing was deployed to the other app");
    let (_, apps) = answer(admin(&server, Method::GET, "/api/apps").send().await.unwrap()).await;
    assert_eq!(apps.as_array().unwrap().len(), 2, "no app was created: {apps}");
    server.stop().await;
}

#[tokio::test]
async fn apps_are_created_listed_and_looked_up() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;

    let response = admin(&server, Method::POST, "/api/apps").json(&json!({ "name": "  Shop  " })).send().await;
    let (status, app) = answer(response.unwrap()).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap();
    assert!(id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(app["name"], "Shop");
    assert!(app["created_at"].as_i64().unwrap() > 1_600_000_000_000, "{app}");

    let (status, apps) = answer(admin(&server, Method::GET, "/api/apps").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(apps, json!([app]));
    let (status, got) = answer(admin(&server, Method::GET, &format!("/api/apps/{id}")).send().await.unwrap()).await;
    assert_eq!((status, got), (200, app.clone()));

    let (status, body) =
        answer(admin(&server, Method::GET, "/api/apps/0123456789abcdef01234567").send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "app_not_found");
    let (status, body) = answer(
        admin(&server, Method::PUT, "/api/apps/0123456789abcdef01234567/backend-functions/hello")
            .json(&answering("v1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["code"]), (404, &json!("app_not_found")));

    for bad in ["not json", "{}", r#"{"name": 7}"#] {
        let response = admin(&server, Method::POST, "/api/apps").body(bad).send().await.unwrap();
        let (status, body) = answer(response).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "bad_json", "{bad}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    }
    let response = admin(&server, Method::POST, "/api/apps").json(&json!({ "name": "  " })).send().await;
    assert_eq!(response.unwrap().status(), 400);
    let (_, apps) = answer(admin(&server, Method::GET, "/api/apps").send().await.unwrap()).await;
    assert_eq!(apps.as_array().unwrap().len(), 1, "no app from the bad requests: {apps}");
    server.stop().await;
}

#[tokio::test]
async fn deployed_functions_answer_including_nested_names_with_shared_files() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;

    let id = deployed(&server, &app, "hello", &answering("v1")).await;
    let (status, again) = deploy(&server, &app, "hello", &answering("v1")).await;
    assert_eq!(status, 200);
    assert_eq!(again, json!({ "status": "unchanged", "deployment_id": id }));
    assert_eq!(invoke(&server, &app, "hello").await, (200, json!({ "version": "v1" })));

    // `email/send` sits two folders deep, so its shared folder is three levels up.
    let entry = r#"import { greet } from "../../../shared/x.ts";
Deno.serve((req) => Response.json({ message: greet("Ada"), path: new URL(req.url).pathname }));
"#;
    let shared = "export const greet = (name: string) => `Hello from shared, ${name}`;\n";
    let nested = payload("entry.ts", &[("entry.ts", entry), ("../../../shared/x.ts", shared)]);
    let nested_id = deployed(&server, &app, "email%2Fsend", &nested).await;
    let (status, body) = invoke(&server, &app, "email/send").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "message": "Hello from shared, Ada", "path": "/email/send" }));
    let (status, body) = invoke(&server, &app, "email").await;
    assert_eq!((status, &body["code"]), (404, &json!("function_not_found")));

    let path = format!("/api/apps/{app}/backend-functions");
    let (status, list) = answer(admin(&server, Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let mut files = nested["files"].as_array().unwrap().clone();
    files.sort_by_key(|f| f["path"].as_str().unwrap().to_string());
    assert_eq!(
        list,
        json!({ "functions": [
            { "name": "email/send", "deployment_id": nested_id, "entry": "entry.ts", "files": files, "automations": [] },
            {
                "name": "hello",
                "deployment_id": id,
                "entry": "entry.ts",
                "files": answering("v1")["files"],
                "automations": [],
            },
        ] })
    );
    server.stop().await;
}

#[tokio::test]
async fn history_lists_activations_and_rollback_switches_between_them() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    let v1 = deployed(&server, &app, "hello", &answering("v1")).await;
    let v2 = deployed(&server, &app, "hello", &answering("v2")).await;
    assert_ne!(v1, v2);
    assert_eq!(invoke(&server, &app, "hello").await.1, json!({ "version": "v2" }));

    let history = |expected: usize| {
        let request = admin(&server, Method::GET, &format!("/api/apps/{app}/backend-functions/hello/deployments"));
        async move {
            let (status, body) = answer(request.send().await.unwrap()).await;
            assert_eq!(status, 200, "{body}");
            let entries = body["deployments"].as_array().unwrap().clone();
            assert_eq!(entries.len(), expected, "{body}");
            let sequences: Vec<i64> = entries.iter().map(|e| e["sequence"].as_i64().unwrap()).collect();
            assert!(sequences.windows(2).all(|w| w[0] > w[1]), "newest first: {sequences:?}");
            let active: Vec<bool> = entries.iter().map(|e| e["active"].as_bool().unwrap()).collect();
            assert!(active[0] && active[1..].iter().all(|a| !a), "only the newest is active: {body}");
            entries.iter().map(|e| e["deployment_id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(history(2).await, [v2.clone(), v1.clone()]);

    let rollback = |body: Value| {
        let request = admin(&server, Method::POST, &format!("/api/apps/{app}/backend-functions/hello/rollback"));
        async move { answer(request.json(&body).send().await.unwrap()).await }
    };
    assert_eq!(rollback(json!({})).await, (200, json!({ "status": "rolled_back", "deployment_id": v1 })));
    assert_eq!(invoke(&server, &app, "hello").await.1, json!({ "version": "v1" }));
    assert_eq!(listed(&server, &app).await, [("hello".to_string(), v1.clone())]);
    assert_eq!(history(3).await, [v1.clone(), v2.clone(), v1.clone()]);

    assert_eq!(
        rollback(json!({ "deployment_id": v2 })).await,
        (200, json!({ "status": "rolled_back", "deployment_id": v2 }))
    );
    assert_eq!(invoke(&server, &app, "hello").await.1, json!({ "version": "v2" }));

    let (status, body) = rollback(json!({ "deployment_id": "d_00000000000000000000000000000000" })).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(invoke(&server, &app, "hello").await.1, json!({ "version": "v2" }));

    let path = format!("/api/apps/{app}/backend-functions/nope/rollback");
    let (status, body) = answer(admin(&server, Method::POST, &path).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, 404, "{body}");
    let path = format!("/api/apps/{app}/backend-functions/nope/deployments");
    let (status, body) = answer(admin(&server, Method::GET, &path).send().await.unwrap()).await;
    assert_eq!((status, &body["code"]), (404, &json!("function_not_found")));
    server.stop().await;
}

#[tokio::test]
async fn a_deploy_lets_in_flight_requests_finish_on_the_old_code() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    // v1 answers only once the caller has finished sending the body: the test holds it open.
    let code = |version: &str| {
        format!(
            "Deno.serve(async (req) => {{\n  console.log(\"received {version}\");\n  const body = await req.text();\n  \
             return Response.json({{ version: \"{version}\", body }});\n}});\n"
        )
    };
    let v1 = deployed(&server, &app, "slow", &payload("entry.ts", &[("entry.ts", &code("v1"))])).await;

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let url = server.at(&format!("/api/apps/{app}/functions/slow"));
    let in_flight = tokio::spawn(server.client().post(url).body(reqwest::Body::wrap_stream(stream)).send());
    tx.send(Ok(b"first half, ".to_vec())).await.unwrap();
    let received = |version: &str| {
        let want = format!("received {version}");
        server.logs.events().iter().filter(|e| e.function == "slow" && e.message == want).count()
    };
    eventually("v1 to receive the request", || received("v1") == 1).await;
    let old = server.runtime.workers().into_iter().find(|w| w.function == "slow").unwrap();
    assert_eq!((old.version.as_str(), old.in_flight), (v1.as_str(), 1));
    let old_pid = old.pid.unwrap();

    let v2 = deployed(&server, &app, "slow", &payload("entry.ts", &[("entry.ts", &code("v2"))])).await;
    // New requests go to v2 while v1 is still busy.
    assert_eq!(invoke(&server, &app, "slow").await, (200, json!({ "version": "v2", "body": "{}" })));
    let workers: Vec<_> = server.runtime.workers().into_iter().filter(|w| w.function == "slow").collect();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].version, v2);
    assert_ne!(workers[0].pid, Some(old_pid));
    assert!(process_alive(old_pid), "the old worker is kept for its in-flight request");
    assert!(!in_flight.is_finished());

    tx.send(Ok(b"second half".to_vec())).await.unwrap();
    drop(tx);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await, json!({ "version": "v1", "body": "first half, second half" }));
    eventually("the old worker to exit after its last request", || !process_alive(old_pid)).await;
    assert_eq!(received("v1"), 1, "v1 served only the first request");
    assert_eq!(invoke(&server, &app, "slow").await.1["version"], "v2");
    server.stop().await;
}

#[tokio::test]
async fn invalid_deploys_store_nothing_and_keep_the_active_deployment() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    let v1 = deployed(&server, &app, "hello", &answering("v1")).await;
    let before = server.store.stats().await.unwrap();

    let good = "Deno.serve(() => new Response(\"never\"));\n";
    let escaping = format!("{}etc/x.ts", "../".repeat(17));
    let mut bad_automation = answering("v2");
    bad_automation["automations"] = json!([{
        "type": "scheduled",
        "name": "nightly",
        "schedule_mode": "recurring",
        "schedule_type": "cron",
        "cron_expression": "0 9 * *",
    }]);
    let big = "x".repeat(2 * 1024 * 1024 + 1);
    let cases: Vec<(&str, &str, Value, u16, &str, &str)> = vec![
        (
            "a syntax error",
            "hello",
            payload("entry.ts", &[("entry.ts", "Deno.serve(() => {\n  return x(;\n});\n")]),
            422,
            "module_invalid",
            "SyntaxError",
        ),
        (
            "a missing import",
            "hello",
            payload("entry.ts", &[("entry.ts", &format!("import \"./nope.ts\";\n{good}"))]),
            422,
            "module_invalid",
            "nope.ts",
        ),
        ("an entry not among the files", "hello", payload("main.ts", &[("entry.ts", good)]), 400, "invalid", "main.ts"),
        (
            "a path escaping the deployment",
            "hello",
            payload("entry.ts", &[("entry.ts", good), (&escaping, "export {}")]),
            400,
            "invalid",
            "climbs more than 16",
        ),
        (
            "an absolute path",
            "hello",
            payload("entry.ts", &[("entry.ts", good), ("/etc/x.ts", "export {}")]),
            400,
            "invalid",
            "absolute",
        ),
        ("a dotted name", "a.b", answering("v2"), 422, "invalid_name", "dot"),
        ("an invalid automation", "hello", bad_automation, 422, "invalid_automation", "0 9 * *"),
        (
            "a file over 2 MiB",
            "hello",
            payload("entry.ts", &[("entry.ts", good), ("big.txt", &big)]),
            413,
            "file_too_large",
            "big.txt",
        ),
        ("no entry field", "hello", json!({ "files": [] }), 400, "bad_json", ""),
    ];
    for (what, name, body, status, code, said) in cases {
        let (got, error) = deploy(&server, &app, name, &body).await;
        assert_eq!(got, status, "{what}: {error}");
        assert_eq!(error["code"], code, "{what}: {error}");
        assert!(error["message"].as_str().unwrap().contains(said), "{what}: {error}");
        assert!(error["detail"].is_string(), "{what}: {error}");
        assert_eq!(listed(&server, &app).await, [("hello".to_string(), v1.clone())], "after {what}");
        assert_eq!(server.store.stats().await.unwrap(), before, "after {what}");
        assert_eq!(invoke(&server, &app, "hello").await, (200, json!({ "version": "v1" })), "after {what}");
    }
    let scratch: Vec<_> = std::fs::read_dir(data.path().join("scratch")).unwrap().collect();
    assert!(scratch.is_empty(), "checks leave no scratch folders: {scratch:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_app_holds_at_most_fifty_functions_even_when_deploys_race() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    let deploy_all = |names: std::ops::Range<usize>, parallel: usize| {
        let (server, app) = (&server, &app);
        futures_util::stream::iter(names)
            .map(move |i| async move { deploy(server, app, &format!("fn-{i}"), &answering(&format!("fn-{i}"))).await })
            .buffer_unordered(parallel)
            .collect::<Vec<(u16, Value)>>()
    };
    for (status, body) in deploy_all(0..44, 6).await {
        assert_eq!((status, &body["status"]), (200, &json!("deployed")), "{body}");
    }
    // Twelve new names at once for the last six places: all pass the first check together, and
    // only six may be stored.
    let racing = deploy_all(44..56, 12).await;
    let stored = racing.iter().filter(|(status, _)| *status == 200).count();
    let refused: Vec<&Value> = racing.iter().filter(|(status, _)| *status == 422).map(|(_, body)| body).collect();
    assert_eq!((stored, refused.len()), (6, 6), "{racing:?}");
    assert!(refused.iter().all(|body| body["code"] == "too_many_functions"), "{refused:?}");
    assert_eq!(listed(&server, &app).await.len(), 50);

    let (status, body) = deploy(&server, &app, "one-more", &answering("one-more")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "too_many_functions");
    assert_eq!(body["message"], "The app has 50 functions; at most 50 are allowed");
    assert_eq!(invoke(&server, &app, "one-more").await.0, 404);
    assert_eq!(listed(&server, &app).await.len(), 50);

    // Redeploying one of the fifty is not a new function.
    deployed(&server, &app, "fn-7", &answering("fn-7 v2")).await;
    assert_eq!(invoke(&server, &app, "fn-7").await, (200, json!({ "version": "fn-7 v2" })));
    server.stop().await;
}

#[tokio::test]
async fn deleted_functions_stop_answering() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    deployed(&server, &app, "hello", &answering("v1")).await;
    deployed(&server, &app, "keep", &answering("keep")).await;
    assert_eq!(invoke(&server, &app, "hello").await.0, 200);
    let pid = server.runtime.workers().into_iter().find(|w| w.function == "hello").unwrap().pid.unwrap();

    let path = format!("/api/apps/{app}/backend-functions/hello");
    let (status, body) = answer(admin(&server, Method::DELETE, &path).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({ "success": true })));
    let (status, body) = invoke(&server, &app, "hello").await;
    assert_eq!((status, &body["code"]), (404, &json!("function_not_found")), "{body}");
    assert_eq!(listed(&server, &app).await.into_iter().map(|(n, _)| n).collect::<Vec<_>>(), ["keep"]);
    eventually("the deleted function's worker to stop", || !process_alive(pid)).await;

    let (status, body) = answer(admin(&server, Method::DELETE, &path).send().await.unwrap()).await;
    assert_eq!((status, &body["code"]), (404, &json!("function_not_found")), "{body}");
    assert_eq!(invoke(&server, &app, "keep").await, (200, json!({ "version": "keep" })));
    server.stop().await;
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let response = server.client().get(server.at("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    let (status, body) = answer(server.client().get(server.at("/api/nothing/here")).send().await.unwrap()).await;
    assert_eq!((status, &body["code"]), (404, &json!("route_not_found")));
    server.stop().await;
}

#[tokio::test]
async fn deployments_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    let hello = deployed(&server, &app, "hello", &answering("v1")).await;
    let entry = "import { word } from \"../../../shared/word.ts\";\nDeno.serve(() => Response.json({ word }));\n";
    let nested =
        payload("entry.ts", &[("entry.ts", entry), ("../../../shared/word.ts", "export const word = \"hi\";\n")]);
    let nested = deployed(&server, &app, "email%2Fsend", &nested).await;
    let response = admin(&server, Method::POST, &format!("/api/apps/{app}/keys")).send().await.unwrap();
    let app_key = json_of(response).await["key"].as_str().unwrap().to_string();
    assert_eq!(invoke(&server, &app, "hello").await.0, 200);
    server.stop().await;

    // The materialised copies are a cache: the restart writes them again from the store.
    std::fs::remove_dir_all(data.path().join("deployments")).unwrap();
    let server = TestPlatform::start(data.path()).await;
    assert_eq!(invoke(&server, &app, "hello").await, (200, json!({ "version": "v1" })));
    assert_eq!(invoke(&server, &app, "email/send").await, (200, json!({ "word": "hi" })));
    let expected = [("email/send".to_string(), nested), ("hello".to_string(), hello)];
    assert_eq!(listed(&server, &app).await, expected);
    let (status, _) = deploy_with(&server, &app_key, &app, "hello", &answering("v1")).await;
    assert_eq!(status, 200, "the app key still works");
    server.stop().await;
}

/// Parallel redeploys of several functions (as `homebase functions deploy` sends them): every
/// function that was answered "deployed" serves that very version afterwards.
#[tokio::test]
async fn parallel_deploys_all_take_effect() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "parallel").await;
    let deploy = |name: String, version: String| {
        let body = json!({
            "entry": "entry.ts",
            "files": [{ "path": "entry.ts", "content": format!("Deno.serve(() => Response.json({{ version: \"{version}\" }}));\n") }],
            "automations": [],
        });
        let request = admin(&server, Method::PUT, &format!("/api/apps/{app}/backend-functions/{name}")).json(&body);
        async move {
            let (status, body) = answer(request.send().await.unwrap()).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    for round in 0..6 {
        let deploys = (0..6).map(|i| deploy(format!("fn-{i}"), format!("r{round}-{i}")));
        futures_util::future::join_all(deploys).await;
        for i in 0..6 {
            let response =
                server.client().get(server.at(&format!("/api/apps/{app}/functions/fn-{i}"))).send().await.unwrap();
            assert_eq!(json_of(response).await["version"], format!("r{round}-{i}"), "round {round}, fn-{i}");
        }
    }
    server.stop().await;
}

/// `POST …/secrets` with `secrets` and `key`.
async fn set_secrets(server: &TestPlatform, key: &str, app: &str, secrets: &Value) -> (u16, Value) {
    answer(with_key(server, key, Method::POST, &format!("/api/apps/{app}/secrets")).json(secrets).send().await.unwrap())
        .await
}

/// A function that answers with `TOKEN` as `Deno.env.get` and `secrets.get` see it, once the
/// caller has sent the whole body (so a test can hold a request in flight).
const READS_TOKEN: &str = r#"import { secrets } from "base44:runtime";
const atImport = Deno.env.get("TOKEN") ?? null;
export default async function (req) {
  console.log("received");
  await req.text();
  return Response.json({ env: Deno.env.get("TOKEN") ?? null, runtime: secrets.get("TOKEN") ?? null, atImport });
}
"#;

#[tokio::test]
async fn secrets_reach_functions_and_a_change_reaches_the_next_request() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    assert_eq!(
        set_secrets(&server, ADMIN_KEY, &app, &json!({ "TOKEN": "one", "OTHER": "x" })).await,
        (200, json!({ "success": true }))
    );
    deployed(&server, &app, "reads", &payload("entry.ts", &[("entry.ts", READS_TOKEN)])).await;
    let seen = |value: Value| json!({ "env": value, "runtime": value, "atImport": value });
    assert_eq!(invoke(&server, &app, "reads").await, (200, seen(json!("one"))));

    // A request in flight on the old worker while the value changes.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let url = server.at(&format!("/api/apps/{app}/functions/reads"));
    let in_flight = tokio::spawn(server.client().post(url).body(reqwest::Body::wrap_stream(stream)).send());
    tx.send(Ok(b"half".to_vec())).await.unwrap();
    let received = || server.logs.events().iter().filter(|e| e.function == "reads" && e.message == "received").count();
    eventually("the held request to arrive", || received() == 2).await;
    let old = server.runtime.workers().into_iter().find(|w| w.function == "reads").unwrap();
    let old_pid = old.pid.unwrap();

    assert_eq!(set_secrets(&server, ADMIN_KEY, &app, &json!({ "TOKEN": "two" })).await.0, 200);
    assert_eq!(invoke(&server, &app, "reads").await, (200, seen(json!("two"))), "the next request sees it");
    assert!(process_alive(old_pid), "the old worker keeps its in-flight request");
    drop(tx);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(json_of(response).await, seen(json!("one")), "the in-flight request finishes on the old worker");
    eventually("the old worker to exit", || !process_alive(old_pid)).await;

    // Deleted: undefined for both.
    let path = format!("/api/apps/{app}/secrets?secret_name=TOKEN");
    assert_eq!(
        answer(admin(&server, Method::DELETE, &path).send().await.unwrap()).await,
        (200, json!({ "success": true }))
    );
    assert_eq!(invoke(&server, &app, "reads").await, (200, seen(Value::Null)));
    // Secrets survive a restart (same master key).
    assert_eq!(set_secrets(&server, ADMIN_KEY, &app, &json!({ "TOKEN": "three" })).await.0, 200);
    server.stop().await;
    let server = TestPlatform::start(data.path()).await;
    assert_eq!(invoke(&server, &app, "reads").await, (200, seen(json!("three"))));
    server.stop().await;
}

#[tokio::test]
async fn secrets_are_listed_masked_validated_and_kept_to_their_app() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let mine = create_app(&server, "mine").await;
    let other = create_app(&server, "other").await;
    let response = admin(&server, Method::POST, &format!("/api/apps/{mine}/keys")).send().await.unwrap();
    let app_key = answer(response).await.1["key"].as_str().unwrap().to_string();
    let value = "sk_live_value_that_must_not_leak";

    let secrets = json!({ "STRIPE_KEY": value, "_OTHER": "also-hidden" });
    assert_eq!(set_secrets(&server, &app_key, &mine, &secrets).await, (200, json!({ "success": true })));
    let list = |key: String, app: String| {
        let request = with_key(&server, &key, Method::GET, &format!("/api/apps/{app}/secrets"));
        async move { answer(request.send().await.unwrap()).await }
    };
    let (status, listed) = list(app_key.clone(), mine.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(listed, json!({ "STRIPE_KEY": "••••••••", "_OTHER": "••••••••" }));
    assert_eq!(list(ADMIN_KEY.into(), other.clone()).await, (200, json!({})));

    // Bad names: 400 naming the name, nothing of the call stored, no value in the body.
    for bad in ["1BAD", "A-B"] {
        let (status, body) = set_secrets(&server, ADMIN_KEY, &mine, &json!({ "GOOD": value, bad: value })).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "invalid_secrets");
        assert!(body["message"].as_str().unwrap().contains(&format!("'{bad}'")), "{body}");
        assert!(body["detail"].as_str().unwrap().contains("letters, digits"), "{body}");
        assert!(!body.to_string().contains(value), "{body}");
    }
    for body in [json!({ "N": 5 }), json!(["A"]), json!({})] {
        let (status, answer) = set_secrets(&server, ADMIN_KEY, &mine, &body).await;
        assert_eq!((status, &answer["code"]), (400, &json!("invalid_secrets")), "{answer}");
    }
    assert_eq!(list(ADMIN_KEY.into(), mine.clone()).await.1.as_object().unwrap().len(), 2, "nothing else stored");

    // Deleting: 404 for an unknown name, 400 without one.
    let delete = |key: &str, app: &str, query: &str| {
        with_key(&server, key, Method::DELETE, &format!("/api/apps/{app}/secrets{query}")).send()
    };
    let (status, body) = answer(delete(ADMIN_KEY, &mine, "?secret_name=NOPE").await.unwrap()).await;
    assert_eq!((status, &body["code"]), (404, &json!("secret_not_found")), "{body}");
    let (status, body) = answer(delete(ADMIN_KEY, &mine, "").await.unwrap()).await;
    assert_eq!(status, 400, "{body}");

    // An app's key cannot touch another app's secrets.
    assert_eq!(set_secrets(&server, ADMIN_KEY, &other, &json!({ "THEIRS": "t" })).await.0, 200);
    let (status, body) = set_secrets(&server, &app_key, &other, &json!({ "X": "y" })).await;
    assert_eq!((status, &body["code"]), (403, &json!("forbidden")));
    assert_eq!(list(app_key.clone(), other.clone()).await.0, 403);
    assert_eq!(answer(delete(&app_key, &other, "?secret_name=THEIRS").await.unwrap()).await.0, 403);
    assert_eq!(list(ADMIN_KEY.into(), other.clone()).await.1, json!({ "THEIRS": "••••••••" }));
    let (status, _) = answer(delete(&app_key, &mine, "?secret_name=STRIPE_KEY").await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(list(app_key, mine).await.1, json!({ "_OTHER": "••••••••" }));
    assert!(server.logs.events().iter().all(|e| !e.message.contains(value)), "no value in the logs");
    server.stop().await;
}

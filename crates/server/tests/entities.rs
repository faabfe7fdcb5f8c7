//! App data over HTTP on a real `serve` (`TestPlatform`, on SQLite and on PostgreSQL): schemas pushed as the official CLI
//! pushes them, the records API with every caller (anonymous, a user, another user, an admin,
//! the service role) against every rule form, validation and query errors, the page cap, and
//! the official `@base44/sdk` from Node and from inside a Deno function
//! (`tests/node/sdk_entities.mjs`).

use std::path::Path;

use homebase_store::{NewUser, UserRole};
use homebase_testkit::{ADMIN_KEY, PlatformOptions, TestPlatform, json_of, official_sdk};
use reqwest::Method;
use serde_json::{Value, json};

struct Setup {
    server: TestPlatform,
    _data: tempfile::TempDir,
    app: String,
}

async fn setup(options: PlatformOptions) -> Setup {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start_with(data.path(), options).await;
    let response = server.client().post(server.at("/api/apps")).header("api_key", ADMIN_KEY);
    let response = response.json(&json!({ "name": "data" })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let app = json_of(response).await["id"].as_str().unwrap().to_string();
    Setup { server, _data: data, app }
}

fn schemas() -> Value {
    json!({"entityNameToSchema": {
        "Note": {
            "name": "Note", "type": "object",
            "properties": {
                "text": {"type": "string"},
                "secret": {"type": "string", "rls": {"read": {"user_condition": {"role": "admin"}}}},
                "n": {"type": "number"}
            },
            "required": ["text"],
            "rls": {
                "read": {"created_by": "{{user.email}}"},
                "create": {"user_condition": {"role": {"$in": ["user", "admin"]}}},
                "update": {"created_by_id": "{{user.id}}"},
                "delete": {"created_by_id": "{{user.id}}"}
            }
        },
        "Post": {
            "properties": {"title": {"type": "string"}, "published": {"type": "boolean", "default": false}},
            "rls": {"read": {"$or": [{"published": true}, {"created_by": "{{user.email}}"}]}, "write": {"created_by": "{{user.email}}"}}
        },
        "Team": {
            "properties": {"team_id": {"type": "string"}, "name": {"type": "string"}},
            "rls": {"read": {"data.team_id": "{{user.data.team_id}}"}, "create": true}
        },
        "Task": {
            "properties": {
                "title": {"type": "string"},
                "status": {"type": "string", "enum": ["open", "done"], "default": "open"},
                "n": {"type": "integer"},
                "due": {"type": "string", "format": "date"},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["title"]
        }
    }})
}

/// A caller: its bearer token (none for anonymous).
#[derive(Clone)]
struct Who(Option<String>);

impl Setup {
    async fn push(&self, body: &Value) -> (u16, Value) {
        let response = self
            .server
            .client()
            .put(self.server.at(&format!("/api/apps/{}/entity-schemas", self.app)))
            .header("api_key", ADMIN_KEY)
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), json_of(response).await)
    }

    async fn user(&self, email: &str, role: UserRole, data: Value) -> Who {
        let store = &self.server.store;
        let new = NewUser { email: email.into(), password: None, full_name: None, role, is_verified: true };
        let user = store.create_user(&self.app, new).await.unwrap();
        let user = if data.as_object().is_some_and(|m| !m.is_empty()) {
            let update = homebase_store::UserUpdate { data: data.as_object().unwrap().clone(), ..Default::default() };
            store.update_user(&self.app, &user.id, update).await.unwrap()
        } else {
            user
        };
        Who(Some(self.server.auth.user_token(&user)))
    }

    fn service(&self) -> Who {
        Who(Some(self.server.auth.tokens.mint_service(&self.app)))
    }

    async fn call(&self, who: &Who, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = self.server.at(&format!("/api/apps/{}/entities/{path}", self.app));
        let mut request = self.server.client().request(method, url);
        if let Some(token) = &who.0 {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn ids(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn schemas_push_as_the_cli_pushes_them() {
    let s = setup(PlatformOptions::default()).await;
    let (status, body) = s.push(&schemas()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"created": ["Note", "Post", "Task", "Team"], "updated": [], "deleted": []}));
    let mut fewer = schemas();
    fewer["entityNameToSchema"].as_object_mut().unwrap().remove("Team");
    fewer["entityNameToSchema"]["Task"]["properties"]["extra"] = json!({"type": "string"});
    let (_, body) = s.push(&fewer).await;
    assert_eq!(body, json!({"created": [], "updated": ["Task"], "deleted": ["Team"]}));
    // Without a key, or with a broken schema: refused, saying why.
    let anonymous = s.server.client().put(s.server.at(&format!("/api/apps/{}/entity-schemas", s.app))).json(&fewer);
    assert_eq!(anonymous.send().await.unwrap().status(), 401);
    let (status, body) = s.push(&json!({"entityNameToSchema": {"Bad": {"properties": {"x": {"type": "text"}}}}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("'x'"), "{body}");
    s.server.stop().await;
}

#[tokio::test]
async fn every_caller_gets_what_the_rules_allow() {
    every_caller_gets_what_the_rules_allow_on(PlatformOptions::default()).await;
}

#[tokio::test]
async fn every_caller_gets_what_the_rules_allow_on_postgres() {
    let schema = homebase_store::pg_testing::TestSchema::new().await;
    every_caller_gets_what_the_rules_allow_on(PlatformOptions {
        database_url: Some(schema.url.clone()),
        ..Default::default()
    })
    .await;
}

async fn every_caller_gets_what_the_rules_allow_on(options: PlatformOptions) {
    let s = setup(options).await;
    assert_eq!(s.push(&schemas()).await.0, 200);
    let anon = Who(None);
    let ann = s.user("ann@x.test", UserRole::User, json!({"team_id": "red"})).await;
    let bob = s.user("bob@x.test", UserRole::User, json!({"team_id": "blue"})).await;
    let admin = s.user("root@x.test", UserRole::Admin, json!({})).await;
    let service = s.service();

    // create: a user_condition with an operator.
    let (status, body) = s.call(&anon, Method::POST, "Note", Some(json!({"text": "x"}))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "Permission denied");
    let (status, a1) = s.call(&ann, Method::POST, "Note", Some(json!({"text": "ann's", "secret": "s1", "n": 1}))).await;
    assert_eq!(status, 201, "{a1}");
    assert_eq!((a1["created_by"].as_str(), a1["text"].as_str()), (Some("ann@x.test"), Some("ann's")));
    assert!(a1.get("secret").is_none(), "a field the user may not read is left out: {a1}");
    let (_, b1) = s.call(&bob, Method::POST, "note", Some(json!({"text": "bob's", "n": 2}))).await;
    let (status, _) = s.call(&admin, Method::POST, "Note", Some(json!({"text": "admin's"}))).await;
    assert_eq!(status, 201);
    let (status, svc) = s.call(&service, Method::POST, "Note", Some(json!({"text": "service's"}))).await;
    assert_eq!(status, 201);
    assert_eq!(svc["created_by"], Value::Null);
    let (a1_id, b1_id) = (a1["id"].as_str().unwrap(), b1["id"].as_str().unwrap());

    // read: created_by template; admins and the service role see everything.
    for (who, expected) in [(&anon, 0), (&ann, 1), (&bob, 1), (&admin, 4), (&service, 4)] {
        let (status, list) = s.call(who, Method::GET, "Note", None).await;
        assert_eq!((status, list.as_array().unwrap().len()), (200, expected), "{list}");
        let (_, count) = s.call(who, Method::GET, "Note/count", None).await;
        assert_eq!(count["count"], expected, "counts obey the rules too");
    }
    let (_, mine) = s.call(&ann, Method::GET, "Note", None).await;
    assert_eq!(ids(&mine), [a1_id.to_string()]);
    let (_, seen) = s.call(&admin, Method::GET, &format!("Note/{a1_id}"), None).await;
    assert_eq!(seen["secret"], "s1");
    // A query on a field the caller may not read sees it as missing.
    let (_, none) = s.call(&ann, Method::GET, "Note?q=%7B%22secret%22%3A%22s1%22%7D", None).await;
    assert_eq!(none, json!([]));
    let (status, _) = s.call(&bob, Method::GET, &format!("Note/{a1_id}"), None).await;
    assert_eq!(status, 404, "another user's record is missing");
    let (status, body) = s.call(&anon, Method::GET, &format!("Note/{a1_id}"), None).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], format!("Entity Note with ID {a1_id} not found"));

    // update and delete: created_by_id template; 404 when refused.
    let (status, _) = s.call(&bob, Method::PUT, &format!("Note/{a1_id}"), Some(json!({"text": "hacked"}))).await;
    assert_eq!(status, 404);
    let (status, updated) = s.call(&ann, Method::PUT, &format!("Note/{a1_id}"), Some(json!({"n": 5}))).await;
    assert_eq!((status, updated["n"].as_i64(), updated["text"].as_str()), (200, Some(5), Some("ann's")), "a merge");
    let (status, _) = s.call(&bob, Method::DELETE, &format!("Note/{a1_id}"), None).await;
    assert_eq!(status, 404);
    let (status, body) = s.call(&bob, Method::DELETE, &format!("Note/{b1_id}"), None).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (_, body) =
        s.call(&service, Method::DELETE, "Note", Some(json!({"text": {"$in": ["admin's", "service's"]}}))).await;
    assert_eq!(body, json!({"success": true, "deleted": 2}));

    // $or with a record field: published posts are public; writes are the author's.
    let (_, p1) = s.call(&ann, Method::POST, "Post", Some(json!({"title": "draft"}))).await;
    assert_eq!(p1["published"], false, "the default");
    s.call(&ann, Method::POST, "Post", Some(json!({"title": "out", "published": true}))).await;
    let (_, public) = s.call(&anon, Method::GET, "Post", None).await;
    assert_eq!(public.as_array().unwrap().len(), 1, "{public}");
    let (_, own) = s.call(&ann, Method::GET, "Post?sort=title", None).await;
    assert_eq!(
        own.as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap()).collect::<Vec<_>>(),
        ["draft", "out"]
    );
    let (status, _) = s.call(&bob, Method::POST, "Post", Some(json!({"title": "x"}))).await;
    assert_eq!(status, 201, "write: created_by is the creator, so creating is allowed");
    let (status, _) = s.call(&anon, Method::POST, "Post", Some(json!({"title": "x"}))).await;
    assert_eq!(status, 403, "an anonymous creator is nobody");

    // data.<field> against {{user.data.<field>}}.
    for (who, team) in [(&ann, "red"), (&bob, "blue"), (&service, "green")] {
        s.call(who, Method::POST, "Team", Some(json!({"team_id": team, "name": team}))).await;
    }
    let (_, red) = s.call(&ann, Method::GET, "Team", None).await;
    assert_eq!(red.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect::<Vec<_>>(), ["red"]);
    let (_, nothing) = s.call(&anon, Method::GET, "Team", None).await;
    assert_eq!(nothing, json!([]), "a template the caller cannot fill matches nothing");
    s.server.stop().await;
}

#[tokio::test]
async fn the_records_api_validates_queries_sorts_and_pages() {
    let options = PlatformOptions { entity_page_cap: 4, ..Default::default() };
    let s = setup(options).await;
    assert_eq!(s.push(&schemas()).await.0, 200);
    let anon = Who(None);
    // Validation: 422 in the body of reference §3.3, naming the field.
    for (input, field) in [
        (json!({}), "title"),
        (json!({"title": "a", "status": "later"}), "status"),
        (json!({"title": "a", "n": 1.5}), "n"),
        (json!({"title": "a", "due": "31/05/2024"}), "due"),
        (json!({"title": "a", "tags": ["x", 1]}), "tags[1]"),
    ] {
        let (status, body) = s.call(&anon, Method::POST, "Task", Some(input.clone())).await;
        assert_eq!(status, 422, "{input}: {body}");
        assert_eq!(body["error_type"], "ValidationError");
        assert!(body["message"].as_str().unwrap().starts_with(&format!("Error in field {field}: ")), "{body}");
        assert!(body["detail"].as_str().is_some());
    }
    let (status, body) = s.call(&anon, Method::POST, "Task/bulk", Some(json!([{"title": "ok"}, {"n": 1}]))).await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().starts_with("Error in field [1].title"), "{body}");

    let mut batch = Vec::new();
    for i in 0..6 {
        batch.push(json!({"title": format!("t{i}"), "n": i, "tags": if i % 2 == 0 { json!(["even"]) } else { json!([]) }, "ignored": true}));
    }
    let (status, made) = s.call(&anon, Method::POST, "Task/bulk", Some(Value::Array(batch))).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made.as_array().unwrap().len(), 6);
    assert!(made[0].get("ignored").is_none() && made[0]["status"] == "open");

    let titles = |list: &Value| {
        list.as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let (_, page) = s.call(&anon, Method::GET, "Task?sort=n&limit=2&skip=1", None).await;
    assert_eq!(titles(&page), ["t1", "t2"]);
    let q = "%7B%22n%22%3A%7B%22%24gte%22%3A2%7D%2C%22tags%22%3A%22even%22%7D"; // {"n":{"$gte":2},"tags":"even"}
    let (_, page) = s.call(&anon, Method::GET, &format!("Task?q={q}&sort=-n&fields=title"), None).await;
    assert_eq!(page, json!([{"id": page[0]["id"], "title": "t4"}, {"id": page[1]["id"], "title": "t2"}]));
    let (_, page) = s.call(&anon, Method::GET, "Task?title=t3", None).await;
    assert_eq!(titles(&page), ["t3"], "another parameter is an equality filter");
    // The page cap (4 here): a page asked without a limit, or past it, is cut.
    let (_, page) = s.call(&anon, Method::GET, "Task", None).await;
    assert_eq!(page.as_array().unwrap().len(), 4);
    let (_, page) = s.call(&anon, Method::GET, "Task?limit=10000", None).await;
    assert_eq!(page.as_array().unwrap().len(), 4);
    let (_, count) = s.call(&anon, Method::GET, "Task/count", None).await;
    assert_eq!(count["count"], 6);

    // updateMany: operators, validated per record, rules applied.
    let (status, body) = s
        .call(
            &anon,
            Method::PATCH,
            "Task/update-many",
            Some(json!({"query": {"n": {"$lt": 2}}, "data": {"$set": {"status": "done"}, "$inc": {"n": 100}}})),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"success": true, "updated": 2, "has_more": false})));
    let (status, body) = s
        .call(
            &anon,
            Method::PATCH,
            "Task/update-many",
            Some(json!({"query": {}, "data": {"$set": {"status": "later"}}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = s
        .call(
            &anon,
            Method::PATCH,
            "Task/update-many",
            Some(json!({"query": {}, "data": {"$set": {"n": 1}, "$inc": {"n": 1}}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    s.call(
        &anon,
        Method::PATCH,
        "Task/update-many",
        Some(json!({"query": {"n": {"$gte": 100}}, "data": {"$inc": {"n": -100}}})),
    )
    .await;

    // Cursor pages: a cursor is bound to its query.
    let (_, first) = s.call(&anon, Method::GET, "Task/v2/list?sort=n&limit=4", None).await;
    assert_eq!(
        (titles(&first["items"]), &first["has_more"]),
        (vec!["t0".into(), "t1".into(), "t2".into(), "t3".into()], &json!(true))
    );
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = s.call(&anon, Method::GET, &format!("Task/v2/list?sort=n&limit=4&cursor={cursor}"), None).await;
    assert_eq!(titles(&second["items"]), ["t4", "t5"]);
    assert_eq!((&second["has_more"], &second["next_cursor"]), (&json!(false), &Value::Null));
    let (status, body) =
        s.call(&anon, Method::GET, &format!("Task/v2/list?sort=-n&limit=4&cursor={cursor}"), None).await;
    assert_eq!(status, 400, "another sort with the cursor: {body}");
    let (status, body) = s.call(&anon, Method::GET, "Task/v2/list?distinct=status", None).await;
    assert_eq!((status, body["code"].as_str()), (501, Some("not_implemented")));

    // Queries that cannot be expressed: 400 naming the operator.
    let (status, body) = s.call(&anon, Method::GET, "Task?q=%7B%22%24where%22%3A%221%22%7D", None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("$where"), "{body}");
    let (status, _) = s.call(&anon, Method::GET, "Task?q=%7Bnope", None).await;
    assert_eq!(status, 400);
    let (status, body) = s.call(&anon, Method::GET, "Nope", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("entity_not_found")));
    assert!(body["detail"].as_str().unwrap().contains("Task"), "{body}");
    let (status, body) = s.call(&anon, Method::DELETE, "Task", Some(json!({}))).await;
    assert_eq!(status, 400, "deleteMany needs a query: {body}");
    // Methods not built yet: 501 naming them.
    let (status, body) = s.call(&anon, Method::POST, "Task/aggregate", Some(json!({}))).await;
    assert_eq!((status, body["code"].as_str()), (501, Some("not_implemented")));
    let (status, _) = s.call(&anon, Method::PUT, "Task/bulk", Some(json!([]))).await;
    assert_eq!(status, 501);
    s.server.stop().await;
}

/// A function that uses entities as real Base44 functions do: `asServiceRole` and as the
/// calling user.
const FUNCTION: &str = r#"import { createClientFromRequest } from "npm:@base44/sdk@0.8.50";

Deno.serve(async (req) => {
  const base44 = createClientFromRequest(req);
  const { title } = await req.json();
  const user = await base44.auth.me();
  const mine = await base44.entities.Task.create({ title, n: 7 });
  const all = await base44.asServiceRole.entities.Task.filter({ n: { $gte: 7 } }, "-created_date", 500);
  const visible = await base44.entities.Task.list("-created_date", 50);
  const counted = await base44.asServiceRole.entities.Task.count({ title });
  await base44.asServiceRole.entities.Task.update(mine.id, { status: "done" });
  const got = await base44.entities.Task.get(mine.id);
  return Response.json({ user: user.email, mine, all: all.length, visible: visible.length, counted, status: got.status });
});
"#;

#[tokio::test]
async fn the_official_sdk_uses_entities_from_node_and_from_a_function() {
    the_official_sdk_uses_entities_on(PlatformOptions::default()).await;
}

#[tokio::test]
async fn the_official_sdk_uses_entities_on_postgres() {
    let schema = homebase_store::pg_testing::TestSchema::new().await;
    the_official_sdk_uses_entities_on(PlatformOptions { database_url: Some(schema.url.clone()), ..Default::default() })
        .await;
}

async fn the_official_sdk_uses_entities_on(options: PlatformOptions) {
    let sdk = official_sdk().await;
    let s = setup(options).await;
    let mut body = schemas();
    // Tasks are the caller's own for reading; the service role sees them all.
    body["entityNameToSchema"]["Task"]["rls"] = json!({"read": {"created_by": "{{user.email}}"}});
    assert_eq!(s.push(&body).await.0, 200);
    let deploy =
        json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": FUNCTION }], "automations": [] });
    let response = s
        .server
        .client()
        .put(s.server.at(&format!("/api/apps/{}/backend-functions/tasks", s.app)))
        .header("api_key", ADMIN_KEY)
        .json(&deploy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let Who(Some(token)) = s.user("sdk@x.test", UserRole::User, json!({})).await else { unreachable!() };
    let Who(Some(other)) = s.user("other@x.test", UserRole::User, json!({})).await else { unreachable!() };

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/sdk_entities.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .env("SDK_URL", &sdk)
        .env("SERVER_URL", &s.server.url)
        .env("APP_ID", &s.app)
        .env("USER_TOKEN", &token)
        .env("OTHER_TOKEN", &other)
        .output()
        .await
        .expect("the SDK test needs node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Node SDK script failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(r#""ok":true"#), "{stdout}");
    s.server.stop().await;
}

/// `homebase dev` serves the project's `base44/entities` and loads them again when they change,
/// keeping the records.
#[tokio::test]
async fn dev_serves_the_projects_entities_and_reloads_them() {
    let project = homebase_testkit::fixture("functions");
    let server = homebase_testkit::TestServer::start(project.path()).await;
    let app = server.app.app_id().to_string();
    let client = server.client();
    let tasks = server.at(&format!("/api/apps/{app}/entities/task"));
    let created = client.post(&tasks).json(&json!({"title": "a", "priority": 1})).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let created = json_of(created).await;
    assert!(created.get("priority").is_none(), "not declared yet: {created}");
    project.write(
        "base44/entities/task.jsonc",
        r#"{"name": "Task", "properties": {"title": {"type": "string"}, "priority": {"type": "number"}}, "required": ["title"]}"#,
    );
    let mut reloaded = false;
    for _ in 0..750 {
        let response = client.post(&tasks).json(&json!({"title": "b", "priority": 2})).send().await.unwrap();
        assert_eq!(response.status(), 201);
        if json_of(response).await["priority"] == 2 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reloaded, "the new schema was loaded");
    let listed = json_of(client.get(format!("{tasks}?sort=created_date&limit=1")).send().await.unwrap()).await;
    assert_eq!(listed[0]["id"], created["id"], "the records made before are kept");
    server.stop().await;
}

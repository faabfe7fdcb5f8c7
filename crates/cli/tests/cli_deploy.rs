//! Our client commands (`login`, `apps`, `functions …`, `deploy`) as a user runs them: the real
//! `homebase` binary against the real `homebase serve` (temp data folder, port 0, real Deno),
//! on a temp copy of examples/quickstart.

mod common;

use std::path::Path;

use common::Running;
use homebase_testkit::{copy_dir, repo_root};
use serde_json::{Value, json};
use tokio::process::Command;

const ADMIN_KEY: &str = "b44k_clideploytest00000000000000000000";

/// The variables that choose a target; each run starts without them.
const TARGET_ENV: [&str; 6] =
    ["HOMEBASE_URL", "HOMEBASE_TOKEN", "HOMEBASE_APP_ID", "BASE44_API_URL", "BASE44_API_KEY", "BASE44_APP_ID"];

/// What one run of the CLI printed.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// stdout as JSON lines (for runs with `--json`).
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
            .collect()
    }

    fn events(&self, event: &str) -> Vec<Value> {
        self.lines().into_iter().filter(|l| l["event"] == event).collect()
    }

    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "{}", self.text());
        self
    }
}

/// Runs `homebase ARGS` in `dir` with the saved login in `config` and only the target variables
/// in `env`.
async fn homebase(dir: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homebase"));
    cmd.args(args).current_dir(dir).env("HOMEBASE_CONFIG_DIR", config).env("NO_COLOR", "1");
    for name in TARGET_ENV {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied());
    let output = cmd.output().await.expect("homebase runs");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn quickstart() -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/quickstart"), project.path()).unwrap();
    project
}

#[tokio::test]
async fn login_is_saved_privately_and_flags_beat_env_beat_login() {
    use std::os::unix::fs::PermissionsExt;

    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config/homebase");
    let outside = tempfile::tempdir().unwrap(); // not a project
    let here = outside.path();
    let url = server.url.as_str();
    // An address nothing listens on: a port the system just gave out and took back.
    let dead = {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        format!("http://127.0.0.1:{port}")
    };
    let dead = dead.as_str();

    // A wrong key is refused and nothing is saved.
    let out = homebase(here, &config, &["login", "--url", url, "--token", "b44k_wrong"], &[]).await;
    assert_eq!(out.code, 1, "{}", out.text());
    assert!(out.stderr.contains("refused the API key") && out.stderr.contains("not valid"), "{}", out.stderr);
    assert!(!config.join("credentials.json").exists());
    // Nothing given at all: every way to give a URL is named.
    let out = homebase(here, &config, &["apps", "list"], &[]).await;
    assert_eq!(out.code, 1);
    for way in ["--url", "HOMEBASE_URL", "BASE44_API_URL", "homebase login"] {
        assert!(out.stderr.contains(way), "{way}: {}", out.stderr);
    }

    // Login from the environment (prompt-free); the file is 0600 in a 0700 folder.
    let out = homebase(here, &config, &["--json", "login"], &[("HOMEBASE_URL", url), ("HOMEBASE_TOKEN", ADMIN_KEY)])
        .await
        .ok();
    assert_eq!(out.lines()[0]["event"], "logged_in");
    let file = config.join("credentials.json");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o700);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved, json!({ "url": url, "token": ADMIN_KEY }));

    // Later commands use it.
    let out = homebase(here, &config, &["apps", "create", "shop"], &[]).await.ok();
    assert!(out.stdout.starts_with("Created app 'shop': "), "{}", out.stdout);
    assert!(!out.stdout.contains("Linked"), "nothing to link outside a project: {}", out.stdout);
    let out = homebase(here, &config, &["--json", "apps", "create", "depot"], &[]).await.ok();
    let depot = out.lines()[0]["app"]["id"].as_str().unwrap().to_string();
    let out = homebase(here, &config, &["--json", "apps", "list"], &[]).await.ok();
    let names: Vec<String> =
        out.lines()[0]["apps"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"shop".to_string()) && names.contains(&"depot".to_string()), "{names:?}");
    let text = homebase(here, &config, &["apps", "list"], &[]).await.ok().stdout;
    assert!(text.starts_with("ID") && text.contains(&depot), "{text}");

    // The key: the flag beats HOMEBASE_TOKEN, which beats BASE44_API_KEY and the login.
    let bad_env = [("HOMEBASE_TOKEN", "b44k_bad")];
    let out = homebase(here, &config, &["apps", "list"], &bad_env).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("The key came from HOMEBASE_TOKEN"), "{}", out.stderr);
    homebase(here, &config, &["apps", "list", "--token", ADMIN_KEY], &bad_env).await.ok();
    homebase(here, &config, &["apps", "list"], &[("HOMEBASE_TOKEN", ADMIN_KEY), ("BASE44_API_KEY", "b44k_bad")])
        .await
        .ok();
    // BASE44_API_KEY (often a key for Base44's own cloud) only goes to BASE44_API_URL: for the
    // saved login's server, the saved key is used.
    homebase(here, &config, &["apps", "list"], &[("BASE44_API_KEY", "b44k_bad")]).await.ok();
    let base44_env = [("BASE44_API_URL", server.url.as_str()), ("BASE44_API_KEY", "b44k_bad")];
    let out = homebase(here, &config, &["apps", "list"], &base44_env).await;
    assert!(out.stderr.contains("The key came from BASE44_API_KEY"), "{}", out.stderr);

    // The URL: the flag beats HOMEBASE_URL, which beats BASE44_API_URL and the login. The saved
    // key only goes to the saved server.
    let out = homebase(here, &config, &["apps", "list"], &[("HOMEBASE_URL", dead)]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("No API key was given") && out.stderr.contains("the saved login is for"),
        "{}",
        out.stderr
    );
    let out = homebase(here, &config, &["apps", "list", "--token", ADMIN_KEY], &[("HOMEBASE_URL", dead)]).await;
    assert!(out.stderr.contains(&format!("Could not reach the server at {dead}")), "{}", out.stderr);
    homebase(here, &config, &["apps", "list", "--url", url], &[("HOMEBASE_URL", dead)]).await.ok();
    let out = homebase(here, &config, &["apps", "list"], &[("HOMEBASE_URL", url), ("BASE44_API_URL", dead)]).await;
    out.ok();

    // The app: the flag beats HOMEBASE_APP_ID, which beats BASE44_APP_ID and .app.jsonc.
    let project = quickstart();
    let p = project.path();
    std::fs::write(p.join("base44/.app.jsonc"), format!("{{\"id\": \"{depot}\"}}\n")).unwrap();
    let out = homebase(p, &config, &["--json", "functions", "list"], &[]).await.ok();
    assert_eq!(out.lines()[0], json!({ "functions": [] }));
    let out = homebase(p, &config, &["functions", "list"], &[("BASE44_APP_ID", "nope")]).await;
    assert!(out.code == 1 && out.stderr.contains("No app with id 'nope'"), "{}", out.text());
    let both = [("HOMEBASE_APP_ID", depot.as_str()), ("BASE44_APP_ID", "nope")];
    homebase(p, &config, &["functions", "list"], &both).await.ok();
    let out = homebase(p, &config, &["functions", "list"], &[("HOMEBASE_APP_ID", "nope")]).await;
    assert_eq!(out.code, 1);
    homebase(p, &config, &["functions", "list", "--app-id", &depot], &[("HOMEBASE_APP_ID", "nope")]).await.ok();
    let out = homebase(here, &config, &["functions", "list"], &[]).await;
    assert!(out.stderr.contains("No app was given") && out.stderr.contains("--app-id"), "{}", out.stderr);

    // Logout forgets it.
    let out = homebase(here, &config, &["logout"], &[]).await.ok();
    assert!(out.stdout.starts_with("Logged out"), "{}", out.stdout);
    assert!(!file.exists());
    let out = homebase(here, &config, &["apps", "list"], &[]).await;
    assert!(out.stderr.contains("No server URL was given"), "{}", out.stderr);
}

#[tokio::test]
async fn deploy_pull_delete_rollback_and_force_on_the_quickstart() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let config = tempfile::tempdir().unwrap();
    let config = config.path();
    let env = [("HOMEBASE_URL", server.url.as_str()), ("HOMEBASE_TOKEN", ADMIN_KEY)];
    let project = quickstart();
    let p = project.path();
    let functions = p.join("base44/functions");

    // Created inside a project without .app.jsonc: the project is linked to the new app.
    let out = homebase(p, config, &["apps", "create", "quickstart"], &env).await.ok();
    assert!(out.stdout.contains("Linked the project"), "{}", out.stdout);
    let link: Value = serde_json::from_str(&std::fs::read_to_string(p.join("base44/.app.jsonc")).unwrap()).unwrap();
    let app_id = link["id"].as_str().unwrap().to_string();
    assert!(out.stdout.contains(&app_id));
    let http = reqwest::Client::new();
    let call = |name: &str, body: Value| {
        http.post(server.at(&format!("/api/apps/{app_id}/functions/{name}"))).json(&body).send()
    };

    // Deploy: progress per function, then a summary table.
    let out = homebase(p, config, &["functions", "deploy"], &env).await.ok();
    for name in ["clock", "hello", "orders/summary"] {
        assert!(out.stdout.contains(&format!("{name} … deployed (")), "{name}: {}", out.stdout);
    }
    assert!(out.stdout.contains("[1/3] ") && out.stdout.contains("[3/3] "), "{}", out.stdout);
    assert!(out.stdout.contains("FUNCTION") && out.stdout.contains("3 deployed, 0 unchanged"), "{}", out.stdout);
    let hello = call("hello", json!({ "name": "Ada" })).await.unwrap();
    assert_eq!(hello.json::<Value>().await.unwrap(), json!({ "message": "Hello, Ada!" }));
    let summary = call("orders/summary", json!({ "orders": [{ "total": 250 }] })).await.unwrap();
    assert_eq!(summary.json::<Value>().await.unwrap(), json!({ "count": 1, "total": "$2.50" }));

    // Again, as JSON lines: everything unchanged.
    let out = homebase(p, config, &["--json", "functions", "deploy"], &env).await.ok();
    let lines = out.events("function");
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["status"] == "unchanged" && l["total"] == 3), "{lines:?}");
    let summary = &out.events("summary")[0];
    assert_eq!((summary["deployed"].as_u64(), summary["unchanged"].as_u64()), (Some(0), Some(3)));
    let first_hello =
        lines.iter().find(|l| l["name"] == "hello").unwrap()["deployment_id"].as_str().unwrap().to_string();

    // Code that does not load is refused with Deno's message; the old code keeps serving.
    let hello_file = functions.join("hello/entry.ts");
    let original_hello = std::fs::read_to_string(&hello_file).unwrap();
    std::fs::write(&hello_file, "Deno.serve(() => {\n  return x(;\n});\n").unwrap();
    let out = homebase(p, config, &["functions", "deploy", "hello"], &env).await;
    assert_eq!(out.code, 1, "{}", out.text());
    assert!(out.stdout.contains("hello … failed"), "{}", out.stdout);
    assert!(out.stdout.contains("SyntaxError") && out.stdout.contains("entry.ts:2"), "{}", out.stdout);
    assert!(out.stderr.contains("1 of 1 function failed"), "{}", out.stderr);
    let out = homebase(p, config, &["--json", "functions", "deploy", "hello"], &env).await;
    assert_eq!(out.code, 1);
    let failed = &out.events("function")[0];
    assert_eq!(failed["status"], "failed");
    assert!(failed["message"].as_str().unwrap().contains("SyntaxError"), "{failed}");
    assert!(!failed["detail"].as_str().unwrap().is_empty(), "{failed}");
    assert_eq!(out.events("error").len(), 1);
    let hello = call("hello", json!({ "name": "Bo" })).await.unwrap();
    assert_eq!(hello.json::<Value>().await.unwrap(), json!({ "message": "Hello, Bo!" }));

    // A project problem in a function being deployed stops the deploy before any upload.
    std::fs::write(&hello_file, &original_hello).unwrap();
    std::fs::create_dir_all(functions.join("broken")).unwrap();
    std::fs::write(functions.join("broken/function.jsonc"), "{\"name\": \"broken\",").unwrap();
    let out = homebase(p, config, &["functions", "deploy"], &env).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("broken/function.jsonc") && out.stderr.contains("Nothing was deployed"),
        "{}",
        out.stderr
    );
    let out = homebase(p, config, &["functions", "deploy", "hello"], &env).await.ok();
    assert!(out.stdout.contains("hello … unchanged"), "{}", out.stdout);
    std::fs::remove_dir_all(functions.join("broken")).unwrap();

    // List.
    let out = homebase(p, config, &["functions", "list"], &env).await.ok();
    assert!(out.stdout.starts_with("NAME") && out.stdout.contains(&first_hello), "{}", out.stdout);
    let out = homebase(p, config, &["--json", "functions", "list"], &env).await.ok();
    let listed = &out.lines()[0]["functions"];
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["clock", "hello", "orders/summary"]);
    assert_eq!(listed[1]["entry"], "entry.ts");

    // Pull into a copy without functions or shared code: every file comes back byte for byte,
    // and no function.jsonc is invented for zero-config functions.
    let pulled = quickstart();
    let q = pulled.path();
    std::fs::copy(p.join("base44/.app.jsonc"), q.join("base44/.app.jsonc")).unwrap();
    std::fs::remove_dir_all(q.join("base44/functions")).unwrap();
    std::fs::remove_dir_all(q.join("base44/shared")).unwrap();
    let out = homebase(q, config, &["functions", "pull"], &env).await.ok();
    assert!(out.stdout.contains("orders/summary … pulled"), "{}", out.stdout);
    for file in [
        "functions/clock/entry.ts",
        "functions/hello/entry.ts",
        "functions/orders/summary/entry.ts",
        "shared/format.ts",
    ] {
        let original = std::fs::read(p.join("base44").join(file)).unwrap();
        assert_eq!(std::fs::read(q.join("base44").join(file)).unwrap(), original, "{file} differs after pull");
    }
    assert!(!q.join("base44/functions/hello/function.jsonc").exists());
    let out = homebase(q, config, &["--json", "functions", "pull"], &env).await.ok();
    let statuses: Vec<Value> = out.events("function").iter().map(|l| l["status"].clone()).collect();
    assert_eq!(statuses, ["unchanged", "unchanged", "unchanged"]);
    assert_eq!(out.events("summary")[0]["files_written"], 0);
    let out = homebase(q, config, &["functions", "pull", "hello", "nope"], &env).await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("hello … unchanged") && out.stdout.contains("nope … not_found"), "{}", out.stdout);

    // Delete: a missing name is "not found" and exit code 1.
    homebase(p, config, &["functions", "delete", "clock"], &env).await.ok();
    assert_eq!(call("clock", json!({})).await.unwrap().status(), 404);
    let out = homebase(p, config, &["functions", "delete", "nope"], &env).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("nope … not found") && out.stderr.contains("no function named 'nope'"),
        "{}",
        out.text()
    );

    // Rollback restores the previous code; --to takes the start of an id.
    std::fs::write(&hello_file, original_hello.replace("Hello, ", "Hi, ")).unwrap();
    homebase(p, config, &["functions", "deploy", "hello"], &env).await.ok();
    let hi = call("hello", json!({ "name": "Cy" })).await.unwrap();
    assert_eq!(hi.json::<Value>().await.unwrap(), json!({ "message": "Hi, Cy!" }));
    let out = homebase(p, config, &["--json", "functions", "deployments", "hello"], &env).await.ok();
    let history = out.lines()[0]["deployments"].as_array().unwrap().clone();
    assert_eq!(history.len(), 2);
    let second_hello = history[0]["deployment_id"].as_str().unwrap().to_string();
    assert_eq!(history[0]["active"], true);
    let out = homebase(p, config, &["functions", "deployments", "hello"], &env).await.ok();
    assert!(out.stdout.contains(&second_hello) && out.stdout.contains("active"), "{}", out.stdout);
    let out = homebase(p, config, &["functions", "rollback", "hello"], &env).await.ok();
    assert_eq!(out.stdout.trim(), format!("hello now runs deployment {first_hello}"));
    let hello = call("hello", json!({ "name": "Cy" })).await.unwrap();
    assert_eq!(hello.json::<Value>().await.unwrap(), json!({ "message": "Hello, Cy!" }));
    let out =
        homebase(p, config, &["--json", "functions", "rollback", "hello", "--to", &second_hello[..8]], &env).await.ok();
    assert_eq!(out.lines()[0]["deployment_id"], second_hello.as_str());
    let hi = call("hello", json!({ "name": "Cy" })).await.unwrap();
    assert_eq!(hi.json::<Value>().await.unwrap(), json!({ "message": "Hi, Cy!" }));

    // --force deletes what no longer exists locally and deploys the rest.
    std::fs::remove_dir_all(functions.join("orders")).unwrap();
    let out = homebase(p, config, &["functions", "deploy", "--force"], &env).await.ok();
    assert!(out.stdout.contains("orders/summary … deleted"), "{}", out.stdout);
    assert!(out.stdout.contains("clock … deployed") && out.stdout.contains("hello … unchanged"), "{}", out.stdout);
    assert!(out.stdout.contains("1 deployed, 1 unchanged, 1 deleted"), "{}", out.stdout);
    assert_eq!(call("orders/summary", json!({})).await.unwrap().status(), 404);
    assert_eq!(call("clock", json!({})).await.unwrap().status(), 200);

    // `deploy`: all of the project's resources, today its functions.
    let out = homebase(p, config, &["deploy"], &env).await.ok();
    assert!(out.stdout.contains("2 unchanged") && out.stdout.contains("come later"), "{}", out.stdout);
}

#[tokio::test]
async fn admin_keys_rotate_and_survive_a_database_reset() {
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let apps = |server: &Running, key: &str| http.get(server.at("/api/apps")).header("api_key", key).send();
    let first = "b44k_firstadminkey000000000000000000";
    let second = "b44k_secondadminkey00000000000000000";

    // Changing HOMEBASE_ADMIN_KEY rotates the key: the old one stops working.
    let server = Running::serve(data.path(), first).await;
    assert_eq!(apps(&server, first).await.unwrap().status(), 200);
    drop(server);
    let server = Running::serve(data.path(), second).await;
    assert_eq!(apps(&server, second).await.unwrap().status(), 200);
    assert_eq!(apps(&server, first).await.unwrap().status(), 401);
    drop(server);

    // Without the variable, the key in admin.key is created once and kept across a database reset.
    let fresh = tempfile::tempdir().unwrap();
    let start = |dir: &std::path::Path| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_homebase"));
        cmd.args(["--json", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env_remove("HOMEBASE_ADMIN_KEY");
        Running::spawn(cmd, &[], true)
    };
    let server = start(fresh.path()).await;
    let key = std::fs::read_to_string(fresh.path().join("admin.key")).unwrap().trim().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(fresh.path().join("admin.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(apps(&server, &key).await.unwrap().status(), 200);
    drop(server);
    for file in ["homebase.db", "homebase.db-wal", "homebase.db-shm"] {
        let _ = std::fs::remove_file(fresh.path().join(file));
    }
    let server = start(fresh.path()).await;
    assert_eq!(apps(&server, &key).await.unwrap().status(), 200, "the admin key works after a database reset");
}

#[tokio::test]
async fn secrets_are_set_listed_and_deleted_without_printing_values() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let outside = tempfile::tempdir().unwrap();
    let here = outside.path();
    let url = server.url.as_str();
    let out = homebase(here, &config, &["--json", "apps", "create", "vault", "--url", url, "--token", ADMIN_KEY], &[])
        .await
        .ok();
    let app = out.lines()[0]["app"]["id"].as_str().unwrap().to_string();
    let env = [("HOMEBASE_URL", url), ("HOMEBASE_TOKEN", ADMIN_KEY), ("HOMEBASE_APP_ID", app.as_str())];
    let value = "cli-secret-value-never-printed";
    let env_file = here.join("prod.env");
    std::fs::write(&env_file, format!("# keys\nFROM_FILE=\"{value}\"\nexport SHARED=file\n")).unwrap();

    let out = homebase(
        here,
        &config,
        &["secrets", "set", &format!("TOKEN={value}"), "SHARED=flag", "--env-file", env_file.to_str().unwrap()],
        &env,
    )
    .await
    .ok();
    assert!(out.stdout.contains("Set 3 secrets") && out.stdout.contains("FROM_FILE, SHARED, TOKEN"), "{}", out.text());
    assert!(!out.text().contains(value));
    let out = homebase(here, &config, &["--json", "secrets", "list"], &env).await.ok();
    assert_eq!(out.lines(), [json!({ "secrets": ["FROM_FILE", "SHARED", "TOKEN"] })]);
    let out = homebase(here, &config, &["secrets", "list"], &env).await.ok();
    assert_eq!(out.stdout, "FROM_FILE\nSHARED\nTOKEN\n");

    // Bad input: the server's 400 names the bad name; the value is not echoed.
    let out = homebase(here, &config, &["secrets", "set", &format!("1BAD={value}")], &env).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("'1BAD'") && !out.text().contains(value), "{}", out.text());
    let out = homebase(here, &config, &["secrets", "set", value], &env).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("NAME=VALUE") && !out.text().contains(value), "{}", out.text());

    let out = homebase(here, &config, &["--json", "secrets", "delete", "TOKEN", "NOPE"], &env).await;
    assert_eq!(out.code, 1, "{}", out.text());
    let statuses: Vec<Value> = out.events("secret").iter().map(|l| l["status"].clone()).collect();
    assert_eq!(statuses, [json!("deleted"), json!("not_found")]);
    let out = homebase(here, &config, &["--json", "secrets", "list"], &env).await.ok();
    assert_eq!(out.lines(), [json!({ "secrets": ["FROM_FILE", "SHARED"] })]);

    // serve made its master key on the first start: a private file of 64 hex digits.
    use std::os::unix::fs::PermissionsExt;
    let key_file = data.path().join("master.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(key.trim().len() == 64 && key.trim().bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
}

#[tokio::test]
async fn function_jsonc_without_name_entry_or_automation_names_deploys() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::serve(data.path(), ADMIN_KEY).await;
    let config = tempfile::tempdir().unwrap();
    let config = config.path();
    let env = [("HOMEBASE_URL", server.url.as_str()), ("HOMEBASE_TOKEN", ADMIN_KEY)];
    let project = tempfile::tempdir().unwrap();
    let p = project.path();
    let function = p.join("base44/functions/reports/daily");
    std::fs::create_dir_all(&function).unwrap();
    std::fs::write(p.join("base44/config.jsonc"), "{\"name\": \"defaults\"}").unwrap();
    // No `name` (the folder path names it), no `entry` (entry.ts), an automation without a name.
    std::fs::write(
        function.join("function.jsonc"),
        r#"{"automations": [{"type": "entity", "entity_name": "Order", "event_types": ["create"]}]}"#,
    )
    .unwrap();
    std::fs::write(function.join("entry.ts"), "Deno.serve(() => Response.json({ daily: true }));\n").unwrap();

    let out = homebase(p, config, &["apps", "create", "defaults"], &env).await.ok();
    let link: Value = serde_json::from_str(&std::fs::read_to_string(p.join("base44/.app.jsonc")).unwrap()).unwrap();
    let app_id = link["id"].as_str().unwrap().to_string();
    assert!(out.stdout.contains(&app_id));
    let out = homebase(p, config, &["functions", "deploy"], &env).await.ok();
    assert!(out.stdout.contains("reports/daily … deployed ("), "{}", out.stdout);
    let http = reqwest::Client::new();
    let answer = http.post(server.at(&format!("/api/apps/{app_id}/functions/reports/daily"))).send().await.unwrap();
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({ "daily": true }));

    // A deploy the official CLI makes carries the automations as written: unnamed ones pass,
    // broken ones are still refused.
    let deploy = |automations: Value| {
        http.put(server.at(&format!("/api/apps/{app_id}/backend-functions/raw")))
            .header("api_key", ADMIN_KEY)
            .json(&json!({
                "entry": "entry.ts",
                "files": [{"path": "entry.ts", "content": "Deno.serve(() => new Response('raw'));\n"}],
                "automations": automations,
            }))
            .send()
    };
    let unnamed = json!([{"type": "entity", "entity_name": "Order", "event_types": ["update"]}]);
    let response = deploy(unnamed).await.unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    let broken = json!([{"type": "entity", "event_types": ["update"]}]);
    let response = deploy(broken).await.unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("'raw #1'"), "{body}");
}

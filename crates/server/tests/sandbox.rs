//! Issue 9, the sandbox slice: what an app's key holder can make a function read or run on the
//! host, against the router `serve` builds (TestPlatform) with real Deno. Each test replays an
//! attack that worked before the sandbox and checks that it now gets nothing, next to a control
//! showing that the same technique does work where it is allowed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use homebase_testkit::{ADMIN_KEY, TestPlatform, deno, json_of};
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

fn payload(files: &[(&str, &str)]) -> Value {
    let files: Vec<Value> = files.iter().map(|(path, content)| json!({ "path": path, "content": content })).collect();
    json!({ "entry": "entry.ts", "files": files, "automations": [] })
}

async fn deploy(server: &TestPlatform, app: &str, name: &str, body: &Value) -> (u16, Value) {
    let path = format!("/api/apps/{app}/backend-functions/{name}");
    answer(admin(server, Method::PUT, &path).json(body).send().await.unwrap()).await
}

async fn deployed(server: &TestPlatform, app: &str, name: &str, body: &Value) -> String {
    let (status, outcome) = deploy(server, app, name, body).await;
    assert_eq!(status, 200, "{outcome}");
    outcome["deployment_id"].as_str().unwrap().to_string()
}

async fn invoke(server: &TestPlatform, app: &str, name: &str, body: &Value) -> (u16, Value) {
    let url = server.at(&format!("/api/apps/{app}/functions/{name}"));
    answer(server.client().post(url).json(body).send().await.unwrap()).await
}

/// A function that answers its whole environment.
const ENV_FUNCTION: &str = "Deno.serve(() => Response.json({ env: Deno.env.toObject() }));\n";

/// The names a worker's environment may have in `serve`, besides the app's secrets.
const ALLOWED: [&str; 22] = [
    "PATH",
    "HOME",
    "TMPDIR",
    "DENO_DIR",
    "DENO_NO_PACKAGE_JSON",
    "DENO_NO_UPDATE_CHECK",
    "NO_COLOR",
    "TZ",
    "LANG",
    "BASE44_APP_ID",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "DENO_CERT",
    "DENO_TLS_CA_STORE",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NPM_CONFIG_REGISTRY",
];

/// Builds a shared object whose constructor appends to `marker`, with the system's C compiler.
fn marker_library(dir: &Path, marker: &Path) -> PathBuf {
    let source = dir.join("marker.c");
    std::fs::write(
        &source,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n__attribute__((constructor)) static void mark(void) {{\n  \
             int fd = open(\"{}\", O_WRONLY | O_CREAT | O_APPEND, 0644);\n  if (fd >= 0) {{ write(fd, \"ran\\n\", 4); \
             close(fd); }}\n}}\n",
            marker.display()
        ),
    )
    .unwrap();
    let library = dir.join("marker.so");
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("the system C compiler (cc) runs");
    assert!(status.success(), "cc built the marker library");
    library
}

#[tokio::test]
async fn loader_and_deno_variables_cannot_be_secrets_and_stored_ones_never_reach_workers() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    let secrets_path = format!("/api/apps/{app}/secrets");

    // 1. The API refuses every name the loader, the C library, Deno or Homebase read.
    for name in [
        "LD_PRELOAD",
        "ld_preload",
        "LD_LIBRARY_PATH",
        "DENO_DIR",
        "DENO_V8_FLAGS",
        "SSLKEYLOGFILE",
        "HOME",
        "PATH",
        "TMPDIR",
        "https_proxy",
        "HTTP_PROXY",
        "SSL_CERT_FILE",
        "NODE_OPTIONS",
        "HOMEBASE_ADMIN_KEY",
        "BASE44_APP_ID",
        "GLIBC_TUNABLES",
        "MALLOC_CHECK_",
    ] {
        let body = json!({ "FINE_NAME": "1", name: "/tmp/x.so" });
        let (status, error) =
            answer(admin(&server, Method::POST, &secrets_path).json(&body).send().await.unwrap()).await;
        assert_eq!(status, 400, "{name}: {error}");
        assert_eq!(error["code"], "invalid_secrets", "{name}");
        assert!(error["message"].as_str().unwrap().contains(&format!("'{name}' cannot be a secret name")), "{error}");
        assert!(error["detail"].as_str().unwrap().contains("LD_*"), "{error}");
    }
    for name in ["BAD NAME", "1ST", "A-B"] {
        let body = json!({ name: "x" });
        let (status, error) =
            answer(admin(&server, Method::POST, &secrets_path).json(&body).send().await.unwrap()).await;
        assert_eq!((status, error["code"].as_str()), (400, Some("invalid_secrets")), "{name}: {error}");
        assert!(error["message"].as_str().unwrap().contains("not a valid secret name"), "{error}");
    }
    let (_, listed) = answer(admin(&server, Method::GET, &secrets_path).send().await.unwrap()).await;
    assert_eq!(listed, json!({}), "a refused request stores nothing, not even its good names");

    // 2. The attack: a shared object, and LD_PRELOAD naming it, stored before names were
    // screened. The control shows the library does run when the loader is told to preload it.
    let marker = data.path().join("preload-ran");
    let library = marker_library(data.path(), &marker);
    let control = std::process::Command::new(deno().await).arg("--version").env("LD_PRELOAD", &library).output();
    assert!(control.unwrap().status.success());
    assert!(marker.exists(), "control: the marker library runs when preloaded");
    std::fs::remove_file(&marker).unwrap();

    let stored = BTreeMap::from([
        ("LD_PRELOAD".to_string(), library.display().to_string()),
        ("DENO_V8_FLAGS".to_string(), "--max-old-space-size=1".to_string()),
        ("GOOD_SECRET".to_string(), "visible-value".to_string()),
    ]);
    server.store.set_secrets(&app, stored).await.unwrap();
    server.platform.refresh(&app).await.unwrap();
    deployed(&server, &app, "env", &payload(&[("entry.ts", ENV_FUNCTION)])).await;
    let (status, body) = invoke(&server, &app, "env", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let env = body["env"].as_object().unwrap();
    assert!(!marker.exists(), "the preloaded library never ran");
    assert_eq!(env.get("GOOD_SECRET"), Some(&json!("visible-value")), "{body}");
    assert_eq!(env.get("BASE44_APP_ID"), Some(&json!(app)), "{body}");
    for name in env.keys() {
        assert!(ALLOWED.contains(&name.as_str()) || name == "GOOD_SECRET", "{name} reached the worker: {body}");
    }
    assert!(env["HOME"].as_str().unwrap() != std::env::var("HOME").unwrap_or_default(), "not the server's home");
    // Nothing stored is lost: the names are still listed.
    let (_, listed) = answer(admin(&server, Method::GET, &secrets_path).send().await.unwrap()).await;
    assert_eq!(listed.as_object().unwrap().len(), 3, "{listed}");
    server.stop().await;
}

/// A function that tries every way Deno offers to read each of `paths`: reading the file,
/// listing the folder, and importing it as JSON and as a module with literal specifiers (which a
/// plain `deno run` loads whatever its `--allow-read`; a worker's entry is imported dynamically,
/// where Deno 2.9 does check, and Landlock stops them in any case).
fn probe(paths: &[String]) -> String {
    let mut code = String::from("const results = {};\n");
    for path in paths {
        let p = serde_json::to_string(path).unwrap();
        let url = serde_json::to_string(&format!("file://{path}")).unwrap();
        code.push_str(&format!(
            "{{ const tried = {{}};\n\
             try {{ tried.read = (await Deno.readTextFile({p})).slice(0, 200); }} catch (e) {{ tried.read = \"error: \" + e.name; }}\n\
             try {{ tried.list = []; for await (const e of Deno.readDir({p})) tried.list.push(e.name); }} catch (e) {{ tried.list = \"error: \" + e.name; }}\n\
             try {{ tried.json = JSON.stringify((await import({url}, {{ with: {{ type: \"json\" }} }})).default).slice(0, 200); }} catch (e) {{ tried.json = \"error: \" + String(e).slice(0, 300); }}\n\
             try {{ tried.module = Object.keys(await import({url})).join(\",\"); }} catch (e) {{ tried.module = \"error: \" + String(e).slice(0, 300); }}\n\
             results[{p}] = tried; }}\n"
        ));
    }
    // Landlock (ABI 4 and later) lets no worker bind a TCP port, whatever Deno's flags allow.
    code.push_str(
        "try { const l = Deno.listen({ hostname: \"127.0.0.1\", port: 0 }); results.listen = \"listening\"; l.close(); } \
         catch (e) { results.listen = \"error: \" + e.name; }\n",
    );
    code.push_str("Deno.serve(() => Response.json(results));\n");
    code
}

#[tokio::test]
async fn functions_cannot_read_host_files_other_apps_code_caches_or_the_server() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("master.key"), "host-master-key-material\n").unwrap();
    let server = TestPlatform::start(data.path()).await;

    // The victim: code with data in its deployment, a secret, a running worker.
    let victim = create_app(&server, "victim").await;
    let set = admin(&server, Method::POST, &format!("/api/apps/{victim}/secrets"))
        .json(&json!({ "VICTIM_TOKEN": "victim-secret-value" }))
        .send();
    assert_eq!(set.await.unwrap().status(), 200);
    let code = "import data from \"./data.json\" with { type: \"json\" };\n\
                Deno.serve(() => Response.json({ data, token: Deno.env.get(\"VICTIM_TOKEN\") }));\n";
    let victim_id = deployed(
        &server,
        &victim,
        "vault",
        &payload(&[("entry.ts", code), ("data.json", "{\"secret\": \"victim-data\"}")]),
    )
    .await;
    let (status, body) = invoke(&server, &victim, "vault", &json!({})).await;
    assert_eq!((status, body["token"].as_str()), (200, Some("victim-secret-value")), "{body}");
    let victim_pid = server.runtime.workers().iter().find(|w| w.app_id == victim).unwrap().pid.unwrap();
    let victim_caches: Vec<PathBuf> =
        std::fs::read_dir(data.path().join("deno/apps")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(victim_caches.len(), 1, "the victim's own Deno cache");
    let victim_deployment = data.path().join("deployments").join(&victim_id);
    let victim_data = victim_deployment.join("functions/_/data.json");
    assert!(victim_data.exists());

    // The attacker, in another app, with code stored as a deployment from before deploy checks
    // refused such imports (the check would refuse it now).
    let attacker = create_app(&server, "attacker").await;
    let targets: Vec<PathBuf> = vec![
        PathBuf::from("/etc/passwd"),
        PathBuf::from("/etc/shadow"),
        PathBuf::from(format!("/proc/{}/environ", std::process::id())),
        PathBuf::from(format!("/proc/{}/cmdline", std::process::id())),
        PathBuf::from(format!("/proc/{victim_pid}/environ")),
        PathBuf::from("/proc/self/environ"),
        data.path().join("master.key"),
        data.path().join("auth.key"),
        data.path().join("homebase.db"),
        data.path().join("scratch"),
        victim_deployment.clone(),
        victim_data.clone(),
        victim_caches[0].clone(),
        victim_caches[0].join("gen"),
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())),
        std::env::temp_dir(),
    ];
    let mut paths: Vec<String> = targets.iter().map(|p| p.display().to_string()).collect();
    let files = |code: String| {
        vec![
            homebase_store::DeployFile { path: "entry.ts".into(), content: code },
            homebase_store::DeployFile { path: "own.json".into(), content: "{\"mine\": 1}".into() },
        ]
    };
    // Control: its own deployment's file, by the same literal import (relative: the folder's name
    // is the content address, known only once the code is final).
    let own_marker = "OWN_FILE";
    paths.push(own_marker.to_string());
    let code = probe(&paths).replace(&format!("file://{own_marker}"), "./own.json");
    let deployment =
        homebase_store::Deployment { entry: "entry.ts".into(), files: files(code), automations: json!([]) };
    server.store.deploy(&attacker, "probe", deployment).await.unwrap();
    server.platform.refresh(&attacker).await.unwrap();
    let (status, results) = invoke(&server, &attacker, "probe", &json!({})).await;
    assert_eq!(status, 200, "{results}");

    assert_eq!(results[own_marker]["json"], "{\"mine\":1}", "control: {}", results[own_marker]);
    for target in &targets {
        let tried = &results[target.display().to_string()];
        for way in ["read", "list", "json", "module"] {
            let outcome = &tried[way];
            assert!(
                outcome.as_str().is_some_and(|o| o.starts_with("error: ")),
                "{way} of {}: {tried}",
                target.display()
            );
        }
    }
    assert!(results["listen"].as_str().unwrap().starts_with("error: "), "{}", results["listen"]);
    let text = results.to_string();
    for leaked in
        ["victim-data", "victim-secret-value", "host-master-key-material", "root:x:0", "SQLite format", ADMIN_KEY]
    {
        assert!(!text.contains(leaked), "{leaked} leaked: {text}");
    }

    // A static import of a host file stops the worker from loading, and its error quotes
    // nothing of the file.
    let code = "import \"/etc/passwd\";\nDeno.serve(() => new Response(\"x\"));\n".to_string();
    let deployment =
        homebase_store::Deployment { entry: "entry.ts".into(), files: files(code), automations: json!([]) };
    server.store.deploy(&attacker, "static", deployment).await.unwrap();
    server.platform.refresh(&attacker).await.unwrap();
    let (status, error) = invoke(&server, &attacker, "static", &json!({})).await;
    assert_eq!((status, error["code"].as_str()), (502, Some("function_boot_failed")), "{error}");
    assert!(!error.to_string().contains("root:x"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn deploy_checks_refuse_imports_outside_the_deployment_and_quote_nothing_else() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let victim = create_app(&server, "victim").await;
    let victim_id = deployed(
        &server,
        &victim,
        "vault",
        &payload(&[
            ("entry.ts", "Deno.serve(() => new Response(\"v\"));\n"),
            ("data.json", "{\"secret\": \"victim-data\"}"),
        ]),
    )
    .await;
    let victim_data = data.path().join("deployments").join(&victim_id).join("functions/_/data.json");
    let app = create_app(&server, "attacker").await;
    let environ = format!("/proc/{}/environ", std::process::id());
    let serve = "Deno.serve(() => new Response(\"x\"));\n";
    let cases = [
        ("/etc/passwd".to_string(), "import \"/etc/passwd\";\n".to_string()),
        ("../../../../../../../../../etc/passwd".into(), "import \"../../../../../../../../../etc/passwd\";\n".into()),
        ("file:///etc/group".into(), "import \"file:///etc/group\";\n".into()),
        ("/etc/hostname".into(), "import h from \"/etc/hostname\" with { type: \"json\" };\n".into()),
        (environ.clone(), format!("const e = await import(\"{environ}\");\n")),
        (
            victim_data.display().to_string(),
            format!("import d from \"{}\" with {{ type: \"json\" }};\n", victim_data.display()),
        ),
    ];
    for (written, code) in &cases {
        let (status, error) =
            deploy(&server, &app, "steal", &payload(&[("entry.ts", &format!("{code}{serve}"))])).await;
        assert_eq!((status, error["code"].as_str()), (422, Some("module_invalid")), "{written}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(&format!("'{written}'")), "names the import as written: {message}");
        assert!(
            message.contains("can only import its own deployment's files, npm:, jsr: and https: modules"),
            "{message}"
        );
        let text = error.to_string();
        for leaked in ["root:x:0", "victim-data", "HOMEBASE", "scratch"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        if !written.contains(&data.path().display().to_string()) {
            assert!(!text.contains(&data.path().display().to_string()), "the data folder in {text}");
        }
    }

    // Deno's own complaints about the deployment's files still come through, relative.
    let (status, error) = deploy(
        &server,
        &app,
        "typo",
        &payload(&[
            ("entry.ts", &format!("import \"../../shared/x.ts\";\n{serve}")),
            ("../../shared/x.ts", "export const x = ;\n"),
        ]),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert!(error["message"].as_str().unwrap().contains("SyntaxError"), "{error}");
    assert!(error["detail"].as_str().unwrap().contains("../../shared/x.ts:1:"), "{error}");
    assert!(!error.to_string().contains(&data.path().display().to_string()), "{error}");

    // Checks leave nothing behind, and nothing was stored.
    let scratch: Vec<_> = std::fs::read_dir(data.path().join("scratch")).unwrap().collect();
    assert!(scratch.is_empty(), "{scratch:?}");
    assert_eq!(server.store.functions(&app).await.unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test]
async fn npm_packages_come_from_a_shared_read_only_cache_refilled_when_wiped() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    let code = "import leftPad from \"npm:left-pad@1.3.0\";\nDeno.serve(() => Response.json({ padded: leftPad(\"7\", 3, \"0\") }));\n";
    deployed(&server, &app, "pad", &payload(&[("entry.ts", code)])).await;
    let package = data.path().join("deno/shared/npm/registry.npmjs.org/left-pad/1.3.0/package.json");
    assert!(package.exists(), "the deploy check cached the package");
    assert_eq!(invoke(&server, &app, "pad", &json!({})).await, (200, json!({ "padded": "007" })));

    // The app's own cache links the shared packages; the worker could not have written them.
    let apps: Vec<PathBuf> =
        std::fs::read_dir(data.path().join("deno/apps")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        std::fs::read_link(apps[0].join("npm")).unwrap(),
        data.path().join("deno/shared/npm").canonicalize().unwrap()
    );
    server.stop().await;

    // A wiped package cache (or a deployment from before the sandbox) is refilled before the
    // worker starts, which then reads it.
    std::fs::remove_dir_all(data.path().join("deno/shared")).unwrap();
    let server = TestPlatform::start(data.path()).await;
    assert_eq!(invoke(&server, &app, "pad", &json!({})).await, (200, json!({ "padded": "007" })));
    assert!(package.exists());
    server.stop().await;
}

#[tokio::test]
async fn dev_skips_reserved_dotenv_names_with_a_warning_and_gives_the_app_id() {
    let project = homebase_testkit::fixture("functions");
    project.write(".env", "LD_PRELOAD=/tmp/nothing.so\nDENO_V8_FLAGS=--jitless\nDOTENV_OK=yes\n");
    project.write(
        "base44/functions/envdump/entry.ts",
        "Deno.serve(() => Response.json({ app: Deno.env.get(\"BASE44_APP_ID\") ?? null, preload: \
         Deno.env.get(\"LD_PRELOAD\") ?? null, flags: Deno.env.get(\"DENO_V8_FLAGS\") ?? null, ok: \
         Deno.env.get(\"DOTENV_OK\") ?? null }));\n",
    );
    let server = homebase_testkit::TestServer::start(project.path()).await;
    let response = server.client().get(server.at("/functions/envdump")).send().await.unwrap();
    let body = json_of(response).await;
    assert_eq!(body["ok"], "yes", "{body}");
    assert_eq!(body["app"], json!(server.app.app_id()), "{body}");
    // Only the .env values are screened: dev's own environment is the developer's.
    if std::env::var_os("LD_PRELOAD").is_none() {
        assert_eq!(body["preload"], Value::Null, "{body}");
    }
    if std::env::var_os("DENO_V8_FLAGS").is_none() {
        assert_eq!(body["flags"], Value::Null, "{body}");
    }
    let problems: Vec<String> = server
        .events
        .lock()
        .unwrap()
        .iter()
        .flat_map(|e| match e {
            homebase_server::dev::DevEvent::Loaded { problems, .. } => problems.clone(),
            _ => Vec::new(),
        })
        .collect();
    for name in ["LD_PRELOAD", "DENO_V8_FLAGS"] {
        assert!(problems.iter().any(|p| p.contains(&format!("'{name}' cannot be a secret name"))), "{problems:?}");
    }
    server.stop().await;
}

/// A key-like file in `/etc/ssl/private`, removed on drop (the tests run as root; elsewhere
/// there is none, and the host's own snakeoil key, when it exists, is the target).
struct TemporaryKey(Option<PathBuf>);

impl TemporaryKey {
    fn create() -> TemporaryKey {
        let path = PathBuf::from(format!("/etc/ssl/private/homebase-test-{}.key", std::process::id()));
        match std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nhomebase-test-key-material\n") {
            Ok(()) => TemporaryKey(Some(path)),
            Err(error) => {
                eprintln!("could not create a key in /etc/ssl/private ({error}); only existing keys are tried");
                TemporaryKey(None)
            }
        }
    }
}

impl Drop for TemporaryKey {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The review's finding (issue 9): Landlock granted all of `/etc/ssl` and `/etc/pki`, so the
/// host's TLS private keys in `/etc/ssl/private` were readable to a worker's process (to the
/// server's user, root here). Deno's own permissions refuse the ways a function has today; that
/// Landlock refuses them too, whatever Deno allows, is checked in the runtime's
/// `a_confined_deno_reads_ca_certificates_but_never_tls_private_keys`. Here: through every way a
/// function has, in `serve`, a key stays unreadable.
#[tokio::test]
async fn functions_cannot_read_tls_private_keys() {
    let key = TemporaryKey::create();
    let mut keys: Vec<String> = key.0.iter().map(|p| p.display().to_string()).collect();
    let snakeoil = "/etc/ssl/private/ssl-cert-snakeoil.key";
    if Path::new(snakeoil).exists() {
        keys.push(snakeoil.to_string());
    }
    if keys.is_empty() {
        eprintln!("no TLS private key to try on this machine");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "keys").await;
    let mut paths = keys.clone();
    paths.push("/etc/ssl/private".to_string());
    // Stored as it is: a deploy check would refuse the literal imports outside the deployment.
    let files = vec![homebase_store::DeployFile { path: "entry.ts".into(), content: probe(&paths) }];
    let deployment = homebase_store::Deployment { entry: "entry.ts".into(), files, automations: json!([]) };
    server.store.deploy(&app, "probe", deployment).await.unwrap();
    server.platform.refresh(&app).await.unwrap();
    let (status, results) = invoke(&server, &app, "probe", &json!({})).await;
    assert_eq!(status, 200, "{results}");
    for path in keys.iter().map(String::as_str).chain(["/etc/ssl/private"]) {
        for way in ["read", "list", "json", "module"] {
            let outcome = &results[path][way];
            assert!(outcome.as_str().is_some_and(|o| o.starts_with("error: ")), "{way} of {path}: {}", results[path]);
        }
    }
    assert!(!results.to_string().contains("PRIVATE KEY"), "{results}");
    assert!(!results.to_string().contains("homebase-test-key-material"), "{results}");
    server.stop().await;
}

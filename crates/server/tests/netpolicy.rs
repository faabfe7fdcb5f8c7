//! The network policy of `serve`'s functions, end to end: real Deno workers behind the router
//! `serve` builds (`TestPlatform`), running the functions of `fixtures/netpolicy`. A function
//! tries the host's services (PostgreSQL, Redis, an HTTP server of the test), loopback in every
//! spelling, the metadata address, the host's own addresses and listening; the official SDK
//! inside a function still reaches Homebase, over its socket; `function-net-allow` opens exactly
//! what it names, for the server and per app.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use homebase_runtime::NetAllow;
use homebase_server::config::Config;
use homebase_testkit::{ADMIN_KEY, PlatformOptions, TestPlatform, TestServer, fixture, json_of};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROBE: &str = include_str!("../../testkit/fixtures/netpolicy/probe.ts");
const WHEREAMI: &str = include_str!("../../testkit/fixtures/netpolicy/whereami.ts");
const WHOAMI: &str = include_str!("../../testkit/fixtures/netpolicy/whoami.ts");
const SDK_CALLS: &str = include_str!("../../testkit/fixtures/netpolicy/sdk-calls.ts");

/// A host service of the test: an HTTP server on every local address (`[::]`, both families)
/// that counts the connections it gets.
struct HostService {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl HostService {
    async fn start() -> HostService {
        let listener = tokio::net::TcpListener::bind("[::]:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecret")
                        .await;
                });
            }
        });
        HostService { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// This host's addresses other than loopback (the ones a function could use to reach a service
/// listening on every address), IPv4 and IPv6.
fn own_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback() && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .collect()
}

fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn admin(server: &TestPlatform, method: Method, path: &str) -> reqwest::RequestBuilder {
    server.client().request(method, server.at(path)).header("api_key", ADMIN_KEY)
}

async fn create_app(server: &TestPlatform, name: &str) -> String {
    let response = admin(server, Method::POST, "/api/apps").json(&json!({ "name": name })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    json_of(response).await["id"].as_str().unwrap().to_string()
}

async fn deploy(server: &TestPlatform, app: &str, name: &str, code: &str) {
    let body = json!({ "entry": "entry.ts", "files": [{ "path": "entry.ts", "content": code }], "automations": [] });
    let path = format!("/api/apps/{app}/backend-functions/{name}");
    let response = admin(server, Method::PUT, &path).json(&body).send().await.unwrap();
    let status = response.status();
    assert_eq!(status, 200, "{}", json_of(response).await);
}

/// Runs `attempts` (`(kind, host, port)`) in the app's `probe` function; its results.
async fn probe(server: &TestPlatform, app: &str, attempts: &[(&str, String, u16)]) -> Vec<Value> {
    let attempts: Vec<Value> =
        attempts.iter().map(|(kind, host, port)| json!({ "kind": kind, "host": host, "port": port })).collect();
    let response = server
        .client()
        .post(server.at(&format!("/api/apps/{app}/functions/probe")))
        .json(&json!({ "attempts": attempts }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    json_of(response).await["results"].as_array().unwrap().clone()
}

/// Asserts every result failed with Deno's permission error.
fn all_refused(results: &[Value]) {
    let through: Vec<&Value> = results.iter().filter(|r| r["ok"] != false || r["permission"] != true).collect();
    assert!(through.is_empty(), "not refused by the policy:\n{}", serde_json::to_string_pretty(&through).unwrap());
}

fn loopback_spellings() -> Vec<String> {
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",
        "127.0.0.2",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn functions_cannot_reach_host_services_private_ranges_or_listen() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    deploy(&server, &app, "probe", PROBE).await;
    let service = HostService::start().await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_port = udp.local_addr().unwrap().port();

    let mut attempts = Vec::new();
    // PostgreSQL and Redis as they run on this host, and the test's own service.
    for port in [5432, 6379, service.port] {
        for kind in ["fetch", "connect", "node-http", "node-net"] {
            attempts.push((kind, "127.0.0.1".to_string(), port));
        }
    }
    // Loopback by every name and number, by every client.
    for host in loopback_spellings() {
        for kind in ["fetch", "connect", "node-http", "node-net", "websocket"] {
            attempts.push((kind, host.clone(), service.port));
        }
    }
    // The cloud metadata service and this host's own addresses.
    for kind in ["fetch", "connect", "node-http"] {
        attempts.push((kind, "169.254.169.254".to_string(), 80));
    }
    let own = own_addresses();
    for ip in &own {
        for kind in ["fetch", "connect", "node-http", "node-net"] {
            attempts.push((kind, host_of(*ip), service.port));
        }
    }
    attempts.push(("udp", "127.0.0.1".to_string(), udp_port));
    // Listening, on the default address, loopback and the host's own addresses.
    for host in ["0.0.0.0", "127.0.0.1", "[::]", "localhost"]
        .map(String::from)
        .into_iter()
        .chain(own.iter().map(|ip| host_of(*ip)))
    {
        attempts.push(("listen", host.clone(), 0));
        attempts.push(("node-listen", host, 0));
    }
    let results = probe(&server, &app, &attempts).await;
    assert_eq!(results.len(), attempts.len());
    all_refused(&results);
    assert_eq!(service.connections(), 0, "no connection reached the host's service");
    let mut buf = [0u8; 16];
    let received = tokio::time::timeout(std::time::Duration::from_millis(200), udp.recv(&mut buf)).await;
    assert!(received.is_err(), "no datagram arrived");

    // IPv6 ranges cannot be listed for Deno; no IPv6 socket can be opened at all. Binding an
    // address this host does not have shows it without sending anything: the socket itself fails.
    let results = probe(&server, &app, &[("listen", "[::2]".to_string(), 0)]).await;
    let error = results[0]["error"].as_str().unwrap();
    assert!(error.contains("Address family not supported"), "{}", results[0]);
    server.stop().await;
}

#[tokio::test]
async fn the_official_sdk_inside_a_function_reaches_homebase_over_its_socket() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let app = create_app(&server, "shop").await;
    for (name, code) in [("sdk-calls", SDK_CALLS), ("whereami", WHEREAMI), ("whoami", WHOAMI)] {
        deploy(&server, &app, name, code).await;
    }
    let user = server.auth.store.create_user(&app, new_user("ann@example.test")).await.unwrap();
    let token = server.auth.user_token(&user);
    let response = server
        .client()
        .post(server.at(&format!("/api/apps/{app}/functions/sdk-calls")))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let out = json_of(response).await;
    let host = server.url.trim_start_matches("http://");

    // The service role through axios (node:http), to another function.
    assert_eq!(out["apiUrl"], server.url.as_str(), "{out}");
    let service = &out["service"];
    assert_eq!(service["authorization"], "Bearer", "{out}");
    assert_eq!(service["apiUrl"], server.url.as_str(), "a nested call gets the server's URL: {out}");
    assert_eq!(service["host"], host, "the Host the SDK meant: {out}");
    // The caller's own client: the callee's SDK asks auth.me() on their behalf.
    assert_eq!(out["asCaller"]["me"]["id"], user.id.as_str(), "{out}");
    assert_eq!(out["asCaller"]["meStatus"], 200, "{out}");
    // Plain fetch of the API, with a path, a query and a 100 kB body.
    assert_eq!(out["fetched"]["status"], 200, "{out}");
    let fetched = &out["fetched"]["body"];
    assert_eq!(fetched["url"], format!("{}/whereami/sub?q=1", server.url).as_str(), "{out}");
    assert_eq!((fetched["marker"].as_str(), fetched["authorization"].as_str()), (Some("fetch"), Some("Bearer")));
    // The API's TCP address itself stays closed to the function.
    let direct = out["direct"].as_str().unwrap();
    assert!(direct.contains("NotCapable") && direct.contains("Requires net access"), "{out}");
    server.stop().await;
}

#[tokio::test]
async fn a_public_https_url_is_reached_over_the_socket_too() {
    // Behind a proxy: functions get https://… as Base44-Api-Url, and their SDK calls it. Nothing
    // answers at that name here; the socket does, as plain HTTP.
    let public = "https://homebase.example.test";
    let data = tempfile::tempdir().unwrap();
    let options = PlatformOptions { public_url: Some(public.into()), ..Default::default() };
    let server = TestPlatform::start_with(data.path(), options).await;
    let app = create_app(&server, "shop").await;
    for (name, code) in [("sdk-calls", SDK_CALLS), ("whereami", WHEREAMI), ("whoami", WHOAMI)] {
        deploy(&server, &app, name, code).await;
    }
    let response = server.client().post(server.at(&format!("/api/apps/{app}/functions/sdk-calls"))).json(&json!({}));
    let out = json_of(response.send().await.unwrap()).await;
    assert_eq!(out["apiUrl"], public, "{out}");
    assert_eq!(out["service"]["authorization"], "Bearer", "through https.request: {out}");
    assert_eq!(
        (out["service"]["apiUrl"].as_str(), out["service"]["host"].as_str()),
        (Some(public), Some("homebase.example.test"))
    );
    assert_eq!(out["asCaller"]["meStatus"], 401, "an anonymous caller, asked at the callee: {out}");
    assert_eq!(out["fetched"]["status"], 200, "through fetch: {out}");
    assert_eq!(out["fetched"]["body"]["host"], "homebase.example.test", "{out}");
    server.stop().await;
}

#[tokio::test]
async fn the_servers_function_net_allow_opens_exactly_what_it_names() {
    let data = tempfile::tempdir().unwrap();
    let options = PlatformOptions { net_allow: NetAllow::parse(&["127.0.0.1"]).unwrap(), ..Default::default() };
    let server = TestPlatform::start_with(data.path(), options).await;
    let app = create_app(&server, "shop").await;
    deploy(&server, &app, "probe", PROBE).await;
    let service = HostService::start().await;

    let open: Vec<_> = ["fetch", "connect", "node-http", "node-net"]
        .iter()
        .map(|kind| (*kind, "127.0.0.1".to_string(), service.port))
        .collect();
    let results = probe(&server, &app, &open).await;
    for result in &results {
        assert_eq!(result["ok"], true, "{result}");
    }
    assert_eq!(service.connections(), open.len());

    let mut closed = Vec::new();
    for host in ["127.0.0.2", "[::1]", "169.254.169.254"]
        .map(String::from)
        .into_iter()
        .chain(own_addresses().into_iter().map(host_of))
    {
        for kind in ["fetch", "connect"] {
            closed.push((kind, host.clone(), if host == "169.254.169.254" { 80 } else { service.port }));
        }
    }
    all_refused(&probe(&server, &app, &closed).await);
    assert_eq!(service.connections(), open.len(), "nothing else got through");
    server.stop().await;
}

#[tokio::test]
async fn an_apps_function_net_allow_is_set_by_an_admin_and_reaches_new_workers() {
    let data = tempfile::tempdir().unwrap();
    let server = TestPlatform::start(data.path()).await;
    let shop = create_app(&server, "shop").await;
    let other = create_app(&server, "other").await;
    for app in [&shop, &other] {
        deploy(&server, app, "probe", PROBE).await;
    }
    let service = HostService::start().await;
    let reach =
        vec![("fetch", "127.0.0.1".to_string(), service.port), ("node-net", "127.0.0.1".to_string(), service.port)];
    all_refused(&probe(&server, &shop, &reach).await);

    let path = format!("/api/apps/{shop}/function-net-allow");
    let response = admin(&server, Method::GET, &path).send().await.unwrap();
    assert_eq!(json_of(response).await, json!({ "allow": [] }));
    // An app's own key may read the list but not change it.
    let created = admin(&server, Method::POST, &format!("/api/apps/{shop}/keys")).send().await.unwrap();
    let app_key = json_of(created).await["key"].as_str().unwrap().to_string();
    let set = |key: &str, body: Value| server.client().put(server.at(&path)).header("api_key", key).json(&body).send();
    let refused = set(&app_key, json!({ "allow": ["127.0.0.1"] })).await.unwrap();
    assert_eq!(refused.status(), 403);
    let body = json_of(refused).await;
    assert_eq!(body["code"], "forbidden");
    assert!(body["detail"].as_str().unwrap().contains("Only an admin key"), "{body}");
    // Bad entries are refused with what to write.
    let bad = set(ADMIN_KEY, json!({ "allow": ["127.0.0.1:5432"] })).await.unwrap();
    assert_eq!(bad.status(), 400);
    let body = json_of(bad).await;
    assert_eq!(body["code"], "invalid_net_allow");
    assert!(body["message"].as_str().unwrap().contains("write 127.0.0.1"), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("CIDR"), "{body}");
    let wrong_shape = set(ADMIN_KEY, json!(["127.0.0.1"])).await.unwrap();
    assert_eq!(wrong_shape.status(), 400);
    assert_eq!(json_of(wrong_shape).await["code"], "bad_json");

    let saved = set(ADMIN_KEY, json!({ "allow": ["127.0.0.1/32"] })).await.unwrap();
    assert_eq!(saved.status(), 200);
    assert_eq!(json_of(saved).await, json!({ "allow": ["127.0.0.1"] }));
    let read = server.client().get(server.at(&path)).header("api_key", &app_key).send().await.unwrap();
    assert_eq!(json_of(read).await, json!({ "allow": ["127.0.0.1"] }));
    // The running worker is replaced: the next request sees the list; the other app does not.
    let results = probe(&server, &shop, &reach).await;
    assert!(results.iter().all(|r| r["ok"] == true), "{results:?}");
    assert_eq!(service.connections(), 2);
    all_refused(&probe(&server, &other, &reach).await);
    all_refused(&probe(&server, &shop, &[("connect", "169.254.169.254".to_string(), 80)]).await);

    // Emptied, and the app's workers lose it again.
    let cleared = set(ADMIN_KEY, json!({ "allow": [] })).await.unwrap();
    assert_eq!(json_of(cleared).await, json!({ "allow": [] }));
    all_refused(&probe(&server, &shop, &reach).await);
    assert_eq!(service.connections(), 2);
    server.stop().await;
}

#[tokio::test]
async fn an_ipv6_entry_lets_functions_open_ipv6_sockets() {
    let data = tempfile::tempdir().unwrap();
    // 100::/64 is the discard-only prefix: nothing there to reach.
    let options = PlatformOptions { net_allow: NetAllow::parse(&["100::/64"]).unwrap(), ..Default::default() };
    let server = TestPlatform::start_with(data.path(), options).await;
    let app = create_app(&server, "shop").await;
    deploy(&server, &app, "probe", PROBE).await;
    // The socket opens now; binding an address the host does not have fails as it would anywhere.
    let results = probe(&server, &app, &[("listen", "[::2]".to_string(), 0)]).await;
    let error = results[0]["error"].as_str().unwrap();
    assert!(!error.contains("Address family not supported") && results[0]["permission"] == false, "{}", results[0]);
    // The exact IPv6 addresses stay denied.
    let service = HostService::start().await;
    all_refused(
        &probe(&server, &app, &[("connect", "[::1]".to_string(), service.port), ("listen", "[::]".to_string(), 0)])
            .await,
    );
    server.stop().await;
}

/// `dev` keeps the developer's machine open by default; with `function-net-allow = []` it is
/// restricted like `serve`, and the SDK inside a function still reaches it over its socket.
#[tokio::test]
async fn dev_is_open_by_default_and_can_be_restricted_like_serve() {
    let service = HostService::start().await;
    let reach = json!({ "attempts": [{ "kind": "fetch", "host": "127.0.0.1", "port": service.port }] });
    for restricted in [false, true] {
        let project = fixture("functions");
        project.write("base44/functions/probe/entry.ts", PROBE);
        let config = match restricted {
            true => Config { function_net_allow: Vec::new(), ..TestServer::config() },
            false => TestServer::config(),
        };
        let server = TestServer::start_with(project.path(), config).await;
        let response = server.client().post(server.at("/functions/probe")).json(&reach).send().await.unwrap();
        let result = json_of(response).await["results"][0].clone();
        assert_eq!(result["ok"] == true, !restricted, "restricted: {restricted}: {result}");
        let response =
            server.client().post(server.at("/functions/service-call")).json(&json!({})).send().await.unwrap();
        let seen = json_of(response).await;
        assert_eq!(seen["callee"]["me"]["is_service"], true, "restricted: {restricted}: {seen}");
        server.stop().await;
    }
    assert_eq!(service.connections(), 1, "only the open dev server reached the service");
}

fn new_user(email: &str) -> homebase_store::NewUser {
    homebase_store::NewUser {
        email: email.into(),
        password: Some("pw-123456".into()),
        full_name: Some("Ann".into()),
        role: homebase_store::UserRole::User,
        is_verified: true,
    }
}
